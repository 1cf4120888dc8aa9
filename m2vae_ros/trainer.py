"""The one training loop, used by the in-memory API and the training CLI alike.

Read `Trainer.fit` top to bottom: for each epoch, visit the training samples in a
permutation seeded by (seed, epoch), compute the objective of `model.spec.objective`,
step Adam, then evaluate on the validation set and ask the callbacks whether to stop.
Everything the CLI adds (TensorBoard, checkpoints, early stopping, Ctrl-C, torchrun)
is a `Callback` or a small override of `begin_epoch`/`epoch_order`/`compute_loss`/`pooled`.

Determinism: the shuffle depends only on (seed, epoch) and the reparameterisation noise
comes from the trainer's own generator, whose state is part of `state_dict()`, so a run
resumed from the state after epoch k continues bit-for-bit like the uninterrupted run.
(Under torchrun each rank reseeds its generator per epoch instead: see `begin_epoch`.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import Loss, evaluation_generator, loss
from m2vae_ros.progress import progress_bar


def checked_availability(available: np.ndarray | None, n: int, names: Sequence[str]) -> np.ndarray:
    """The availability mask as a bool [n, len(names)] array (all True when None); ValueError otherwise.

    A numeric mask of only 0s and 1s is taken as bool; any other value is refused rather
    than read as "present".
    """
    if available is None:
        return np.ones((n, len(names)), dtype=bool)
    available = np.asarray(available)
    if available.dtype.kind in "iuf" and np.isin(available, (0, 1)).all():
        available = available.astype(bool)
    if available.dtype != np.bool_ or available.shape != (n, len(names)):
        raise ValueError(
            f"available must be bool (or 0/1) [{n}, {len(names)}] (columns {list(names)}), "
            f"got {available.dtype} {list(available.shape)}"
        )
    return available


class ArrayDataset:
    """Samples as arrays [N, *shape] (np.memmap works), an availability mask and a row selection.

    `available` is bool [N, len(arrays)], columns in the order of `arrays`; None means
    every modality is present everywhere. `indices` selects the rows this dataset
    consists of (a train/val split of one prepared dataset); None means all rows.
    A batch is read with one sorted fancy index per array, which for memmaps is one
    sequential pass instead of one read per sample.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        available: np.ndarray | None = None,
        indices: np.ndarray | None = None,
    ) -> None:
        if not arrays:
            raise ValueError("a dataset needs at least one modality array")
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"modality arrays differ in length: {lengths}")
        n = next(iter(lengths.values()))
        self.arrays = dict(arrays)
        self.names = tuple(arrays)
        self.available = checked_availability(available, n, self.names)
        if indices is None:
            indices = np.arange(n)
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"indices must be a 1-D integer array, got {indices.dtype} {list(indices.shape)}"
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}), got [{indices.min()}, {indices.max()}]")
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, positions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """float32 arrays and the availability rows of dataset positions (returned in row order)."""
        rows = np.sort(self.indices[positions])
        arrays = {}
        for name, array in self.arrays.items():
            values = np.asarray(array[rows], dtype=np.float32)
            if not np.isfinite(values).all():
                bad = rows[~np.isfinite(values.reshape(len(rows), -1)).all(1)]
                raise ValueError(f"modality {name!r}: non-finite values in rows {bad[:5].tolist()}")
            arrays[name] = values
        return arrays, self.available[rows]


@dataclass
class History:
    """Per-epoch mean metrics of the epochs one `fit` call ran.

    Index 0 is the call's first epoch: epoch k + 1 when it continues a trainer resumed
    after epoch k, so a resumed call's history does not repeat the earlier epochs.
    ``"elbo"`` is −``"loss"``: the bound the model's objective maximises. For M²VAE that is
    L(M); JMVAE-kl's is lower than the joint ELBO by its α terms, and MVAE's sums the ELBOs
    of several subsets. To compare objectives, compare one subset's ``"elbo/<subset>"``.
    """

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)


