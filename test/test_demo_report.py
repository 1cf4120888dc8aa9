"""The demo report's numbers: missing metrics and the pooled LiDAR error."""

import math

import numpy as np
from bagutils import image, scan, write_bag
from m2vae_training.demo_report import _member_at, _metrics_table, _pooled_rmse, _squared_errors, _truth_scans

from m2vae_ros.spec import ModalitySpec, ScanPreprocess

LIDAR = ModalitySpec("lidar", "scan", ScanPreprocess(beams=4, range_max=8.0))


def test_null_metrics_are_shown_as_missing():
    metrics = {"subsets": {
        "camera": {"elbo": -512.25, "nb_accuracy": 0.75, "recon_error": {"camera": 12.5, "lidar": 1.25}},
        "lidar": {"elbo": None, "nb_accuracy": None, "recon_error": {"camera": None, "lidar": 0.5}},
    }}
    rows = _metrics_table(metrics, ("camera", "lidar")).splitlines()
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


def test_the_live_references_are_placed_by_header_stamp_which_m2vae_play_shifts_by_one_offset(tmp_path):
    # A camera frame and a scan captured together share a stamp but are recorded 2 and 8 ms
    # later; the reconstruction carries that stamp, so by stamp its reference is that scan.
    frame = np.full((4, 4, 3), 7, np.uint8)
    records = [("/camera/image_raw", image(frame, "rgb8", 100_000_000), 102_000_000)]
    for i in range(2):
        stamp = (i + 1) * 100_000_000
        records.append(("/scan", scan(np.full(4, 1.0 + i, np.float32), stamp), stamp + 8_000_000))
    bag = write_bag(tmp_path / "bag", sorted(records, key=lambda r: r[2]), "mcap")
    stamps, ranges, first_camera, anchor = _truth_scans(bag, LIDAR, frame.tobytes())
    assert stamps.tolist() == [100_000_000, 200_000_000] and first_camera == anchor == 100_000_000
    squared, _ = _squared_errors(np.array([anchor]), [np.full(4, 1.0)], stamps, ranges, LIDAR,
                                 imputed=np.array([False]))
    assert squared.tolist() == [0.0]
