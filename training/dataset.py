"""Prepared datasets: synchronised, decoded samples from rosbag2 recordings, on disk as .npy files.

`build_dataset` reads each bag once. Every message of a configured topic is checked
with the codec the live node uses (`codec.check_and_keep`: everything `decode_message`
checks, without the costly resizing) and its header stamp kept; the messages
`prediction.UsePredictor` expects a sample to use are decoded into a spill file on a
second thread (spill.py), which overlaps with the reading because OpenCV's resizing
releases the GIL. A camera at 30 Hz next to a LiDAR at 10 Hz thus costs one image
decode per sample instead of three. (Compressed images and point clouds have no cheaper
check: their check is the decode, and that is what gets spilled.) After the read, the
stamps are synchronised exactly (`sync.synchronize`) and each sample's rows
are copied from the spill into one memory-mapped .npy per array; the rare used message
the prediction missed is fetched by a second pass over just those. Messages that fail
the check are counted per topic and reason and never become samples.

`manifest.json` describes the result; it is written last and the whole directory is
renamed into place (build_directories.py), so a crash never leaves a half dataset. A build whose inputs (bag
sizes and mtimes, dataset-relevant config) are unchanged is reused instead of rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from m2vae_training.bags import Bag, fingerprint, recording_files, storage_digest, storage_identity
from m2vae_training.build_directories import remove_abandoned_builds, swap_into_place, work_directory
from m2vae_training.config import TrainConfig
from m2vae_training.prediction import UsePredictor
from m2vae_training.spill import DecodeStats, DecodeThread, Spill
from m2vae_training.sync import SyncResult, nearest_index, synchronize

from m2vae_ros.atomic import write_atomic
from m2vae_ros.codec import (
    CodecError,
    Decoded,
    check_and_keep,
    decode_message,
    require_decodable,
    stamp_ns,
)
from m2vae_ros.codec.common import CAVEATS
from m2vae_ros.differences import differences, first
from m2vae_ros.gil import prompt_thread_switching
from m2vae_ros.progress import progress_bar
from m2vae_ros.spec import RANGE_KINDS, ModalitySpec, ModelSpec, SpecError
from m2vae_ros.subsets import row_subsets, subset_name

# 2: a partial scan span's angle_max is its last beam (LaserScan's reading), not past it.
# 3: a span short of a full turn by less than a bin bins by the nearest centre; a NaN
#    intensity no longer drops its point's range; a sample straddling a class change is unlabelled.
# 4: ... and has no position either; an empty or all-NaN cloud is "no return", not a failure;
#    a stamp before 1970 is a failure.
# 5: REP 117/118 readings: a scan's −inf is a return at range_min, a 32FC1 image's NaN/±inf
#    decode (far/near) instead of failing; a (0, 0, 0) point is no return in a planar slice;
#    a cloud without points needs no fields; a field listed twice, a stamp of 0 and a second
#    message type on a sensor's topic are failures.
# 6: a scan sparser than the spec fills the bins between its beams from the beams covering
#    them (they read "no return" before); a one-ring range image sits in the FOV's middle.
# 7: the manifest counts each sensor's decode caveats (`beyond_full_scale` besides
#    `grey_for_colour`), so a dataset built before them is rebuilt rather than reused unnoted.
# 8: ... and `depth_for_image` (a depth camera's 16UC1 read by kind image), and the share of
#    returns beyond range_max (`beyond_range_max`).
FORMAT = 8
MANIFEST = "manifest.json"
LABEL_WINDOW_NS = 100_000_000  # a ground-truth marker further than 0.1 s from a sample does not label it
MAX_PROBLEMS_PER_KIND = 20  # examples per (topic, reason) kept in the manifest; counts are always complete
COPY_ROWS = 512  # spill rows copied into the dataset at a time (bounded memory for long recordings)


class DatasetError(Exception):
    """A prepared dataset directory that is missing, incomplete or inconsistent."""


@dataclass
class PreparedDataset:
    """A dataset as arrays (memory-mapped); row i of every array belongs to sample i.

    `arrays[name]` is float32 [N, *shape] with zero rows where `available[:, k]` is False;
    `masks[name]` (scan, range_image and depth only) flags real returns. `labels` is −1 and
    `positions` NaN where no ground-truth marker was near the sample.
    """

    directory: Path
    spec: ModelSpec
    arrays: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    available: np.ndarray
    stamps: np.ndarray
    bag_index: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    class_names: list[str]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.stamps)

    def silent_modalities(self) -> list[ModalitySpec]:
        """The modalities no sample has: a model cannot learn them, nor a test score them."""
        return [m for k, m in enumerate(self.spec.modalities) if not self.available[:, k].any()]


def dataset_key(bags: Sequence[str | Path], config: TrainConfig) -> dict[str, Any]:
    """What a prepared dataset depends on; equal keys mean the existing build can be reused."""
    return {"format": FORMAT, "bags": [fingerprint(b) for b in bags], "config": config.dataset_key()}


def build_dataset(
    bags: Sequence[str | Path], config: TrainConfig, out_dir: str | Path, *, progress: bool = True
) -> PreparedDataset:
    """Decode and synchronise `bags` into `out_dir`, or reuse it when built from the same inputs.

    Raises BagError for a bag that cannot be opened at all and DatasetError when
    `out_dir` exists but is not a dataset (it is never overwritten then).
    """
    if not bags:
        raise DatasetError("no bags given")
    _refuse_a_recording_twice(bags)
    out_dir = Path(out_dir).resolve()  # a symlinked --out: build beside, and replace, its target
    key = dataset_key(bags, config)
    if is_prepared_dataset(out_dir):
        try:
            existing = load_dataset(out_dir)
        except DatasetError:
            existing = None  # an older format, or arrays that no longer load: rebuilt
        if existing is not None and existing.manifest.get("key") == key:
            existing.manifest["reused"] = True
            return existing
        if existing is not None and progress:  # a dataset the user built by hand is about to be replaced
            changed = differences("dataset", existing.manifest.get("key"), key, labels=("in it", "now"))
            print(f"rebuilding {out_dir}, built from other inputs: {first(changed, 3)}", file=sys.stderr)
    elif out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DatasetError(f"{out_dir} exists and is not a prepared dataset; choose another --out")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(out_dir)
    building = work_directory(out_dir, "building")
    shutil.rmtree(building, ignore_errors=True)  # an earlier process's, with our (reused) pid
    try:
        building.mkdir()  # inside: a Ctrl-C just after it must not leave the directory behind
        manifest = _Builder(config, building, progress).run(bags)
        manifest["key"] = key
        write_atomic(building / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        swap_into_place(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    dataset = load_dataset(out_dir)
    dataset.manifest["reused"] = False
    return dataset


def _refuse_a_recording_twice(bags: Sequence[str | Path]) -> None:
    """DatasetError when two arguments name one recording (twice, a bag and one of its files, a copy).

    Its samples would train twice, and the time-block split would validate on copies of
    training frames.
    """
    owners: dict[tuple[int, int], int] = {}
    copies: dict[tuple[int, int], int] = {}
    for i, bag in enumerate(bags):
        path = Path(bag).resolve()
        for file in recording_files(path) if path.exists() else []:
            identity = (file.stat().st_dev, file.stat().st_ino)  # a hard link is the same file
            if (other := owners.setdefault(identity, i)) != i:
                raise DatasetError(f"{bag} and {bags[other]} are one recording ({file.name}); give it once")
        contents = storage_identity(path)  # None for a path that holds no recording
        if contents is None:
            continue
        # Size and mtime find the candidates; the files' ends confirm them (bags unpacked from one
        # archive can share a size and a whole-second mtime), read only when those match.
        candidate = copies.get(contents)
        if candidate is not None and storage_digest(path) == storage_digest(bags[candidate]):
            raise DatasetError(f"{bag} and {bags[candidate]} hold the same messages (same size, newest mtime "
                               "and content, as a copy made with cp -a): give the recording once")
        copies.setdefault(contents, i)


def _separately_synchronised(indexes: Sequence[_BagIndex], names: Sequence[str]) -> list[str]:
    """A line per pair of bags that cover the same time with sensors the other lacks entirely.

    Each bag is synchronised on its own, so sensors recorded into separate bags at the same
    time (one recorder per sensor) never share a sample. Bags sharing a sensor are separate
    runs: their clocks may overlap without harm (simulations all start at the same time).
    """
    sensors = [[n for k, n in enumerate(names) if (index.sync.indices[:, k] >= 0).any()] for index in indexes]
    lines = []
    for i, a in enumerate(indexes):
        for j, b in enumerate(indexes[i + 1 :], start=i + 1):
            if not (sensors[i] and sensors[j]) or set(sensors[i]) & set(sensors[j]):
                continue
            overlap = min(a.sync.stamps[-1], b.sync.stamps[-1]) - max(a.sync.stamps[0], b.sync.stamps[0])
            if overlap > 0:
                shown = ["+".join(sensors[i]), "+".join(sensors[j])]
                lines.append(f"{a.path} ({shown[0]}) and {b.path} ({shown[1]}) overlap for "
                             f"{overlap / 1e9:.1f} s and are synchronised separately: if one recorder "
                             "per sensor made them, merge them into one bag (ros2 bag convert, or rosbags' "
                             "Reader and Writer without ROS) for samples with both")
    return lines


def is_prepared_dataset(directory: Path) -> bool:
    """Whether `directory` holds a manifest this builder wrote (any format), so it may be replaced.

    Another tool's directory with a manifest.json of its own is never overwritten.
    """
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"format", "key", "bags"} <= manifest.keys()


def _straddles_a_class_change(
    indices: np.ndarray, stamps: list[np.ndarray], marker_stamps: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Per sample, whether a member was captured while the labelled object changed.

    `marker_stamps` are sorted, `ids` their class ids.

    A marker tells what is there from its stamp to the next marker's. Between two markers
    of different classes the object changed at an unknown moment, so a member stamped
    there (e.g. the camera frame just after a scan that closed an episode) may show the
    next object: the sample mixes two objects and gets no label.
    """
    straddles = np.zeros(len(indices), dtype=bool)
    for k, topic_stamps in enumerate(stamps):
        present = indices[:, k] >= 0
        member = topic_stamps[indices[present, k]]
        before = np.searchsorted(marker_stamps, member, side="right") - 1
        inside = (before >= 0) & (before < len(marker_stamps) - 1)
        between = inside.copy()
        between[inside] = marker_stamps[before[inside]] != member[inside]  # a marker at the stamp decides
        changed = np.zeros(len(member), dtype=bool)
        changed[between] = ids[before[between]] != ids[before[between] + 1]
        straddles[np.flatnonzero(present)[changed]] = True
    return straddles