class Callback:
    """Hooks into `Trainer.fit`; subclasses override what they need."""

    def on_step_end(self, trainer: Trainer, step: int, loss: Loss) -> None:
        """After each optimiser step (`step` counts from 1 over the whole run)."""

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]
    ) -> bool:
        """After each epoch (`epoch` counts from 1); return True to stop training."""
        return False


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: every later step would only spread it.

    `history` holds the epochs of the same `fit` call that finished before it.
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class Trainer:
    """Adam on the model's objective, with deterministic shuffling, noise and resume."""

    def __init__(
        self, model: M2VAE, *, lr: float = 1e-3, device: str | torch.device = "cpu", seed: int = 0
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.seed = seed
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimiser steps

    def fit(
        self,
        train: ArrayDataset,
        val: ArrayDataset | None = None,
        *,
        epochs: int,
        batch_size: int,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> History:
        """Train until `epochs` epochs are complete in total (a resumed run continues to it)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self._check(train)
        if val is not None:
            self._check(val)
        history = History()
        while self.epoch < epochs:
            before = self.state_dict()  # what a diverged epoch falls back to
            self.model.train()
            self.begin_epoch(self.epoch)
            order = self.epoch_order(train, self.epoch)
            totals = LossMeans()
            # Closed (and cleared) however the epoch ends, so an error said next starts its own line.
            with progress_bar(enabled=progress, total=len(order), unit="sample", unit_scale=True,
                              desc=f"epoch {self.epoch + 1}/{epochs}", leave=False) as bar:
                for x, available in self._batches(train, order, batch_size):
                    result = self.compute_loss(x, available)
                    if not result.total.requires_grad:  # no sample in the batch had any modality
                        continue
                    self.optimizer.zero_grad(set_to_none=True)
                    result.total.backward()
                    self.optimizer.step()
                    self.step += 1
                    totals.add(result, available)
                    bar.update(len(available))
                    if progress:  # .item() waits for the GPU: only when someone reads the bar
                        bar.set_postfix(loss=f"{result.total.item():.4g}", refresh=False)
                    for callback in callbacks:
                        callback.on_step_end(self, self.step, result)
            train_metrics = self.pooled(totals).means()
            if problem := self._divergence(train_metrics, train, batch_size):
                self.load_state_dict(before)
                raise TrainingDiverged(
                    f"epoch {self.epoch + 1}: {problem}, so training stops and the model stays as it was "
                    f"after epoch {self.epoch}. Look for extreme values in the data (one 1e20 is enough), "
                    "or lower the learning rate.",
                    history,
                )
            self.epoch += 1
            val_metrics = self.evaluate(val, batch_size=batch_size) if val is not None else {}
            history.train.append(train_metrics)
            history.val.append(val_metrics)
            stops = [cb.on_epoch_end(self, self.epoch, train_metrics, val_metrics) for cb in callbacks]
            if any(stops):
                break
        return history

    @torch.no_grad()
    def _divergence(
        self, train_metrics: dict[str, float], train: ArrayDataset, batch_size: int
    ) -> str | None:
        """Why the epoch just trained cannot be kept, or None.

        The epoch's mean loss is made before each step, so the last steps can leave weights
        that are not finite, or finite but too large for float32 arithmetic, while that mean
        reads finite. So the weights are checked, then scored once more on the first training
        rows that hold a sensor; every torchrun rank holds the same rows and weights, so all
        ranks decide the same.
        """
        if not math.isfinite(train_metrics.get("loss", 0.0)):
            return f"the training loss is {train_metrics['loss']}"
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return "the weights it ended with are not finite"
        positions = np.flatnonzero(train.available[train.indices].any(axis=1))[:batch_size]
        if len(positions) == 0:
            return None
        x, available = next(self._batches(train, positions, batch_size))
        after = loss(self.model, x, available, generator=evaluation_generator(self.device)).total
        if not torch.isfinite(after):
            return f"the loss of the weights it ended with is {after.item()}"
        return None

    @torch.no_grad()
    def evaluate(self, data: ArrayDataset, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss, ELBO and terms over `data`, on `evaluation_generator`'s noise (the same draws
        at every epoch)."""
        self._check(data)
        self.model.eval()
        totals = LossMeans()
        noise = evaluation_generator(self.device)
        for x, available in self._batches(data, np.arange(len(data)), batch_size):
            totals.add(loss(self.model, x, available, generator=noise), available)
        return totals.means()

    def begin_epoch(self, epoch: int) -> None:
        """Before epoch `epoch` (from 0) trains; the DDP trainer reseeds its ranks' noise here.

        One process's generator simply runs on across epochs: its state in `state_dict()`
        is all a resume needs.
        """

    def pooled(self, totals: LossMeans) -> LossMeans:
        """An epoch's training sums from every process: a single process has them all; DDP pools ranks."""
        return totals

    def epoch_order(self, data: ArrayDataset, epoch: int) -> np.ndarray:
        """Dataset positions in the order epoch `epoch` (from 0) visits them: fixed by (seed, epoch)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(data))

    def compute_loss(self, x: dict[str, Tensor], available: Tensor) -> Loss:
        """The training objective of one batch, one reparameterised sample per subset."""
        return loss(self.model, x, available, generator=self.generator)

    def state_dict(self) -> dict:
        """A snapshot (copied) of everything a bit-for-bit resume needs."""
        return copy.deepcopy(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "epoch": self.epoch,
                "step": self.step,
                "seed": self.seed,
            }
        )

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch, self.step, self.seed = int(state["epoch"]), int(state["step"]), int(state["seed"])

    def _check(self, data: ArrayDataset) -> None:
        spec = self.model.spec
        if set(data.names) != set(spec.names):
            raise ValueError(
                f"dataset modalities {list(data.names)} differ from the model's {list(spec.names)}"
            )
        for m in spec.modalities:
            shape = tuple(data.arrays[m.name].shape[1:])
            if shape != m.shape:
                raise ValueError(
                    f"modality {m.name!r}: dataset samples are {shape}, the model expects {m.shape}"
                )

    def _batches(
        self, data: ArrayDataset, order: np.ndarray, batch_size: int
    ) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
        """Tensors on the device, availability columns in the model's modality order."""
        columns = [data.names.index(name) for name in self.model.spec.names]
        for start in range(0, len(order), batch_size):
            arrays, available = data.batch(order[start : start + batch_size])
            x = {name: torch.from_numpy(a).to(self.device) for name, a in arrays.items()}
            yield x, torch.from_numpy(available[:, columns]).to(self.device)


class LossMeans:
    """Sample-weighted means of a loss and its terms over batches, read from the device once at the end.

    The loss is weighted by each batch's non-empty samples, a subset's term by the
    batch's rows that hold the subset: the result is the mean over all those rows, as
    one batch of the whole data would give it.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, result: Loss, available: Tensor) -> None:
        n = int(available.any(1).sum())
        if n == 0:
            return
        rows = {"loss": n, **result.term_rows}
        for key, value in {"loss": result.total.detach(), **result.terms}.items():
            self.sums[key] = self.sums.get(key, 0) + value * rows[key]
            self.counts[key] = self.counts.get(key, 0) + rows[key]

    def table(self) -> dict[str, tuple[float, int]]:
        """Each key's (sum, rows): what pooling these means with another process's needs."""
        return {key: (float(value), self.counts[key]) for key, value in self.sums.items()}

    @classmethod
    def from_table(cls, table: dict[str, tuple[float, int]]) -> LossMeans:
        means = cls()
        for key, (total, rows) in table.items():
            means.sums[key], means.counts[key] = torch.tensor(total), rows
        return means

    def means(self) -> dict[str, float]:
        means = {key: float(value) / self.counts[key] for key, value in self.sums.items()}
        if "loss" in means:
            means["elbo"] = -means["loss"]
        return means
