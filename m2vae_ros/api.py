"""`MultimodalVAE`: the M²VAE for researchers with numpy arrays — no ROS, no bags.

    vae = MultimodalVAE.from_modalities({"left": ("vector", 32), "img": ("image", (1, 28, 28))},
                                        latent_dim=16, objective="m2vae")
    vae.fit({"left": a, "img": b}, epochs=20)   # a later fit continues: 20 more epochs
    mean, std = vae.encode({"left": a})          # posterior of the subset you have
    img_from_left = vae.decode(mean, "img")     # cross-modal reconstruction
    vae.save("model/")                          # the artifact format m2vae-train writes
    vae.evaluate({"left": a, "img": b})         # mean ELBO and its terms per subset

It is a thin shell over the library: the model (model.py), the objective (objectives.py),
the training loop (trainer.py) and the artifact (artifact.py).
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from m2vae_ros.artifact import load_model, save_model
from m2vae_ros.devices import resolve_device
from m2vae_ros.likelihoods import BOUNDED_KINDS
from m2vae_ros.model import M2VAE
from m2vae_ros.spec import (
    KINDS,
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
    VectorPreprocess,
)
from m2vae_ros.subsets import from_indices, parse_subset, row_subsets, subset_name, unheld
from m2vae_ros.trainer import ArrayDataset, History, Trainer, TrainingDiverged, checked_availability

__all__ = ["History", "MultimodalVAE", "TrainingDiverged"]  # what `fit` returns and raises, importable here

Shape = int | tuple[int, ...]
_ENCODE_BATCH = 1024


class MultimodalVAE:
    """A trained or trainable M²VAE over in-memory arrays (or the baselines JMVAE-kl and MVAE).

    Arrays are [N, *shape] per modality in the tensor conventions of spec.py: images,
    scans, range images and depth images hold values in [0, 1] (an rgb8 image divided by
    255; ranges and depths divided by range_max, 1.0 for no return), as the ROS codecs
    produce them, because their decoders' means are squashed into [0, 1]. An availability
    mask [N, n_modalities] (columns in modality order) marks missing entries; their rows
    are never read, so any placeholder (zeros, NaN) will do.
    """

    def __init__(self, spec: ModelSpec, *, seed: int = 0, model: M2VAE | None = None) -> None:
        if model is None:
            with torch.random.fork_rng():  # seeded init without touching the caller's RNG
                torch.manual_seed(seed)
                model = M2VAE(spec)
        self.spec = spec
        self.model = model
        self._trainer: Trainer | None = None  # made by the first `fit`; later calls continue it

    @classmethod
    def from_modalities(
        cls,
        modalities: Mapping[str, tuple[str, Shape] | ModalitySpec],
        *,
        latent_dim: int = 32,
        objective: str = "m2vae",
        alpha: float = 1.0,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        scale: float = 0.1,
        feature_dim: int = 256,
        head_hidden: int = 256,
        prior_components: int = 0,
        seed: int = 0,
    ) -> MultimodalVAE:
        """Build from `{name: (kind, shape)}`; a full ModalitySpec value overrides the defaults.

        Shapes: vector dim or (dim,); image (C, H, W); scan beams or (1, beams);
        range_image (C, rings, bins) with C = 1 (range) or 2 (range + intensity); depth
        (H, W) or (1, H, W).
        `objective` is "m2vae", "jmvae" (JMVAE-kl) or "mvae". `likelihood` ("gaussian",
        "gaussian_learned", "laplace" or "bernoulli") and `scale` apply to every modality
        given as (kind, shape). A ModalitySpec (m2vae_ros.spec) also sets a modality's
        `weight` and its network widths `hidden`: conv channels, each a stride-2 layer (with
        the default three an image side needs ≥ 8 pixels and a scan ≥ 5 beams), or a
        vector's MLP widths.
        """
        renamed = [f"{key!r} → {value.name!r}" for key, value in modalities.items()
                   if isinstance(value, ModalitySpec) and value.name != key]
        if renamed:
            raise ValueError(f"a ModalitySpec's name must be its key: {', '.join(renamed)}")
        malformed = [name for name, value in modalities.items() if not isinstance(value, ModalitySpec)
                     and (not isinstance(value, tuple) or len(value) != 2)]
        if malformed:
            raise ValueError(f"modalities {malformed}: give (kind, shape) pairs such as "
                             "('image', (3, 64, 64)) or ('vector', 8), or a ModalitySpec")
        specs = tuple(
            value
            if isinstance(value, ModalitySpec)
            else ModalitySpec(name, value[0], _preprocess(name, *value), likelihood=likelihood,
                              scale=float(scale))
            for name, value in modalities.items()
        )
        # Plain Python numbers: numpy scalars from a sweep would not serialise into model.yaml.
        spec = ModelSpec(
            specs,
            latent_dim=operator.index(latent_dim),
            objective=objective,
            alpha=float(alpha),
            beta=float(beta),
            feature_dim=operator.index(feature_dim),
            head_hidden=operator.index(head_hidden),
            prior_components=operator.index(prior_components),
        )
        return cls(spec, seed=seed)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> MultimodalVAE:
        """Load an artifact written by `save` or by `m2vae-train`; `device` as in `fit`.

        The artifact holds the weights, not the training state, so `fit` on a loaded model
        fine-tunes it with a fresh optimiser from epoch 0 (`m2vae-train --resume` continues
        a run bit for bit from its checkpoints instead).
        """
        loaded = load_model(directory, device=_usable_device(device))
        return cls(loaded.spec, model=loaded.model)

    def save(
        self, directory: str | Path, *, provenance: dict | None = None, metrics: dict | None = None
    ) -> Path:
        """Write the artifact (model.safetensors + model.yaml) that `load` and the ROS node read."""
        provenance = {"source": "m2vae_ros.api", **(provenance or {})}
        return save_model(self.model, directory, provenance=provenance, metrics=metrics)

    def fit(
        self,
        data: Mapping[str, np.ndarray],
        available: np.ndarray | None = None,
        *,
        epochs: int,
        batch_size: int = 64,
        lr: float = 1e-3,
        seed: int = 0,
        val: Mapping[str, np.ndarray] | None = None,
        val_available: np.ndarray | None = None,
        device: str = "cpu",
        progress: bool = False,
    ) -> History:
        """Train `epochs` more epochs; `History.train`/`.val` hold their mean loss, elbo and terms.

        A later call continues the first one's training (optimiser state, noise generator,
        epoch count), so ``fit(epochs=3)`` twice is ``fit(epochs=6)``; `seed` and `device`
        must then be the first call's, and `lr` applies from that call on. `device` is
        ``auto``, ``cpu``, ``cuda`` or ``cuda:<i>``, as for the ROS node (CUDA that is not
        there falls back to the CPU with a warning), or another device torch names, such as
        ``mps``. Should the loss become NaN or infinite, `TrainingDiverged` is raised, the
        model is left as it was after the last whole epoch and the exception's `history`
        holds this call's finished epochs: a call with a lower `lr` continues from there.

        A modality that `available` marks missing in every sample is refused (its networks
        would stay at their initial weights); a subset encoder that no sample trains (no
        row has all its modalities, as with unpaired data) is warned about.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 0:
            raise ValueError(f"epochs counts the epochs to add and must be an integer ≥ 0, got {epochs!r}")
        _check_batch_size(batch_size)  # before the first call's Trainer fixes seed and device
        if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if val_available is not None and val is None:
            raise ValueError("val_available was given without val: it marks the missing entries of val")
        train_set = self._samples(data, available, "training")
        self._check_coverage(train_set.available)
        val_set = None
        if val is not None:
            val_set = ArrayDataset(self._arrays(val, val_available, require_all=True), val_available)
        usable = torch.device(_usable_device(device))
        if self._trainer is None:
            self._trainer = Trainer(self.model, lr=lr, device=usable, seed=seed)
        trainer = self._trainer
        running = {"seed": trainer.seed, "device": trainer.device}
        asked = {"seed": seed, "device": usable}
        if changed := [key for key in running if asked[key] != running[key]]:
            raise ValueError(f"fit continues the first call's training, so {' and '.join(changed)} must stay "
                             f"as there ({running}): build a new MultimodalVAE to start over")
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        history = trainer.fit(train_set, val_set, epochs=trainer.epoch + epochs, batch_size=batch_size,
                              progress=progress)
        self.model.eval()
        return history

    def evaluate(
        self, data: Mapping[str, np.ndarray], available: np.ndarray | None = None, *, batch_size: int = 256
    ) -> dict[str, float]:
        """Mean loss, ELBO and its terms per subset over `data`: the keys of `fit`'s `History.val`.

        Scored as `fit` scores its validation data, on one fixed draw of the noise per
        batch: the same weights, data and `batch_size` give the same numbers.
        """
        _check_batch_size(batch_size)
        dataset = self._samples(data, available, "evaluation")
        trainer = self._trainer or Trainer(self.model, device=next(self.model.parameters()).device)
        return trainer.evaluate(dataset, batch_size=batch_size)

    def _samples(
        self, data: Mapping[str, np.ndarray], available: np.ndarray | None, purpose: str
    ) -> ArrayDataset:
        """`data` as a dataset for training or evaluation: one array per modality, some sample in it."""
        samples = ArrayDataset(self._arrays(data, available, require_all=True), available)
        if len(samples) == 0:
            raise ValueError(f"no {purpose} samples: the arrays are empty")
        if not samples.available.any():
            raise ValueError(f"`available` marks every modality of every sample missing: no {purpose} data")
        return samples

    def _check_coverage(self, available: np.ndarray) -> None:
        """Refuse a modality no sample has; warn of subset encoders no sample trains.

        A subset's encoder learns from the rows that hold all its modalities; without any,
        `encode` would answer with its initial weights.
        """
        names = self.spec.names
        if never := [name for column, name in enumerate(names) if not available[:, column].any()]:
            raise ValueError(f"`available` marks {never} missing in every sample: its networks would stay at "
                             "their initial weights; leave it out of the model or give samples that have it")
        heads = [int(key) for key in self.model.heads]  # MVAE has none: its product of experts needs no pairs
        if untrained := [subset_name(s, names) for s in unheld(available, heads)]:
            warnings.warn(f"no sample holds all modalities of {untrained}: these subsets' encoders stay at "
                          "their initial weights, and encode() with them answers from those", RuntimeWarning,
                          stacklevel=3)

    @torch.no_grad()
    def encode(
        self,
        data: Mapping[str, np.ndarray],
        subset: str | Sequence[str] | None = None,
        available: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std [N, latent_dim] of q(z | subset); None = every modality in `data`.

        With `available` (as in `fit`), each row is encoded from the modalities of `subset`
        that it has, as the ROS node does with the sensors alive: data with missing entries
        in one call. Arrays of modalities outside `subset` are not read, so they are not
        checked either.
        """
        if unknown := sorted(set(data) - set(self.spec.names)):
            raise ValueError(f"unknown modalities {unknown}; the model has {list(self.spec.names)}")
        if not data:
            raise ValueError(f"no modality arrays given; the model has {list(self.spec.names)}")
        if subset is None:
            bits = from_indices(self.spec.names.index(name) for name in data)
        elif isinstance(subset, str):
            bits = parse_subset(subset, self.spec.names)
        elif isinstance(subset, Sequence) and all(isinstance(name, str) for name in subset):
            bits = parse_subset("+".join(subset), self.spec.names)
        else:
            raise ValueError(f"subset must be modality names, as 'a+b' or ['a', 'b'], got {subset!r}")
        needed = subset_name(bits, self.spec.names).split("+")
        absent = [name for name in needed if name not in data]
        if absent:
            raise ValueError(f"subset {subset!r} needs arrays for {absent}; given: {list(data)}")
        arrays = self._arrays({name: data[name] for name in needed}, available, require_all=False)
        n = len(arrays[needed[0]])
        mean = np.zeros((n, self.spec.latent_dim), np.float32)
        std = np.zeros_like(mean)
        patterns = np.full(n, bits, np.int64)
        if available is not None:
            patterns &= row_subsets(checked_availability(available, n, self.spec.names))
            if (empty := np.flatnonzero(patterns == 0)).size:
                raise ValueError(f"rows {empty[:5].tolist()} have none of {needed} available: no posterior "
                                 "to give them")
        for pattern in np.unique(patterns).tolist():
            rows = np.flatnonzero(patterns == pattern)
            names = subset_name(pattern, self.spec.names).split("+")
            mean[rows], std[rows] = self._posterior({name: arrays[name][rows] for name in names}, pattern)
        if not np.isfinite(mean).all():  # finite inputs beyond ~1e18 overflow the features' LayerNorm
            rows = np.flatnonzero(~np.isfinite(mean).all(axis=1))
            raise ValueError(f"the posterior of rows {rows[:5].tolist()} is not finite: their values are too "
                             "large for float32 arithmetic (scale them, as the codecs do)")
        return mean, std

    def _posterior(self, arrays: dict[str, np.ndarray], bits: int) -> tuple[np.ndarray, np.ndarray]:
        """q(z | bits)'s mean and std for rows that all hold `arrays`' modalities, in batches."""
        self.model.eval()
        device = next(self.model.parameters()).device
        n = len(next(iter(arrays.values())))
        means, stds = [], []
        for start in range(0, n, _ENCODE_BATCH):
            x = {name: torch.from_numpy(array[start : start + _ENCODE_BATCH]).to(device)
                 for name, array in arrays.items()}
            mean, logvar = self.model.encode(x, bits)
            means.append(mean.cpu().numpy())
            stds.append(torch.exp(0.5 * logvar).cpu().numpy())
        return np.concatenate(means), np.concatenate(stds)

    @torch.no_grad()
    def decode(self, z: np.ndarray, modality: str) -> np.ndarray:
        """Reconstruction mean [N, *shape] of `modality` (probabilities for bernoulli)."""
        self.model.eval()
        z = np.ascontiguousarray(z, dtype=np.float32)  # torch takes no negative strides
        if z.ndim != 2 or z.shape[1] != self.spec.latent_dim:
            raise ValueError(f"z must be [N, {self.spec.latent_dim}], got {list(z.shape)}")
        if not np.isfinite(z).all():
            raise ValueError("z holds NaN or infinite values")
        if modality not in self.spec.names:
            raise ValueError(f"unknown modality {modality!r}; the model has {list(self.spec.names)}")
        device = next(self.model.parameters()).device
        return self.model.decode(torch.from_numpy(z).to(device), modality).cpu().numpy()

    def _arrays(
        self, data: Mapping[str, np.ndarray], available: np.ndarray | None, *, require_all: bool
    ) -> dict[str, np.ndarray]:
        """Validated contiguous float32 arrays in the model's modality order.

        Rows `available` marks missing are zeroed (on a copy): nothing reads them, so a
        NaN placeholder must not fail the checks on the values.
        """
        unknown = sorted(set(data) - set(self.spec.names))
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; the model has {list(self.spec.names)}")
        missing = [name for name in self.spec.names if name not in data]
        if require_all and missing:
            raise ValueError(
                f"training needs an array for every modality; missing {missing} "
                "(give placeholder rows and mark them in `available` instead)"
            )
        arrays = {m.name: _as_batch(data[m.name], m) for m in self.spec.modalities if m.name in data}
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"modality arrays differ in length: {lengths}")
        if available is not None and arrays:
            mask = checked_availability(available, next(iter(lengths.values())), self.spec.names)
            for column, name in enumerate(self.spec.names):
                if name in arrays and not mask[:, column].all():
                    if np.may_share_memory(arrays[name], data[name]):  # never write into the caller's data
                        arrays[name] = arrays[name].copy()
                    arrays[name][~mask[:, column]] = 0.0
        where = (" in rows marked available" if available is not None
                 else " (mark such rows missing in `available`)")
        for m in self.spec.modalities:
            if m.name in arrays:
                _check_values(arrays[m.name], m, where)
        return arrays


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")


def _as_batch(values: np.ndarray, m: ModalitySpec) -> np.ndarray:
    """[N, *shape] float32, contiguous: torch takes no negative strides (a BGR → RGB view).

    A single channel may be left out, as researchers hold scans ([N, beams]), mono images
    and range images: the shape without it is unambiguous.
    """
    if np.iscomplexobj(values):  # float32 would drop the imaginary part with only a warning
        raise ValueError(f"modality {m.name!r}: complex values; give real numbers")
    array = np.ascontiguousarray(values, dtype=np.float32)
    if m.kind != "vector" and m.shape[0] == 1 and array.shape[1:] == m.shape[1:]:
        array = array[:, None]
    if array.ndim == 0 or array.shape[1:] != m.shape:
        raise ValueError(f"modality {m.name!r}: expected [N, *{m.shape}], got {list(array.shape)}")
    return array


def _check_values(array: np.ndarray, m: ModalitySpec, where: str) -> None:
    """Finite values, in [0, 1] where the decoder's mean is squashed into it (or the target is bernoulli).

    `where` ends the message about non-finite values: where they are, or what to do instead.
    """
    if not np.isfinite(array).all():
        raise ValueError(f"modality {m.name!r}: NaN or infinite values{where}, or beyond float32's range")
    if (m.kind in BOUNDED_KINDS or m.likelihood == "bernoulli") and array.size and (
        array.min() < 0.0 or array.max() > 1.0
    ):
        span = f"[{array.min():.7g}, {array.max():.7g}]"  # float32's digits: 1.000001 must not print as 1
        raise ValueError(f"modality {m.name!r}: values span {span}, outside [0, 1]; {_BOUNDED_HINTS[m.kind]}")


# What a value outside [0, 1] most likely means, per kind.
_BOUNDED_HINTS = {
    "image": "give images as float in [0, 1] (uint8: divide by 255)",
    "scan": "give ranges divided by range_max, 1.0 for no return",
    "range_image": "give ranges divided by range_max, 1.0 for no return, and intensities in [0, 1]",
    "depth": "give depths divided by range_max, 1.0 for no return",
    "vector": "a bernoulli likelihood models probabilities or 0/1 values",
}


def _preprocess(name: str, kind: str, shape: Shape):
    """The preprocess record that makes the codec produce `shape` for `kind`."""
    if kind not in KINDS:
        raise ValueError(f"modality {name!r}: unknown kind {kind!r}; known: {KINDS}")
    try:
        dims = tuple(operator.index(d) for d in ((shape,) if isinstance(shape, Integral) else shape))
    except TypeError:
        raise ValueError(f"modality {name!r}: shape {shape!r} must be an integer or integers") from None
    if kind == "vector" and len(dims) == 1:
        return VectorPreprocess(dim=dims[0])
    if kind == "image" and len(dims) == 3:
        return ImagePreprocess(width=dims[2], height=dims[1], channels=dims[0])
    if kind == "scan" and (len(dims) == 1 or (len(dims) == 2 and dims[0] == 1)):
        return ScanPreprocess(beams=dims[-1])
    if kind == "range_image" and len(dims) == 3 and dims[0] in (1, 2):
        return RangeImagePreprocess(rings=dims[1], bins=dims[2], intensity=dims[0] == 2)
    if kind == "depth" and (len(dims) == 2 or (len(dims) == 3 and dims[0] == 1)):
        return DepthPreprocess(width=dims[-1], height=dims[-2])
    raise ValueError(
        f"modality {name!r}: shape {shape} does not fit kind {kind!r} "
        "(vector: dim, image: (C, H, W), scan: beams, range_image: (1 or 2, rings, bins), depth: (H, W))"
    )


def _usable_device(device: str | torch.device) -> str:
    """`device` where it exists; the CPU, with a warning, where CUDA is asked for and absent.

    Beyond the node's names (auto, cpu, cuda[:i]) any device torch names (mps, xpu) is taken as is.
    """
    try:
        usable, warning = resolve_device(str(device))
    except ValueError:
        try:
            return str(torch.device(device))
        except RuntimeError:
            raise ValueError(f"device must be auto, cpu, cuda[:<index>] or another torch device, got "
                             f"{device!r}") from None
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)
    return usable