def placeholder_class_name(class_id: int) -> str:
    """The name listed for a class id below the highest one seen that no marker of the recordings named.

    Evaluation compares class names by id between recordings; a placeholder says nothing
    about what the id means, so it must not be mistaken for a conflicting name.
    """
    return f"class_{class_id}"


def common_class_names(train: Sequence[str], test: Sequence[str]) -> list[str]:
    """Class names by index; training and test must agree on what each index means.

    Only names both sides observed can disagree: an id one side never saw has a
    placeholder there (a test recording without class 1 lists it as "class_1").
    """
    names = []
    for i in range(max(len(train), len(test))):
        placeholder = placeholder_class_name(i)
        a, b = (side[i] if i < len(side) else placeholder for side in (train, test))
        if placeholder not in (a, b) and a != b:
            raise ValueError(f"class {i} is {a!r} in the training data but {b!r} in the test data")
        names.append(b if a == placeholder else a)
    # One object under another id: its test samples would carry an id the classifier never saw.
    for i, name in enumerate(test):
        ids = [j for j, known in enumerate(train) if known == name]
        if name != placeholder_class_name(i) and ids and i not in ids:
            raise ValueError(f"class {name!r} is id {ids[0]} in the training data but {i} in the test data")
    return names


def load_dataset(directory: str | Path) -> PreparedDataset:
    """Open a prepared dataset (arrays memory-mapped read-only); DatasetError if it is incomplete."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        spec = ModelSpec.from_dict(manifest["spec"])
    except FileNotFoundError:
        raise DatasetError(f"{directory} is not a prepared dataset (no {MANIFEST})") from None
    except (OSError, ValueError, KeyError, TypeError, SpecError) as exc:
        raise DatasetError(f"{directory / MANIFEST} is unreadable: {exc}") from None

    def array(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        try:
            values = np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{directory}: {name}.npy is missing or damaged ({exc})") from None
        if values.shape != shape or values.dtype != np.dtype(dtype):
            raise DatasetError(f"{directory}: {name}.npy is {values.dtype}{values.shape}, expected "
                               f"{np.dtype(dtype)}{shape}")
        return values

    n = int(manifest.get("samples", {}).get("total", -1))
    return PreparedDataset(
        directory=directory,
        spec=spec,
        arrays={m.name: array(f"x_{m.name}", (n, *m.shape), np.float32) for m in spec.modalities},
        masks={
            m.name: array(f"mask_{m.name}", (n, *m.shape), np.bool_) for m in spec.modalities if m.has_mask
        },
        available=array("available", (n, len(spec.modalities)), np.bool_),
        stamps=array("stamps", (n,), np.int64),
        bag_index=array("bag_index", (n,), np.int64),
        labels=array("labels", (n,), np.int64),
        positions=array("positions", (n, 3), np.float32),
        class_names=list(manifest.get("class_names", [])),
        manifest=manifest,
    )


def header_stamp(msg: Any) -> int | None:
    """A message's header stamp for failure reports, None when it has none (or did not deserialize)."""
    try:
        return stamp_ns(msg)
    except CodecError:
        return None


