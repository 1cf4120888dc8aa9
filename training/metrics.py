"""Evaluation metrics over numpy arrays: reconstruction errors in sensor units, probes.

The probes follow the seed's protocol: ONE classifier (Gaussian naive Bayes) and ONE
linear position regressor are fitted on the joint-subset latent means of the training
recordings, then scored on every subset's latents of the test recordings. A subset
whose latent lands where the joint one would scores as well as the joint one; a subset
whose encoder drifts away is penalised, which is exactly what a fusion model must avoid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from m2vae_training.dataset import placeholder_class_name
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import GaussianNB

from m2vae_ros.spec import MASKED_KINDS, ModalitySpec, unsupported_kind

# The unit of `ReconstructionError.value()` per modality kind, for report tables.
ERROR_UNITS = {"image": "0–255", "scan": "m", "range_image": "m", "depth": "m", "vector": "sensor units"}


class ReconstructionError:
    """Running reconstruction error of one modality in sensor units, fed batch by batch.

    Images: mean absolute pixel error on the 0–255 scale. Scans, range images and depth
    images: RMSE in metres over valid returns only (channel 0, the range), because "no return" cells
    hold 1.0 by convention and scoring them would reward predicting the maximum range
    everywhere. Vectors: RMSE in their own units. NaN until something was added.
    """

    def __init__(self, modality: ModalitySpec) -> None:
        self.modality = modality
        self.total = 0.0
        self.count = 0

    def add(self, pred: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add [B, *shape] predictions and targets; `mask` [B, *shape] flags valid LiDAR or depth returns."""
        if pred.shape != real.shape:
            raise ValueError(f"{self.modality.name}: shape mismatch {pred.shape} vs {real.shape}")
        kind = self.modality.kind
        if kind == "image":
            self.total += float(np.abs(np.clip(pred, 0.0, 1.0) - real).sum(dtype=np.float64)) * 255.0
            self.count += real.size
        elif kind in MASKED_KINDS:
            pred, real = pred[:, 0], real[:, 0]
            # The mask has the tensor's channels (range, intensity): channel 0 flags the returns.
            valid = np.ones(real.shape, bool) if mask is None else np.asarray(mask, bool)[:, 0]
            diff = (pred[valid] - real[valid]) * self.modality.preprocess.range_max
            self.total += float(np.square(diff, dtype=np.float64).sum())
            self.count += int(valid.sum())
        elif kind == "vector":
            self.total += float(np.square(pred - real, dtype=np.float64).sum())
            self.count += real.size
        else:
            raise unsupported_kind(self.modality, "reconstruction error")

    def value(self) -> float:
        if self.count == 0:
            return float("nan")
        mean = self.total / self.count
        if self.modality.kind == "image":
            return mean  # a mean absolute error
        if self.modality.kind in MASKED_KINDS or self.modality.kind == "vector":
            return float(np.sqrt(mean))  # a root mean square
        raise unsupported_kind(self.modality, "reconstruction error")


def shape_of(class_name: str) -> str:
    """The object's shape from its class name (`red_cylinder` → `cylinder`).

    A planar LiDAR sees geometry, not colour, so LiDAR-only latents are also scored on
    shape with same-shape classes merged.
    """
    return class_name.rsplit("_", 1)[-1]


def class_shapes(class_names: Sequence[str]) -> list[str | None]:
    """Each class's shape (`shape_of`), None for a placeholder name (`class_3`, an id no marker
    named), which is no shape."""
    return [None if name == placeholder_class_name(c) else shape_of(name)
            for c, name in enumerate(class_names)]


def located(positions: np.ndarray) -> np.ndarray:
    """Rows of [N, 3] object positions whose x and y are known (NaN where no marker was near)."""
    return np.isfinite(positions[:, :2]).all(axis=1)


