"""The streaming guess of which messages a sample will use, against the exact offline synchronisation."""

import numpy as np
import pytest
from m2vae_training.prediction import MAX_PENDING, UsePredictor
from m2vae_training.sync import synchronize

MS = 1_000_000
SLOP, TIMEOUT = 50 * MS, 500 * MS
RNG = np.random.default_rng(11)


def stream(hz: float, seconds: float, jitter_ms: float, start_ms: float = 0.0) -> np.ndarray:
    t = start_ms * MS + np.arange(0, seconds * 1e9, 1e9 / hz)
    return np.rint(t + RNG.uniform(-jitter_ms, jitter_ms, t.size) * MS).astype(np.int64)


def predict(streams: list[np.ndarray], lag_ms: list[float]) -> list[set[int]]:
    """Feed the streams in logging order (stamp + per-stream lag); the indices predicted as used."""
    arrivals = sorted((int(stamp + lag_ms[k] * MS), k, j)
                      for k, st in enumerate(streams) for j, stamp in enumerate(st))
    predictor: UsePredictor[int] = UsePredictor(SLOP, [TIMEOUT] * len(streams))
    decisions = []
    for _, k, j in arrivals:
        decisions += predictor.push(k, int(streams[k][j]), j)
    decisions += predictor.finish()
    assert sorted((k, j) for k, j, _ in decisions) == sorted((k, j) for _, k, j in arrivals)  # one each
    return [{j for k_, j, used in decisions if used and k_ == k} for k in range(len(streams))]


def used(streams: list[np.ndarray]) -> list[set[int]]:
    indices = synchronize(streams, SLOP, TIMEOUT).indices
    return [set(indices[:, k][indices[:, k] >= 0].tolist()) for k in range(len(streams))]


@pytest.mark.parametrize("lag_ms", [[2, 1], [2, 300]], ids=["on-time", "lidar-logged-late"])
def test_camera_and_lidar_with_a_dropout_predict_every_used_message_and_few_more(lag_ms):
    camera, lidar = stream(30, 20, jitter_ms=3), stream(10, 20, jitter_ms=3, start_ms=25)
    lidar = lidar[(lidar < 6e9) | (lidar > 9e9)]  # a 3 s LiDAR dropout: camera-only partial samples
    predicted, exact = predict([camera, lidar], lag_ms), used([camera, lidar])
    for k in range(2):
        assert exact[k] <= predicted[k]
        assert len(predicted[k]) <= len(exact[k]) + 3
    assert len(predicted[0]) < 0.6 * len(camera), "surplus camera frames are not decoded"


def test_three_sensors_and_a_single_sensor():
    streams = [stream(30, 10, 3), stream(10, 10, 3, start_ms=25), stream(15, 10, 3, start_ms=10)]
    predicted, exact = predict(streams, [2, 1, 3]), used(streams)
    assert all(e <= p for e, p in zip(exact, predicted, strict=True))
    single = [stream(10, 3, 3)]
    assert predict(single, [0]) == [set(range(len(single[0])))]


def test_two_modalities_of_one_topic_are_decided_by_the_other_sensor():
    camera, lidar = stream(30, 10, 3), stream(10, 10, 3, start_ms=25)
    streams = [camera, camera.copy(), lidar]  # e.g. one PointCloud2 as a scan and a range image
    predicted, exact = predict(streams, [2, 2, 1]), used(streams)
    for k in range(3):
        assert exact[k] <= predicted[k] and len(predicted[k]) <= len(exact[k]) + 3


def test_a_glitched_future_stamp_neither_stalls_nor_floods_the_decodes():
    camera, lidar = stream(30, 20, 3), stream(10, 20, 3, start_ms=25)
    glitched = lidar.copy()
    glitched[50] = 10**18  # one scan stamped 31 years ahead
    predictor: UsePredictor[int] = UsePredictor(SLOP, [TIMEOUT, TIMEOUT])
    arrivals = sorted((int(t), k, j) for k, st in enumerate((camera, lidar)) for j, t in enumerate(st))
    decisions = []
    for _, k, j in arrivals:
        decisions += predictor.push(k, int((camera, glitched)[k][j]), j)
        assert len(predictor.pending) <= MAX_PENDING
    decisions += predictor.finish()
    decoded_frames = sum(1 for k, _, expected in decisions if k == 0 and expected)
    assert decoded_frames < 0.5 * len(camera)
