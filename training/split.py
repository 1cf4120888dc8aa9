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
    after the guard, then leave out the validation frames within `guard_seconds` of a training frame.

    Blocks are counted by what validation keeps of them (the frames at least the guard from
    every other block), so the guard does not shrink the validation set below the fraction,
    and a block the guard would empty is never chosen. A block that would take validation
    past twice `val_fraction` is passed over, so where only such blocks remain the
    validation set stays smaller than asked (a recording with one long and one short block
    validates on the short one). Raises ValueError, instead of validating on frames that
    training has seen, when a non-zero validation fraction cannot be met with at least one
    block on each side and a validation set no larger than the training set.
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
    kept = _kept_alone(stamps, bag_index, blocks, guard_seconds)
    order = np.random.default_rng(seed).permutation(n_blocks)
    target = val_fraction * len(blocks)
    # Shuffled blocks until the target is reached, passing over a block that would more than
    # double the validation set: in a short recording one full block can outweigh the rest
    # (5 s of 5.5 s), and taking it would leave training a tenth of the data. In a long one
    # no block is that large, and this is the shortest prefix reaching the target.
    chosen: list[int] = []
    total = 0
    for block in order[kept[order] > 0]:
        if total >= target or len(chosen) == n_blocks - 1:  # ≥ 1 block left for training
            break
        if total + kept[block] <= 2 * target:
            chosen.append(int(block))
            total += kept[block]
    if not chosen and (kept > 0).any():  # every usable block alone is over twice the target
        chosen = [int(np.argmin(np.where(kept > 0, kept, np.iinfo(np.int64).max)))]
    is_val = np.isin(blocks, chosen)
    near = is_val & _near_training(stamps, bag_index, ~is_val, guard_seconds)
    if not chosen or near.sum() == is_val.sum() or is_val.sum() > (~is_val).sum():
        span = _longest_bag_seconds(stamps, bag_index)
        raise ValueError(
            f"no {block_seconds} s block can go to validation with frames {guard_seconds} s from "
            f"every training frame and as much left for training (the longest recording is {span:.1f} s); "
            "lower training.block_seconds or training.guard_seconds, record longer, or set "
            "training.val_fraction to 0"
        )
    return Split(train=everything[~is_val], val=everything[is_val & ~near], guarded=everything[near])


def _kept_alone(
    stamps: np.ndarray, bag_index: np.ndarray, blocks: np.ndarray, guard_seconds: float
) -> np.ndarray:
    """Per block: how many of its frames validation keeps if the block goes there alone.

    Those are the frames at least `guard_seconds` from every frame of the other blocks of
    its bag. Block ids run in time order within a bag, so the nearest such frames are the
    previous block's last and the next block's first.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    n_blocks = int(blocks.max()) + 1
    unbounded = np.iinfo(np.int64).max
    first = np.full(n_blocks, unbounded)
    last = np.full(n_blocks, -unbounded)
    np.minimum.at(first, blocks, stamps)  # every block id has a frame: no bound is left over
    np.maximum.at(last, blocks, stamps)
    bag_of = np.zeros(n_blocks, dtype=np.int64)
    bag_of[blocks] = np.asarray(bag_index, dtype=np.int64)
    has_previous = np.r_[False, bag_of[1:] == bag_of[:-1]]
    has_next = np.r_[bag_of[:-1] == bag_of[1:], False]
    previous_last = np.r_[0, last[:-1]]
    next_first = np.r_[first[1:], 0]
    gap = np.minimum(
        np.where(has_previous[blocks], stamps - previous_last[blocks], unbounded),
        np.where(has_next[blocks], next_first[blocks] - stamps, unbounded),
    )
    far = gap >= round(guard_seconds * NS_PER_SECOND)
    return np.bincount(blocks[far], minlength=n_blocks)


def _longest_bag_seconds(stamps: np.ndarray, bag_index: np.ndarray) -> float:
    """The longest recording's span, for the refusal's advice."""
    stamps = np.asarray(stamps, dtype=np.int64)
    bag_index = np.asarray(bag_index, dtype=np.int64)
    return max(int(np.ptp(stamps[bag_index == bag])) for bag in np.unique(bag_index)) / NS_PER_SECOND


def _near_training(
    stamps: np.ndarray, bag_index: np.ndarray, is_train: np.ndarray, guard_seconds: float
) -> np.ndarray:
    """Per sample: is a training frame of the same bag closer than `guard_seconds`?"""
    stamps = np.asarray(stamps, dtype=np.int64)
    bag_index = np.asarray(bag_index, dtype=np.int64)
    near = np.zeros(len(stamps), dtype=bool)
    guard_ns = round(guard_seconds * NS_PER_SECOND)
    if guard_ns == 0:
        return near
    for bag in np.unique(bag_index):
        rows = np.flatnonzero(bag_index == bag)
        train_stamps = np.sort(stamps[rows[is_train[rows]]])
        if len(train_stamps) == 0:
            continue
        at = np.searchsorted(train_stamps, stamps[rows])
        after = train_stamps[np.minimum(at, len(train_stamps) - 1)]
        before = train_stamps[np.maximum(at - 1, 0)]
        gap = np.minimum(np.abs(after - stamps[rows]), np.abs(stamps[rows] - before))
        near[rows] = gap < guard_ns
    return near
