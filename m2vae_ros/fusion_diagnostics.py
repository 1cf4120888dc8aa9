"""`/diagnostics` content of the fusion node: one status per sensor and one for inference.

Operators watch these in rqt_runtime_monitor or `ros2 topic echo /diagnostics`; the
keys are stable so scripts (and the tests) can read them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from m2vae_ros.codec import Decoded
from m2vae_ros.codec.common import CAVEATS
from m2vae_ros.liveness import NS_PER_S, ModalityLiveness
from m2vae_ros.reach import MIN_REACH, REACH_HINTS, ReturnsReach, cells_word

# What ~/active_modalities says when no sensor is alive; an empty string would be easy
# to miss in `ros2 topic echo` and ambiguous with "not published yet".
NO_MODALITIES = "none"
MIN_COVERAGE = 0.95  # of a scan's bins: below it a live LiDAR is reported WARN
CAVEAT_HOLD_S = 10.0  # a decode caveat is reported this long after the last message that had it


@dataclass(frozen=True)
class LatencySummary:
    mean_ms: float
    max_ms: float
    count: int


@dataclass(frozen=True)
class FailureSummary:
    count: int  # failed inferences in the window
    last_error: str  # the latest failure's error, also when it left the window
    latest_failed: bool  # whether the latest inference failed, however long ago it ran


class InferenceStats:
    """Inference latencies and failures over the last second, and counts; shared by two threads."""

    WINDOW_NS = NS_PER_S

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque()
        self._failures: deque[tuple[int, str]] = deque()  # (stamp, error)
        self._lock = threading.Lock()
        self.inferences = 0
        self.failures = 0
        self.last_error = ""
        self._latest_failed = False  # an inference slower than the window must not look recovered
        self.dropped_triggers = 0

    def record(self, now_ns: int, latency_s: float) -> None:
        with self._lock:
            self._forget_after_clock_jump(now_ns)
            self._samples.append((now_ns, latency_s))
            self.inferences += 1
            self._latest_failed = False

    def record_failure(self, now_ns: int, error: str) -> None:
        with self._lock:
            self._forget_after_clock_jump(now_ns)
            self._failures.append((now_ns, error))
            self.failures += 1
            self.last_error = error
            self._latest_failed = True

    def record_dropped(self) -> None:
        with self._lock:
            self.dropped_triggers += 1

    def summary(self, now_ns: int) -> LatencySummary:
        """Latencies of the inferences in the window ending at `now_ns`."""
        with self._lock:
            self._prune(now_ns)
            latencies = [latency for _, latency in self._samples]
        if not latencies:
            return LatencySummary(0.0, 0.0, 0)
        return LatencySummary(1e3 * sum(latencies) / len(latencies), 1e3 * max(latencies), len(latencies))

    def recent_failures(self, now_ns: int) -> FailureSummary:
        with self._lock:
            self._prune(now_ns)
            return FailureSummary(len(self._failures), self.last_error, self._latest_failed)

    def _prune(self, now_ns: int) -> None:
        self._forget_after_clock_jump(now_ns)
        for entries in (self._samples, self._failures):
            while entries and entries[0][0] < now_ns - self.WINDOW_NS:
                entries.popleft()

    def _forget_after_clock_jump(self, now_ns: int) -> None:
        """Drop everything when the newest entry is more than a window after `now` (the clock
        jumped back, e.g. a looping bag).

        Pruning walks from the oldest entry and stops at the first recent one, so an entry
        from before the jump would otherwise keep every later one in the window. An entry
        just after `now` is no jump: the worker may stamp one while the diagnostics timer,
        having read `now` earlier, is still building its message.
        """
        if any(entries and entries[-1][0] > now_ns + self.WINDOW_NS
               for entries in (self._samples, self._failures)):
            self._samples.clear()
            self._failures.clear()


class RecentCaveats:
    """When each decode caveat (`CAVEATS`) was last seen on one sensor's messages.

    Some caveats depend on the scene (a depth image in metres exceeds the scale only where
    something is farther than 1.5 m), so reporting the latest message's alone would flip the
    status from frame to frame; a caveat is held for CAVEAT_HOLD_S instead. After the clock
    jumps back, a caveat waits to be seen again.
    """

    def __init__(self) -> None:
        self.seen_ns: dict[str, int | None] = dict.fromkeys(CAVEATS)

    def add(self, caveats: Sequence[str], now_ns: int) -> None:
        for key in caveats:
            self.seen_ns[key] = now_ns

    def recent(self, now_ns: int) -> tuple[str, ...]:
        hold_ns = int(CAVEAT_HOLD_S * NS_PER_S)
        return tuple(key for key, seen in self.seen_ns.items()
                     if seen is not None and 0 <= now_ns - seen <= hold_ns)


def _values(**values: object) -> list[KeyValue]:
    return [KeyValue(key=key, value=str(value)) for key, value in values.items()]


def modality_status(node_name: str, name: str, topic: str, liveness: ModalityLiveness, now_ns: int,
                    problem: str = "", latest: Decoded | None = None, reach: ReturnsReach | None = None,
                    decode_caveats: Sequence[str] = ()) -> DiagnosticStatus:
    """OK while the sensor is alive and its data fit the model; WARN when it is stale, never
    heard from, or alive with a caveat (`caveats`). `problem` says why a silent sensor is
    silent, if known; `latest` is its newest valid sample; `reach` its LiDAR returns' reach;
    `decode_caveats` the keys of `CAVEATS` its recent messages had (`RecentCaveats`).
    """
    alive = liveness.alive(now_ns)
    lag_ns = _stamp_lag_ns(liveness, latest)
    share = None if reach is None else reach.share
    caveats = _caveats(liveness, latest, lag_ns, reach, decode_caveats) if alive else []
    if caveats:
        message = "alive, but " + "; ".join(caveats)
    elif alive:
        message = "alive"
    elif problem:
        message = problem
    elif liveness.last_valid_ns is None:
        message = "no valid message yet" + _rejected(liveness)
    else:
        message = f"stale for {(now_ns - liveness.last_valid_ns) / NS_PER_S:.1f} s" + _rejected(liveness)
    coverage = None if latest is None else latest.coverage
    return DiagnosticStatus(
        level=DiagnosticStatus.OK if alive and not caveats else DiagnosticStatus.WARN,
        name=f"{node_name}: {name}",
        message=message,
        hardware_id=topic,
        values=_values(
            topic=topic,
            alive=alive,
            rate_hz=f"{liveness.rate_hz(now_ns) if alive else 0.0:.2f}",  # the window outlives a dead sensor
            invalid_count=liveness.invalid_count,
            last_invalid_reason=liveness.last_invalid_reason,
            **{f"invalid.{reason}": n for reason, n in sorted(liveness.invalid_by_reason.items())},
            **({} if coverage is None else {"coverage": f"{coverage:.3f}"}),
            **({} if share is None else {"reach": f"{share:.3f}"}),
            **({} if lag_ns is None else {"stamp_lag_s": f"{lag_ns / NS_PER_S:.3f}"}),
            **({"caveats": ",".join(decode_caveats)} if decode_caveats else {}),
        ),
    )


def _caveats(liveness: ModalityLiveness, latest: Decoded | None, lag_ns: int | None,
             reach: ReturnsReach | None = None, decode_caveats: Sequence[str] = ()) -> list[str]:
    """Why a live sensor's data may mislead the model (`lag_ns`: `_stamp_lag_ns`).

    - A scan reaching under MIN_COVERAGE of the model's bins: the bins it misses read
      "no return", which the model learnt as free space.
    - A LiDAR whose returns, over a block of recent messages (`reach`), reach under
      MIN_REACH of the model's cells: the cells none reaches lie outside its beams, as
      with a scan's coverage but found from the returns, so also for a 3-D LiDAR's rings
      and for beams a driver lists but never fills. Unsaid for a scan whose coverage says it.
    - Decode caveats (`CAVEATS`) of its messages in the last CAVEAT_HOLD_S: a grey image for a
      colour model, a float image beyond its full scale.
    - Stamps older on arrival than the sensor's timeout: liveness goes by receive time,
      but the sample (and a latent fused from it) is as old as its stamp. Clocks not
      synchronised between computers, or a replay that keeps the recorded stamps.
    """
    if latest is None:
        return []
    caveats = []
    if latest.coverage is not None and latest.coverage < MIN_COVERAGE:
        caveats.append(f"its scans reach {latest.coverage:.0%} of the model's bins; the rest read no return")
    elif reach is not None and reach.share is not None and reach.share < MIN_REACH:
        caveats.append(f"{reach.share:.0%} of the model's {cells_word(reach.kind)} held a return in some of "
                       f"{reach.window} recent messages, the others in none: {REACH_HINTS[reach.kind]}")
    caveats += [f"its messages are {CAVEATS[key]}" for key in decode_caveats]
    if lag_ns is not None and lag_ns > liveness.timeout_ns:
        caveats.append(f"its stamps are {lag_ns / NS_PER_S:.1f} s old on arrival, more than its timeout: "
                       "clocks not synchronised, or a replay keeping the recorded stamps?")
    return caveats


def _stamp_lag_ns(liveness: ModalityLiveness, latest: Decoded | None) -> int | None:
    """How old the newest valid sample's stamp was when it arrived; None before one arrived."""
    if latest is None or liveness.last_valid_ns is None:
        return None
    return liveness.last_valid_ns - latest.stamp_ns


