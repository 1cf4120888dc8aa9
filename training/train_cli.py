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
import contextlib
import dataclasses
import functools
import hashlib
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from m2vae_training import distributed
from m2vae_training.bags import BagError
from m2vae_training.callbacks import (
    CheckpointWriter,
    EarlyStopping,
    EpochEndsTogether,
    EpochLog,
    TensorBoardLogger,
    restore,
)
from m2vae_training.checkpoint import CheckpointError, has_checkpoint, load_checkpoint
from m2vae_training.config import ConfigError, TrainConfig
from m2vae_training.dataset import (
    MANIFEST,
    DatasetError,
    PreparedDataset,
    build_dataset,
    load_dataset,
)
from m2vae_training.dataset_notes import no_samples_error, notes
from m2vae_training.error_line import print_error
from m2vae_training.interrupts import deferred_sigint, interrupted_exit_status, sigterm_as_sigint
from m2vae_training.run_file import (
    RunFile,
    arithmetic_drift,
    check_resume,
    check_same_split,
    device_request,
    load_config,
    read_resumed_run,
    run_bags,
    run_settings,
)
from m2vae_training.run_lock import run_lock
from m2vae_training.split import Split, time_block_split

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.artifact import save_model
from m2vae_ros.cli_args import positive_int
from m2vae_ros.spec import OBJECTIVES, ModelSpec
from m2vae_ros.subsets import subset_name, unheld
from m2vae_ros.trainer import ArrayDataset, Trainer, TrainingDiverged

PROG = "m2vae-train"
PREVIEW_SAMPLES = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Train an M²VAE from rosbag2 recordings.")
    parser.add_argument("--bag", nargs="+",
                        help="rosbag2 recordings (directories or files); required unless --resume, which "
                             "takes the run's")
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
    args = parser.parse_args(argv)
    if args.bag is None and not args.resume:
        parser.error("the following arguments are required: --bag")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sigterm_as_sigint()  # `kill` and `timeout` leave a checkpoint and a model, like Ctrl-C
    try:
        return train(args, sys.argv if argv is None else [PROG, *argv])
    except (ConfigError, DatasetError, BagError, CheckpointError, ValueError, OSError) as exc:
        print_error(PROG, exc, _rank_label())
        return 2
    except KeyboardInterrupt:  # outside the training loop: preparing the dataset, or a second Ctrl-C
        if has_checkpoint(args.out / "checkpoints"):
            print(f"{PROG}: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first epoch; nothing to resume", file=sys.stderr)
        return interrupted_exit_status()  # 130 for Ctrl-C, 143 for a SIGTERM


def train(args: argparse.Namespace, command: list[str]) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; it names the run directory")
    job = distributed.from_environment()
    previous = read_resumed_run(args, job)
    device = distributed.training_device(device_request(args, previous), job)
    distributed.start(job, device)
    try:
        with run_lock(args.out) if job.is_main else contextlib.nullcontext():
            return _train(args, command, previous, job, device)
    finally:
        distributed.stop(job)


