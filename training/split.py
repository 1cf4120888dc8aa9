"""Train/validation split by time blocks.

Neighbouring frames of a recording are near-duplicates, so a random per-frame split
would put almost the same frame in both sets and make the validation ELBO meaningless.
Instead each bag's timeline is cut into blocks of `block_seconds` and whole blocks go to
validation, chosen by a seeded shuffle so the split is reproducible. Where a validation
block meets a training block the frames on either side of the cut are still alike, so
validation frames closer than `guard_seconds` to a training frame of the same bag are
left out of both sets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class Split:
    """Sample indices (sorted, int64) of the training and validation sets, and of the frames
    the guard left out of both."""

    train: np.ndarray
    val: np.ndarray
    guarded: np.ndarray

    def digest(self) -> str:
        """sha256 of the three index sets: a resumed run checks that it splits as it started."""
        sha = hashlib.sha256()
        for rows in (self.train, self.val, self.guarded):
            sha.update(len(rows).to_bytes(8, "little"))
            sha.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
        return sha.hexdigest()


def time_blocks(stamps: np.ndarray, bag_index: np.ndarray, block_seconds: float) -> np.ndarray:
    """Block id per sample: blocks count from each bag's first stamp and never span two bags."""
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    stamps = np.asarray(stamps, dtype=np.int64)
    bag_index = np.asarray(bag_index, dtype=np.int64)
    if stamps.shape != bag_index.shape or stamps.ndim != 1:
        raise ValueError(f"stamps {stamps.shape} and bag_index {bag_index.shape} must be equal 1-D arrays")
    block_ns = round(block_seconds * NS_PER_SECOND)
    if block_ns < 1:  # below half a nanosecond: the integer division below would be by zero
        raise ValueError(f"block_seconds must be at least a nanosecond, got {block_seconds}")
    local = np.empty_like(stamps)
    for bag in np.unique(bag_index):
        rows = bag_index == bag
        local[rows] = (stamps[rows] - stamps[rows].min()) // block_ns
    # One id per (bag, block) pair; np.unique gives consecutive ids in time order per bag.
    _, block_id = np.unique(np.stack([bag_index, local], axis=1), axis=0, return_inverse=True)
    return block_id.reshape(-1).astype(np.int64)


