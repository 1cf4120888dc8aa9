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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from m2vae_ros.drop_window import DropWindow

JITTER_STD, JITTER_MAX = 1e-3, 3e-3
LATENCY_MIN, LATENCY_MAX = 2e-3, 8e-3
SENSORS = ("camera", "depth", "scan", "points")
SENSOR_ALIASES = {"lidar": ("scan", "points")}


class SimError(ValueError):
    """A simulation request that cannot be honoured (bad option, existing output …)."""


def parse_dropout(text: str, points: bool = True) -> list[DropWindow]:
    """``SENSOR@T0:T1`` → one window per sensor; ``lidar`` stands for the scan and, when the 3-D
    LiDAR is on (`points`), the point cloud."""
    try:
        window = DropWindow.parse(text, "SENSOR")
    except ValueError as exc:
        raise SimError(f"dropout {exc} (e.g. camera@5:12.5)") from None
    if window.key not in SENSORS and window.key not in SENSOR_ALIASES:
        known = ", ".join((*SENSORS, *SENSOR_ALIASES))
        raise SimError(f"unknown sensor {window.key!r} in dropout {text!r}; known: {known}")
    sensors = SENSOR_ALIASES.get(window.key, (window.key,))
    if window.key in SENSOR_ALIASES and not points:
        sensors = tuple(sensor for sensor in sensors if sensor != "points")
    return [DropWindow(sensor, window.start, window.end) for sensor in sensors]


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
        if not any(d.start <= t < d.end for d in drops):  # drops: this stream's sensor only
            stamp_ns = start_ns + round(t * 1e9)
            log_ns = stamp_ns + round(float(rng.uniform(LATENCY_MIN, LATENCY_MAX)) * 1e9)
            yield Frame(t, stamp_ns, log_ns), rng
        k += 1
