"""`m2vae-train` (also `ros2 run m2vae_ros train`): train an M²VAE from rosbag2 recordings.

    m2vae-train --bag BAG [BAG ...] --out RUN_DIR [--config config/train.yaml]
                [--topic MODALITY=TOPIC ...] [--objective m2vae|jmvae|mvae] [--epochs N]
                [--batch-size B] [--latent-dim D] [--device auto|cpu|cuda[:i]] [--seed S]
                [--resume] [--dataset-dir DIR]

A thin layer over the shared pieces: the bags become a prepared dataset (build_dataset,
in RUN_DIR/dataset unless --dataset-dir names a cache shared between runs; an unchanged
build is reused), split by time blocks, then `Trainer.fit` with this CLI's callbacks.
RUN_DIR afterwards holds:

    run.yaml       the run's settings (what --resume continues with)
    dataset/       the prepared dataset (unless --dataset-dir)
    checkpoints/   the last epoch's checkpoint (safetensors + JSON)
    tb/            TensorBoard scalars and reconstruction figures
    model/         the artifact (best validation ELBO) that m2vae-fusion and m2vae-eval load

Under `torchrun` every rank trains on its shard of each epoch and rank 0 writes all files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from m2vae_training import distributed
from m2vae_training.bags import BagError, fingerprint
from m2vae_training.callbacks import (
    CheckpointWriter,
    EarlyStopping,
    EpochEndsTogether,
    TensorBoardLogger,
    restore,
)
from m2vae_training.checkpoint import CheckpointError, checkpoint_epoch, has_checkpoint, load_checkpoint
from m2vae_training.cli_args import positive_int
from m2vae_training.config import (
    ConfigError,
    TrainConfig,
    TrainingSettings,
    load_train_config,
    parse_topic_overrides,
    with_topics,
)
from m2vae_training.dataset import (
    MANIFEST,
    DatasetError,
    PreparedDataset,
    build_dataset,
    load_dataset,
    no_samples_error,
)
from m2vae_training.interrupts import deferred_sigint, sigterm_as_sigint
from m2vae_training.split import Split, time_block_split

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.artifact import METADATA_FILE, ArtifactError, load_model, save_model
from m2vae_ros.atomic import write_atomic
from m2vae_ros.differences import differences, first
from m2vae_ros.objectives import EVALUATION_ESTIMATOR
from m2vae_ros.spec import OBJECTIVES, ModelSpec
from m2vae_ros.trainer import ArrayDataset, Trainer, TrainingDiverged

PROG = "m2vae-train"
RUN_FILE = "run.yaml"
PREVIEW_SAMPLES = 4
# Settings a flag can set; left out on --resume, the run's value stands (see _check_resume).
SETTING_FLAGS = ("epochs", "batch_size", "seed", "latent_dim", "objective", "dataset_dir")
MAX_DIFFERENCES_SHOWN = 5  # of a refused --resume
# What a resumed run must share with its start to continue bit-for-bit (epochs may grow).
# The last three are recorded since 2026-11-27, guard_seconds since 2026-11-28; an older run.yaml
# gains them on resume (guard_seconds as 0, the split it was started with).
FIXED_ON_RESUME = ("bags", "dataset_dir", "dataset", "spec", "batch_size", "lr", "seed", "block_seconds",
                   "guard_seconds", "val_fraction", "patience", "bag_fingerprints", "processes",
                   "device_type")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Train an M²VAE from rosbag2 recordings.")
    parser.add_argument("--bag", nargs="+", required=True, help="rosbag2 recordings (directories or files)")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--config", type=Path, default=None,
                        help="default: the packaged config/train.yaml (on --resume: the run's own)")
    parser.add_argument("--topic", action="append", default=[], metavar="MODALITY=TOPIC",
                        help="read a modality from another topic (repeatable)")
    parser.add_argument("--objective", choices=OBJECTIVES, help="override model.objective")
    parser.add_argument("--epochs", type=positive_int,
                        help="override training.epochs (total, counting resumed)")
    parser.add_argument("--batch-size", type=positive_int, help="override training.batch_size")
    parser.add_argument("--latent-dim", type=positive_int, help="override model.latent_dim")
    parser.add_argument("--device",
                        help="auto (a GPU where there is one), cpu, cuda or cuda:<index>; a GPU asked for "
                             "and absent is an error (default: auto; on --resume the run's device type)")
    parser.add_argument("--seed", type=int, help="override training.seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN_DIR from its last checkpoint (left-out flags: the run's values)")
    parser.add_argument("--dataset-dir", type=Path,
                        help="prepared dataset, e.g. a cache shared by runs (default: RUN_DIR/dataset)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sigterm_as_sigint()  # `kill` and `timeout` leave a checkpoint and a model, like Ctrl-C
    try:
        return train(args, sys.argv if argv is None else [PROG, *argv])
    except (ConfigError, DatasetError, BagError, CheckpointError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the training loop: preparing the dataset, or a second Ctrl-C
        if has_checkpoint(args.out / "checkpoints"):
            print(f"{PROG}: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first epoch; nothing to resume", file=sys.stderr)
        return 130


def train(args: argparse.Namespace, command: list[str]) -> int:
    job = distributed.from_environment()
    device = distributed.training_device(_device_request(args), job)
    distributed.start(job, device)
    try:
        return _train(args, command, job, device)
    finally:
        distributed.stop(job)


def _train(
    args: argparse.Namespace, command: list[str], job: distributed.Distributed, device: torch.device
) -> int:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; it names the run directory")
    config = _load_config(args)
    run = _run_settings(args, config, command, job, device)
    run = _check_resume(out, run, args, job)

    # --- data: rank 0 builds (or reuses) the dataset, the other ranks open it afterwards
    # None: the run directory's own dataset, wherever the run directory is now (it may have moved).
    dataset_dir = Path(run["dataset_dir"]) if run["dataset_dir"] else out / "dataset"
    if job.is_main:
        dataset = build_dataset(run["bags"], config, dataset_dir, progress=True)
    job.barrier()
    if not job.is_main:
        dataset = load_dataset(dataset_dir)
    silent = [m for i, m in enumerate(dataset.spec.modalities) if not dataset.available[:, i].any()]
    if silent:  # a model that never saw a sensor would still be loaded by the node
        recorded = dataset.manifest.get("recorded_topics", {})
        raise no_samples_error("no sample of the bags holds", silent, recorded)
    split = time_block_split(
        dataset.stamps, dataset.bag_index,
        block_seconds=run["block_seconds"], val_fraction=run["val_fraction"], seed=run["seed"],
        guard_seconds=run["guard_seconds"],
    )
    # A sensor whose every sample fell into validation (or the guard) would ship untrained networks.
    trained = dataset.available[split.train].any(axis=0)
    untrained = [m.name for m, seen in zip(dataset.spec.modalities, trained, strict=True) if not seen]
    if untrained:
        raise DatasetError(f"no training sample holds {', '.join(untrained)}: every sample with it lies in "
                           "the validation blocks or their guard; record it for longer, or lower "
                           "training.block_seconds or training.val_fraction")
    if args.resume and (unchecked := _check_same_split(out, run, split)):
        _say(job, unchecked)
    run["split_sha256"] = split.digest()
    if job.is_main:
        _write_yaml(out / RUN_FILE, run)
    _say(job, f"{len(split.train)} training and {len(split.val)} validation samples; {len(split.guarded)} "
              f"left out for lying within {run['guard_seconds']} s of the other set")
    train_set = ArrayDataset(dataset.arrays, dataset.available, split.train)
    val_set = ArrayDataset(dataset.arrays, dataset.available, split.val) if len(split.val) else None

    # --- model and trainer: the run's spec, with each sensor's message type as the bags have it
    spec = ModelSpec.from_dict(run["spec"])
    found = {m.name: m.msg_type for m in dataset.spec.modalities}
    spec = dataclasses.replace(
        spec, modalities=tuple(dataclasses.replace(m, msg_type=found[m.name]) for m in spec.modalities)
    )
    # Built by the in-memory API, so the CLI and MultimodalVAE(spec, seed=...).fit give the same model.
    model = MultimodalVAE(spec, seed=run["seed"]).model
    trainer = distributed.make_trainer(model, job, lr=run["lr"], device=device, seed=run["seed"])
    provenance = _provenance(run, dataset, split, config)

    def write_artifact(trainer: Trainer, epoch: int, val_metrics: dict[str, float]) -> None:
        if job.is_main:
            with deferred_sigint():
                save_model(trainer.model, out / "model", provenance=provenance,
                           metrics={"epoch": epoch, "val": _plain(val_metrics)})

    early_stopping = EarlyStopping(run["patience"], on_improvement=write_artifact)
    checkpoints = CheckpointWriter(out / "checkpoints", early_stopping) if job.is_main else None
    if args.resume:
        epoch, state = load_checkpoint(out / "checkpoints")
        restore(trainer, early_stopping, state)
        if early_stopping.stopped:
            _say(job, f"the run already finished: early stopping ended it after epoch {epoch}")
        else:
            _say(job, f"resuming after epoch {epoch}")
            if early_stopping.estimator != EVALUATION_ESTIMATOR:
                if said := _rescore_best(trainer, early_stopping, val_set, out / "model", run["batch_size"],
                                         write_artifact, job, epochs_left=epoch < run["epochs"]):
                    _say(job, said)
                job.barrier()  # every process has read the checkpoint before the main one rewrites it
                if checkpoints is not None:  # the rescore holds even if this attempt ends in its first epoch
                    checkpoints.save(trainer, epoch)
    epoch_ends: list = [early_stopping]
    tensorboard = None
    if job.is_main:
        # On resume, the steps an interrupted epoch logged past the checkpoint are dropped; a
        # fresh run replaces the events of an earlier attempt that died before its first checkpoint.
        purge_step = trainer.step + 1 if args.resume else None
        if not args.resume:
            shutil.rmtree(out / "tb", ignore_errors=True)
        tensorboard = TensorBoardLogger(out / "tb", *_preview(dataset, split), purge_step=purge_step)
        epoch_ends += [checkpoints, tensorboard]
    callbacks = [EpochEndsTogether(epoch_ends)]

    # --- train; Ctrl-C keeps the last checkpoint and still writes a usable artifact
    start_epoch, started = trainer.epoch, time.perf_counter()
    interrupted, diverged = False, None
    try:
        if not early_stopping.stopped:  # a run early stopping ended is finished, like one that ran all epochs
            trainer.fit(train_set, val_set, epochs=run["epochs"], batch_size=run["batch_size"],
                        callbacks=callbacks, progress=job.is_main)
    except KeyboardInterrupt:
        interrupted = True
    except TrainingDiverged as exc:  # the trainer is back at its last whole epoch
        diverged = exc
    elapsed = time.perf_counter() - started
    if tensorboard is not None:
        tensorboard.close()
    if interrupted:
        if not has_checkpoint(out / "checkpoints"):
            _say(job, "interrupted in the first epoch: nothing was saved; start again without --resume")
            return 130
        # The weights of the last whole epoch, not the half-trained ones of the epoch cut short.
        restore(trainer, early_stopping, load_checkpoint(out / "checkpoints")[1])
        # A signal deferred over the last epoch's writes lands after the run is complete.
        interrupted = not (trainer.epoch >= run["epochs"] or early_stopping.stopped)
        if interrupted:
            _say(job, f"interrupted: --resume continues after epoch {trainer.epoch}, the last checkpoint")
    unchosen = val_set is None or early_stopping.best_epoch == 0
    if job.is_main and unchosen and trainer.epoch:  # epoch 0 here: the loss diverged in the first
        # No validation ELBO ever chose a best model: the artifact is the last epoch's weights.
        write_artifact(trainer, trainer.epoch, {})
    if diverged is not None:
        kept = trainer.epoch if unchosen else early_stopping.best_epoch
        if kept:
            diverged = TrainingDiverged(f"{diverged} {out / 'model'} holds the model of epoch {kept}.",
                                        diverged.history)
        raise diverged
    samples_per_s = (trainer.epoch - start_epoch) * len(train_set) / elapsed if elapsed > 0 else 0.0
    best = "n/a"
    if early_stopping.best_epoch:
        best = f"{early_stopping.best:.4g} (epoch {early_stopping.best_epoch})"
    stopped = ""
    if early_stopping.stopped and not interrupted:
        stopped = (f" (stopped early: the val ELBO last improved at epoch {early_stopping.best_epoch}, "
                   f"patience {run['patience']})")
    if job.is_main:
        print(f"{'interrupted' if interrupted else 'done'}: {trainer.epoch} epochs{stopped}, best val ELBO "
              f"{best}, {samples_per_s:.0f} samples/s, artifact {out / 'model'}", flush=True)
    return 130 if interrupted else 0


def _load_config(args: argparse.Namespace) -> TrainConfig:
    """--config (default config/train.yaml) with --topic overrides; on --resume without
    --config, the settings the run started with, from its run.yaml (so a run trained with
    its own config file resumes with `--resume` alone, and an edited default changes nothing)."""
    topics = parse_topic_overrides(args.topic)
    if args.resume and args.config is None and (args.out / RUN_FILE).is_file():
        return with_topics(_run_config(read_run_file(args.out)), topics)
    return load_train_config(args.config, topics)


def _run_config(run: dict[str, Any]) -> TrainConfig:
    """The TrainConfig that `_run_settings` recorded `run` from (the inverse of its config parts)."""
    if "dataset" not in run:
        raise CheckpointError(f"the run's {RUN_FILE} predates recording its synchronisation settings; "
                              "resume it with the --config it was trained with")
    spec = ModelSpec.from_dict(run["spec"])
    sync = run["dataset"]
    seconds = [ns / 1e9 for ns in sync["timeouts_ns"]]
    timeout = seconds[0] if len(set(seconds)) == 1 else dict(zip(spec.names, seconds, strict=True))
    settings = TrainingSettings(**{f.name: run[f.name] for f in dataclasses.fields(TrainingSettings)
                                   if f.name in run})  # an older run.yaml lacks some (patience)
    return TrainConfig(spec, sync["labels_topic"], sync["slop"], timeout, settings)


def _run_settings(args: argparse.Namespace, config: TrainConfig, command: list[str],
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
    if len(set(bags)) < len(bags):  # its copies' time blocks would land in both splits
        raise ValueError(f"a bag is given twice: {sorted({b for b in bags if bags.count(b) > 1})}")
    run = {
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


def _check_resume(
    out: Path, run: dict[str, Any], args: argparse.Namespace, job: distributed.Distributed
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
    if not has_checkpoint(checkpoints):
        raise CheckpointError(f"--resume: {checkpoints} holds no checkpoint to continue from")
    previous = read_run_file(out)
    previous.setdefault("flags", list(SETTING_FLAGS))  # a run.yaml from before the key: keep them all
    # A flag left out keeps what the run's flag gave (epochs and the dataset directory always:
    # a run may be extended, and no config holds the directory). A setting that came from the
    # config file is compared with a --config given now (without one, `_load_config` took the run's).
    kept = [key for key in SETTING_FLAGS if key in previous["flags"] or key in ("epochs", "dataset_dir")]
    left_out = [key for key in kept if getattr(args, key) is None]
    if args.config is not None and "epochs" in left_out and run["epochs"] != previous.get("epochs"):
        _say(job, f"--resume keeps the run's {previous.get('epochs')} epochs; the --config's "
             f"training.epochs {run['epochs']} counts only with --epochs {run['epochs']}")
    run = {**run, **{key: previous[key] for key in left_out if key in previous}}
    spec = previous["spec"]
    run["spec"] = {**run["spec"], **{key: spec[key] for key in left_out if key in spec}}
    # The spec's message types are filled in from the bags; compare what the user chose.
    changed = [difference for k in FIXED_ON_RESUME if k in previous
               for difference in differences(k, _comparable(k, previous[k]), _comparable(k, run[k]))]
    if changed:
        raise ValueError(f"--resume: the settings differ from the run in {out / RUN_FILE}: "
                         f"{first(changed, MAX_DIFFERENCES_SHOWN)}")
    previous.setdefault("guard_seconds", 0.0)
    done = checkpoint_epoch(checkpoints)
    if run["epochs"] < done:
        raise ValueError(f"--resume: the run has trained {done} epochs already, more than --epochs "
                         f"{run['epochs']}; its model is in {out / 'model'}")
    # `run` fills in what an older run.yaml lacks, so later resumes check it too. The command
    # that started the run stays (with its directory, unknown for an older run.yaml); each
    # resume's own command is added after it.
    resumes = [*previous.get("resumes", []), {"command": run["command"], "cwd": run["cwd"]}]
    return {**run, **previous, "cwd": previous.get("cwd"), "epochs": run["epochs"], "resumes": resumes}


def _check_same_split(out: Path, run: dict[str, Any], split: Split) -> str | None:
    """Refuse a resume whose split differs from the one recorded for the run: a newer version of
    the split (or of NumPy's shuffle) may send to validation frames the run has trained on.

    A run.yaml from before the digest was recorded, where its guard was on, is checked by the
    training, validation and guarded sample counts in the artifact's provenance (guard 0
    splits as it always has); returns a warning where that artifact cannot tell them.
    """
    counts = (len(split.train), len(split.val), len(split.guarded))
    recorded = run.get("split_sha256")
    if recorded == split.digest() or (recorded is None and run["guard_seconds"] == 0):
        return None
    started = None
    if recorded is None:
        try:
            dataset = yaml.safe_load((out / "model" / METADATA_FILE).read_text(encoding="utf-8"))
            dataset = dataset["provenance"]["dataset"]
            started = (dataset["train_samples"], dataset["val_samples"], dataset["guarded_samples"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            return (f"the split could not be checked against the run's ({out / 'model'} holds no sample "
                    f"counts: {exc!r}); it is recorded as this version draws it")
        if started == counts:
            return None
    before = f"{started[0]} and {started[1]} at the start, " if started else ""
    raise CheckpointError(
        f"--resume: the split now differs from the one recorded for {out} (a newer m2vae-train or NumPy; "
        f"training and validation samples: {before}{counts[0]} and {counts[1]} now), so validation may score "
        "frames the run has trained on; start a new run with another --out, or resume with the versions "
        "that started this one"
    )


def _rescore_best(
    trainer: Trainer, early_stopping: EarlyStopping, val_set: ArrayDataset | None, artifact: Path,
    batch_size: int, write_artifact: Callable[[Trainer, int, dict[str, float]], None],
    job: distributed.Distributed, *, epochs_left: bool,
) -> str | None:
    """Score the best epoch's model (the artifact) as validation scores now, so that the epochs to
    come compare with it on equal terms; returns what happened, for the user (None: the run
    has no validation, so nothing changes for it).

    The artifact's metrics are rewritten to match, and the trainer's state is left as the
    checkpoint had it. Every process does the same, so their stopping agrees.
    """
    old, best_epoch = early_stopping.estimator, early_stopping.best_epoch
    then = ("the next epoch sets the best" if epochs_left
            else "no epoch is left to train, so the artifact becomes the last epoch's model")
    if val_set is None:
        early_stopping.rescore(None)
        return None
    if not best_epoch:
        early_stopping.rescore(None)
        return f"no best val ELBO yet: validation is now scored with {EVALUATION_ESTIMATOR}"
    try:
        best = load_model(artifact)
        same = best.metadata["metrics"].get("epoch") == best_epoch
        problem = None if same else "holds another epoch's model"
    except ArtifactError as exc:
        problem = f"does not load ({exc})"
    job.barrier()  # every process has read the artifact before the main one rewrites it
    if problem is not None:  # killed between the artifact and the checkpoint, or damaged since
        early_stopping.rescore(None)
        return (f"the best val ELBO (epoch {best_epoch}) was scored with {old}, and {artifact} "
                f"{problem}; {then}")
    resumed = trainer.state_dict()
    trainer.model.load_state_dict(best.model.state_dict())
    try:
        early_stopping.rescore(trainer.evaluate(val_set, batch_size=batch_size))
        if early_stopping.best_epoch:
            write_artifact(trainer, best_epoch, early_stopping.best_metrics)
    finally:
        trainer.load_state_dict(resumed)
    if not early_stopping.best_epoch:
        return (f"the best val ELBO (epoch {best_epoch}) was scored with {old}; rescored with "
                f"{EVALUATION_ESTIMATOR}, it is not finite: {then}")
    return (f"the best val ELBO (epoch {best_epoch}) was scored with {old}; rescored with "
            f"{EVALUATION_ESTIMATOR}: {early_stopping.best:.4g}")


def _device_request(args: argparse.Namespace) -> str:
    """--device; left out, the run's device type on --resume (a CPU run on a GPU machine resumes
    on the CPU instead of being refused as another device type), else auto."""
    if args.device is not None:
        return args.device
    if args.resume and (args.out / RUN_FILE).is_file():
        return str(read_run_file(args.out).get("device_type", "auto"))
    return "auto"


def read_run_file(out: Path) -> dict[str, Any]:
    """RUN_DIR/run.yaml as a mapping, or CheckpointError naming the damage."""
    path = out / RUN_FILE
    try:
        run = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the run's settings are unknown") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if not isinstance(run, dict) or not {"spec", "epochs"} <= set(run):
        raise CheckpointError(f"{path} is damaged: not the settings of a run")
    return run


def _comparable(key: str, value: Any) -> Any:
    if key == "spec":
        return ModelSpec.from_dict(value).to_dict()
    return value


def _provenance(run: dict[str, Any], dataset: PreparedDataset, split: Split, config: TrainConfig) -> dict:
    """Where the model came from: bags, dataset, topics, settings and command line."""
    manifest_path = dataset.directory / MANIFEST
    return {
        "bags": dataset.manifest["bags"],
        "dataset": {
            "directory": str(Path(dataset.directory).resolve()),
            "manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
            "samples": len(dataset),
            "train_samples": len(split.train),
            "val_samples": len(split.val),
            "guarded_samples": len(split.guarded),  # in neither set: too close to the other
        },
        "topics": {m.name: {"topic": m.topic, "msg_type": m.msg_type} for m in dataset.spec.modalities},
        "labels_topic": config.labels_topic,
        "sync": {"slop": config.slop, "timeout": config.timeout},
        "command": run["command"],  # the one that started the run
        "cwd": run["cwd"],
        "resumes": run.get("resumes", []),  # each --resume's command and directory, in order
        "seed": run["seed"],
        "epochs": run["epochs"],  # the run's limit; the model's own epoch is in its metrics
        "processes": run["processes"],  # torchrun ranks: the effective batch is batch_size × processes
        "device_type": run["device_type"],
        "batch_size": run["batch_size"],
        "lr": run["lr"],
        "split": {"block_seconds": run["block_seconds"], "val_fraction": run["val_fraction"],
                  "guard_seconds": run["guard_seconds"]},
    }


def _preview(dataset: PreparedDataset, split: Split) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A few validation samples (training samples if there is no validation) with every sensor."""
    pool = split.val if len(split.val) else split.train
    complete = pool[dataset.available[pool].all(axis=1)]
    if not len(complete):
        return {}, {}
    rows = np.unique(complete[np.linspace(0, len(complete) - 1, PREVIEW_SAMPLES).astype(int)])
    arrays = {name: np.asarray(a[rows], np.float32) for name, a in dataset.arrays.items()}
    return arrays, {name: np.asarray(m[rows]) for name, m in dataset.masks.items()}


def _plain(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics as YAML-safe floats (NaN/inf → None)."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())


def _say(job: distributed.Distributed, text: str) -> None:
    if job.is_main:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