def _rejected(liveness: ModalityLiveness) -> str:
    """What a silent sensor sent instead of valid messages, as a suffix for its status message."""
    count = liveness.invalid_since_valid
    if not count:
        return ""
    since = " since the last valid one" if liveness.last_valid_ns is not None else ""
    messages = "message" if count == 1 else "messages"
    return f"; {count} {messages} rejected{since}, last reason: {liveness.last_invalid_reason}"


def inference_status(node_name: str, stats: InferenceStats, active: str, now_ns: int,
                     waiting: str = "") -> DiagnosticStatus:
    """ERROR while the latest inference failed and none of the last second succeeded (at any
    inference rate, until one succeeds), WARN when some failed, when no sensor is alive
    (nothing to fuse) or when `waiting` says what the node waits for; OK otherwise."""
    latency = stats.summary(now_ns)
    failed = stats.recent_failures(now_ns)
    if failed.latest_failed and not latency.count:
        level, message = DiagnosticStatus.ERROR, f"inference failing: {failed.last_error}"
    elif failed.count or failed.latest_failed:
        level, message = DiagnosticStatus.WARN, f"active: {active}; some inferences fail: {failed.last_error}"
    elif waiting:
        level, message = DiagnosticStatus.WARN, waiting
    else:
        level = DiagnosticStatus.WARN if active == NO_MODALITIES else DiagnosticStatus.OK
        message = f"active: {active}"
    return DiagnosticStatus(
        level=level,
        name=f"{node_name}: inference",
        message=message,
        hardware_id=node_name,
        values=_values(
            active_modalities=active,
            latency_mean_ms=f"{latency.mean_ms:.3f}",
            latency_max_ms=f"{latency.max_ms:.3f}",
            inferences_last_second=latency.count,
            inferences=stats.inferences,
            failures_last_second=failed.count,
            failures=stats.failures,
            last_error=failed.last_error,
            dropped_triggers=stats.dropped_triggers,
        ),
    )

