"""Modality and model specifications: the one description of a sensor setup.

Training, the live node and the saved artifact all read the same `ModelSpec`, so the
node reproduces the training preprocessing exactly. A spec is plain data: it converts
to and from the nested dicts found in `config/train.yaml` and `model.yaml`.

Tensor conventions (what the codec produces and the networks consume, per sample):

- ``image``: float32 ``(channels, height, width)`` in [0, 1].
- ``scan``: float32 ``(1, beams)``, range / range_max in [0, 1]; "no return" is 1.0.
- ``range_image``: float32 ``(channels, rings, bins)``; channel 0 is range / range_max
  ("no return" = 1.0), channel 1 (optional) intensity / intensity_max.
- ``depth``: float32 ``(1, height, width)``, depth / range_max; "no return" (no estimate,
  too far, outside range_min…range_max) is 1.0, as for a LiDAR.
- ``vector``: float32 ``(dim,)``, used as given.

The objective models a "no return" like any other range (so a decoder learns where
returns go missing); the dataset keeps a validity mask beside LiDAR and depth tensors for
the evaluation, whose range errors count real returns only.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KINDS = ("image", "scan", "range_image", "depth", "vector")
# LiDAR kinds: ranges convolved around the ring, whose cells a sensor's beams may not reach.
# Each module's per-kind table is checked against these lists (test_kinds.py), so a new kind
# that one of them forgets fails a test, not a run.
RANGE_KINDS = ("scan", "range_image")
# Kinds with ranges in channel 0 and a per-element validity mask ("no return"), scored in metres.
MASKED_KINDS = (*RANGE_KINDS, "depth")
LIKELIHOODS = ("gaussian", "gaussian_learned", "laplace", "bernoulli")
OBJECTIVES = ("m2vae", "jmvae", "mvae")
# A modality's name becomes a ROS name token (`~/reconstruction/<name>`, parameter
# `modalities.<name>.topic`) and is joined with '+' into subset names.
MODALITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class SpecError(ValueError):
    """A configuration or artifact describes an impossible or inconsistent model."""


def unsupported_kind(modality: ModalitySpec, what: str) -> SpecError:
    """The error of a per-kind branch a kind was not added to: a new kind fails loudly, never
    falling through to another kind's handling."""
    return SpecError(f"modality {modality.name!r}: kind {modality.kind!r} has no {what}")


@dataclass(frozen=True)
class ImagePreprocess:
    """Camera image → tensor: resize to width×height, keep `channels` (3 = RGB, 1 = mono).

    `value_max` divides raw pixel values; None means the encoding's full scale
    (255 for 8-bit, 65535 for 16-bit, 1.0 for float images).
    """

    width: int = 64
    height: int = 64
    channels: int = 3
    value_max: float | None = None


@dataclass(frozen=True)
class ScanPreprocess:
    """Planar LiDAR (LaserScan, or a z-slice of a PointCloud2) → `beams` range bins.

    The angles read as a LaserScan's do: `angle_max` is the last bin's angle, so a
    counter-clockwise driver's limits can be copied here (a clockwise one's swapped: its
    scans decode alike); a full turn (−π…π) has `beams` equal steps.
    """

    beams: int = 360
    angle_min: float = -math.pi
    angle_max: float = math.pi
    range_min: float = 0.1
    range_max: float = 8.0
    z_min: float = -0.1
    z_max: float = 0.1


@dataclass(frozen=True)
class RangeImagePreprocess:
    """3-D LiDAR (PointCloud2) → spherical projection of `rings` × `bins` (azimuth)."""

    rings: int = 16
    bins: int = 360
    fov_up_deg: float = 15.0
    fov_down_deg: float = -15.0
    range_min: float = 0.1
    range_max: float = 8.0
    intensity: bool = False
    intensity_max: float = 255.0


@dataclass(frozen=True)
class DepthPreprocess:
    """Depth camera (sensor_msgs/Image: 16UC1 or mono16 in millimetres, 32FC1 in metres) → width×height.

    Each output pixel keeps the nearest valid depth among the source pixels it covers, as
    a scan bin keeps its nearest return; one that none of them measured is "no return".
    """

    width: int = 64
    height: int = 64
    range_min: float = 0.1
    range_max: float = 8.0