def constant_guess(labels: np.ndarray, positions: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The best score a constant guess gets on these labels and positions: what a probe must beat.

    `nb_accuracy`: the most common class's share of the labelled rows; `shape_accuracy` the
    most common shape's (two objects in three are cylinders: 2/3), left out unless two
    shapes are at stake (a placeholder name such as `class_3` is no shape, as in
    `Probes.shape_accuracy`); `position_rmse` (m) of always guessing their mean position.
    A key is left out when no row has its ground truth.
    """
    out = {}
    labelled = labels[labels >= 0]
    if len(labelled):
        out["nb_accuracy"] = float(np.bincount(labelled).max() / len(labelled))
        shapes = class_shapes(class_names)
        counts = Counter(shapes[c] for c in labelled)
        if len(counts.keys() - {None}) >= 2:
            out["shape_accuracy"] = max(n for shape, n in counts.items() if shape) / len(labelled)
    xy = positions[located(positions), :2]
    if len(xy):
        out["position_rmse"] = float(np.sqrt(np.mean(np.sum(np.square(xy - xy.mean(axis=0)), axis=1))))
    return out


@dataclass
class Probes:
    """The classifier and position regressor fitted once on training joint latents.

    `labelled`, `classes` and `located` count what the training latents offered: the
    labelled rows and their distinct classes, the rows with an object position.
    """

    classifier: GaussianNB | None
    regressor: Ridge | None
    class_names: tuple[str, ...]
    labelled: int = 0
    classes: int = 0
    located: int = 0

    def unfitted(self) -> dict[str, str]:
        """Why a probe is missing, by the metric it would have given (empty when both are fitted)."""
        reasons = {}
        if self.classifier is None:
            reasons["nb_accuracy"] = (f"no class probe: the training samples with every sensor hold "
                                      f"{self.labelled} labels of {self.classes} classes, and naive Bayes "
                                      "needs two classes")
        if self.regressor is None:
            reasons["position_rmse"] = (f"no position probe: {self.located} training samples with every "
                                        "sensor have an object position, and the regressor needs two")
        return reasons

    def accuracy(self, z: np.ndarray, labels: np.ndarray) -> float:
        """Class accuracy on rows with a label (≥ 0); NaN when none, or when no class is likelier."""
        rows = labels >= 0
        predicted = self._classes(z[rows])
        return float("nan") if predicted is None else float(np.mean(predicted == labels[rows]))

    def shape_accuracy(self, z: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy after merging classes of the same shape (see `shape_of`).

        NaN when the classes at stake (those fitted and those scored) hold fewer than two
        shapes, since every guess would be right; a placeholder name (`class_3`, for an id
        no marker named) is no shape.
        """
        rows = labels >= 0
        predicted = self._classes(z[rows])
        known = class_shapes(self.class_names)
        at_stake = {*self.classifier.classes_, *labels[rows]} if predicted is not None else set()
        if len({known[c] for c in at_stake} - {None}) < 2:
            return float("nan")
        shapes = np.array([shape_of(name) for name in self.class_names])  # a placeholder is its own shape
        return float(np.mean(shapes[predicted] == shapes[labels[rows]]))

    def position_rmse(self, z: np.ndarray, positions: np.ndarray) -> float:
        """Euclidean RMSE (metres) of the predicted object x, y on rows with a known position."""
        rows = located(positions)
        if self.regressor is None or not rows.any():
            return float("nan")
        err = self.regressor.predict(np.asarray(z[rows], np.float64)) - positions[rows, :2]
        return float(np.sqrt(np.mean(np.sum(np.square(err), axis=1))))

    def _classes(self, z: np.ndarray) -> np.ndarray | None:
        """Naive Bayes' class per row; None without a classifier, rows, or a finite likelihood.

        Latents far outside the training ones overflow every class's log-likelihood to -inf
        (in float32 from |z| ~ 1e19, hence float64 here), and `predict` then names class 0 for
        all: a score made up of the class shares.
        """
        if self.classifier is None or not len(z):
            return None
        joint = self.classifier.predict_joint_log_proba(np.asarray(z, np.float64))
        if not np.isfinite(joint).all():
            return None
        return self.classifier.classes_[np.argmax(joint, axis=1)]


def fit_probes(
    z: np.ndarray, labels: np.ndarray, positions: np.ndarray, class_names: tuple[str, ...]
) -> Probes:
    """Fit the classifier on labelled rows and the regressor on rows with a position.

    Either probe is None when the training data has nothing to fit it on (no labels, or
    a single class), and its metrics are then reported as missing rather than invented.
    """
    z = np.asarray(z, np.float64)  # float32 latents square past float32's range in the likelihoods
    labelled = labels >= 0
    classes = len(np.unique(labels[labelled]))
    classifier = GaussianNB().fit(z[labelled], labels[labelled]) if classes >= 2 else None
    rows = located(positions)
    regressor = Ridge(alpha=1e-3).fit(z[rows], positions[rows, :2]) if rows.sum() >= 2 else None
    return Probes(classifier=classifier, regressor=regressor, class_names=tuple(class_names),
                  labelled=int(labelled.sum()), classes=classes, located=int(rows.sum()))
