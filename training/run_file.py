"""RUN_DIR/run.yaml: the settings a training run started with, and what `--resume` must match.

A run records its settings (the config's training section with the command-line
overrides, the model spec, the bags' fingerprints, the process count and device type)
before its first epoch. `--resume` reads them back: a setting flag left out means "as the
run had it", and anything that would break a bit-for-bit continuation is refused with
the differences named. A run.yaml of another `format` (an earlier m2vae-train wrote none)
is not resumed at all.

`RunFile` is the file, typed. A `--resume` reads and checks it once (`read_resumed_run`),
and each step that needs the run's settings (device, bags, config, the checks) is given
that one reading: a hand-edited file is refused in one line before anything starts, not
with a KeyError in the middle.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
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
from m2vae_training.run_lock import refuse_if_in_use
from m2vae_training.split import Split

from m2vae_ros.atomic import write_atomic
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


@dataclasses.dataclass(frozen=True)
class RunFile:
    """A run.yaml of RUN_FORMAT. Its keys are these fields, written in this order after `format`;
    the file's lists are tuples here, and `resumes` is written from the first resume on."""

    flags: tuple[str, ...]  # the SETTING_FLAGS that the command starting the run gave
    bags: tuple[str, ...]  # resolved paths
    dataset_dir: str | None  # --dataset-dir, resolved; None: the run directory's own dataset
    dataset: dict[str, Any]  # TrainConfig.dataset_key(): a resumed run must rebuild nothing
    bag_fingerprints: tuple[dict[str, Any], ...]
    processes: int
    device_type: str
    spec: dict[str, Any]  # ModelSpec.to_dict() of the config's spec, without the bags' message types
    epochs: int  # epochs to patience: the config's TrainingSettings with the flags' overrides
    batch_size: int
    lr: float
    seed: int
    val_fraction: float
    block_seconds: float
    guard_seconds: float
    patience: int
    command: tuple[str, ...]  # the one that started the run
    cwd: str  # where the command's relative paths point
    split_sha256: str | None  # Split.digest(); None until the data is split
    # What a CPU's arithmetic depends on (the order of its sums follows the thread count);
    # None in a run.yaml written before they were recorded.
    torch_threads: int | None = None
    torch_version: str | None = None
    resumes: tuple[dict[str, Any], ...] = ()  # each --resume's command, cwd, torch threads and version

    @classmethod
    def read(cls, out: Path) -> RunFile:
        """RUN_DIR/run.yaml, or CheckpointError naming the damage or the other format."""
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
            raise CheckpointError(f"{path} was written by {written}; this one resumes only {RUN_FORMAT} "
                                  "runs: start a new run with another --out (the model in "
                                  f"{out / 'model'} is left as it is)")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        if missing := [name for name in required if name not in run]:
            raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}")
        hints = {name: hint for name, hint in typing.get_type_hints(cls).items() if name in run}
        if wrong := [name for name, hint in hints.items() if not _holds(run[name], hint)]:
            raise CheckpointError(f"{path} is damaged: {', '.join(wrong)} not as m2vae-train writes them")
        run_file = cls(**{name: tuple(run[name]) if typing.get_origin(hint) is tuple else run[name]
                          for name, hint in hints.items()})
        try:  # the spec and the dataset entry written from one config give that config back
            consistent = run_file.config().dataset_key() == run_file.dataset
        except (ArithmeticError, KeyError, TypeError, ValueError):  # .inf seconds: an OverflowError
            consistent = False
        if not consistent:
            raise CheckpointError(f"{path} is damaged: its spec and dataset entries are not the ones "
                                  "m2vae-train wrote together")
        return run_file

    def write(self, out: Path) -> None:
        """Replace RUN_DIR/run.yaml at once: a crash leaves the previous file or this one, never half."""
        out.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        write_atomic(out / RUN_FILE, text.encode())

    def to_dict(self) -> dict[str, Any]:
        """The file's mapping: `format` first, tuples as lists, `resumes` once there is one."""
        values: dict[str, Any] = {"format": RUN_FORMAT}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values[field.name] = list(value) if isinstance(value, tuple) else value
        if not self.resumes:
            del values["resumes"]
        return values

    def config(self) -> TrainConfig:
        """The TrainConfig that `run_settings` recorded this run from (the inverse of its config parts)."""
        spec = ModelSpec.from_dict(self.spec)
        seconds = [ns / 1e9 for ns in self.dataset["timeouts_ns"]]
        timeout = seconds[0] if len(set(seconds)) == 1 else dict(zip(spec.names, seconds, strict=True))
        training = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingSettings)}
        return TrainConfig(spec, self.dataset["labels_topic"], self.dataset["slop"], timeout,
                           TrainingSettings(**training))


