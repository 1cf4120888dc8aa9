"""The training configuration file (config/train.yaml) as one typed object.

Layout: ``model:`` (ModelSpec settings), ``modalities:`` (one entry per sensor, in the
order subset names use), ``labels.topic``, ``dataset.slop``/``dataset.timeout`` (seconds;
the timeout is one number for every sensor or a mapping modality → seconds) and the
``training:`` settings of the training CLI (`TrainingSettings`, whose defaults fill
the keys a file leaves out).
Unknown keys are errors, so a typo never silently falls back to a default, and so is a key
given twice in one mapping (YAML would keep the last).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from m2vae_ros import liveness
from m2vae_ros.liveness import DEFAULT_TIMEOUT_S, timeout_of
from m2vae_ros.spec import ModelSpec, SpecError, parse_number

SECTIONS = ("model", "modalities", "labels", "dataset", "training")
DATASET_KEYS = ("slop", "timeout")
LABELS_KEYS = ("topic",)
DATA_FIELDS = ("name", "kind", "topic", "msg_type", "preprocess")  # of a modality, what its arrays depend on
PACKAGE = "m2vae_ros"
# The split counts time in int64 nanoseconds, which end near 9.2e9 s: a longer block or guard
# overflowed there, after the dataset was built, instead of failing here.
MAX_SPLIT_SECONDS = 1e9


class ConfigError(ValueError):
    """The configuration file or a command-line override is unusable."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping. YAML keeps the last one,
    so a `name: lidar3d` indented into the entry above renamed that sensor and dropped the other."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._refuse_duplicates(node, deep)
        return super().construct_mapping(node, deep)

    def _refuse_duplicates(self, node: yaml.MappingNode, deep: bool) -> None:
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *defaults` or `<<: [*a, *b]`: a key beside it overrides a merged one, as YAML says,
                # but the merged mappings, which PyYAML flattens without this method, are checked here.
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for mapping in merged:
                    if isinstance(mapping, yaml.MappingNode):
                        self._refuse_duplicates(mapping, deep)
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below, in its own words
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} is given twice",
                    key_node.start_mark)
            seen.add(key)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """``training:``: how m2vae-train fits the model. A key the file leaves out takes the default here.

    `epochs` is a ceiling: early stopping ends a run after `patience` epochs without a
    better validation ELBO. The split holds out `val_fraction` of the recording in
    `block_seconds`-long time blocks, since neighbouring frames are near-duplicates, and
    leaves out the validation frames within `guard_seconds` of a training frame (at a
    block's edges).
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    block_seconds: float = 5.0
    guard_seconds: float = 0.5
    patience: int = 5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:  # torch's generators take a signed 64-bit seed
            raise ConfigError(f"training.seed must be ≥ 0 and below 2**63, got {self.seed}")
        for name in ("lr", "block_seconds"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"training.{name} must be positive and finite, got {getattr(self, name)}")
        if not 0 <= self.guard_seconds < math.inf:
            raise ConfigError(f"training.guard_seconds must be ≥ 0 and finite, got {self.guard_seconds}")
        for name in ("block_seconds", "guard_seconds"):
            if getattr(self, name) > MAX_SPLIT_SECONDS:
                raise ConfigError(f"training.{name} must be at most {MAX_SPLIT_SECONDS:g} s, got "
                                  f"{getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"training.val_fraction must be in [0, 1), got {self.val_fraction}")

    @classmethod
    def parse(cls, section: Mapping[str, Any], where: str) -> TrainingSettings:
        """The settings from a ``training:`` mapping whose keys are known; numbers as YAML gives them."""
        values = {
            f.name: _typed(section[f.name], f.type, f"{where}: training.{f.name}")
            for f in dataclasses.fields(cls)
            if f.name in section
        }
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _typed(value: Any, type_name: str, where: str) -> int | float:
    """`parse_number` (the spec's rule for numbers as PyYAML gives them), failing as a ConfigError."""
    try:
        return parse_number(value, type_name, where)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything config/train.yaml says."""

    spec: ModelSpec
    labels_topic: str = "/ground_truth/object"
    slop: float = 0.05
    timeout: float | Mapping[str, float] = DEFAULT_TIMEOUT_S
    training: TrainingSettings = TrainingSettings()

    def __post_init__(self) -> None:
        if not 0 <= self.slop < math.inf:  # NaN fails too
            raise ConfigError(f"slop must be a finite number of seconds ≥ 0, got {self.slop}")

    def timeouts_ns(self) -> list[int]:
        """Each modality's silence timeout in ns, in configuration order (unlisted ones: 0.5 s)."""
        return [round(timeout_of(self.timeout, name) * 1e9) for name in self.spec.names]

    def dataset_key(self) -> dict[str, Any]:
        """The settings a prepared dataset's arrays depend on: not the model, weights or training.

        Changing β, a likelihood or the latent size must not rebuild an hour of recordings.
        """
        return {
            "modalities": [{k: m.to_dict()[k] for k in DATA_FIELDS} for m in self.spec.modalities],
            "labels_topic": self.labels_topic,
            "slop": self.slop,
            "timeouts_ns": self.timeouts_ns(),
        }


def default_config_path() -> Path:
    """config/train.yaml of the source tree, else the installed share/m2vae_ros/config/train.yaml."""
    in_tree = Path(__file__).resolve().parents[1] / "config" / "train.yaml"
    if in_tree.is_file():
        return in_tree
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config" / "train.yaml"
    except (ImportError, LookupError) as exc:  # PackageNotFoundError is a LookupError
        raise ConfigError(f"no default config: {in_tree} is missing and {PACKAGE} is not installed") from exc


def load_train_config(
    path: str | Path | None = None, topic_overrides: Mapping[str, str] | None = None
) -> TrainConfig:
    """Read a train.yaml (None: the packaged default) and apply ``--topic MODALITY=TOPIC`` overrides."""
    path = Path(path) if path is not None else default_config_path()
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # a Latin-1 comment, or --config naming a binary file
        raise ConfigError(f"config {path} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {_one_line(exc)}") from None
    except ValueError as exc:  # PyYAML's int() of a number of over 4300 digits
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping with sections {SECTIONS}")
    unknown = sorted(set(data) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"config {path}: unknown sections {unknown}; known: {list(SECTIONS)}")
    dataset = _section(data, "dataset", DATASET_KEYS, path)
    labels = _section(data, "labels", LABELS_KEYS, path)
    training = _section(data, "training", [f.name for f in dataclasses.fields(TrainingSettings)], path)
    model = _mapping(data, "model", path)  # its keys: ModelSpec's, which the spec checks
    try:
        modalities = data.get("modalities")
        spec = ModelSpec.from_dict({**model, "modalities": [] if modalities is None else modalities})
    except SpecError as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    slop = _typed(dataset.get("slop", TrainConfig.slop), "float", f"config {path}: dataset.slop")
    timeout = parse_timeout(dataset.get("timeout", TrainConfig.timeout), spec.names,
                            f"config {path}: dataset.timeout")
    settings = TrainingSettings.parse(training, f"config {path}")
    labels_topic = labels.get("topic", TrainConfig.labels_topic)
    if not isinstance(labels_topic, str) or not labels_topic:
        raise ConfigError(f"config {path}: labels.topic must be a ROS topic name such as "
                          f"{TrainConfig.labels_topic}, got {labels_topic!r}")
    try:
        config = TrainConfig(spec, labels_topic, slop, timeout, settings)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: dataset.{exc}") from None
    return with_topics(config, topic_overrides or {})


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: the problem and where it was found."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem is None or mark is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return f"{where} ({context})" if context else where


def _mapping(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """The mapping under `name` (empty if absent or left empty); any other value, 0 too, is a ConfigError."""
    section = {} if data.get(name) is None else data[name]
    if not isinstance(section, Mapping):
        raise ConfigError(f"config {path}: {name} must be a mapping, got {section!r}")
    return dict(section)


def _section(data: dict[str, Any], name: str, known: Sequence[str], path: Path) -> dict[str, Any]:
    """The mapping under `name` (empty if absent), refusing keys outside `known`."""
    section = _mapping(data, name, path)
    unknown = sorted(set(section) - set(known), key=str)
    if unknown:
        raise ConfigError(f"config {path}: unknown {name} keys {unknown}; known: {list(known)}")
    return section


def parse_timeout(value: Any, names: Sequence[str], where: str) -> float | dict[str, float]:
    """`liveness.parse_timeout`, whose refusal is a ConfigError here."""
    try:
        return liveness.parse_timeout(value, names, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def with_topics(config: TrainConfig, topics: Mapping[str, str]) -> TrainConfig:
    """A copy of `config` whose modalities named in `topics` read from the given topics."""
    unknown = sorted(set(topics) - set(config.spec.names))
    if unknown:
        raise ConfigError(f"--topic names unknown modalities {unknown}; known: {list(config.spec.names)}")
    modalities = tuple(
        dataclasses.replace(m, topic=topics.get(m.name, m.topic)) for m in config.spec.modalities
    )
    return dataclasses.replace(config, spec=dataclasses.replace(config.spec, modalities=modalities))


def parse_topic_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["camera=/front/image", …]`` (repeated ``--topic`` flags) → {"camera": "/front/image"}."""
    overrides = {}
    for item in items:
        name, sep, topic = item.partition("=")
        if not sep or not name or not topic.startswith("/"):
            raise ConfigError(f"--topic {item!r}: expected MODALITY=/topic/name")
        overrides[name] = topic
    return overrides
