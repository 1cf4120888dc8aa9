"""Argument types shared by the training package's command lines."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type for counts such as epochs and batch sizes: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value
