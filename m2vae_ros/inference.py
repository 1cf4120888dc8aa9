"""Batch-of-one M²VAE inference for the live node: encode the alive subset, decode every sensor.

Kept apart from the ROS plumbing so the node's callbacks only move numpy arrays, and so
the benchmark can time the same forward pass in-process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from m2vae_ros.spec import ModelSpec
from m2vae_ros.subsets import members

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Posterior:
    """q(z|S) of one sample: numpy mean and std for publishing, the mean tensor for decoding."""

    mean: np.ndarray
    std: np.ndarray
    mean_tensor: torch.Tensor


def resolve_device(requested: str) -> tuple[str, str | None]:
    """`auto`/`cpu`/`cuda[:i]` → a usable torch device, plus a warning when CUDA had to be replaced.

    Raises ValueError for anything else, so `gpu` or `cudaX` is one clear line, not a torch traceback.
    """
    if not DEVICE_PATTERN.fullmatch(requested):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, got {requested!r}")
    if requested == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if requested.startswith("cuda"):
        index = int(requested.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            return "cpu", f"device {requested!r} requested but CUDA is unavailable; running on cpu"
        if index >= (count := torch.cuda.device_count()):
            return "cpu", f"device {requested!r} does not exist ({count} GPUs); running on cpu"
    return requested, None


class LatentFusion:
    """Wraps a loaded M2VAE for inference with batch size 1 (no autograd, eval mode)."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, device: str) -> None:
        self.spec = spec
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
