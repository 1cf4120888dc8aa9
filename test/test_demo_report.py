"""The demo report's numbers: missing metrics and the pooled LiDAR error."""

import math

import numpy as np
from bagutils import image, scan, write_bag
from m2vae_training.demo_report import _member_at, _metrics_table, _pooled_rmse, _squared_errors, _truth_scans

from m2vae_ros.spec import ImagePreprocess, ModalitySpec, ModelSpec, ScanPreprocess

LIDAR = ModalitySpec("lidar", "scan", ScanPreprocess(beams=4, range_max=8.0))


def test_null_metrics_are_shown_as_missing():
    metrics = {"subsets": {
        "camera": {"elbo": -512.25, "nb_accuracy": 0.75, "recon_error": {"camera": 12.5, "lidar": 1.25}},
        "lidar": {"elbo": None, "nb_accuracy": None, "recon_error": {"camera": None, "lidar": 0.5}},
    }}
    spec = ModelSpec((ModalitySpec("camera", "image", ImagePreprocess(width=8, height=8)), LIDAR))
    rows = _metrics_table(metrics, spec).splitlines()
    assert rows[0] == "| subset | ELBO | NB accuracy | camera error (0–255) | lidar error (m) |"  # with units
    assert rows[2] == "| camera | -512.2 | 0.750 | 12.500 | 1.250 |"
    assert rows[3] == "| lidar | – | – | – | 0.500 |"


def test_the_lidar_error_pools_every_valid_return_like_m2vae_eval():
    nan = float("nan")
    truth = [np.array([1.0, nan, nan, nan]), np.array([2.0, 2.0, 2.0, nan]), np.array([1.0, 1.0, 1.0, 1.0])]
    published = [np.array([4.0, 5.0, 5.0, 5.0]), np.array([3.0, 3.0, 3.0, np.inf]), np.ones(3)]
    squared, returns = _squared_errors(np.array([0, 10, 20]), published, np.array([0, 10, 20]), truth, LIDAR,
                                       imputed=np.array([True, True, True]))
    assert squared.tolist() == [9.0, 3.0, 0.0] and returns.tolist() == [1, 3, 0]  # the third: 3 beams, not 4
    # One error of 3 m and three of 1 m: pooled sqrt(12 / 4), not the mean of per-scan RMSEs (2 m).
    assert math.isclose(_pooled_rmse(squared, returns), math.sqrt(3.0))
    assert _pooled_rmse(squared[2:], returns[2:]) is None


def test_a_live_reconstruction_is_scored_against_the_scan_the_node_had_and_an_imputed_one_the_nearest():
    truth = [np.full(4, 1.0), np.full(4, 2.0)]  # scans stamped 0 and 100
    published = [np.full(4, 1.0), np.full(4, 2.0)]  # both at stamp 80: nearer to the second scan
    squared, _ = _squared_errors(np.array([80, 80]), published, np.array([0, 100]), truth, LIDAR,
                                 imputed=np.array([False, True]))
    # Alive: the scan at 0, the only one the node had; imputed: the one at 100, nearest in time.
    assert squared.tolist() == [0.0, 0.0]


def test_the_active_subset_in_force_decides_alive_or_imputed():
    changes, subsets = [1.0, 20.4, 35.1], ["camera+lidar", "camera", "camera+lidar"]
    times = np.array([0.5, 1.0, 20.2, 20.4, 30.0, 35.2])
    assert _member_at(times, changes, subsets, "lidar").tolist() == [False, True, True, False, False, True]


def test_the_live_reference_is_the_scan_recorded_before_the_input_that_stamped_the_reconstruction(tmp_path):
    # Scan A stamped 1 ms and recorded at 8 ms; a camera frame stamped 101, recorded 103; scan B
    # stamped 99 but recorded 107, after the frame. The node encoding the frame held scan A
    # only: by stamp, scan B (99 ≤ 101) would be taken for the reference.
    frame = np.full((4, 4, 3), 7, np.uint8)
    ms = 1_000_000
    records = [("/scan", scan(np.full(4, 1.0, np.float32), ms), 8 * ms),
               ("/camera/image_raw", image(frame, "rgb8", 101 * ms), 103 * ms),
               ("/scan", scan(np.full(4, 3.0, np.float32), 99 * ms), 107 * ms)]
    bag = write_bag(tmp_path / "bag", records, "mcap")
    truth = _truth_scans(bag, LIDAR, frame.tobytes())
    assert truth.scan_records.tolist() == [8 * ms, 107 * ms]
    assert truth.first_camera_stamp == truth.anchor_stamp == 101 * ms
    recorded = truth.record_times(np.array([truth.anchor_stamp]))
    assert recorded.tolist() == [103 * ms]
    squared, _ = _squared_errors(recorded, [np.full(4, 1.0)], truth.scan_records, truth.scan_ranges, LIDAR,
                                 imputed=np.array([False]))
    assert squared.tolist() == [0.0]
