"""Batch-of-one M²VAE inference for the live node: encode the alive subset, decode every sensor.

Kept apart from the ROS plumbing so the node's callbacks only move numpy arrays, and so
the benchmark can time the same forward pass in-process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from m2vae_ros.model import M2VAE
from m2vae_ros.subsets import members


@dataclass(frozen=True)
class Posterior:
    """q(z|S) of one sample: numpy mean and std for publishing, the mean tensor for decoding."""

    mean: np.ndarray
    std: np.ndarray
    mean_tensor: torch.Tensor


class LatentFusion:
    """Wraps a loaded M2VAE for inference with batch size 1 (no autograd, eval mode)."""

    def __init__(self, model: M2VAE, device: str) -> None:
        self.spec = model.spec
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def encode(self, tensors: dict[str, np.ndarray], subset: int) -> Posterior:
        """q(z | subset) for one sample; `tensors` must hold every member of `subset`."""
        x = {
            self.spec.names[i]: torch.from_numpy(tensors[self.spec.names[i]]).unsqueeze(0).to(self.device)
            for i in members(subset)
        }
        mean, logvar = self.model.encode(x, subset)
        return Posterior(
            mean=mean[0].float().cpu().numpy(),
            std=torch.exp(0.5 * logvar[0]).float().cpu().numpy(),
            mean_tensor=mean,
        )

    @torch.inference_mode()
    def reconstruct(self, posterior: Posterior, names: Iterable[str]) -> dict[str, np.ndarray]:
        """The named modalities decoded from the posterior mean (cross-modal imputation for dead sensors).

        Only the names asked for: a decoder costs more than the encoder, and the node skips
        the topics nobody subscribes to.
        """
        mean = posterior.mean_tensor
        return {name: self.model.decode(mean, name)[0].float().cpu().numpy() for name in names}
