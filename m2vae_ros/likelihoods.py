"""Observation models p(x_m | z): turn a decoder's raw output into a mean and a log-likelihood.

Decoders output unconstrained values; the likelihood decides what they mean. For
gaussian/laplace the mean of an image, scan or range image lives in [0, 1] (the codec's
value range), so it is the sigmoid of the raw output; a vector's mean is the raw output.
For bernoulli the raw output is the logit. Every log-likelihood is summed over a
sample's elements and multiplied by `ModalitySpec.weight`, so one large modality cannot
drown the others.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m2vae_ros.spec import ModalitySpec

BOUNDED_KINDS = ("image", "scan", "range_image", "depth")  # tensors in [0, 1]; their means are sigmoids
# A learned std outside [e^-7, e^3] means the model is fitting noise or giving up on a
# modality; the bound keeps log-densities finite either way.
_LOG_SCALE_MIN, _LOG_SCALE_MAX = -7.0, 3.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Likelihood(nn.Module):
    """p(x_m | z) for one modality; holds the learned log-scale of `gaussian_learned`."""

    def __init__(self, spec: ModalitySpec) -> None:
        super().__init__()
        self.family = spec.likelihood  # gaussian, laplace, ...; spec.kind is the tensor's kind
        self.bounded = spec.kind in BOUNDED_KINDS
        self.weight = spec.weight
        self.scale = spec.scale
        if self.family == "gaussian_learned":
            self.log_scale = nn.Parameter(torch.tensor(math.log(spec.scale)))

    def mean(self, raw: Tensor) -> Tensor:
        """The reconstruction mean (probabilities for bernoulli) from the decoder's raw output."""
        if self.family == "bernoulli" or self.bounded:
            return torch.sigmoid(raw)
        return raw

    def log_prob(self, raw: Tensor, x: Tensor) -> Tensor:
        """Weighted log p(x | decoder output), summed over each sample's elements → [B]."""
        if self.family == "bernoulli":
            elementwise = -F.binary_cross_entropy_with_logits(raw, x, reduction="none")
        else:
            mean = self.mean(raw)
            if self.family == "laplace":
                elementwise = -(x - mean).abs() / self.scale - math.log(2 * self.scale)
            else:
                log_scale = self._log_scale(raw)
                z = (x - mean) * torch.exp(-log_scale)
                elementwise = -0.5 * z.square() - log_scale - _LOG_SQRT_2PI
        return self.weight * elementwise.flatten(1).sum(1)

    def _log_scale(self, raw: Tensor) -> Tensor:
        if self.family == "gaussian_learned":
            return self.log_scale.clamp(_LOG_SCALE_MIN, _LOG_SCALE_MAX)
        return raw.new_tensor(math.log(self.scale))
