"""Per-sensor liveness, message rate and invalid-message bookkeeping for the fusion node.

A sensor is alive while its last *valid* message is younger than its timeout, measured
by receive time on the node clock: header stamps can lie (a replay, a skewed clock), the
receive time cannot. Invalid messages are counted with their reason but never refresh
liveness, so a sensor that only sends garbage goes stale like a dead one.

The node clock can jump backwards (sim time from ``ros2 bag play --loop --clock``). Every
arrival then lies in the clock's future; they are forgotten, so the sensor counts as
alive again only once it is heard after the jump, and no age or rate comes out negative.

What a sensor's timeout is (`parse_timeout`, `timeout_of`) lives here too: training's
`dataset.timeout` marks a sensor missing in its samples by the same rule, and the node
takes its default from the model's.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NS_PER_S = 1_000_000_000
# A sensor silent this long is missing: in training's samples (`dataset.timeout`) and, unless the
# model says otherwise, in the node.
DEFAULT_TIMEOUT_S = 0.5
RATE_WINDOW_NS = 2 * NS_PER_S  # a sensor's rate: its valid messages over this long
OVERDUE_PERIODS = 1.5  # a sensor this many of its own periods late no longer paces inference
KEEP_PACING = 0.8  # the pacing sensor keeps the role while its rate is within 20 % of the fastest


def timeout_of(timeout: float | Mapping[str, float], name: str) -> float:
    """One sensor's timeout from `dataset.timeout`'s two forms: seconds for every sensor, or a
    mapping of sensor names to seconds (a sensor it leaves out gets the default)."""
    if isinstance(timeout, Mapping):
        return float(timeout.get(name, DEFAULT_TIMEOUT_S))
    return float(timeout)


def parse_timeout(value: Any, names: Sequence[str], where: str) -> float | dict[str, float]:
    """A timeout as YAML gives it (config/train.yaml, model.yaml): seconds > 0, or a mapping of
    modality names to such; ValueError naming `where` (the file and key) otherwise."""
    if not isinstance(value, Mapping):
        return _positive_seconds(value, where)
    if not value:
        raise ValueError(f"{where} is an empty mapping; give seconds or modality: seconds")
    unknown = sorted(set(value) - set(names), key=str)
    if unknown:
        raise ValueError(f"{where} names unknown modalities {unknown}; known {list(names)}")
    return {str(name): _positive_seconds(seconds, f"{where}.{name}") for name, seconds in value.items()}


def _positive_seconds(value: Any, where: str) -> float:
    try:
        seconds = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        seconds = float("nan")
    if not 0 < seconds < math.inf:
        raise ValueError(f"{where} {value!r} is not a positive, finite number of seconds")
    return seconds


@dataclass
class ModalityLiveness:
    """State of one sensor; all times are node-clock nanoseconds."""

    timeout_ns: int
    last_valid_ns: int | None = None
    invalid_count: int = 0
    invalid_since_valid: int = 0  # what a silent sensor's status blames, as no lifetime count can
    last_invalid_reason: str = ""
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    _arrivals: deque[int] = field(default_factory=deque, repr=False)

    def record_valid(self, now_ns: int) -> None:
        self._forget_future(now_ns)
        self.last_valid_ns = now_ns
        self.invalid_since_valid = 0
        self._arrivals.append(now_ns)
        self._forget_before(now_ns - RATE_WINDOW_NS)

    def record_invalid(self, reason: str) -> None:
        self.invalid_count += 1
        self.invalid_since_valid += 1
        self.last_invalid_reason = reason
        self.invalid_by_reason[reason] += 1

    def alive(self, now_ns: int) -> bool:
        self._forget_future(now_ns)
        return self.last_valid_ns is not None and now_ns - self.last_valid_ns < self.timeout_ns

    def rate_hz(self, now_ns: int) -> float:
        """Valid messages per second over the last `RATE_WINDOW_NS` (0 until two have arrived)."""
        self._forget_future(now_ns)
        self._forget_before(now_ns - RATE_WINDOW_NS)
        if len(self._arrivals) < 2:
            return 0.0
        span_ns = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) * NS_PER_S / span_ns if span_ns > 0 else 0.0

    def overdue(self, now_ns: int, rate_hz: float) -> bool:
        """Silent for more than OVERDUE_PERIODS of its own period (`rate_hz`, as `rate_hz()` gave it
        at `now_ns`); never while the rate is unknown."""
        return rate_hz > 0 and self.last_valid_ns is not None and (
            (now_ns - self.last_valid_ns) * rate_hz > OVERDUE_PERIODS * NS_PER_S)

    def _forget_before(self, cutoff_ns: int) -> None:
        while self._arrivals and self._arrivals[0] < cutoff_ns:
            self._arrivals.popleft()

    def _forget_future(self, now_ns: int) -> None:
        """After the clock jumped back past the last valid arrival, start over as if never heard."""
        if self.last_valid_ns is not None and now_ns < self.last_valid_ns:
            self.last_valid_ns = None
            self._arrivals.clear()


class Pacer:
    """Which arrivals trigger inference when the node runs on arrival (`rate_hz` 0).

    The fastest alive sensor that is on time paces: each of its arrivals triggers. It keeps
    the role while its rate stays within 20 % of the fastest, so two sensors at about the
    same rate, whose 2 s estimates cross with jitter, do not hand it back and forth (which
    skipped some arrivals and doubled others). A pacer OVERDUE_PERIODS late hands over at
    once: a sensor that stops stays alive for its timeout, and the latent must not pause
    that long. A sensor whose rate is not known yet (start-up, or one message in more than
    the 2 s rate window) triggers on each of its own arrivals.
    """

    def __init__(self) -> None:
        self.current: str | None = None

    def triggers(self, name: str, liveness: Mapping[str, ModalityLiveness], now_ns: int) -> bool:
        """Whether this arrival of `name` (already recorded in `liveness`) triggers inference."""
        rates = {sensor: state.rate_hz(now_ns) for sensor, state in liveness.items()}  # once per arrival
        return rates[name] == 0 or self._pacer(liveness, rates, now_ns) == name

    def _pacer(
        self, liveness: Mapping[str, ModalityLiveness], rates: Mapping[str, float], now_ns: int
    ) -> str | None:
        on_time = {name: rates[name] for name, state in liveness.items()
                   if state.alive(now_ns) and not state.overdue(now_ns, rates[name])}
        if not on_time:
            self.current = None
            return None
        fastest = max(on_time.values())
        if self.current not in on_time or on_time[self.current] < KEEP_PACING * fastest:
            self.current = max(on_time, key=on_time.__getitem__)
        return self.current
