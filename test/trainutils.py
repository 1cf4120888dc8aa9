"""Tiny real inputs for the training and evaluation CLI tests: simulated bags and a small config.

The bags come from the real simulator (`m2vae_ros.sim.simulate`), 32×32 images and a
90-beam scan keep every epoch well under a second on two shared cores.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from m2vae_ros.drop_window import DropWindow
from m2vae_ros.sim import simulate

TINY_CONFIG: dict[str, Any] = {
    "model": {"latent_dim": 8, "objective": "m2vae", "feature_dim": 32, "head_hidden": 32},
    "modalities": [
        {"name": "camera", "kind": "image", "topic": "/camera/image_raw", "scale": 0.1, "weight": 0.1,
         "hidden": [8, 16], "preprocess": {"width": 32, "height": 32, "channels": 3}},
        {"name": "lidar", "kind": "scan", "topic": "/scan", "scale": 0.05, "hidden": [8, 16],
         "preprocess": {"beams": 90, "range_max": 8.0}},
    ],
    "labels": {"topic": "/ground_truth/object"},
    "dataset": {"slop": 0.05, "timeout": 0.5},
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.001, "seed": 0,
                 "val_fraction": 0.25, "block_seconds": 2.0, "guard_seconds": 0.5, "patience": 3},
}


def tiny_bag(path: Path, seed: int, seconds: float = 8.0, drops: Sequence[DropWindow] = ()) -> Path:
    """A short simulated recording (camera, scan, ground truth) at `path`, sensors silent in `drops`."""
    simulate(path, seconds, seed, image_size=(32, 32), points=False, episode_seconds=2.5, drops=drops)
    return path


def tiny_config(path: Path, **training: Any) -> Path:
    """TINY_CONFIG with `training` overrides, written to `path`."""
    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], **training}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def signal_when(
    command: list[str], ready: Callable[[], bool], stop: int, **popen: Any
) -> tuple[int, str, str]:
    """Run a CLI with one torch thread, send it `stop` once `ready()` holds, and return its
    exit code, stdout and stderr; a process that ends first fails the test with its output."""
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, **popen)
    try:
        while not ready():
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, stdout, stderr
