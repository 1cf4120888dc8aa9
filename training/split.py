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
    """Send whole time blocks to validation until at least `val_fraction` of the samples are there,
    then leave out the validation frames within `guard_seconds` of a training frame.

    A block that would take validation past twice `val_fraction` is passed over, so where
    only such blocks remain the validation set stays smaller than asked (a recording with
    one long and one short block validates on the short one). Raises ValueError when a
    non-zero validation fraction cannot be met with at least one block on each side (a
    recording shorter than two blocks), instead of validating on training frames, and when
    the guard leaves no validation frame.
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
    sizes = np.bincount(blocks, minlength=n_blocks)
    order = np.random.default_rng(seed).permutation(n_blocks)
    target = val_fraction * len(blocks)
    # Shuffled blocks until the target is reached, passing over a block that would more than
    # double the validation set: in a short recording one full block can outweigh the rest
    # (5 s of 5.5 s), and taking it would leave training a tenth of the data. In a long one
    # no block is that large, and this is the shortest prefix reaching the target.
    chosen: list[int] = []
    total = 0
    for block in order:
        if total >= target:
            break
        if total + sizes[block] <= 2 * target:
            chosen.append(int(block))
            total += sizes[block]
    if not chosen:  # every block alone is over twice the target: the smallest
        chosen = [int(np.argmin(sizes))]
    is_val = np.isin(blocks, chosen[: n_blocks - 1])  # ≥ 1 block left for training
    near = is_val & _near_training(stamps, bag_index, ~is_val, guard_seconds)
    if near.sum() == is_val.sum():
        raise ValueError(
            f"no validation frame is {guard_seconds} s from every training frame; lower "
            "training.guard_seconds or raise training.block_seconds"
        )
    return Split(train=everything[~is_val], val=everything[is_val & ~near], guarded=everything[near])


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
