"""ApproximateTime-style synchronisation with partial samples, on synthetic stamp streams."""

import numpy as np
import pytest
from m2vae_training.sync import nearest_index, synchronize

MS = 1_000_000
SLOP, TIMEOUT = 50 * MS, 500 * MS
RNG = np.random.default_rng(4)


def stream(hz: float, seconds: float, jitter_ms: float = 0.0, start_ms: float = 0.0) -> np.ndarray:
    t = start_ms * MS + np.arange(0, seconds * 1e9, 1e9 / hz)
    return np.rint(t + RNG.uniform(-jitter_ms, jitter_ms, t.size) * MS).astype(np.int64)


def assert_valid(result, streams):
    """Every set within slop, every message used at most once, sets sorted by newest stamp."""
    for k in range(len(streams)):
        used = result.indices[:, k][result.indices[:, k] >= 0]
        assert len(np.unique(used)) == len(used)
    for row, newest in zip(result.indices, result.stamps, strict=True):
        members = [streams[k][j] for k, j in enumerate(row) if j >= 0]
        assert members and max(members) - min(members) <= SLOP and max(members) == newest
    assert (np.diff(result.stamps) >= 0).all()


def test_jittered_camera_and_lidar_pair_each_scan_with_its_nearest_frame():
    camera, lidar = stream(30, 3, jitter_ms=3), stream(10, 3, jitter_ms=3, start_ms=5)
    result = synchronize([camera, lidar], SLOP, TIMEOUT)
    assert_valid(result, [camera, lidar])
    assert (result.indices >= 0).all(), "surplus camera frames must be dropped, not made partial"
    np.testing.assert_array_equal(result.indices[:, 1], np.arange(len(lidar)))
    nearest = np.abs(camera[None, :] - lidar[:, None]).argmin(axis=1)
    np.testing.assert_array_equal(result.indices[:, 0], nearest)


def test_dropout_window_yields_partial_samples_only_inside_it():
    camera, lidar = stream(30, 6, jitter_ms=2), stream(10, 6, jitter_ms=2)
    lidar = lidar[(lidar < 2.0e9) | (lidar > 4.0e9)]  # LiDAR silent for ~2 s
    result = synchronize([camera, lidar], SLOP, TIMEOUT)
    assert_valid(result, [camera, lidar])
    partial = result.indices[:, 1] < 0
    partial_stamps = result.stamps[partial]
    assert partial.sum() > 40
    margin = TIMEOUT / 2 - 0.1e9  # silent once the last scan is timeout/2 away (± one scan period)
    assert partial_stamps.min() > 2.0e9 + margin and partial_stamps.max() < 4.0e9 - margin
    assert (result.indices[partial, 0] >= 0).all()
    assert (~partial).sum() == len(lidar)


def test_short_gap_under_timeout_gives_no_partial_samples():
    camera, lidar = stream(30, 3), stream(10, 3)
    lidar = np.delete(lidar, [10, 11, 12])  # 0.4 s gap < timeout
    result = synchronize([camera, lidar], SLOP, TIMEOUT)
    assert (result.indices >= 0).all() and len(result.indices) == len(lidar)


def test_each_sensor_is_judged_silent_by_its_own_timeout():
    camera, gps = stream(30, 12, jitter_ms=2), stream(1, 12, start_ms=10)
    gps = gps[(gps < 5e9) | (gps > 9e9)]  # GPS silent 4 s
    one_timeout = synchronize([camera, gps], SLOP, TIMEOUT)
    assert (one_timeout.indices[:, 1] < 0).sum() > 200, "0.5 s: a 1 Hz sensor looks dead between fixes"
    result = synchronize([camera, gps], SLOP, [TIMEOUT, 2500 * MS])
    partial = result.indices[:, 1] < 0
    assert result.stamps[partial].min() > 5e9 and result.stamps[partial].max() < 9e9 and partial.sum() > 60
    assert (~partial).sum() == len(gps)
    with pytest.raises(ValueError):
        synchronize([camera, gps], SLOP, [TIMEOUT])


def test_slop_is_never_exceeded():
    camera = stream(5, 2)
    lidar = camera + 100 * MS  # halfway between frames: no complete set fits in 50 ms
    result = synchronize([camera, lidar], SLOP, TIMEOUT)
    assert len(result.indices) == 0
    wide = synchronize([camera, lidar], 100 * MS, TIMEOUT)
    assert len(wide.indices) == len(camera)


def test_tightest_set_around_the_pivot_wins():
    camera = np.array([0, 33, 66, 100, 133]) * MS
    lidar = np.array([70, 128]) * MS
    result = synchronize([camera, lidar], SLOP, TIMEOUT)
    np.testing.assert_array_equal(result.indices, [[2, 0], [4, 1]])
    np.testing.assert_array_equal(result.stamps, [70 * MS, 133 * MS])


def test_three_sensors_with_one_dead_keep_the_other_two_together():
    camera, lidar, imu = stream(30, 4, 2), stream(10, 4, 2), stream(20, 4, 2)
    imu = imu[imu < 1.0e9]
    result = synchronize([camera, lidar, imu], SLOP, TIMEOUT)
    assert_valid(result, [camera, lidar, imu])
    late = result.stamps > 1.5e9
    assert (result.indices[late, 2] == -1).all() and (result.indices[late, :2] >= 0).all()
    assert (result.indices[result.stamps < 0.9e9] >= 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_out_of_order_input_gives_the_same_samples_and_is_counted(seed):
    camera, lidar = stream(30, 2, 3), stream(10, 2, 3)
    ordered = synchronize([camera, lidar], SLOP, TIMEOUT)
    swap = np.random.default_rng(seed).choice(len(camera) - 1, 4, replace=False)
    shuffled = camera.copy()
    perm = np.arange(len(camera))
    perm[swap], perm[swap + 1] = perm[swap + 1], perm[swap]
    shuffled = camera[perm]
    result = synchronize([shuffled, lidar], SLOP, TIMEOUT)
    np.testing.assert_array_equal(perm[result.indices[:, 0]], ordered.indices[:, 0])
    np.testing.assert_array_equal(result.stamps, ordered.stamps)
    assert 1 <= len(result.out_of_order[0]) <= 4 and len(result.out_of_order[1]) == 0


def test_nearest_index_picks_the_closer_neighbour_and_the_earlier_on_a_tie():
    stamps = np.array([10, 20, 40], dtype=np.int64)
    query = np.array([0, 14, 15, 16, 31, 100], dtype=np.int64)
    assert nearest_index(stamps, query).tolist() == [0, 0, 0, 1, 2, 2]
