"""p(z): the fixed N(0, I), or a learned mixture of diagonal Gaussians.

With N(0, I) every encoder is pulled towards one round blob, and a discrete factor of the
scene (which object the robot looks at) has no reason to form a cluster of its own. A
mixture prior (VaDE, Jiang et al. 2017) gives it somewhere to go: each posterior is pulled
towards the nearest of K learned components. That is the structure the naive-Bayes
protocol of `m2vae-eval` scores (one Gaussian per class).

KL(q(z|x) ‖ mixture) has no closed form; the objective estimates it at the latent sample
the reconstruction term uses (`kl_to_prior` in objectives.py). MVAE's product of experts
keeps its N(0, I) expert either way: it shapes the posterior, not the prior.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)
# Bounds of every log-variance over the latent, posterior or prior: std between e^-5 and e^3
# keeps KL terms and the product of experts finite while being far outside what a trained
# model uses.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 6.0


def soft_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """Smoothly squash x into (low, high); close to the identity near the middle."""
    mid, half = (high + low) / 2, (high - low) / 2
    return mid + half * torch.tanh((x - mid) / half)


def log_normal(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, diag e^logvar), summed over the last dimension (broadcasting)."""
    return -0.5 * ((z - mean).square() * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


class MixturePrior(nn.Module):
    """Σ_k π_k N(μ_k, diag σ_k²) over the latent, all of it learned with the model.

    The means start as draws of N(0, I) (from the model's seed), the variances near 1 and the
    weights equal: a broad prior close to the standard normal, which training then shapes.
    A component's log-variance is squashed into LOGVAR_MIN…LOGVAR_MAX, as the posteriors' are
    (softly, so a component near a bound still gets gradients and can come back): one
    collapsing onto a few latents would give them an unbounded density, and the KL to the
    prior would run to −∞ (e^−logvar overflows to inf at −89).
    """

    def __init__(self, components: int, latent_dim: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) of each row of z [B, D] → [B]."""
        per_component = log_normal(z[:, None, :], self.means, self.logvar())  # [B, K]
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, 0), dim=1)

    def logvar(self) -> Tensor:
        """The components' log-variances [K, D], within the bounds."""
        return soft_clamp(self.logvars, LOGVAR_MIN, LOGVAR_MAX)
