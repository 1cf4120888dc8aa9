"""m2vae-dataset: turn rosbag2 recordings into a prepared, synchronised M²VAE dataset.

Prints a human summary (progress bar on stderr) or, with --json, exactly one JSON
object on stdout. Bad messages are counted and reported, never fatal; a bag that cannot
be opened at all, a bad config or a bad --out ends with one ``error: ...`` line on
stderr and exit code 2.
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
from m2vae_training.dataset import DatasetError, PreparedDataset, build_dataset

DEFAULT_OUT = "m2vae_dataset"
ERROR_EXIT = 2


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


def summary(dataset: PreparedDataset) -> dict[str, Any]:
    """The --json object: per-topic counts, samples per subset, output directory (+ damage, reuse)."""
    manifest = dataset.manifest
    samples = manifest["samples"]
    return {
        "topics": manifest["topics"],
        "samples": {k: samples[k] for k in ("complete", "partial", "by_subset")},
        "out": str(dataset.directory),
        "reused": bool(manifest.get("reused", False)),
        "damage": manifest.get("damage", []),
    }


def print_human(info: dict[str, Any], n_problems: int) -> None:
    print(f"dataset {'reused' if info['reused'] else 'written'}: {info['out']}")
    for topic, t in info["topics"].items():
        line = f"  {topic} [{t['type'] or 'absent'}]: {t['messages']} messages, {t['decoded']} decoded"
        failures = ", ".join(f"{reason} {n}" for reason, n in t["failures"].items())
        line += f", {t['failed']} failed" + (f" ({failures})" if failures else "")
        if t.get("out_of_order"):
            line += f", {t['out_of_order']} out of order"
        print(line)
    samples = info["samples"]
    print(f"  samples: {samples['complete']} complete, {samples['partial']} partial")
    for name, n in samples["by_subset"].items():
        print(f"    {name}: {n}")
    for line in info["damage"]:
        print(f"  damage: {line}")
    if n_problems:
        print(f"  {n_problems} problem examples (topic, stamp, reason) in manifest.json")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_train_config(args.config, parse_topic_overrides(args.topic))
        if args.slop is not None:
            if args.slop < 0:
                raise ConfigError(f"--slop {args.slop}: must be ≥ 0")
            config = dataclasses.replace(config, slop=args.slop)
        dataset = build_dataset(args.bags, config, args.out, progress=not args.json)
    except (BagError, ConfigError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    info = summary(dataset)
    if args.json:
        print(json.dumps(info))
    else:
        print_human(info, len(dataset.manifest.get("problems", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
