"""What a dataset build found beyond its counts, as lines for people: m2vae-dataset prints them
after its summary, m2vae-train before it trains; and the hints of the error for topics that
gave no samples, which m2vae-train and m2vae-eval raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from m2vae_training.dataset import DatasetError, PreparedDataset

from m2vae_ros.codec import accepted_types, could_feed
from m2vae_ros.codec.common import CAVEATS
from m2vae_ros.reach import MIN_REACH, REACH_HINTS, cells_word
from m2vae_ros.spec import ModalitySpec

# Sensors whose header stamps sit this much further apart, against the bag's record times, run on
# different clocks: transport delays are milliseconds, and samples pair sensors by header stamp.
CLOCK_SPLIT_S = 1.0
# A ranging sensor losing this share of its returns, on average, to range_max is noted: a choice
# of range_max, so only noted (a scan in a hall may well see past an 8 m model on purpose).
BEYOND_NOTE_SHARE = 0.05


def notes(dataset: PreparedDataset) -> list[str]:
    """What the summary object leaves out, a line each: reuse, stamps out of order, repeated or on
    split clocks, decode caveats (`CAVEATS`), damage, sensors recorded into separate bags,
    failures on a shared topic, a configured topic the bags lack, or only some of them (and the
    recorded ones that could feed its sensor), or record with a type its kind cannot read, returns
    beyond range_max, a LiDAR geometry unlike the sensor's, and where the problem examples are."""
    manifest = dataset.manifest
    lines = [f"dataset {'reused' if manifest.get('reused') else 'written'}: {dataset.directory}"]
    lines += [f"{topic}: {t['out_of_order']} header stamps out of order"
              for topic, t in manifest["topics"].items() if t.get("out_of_order")]
    lines += [f"{topic}: {t['repeated_stamps']} header stamps repeat the one before (a clock standing still?)"
              for topic, t in manifest["topics"].items() if t.get("repeated_stamps")]
    lines += clock_split(manifest["topics"])
    lines += [f"{name}: {n} of the messages decoded for it were {text}"
              for key, text in CAVEATS.items() for name, n in manifest.get(key, {}).items()]
    lines += [f"damage: {line}" for line in manifest.get("damage", [])]
    lines += manifest.get("separately_synchronised", [])
    lines += shared_topic_failed(dataset)
    recorded = manifest.get("recorded_topics", {})
    lines += [f"{m.topic} is not in the bags; {hint}" for m in dataset.spec.modalities
              if not manifest["topics"][m.topic]["type"] and (hint := feeding_topics_hint(m, manifest))]
    lines += partly_recorded(dataset)
    lines += [hint for m in dataset.spec.modalities if (hint := unreadable_type(m, recorded))]
    for name, share in manifest.get("beyond_range_max", {}).items():
        if share >= BEYOND_NOTE_SHARE:
            limit = dataset.spec.modality(name).preprocess.range_max
            lines.append(f"{name}: {share:.0%} of a message's returns lay beyond preprocess.range_max "
                         f"({limit:g} m), on average, and read as no return: raise range_max if the far "
                         "scene matters")
    for name, share in manifest.get("returns_reach", {}).items():
        if share < MIN_REACH:
            kind = dataset.spec.modality(name).kind
            lines.append(f"{name}: {share:.0%} of its {cells_word(kind)} hold a return in some sample, the "
                         f"others in none: {REACH_HINTS[kind]}")
    if manifest.get("problems"):
        lines.append(f"{len(manifest['problems'])} problem examples (topic, stamp, reason) in manifest.json")
    return lines


def shared_topic_failed(dataset: PreparedDataset) -> list[str]:
    """A line per sensor that failed on messages of a topic another sensor decoded, with an example:
    the topic's own counts are the other sensor's and may read 'all decoded'."""
    lines = []
    for name, failures in dataset.manifest.get("shared_topic_failures", {}).items():
        example = first_problem(dataset.manifest, dataset.spec.modality(name).topic, failures)
        lines.append(f"{name} (on a topic it shares with another sensor) failed on {failure_counts(failures)}"
                     + (f", e.g. [{example}]" if example else ""))
    return lines


def partly_recorded(dataset: PreparedDataset) -> list[str]:
    """A line per sensor topic that some bags hold and others lack: the samples of those lack the
    sensor, which the counts alone hide (a raw camera in one recording, a compressed one in the next)."""
    lines = []
    for topic, bags in dataset.manifest.get("missing_from", {}).items():
        names = [m.name for m in dataset.spec.modalities if m.topic == topic]
        hints = [hint for m in dataset.spec.modalities if m.topic == topic
                 and (hint := feeding_topics_hint(m, dataset.manifest))]
        lines.append(f"{topic} is not in {len(bags)} of the {len(dataset.manifest['bags'])} bags "
                     f"({', '.join(bags)}): their samples lack {'+'.join(names)}"
                     + "".join(f"; {hint}" for hint in hints))
    return lines


