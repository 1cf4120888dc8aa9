"""Per-sensor liveness, message rate and invalid-message bookkeeping for the fusion node.

A sensor is alive while its last *valid* message is younger than its timeout, measured
by receive time on the node clock: header stamps can lie (a replay, a skewed clock), the
receive time cannot. Invalid messages are counted with their reason but never refresh
liveness, so a sensor that only sends garbage goes stale like a dead one.

The node clock can jump backwards (sim time from ``ros2 bag play --loop --clock``). Every
arrival then lies in the clock's future; they are forgotten, so the sensor counts as
alive again only once it is heard after the jump, and no age or rate comes out negative.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

NS_PER_S = 1_000_000_000
OVERDUE_PERIODS = 1.5  # a sensor this many of its own periods late no longer paces inference
SAME_RATE = 0.9  # rates within 10 % of the fastest count as equal


@dataclass
class ModalityLiveness:
    """State of one sensor; all times are node-clock nanoseconds."""

    timeout_ns: int
    rate_window_ns: int = 2 * NS_PER_S
    last_valid_ns: int | None = None
    invalid_count: int = 0
    last_invalid_reason: str = ""
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    _arrivals: deque[int] = field(default_factory=deque, repr=False)

    def record_valid(self, now_ns: int) -> None:
        self._forget_future(now_ns)
        self.last_valid_ns = now_ns
        self._arrivals.append(now_ns)
        self._forget_before(now_ns - self.rate_window_ns)

    def record_invalid(self, reason: str) -> None:
        self.invalid_count += 1
        self.last_invalid_reason = reason
        self.invalid_by_reason[reason] += 1

    def alive(self, now_ns: int) -> bool:
        self._forget_future(now_ns)
        return self.last_valid_ns is not None and now_ns - self.last_valid_ns < self.timeout_ns

    def rate_hz(self, now_ns: int) -> float:
        """Valid messages per second over the last `rate_window_ns` (0 until two have arrived)."""
        self._forget_future(now_ns)
        self._forget_before(now_ns - self.rate_window_ns)
        if len(self._arrivals) < 2:
            return 0.0
        span_ns = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) * NS_PER_S / span_ns if span_ns > 0 else 0.0

    def overdue(self, now_ns: int) -> bool:
        """Silent for more than OVERDUE_PERIODS of its own period (never while its rate is unknown)."""
        rate = self.rate_hz(now_ns)
        return rate > 0 and self.last_valid_ns is not None and (
            (now_ns - self.last_valid_ns) * rate > OVERDUE_PERIODS * NS_PER_S)

    def _forget_before(self, cutoff_ns: int) -> None:
        while self._arrivals and self._arrivals[0] < cutoff_ns:
            self._arrivals.popleft()

    def _forget_future(self, now_ns: int) -> None:
        """After the clock jumped back past the last valid arrival, start over as if never heard."""
        if self.last_valid_ns is not None and now_ns < self.last_valid_ns:
            self.last_valid_ns = None
            self._arrivals.clear()


def pacing_sensor(liveness: Mapping[str, ModalityLiveness], now_ns: int) -> str | None:
    """The sensor whose arrivals trigger inference: the fastest one that is alive and on time.

    A sensor that stops stays alive for its timeout, and its rate decays only over the rate
    window; once it is OVERDUE_PERIODS late the next sensor paces, so the latent does not
    pause until the timeout. Rates within 10 % count as equal and the first in `liveness`
    order (the model's) paces: two 10 Hz sensors whose estimates cross with jitter would
    otherwise both skip some arrivals and both trigger others.
    """
    on_time = {name: state.rate_hz(now_ns) for name, state in liveness.items()
               if state.alive(now_ns) and not state.overdue(now_ns)}
    if not on_time:
        return None
    fastest = max(on_time.values())
    return next(name for name, rate in on_time.items() if rate >= SAME_RATE * fastest)