def _train(
    args: argparse.Namespace, command: list[str], previous: RunFile | None, job: distributed.Distributed,
    device: torch.device,
) -> int:
    out: Path = args.out
    if args.bag is None and previous is not None:  # --resume without --bag: the run's recordings
        args.bag = run_bags(out, previous)
    config = load_config(args, previous)
    run = run_settings(args, config, command, job, device)
    say = functools.partial(_say, job)
    run = check_resume(out, run, previous, args, say)

    # --- data: rank 0 builds (or reuses) the dataset, the other ranks open it afterwards
    # None: the run directory's own dataset, wherever the run directory is now (it may have moved).
    dataset_dir = Path(run.dataset_dir) if run.dataset_dir else out / "dataset"
    if job.is_main:
        dataset = build_dataset(list(run.bags), config, dataset_dir, progress=True)
        for line in notes(dataset)[1:]:  # damage, sensors in separate bags, topics that gave nothing, ...
            say(line)
    try:
        job.barrier()
    except RuntimeError as exc:  # gloo and NCCL both raise it when rank 0 is gone, or the wait timed out
        if job.is_main:
            raise
        raise DatasetError("rank 0 stopped before the dataset was ready (its line says why), or its build "
                           "outlasted the wait (build it with m2vae-dataset first)") from exc
    if not job.is_main:
        dataset = load_dataset(dataset_dir)
    if silent := dataset.silent_modalities():  # a model that never saw a sensor would still load in the node
        raise no_samples_error(silent, dataset.manifest)
    split = time_block_split(
        dataset.stamps, dataset.bag_index,
        block_seconds=run.block_seconds, val_fraction=run.val_fraction, seed=run.seed,
        guard_seconds=run.guard_seconds,
    )
    # A sensor whose every sample fell into validation (or the guard) would ship untrained networks.
    trained = dataset.available[split.train].any(axis=0)
    untrained = [m.name for m, seen in zip(dataset.spec.modalities, trained, strict=True) if not seen]
    if untrained:
        raise DatasetError(f"no training sample holds {', '.join(untrained)}: every sample with it lies in "
                           "the validation blocks or their guard; record it for longer, or lower "
                           "training.block_seconds or training.val_fraction")
    if args.resume:
        check_same_split(out, run, split)
    run = dataclasses.replace(run, split_sha256=split.digest())
    if job.is_main:
        run.write(out)
    say(f"{len(split.train)} training and {len(split.val)} validation samples; {len(split.guarded)} "
        f"left out for lying within {run.guard_seconds} s of the other set")
    train_set = ArrayDataset(dataset.arrays, dataset.available, split.train)
    val_set = ArrayDataset(dataset.arrays, dataset.available, split.val) if len(split.val) else None

    # --- model and trainer: the run's spec, with each sensor's message type as the bags have it
    spec = ModelSpec.from_dict(run.spec)
    found = {m.name: m.msg_type for m in dataset.spec.modalities}
    spec = dataclasses.replace(
        spec, modalities=tuple(dataclasses.replace(m, msg_type=found[m.name]) for m in spec.modalities)
    )
    # Built by the in-memory API, so the CLI and MultimodalVAE(spec, seed=...).fit give the same model.
    model = MultimodalVAE(spec, seed=run.seed).model
    if unpaired := unheld(dataset.available[split.train], [int(key) for key in model.heads]):
        say(f"warning: no training sample holds all of {[subset_name(s, spec.names) for s in unpaired]}: "
            "their encoders stay at their initial weights, which the node uses whenever those sensors are "
            "alive together (recorded into separate bags? m2vae-dataset says)")
    trainer = distributed.make_trainer(model, job, lr=run.lr, device=device, seed=run.seed)
    provenance = _provenance(run, dataset, split, config)

    def write_artifact(trainer: Trainer, epoch: int, val_metrics: dict[str, float]) -> None:
        if job.is_main:
            with deferred_sigint():
                save_model(trainer.model, out / "model", provenance=provenance,
                           metrics={"epoch": epoch, "val": _plain(val_metrics)})

    early_stopping = EarlyStopping(run.patience, on_improvement=write_artifact)
    checkpoints = CheckpointWriter(out / "checkpoints", early_stopping) if job.is_main else None
    if args.resume:
        epoch, state = load_checkpoint(out / "checkpoints")
        restore(trainer, early_stopping, state)
        if early_stopping.stopped:
            say(f"the run already finished: early stopping ended it after epoch {epoch}")
        elif epoch < run.epochs and (drift := arithmetic_drift(run)):
            say(f"resuming after epoch {epoch} with {drift}: the weights will not be bit-for-bit those of "
                "an uninterrupted run")
        else:
            say(f"resuming after epoch {epoch}")
    epoch_ends: list = [early_stopping]
    tensorboard = None
    if job.is_main:
        # On resume, the steps an interrupted epoch logged past the checkpoint are dropped; a
        # fresh run replaces the events of an earlier attempt that died before its first checkpoint.
        purge_step = trainer.step + 1 if args.resume else None
        if not args.resume:
            shutil.rmtree(out / "tb", ignore_errors=True)
        tensorboard = TensorBoardLogger(out / "tb", *_preview(dataset, split), purge_step=purge_step)
        epoch_ends += [checkpoints, tensorboard, EpochLog(run.epochs, early_stopping, say)]
    callbacks = [EpochEndsTogether(epoch_ends)]

    # --- train; Ctrl-C keeps the last checkpoint and still writes a usable artifact
    start_epoch, started = trainer.epoch, time.perf_counter()
    interrupted, diverged = False, None
    try:
        if not early_stopping.stopped:  # a run early stopping ended is finished, like one that ran all epochs
            trainer.fit(train_set, val_set, epochs=run.epochs, batch_size=run.batch_size,
                        callbacks=callbacks, progress=job.is_main)
    except KeyboardInterrupt:
        interrupted = True
    except TrainingDiverged as exc:  # the trainer is back at its last whole epoch
        diverged = exc
    elapsed = time.perf_counter() - started
    if tensorboard is not None:
        tensorboard.close()

    # --- the end: the last whole epoch's state, a model in RUN_DIR/model, one line on how it went
    if interrupted and not has_checkpoint(out / "checkpoints"):
        say("interrupted in the first epoch: nothing was saved; start again without --resume")
        return interrupted_exit_status()
    cut_short = interrupted and _rewind_to_last_checkpoint(trainer, early_stopping, run.epochs, out)
    if cut_short:
        say(f"interrupted: --resume continues after epoch {trainer.epoch}, the last checkpoint")
    unchosen = val_set is None or early_stopping.best_epoch == 0  # no validation ELBO chose a best model
    if job.is_main and unchosen and trainer.epoch:  # epoch 0 here: the loss diverged in the first
        write_artifact(trainer, trainer.epoch, {})  # the artifact is the last epoch's weights
    if diverged is not None:
        kept = trainer.epoch if unchosen else early_stopping.best_epoch
        raise _divergence_naming_the_kept_model(diverged, kept, out)
    if job.is_main:
        speed = _speed(trainer.epoch - start_epoch, len(train_set), elapsed)
        print(_summary(trainer.epoch, early_stopping, run.patience, cut_short, speed, out), flush=True)
    return interrupted_exit_status() if cut_short else 0


