"""Where the LiDAR imputed from the camera is wrong: the beams the camera sees, or the rest.

The imputation target (BENCHMARKS.md) compares the whole 360° scan imputed from the camera with the scan
reconstructed from camera and LiDAR. The simulated camera (`m2vae-sim`) looks along the
scan's angle 0 with a 60° horizontal field of view, so 300° of the scan are out of its
sight: there the camera can only guess the walls from what it tells of the robot's pose.
This splits each subset's LiDAR RMSE (metres, valid returns only, as `m2vae-eval` scores
it) into the beams inside the camera's view and the others, on a prepared test dataset
(`m2vae-eval` leaves one in `OUT/test_dataset`), and prints the imputation ratio of each.

    .venv/bin/python bench/imputation_in_view.py --model RUN/model --dataset EVAL_OUT/test_dataset
                                                  [--camera camera] [--lidar lidar] [--hfov-deg 60]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from m2vae_training.dataset import PreparedDataset, load_dataset
from m2vae_training.evaluation import finite_or_none, subset_present
from m2vae_training.metrics import ReconstructionError

from m2vae_ros.artifact import load_model
from m2vae_ros.cli_args import positive_float, positive_int
from m2vae_ros.codec.binning import bin_width
from m2vae_ros.model import M2VAE
from m2vae_ros.subsets import all_subsets, subset_name

PARTS = ("in", "out", "all")  # the beams in the camera's view, the others, the whole scan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True, help="a prepared test dataset")
    parser.add_argument("--camera", default="camera", help="the camera modality's name")
    parser.add_argument("--lidar", default="lidar", help="the scan modality's name")
    parser.add_argument("--hfov-deg", type=positive_float, default=60.0,
                        help="the camera's horizontal field of view")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    args = parser.parse_args()

    rmse = lidar_rmse_by_view(args.model, args.dataset, lidar=args.lidar, hfov=math.radians(args.hfov_deg),
                              batch_size=args.batch_size)
    joint = max(rmse, key=lambda name: name.count("+"))
    print(f"beams within ±{args.hfov_deg / 2:g}° of the camera's axis against the rest; each subset on "
          "the test samples that hold it and a scan\n")
    print("| LiDAR RMSE from (m) | in the camera's view | out of it | whole scan |")
    print("|---|---:|---:|---:|")
    for name, parts in rmse.items():
        print(f"| {name} | " + " | ".join(_fmt(parts[p]) for p in PARTS) + " |")
    ratios = [ratio(rmse[args.camera][p], rmse[joint][p]) for p in PARTS]
    print(f"| imputed from {args.camera} / from {joint} | " + " | ".join(_fmt(r, 2) for r in ratios) + " |")
    return 0


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None where either is unknown (or b is 0)."""
    return a / b if a is not None and b else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def lidar_rmse_by_view(
    model_dir: Path, dataset_dir: Path, *, lidar: str = "lidar", hfov: float = math.radians(60.0),
    batch_size: int = 256,
) -> dict[str, dict[str, float | None]]:
    """{subset: {"in", "out", "all": LiDAR RMSE (m)}}: the scan decoded from each subset's mean,
    over the beams within ±hfov/2 of the camera's axis, the others, and all of them."""
    loaded = load_model(model_dir)
    spec = loaded.spec
    modality = spec.modalities[spec.names.index(lidar)]
    if modality.kind != "scan":
        raise ValueError(f"{lidar} is a {modality.kind}, not a scan")
    p = modality.preprocess
    in_view = beams_in_view(p.angle_min, p.angle_max, p.beams, hfov)
    errors = scan_errors(loaded.model, load_dataset(dataset_dir), lidar, in_view, batch_size)
    # A part without a valid return is None: JSON has no NaN.
    return {name: {part: finite_or_none(err.value()) for part, err in parts.items()}
            for name, parts in errors.items()}


def beams_in_view(angle_min: float, angle_max: float, beams: int, hfov: float) -> np.ndarray:
    """Per scan beam, whether its centre lies within ±hfov/2 of angle 0 (where the camera looks)."""
    centres = angle_min + np.arange(beams) * bin_width(angle_min, angle_max, beams)
    relative = np.angle(np.exp(1j * centres))  # wrapped to (−π, π]
    return np.abs(relative) <= hfov / 2 + 1e-9


@torch.no_grad()
def scan_errors(model: M2VAE, test: PreparedDataset, lidar: str, in_view: np.ndarray, batch_size: int
                ) -> dict[str, dict[str, ReconstructionError]]:
    """{subset: {"in", "out", "all": the scan's error}}, each subset over the samples that hold
    it and a scan, as `m2vae-eval` scores its recon_error."""
    model.eval()
    spec = model.spec
    subsets = all_subsets(len(spec.names))
    modality = spec.modalities[spec.names.index(lidar)]
    with_scan = np.flatnonzero(test.available[:, spec.names.index(lidar)])
    errors = {subset_name(s, spec.names): {p: ReconstructionError(modality) for p in PARTS}
              for s in subsets}
    for start in range(0, len(with_scan), batch_size):
        rows = with_scan[start:start + batch_size]
        x = {name: torch.from_numpy(np.asarray(test.arrays[name][rows], np.float32)) for name in spec.names}
        real = x[lidar].numpy()
        valid = np.asarray(test.masks[lidar][rows], bool)
        for s, (mean, _) in model.encode_subsets(x, subsets).items():
            present = subset_present(test.available[rows], s)
            pred = model.decode(mean, lidar).float().numpy()[present]
            parts = errors[subset_name(s, spec.names)]
            parts["in"].add(pred, real[present], valid[present] & in_view)
            parts["out"].add(pred, real[present], valid[present] & ~in_view)
            parts["all"].add(pred, real[present], valid[present])
    return errors


if __name__ == "__main__":
    sys.exit(main())
