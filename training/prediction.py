"""Which messages a sample will use, guessed while a bag streams past, so it is read once.

The dataset builder synchronises on the stamps of a whole bag (`sync.synchronize`),
so it knows which messages the samples use only after the last one has been read.
Reading the bag again for their payloads cost as much as the first read did. Instead
the builder decodes during the first read every message `UsePredictor` expects a
sample to use, and drops the others' payloads.

The guess looks at stamps within a short horizon of the message, as a live
synchroniser would. A message is expected in a sample when

- some other stream has no message within its timeout/2 of it: it may join a partial
  sample (`sync.live_sets` uses the same radius), or
- for some other stream, it is the nearest of its stream to that stream's nearest
  message, within `slop`: the pairing ApproximateTime makes in steady state. (Some,
  not every: with three or more sensors of different rates the chosen sets are not
  always pairwise nearest, and a miss costs a second read while a surplus decode
  costs a resize. A stream with the very same stamp, such as a second modality read
  from the same topic, pairs trivially and does not count.)

A wrong guess costs time, never correctness: the samples come from the exact offline
synchronisation, a used message that was not decoded is fetched by a second pass over
only such misses, and an unused one that was decoded is thrown away.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")

MAX_PENDING = 128  # messages held at most, whatever the horizon: bounds the payload memory
GLITCH_HORIZONS = 100  # a stamp this many horizons past the clock moves it only if its stream's next does too


class UsePredictor(Generic[Item]):
    """Feed (stream, stamp, item) in reading order; get back (stream, item, expected_used) decisions.

    An item is held until the clock, the newest stamp seen, is `horizon` past its own
    (or until `MAX_PENDING` are held), so the stamps around it have arrived even when
    one sensor's messages are logged a little later than another's. A single stamp far
    in the future (a sensor clock glitch) does not move the clock; two in a row from
    one stream (a real jump) do.
    """

    def __init__(self, slop_ns: int, timeouts_ns: Sequence[int]) -> None:
        self.streams = len(timeouts_ns)
        self.slop = slop_ns
        self.radii = [t // 2 for t in timeouts_ns]
        # The rules look up to 2·max(radius, slop) around a stamp; one more for late logging.
        self.horizon = 3 * max(*self.radii, slop_ns)
        self.recent: list[list[int]] = [[] for _ in timeouts_ns]  # sorted stamps near the pending ones
        self.pending: deque[tuple[int, int, Item]] = deque()  # (stamp, stream, item), reading order
        self.clock: int | None = None
        self.last = [None] * self.streams  # each stream's previous stamp

    def push(self, stream: int, stamp: int, item: Item) -> list[tuple[int, Item, bool]]:
        """Add one message; returns the decisions that became possible."""
        bisect.insort(self.recent[stream], stamp)
        self.pending.append((stamp, stream, item))
        self._advance_clock(stream, stamp)
        return self._decide(self.clock - self.horizon)

    def finish(self) -> list[tuple[int, Item, bool]]:
        """The end of the stream: decide everything still held."""
        return self._decide(None)

    def _advance_clock(self, stream: int, stamp: int) -> None:
        previous, self.last[stream] = self.last[stream], stamp
        far = self.clock is not None and stamp - self.clock > GLITCH_HORIZONS * self.horizon
        if far and (previous is None or previous - self.clock <= GLITCH_HORIZONS * self.horizon):
            return
        self.clock = stamp if self.clock is None else max(self.clock, stamp)

    def _decide(self, up_to: int | None) -> list[tuple[int, Item, bool]]:
        decisions = []
        while self.pending and (
            up_to is None or self.pending[0][0] <= up_to or len(self.pending) > MAX_PENDING
        ):
            stamp, stream, item = self.pending.popleft()
            decisions.append((stream, item, self._expected_used(stream, stamp)))
        oldest = self.pending[0][0] if self.pending else self.clock
        if oldest is not None:
            self._forget_before(oldest - 2 * self.horizon)
        return decisions

    def _expected_used(self, stream: int, stamp: int) -> bool:
        if self.streams == 1:
            return True  # a single stream: every message is a sample
        others = [j for j in range(self.streams) if j != stream]
        nearest = {j: self._nearest(j, stamp) for j in others}
        if any(n is None or abs(n - stamp) > self.radii[j] for j, n in nearest.items()):
            return True
        partners = [n for n in nearest.values() if n is not None and n != stamp]
        return not partners or any(
            abs(n - stamp) <= self.slop and self._nearest(stream, n) == stamp for n in partners
        )

    def _nearest(self, stream: int, stamp: int) -> int | None:
        stamps = self.recent[stream]
        i = bisect.bisect_left(stamps, stamp)
        candidates = stamps[max(i - 1, 0) : i + 1]
        return min(candidates, key=lambda s: abs(s - stamp)) if candidates else None

    def _forget_before(self, stamp: int) -> None:
        for stamps in self.recent:
            del stamps[: bisect.bisect_left(stamps, stamp)]
