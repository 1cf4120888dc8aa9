"""Argparse types for counts, durations and rates on the command line: one wording for one mistake.

They live in the ROS package because the training package and the benchmarks import it,
never the reverse, so `m2vae-play`, `m2vae-train`, `m2vae-demo` and `bench/` share them.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An argparse type for counts such as epochs and batch sizes: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type for durations and lengths: a finite number > 0."""
    value = _number(text, "a finite number > 0")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


def positive_or_inf(text: str) -> float:
    """An argparse type for a speed factor where 'inf' means as fast as possible: a number > 0."""
    value = _number(text, "a number > 0 or inf")
    if not value > 0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number > 0 or inf, got {value}")
    return value


def _number(text: str, wanted: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
