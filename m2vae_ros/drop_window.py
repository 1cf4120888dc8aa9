"""`KEY@T0:T1` dropout windows: m2vae-sim silences a sensor, m2vae-play a topic.

One grammar and one meaning for both tools: `KEY` is silent for times in [T0, T1)
seconds from the start of the recording.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DropWindow:
    """`key` (a sensor or a topic) is silent for times in [start, end) seconds."""

    key: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:  # NaN fails too
            raise ValueError(f"drop window {self.key}@{self.start}:{self.end} needs 0 ≤ T0 < T1")

    @classmethod
    def parse(cls, text: str, key_name: str = "KEY") -> DropWindow:
        """`KEY@T0:T1` → DropWindow; ValueError naming the expected form (`key_name`@T0:T1) otherwise."""
        key, at, window = text.strip().rpartition("@")
        start, colon, end = window.partition(":")
        if key and at and colon:
            try:
                return cls(key, float(start), float(end))  # __post_init__ checks 0 ≤ T0 < T1
            except ValueError:
                pass
        form = f"{key_name}@T0:T1 with 0 ≤ T0 < T1 (seconds from the start)"
        raise ValueError(f"{text!r} is not {form}")

    def covers(self, key: str, t: float) -> bool:
        return key == self.key and self.start <= t < self.end