def time_block_split(
    stamps: np.ndarray, bag_index: np.ndarray, *, block_seconds: float, val_fraction: float, seed: int,
    guard_seconds: float = 0.0,
) -> Split:
    """Send whole time blocks to validation until at least `val_fraction` of the samples are there
    after the guard, which leaves out the validation frames within `guard_seconds` of a training frame.

    Blocks are counted by what validation keeps of them, recounted as blocks join (two
    neighbouring validation blocks guard nothing between them), so the guard neither shrinks
    validation below the fraction nor makes it overshoot, and a block the guard would empty
    is never chosen. A block that would take validation past twice `val_fraction` is passed
    over, so where only such blocks remain the smallest one is taken (a recording with one
    long and one short block validates on the short one). Raises ValueError, instead of
    validating on frames that training has seen, when no block can go to validation, or
    when the only one that can is larger than what training keeps.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 <= guard_seconds < math.inf:
        raise ValueError(f"guard_seconds must be ≥ 0 and finite, got {guard_seconds}")
    blocks = time_blocks(stamps, bag_index, block_seconds)
    everything = np.arange(len(blocks), dtype=np.int64)
    nothing = np.empty(0, dtype=np.int64)
    if val_fraction == 0.0 or len(blocks) == 0:
        return Split(train=everything, val=nothing, guarded=nothing)
    n_blocks = int(blocks.max()) + 1
    if n_blocks < 2:
        raise ValueError(
            f"the recording spans a single {block_seconds} s block, so no block is left for validation; "
            "record longer, lower training.block_seconds, or set training.val_fraction to 0"
        )
    selection = _Selection(stamps, bag_index, blocks, guard_seconds)
    alone = np.array([selection.kept_if_chosen(block) for block in range(n_blocks)])
    target = val_fraction * len(blocks)
    # Shuffled blocks until the target is reached, passing over a block that would more than
    # double the validation set: in a short recording one full block can outweigh the rest
    # (5 s of 5.5 s), and taking it would leave training a tenth of the data. In a long one
    # no block is that large, and this is the shortest prefix reaching the target.
    for block in np.random.default_rng(seed).permutation(n_blocks):
        if selection.total >= target or selection.count == n_blocks - 1:  # ≥ 1 block left for training
            break
        if alone[block] > 0:
            selection.choose(block)
            if selection.total > 2 * target:
                selection.unchoose(block)
    fallback = selection.count == 0 and alone.any()
    if fallback:  # every usable block alone is over twice the target
        selection.choose(int(np.argmin(np.where(alone > 0, alone, np.iinfo(np.int64).max))))
    is_val = selection.chosen[blocks]
    if selection.count == 0 or (fallback and is_val.sum() > (~is_val).sum()):
        span = _longest_bag_seconds(stamps, bag_index)
        raise ValueError(
            f"no {block_seconds} s block can go to validation with frames {guard_seconds} s from "
            f"every training frame and as much left for training (the longest recording is {span:.1f} s); "
            "lower training.block_seconds or training.guard_seconds, record longer, or set "
            "training.val_fraction to 0"
        )
    guarded = np.sort(selection.guarded_rows())
    val = np.setdiff1d(everything[is_val], guarded, assume_unique=True)
    return Split(train=everything[~is_val], val=val, guarded=guarded)


class _Selection:
    """The validation blocks chosen so far, and how many frames of each the guard leaves them.

    A validation frame is guarded when a training frame of its bag is closer than the guard.
    Block ids run in time order within a bag, so the nearest training frames of a block are
    the last frame of the nearest training block before it and the first of the nearest one
    after it: choosing a block changes only the counts of its run of adjacent validation blocks.
    """

    def __init__(self, stamps: np.ndarray, bag_index: np.ndarray, blocks: np.ndarray, guard_seconds: float):
        order = np.argsort(blocks, kind="stable")
        n_blocks = int(blocks.max()) + 1
        bounds = np.searchsorted(blocks[order], np.arange(n_blocks + 1))
        self.rows = [order[bounds[b]:bounds[b + 1]] for b in range(n_blocks)]
        stamps = np.asarray(stamps, dtype=np.int64)
        self.frames = [stamps[rows] for rows in self.rows]  # every block id has a frame
        self.first = np.array([frames.min() for frames in self.frames])
        self.last = np.array([frames.max() for frames in self.frames])
        self.bag_of = np.asarray(bag_index, dtype=np.int64)[order[bounds[:-1]]]
        self.guard_ns = round(guard_seconds * NS_PER_SECOND)
        self.chosen = np.zeros(n_blocks, dtype=bool)
        self.kept = np.zeros(n_blocks, dtype=np.int64)  # per chosen block, what the guard leaves

    @property
    def total(self) -> int:
        return int(self.kept.sum())

    @property
    def count(self) -> int:
        return int(self.chosen.sum())

    def choose(self, block: int) -> None:
        self.chosen[block] = True
        self._recount_around(block)

    def unchoose(self, block: int) -> None:
        self.chosen[block] = False
        self._recount_around(block)

    def kept_if_chosen(self, block: int) -> int:
        """What validation keeps of `block` were it chosen now."""
        return int((self._gaps(block) >= self.guard_ns).sum())

    def guarded_rows(self) -> np.ndarray:
        """Sample indices of the chosen blocks' frames closer than the guard to a training frame."""
        near = [self.rows[b][self._gaps(b) < self.guard_ns] for b in np.flatnonzero(self.chosen)]
        return np.concatenate([np.empty(0, dtype=np.int64), *near])

    def _recount_around(self, block: int) -> None:
        same_bag = self.bag_of == self.bag_of[block]
        low = block
        while low > 0 and same_bag[low - 1] and self.chosen[low - 1]:
            low -= 1
        high = block
        while high + 1 < len(self.chosen) and same_bag[high + 1] and self.chosen[high + 1]:
            high += 1
        for b in range(low, high + 1):
            self.kept[b] = self.kept_if_chosen(b) if self.chosen[b] else 0

    def _gaps(self, block: int) -> np.ndarray:
        """Per frame of `block`: ns to the nearest training frame of its bag (int64 max: none)."""
        gaps = np.full(len(self.frames[block]), np.iinfo(np.int64).max)
        before = self._nearest_training(block, -1)
        if before is not None:
            gaps = np.minimum(gaps, self.frames[block] - self.last[before])
        after = self._nearest_training(block, +1)
        if after is not None:
            gaps = np.minimum(gaps, self.first[after] - self.frames[block])
        return gaps

    def _nearest_training(self, block: int, step: int) -> int | None:
        other = block + step
        while 0 <= other < len(self.chosen) and self.bag_of[other] == self.bag_of[block]:
            if not self.chosen[other]:
                return other
            other += step
        return None


def _longest_bag_seconds(stamps: np.ndarray, bag_index: np.ndarray) -> float:
    """The longest recording's span, for the refusal's advice."""
    stamps = np.asarray(stamps, dtype=np.int64)
    bag_index = np.asarray(bag_index, dtype=np.int64)
    return max(int(np.ptp(stamps[bag_index == bag])) for bag in np.unique(bag_index)) / NS_PER_SECOND
