"""When each simulated message is stamped and logged, and which ones a dropout removes.

Real drivers stamp a frame at capture time with some jitter, and the recorder logs it a
few milliseconds later; downstream code must synchronise on header stamps, never on
bag log times. Frame k of a stream is nominally at ``phase + k / rate`` seconds; its
jitter (±3 ms, σ 1 ms), its latency (2–8 ms) and all of its sensor noise come from a
Generator seeded with ``(seed, stream, k)``. A frame's content therefore depends on
nothing but the seed and its index, so a dropout or a shorter recording leaves every
other frame byte-identical. Jitter below the period keeps each stream's log times
increasing, which lets the recorder merge streams without sorting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

JITTER_STD, JITTER_MAX = 1e-3, 3e-3
LATENCY_MIN, LATENCY_MAX = 2e-3, 8e-3
SENSORS = ("camera", "scan", "points")
SENSOR_ALIASES = {"lidar": ("scan", "points")}
_DROP_PATTERN = re.compile(r"^(?P<sensor>[a-z]+)@(?P<start>[0-9.eE+-]+):(?P<end>[0-9.eE+-]+)$")


class SimError(ValueError):
    """A simulation request that cannot be honoured (bad option, existing output …)."""


@dataclass(frozen=True)
class DropWindow:
    """No messages of `sensor` whose header stamp lies in [start, end) seconds from the start."""

    sensor: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise SimError(f"unknown sensor {self.sensor!r} in a dropout; known: {', '.join(SENSORS)}")
        if not 0 <= self.start < self.end:
            raise SimError(f"dropout of {self.sensor} needs 0 ≤ start < end, got {self.start}:{self.end}")

    @classmethod
    def parse(cls, text: str) -> list[DropWindow]:
        """``SENSOR@T0:T1`` → windows; ``lidar`` stands for both scan and points."""
        match = _DROP_PATTERN.match(text.strip())
        if match is None:
            raise SimError(f"dropout {text!r} is not SENSOR@T0:T1 (e.g. camera@5:12.5)")
        try:
            start, end = float(match["start"]), float(match["end"])
        except ValueError:
            raise SimError(f"dropout {text!r}: T0 and T1 must be numbers of seconds") from None
        sensor = match["sensor"]
        if sensor not in SENSORS and sensor not in SENSOR_ALIASES:
            known = ", ".join((*SENSORS, *SENSOR_ALIASES))
            raise SimError(f"unknown sensor {sensor!r} in dropout {text!r}; known: {known}")
        return [cls(name, start, end) for name in SENSOR_ALIASES.get(sensor, (sensor,))]


@dataclass(frozen=True)
class Frame:
    """One capture: capture time t (s from the start), header stamp and bag log time (ns)."""

    t: float
    stamp_ns: int
    log_ns: int


def frames(
    seed: int,
    stream: int,
    rate: float,
    phase: float,
    duration: float,
    start_ns: int,
    drops: Sequence[DropWindow] = (),
) -> Iterator[tuple[Frame, np.random.Generator]]:
    """Frames of one stream with nominal time < duration, each with its own Generator."""
    k = 0
    while (nominal := phase + k / rate) < duration:
        rng = np.random.default_rng([seed, stream, k])
        t = max(0.0, nominal + float(np.clip(rng.normal(0.0, JITTER_STD), -JITTER_MAX, JITTER_MAX)))
        if not any(d.start <= t < d.end for d in drops):
            stamp_ns = start_ns + round(t * 1e9)
            log_ns = stamp_ns + round(float(rng.uniform(LATENCY_MIN, LATENCY_MAX)) * 1e9)
            yield Frame(t, stamp_ns, log_ns), rng
        k += 1
