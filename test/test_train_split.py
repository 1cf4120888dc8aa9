"""Time-block train/validation split: disjoint, whole blocks, reproducible."""

import numpy as np
import pytest
from m2vae_training.split import NS_PER_SECOND, time_block_split, time_blocks


def _two_bags() -> tuple[np.ndarray, np.ndarray]:
    """Two 20 s recordings at 10 Hz whose clocks overlap (bags from different days share no blocks)."""
    t = np.arange(200, dtype=np.int64) * (NS_PER_SECOND // 10) + 5 * NS_PER_SECOND
    stamps = np.concatenate([t, t + NS_PER_SECOND // 20])
    bag_index = np.repeat([0, 1], 200)
    return stamps, bag_index


def test_blocks_count_from_each_bag_start_and_never_span_bags():
    stamps, bag_index = _two_bags()
    blocks = time_blocks(stamps, bag_index, block_seconds=2.0)
    assert blocks.max() + 1 == 20
    assert set(blocks[:200]).isdisjoint(blocks[200:])
    assert np.all(np.bincount(blocks) == 20)


def test_split_is_disjoint_whole_blocks_and_near_the_fraction():
    stamps, bag_index = _two_bags()
    split = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.2, seed=3)
    assert np.intersect1d(split.train, split.val).size == 0
    assert np.array_equal(np.union1d(split.train, split.val), np.arange(400))
    blocks = time_blocks(stamps, bag_index, block_seconds=2.0)
    assert set(blocks[split.train]).isdisjoint(blocks[split.val])
    assert len(split.val) == 80


def test_split_is_deterministic_under_the_seed():
    stamps, bag_index = _two_bags()
    a = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.3, seed=7)
    b = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.3, seed=7)
    c = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.3, seed=8)
    assert np.array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)


def test_single_block_recording_is_refused_with_a_clear_error():
    stamps = np.arange(10, dtype=np.int64) * NS_PER_SECOND // 10
    with pytest.raises(ValueError, match="single"):
        time_block_split(stamps, np.zeros(10), block_seconds=5.0, val_fraction=0.2, seed=0)
    whole = time_block_split(stamps, np.zeros(10), block_seconds=5.0, val_fraction=0.0, seed=0)
    assert len(whole.train) == 10 and len(whole.val) == 0


def test_a_block_that_would_more_than_double_validation_is_passed_over():
    # 5.5 s at 10 Hz in 5 s blocks: 50 samples and 5. Taking the big block for validation
    # would leave training 5 samples, whichever block the shuffle drew first.
    stamps = np.arange(55, dtype=np.int64) * 100_000_000
    for seed in range(5):
        split = time_block_split(stamps, np.zeros(55, np.int64), block_seconds=5.0, val_fraction=0.2,
                                 seed=seed)
        assert (len(split.train), len(split.val)) == (50, 5), seed


def test_blocks_shorter_than_a_nanosecond_are_refused_not_divided_by():
    stamps = np.arange(10, dtype=np.int64) * 100_000_000
    with pytest.raises(ValueError, match="at least a nanosecond, got 1e-10"):
        time_blocks(stamps, np.zeros(10, np.int64), block_seconds=1e-10)


def test_the_guard_leaves_out_validation_frames_next_to_training_frames():
    stamps, bag_index = _two_bags()
    split = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.2, seed=3,
                             guard_seconds=0.25)
    parts = [split.train, split.val, split.guarded]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(400))  # each frame in one part
    blocks = time_blocks(stamps, bag_index, block_seconds=2.0)
    assert set(blocks[split.train]).isdisjoint(blocks[np.union1d(split.val, split.guarded)])
    # At 10 Hz the frames 0.1 and 0.2 s from a cut are guarded; the rest of each block is kept.
    assert _gap_to_training(stamps, bag_index, split, split.val).min() >= NS_PER_SECOND // 4
    assert _gap_to_training(stamps, bag_index, split, split.guarded).max() < NS_PER_SECOND // 4
    assert len(split.guarded) > 0