def clock_split(topics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line when the sensors' header stamps, each against the bag's record times, differ by
    CLOCK_SPLIT_S or more: a driver stamping from its own clock pairs with no other sensor."""
    offsets = {topic: t["stamp_offset_s"] for topic, t in topics.items()
               if t.get("stamp_offset_s") is not None}
    if len(offsets) < 2 or max(offsets.values()) - min(offsets.values()) < CLOCK_SPLIT_S:
        return []
    by_offset = sorted(offsets.items(), key=lambda kv: kv[1])
    listed = ", ".join(f"{topic} {offset:+.6g} s" for topic, offset in by_offset)
    return [f"header stamps against the record times (median): {listed}; samples pair sensors by header "
            "stamp, so sensors on different clocks do not pair (synchronise the drivers' clocks)"]


def failure_counts(failures: dict[str, int]) -> str:
    """`reason n, reason n` for a failure count table."""
    return ", ".join(f"{reason} {n}" for reason, n in failures.items())


def no_samples(modalities: Sequence[ModalitySpec], bags: str = "the bags") -> str:
    """'no sample of the bags holds camera=/x, lidar=/y': one wording for the dataset, training and test."""
    return f"no sample of {bags} holds {', '.join(f'{m.name}={m.topic}' for m in modalities)}"


def no_samples_error(
    modalities: Sequence[ModalitySpec], manifest: Mapping[str, Any], bags: str = "the bags"
) -> DatasetError:
    """The error for configured topics the bags give nothing on, with the way to fix it: a topic of
    a type the sensor reads whose every message failed says why, any other is likely the wrong topic."""
    recorded = manifest.get("recorded_topics", {})
    failed = {m.name: line for m in modalities
              if not unreadable_type(m, recorded) and (line := all_failed(m, manifest))}
    text = no_samples(modalities, bags) + "".join(f"; {line}" for line in dict.fromkeys(failed.values()))
    if others := [m for m in modalities if m.name not in failed]:
        hints = [hint for m in others if (hint := topic_hints(m, manifest))]
        hints += ["`m2vae-dataset` prints what each topic gave"]  # why a recorded topic gave nothing
        text += f"; name the recorded topics with --topic MODALITY=TOPIC ({'; '.join(hints)})"
    return DatasetError(text)


def all_failed(modality: ModalitySpec, manifest: Mapping[str, Any]) -> str:
    """'/camera: all 60 messages failed (unsupported_encoding 60), e.g. [...]' when every message of
    the sensor's recorded topic failed for it, with the first failure's detail; else ''. On a topic
    it shares with another sensor, its own failures count (`shared_topic_failures`)."""
    counts = manifest.get("topics", {}).get(modality.topic) or {}
    shared = manifest.get("shared_topic_failures", {})
    failures = shared[modality.name] if modality.name in shared else counts.get("failures") or {}
    messages = counts.get("messages") or 0
    if not messages or sum(failures.values()) < messages:
        return ""
    example = first_problem(manifest, modality.topic, failures)
    return (f"{modality.topic}: all {messages} messages failed ({failure_counts(failures)})"
            + (f", e.g. [{example}]" if example else ""))


def first_problem(manifest: Mapping[str, Any], topic: str, reasons: Mapping[str, int]) -> str:
    """The detail of the first problem example kept for `topic` with one of `reasons`, or ''."""
    return next((p["detail"] for p in manifest.get("problems", [])
                 if p.get("topic") == topic and p.get("reason") in reasons), "")


def topic_hints(modality: ModalitySpec, manifest: Mapping[str, Any]) -> str:
    """Why the sensor's topic can give it nothing, if its type says so, and what could feed it instead."""
    recorded = manifest.get("recorded_topics", {})
    hints = (unreadable_type(modality, recorded), feeding_topics_hint(modality, manifest))
    return "; ".join(hint for hint in hints if hint)


def unreadable_type(modality: ModalitySpec, recorded: Mapping[str, str]) -> str:
    """'/gt/object is visualization_msgs/msg/Marker, which lidar (a scan) cannot read: ...' when the
    sensor's topic is recorded with a type its kind does not decode, else ''."""
    msgtype, accepted = recorded.get(modality.topic), accepted_types(modality.kind)
    if not msgtype or msgtype in accepted:
        return ""
    return (f"{modality.topic} is {msgtype}, which {modality.name} (a {modality.kind}) cannot read: it takes "
            f"{', '.join(accepted)}")


def feeding_topics_hint(modality: ModalitySpec, manifest: Mapping[str, Any]) -> str:
    """'the bags record for camera: /x (sensor_msgs/msg/CompressedImage)': the recorded topics that
    could feed the sensor and no sensor reads already, or '' when there are none (an RGB-D
    camera's colour topic is an Image too, but not a depth sensor's)."""
    configured = {modality.topic, *manifest.get("topics", {})}
    recorded = manifest.get("recorded_topics", {})
    candidates = [f"{topic} ({msgtype})" for topic, msgtype in sorted(recorded.items())
                  if could_feed(modality.kind, topic, msgtype) and topic not in configured]
    return f"the bags record for {modality.name}: {', '.join(candidates)}" if candidates else ""
