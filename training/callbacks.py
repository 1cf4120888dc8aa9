"""What `m2vae-train` adds to the shared Trainer: early stopping, checkpoints, TensorBoard.

Each is a `Callback` (see m2vae_ros/trainer.py). Order matters and is the order given to
`fit`: early stopping first (it decides whether this epoch is the best), then the
checkpoint (which records the early-stopping counters), then TensorBoard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from m2vae_training.checkpoint import CheckpointError, save_checkpoint
from m2vae_training.evaluation import reconstruct_from_each_subset
from m2vae_training.figures import recon_figure
from m2vae_training.interrupts import deferred_sigint
from torch.utils.tensorboard import SummaryWriter

from m2vae_ros.objectives import Loss
from m2vae_ros.trainer import Callback, Trainer

VAL_KEY = "elbo"  # Trainer.evaluate's mean validation ELBO (−loss of the model's objective)


class EarlyStopping(Callback):
    """Stop when the validation ELBO has not improved for `patience` epochs.

    `on_improvement(trainer, epoch, val_metrics)` runs whenever a new best is reached;
    the CLI uses it to write the artifact, so the artifact always holds the best model.
    Without a validation set nothing is compared and training runs all its epochs.
    `stopped` follows from the checkpointed `bad_epochs` (patience is fixed on resume), so
    a resumed run knows when the uninterrupted one ended and does not train past it.
    """

    def __init__(
        self, patience: int, on_improvement: Callable[[Trainer, int, dict[str, float]], None] | None = None
    ) -> None:
        if patience < 1:
            raise ValueError(f"training.patience must be ≥ 1, got {patience}")
        self.patience = patience
        self.on_improvement = on_improvement
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_metrics: dict[str, float] = {}

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        value = val_metrics.get(VAL_KEY)
        if value is None:
            return False
        if math.isfinite(value) and value > self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_metrics = dict(val_metrics)
            if self.on_improvement is not None:
                self.on_improvement(trainer, epoch, val_metrics)
            return False
        self.bad_epochs += 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        """Whether validation has not improved for `patience` epochs: training is over."""
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_metrics": self.best_metrics,
            "stopped": self.stopped,  # derived; written for whoever reads checkpoint.json
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.bad_epochs, self.best_metrics = int(state["bad_epochs"]), dict(state["best_metrics"])


class CheckpointWriter(Callback):
    """After every epoch, an atomic checkpoint of the trainer plus the early-stopping state."""

    def __init__(self, directory: Path, early_stopping: EarlyStopping) -> None:
        self.directory = directory
        self.early_stopping = early_stopping

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        self.save(trainer, epoch)
        return False

    def save(self, trainer: Trainer, epoch: int) -> None:
        state = {"trainer": trainer.state_dict(), "early_stopping": self.early_stopping.state_dict()}
        with deferred_sigint():
            save_checkpoint(self.directory, state, epoch=epoch)


class EpochEndsTogether(Callback):
    """`callbacks` with Ctrl-C held over each epoch's end, so that an epoch's artifact (written
    by EarlyStopping) and its checkpoint are both written or neither: a Ctrl-C between them
    left a model of epoch k + 1 beside a checkpoint and a final line of epoch k."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_step_end(self, trainer: Trainer, step: int, loss: Loss) -> None:
        for callback in self.callbacks:
            callback.on_step_end(trainer, step, loss)

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        with deferred_sigint():
            stops = [cb.on_epoch_end(trainer, epoch, train_metrics, val_metrics) for cb in self.callbacks]
        return any(stops)


class EpochLog(Callback):
    """One line per finished epoch: each epoch's progress bar is cleared, so this is what stays.

    The bar shows the training loss (−ELBO: it falls); the line adds the validation ELBO
    (it rises) and marks the epoch whose model the artifact holds.
    """

    def __init__(self, epochs: int, early_stopping: EarlyStopping, say: Callable[[str], None]) -> None:
        self.epochs = epochs
        self.early_stopping = early_stopping
        self.say = say

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        line = f"epoch {epoch}/{self.epochs}: train loss {train_metrics.get('loss', math.nan):.4g}"
        if VAL_KEY in val_metrics:
            best = " (best: the artifact)" if self.early_stopping.best_epoch == epoch else ""
            line += f", val ELBO {val_metrics[VAL_KEY]:.4g}{best}"
        self.say(line)
        return False


def restore(trainer: Trainer, early_stopping: EarlyStopping, state: dict[str, Any]) -> None:
    """Inverse of `CheckpointWriter`: put a loaded checkpoint back into the run's objects.

    The loader checks the tensors' hash, not the state's shape: a hand-edited checkpoint.json,
    or one copied from a run of another model, fails here as a CheckpointError, not a traceback.
    """
    try:
        trainer.load_state_dict(state["trainer"])
        early_stopping.load_state_dict(state["early_stopping"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this run (damaged, or another model's): "
                              f"{type(exc).__name__}: {exc}") from None


class TensorBoardLogger(Callback):
    """Scalars for every objective term (train and val) and real-vs-reconstruction figures.

    Scalars are tagged ``train/<key>`` and ``val/<key>`` with the Loss.terms keys
    (``elbo/camera+lidar``, ``kl/camera+lidar|camera``, …) per epoch, plus the batch loss
    every `step_every` steps. `preview` holds a few validation samples ([K, *shape] per
    modality, all modalities present) that are reconstructed from each subset per epoch.
    """

    def __init__(
        self,
        log_dir: Path,
        preview: dict[str, np.ndarray] | None = None,
        preview_masks: dict[str, np.ndarray] | None = None,
        step_every: int = 20,
        purge_step: int | None = None,
    ) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self.preview = preview
        self.preview_masks = preview_masks
        self.step_every = step_every

    def on_step_end(self, trainer: Trainer, step: int, loss: Loss) -> None:
        if step % self.step_every == 0:
            self.writer.add_scalar("step/loss", loss.total.detach().item(), step)

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        for split, metrics in (("train", train_metrics), ("val", val_metrics)):
            for key, value in metrics.items():
                self.writer.add_scalar(f"{split}/{key}", value, epoch)
        if self.preview:
            spec = trainer.model.spec
            recons = reconstruct_from_each_subset(trainer.model, self.preview)
            figure = recon_figure(spec, self.preview, recons, self.preview_masks)
            self.writer.add_figure("reconstruction", figure, epoch)
        self.writer.flush()
        return False

    def close(self) -> None:
        self.writer.close()
