"""m2vae-dataset: turn rosbag2 recordings into a prepared, synchronised M²VAE dataset.

Prints a human summary (progress bar on stderr) or, with --json, exactly one JSON
object on stdout holding exactly the documented keys; what else the human summary says
(reuse, damage, out-of-order stamps) then goes to stderr. Bad messages are counted and
reported, never fatal; a bag that cannot be opened at all, a bad config or a bad --out
ends with one ``error: ...`` line on stderr and exit code 2. A build in which some sensor
has no sample at all is written and summarised, then ends with an ``error: ...`` line and
exit code 1: m2vae-train would refuse it, so `m2vae-dataset ... && m2vae-train ...` stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from m2vae_training.bags import BagError
from m2vae_training.config import ConfigError, load_train_config, parse_topic_overrides
from m2vae_training.dataset import (
    DatasetError,
    PreparedDataset,
    build_dataset,
    feeding_topics_hint,
    unreadable_type,
)
from m2vae_training.interrupts import sigterm_as_sigint

DEFAULT_OUT = "m2vae_dataset"
ERROR_EXIT = 2
UNTRAINABLE_EXIT = 1  # written, but a sensor has no sample
MIN_REACH = 0.95  # below: the config's LiDAR geometry is likely not the sensor's
REACH_HINTS = {
    "scan": "is angle_min…angle_max wider than the scanner's?",
    "range_image": "do rings, fov_up_deg and fov_down_deg match the sensor's beams?",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m2vae-dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 directory or .mcap/.db3 file")
    p.add_argument("--config", default=None, help="training config (default: the packaged config/train.yaml)")
    p.add_argument("--topic", action="append", default=[], metavar="MODALITY=TOPIC",
                   help="read a modality from another topic (repeatable)")
    p.add_argument("--slop", type=float, default=None, metavar="SECONDS",
                   help="max stamp spread within one sample (default: dataset.slop of the config)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"dataset directory; reused when built from the same bags and config "
                        f"(default: ./{DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return p


TOPIC_KEYS = ("type", "messages", "decoded", "failed", "failures")
SAMPLE_KEYS = ("complete", "partial", "by_subset")


def summary(dataset: PreparedDataset) -> dict[str, Any]:
    """The --json object, exactly: per-topic counts, samples per subset, output directory."""
    manifest = dataset.manifest
    return {
        "topics": {topic: {k: t[k] for k in TOPIC_KEYS} for topic, t in manifest["topics"].items()},
        "samples": {k: manifest["samples"][k] for k in SAMPLE_KEYS},
        "out": str(dataset.directory),
    }


def notes(dataset: PreparedDataset) -> list[str]:
    """What the summary object leaves out: reuse, damage, out-of-order stamps, where examples are,
    and for a configured topic the bags lack, the recorded topics that could feed its sensor."""
    manifest = dataset.manifest
    lines = [f"dataset {'reused' if manifest.get('reused') else 'written'}: {dataset.directory}"]
    lines += [f"{topic}: {t['out_of_order']} header stamps out of order"
              for topic, t in manifest["topics"].items() if t.get("out_of_order")]
    lines += [f"damage: {line}" for line in manifest.get("damage", [])]
    lines += manifest.get("separately_synchronised", [])
    lines += [f"{name} (on a topic it shares with another sensor) failed on {_counts(failures)}"
              for name, failures in manifest.get("shared_topic_failures", {}).items()]
    recorded = manifest.get("recorded_topics", {})
    lines += [f"{m.topic} is not in the bags; {hint}" for m in dataset.spec.modalities
              if not manifest["topics"][m.topic]["type"] and (hint := feeding_topics_hint(m, recorded))]
    lines += [hint for m in dataset.spec.modalities if (hint := unreadable_type(m, recorded))]
    for name, share in manifest.get("returns_reach", {}).items():
        if share < MIN_REACH:
            kind = dataset.spec.modality(name).kind
            cells = "bins" if kind == "scan" else "cells"
            lines.append(f"{name}: {share:.0%} of its {cells} hold a return in some sample, the others in "
                         f"none: {REACH_HINTS[kind]}")
    if manifest.get("problems"):
        lines.append(f"{len(manifest['problems'])} problem examples (topic, stamp, reason) in manifest.json")
    return lines


def _counts(failures: dict[str, int]) -> str:
    """`reason n, reason n` for a failure count table."""
    return ", ".join(f"{reason} {n}" for reason, n in failures.items())


def print_human(info: dict[str, Any], notes: list[str]) -> None:
    print(notes[0])
    for topic, t in info["topics"].items():
        line = f"  {topic} [{t['type'] or 'absent'}]: {t['messages']} messages, {t['decoded']} decoded"
        failures = _counts(t["failures"])
        print(line + f", {t['failed']} failed" + (f" ({failures})" if failures else ""))
    samples = info["samples"]
    print(f"  samples: {samples['complete']} complete, {samples['partial']} partial")
    for name, n in samples["by_subset"].items():
        print(f"    {name}: {n}")
    for line in notes[1:]:
        print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sigterm_as_sigint()  # the build's cleanup runs on `kill` and `timeout` too
    try:
        config = load_train_config(args.config, parse_topic_overrides(args.topic))
        if args.slop is not None:
            config = dataclasses.replace(config, slop=args.slop)  # checked by TrainConfig
        dataset = build_dataset(args.bags, config, args.out, progress=not args.json)
    except (BagError, ConfigError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    info = summary(dataset)
    if args.json:
        print(json.dumps(info))
        for line in notes(dataset):
            print(line, file=sys.stderr)
    else:
        print_human(info, notes(dataset))
    silent = [m for k, m in enumerate(dataset.spec.modalities) if not dataset.available[:, k].any()]
    if silent:
        topics = ", ".join(f"{m.name}={m.topic}" for m in silent)
        print(f"error: no sample holds {topics}, so m2vae-train would refuse this dataset (the per-topic "
              "counts and notes say why)", file=sys.stderr)
        return UNTRAINABLE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
