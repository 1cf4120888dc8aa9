"""Which torch device a `--device` / `device` request names: `auto`, `cpu`, `cuda` or `cuda:<i>`.

One parser for every entry point; what happens when the GPU asked for is missing is the
caller's policy: the node and the library fall back to the CPU with a warning, a training
run refuses (distributed.py), since hours on the wrong device are worse than an error.
"""

from __future__ import annotations

import re

import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


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
