"""m2vae-dataset: turn rosbag2 recordings into a prepared, synchronised M²VAE dataset.

Prints a human summary (progress bar on stderr) or, with --json, exactly one JSON
object on stdout holding exactly the documented keys; what else the human summary says
(reuse, damage, out-of-order stamps) then goes to stderr. Bad messages are counted and
reported, never fatal; a bag that cannot be opened at all, a bad config or a bad --out
ends with one ``error: ...`` line on stderr and exit code 2. A build in which some sensor
has no sample at all is written and summarised, then ends with an ``error: ...`` line and
exit code 1: m2vae-train would refuse it, so `m2vae-dataset ... && m2vae-train ...` stops.
Ctrl-C or SIGTERM ends it with one line saying whether --out changed, and exit code 130 (Ctrl-C)
or 143 (SIGTERM), as m2vae-train.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m2vae_training.bags import BagError
from m2vae_training.config import ConfigError, load_train_config, parse_topic_overrides
from m2vae_training.dataset import MANIFEST, DatasetError, PreparedDataset, build_dataset
from m2vae_training.dataset_notes import failure_counts, no_samples, notes
from m2vae_training.interrupts import interrupted_exit_status, sigterm_as_sigint

PROG = "m2vae-dataset"
DEFAULT_OUT = "m2vae_dataset"
ERROR_EXIT = 2
UNTRAINABLE_EXIT = 1  # written, but a sensor has no sample


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
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


def print_human(info: dict[str, Any], lines: list[str]) -> None:
    print(lines[0])
    for topic, t in info["topics"].items():
        line = f"  {topic} [{t['type'] or 'absent'}]: {t['messages']} messages, {t['decoded']} decoded"
        failures = failure_counts(t["failures"])
        print(line + f", {t['failed']} failed" + (f" ({failures})" if failures else ""))
    samples = info["samples"]
    print(f"  samples: {samples['complete']} complete, {samples['partial']} partial")
    for name, n in samples["by_subset"].items():
        print(f"    {name}: {n}")
    for line in lines[1:]:
        print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sigterm_as_sigint()  # the build's cleanup runs on `kill` and `timeout` too
    before = _dataset_identity(args.out)
    try:
        return _build_and_report(args)
    except KeyboardInterrupt:  # the build has removed its work directory on the way out
        if _dataset_identity(args.out) == before:
            print(f"{PROG}: interrupted; {args.out} is unchanged", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted after the build was complete; {args.out} holds the new dataset",
                  file=sys.stderr)
        return interrupted_exit_status()


def _dataset_identity(out: str) -> tuple[int, int] | None:
    """Which dataset `out` holds: its manifest's device and inode (None: no dataset).

    A build writes into a work directory and renames it to `out` only once complete, so
    this changes exactly when a whole new dataset has replaced what was there.
    """
    try:
        stat = os.stat(Path(out) / MANIFEST)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _build_and_report(args: argparse.Namespace) -> int:
    """Build (or reuse) the dataset, print its summary and return the exit code."""
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
    if silent := dataset.silent_modalities():
        print(f"error: {no_samples(silent)}, so m2vae-train would refuse this dataset (the per-topic "
              "counts and notes say why)", file=sys.stderr)
        return UNTRAINABLE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