_FIELDS = frozenset(f.name for f in dataclasses.fields(RunFile))


def read_resumed_run(args: argparse.Namespace, job: distributed.Distributed) -> RunFile | None:
    """The run that --resume continues, read and checked once; None for a new run.

    Only rank 0 looks at the run directory's lock, which it takes itself later: another rank
    may arrive after it did (NCCL's start has no barrier) and would find the lock in use.
    """
    if not args.resume:
        return None
    if job.is_main:
        refuse_if_in_use(args.out)
    _require_checkpoint(args.out / "checkpoints")
    return RunFile.read(args.out)


def load_config(args: argparse.Namespace, previous: RunFile | None) -> TrainConfig:
    """--config (default config/train.yaml) with --topic overrides; on --resume without
    --config, the settings the run started with (so a run trained with its own config file
    resumes with `--resume` alone, and an edited default changes nothing)."""
    topics = parse_topic_overrides(args.topic)
    if previous is not None and args.config is None:
        return with_topics(previous.config(), topics)
    return load_train_config(args.config, topics)


def run_settings(args: argparse.Namespace, config: TrainConfig, command: list[str],
                 job: distributed.Distributed, device: torch.device) -> RunFile:
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
    return RunFile(
        flags=tuple(key for key in SETTING_FLAGS if getattr(args, key) is not None),
        bags=tuple(str(Path(b).resolve()) for b in args.bag),
        dataset_dir=str(args.dataset_dir.resolve()) if args.dataset_dir else None,
        dataset=config.dataset_key(),
        bag_fingerprints=tuple(fingerprint(b) for b in args.bag),
        processes=job.world_size,
        device_type=device.type,
        spec=spec.to_dict(),
        **dataclasses.asdict(t),  # epochs, batch_size, lr, seed, the split's settings, patience
        command=tuple(command),
        cwd=os.getcwd(),
        split_sha256=None,
        torch_threads=torch.get_num_threads(),
        torch_version=str(torch.__version__),  # a TorchVersion, which YAML cannot write
    )


def check_resume(
    out: Path, run: RunFile, previous: RunFile | None, args: argparse.Namespace, say: Callable[[str], None]
) -> RunFile:
    """Refuse to overwrite a run by accident, and to resume it with different settings.

    --epochs, --batch-size, --seed, --latent-dim, --objective and --dataset-dir given at the
    start and left out on --resume mean "as the run had it", not "as the config file says":
    `--epochs 200` interrupted at epoch 80 and resumed with `--resume` alone trains to 200.
    The other settings, and a --topic, must be given again as the run had them (a --config
    left out is the run's own).
    """
    checkpoints = out / "checkpoints"
    if previous is None:
        if has_checkpoint(checkpoints):
            raise ValueError(f"{out} holds a training run; --resume continues it, or pick a new --out")
        return run
    # A flag left out keeps what the run's flag gave (epochs and the dataset directory always:
    # a run may be extended, and no config holds the directory). A setting that came from the
    # config file is compared with a --config given now (without one, `load_config` took the run's).
    kept = [key for key in SETTING_FLAGS if key in previous.flags or key in ("epochs", "dataset_dir")]
    left_out = [key for key in kept if getattr(args, key) is None]
    if args.config is not None and "epochs" in left_out and run.epochs != previous.epochs:
        say(f"--resume keeps the run's {previous.epochs} epochs; the --config's "
             f"training.epochs {run.epochs} counts only with --epochs {run.epochs}")
    spec = {**run.spec, **{key: previous.spec[key] for key in left_out if key in previous.spec}}
    kept_here = {key: getattr(previous, key) for key in left_out if key in _FIELDS}
    run = dataclasses.replace(run, spec=spec, **kept_here)
    before, now = previous.to_dict(), run.to_dict()
    # The spec's message types are filled in from the bags; compare what the user chose.
    changed = [difference for k in FIXED_ON_RESUME
               for difference in differences(k, _comparable(k, before[k]), _comparable(k, now[k]))]
    if changed:
        raise ValueError(f"--resume: the settings differ from the run in {out / RUN_FILE}: "
                         f"{first(changed, MAX_DIFFERENCES_SHOWN)}")
    done = checkpoint_epoch(checkpoints)
    if run.epochs < done:
        raise ValueError(f"--resume: the run has trained {done} epochs already, more than --epochs "
                         f"{run.epochs}; its model is in {out / 'model'}")
    # The command that started the run stays, with its directory; each resume's own is added after it,
    # with what its arithmetic depends on (`arithmetic_drift`).
    resume = {"command": list(run.command), "cwd": run.cwd, "torch_threads": run.torch_threads,
              "torch_version": run.torch_version}
    return dataclasses.replace(previous, epochs=run.epochs, resumes=(*previous.resumes, resume))