@dataclass(frozen=True)
class VectorPreprocess:
    """Flat float features of length `dim` (IMU features, embeddings, …)."""

    dim: int = 16


Preprocess = ImagePreprocess | ScanPreprocess | RangeImagePreprocess | DepthPreprocess | VectorPreprocess
PREPROCESS_BY_KIND: dict[str, type] = {
    "image": ImagePreprocess,
    "scan": ScanPreprocess,
    "range_image": RangeImagePreprocess,
    "depth": DepthPreprocess,
    "vector": VectorPreprocess,
}


@dataclass(frozen=True)
class ModalitySpec:
    """One sensor: its name, tensor kind, where it comes from and how it is scored.

    `weight` scales the modality's log-likelihood so a 12,288-pixel image does not
    drown a 360-beam scan. `scale` is the fixed std (gaussian), the initial std
    (gaussian_learned) or the Laplace b; it is unused for bernoulli. `hidden` sets the
    network widths (conv channels for image/scan/range_image, MLP widths for vector);
    empty means the kind's default.
    """

    name: str
    kind: str
    preprocess: Preprocess
    topic: str = ""
    msg_type: str = ""
    likelihood: str = "gaussian"
    scale: float = 0.1
    weight: float = 1.0
    hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and MODALITY_NAME.fullmatch(self.name)):
            raise SpecError(f"modality name {self.name!r} must be letters, digits and '_', starting with a "
                            "letter: it names ROS topics and parameters")
        if self.kind not in KINDS:
            raise SpecError(f"modality {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if not isinstance(self.preprocess, PREPROCESS_BY_KIND[self.kind]):
            raise SpecError(f"modality {self.name!r}: preprocess does not match kind {self.kind!r}")
        if self.likelihood not in LIKELIHOODS:
            raise SpecError(f"modality {self.name!r}: likelihood {self.likelihood!r} not in {LIKELIHOODS}")
        if not (0 < self.scale < math.inf and 0 < self.weight < math.inf):
            raise SpecError(f"modality {self.name!r}: scale and weight must be positive and finite, got "
                            f"{self.scale} and {self.weight}")
        try:  # numpy integers from a sweep are integers too; stored as plain ints for model.yaml
            object.__setattr__(self, "hidden", tuple(_integer(width) for width in self.hidden))
        except TypeError:
            message = f"modality {self.name!r}: hidden widths must be integers, got {self.hidden}"
            raise SpecError(message) from None
        if not isinstance(self.msg_type, str):
            raise SpecError(f"modality {self.name!r}: msg_type must be a ROS type name such as "
                            f"sensor_msgs/msg/Image, got {self.msg_type!r}")
        if not isinstance(self.topic, str):  # a dict key of the dataset build and the node: not a number
            raise SpecError(f"modality {self.name!r}: topic must be a ROS topic name such as /scan (or left "
                            f"out), got {self.topic!r}")
        if min(self.shape) < 1 or any(width < 1 for width in self.hidden):
            raise SpecError(f"modality {self.name!r}: sizes must be ≥ 1, got tensor shape {self.shape} and "
                            f"hidden widths {self.hidden}")
        if problem := preprocess_problem(self.preprocess):
            raise SpecError(f"modality {self.name!r}: preprocess {problem}")
        # ROS accepts `package/Name` for `package/msg/Name`; one spelling keeps the codec's
        # type checks and the dataset's cache key from telling the two apart.
        if self.msg_type.count("/") == 1:
            package, name = self.msg_type.split("/")
            object.__setattr__(self, "msg_type", f"{package}/msg/{name}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample tensor shape (see the module docstring)."""
        p = self.preprocess
        if isinstance(p, ImagePreprocess):
            return (p.channels, p.height, p.width)
        if isinstance(p, ScanPreprocess):
            return (1, p.beams)
        if isinstance(p, RangeImagePreprocess):
            return (2 if p.intensity else 1, p.rings, p.bins)
        if isinstance(p, DepthPreprocess):
            return (1, p.height, p.width)
        if isinstance(p, VectorPreprocess):
            return (p.dim,)
        raise unsupported_kind(self, "tensor shape")

    @property
    def has_mask(self) -> bool:
        """Whether samples carry a per-element validity mask (a LiDAR's or depth camera's "no return")."""
        return self.kind in MASKED_KINDS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModalitySpec:
        d = dict(d)
        kind = d.get("kind")
        if not isinstance(kind, str) or kind not in PREPROCESS_BY_KIND:
            raise SpecError(f"modality {d.get('name')!r}: kind {kind!r} not in {KINDS}")
        preprocess = {} if d.get("preprocess") is None else d["preprocess"]  # 0 or "" is no mapping
        if not isinstance(preprocess, Mapping):
            raise SpecError(f"modality {d.get('name')!r}: preprocess must be a mapping of "
                            f"{PREPROCESS_BY_KIND[kind].__name__} keys, got {preprocess!r}")
        d["preprocess"] = _build(PREPROCESS_BY_KIND[kind], dict(preprocess), d.get("name"),
                                 hint=_other_kinds_taking(set(preprocess), kind))
        hidden = () if d.get("hidden") is None else d["hidden"]  # 0 is no list; [] is the default
        if not isinstance(hidden, list | tuple):
            raise SpecError(f"modality {d.get('name')!r}: hidden must be a list of widths, got {hidden!r}")
        where = f"modality {d.get('name')!r}: hidden"
        d["hidden"] = tuple(parse_number(width, "int", where) for width in hidden)
        return _build(cls, d, d.get("name"))


def preprocess_problem(p: Preprocess) -> str | None:
    """What makes a preprocess record unusable, or None.

    Limits that admit no value (range_min above range_max, a vertical field of view of
    zero degrees) would not fail in the codec: every return would simply read "no
    return", and a model would train on blank LiDAR without a word.
    """
    values = {f.name: getattr(p, f.name) for f in fields(p)}
    if infinite := [name for name, value in values.items()
                    if isinstance(value, numbers.Real) and not math.isfinite(value)]:
        return f"{', '.join(infinite)} must be finite"
    if isinstance(p, ImagePreprocess) and p.value_max is not None and not p.value_max > 0:
        return f"value_max must be positive (or null for the encoding's full scale), got {p.value_max}"
    ranged = isinstance(p, ScanPreprocess | RangeImagePreprocess | DepthPreprocess)
    if ranged and not 0 <= p.range_min < p.range_max:
        return f"needs 0 ≤ range_min < range_max, got {p.range_min} and {p.range_max}"
    if isinstance(p, ScanPreprocess) and not p.angle_max > p.angle_min:
        return "angle_max must be above angle_min"
    if isinstance(p, ScanPreprocess) and p.beams < 2 and p.angle_max - p.angle_min < 2 * math.pi - 1e-6:
        return "a span short of a full turn needs 2 beams or more (angle_min, angle_max: the first and last)"
    if isinstance(p, ScanPreprocess) and not p.z_max >= p.z_min:  # equal: a planar cloud at z = 0
        return f"z_max must not be below z_min, got {p.z_min} and {p.z_max}"
    if isinstance(p, RangeImagePreprocess) and not p.fov_up_deg > p.fov_down_deg:
        return f"fov_up_deg must be above fov_down_deg, got {p.fov_up_deg} and {p.fov_down_deg}"
    if isinstance(p, RangeImagePreprocess) and not p.intensity_max > 0:
        return f"intensity_max must be positive, got {p.intensity_max}"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """The whole model: modalities in a fixed order, latent size and objective.

    The order of `modalities` is significant: subset names join modality names in
    this order with '+', and subset bit i stands for modalities[i].
    """

    modalities: tuple[ModalitySpec, ...]
    latent_dim: int = 32
    objective: str = "m2vae"
    alpha: float = 1.0
    beta: float = 1.0
    feature_dim: int = 256
    head_hidden: int = 256
    prior_components: int = 0  # 0: p(z) = N(0, I); K: a learned mixture of K Gaussians (priors.py)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise SpecError("a model needs at least one modality")
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise SpecError(f"duplicate modality names in {names}")
        if self.objective not in OBJECTIVES:
            raise SpecError(f"objective {self.objective!r} not in {OBJECTIVES}")
        if min(self.latent_dim, self.feature_dim, self.head_hidden) < 1:
            raise SpecError(f"latent_dim, feature_dim and head_hidden must be ≥ 1, got {self.latent_dim}, "
                            f"{self.feature_dim}, {self.head_hidden}")
        if self.prior_components < 0:
            raise SpecError(f"prior_components is a number of mixture components (0: N(0, I)), got "
                            f"{self.prior_components}")
        if not (0 <= self.alpha < math.inf and 0 <= self.beta < math.inf):
            raise SpecError(f"alpha and beta weigh KL terms: both must be finite and ≥ 0, got {self.alpha}, "
                            f"{self.beta}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise SpecError(f"no modality {name!r}; known: {self.names}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "modalities"}
        d["modalities"] = [m.to_dict() for m in self.modalities]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        modalities = () if d.get("modalities") is None else d["modalities"]
        if not isinstance(modalities, list | tuple):
            raise SpecError(f"modalities must be a list of modality mappings, got {modalities!r}")
        for i, modality in enumerate(modalities):  # a stray `-` line in YAML is a None entry
            if not isinstance(modality, Mapping):
                raise SpecError(f"modalities[{i}] must be a mapping, got {modality!r}")
        d["modalities"] = tuple(ModalitySpec.from_dict(m) for m in modalities)
        return _build(cls, d, "model")


def _build(cls: type, d: dict[str, Any], where: Any, hint: str = "") -> Any:
    """Construct dataclass `cls` from `d`, naming unknown keys (and `hint`) instead of a TypeError."""
    types = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(d) - set(types), key=str)  # YAML keys may be numbers too
    if unknown:
        raise SpecError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(types)}{hint}")
    values = {key: parse_number(value, types[key], f"{where}: {key}") for key, value in d.items()}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{where}: {key} must be finite, got {d[key]!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _keys(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _other_kinds_taking(keys: set[Any], kind: str) -> str:
    """'; kind depth takes them all' when another kind's preprocess has every one of `keys` (width and
    range_max under kind image: a depth camera configured as a picture), else ''."""
    kinds = [other for other, cls in PREPROCESS_BY_KIND.items() if other != kind and keys <= _keys(cls)]
    return f"; kind {' or '.join(kinds)} takes them all" if keys and kinds else ""


def _integer(value: Any) -> int:
    """`value` as a plain int where it is an integer (numpy's too, not bool); TypeError otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is a bool")
    return operator.index(value)


def parse_number(value: Any, type_name: str, where: str) -> Any:
    """A float field's number, an int field's integer; fields of other types unchanged.

    YAML files and model.yaml give numbers as PyYAML reads them, and PyYAML reads ``1e-3``
    (no dot) as a string: it would reach the loss or the codec and fail there, hours into
    a dataset build. Checked here, every config, run.yaml and artifact gets one clear line.
    Ranges (finite, positive, …) are the caller's: each field has its own.
    """
    if type_name not in ("float", "float | None", "int") or (value is None and type_name == "float | None"):
        return value
    if isinstance(value, bool):
        raise SpecError(f"{where} must be a number, got {value!r}")
    if type_name == "int":
        try:
            number = operator.index(value)
        except TypeError:
            raise SpecError(f"{where} must be an integer, got {value!r}") from None
        if not -(2**63) <= number < 2**63:  # torch and numpy hold sizes and seeds in int64
            digits = len(str(abs(number)))
            raise SpecError(f"{where} must be an integer within int64, got one of {digits} digits")
        return number
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where} must be a number, got {value!r}") from None
    except OverflowError:  # an integer of 309 digits or more
        raise SpecError(f"{where} must be a number within float range, got an integer of "
                        f"{len(str(abs(value)))} digits") from None
