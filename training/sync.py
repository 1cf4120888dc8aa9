"""Offline time synchronisation of sensor streams by header stamp, with partial samples.

Complete samples follow message_filters' ApproximateTime policy: every message is used
at most once, sets come out in time order, the set chosen around each pivot is the one
with the smallest spread of stamps, and no set is wider than `slop`. Surplus frames of
a faster sensor (a 30 Hz camera next to a 10 Hz LiDAR) are dropped. The live node does
not synchronise this way: it fuses the newest sample of each alive sensor, so a camera
frame may meet a scan up to one scan period old. Enforcing the slop live would drop
two camera frames in three to the camera-only subset, so the active subset would
flicker between scans; training on tight sets keeps the encoders from learning a lag.

Partial samples are what makes dropouts useful for an M²VAE: where a sensor has been
silent for longer than its timeout the remaining sensors still form samples, with the
silent one marked missing. A sensor counts as silent at time t when none of its
messages lies within timeout/2 of t, so a gap of more than its timeout opens a window
of partial samples and normal jitter never does. Each sensor has its own timeout: a
1 Hz GPS is not dead after the 0.5 s that suit a 30 Hz camera.

Everything works on integer-nanosecond stamps only; payloads are someone else's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyncResult:
    """Samples as message indices: `indices[i, k]` indexes topic k's input stamps, −1 = missing.

    `stamps` holds each sample's newest stamp; samples are sorted by it. `out_of_order[k]`
    lists the stamps of topic k that arrived earlier than their predecessor.
    """

    indices: np.ndarray
    stamps: np.ndarray
    out_of_order: list[np.ndarray]


def synchronize(stamps: Sequence[np.ndarray], slop_ns: int, timeout_ns: int | Sequence[int]) -> SyncResult:
    """Group messages of len(stamps) topics (stamps in arrival order) into complete and partial samples.

    `timeout_ns` is one timeout for every topic or one per topic.
    """
    timeouts = per_topic(timeout_ns, len(stamps))
    if slop_ns < 0 or min(timeouts, default=1) <= 0:
        raise ValueError(f"slop ({slop_ns} ns) must be ≥ 0 and every timeout ({timeouts} ns) > 0")
    streams = [np.asarray(s, dtype=np.int64) for s in stamps]
    out_of_order = [s[1:][np.diff(s) < 0] for s in streams]
    orders = [np.argsort(s, kind="stable") for s in streams]
    sorted_stamps = [s[o] for s, o in zip(streams, orders, strict=True)]
    everyone = (1 << len(streams)) - 1

    samples = approximate_time(sorted_stamps, everyone, slop_ns)
    used = [np.zeros(len(s), dtype=bool) for s in sorted_stamps]
    for sample in samples:
        for k, j in enumerate(sample):
            if j >= 0:
                used[k][j] = True
    live = live_sets(sorted_stamps, [t // 2 for t in timeouts])
    partial_sets = sorted({int(x) for k, lv in enumerate(live) for x in lv[~used[k]] if x != everyone})
    for live_set in partial_sets:
        subset_stamps = [
            s[(lv == live_set) & ~u] if live_set >> k & 1 else s[:0]
            for k, (s, lv, u) in enumerate(zip(sorted_stamps, live, used, strict=True))
        ]
        positions = [np.flatnonzero((lv == live_set) & ~u) for lv, u in zip(live, used, strict=True)]
        for sample in approximate_time(subset_stamps, live_set, slop_ns):
            samples.append(tuple(int(positions[k][j]) if j >= 0 else -1 for k, j in enumerate(sample)))

    indices = np.array(samples, dtype=np.int64).reshape(-1, len(streams))
    newest = np.full(len(indices), np.iinfo(np.int64).min, dtype=np.int64)
    for k, s in enumerate(sorted_stamps):
        present = indices[:, k] >= 0
        newest[present] = np.maximum(newest[present], s[indices[present, k]])
        indices[present, k] = orders[k][indices[present, k]]  # back to the caller's message order
    by_time = np.argsort(newest, kind="stable")
    return SyncResult(indices[by_time], newest[by_time], out_of_order)


def per_topic(value: int | Sequence[int], topics: int) -> list[int]:
    """One value per topic from a single value or a sequence of them."""
    values = [int(value)] * topics if isinstance(value, int | np.integer) else [int(v) for v in value]
    if len(values) != topics:
        raise ValueError(f"{len(values)} timeouts for {topics} topics")
    return values


def nearest_index(sorted_stamps: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into non-empty `sorted_stamps` of the stamp nearest each query (a tie: the earlier)."""
    right = np.searchsorted(sorted_stamps, query).clip(max=len(sorted_stamps) - 1)
    left = (right - 1).clip(min=0)
    return np.where(np.abs(sorted_stamps[left] - query) <= np.abs(sorted_stamps[right] - query), left, right)


def live_sets(sorted_stamps: Sequence[np.ndarray], radii_ns: Sequence[int]) -> list[np.ndarray]:
    """For each message, the bitmask of topics k with a message within `radii_ns[k]` of its stamp."""
    result = []
    for own in sorted_stamps:
        mask = np.zeros(len(own), dtype=np.int64)
        for k, other in enumerate(sorted_stamps):
            if len(other) == 0:
                continue
            distance = np.abs(other[nearest_index(other, own)] - own)
            mask |= (distance <= radii_ns[k]).astype(np.int64) << k
        result.append(mask)
    return result


def approximate_time(sorted_stamps: Sequence[np.ndarray], topics: int, slop_ns: int) -> list[tuple[int, ...]]:
    """ApproximateTime over the topics in bitmask `topics`; returns per-set indices (−1 for other topics).

    Around each pivot (the latest of the current queue heads) the heads of the other topics
    advance one at a time, earliest first, and the tightest set seen wins. Exploration stops
    when the pivot itself would be the one to advance, when the data ends, or when no later
    set can be tighter. The winning set and everything older are then consumed.
    """
    members = [k for k in range(len(sorted_stamps)) if topics >> k & 1]
    times = [sorted_stamps[k].tolist() for k in members]
    heads = [0] * len(members)
    samples: list[tuple[int, ...]] = []
    while all(h < len(t) for h, t in zip(heads, times, strict=True)):
        current = [t[h] for h, t in zip(heads, times, strict=True)]
        start_i = min(range(len(members)), key=current.__getitem__)
        pivot = max(range(len(members)), key=current.__getitem__)
        if current[pivot] - current[start_i] > slop_ns:
            heads[start_i] += 1  # the earliest head cannot be in any set within slop
            continue
        best, best_start, best_end = heads.copy(), current[start_i], current[pivot]
        pivot_time, cursor = best_end, heads.copy()
        while True:
            start_i = min(range(len(members)), key=lambda i: times[i][cursor[i]])
            if start_i == pivot or cursor[start_i] + 1 >= len(times[start_i]):
                break
            cursor[start_i] += 1
            values = [t[c] for c, t in zip(cursor, times, strict=True)]
            start, end = min(values), max(values)
            if end - start < best_end - best_start:
                best, best_start, best_end = cursor.copy(), start, end
            if end - best_end >= pivot_time - best_start:
                break  # every later set ends at least this late: none can be tighter
        heads = [b + 1 for b in best]
        sample = [-1] * len(sorted_stamps)
        for i, k in enumerate(members):
            sample[k] = best[i]
        samples.append(tuple(sample))
    return samples