def test_the_guarded_frames_are_made_up_for_with_more_blocks():
    """Validation holds the asked fraction after the guard, not before it."""
    stamps, bag_index = _two_bags()
    plain = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.2, seed=3)
    for seed in range(5):
        guarded = time_block_split(stamps, bag_index, block_seconds=2.0, val_fraction=0.2, seed=seed,
                                   guard_seconds=0.25)
        assert len(guarded.val) >= len(plain.val) == 80, seed


@pytest.mark.parametrize(("block_seconds", "guard_seconds", "val_fraction"),
                         [(2.0, 0.5, 0.2), (5.0, 0.5, 0.44), (5.0, 0.0, 0.6)])
def test_validation_meets_its_fraction_without_overshooting(block_seconds, guard_seconds, val_fraction):
    """Neighbouring validation blocks guard nothing between them: counted as they join, they
    take no more blocks than the fraction needs (10 min at 10 Hz)."""
    stamps = np.arange(6000, dtype=np.int64) * (NS_PER_SECOND // 10)
    bags = np.zeros(6000, np.int64)
    for seed in range(3):
        split = time_block_split(stamps, bags, block_seconds=block_seconds, val_fraction=val_fraction,
                                 seed=seed, guard_seconds=guard_seconds)
        block_frames = round(block_seconds * 10)
        assert val_fraction * 6000 <= len(split.val) < val_fraction * 6000 + block_frames, seed
        assert len(split.train) + len(split.val) + len(split.guarded) == 6000
        assert _gap_to_training(stamps, bags, split, split.val).min() >= guard_seconds * NS_PER_SECOND


def test_a_short_recording_validates_on_the_block_the_guard_leaves_most_of():
    # 10.3 s at 10 Hz in 5 s blocks: 50, 50 and 3 frames. The 3-frame block lies within 0.5 s
    # of the training frames before it, so the guard would empty it: it is never chosen.
    stamps = np.arange(103, dtype=np.int64) * (NS_PER_SECOND // 10)
    for seed in range(5):
        split = time_block_split(stamps, np.zeros(103, np.int64), block_seconds=5.0, val_fraction=0.2,
                                 seed=seed, guard_seconds=0.5)
        assert len(split.val) > 0 and len(split.train) >= 50, seed
        assert _gap_to_training(stamps, np.zeros(103, np.int64), split, split.val).min() >= NS_PER_SECOND // 2


def test_a_guard_that_leaves_no_validation_frame_is_refused():
    stamps = np.arange(40, dtype=np.int64) * (NS_PER_SECOND // 10)  # 4 s at 10 Hz, 2 s blocks
    with pytest.raises(ValueError, match=r"frames 2\.5 s from every training frame .* recording is 3\.9 s"):
        time_block_split(stamps, np.zeros(40, np.int64), block_seconds=2.0, val_fraction=0.2, seed=0,
                         guard_seconds=2.5)
    with pytest.raises(ValueError, match="guard_seconds must be"):
        time_block_split(stamps, np.zeros(40, np.int64), block_seconds=2.0, val_fraction=0.2, seed=0,
                         guard_seconds=float("nan"))


def test_a_validation_block_larger_than_what_training_keeps_is_refused():
    # 5.3 s in 5 s blocks: the guard empties the 0.3 s block, and validating on the 5 s one
    # would leave training three frames.
    stamps = np.arange(53, dtype=np.int64) * (NS_PER_SECOND // 10)
    with pytest.raises(ValueError, match=r"lower training\.block_seconds"):
        time_block_split(stamps, np.zeros(53, np.int64), block_seconds=5.0, val_fraction=0.2, seed=0,
                         guard_seconds=0.5)
    for seed in range(4):  # the advice works: shorter blocks and a shorter guard
        lower = time_block_split(stamps, np.zeros(53, np.int64), block_seconds=2.0, val_fraction=0.2,
                                 seed=seed, guard_seconds=0.2)
        assert 0 < len(lower.val) < len(lower.train), seed


def _gap_to_training(stamps, bag_index, split, rows) -> np.ndarray:
    """Per row: ns to the nearest training frame of the same bag (all pairs: small arrays)."""
    same_bag = bag_index[rows][:, None] == bag_index[split.train][None, :]
    gaps = np.abs(stamps[rows][:, None] - stamps[split.train][None, :])
    return np.where(same_bag, gaps, np.iinfo(np.int64).max).min(axis=1)
