"""RUN_DIR/run.yaml: the settings a training run started with, and what `--resume` must match.

A run records its settings (the config's training section with the command-line
overrides, the model spec, the bags' fingerprints, the process count and device type)
before its first epoch. `--resume` reads them back: a setting flag left out means "as the
run had it", and anything that would break a bit-for-bit continuation is refused with
the differences named. A run.yaml of another `format` (an earlier m2vae-train wrote none)
is not resumed at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from m2vae_training import distributed
from m2vae_training.bags import fingerprint
from m2vae_training.checkpoint import CheckpointError, checkpoint_epoch, has_checkpoint
from m2vae_training.config import (
    TrainConfig,
    TrainingSettings,
    load_train_config,
    parse_topic_overrides,
    with_topics,
)
from m2vae_training.split import Split

from m2vae_ros.differences import differences, first
from m2vae_ros.spec import ModelSpec

RUN_FILE = "run.yaml"
RUN_FORMAT = "m2vae-run/2"  # run.yaml's `format`; an earlier m2vae-train wrote none (format 1)
# Settings a flag can set; left out on --resume, the run's value stands (see check_resume).
SETTING_FLAGS = ("epochs", "batch_size", "seed", "latent_dim", "objective", "dataset_dir")
MAX_DIFFERENCES_SHOWN = 5  # of a refused --resume
# What a resumed run must share with its start to continue bit-for-bit (epochs may grow).
FIXED_ON_RESUME = ("bags", "dataset_dir", "dataset", "spec", "batch_size", "lr", "seed", "block_seconds",
                   "guard_seconds", "val_fraction", "patience", "bag_fingerprints", "processes",
                   "device_type")
# Every run.yaml of RUN_FORMAT holds these (`resumes` only once resumed).
RUN_KEYS = ("format", "flags", *FIXED_ON_RESUME, "epochs", "command", "cwd", "split_sha256")


def load_config(args: argparse.Namespace) -> TrainConfig:
    """--config (default config/train.yaml) with --topic overrides; on --resume without
    --config, the settings the run started with, from its run.yaml (so a run trained with
    its own config file resumes with `--resume` alone, and an edited default changes nothing)."""
    topics = parse_topic_overrides(args.topic)
    if args.resume and args.config is None and (args.out / RUN_FILE).is_file():
        return with_topics(run_config(read_run_file(args.out)), topics)
    return load_train_config(args.config, topics)


def run_config(run: dict[str, Any]) -> TrainConfig:
    """The TrainConfig that `run_settings` recorded `run` from (the inverse of its config parts)."""
    spec = ModelSpec.from_dict(run["spec"])
    sync = run["dataset"]
    seconds = [ns / 1e9 for ns in sync["timeouts_ns"]]
    timeout = seconds[0] if len(set(seconds)) == 1 else dict(zip(spec.names, seconds, strict=True))
    settings = TrainingSettings(**{f.name: run[f.name] for f in dataclasses.fields(TrainingSettings)})
    return TrainConfig(spec, sync["labels_topic"], sync["slop"], timeout, settings)


def run_settings(args: argparse.Namespace, config: TrainConfig, command: list[str],
                 job: distributed.Distributed, device: torch.device) -> dict[str, Any]:
    """The run's settings: config/train.yaml's training section with the command-line overrides.

    Also what else a resume must match: the bags' sizes and times (a re-recorded bag at the
    same path is other data), the number of processes (each rank draws its own share and
    noise) and the device type (CPU and CUDA random states do not convert).
    """
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    # The file's settings and the flags pass the same checks.
    t = dataclasses.replace(config.training, **{k: v for k, v in overrides.items() if v is not None})
    spec = config.spec
    if args.latent_dim is not None or args.objective is not None:
        spec = dataclasses.replace(
            spec, latent_dim=args.latent_dim or spec.latent_dim, objective=args.objective or spec.objective
        )
    bags = [str(Path(b).resolve()) for b in args.bag]
    run = {
        "format": RUN_FORMAT,
        "flags": [key for key in SETTING_FLAGS if getattr(args, key) is not None],  # set on the command line
        "bags": bags,
        "dataset_dir": str(args.dataset_dir.resolve()) if args.dataset_dir else None,
        "dataset": config.dataset_key(),  # synchronisation settings: a resumed run must rebuild nothing
        "bag_fingerprints": [fingerprint(b) for b in args.bag],
        "processes": job.world_size,
        "device_type": device.type,
        "spec": spec.to_dict(),
        **dataclasses.asdict(t),  # epochs, batch_size, lr, seed, the split's settings, patience
        "command": command,
        "cwd": os.getcwd(),  # where the command's relative paths point
    }
    return run


def check_resume(
    out: Path, run: dict[str, Any], args: argparse.Namespace, say: Callable[[str], None]
) -> dict[str, Any]:
    """Refuse to overwrite a run by accident, and to resume it with different settings.

    --epochs, --batch-size, --seed, --latent-dim, --objective and --dataset-dir given at the
    start and left out on --resume mean "as the run had it", not "as the config file says":
    `--epochs 200` interrupted at epoch 80 and resumed with `--resume` alone trains to 200.
    The other settings, and a --topic, must be given again as the run had them (a --config
    left out is the run's own).
    """
    checkpoints = out / "checkpoints"
    if not args.resume:
        if has_checkpoint(checkpoints):
            raise ValueError(f"{out} holds a training run; --resume continues it, or pick a new --out")
        return run
    _require_checkpoint(checkpoints)
    previous = read_run_file(out)
    # A flag left out keeps what the run's flag gave (epochs and the dataset directory always:
    # a run may be extended, and no config holds the directory). A setting that came from the
    # config file is compared with a --config given now (without one, `load_config` took the run's).
    kept = [key for key in SETTING_FLAGS if key in previous["flags"] or key in ("epochs", "dataset_dir")]
    left_out = [key for key in kept if getattr(args, key) is None]
    if args.config is not None and "epochs" in left_out and run["epochs"] != previous["epochs"]:
        say(f"--resume keeps the run's {previous['epochs']} epochs; the --config's "
             f"training.epochs {run['epochs']} counts only with --epochs {run['epochs']}")
    run = {**run, **{key: previous[key] for key in left_out if key in previous}}
    spec = previous["spec"]
    run["spec"] = {**run["spec"], **{key: spec[key] for key in left_out if key in spec}}
    # The spec's message types are filled in from the bags; compare what the user chose.
    changed = [difference for k in FIXED_ON_RESUME
               for difference in differences(k, _comparable(k, previous[k]), _comparable(k, run[k]))]
    if changed:
        raise ValueError(f"--resume: the settings differ from the run in {out / RUN_FILE}: "
                         f"{first(changed, MAX_DIFFERENCES_SHOWN)}")
    done = checkpoint_epoch(checkpoints)
    if run["epochs"] < done:
        raise ValueError(f"--resume: the run has trained {done} epochs already, more than --epochs "
                         f"{run['epochs']}; its model is in {out / 'model'}")
    # The command that started the run stays, with its directory; each resume's own is added after it.
    resumes = [*previous.get("resumes", []), {"command": run["command"], "cwd": run["cwd"]}]
    return {**previous, "epochs": run["epochs"], "resumes": resumes}


def check_same_split(out: Path, run: dict[str, Any], split: Split) -> None:
    """Refuse a resume whose split differs from the one recorded for the run: a newer version of
    the split (or of NumPy's shuffle) may send to validation frames the run has trained on."""
    if run["split_sha256"] != split.digest():
        raise CheckpointError(
            f"--resume: the split now differs from the one recorded for {out} (a newer m2vae-train or "
            f"NumPy; training and validation samples: {len(split.train)} and {len(split.val)} now), so "
            "validation may score frames the run has trained on; start a new run with another --out, or "
            "resume with the versions that started this one"
        )


def device_request(args: argparse.Namespace) -> str:
    """--device; left out, the run's device type on --resume (a CPU run on a GPU machine resumes
    on the CPU instead of being refused as another device type), else auto."""
    if args.device is not None:
        return args.device
    if args.resume and (args.out / RUN_FILE).is_file():
        return str(read_run_file(args.out)["device_type"])
    return "auto"


def run_bags(out: Path) -> list[str]:
    """The recordings of the run in `out`, for a --resume that leaves out --bag."""
    _require_checkpoint(out / "checkpoints")
    bags = read_run_file(out)["bags"]
    if not isinstance(bags, list) or not bags:
        raise CheckpointError(f"{out / RUN_FILE} names no bags: give them with --bag")
    return [str(bag) for bag in bags]


def _require_checkpoint(checkpoints: Path) -> None:
    if not has_checkpoint(checkpoints):
        raise CheckpointError(f"--resume: {checkpoints} holds no checkpoint to continue from")


def read_run_file(out: Path) -> dict[str, Any]:
    """RUN_DIR/run.yaml as a mapping, or CheckpointError naming the damage or the other format."""
    path = out / RUN_FILE
    try:
        run = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the run's settings are unknown") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if not isinstance(run, dict) or not {"spec", "epochs"} <= set(run):
        raise CheckpointError(f"{path} is damaged: not the settings of a run")
    if run.get("format") != RUN_FORMAT:
        written = ("an earlier m2vae-train (no format)" if "format" not in run
                   else f"another m2vae-train (format {run['format']!r})")
        raise CheckpointError(f"{path} was written by {written}; this one resumes only {RUN_FORMAT} runs: "
                              f"start a new run with another --out (the model in {out / 'model'} is left "
                              "as it is)")
    if missing := [key for key in RUN_KEYS if key not in run]:
        raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}")
    return run


def _comparable(key: str, value: Any) -> Any:
    if key == "spec":
        return ModelSpec.from_dict(value).to_dict()
    return value
