"""M2VAE: one feature extractor and one decoder per modality, one fusion head per subset.

Korthals' M²VAE needs an encoder q(z|S) for every non-empty subset S of the sensors.
Training 2^N − 1 full encoders would be wasteful, so each modality's extractor runs once
per batch and a small head per subset maps the concatenated features of its members to
the posterior. Heads are keyed by the subset bitmask (see subsets.py). With the MVAE
objective the subset posteriors are instead the product of the single-modality experts
and a unit-Gaussian prior expert (Wu & Goodman 2018), so only the singleton heads exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from m2vae_ros.likelihoods import Likelihood
from m2vae_ros.networks import build_decoder, build_extractor, mlp
from m2vae_ros.priors import LOGVAR_MAX, LOGVAR_MIN, MixturePrior, soft_clamp
from m2vae_ros.spec import ModelSpec
from m2vae_ros.subsets import all_subsets, members


class M2VAE(nn.Module):
    """Multi-modal VAE over `spec.modalities`; modality i is bit i of a subset."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.names = spec.names
        # Modules are keyed by modality index, not name: indices match the subset bits.
        self.extractors = nn.ModuleDict(
            {str(i): build_extractor(m, spec.feature_dim) for i, m in enumerate(spec.modalities)}
        )
        n = len(spec.modalities)
        head_subsets = [1 << i for i in range(n)] if spec.objective == "mvae" else all_subsets(n)
        self.heads = nn.ModuleDict(
            {
                str(s): mlp([s.bit_count() * spec.feature_dim, spec.head_hidden, 2 * spec.latent_dim])
                for s in head_subsets
            }
        )
        self.decoders = nn.ModuleDict(
            {str(i): build_decoder(m, spec.latent_dim) for i, m in enumerate(spec.modalities)}
        )
        self.likelihoods = nn.ModuleDict({str(i): Likelihood(m) for i, m in enumerate(spec.modalities)})
        # Built last, so that a model without it draws the same initial weights as before.
        self.prior = MixturePrior(spec.prior_components, spec.latent_dim) if spec.prior_components else None

    def index(self, name: str) -> int:
        """Position (= subset bit) of a modality."""
        if name not in self.names:
            raise KeyError(f"no modality {name!r}; known: {list(self.names)}")
        return self.names.index(name)

    def extract(self, x: Mapping[str, Tensor], modalities: Iterable[int]) -> dict[int, Tensor]:
        """Features [B, feature_dim] of the given modality indices, each computed once."""
        features = {}
        for i in modalities:
            m = self.spec.modalities[i]
            if m.name not in x:
                raise KeyError(f"input has no modality {m.name!r}; given: {sorted(x)}")
            batch = x[m.name]
            if tuple(batch.shape[1:]) != m.shape:
                raise ValueError(f"modality {m.name!r}: expected [B, *{m.shape}], got {list(batch.shape)}")
            features[i] = self.extractors[str(i)](batch)
        return features

    def fuse(self, features: Mapping[int, Tensor], subset: int) -> tuple[Tensor, Tensor]:
        """Posterior (mean, logvar) of q(z | subset) from its members' features."""
        if self.spec.objective == "mvae":
            return self._product_of_experts([self._head(features, 1 << i) for i in members(subset)])
        return self._head(features, subset)

    def encode(self, x: Mapping[str, Tensor], subset: int) -> tuple[Tensor, Tensor]:
        """q(z | subset) as (mean, logvar), each [B, latent_dim]; other modalities in x are unread."""
        return self.encode_subsets(x, [subset])[subset]

    def encode_subsets(
        self, x: Mapping[str, Tensor], subsets: Sequence[int]
    ) -> dict[int, tuple[Tensor, Tensor]]:
        """Posteriors of several subsets, sharing each modality's features."""
        for s in subsets:
            if not 0 < s < 1 << len(self.names):
                raise ValueError(f"subset {s} is not a non-empty subset of {len(self.names)} modalities")
        needed = sorted({i for s in subsets for i in members(s)})
        features = self.extract(x, needed)
        return {s: self.fuse(features, s) for s in subsets}

    def decode(self, z: Tensor, name: str) -> Tensor:
        """Reconstruction mean [B, *shape] (probabilities for bernoulli)."""
        i = str(self.index(name))
        return self.likelihoods[i].mean(self.decoders[i](z))

    def log_likelihood(self, name: str, z: Tensor, x: Tensor) -> Tensor:
        """Weighted log p(x | z) of one modality, summed over elements → [B]."""
        i = str(self.index(name))
        return self.likelihoods[i].log_prob(self.decoders[i](z), x)

    def _head(self, features: Mapping[int, Tensor], subset: int) -> tuple[Tensor, Tensor]:
        joined = torch.cat([features[i] for i in members(subset)], dim=1)
        mean, raw_logvar = self.heads[str(subset)](joined).chunk(2, dim=1)
        return mean, soft_clamp(raw_logvar, LOGVAR_MIN, LOGVAR_MAX)  # soft: gradients everywhere

    @staticmethod
    def _product_of_experts(experts: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Gaussian product of the experts and a N(0, I) prior expert (precision 1, mean 0)."""
        precisions = [torch.exp(-logvar) for _, logvar in experts]
        precision = 1 + sum(precisions)
        mean = sum(p * mu for p, (mu, _) in zip(precisions, experts, strict=True)) / precision
        # Exact, not clamped: each expert is above LOGVAR_MIN, so the product stays above
        # LOGVAR_MIN − log(1 + N) (finite), and a clamp would stop the experts' gradients.
        return mean, -torch.log(precision)