def arithmetic_drift(run: RunFile) -> str | None:
    """What the latest resume of a CPU run computes with that an earlier part of it did not, or None.

    A CPU's sums are ordered by its thread count, and torch versions change kernels: a part
    trained with others leaves weights that are not bit-for-bit those of an uninterrupted run.
    Not a refusal: moving a run to another machine is a choice, and its results stay valid.
    Every part counts, not only the start (1, then 2, then 1 thread again has drifted). A
    CUDA run is not bit-for-bit anyway; parts that recorded nothing (an older run.yaml) are
    left out of the comparison.
    """
    if run.device_type != "cpu" or not run.resumes:
        return None
    now = run.resumes[-1]
    earlier = [(run.torch_threads, run.torch_version)] + [
        (part.get("torch_threads"), part.get("torch_version")) for part in run.resumes[:-1]]
    threads = sorted({t for t, _ in earlier if t is not None and t != now.get("torch_threads")})
    versions = sorted({v for _, v in earlier if v is not None and v != now.get("torch_version")})
    changed = []
    if threads:
        changed.append(f"{now.get('torch_threads')} torch threads where the run trained with "
                       f"{', '.join(map(str, threads))} before (OMP_NUM_THREADS sets them)")
    if versions:
        changed.append(f"torch {now.get('torch_version')} where the run trained with torch "
                       f"{', '.join(versions)} before")
    return "; ".join(changed) or None


def check_same_split(out: Path, run: RunFile, split: Split) -> None:
    """Refuse a resume whose split differs from the one recorded for the run: a newer version of
    the split (or of NumPy's shuffle) may send to validation frames the run has trained on."""
    if run.split_sha256 != split.digest():
        raise CheckpointError(
            f"--resume: the split now differs from the one recorded for {out} (a newer m2vae-train or "
            f"NumPy; training and validation samples: {len(split.train)} and {len(split.val)} now), so "
            "validation may score frames the run has trained on; start a new run with another --out, or "
            "resume with the versions that started this one"
        )


def device_request(args: argparse.Namespace, previous: RunFile | None) -> str:
    """--device; left out, the run's device type on --resume (a CPU run on a GPU machine resumes
    on the CPU instead of being refused as another device type), else auto."""
    if args.device is not None:
        return args.device
    return previous.device_type if previous is not None else "auto"


def run_bags(out: Path, previous: RunFile) -> list[str]:
    """The recordings of the run in `out`, for a --resume that leaves out --bag."""
    if not previous.bags:
        raise CheckpointError(f"{out / RUN_FILE} names no bags: give them with --bag")
    return list(previous.bags)


def _require_checkpoint(checkpoints: Path) -> None:
    if not has_checkpoint(checkpoints):
        raise CheckpointError(f"--resume: {checkpoints} holds no checkpoint to continue from")


def _holds(value: Any, hint: Any) -> bool:
    """Whether a value read from YAML fits a RunFile field of type `hint` (a list where it is a tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return isinstance(value, list) and all(_holds(item, args[0]) for item in value)
    if origin is types.UnionType:
        return any(_holds(value, arg) for arg in args)
    if isinstance(value, bool):  # YAML's `true` is no number
        return hint is bool
    if hint is float:  # `lr: 1` is a float setting, written as the config gave it
        return isinstance(value, int | float)
    return isinstance(value, origin or hint)


def _comparable(key: str, value: Any) -> Any:
    if key == "spec":
        return ModelSpec.from_dict(value).to_dict()
    return value