def _rewind_to_last_checkpoint(
    trainer: Trainer, early_stopping: EarlyStopping, epochs: int, out: Path
) -> bool:
    """Put an interrupted run back at its last checkpoint; returns whether it is unfinished (cut short).

    The weights of the last whole epoch, not the half-trained ones of the epoch cut short. A
    signal deferred over the last epoch's writes lands after the run is complete: nothing is
    left to resume then.
    """
    restore(trainer, early_stopping, load_checkpoint(out / "checkpoints")[1])
    return not (trainer.epoch >= epochs or early_stopping.stopped)


def _divergence_naming_the_kept_model(diverged: TrainingDiverged, kept: int, out: Path) -> TrainingDiverged:
    """The divergence, with the epoch whose model RUN_DIR/model holds (none when it diverged in the first)."""
    if not kept:
        return diverged
    return TrainingDiverged(f"{diverged} {out / 'model'} holds the model of epoch {kept}.", diverged.history)


def _speed(epochs: int, samples_per_epoch: int, elapsed: float) -> str:
    """', N samples/s with end-of-epoch work' over the epochs this command trained; '' for none
    (--resume of a finished run). Validation, checkpoints and figures are in the time, so it
    reads below the progress bar's rate, which counts the training steps alone."""
    if not (epochs and elapsed > 0):
        return ""
    return f", {epochs * samples_per_epoch / elapsed:.0f} samples/s with end-of-epoch work"


def _summary(
    epochs: int, early_stopping: EarlyStopping, patience: int, cut_short: bool, speed: str, out: Path
) -> str:
    """The run's last line, on stdout: how far it got and why it ended, the best val ELBO, the artifact."""
    best = "n/a"
    if early_stopping.best_epoch:
        best = f"{early_stopping.best:.4g} (epoch {early_stopping.best_epoch})"
    stopped = ""
    if early_stopping.stopped and not cut_short:
        stopped = (f" (stopped early: the val ELBO last improved at epoch {early_stopping.best_epoch}, "
                   f"patience {patience})")
    ending = "interrupted" if cut_short else "done"
    return f"{ending}: {epochs} epochs{stopped}, best val ELBO {best}{speed}, artifact {out / 'model'}"


def _provenance(run: RunFile, dataset: PreparedDataset, split: Split, config: TrainConfig) -> dict:
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
        # The node stamps the reconstruction of a sensor it has not heard yet with its recorded frame.
        "topics": {m.name: {"topic": m.topic, "msg_type": m.msg_type,
                            "frame_id": dataset.manifest["topics"][m.topic].get("frame_id", "")}
                   for m in dataset.spec.modalities},
        "labels_topic": config.labels_topic,
        "sync": {"slop": config.slop, "timeout": config.timeout},
        "command": list(run.command),  # the one that started the run
        "cwd": run.cwd,
        "resumes": list(run.resumes),  # each --resume's command and directory, in order
        "seed": run.seed,
        "epochs": run.epochs,  # the run's limit; the model's own epoch is in its metrics
        "processes": run.processes,  # torchrun ranks: the effective batch is batch_size × processes
        "device_type": run.device_type,
        "batch_size": run.batch_size,
        "lr": run.lr,
        "split": {"block_seconds": run.block_seconds, "val_fraction": run.val_fraction,
                  "guard_seconds": run.guard_seconds},
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


def _rank_label() -> str:
    """' (rank 1 of 2)' under torchrun, else ''. Every rank checks the data it trains on and stops
    on its own, so a problem in data they share is printed by each; a rank's own (a node that
    cannot see the dataset directory) must not be lost, so none is left out."""
    try:
        job = distributed.from_environment()
    except ValueError:  # the error being printed may be this one
        return ""
    return f" (rank {job.rank} of {job.world_size})" if job.world_size > 1 else ""


def _say(job: distributed.Distributed, text: str) -> None:
    if job.is_main:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