@dataclass
class _TopicStats:
    type: str = ""
    messages: int = 0
    decoded: int = 0
    failed: int = 0
    failures: Counter = dataclasses.field(default_factory=Counter)
    out_of_order: int = 0
    repeated_stamps: int = 0  # equal to the one before: a driver whose clock stands still
    # header stamp minus the bag's record time, per accepted message: sensors on one clock share it
    stamp_offsets_ns: array = dataclasses.field(default_factory=lambda: array("q"))
    # the sensor's TF frame: the node stamps the reconstruction of a sensor it has not heard with it
    frame_ids: Counter = dataclasses.field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        offset = float(np.median(self.stamp_offsets_ns)) / 1e9 if self.stamp_offsets_ns else None
        frame_id = self.frame_ids.most_common(1)[0][0] if self.frame_ids else ""
        return {"type": self.type, "messages": self.messages, "decoded": self.decoded, "failed": self.failed,
                "failures": dict(sorted(self.failures.items())), "out_of_order": self.out_of_order,
                "repeated_stamps": self.repeated_stamps, "stamp_offset_s": offset, "frame_id": frame_id}


@dataclass
class _Markers:
    """Ground-truth markers of one bag: stamps, class ids and positions."""

    stamps: list[int] = dataclasses.field(default_factory=list)
    ids: list[int] = dataclasses.field(default_factory=list)
    positions: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)


