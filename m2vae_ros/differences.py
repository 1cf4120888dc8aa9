"""Readable differences between two nested settings (dicts, lists, plain values).

A refusal that says which setting changed, with both values, saves a user from diffing
two YAML files by hand: `m2vae-train --resume` uses it against run.yaml, model loading
against the spec the weights were saved with.
"""

from __future__ import annotations

from typing import Any

SHORT_LIMIT = 80  # characters of one value's repr in a difference


def differences(
    path: str, before: Any, now: Any, *, labels: tuple[str, str] = ("in the run", "now")
) -> list[str]:
    """Each leaf where `before` and `now` differ, as `path: <before> <labels[0]>, <now> <labels[1]>`.

    List items that name a `path` (bag fingerprints) are labelled by it, so a changed
    recording is named rather than numbered.
    """
    if isinstance(before, dict) and isinstance(now, dict):
        return [line for key in sorted(set(before) | set(now), key=str)
                for line in differences(f"{path}.{key}", before.get(key), now.get(key), labels=labels)]
    if isinstance(before, list) and isinstance(now, list):
        if len(before) != len(now):
            return [f"{path}: {len(before)} items {labels[0]}, {len(now)} {labels[1]}"]
        return [line for i, (b, n) in enumerate(zip(before, now, strict=True))
                for line in differences(f"{path}[{b.get('path', i) if isinstance(b, dict) else i}]", b, n,
                                        labels=labels)]
    return [] if before == now else [f"{path}: {short(before)} {labels[0]}, {short(now)} {labels[1]}"]


def first(lines: list[str], shown: int, separator: str = "; ") -> str:
    """The first `shown` lines joined, then how many are left out: a refusal stays one line."""
    text = separator.join(lines[:shown])
    return text + (f" and {len(lines) - shown} more" if len(lines) > shown else "")


def short(value: Any) -> str:
    """repr(value), cut to `SHORT_LIMIT` characters."""
    text = repr(value)
    return text if len(text) <= SHORT_LIMIT else text[: SHORT_LIMIT - 1] + "…"