@dataclass
class _BagIndex:
    """The read of one bag: which messages passed the checks, the samples they form, what was decoded.

    `topic_ordinals[k][j]` is the ordinal, among its topic's messages in reading order,
    of modality k's j-th accepted message; `sync.indices` index these accepted messages.
    `spill_rows[k]` maps such an ordinal to the row of modality k's spill holding its decode.
    """

    path: Path
    sync: SyncResult
    topic_ordinals: list[np.ndarray]
    spill_rows: list[dict[int, int]]
    labels: np.ndarray
    positions: np.ndarray


def _reach(masks: np.ndarray, present: np.ndarray) -> float | None:
    """The share of a LiDAR modality's cells (bins, or rings × bins) that hold a return in some
    sample; None when no sample has the modality (`present`). A cell no sample reaches lies
    outside the sensor's beams (a 270° scanner on a 360° model, a vertical field of view
    wider than the sensor's, or rings finer than its beams) and reads "no return" in every
    sample; 0.0 is a geometry that misses every beam."""
    if not present.any():
        return None
    reached = np.zeros(masks.shape[1:], dtype=bool)
    for start in range(0, len(masks), COPY_ROWS):  # a memmap: in chunks, not all at once
        reached |= masks[start : start + COPY_ROWS].any(axis=0)
    return float(reached.mean())


def _targets(arrays: dict[str, np.ndarray], modality: ModalitySpec) -> list[np.ndarray]:
    """A modality's dataset arrays: [tensors] or, for masked kinds (LiDAR, depth), [tensors, masks]."""
    return [arrays[f"x_{modality.name}"]] + ([arrays[f"mask_{modality.name}"]] if modality.has_mask else [])


class _Builder:
    """One build: reads every bag, allocates the arrays in `directory`, fills them; returns the manifest."""

    def __init__(self, config: TrainConfig, directory: Path, progress: bool) -> None:
        self.config = config
        self.spec = config.spec
        self.directory = directory
        self.stats: dict[str, _TopicStats] = defaultdict(_TopicStats)
        self.recorded: dict[str, str] = {}  # every topic of the bags → its type, for "did you mean"
        self.missing_from: dict[str, list[str]] = defaultdict(list)  # a sensor's topic → bags without it
        self.problems: list[dict[str, Any]] = []
        self.problem_counts: Counter = Counter()
        self.damage: list[str] = []
        self.class_names: dict[int, str] = {}
        self.markers = 0
        self.label_failures: Counter = Counter()
        # Per sensor sharing its topic with another: the topic's counts cannot tell them apart.
        self.shared_topic_failures: dict[str, Counter] = defaultdict(Counter)
        self.by_topic: dict[str, list[int]] = defaultdict(list)
        for k, modality in enumerate(self.spec.modalities):
            if not modality.topic:
                raise DatasetError(f"modality {modality.name!r} has no topic (config or --topic)")
            try:
                require_decodable(modality)
            except CodecError as exc:
                raise DatasetError(exc.detail) from None
            self.by_topic[modality.topic].append(k)
        self.msg_types = [m.msg_type for m in self.spec.modalities]
        self.spills = [Spill(directory, m) for m in self.spec.modalities]
        self.decoder = DecodeThread(self.spec, self.spills)
        self.reread = 0
        # The rereads' decode stats, per modality; the spills hold the other decodes'.
        self.reread_stats = [DecodeStats() for _ in self.spec.modalities]
        self.bar = progress_bar(enabled=progress, desc="reading bags", unit="msg")

    def run(self, bags: Sequence[str | Path]) -> dict[str, Any]:
        names = self.spec.names
        with self.bar:
            try:
                with prompt_thread_switching():
                    indexes = [self._read(Path(bag)) for bag in bags]
            finally:
                self.decoder.close()
                for spill in self.spills:
                    spill.close()
            total = sum(len(index.sync.stamps) for index in indexes)
            arrays = {f"x_{m.name}": self._allocate(f"x_{m.name}", np.float32, (total, *m.shape))
                      for m in self.spec.modalities}
            arrays.update({f"mask_{m.name}": self._allocate(f"mask_{m.name}", np.bool_, (total, *m.shape))
                           for m in self.spec.modalities if m.has_mask})
            spill_arrays = [spill.read() for spill in self.spills]
            start = 0
            for index in indexes:
                self._fill(index, start, arrays, spill_arrays)
                start += len(index.sync.stamps)
            for values in arrays.values():
                if isinstance(values, np.memmap):
                    values.flush()
            del spill_arrays
            for spill in self.spills:
                spill.remove()
        available = np.concatenate([i.sync.indices >= 0 for i in indexes]).reshape(total, len(names))
        reach = {m.name: _reach(arrays[f"mask_{m.name}"], available[:, k])
                 for k, m in enumerate(self.spec.modalities) if m.kind in RANGE_KINDS}
        sizes = [len(i.sync.stamps) for i in indexes]
        per_sample = {
            "available": available,
            "stamps": np.concatenate([i.sync.stamps for i in indexes]),
            "bag_index": np.repeat(np.arange(len(indexes), dtype=np.int64), sizes),
            "labels": np.concatenate([i.labels for i in indexes]),
            "positions": np.concatenate([i.positions for i in indexes]).reshape(-1, 3),
        }
        for name, values in per_sample.items():
            np.save(self.directory / f"{name}.npy", values)
        subsets = Counter(subset_name(int(b), names) for b in row_subsets(available))
        typed = zip(self.spec.modalities, self.msg_types, strict=True)
        spec = dataclasses.replace(
            self.spec, modalities=tuple(dataclasses.replace(m, msg_type=t) for m, t in typed)
        )
        complete = subsets.get("+".join(names), 0)
        last_id = max(self.class_names, default=-1)
        return {
            "format": FORMAT,
            "bags": [fingerprint(b) for b in bags],
            "spec": spec.to_dict(),
            "config": self.config.dataset_key(),
            "topics": {topic: s.as_json() for topic, s in self.stats.items()},
            "recorded_topics": dict(sorted(self.recorded.items())),
            # only topics some bag holds: one that none holds is noted as absent instead
            "missing_from": {t: bags for t, bags in sorted(self.missing_from.items()) if t in self.recorded},
            "returns_reach": {name: value for name, value in reach.items() if value is not None},
            "samples": {"total": total, "complete": complete, "partial": total - complete,
                        "by_subset": dict(sorted(subsets.items(), key=lambda kv: (-kv[1], kv[0])))},
            "class_names": [self.class_names.get(i, placeholder_class_name(i)) for i in range(last_id + 1)],
            "labels": {"topic": self.config.labels_topic, "markers": self.markers,
                       "labelled_samples": int((per_sample["labels"] >= 0).sum()),
                       "failures": dict(self.label_failures)},
            "damage": self.damage,
            "separately_synchronised": _separately_synchronised(indexes, names),
            "shared_topic_failures": {k: dict(n) for k, n in sorted(self.shared_topic_failures.items())},
            "problems": self.problems,
            "decodes": {"while_reading": sum(spill.rows for spill in self.spills),
                        "reread": self.reread},
            **self._caveats(),
            "beyond_range_max": self._beyond_range(),
        }

    def _caveats(self) -> dict[str, dict[str, int]]:
        """Per caveat (`CAVEATS`: e.g. `grey_for_colour`), how many of each sensor's decodes had it
        (each message the build decoded: those of the samples, and a few it expected to be)."""
        counts = {key: {} for key in CAVEATS}
        for m, spill, reread in zip(self.spec.modalities, self.spills, self.reread_stats, strict=True):
            for key, n in (spill.stats.caveats + reread.caveats).items():
                counts[key][m.name] = n
        return counts

    def _beyond_range(self) -> dict[str, float]:
        """Per ranging sensor, the mean over its decodes of the share of returns beyond range_max."""
        pairs = zip(self.spec.modalities, self.spills, self.reread_stats, strict=True)
        shares = {m.name: spill.stats.beyond_range + reread.beyond_range for m, spill, reread in pairs}
        return {name: round(float(np.mean(values)), 4) for name, values in shares.items() if values}

    def _allocate(self, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        """A zero-filled .npy in the build directory, memory-mapped for writing (numpy cannot map 0 bytes)."""
        path = self.directory / f"{name}.npy"
        if shape[0] == 0:
            np.save(path, np.zeros(shape, dtype=dtype))
            return np.zeros(shape, dtype=dtype)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def _read(self, path: Path) -> _BagIndex:
        """Check every message, keep stamps of the good ones, decode the expected ones, synchronise, label."""
        modalities = self.spec.modalities
        stamps: list[list[int]] = [[] for _ in modalities]
        ordinals_by_modality: list[list[int]] = [[] for _ in modalities]
        spill_rows: list[dict[int, int]] = [{} for _ in modalities]
        slop_ns, timeouts_ns = round(self.config.slop * 1e9), self.config.timeouts_ns()
        predictor: UsePredictor[tuple[int, Any]] = UsePredictor(slop_ns, timeouts_ns)
        seen: Counter = Counter()
        markers = _Markers()
        with Bag(path) as bag:
            self.recorded.update(bag.topics)
            for topic in self.by_topic.keys() - bag.topics.keys():
                self.missing_from[topic].append(str(path))
            for topic in self.by_topic:
                self.stats[topic].type = self.stats[topic].type or bag.topics.get(topic, "")
            for topic, msgtype, record_ns, raw in bag.messages({*self.by_topic, self.config.labels_topic}):
                self.bar.update()
                if topic not in self.by_topic:
                    self._read_marker(bag, raw, msgtype, markers)
                    continue
                ordinal = seen[topic]
                seen[topic] += 1
                stats = self.stats[topic]
                stats.messages += 1
                msg = None
                checked, failures = [], []
                try:
                    msg = bag.deserialize(raw, msgtype)
                except CodecError as exc:
                    failures.append(exc)
                else:
                    for k in self.by_topic[topic]:  # a cloud may feed a scan and a range image
                        try:
                            checked.append((k, self._check(k, msg, msgtype)))
                        except CodecError as exc:
                            failures.append(exc)
                            if len(self.by_topic[topic]) > 1:
                                self.shared_topic_failures[modalities[k].name][exc.reason] += 1
                for exc in failures:  # examples also where another sensor took the message
                    self._problem(path, topic, exc.reason, exc.detail, record_ns=record_ns,
                                  stamp_ns=header_stamp(msg))
                if not checked:
                    stats.failed += 1
                    stats.failures[failures[0].reason] += 1
                    continue
                stats.decoded += 1
                stats.stamp_offsets_ns.append(checked[0][1][0] - record_ns)
                stats.frame_ids[str(msg.header.frame_id)] += 1
                for k, (stamp, decoded) in checked:
                    stamps[k].append(stamp)
                    ordinals_by_modality[k].append(ordinal)
                    self._decode_expected(predictor.push(k, stamp, (ordinal, decoded or msg)), spill_rows)
            self._decode_expected(predictor.finish(), spill_rows)
            self.decoder.drain()
            self.damage.extend(bag.damage)
        stamp_arrays = [np.array(s, dtype=np.int64) for s in stamps]
        sync = synchronize(stamp_arrays, slop_ns, timeouts_ns)
        for topic, (k, *_) in self.by_topic.items():
            self.stats[topic].repeated_stamps += int((np.diff(stamp_arrays[k]) == 0).sum())
        for k, late in enumerate(sync.out_of_order):
            topic = modalities[k].topic
            self.stats[topic].out_of_order += len(late)
            for stamp in late[:MAX_PROBLEMS_PER_KIND]:
                self._problem(path, topic, "out_of_order", "header stamp older than its predecessor",
                              stamp_ns=int(stamp))
        labels, positions = self._labels(sync, stamp_arrays, markers)
        ordinal_arrays = [np.array(o, dtype=np.int64) for o in ordinals_by_modality]
        return _BagIndex(path, sync, ordinal_arrays, spill_rows, labels, positions)

    def _check(self, k: int, msg: Any, msgtype: str) -> tuple[int, Decoded | None]:
        """`check_and_keep` for modality k, which reads one message type: the first it accepts, or the
        configured one. The node subscribes with that one type; a second would train on data it never sees."""
        expected = self.msg_types[k]
        if expected and msgtype != expected:
            raise CodecError("wrong_type", f"{msgtype} where modality {self.spec.modalities[k].name!r} reads "
                             f"{expected} (one type per sensor; set its msg_type to choose)")
        checked = check_and_keep(msg, self.spec.modalities[k])
        self.msg_types[k] = msgtype
        return checked

    def _decode_expected(self, decisions: list[tuple[int, tuple[int, Any], bool]],
                         spill_rows: list[dict[int, int]]) -> None:
        """Queue the decodes of the messages the predictor expects in a sample; drop the others."""
        for k, (ordinal, msg), expected in decisions:
            if expected:
                self.decoder.submit(k, ordinal, msg, spill_rows[k])

    def _fill(self, index: _BagIndex, start: int, arrays: dict[str, np.ndarray],
              spill_arrays: list[list[np.ndarray]]) -> None:
        """Copy each sample's decodes into its rows (from `start` on); reread the ones not decoded yet."""
        missed: dict[str, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for k, modality in enumerate(self.spec.modalities):
            rows = np.flatnonzero(index.sync.indices[:, k] >= 0)
            ordinals = index.topic_ordinals[k][index.sync.indices[rows, k]]
            sources = np.array([index.spill_rows[k].get(int(o), -1) for o in ordinals], dtype=np.int64)
            hit = sources >= 0
            hit_rows, hit_sources = start + rows[hit], sources[hit]
            for begin in range(0, len(hit_rows), COPY_ROWS):
                chunk = slice(begin, begin + COPY_ROWS)
                for target, source in zip(_targets(arrays, modality), spill_arrays[k], strict=True):
                    target[hit_rows[chunk]] = source[hit_sources[chunk]]
            for row, ordinal in zip(rows[~hit], ordinals[~hit], strict=True):
                missed[modality.topic][int(ordinal)].append((start + int(row), k))
        if missed:
            self._reread(index.path, missed, arrays)

    def _reread(self, path: Path, wanted: dict[str, dict[int, list[tuple[int, int]]]],
                arrays: dict[str, np.ndarray]) -> None:
        """Second pass over one bag for the used messages the predictor missed: decode into their rows."""
        modalities = self.spec.modalities
        self.reread += sum(len(v) for v in wanted.values())
        seen: Counter = Counter()
        with Bag(path) as bag:
            for topic, msgtype, _, raw in bag.messages(set(wanted)):
                self.bar.update()
                ordinal = seen[topic]
                seen[topic] += 1
                targets = wanted[topic].pop(ordinal, None)
                if targets is None:
                    continue
                try:
                    msg = bag.deserialize(raw, msgtype)
                    for row, k in targets:
                        decoded = decode_message(msg, modalities[k])
                        self.reread_stats[k].add(decoded)
                        values = (decoded.tensor, decoded.mask)  # the mask only where the arrays have one
                        for target, value in zip(_targets(arrays, modalities[k]), values, strict=False):
                            target[row] = value
                except CodecError as exc:
                    raise DatasetError(f"{path}: {topic} message {ordinal} passed its check but does not "
                                       f"decode: {exc}") from None
                if not any(wanted.values()):
                    break
        missing = sum(len(v) for v in wanted.values())
        if missing:
            raise DatasetError(f"{path} changed while being read: {missing} messages vanished")

    def _read_marker(self, bag: Bag, raw: bytes, msgtype: str, markers: _Markers) -> None:
        try:
            marker = bag.deserialize(raw, msgtype)
            class_id, name = int(marker.id), str(marker.ns)
            if class_id < 0 or int(getattr(marker, "action", 0)) != 0:
                return  # not an object: DELETE/DELETEALL markers (action 2, 3) are ignored, stamped or not
            stamp, position = stamp_ns(marker), marker.pose.position
        except (CodecError, AttributeError) as exc:
            self.label_failures[getattr(exc, "reason", "missing_field")] += 1
            return
        known = self.class_names.setdefault(class_id, name)
        if known != name:  # the evaluation would score two objects as one class
            raise DatasetError(f"{bag.path}: ground-truth marker id {class_id} is {name!r} here but "
                               f"{known!r} earlier on {self.config.labels_topic}; one id must name one class")
        self.markers += 1
        markers.stamps.append(stamp)
        markers.ids.append(class_id)
        markers.positions.append((float(position.x), float(position.y), float(position.z)))

    def _labels(
        self, sync: SyncResult, member_stamps: list[np.ndarray], markers: _Markers
    ) -> tuple[np.ndarray, np.ndarray]:
        """The nearest marker (within LABEL_WINDOW_NS) of each sample stamp: class id and position.

        A sample whose members straddle a change of object gets neither (-1, NaN): its
        sensors saw two objects.
        """
        stamps = sync.stamps
        labels = np.full(len(stamps), -1, dtype=np.int64)
        positions = np.full((len(stamps), 3), np.nan, dtype=np.float32)
        if not markers.stamps or not len(stamps):
            return labels, positions
        order = np.argsort(markers.stamps, kind="stable")
        marker_stamps = np.asarray(markers.stamps, dtype=np.int64)[order]
        ids = np.asarray(markers.ids, dtype=np.int64)[order]
        nearest = nearest_index(marker_stamps, stamps)
        close = np.abs(marker_stamps[nearest] - stamps) <= LABEL_WINDOW_NS
        labels[close] = ids[nearest[close]]
        positions[close] = np.asarray(markers.positions, dtype=np.float32)[order[nearest[close]]]
        straddles = _straddles_a_class_change(sync.indices, member_stamps, marker_stamps, ids)
        labels[straddles], positions[straddles] = -1, np.nan
        return labels, positions

    def _problem(self, bag: Path, topic: str, reason: str, detail: str, **stamp: int | None) -> None:
        """Keep an example of a failure (bag, topic, stamp, reason) for the manifest, a few per kind."""
        self.problem_counts[topic, reason] += 1
        if self.problem_counts[topic, reason] <= MAX_PROBLEMS_PER_KIND:
            example = {"bag": str(bag), "topic": topic, "reason": reason, "detail": detail}
            self.problems.append({**example, **stamp})
