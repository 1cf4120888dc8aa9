"""`m2vae-sim` recordings: real rosbag2 files, deterministic, with the requested rates and dropouts."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader

from m2vae_ros.drop_window import DropWindow
from m2vae_ros.ros_types import message_class
from m2vae_ros.sim.cli import main
from m2vae_ros.sim.messages import TYPESTORE
from m2vae_ros.sim.recorder import START_NS, SimSummary, Simulation, simulate
from m2vae_ros.sim.timing import LATENCY_MAX, LATENCY_MIN, SimError, parse_dropout

CAMERA, SCAN, POINTS = "/camera/image_raw", "/scan", "/points"
MARKER, ROBOT_POSE = "/ground_truth/object", "/ground_truth/robot_pose"
CAMERA_INFO = "/camera/camera_info"
DEPTH = "/camera/depth/image_raw"
TF, TF_STATIC = "/tf", "/tf_static"


def read_bag(path: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time, raw CDR) of every message, in bag order."""
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def stamp_seconds(msgtype: str, raw: bytes) -> float:
    """Header stamp (a TF message's first transform's) relative to the recording's start, in seconds."""
    msg = TYPESTORE.deserialize_cdr(raw, msgtype)
    stamp = (msg.transforms[0] if msgtype == "tf2_msgs/msg/TFMessage" else msg).header.stamp
    return (stamp.sec * 1_000_000_000 + stamp.nanosec - START_NS) / 1e9


@pytest.fixture(scope="module")
def recording(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SimSummary, list[tuple[str, str, int, bytes]]]:
    out = tmp_path_factory.mktemp("sim") / "bag"
    summary = simulate(out, 3.0, 5, drops=parse_dropout("camera@1:2") + parse_dropout("lidar@0.5:1.5"))
    return summary, read_bag(out)


def test_same_seed_gives_identical_messages_and_another_seed_different(tmp_path: Path) -> None:
    first, second, other = (
        simulate(tmp_path / name, 1.0, seed).out for name, seed in (("a", 3), ("b", 3), ("c", 4))
    )
    a, b, c = read_bag(first), read_bag(second), read_bag(other)
    assert len(a) > 50 and a == b
    for topic in (CAMERA, SCAN, POINTS, MARKER, ROBOT_POSE):
        ours, theirs = ([raw for name, _, _, raw in bag if name == topic] for bag in (a, c))
        assert len(ours) == len(theirs) > 0 and all(x != y for x, y in zip(ours, theirs, strict=True))


def test_a_dropout_leaves_every_other_message_unchanged(tmp_path: Path) -> None:
    full = read_bag(simulate(tmp_path / "full", 1.0, 3).out)
    dropped = read_bag(simulate(tmp_path / "dropped", 1.0, 3, drops=parse_dropout("camera@0.2:0.6")).out)
    kept = [m for m in full if not (m[0] in (CAMERA, CAMERA_INFO) and 0.2 <= stamp_seconds(m[1], m[3]) < 0.6)]
    assert len(dropped) < len(full) and dropped == kept


def test_rates_and_dropout_windows(recording) -> None:
    summary, messages = recording
    stamps: dict[str, np.ndarray] = {
        topic: np.array([stamp_seconds(t, raw) for name, t, _, raw in messages if name == topic])
        for topic in summary.counts
    }

    def count(topic: str, start: float, end: float) -> int:
        return int(np.count_nonzero((stamps[topic] >= start) & (stamps[topic] < end)))

    assert count(CAMERA, 1.0, 2.0) == 0  # camera@1:2
    assert count(CAMERA, 0.0, 1.0) == pytest.approx(30, abs=1) and count(CAMERA, 2.0, 3.0) == pytest.approx(
        30, abs=1
    )
    for lidar in (SCAN, POINTS):  # lidar@0.5:1.5 is both
        assert count(lidar, 0.5, 1.5) == 0
        assert count(lidar, 0.0, 0.5) == pytest.approx(5, abs=1) and count(lidar, 1.5, 3.0) == pytest.approx(
            15, abs=1
        )
    # The ground truth keeps its 10 Hz through the LiDAR dropout: the camera's samples need labels.
    for truth in (MARKER, ROBOT_POSE, TF):
        assert len(stamps[truth]) == 30 and count(truth, 0.5, 1.5) == pytest.approx(10, abs=1)
    assert summary.counts == Counter(topic for topic, *_ in messages)


def test_stamps_jitter_and_precede_log_times(recording) -> None:
    _, messages = recording
    latencies, jitter = [], []
    for topic, msgtype, log_ns, raw in messages:
        if topic == TF_STATIC:  # one latched message at the start, not a sensor stream
            continue
        stamp = stamp_seconds(msgtype, raw)
        latencies.append(log_ns - START_NS - round(stamp * 1e9))
        rate = 30.0 if topic in (CAMERA, CAMERA_INFO) else 10.0
        phase = 0.025 if topic == POINTS else 0.0
        jitter.append(stamp - phase - round((stamp - phase) * rate) / rate)  # off the nominal grid
    assert min(latencies) >= LATENCY_MIN * 1e9 - 1 and max(latencies) <= LATENCY_MAX * 1e9 + 1
    assert 0.5e-3 < np.std(jitter) < 2e-3 and np.max(np.abs(jitter)) <= 3e-3 + 1e-9
    # Written in log-time order (a reader sorts an MCAP's chunks, so the bag cannot show it).
    log_times = [record.log_ns for record in Simulation(3.0, 5).records()]
    assert len(log_times) > 100 and log_times == sorted(log_times)


def test_ground_truth_shares_the_scan_stamps_and_fields(recording) -> None:
    _, messages = recording
    scan_stamps = [stamp_seconds(t, raw) for topic, t, _, raw in messages if topic == SCAN]
    marker_stamps = {stamp_seconds(t, raw) for topic, t, _, raw in messages if topic == MARKER}
    assert len(scan_stamps) > 10 and set(scan_stamps) <= marker_stamps
    markers = [TYPESTORE.deserialize_cdr(raw, t) for topic, t, _, raw in messages if topic == MARKER]
    names = {0: ("red_cylinder", 3), 1: ("red_box", 1), 2: ("green_cylinder", 3)}  # CYLINDER 3, CUBE 1
    for marker in markers:
        assert (marker.ns, marker.type) == names[marker.id]
        assert marker.header.frame_id == "base_link"
        assert 0.5 - 1e-6 <= math.hypot(marker.pose.position.x, marker.pose.position.y) <= 4.0 + 1e-6


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_both_storages_read_back_with_rosbags_and_rclpy(tmp_path: Path, storage: str) -> None:
    summary = simulate(tmp_path / "bag", 0.5, 1, storage=storage, compressed=True, image_size=(80, 60))
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    assert sorted(p.name for p in summary.out.iterdir()) == ["bag" + suffix, "metadata.yaml"]
    assert not (tmp_path / "bag.partial").exists()
    messages = read_bag(summary.out)
    types = {topic: msgtype for topic, msgtype, _, _ in messages}
    assert types == {
        "/camera/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
        SCAN: "sensor_msgs/msg/LaserScan",
        POINTS: "sensor_msgs/msg/PointCloud2",
        MARKER: "visualization_msgs/msg/Marker",
        ROBOT_POSE: "geometry_msgs/msg/PoseStamped",
        TF: "tf2_msgs/msg/TFMessage",
        TF_STATIC: "tf2_msgs/msg/TFMessage",
    }
    first = {topic: raw for topic, _, _, raw in reversed(messages)}
    # The CDR is what ROS itself writes: rclpy's own message classes read every topic
    # (but TF's: tf2_msgs has no PyPI wheel).
    ros = {
        topic: deserialize_message(first[topic], message_class(msgtype))
        for topic, msgtype in types.items()
        if not msgtype.startswith("tf2_msgs/")
    }
    jpeg = np.frombuffer(bytes(ros["/camera/image_raw/compressed"].data), dtype=np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (60, 80, 3)
    assert len(ros[SCAN].ranges) == 360 and ros[SCAN].header.frame_id == "laser"
    assert ros[SCAN].time_increment == 0.0  # cast at one instant: deskewing must leave it alone
    cloud = ros[POINTS]
    assert cloud.header.frame_id == "lidar" and cloud.point_step == 32 and cloud.width > 1000
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
    assert ros[ROBOT_POSE].header.frame_id == "map"


def test_compressed_image_matches_the_raw_one(tmp_path: Path) -> None:
    raw = read_bag(simulate(tmp_path / "raw", 0.2, 2, points=False).out)
    jpeg = read_bag(simulate(tmp_path / "jpeg", 0.2, 2, points=False, compressed=True).out)
    image = TYPESTORE.deserialize_cdr(next(m[3] for m in raw if m[0] == CAMERA), "sensor_msgs/msg/Image")
    pixels = image.data.reshape(image.height, image.width, 3).astype(float)
    compressed = TYPESTORE.deserialize_cdr(
        next(m[3] for m in jpeg if m[0].endswith("compressed")), "sensor_msgs/msg/CompressedImage"
    )
    decoded = cv2.imdecode(compressed.data, cv2.IMREAD_COLOR)[..., ::-1].astype(float)
    assert np.abs(decoded - pixels).mean() < 6
    assert {m[0] for m in raw} == {CAMERA, CAMERA_INFO, SCAN, MARKER, ROBOT_POSE, TF, TF_STATIC}


def test_a_depth_camera_shares_the_colour_cameras_stamps_and_sees_the_floor_where_geometry_puts_it(
    tmp_path: Path,
) -> None:
    plain = read_bag(simulate(tmp_path / "rgb", 0.5, 2, points=False).out)
    rgbd = read_bag(simulate(tmp_path / "rgbd", 0.5, 2, points=False, depth=True,
                             drops=parse_dropout("depth@0.2:0.3")).out)
    assert [m for m in rgbd if m[0] != DEPTH] == plain  # adding the depth camera changes nothing else
    depth = [TYPESTORE.deserialize_cdr(m[3], m[1]) for m in rgbd if m[0] == DEPTH]
    camera_stamps = [stamp_seconds(m[1], m[3]) for m in plain if m[0] == CAMERA]
    depth_stamps = [stamp_seconds("sensor_msgs/msg/Image", m[3]) for m in rgbd if m[0] == DEPTH]
    assert depth_stamps == [t for t in camera_stamps if not 0.2 <= t < 0.3] and len(depth_stamps) == 12
    image = depth[0]
    assert (image.encoding, image.header.frame_id) == ("16UC1", "camera_optical_frame")
    millimetres = image.data.view("<u2").reshape(image.height, image.width)
    assert (millimetres[0] == 0).all()  # the sky above the 2 m walls: no data
    # The bottom row meets the floor 0.3 m below the lens, at a slope of 31.5 px over a 55.4 px
    # focal length, except where the object (nearer, here) stands on it.
    floor = 300 * (32 / math.tan(math.radians(30))) / 31.5
    assert abs(np.median(millimetres[-1]) - floor) < 2 and (millimetres[-1] < floor - 10).sum() > 5


def test_a_depth_dropout_needs_the_depth_camera(tmp_path: Path) -> None:
    with pytest.raises(SimError, match=r"depth camera is off \(add --depth\)"):
        simulate(tmp_path / "bag", 1.0, 0, drops=parse_dropout("depth@0.2:0.4"))


def test_existing_output_or_leftover_partial_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(SimError, match="exists already"):
        simulate(tmp_path / "taken", 0.1, 0)
    (tmp_path / "crashed.partial").mkdir()
    with pytest.raises(SimError, match="interrupted"):
        simulate(tmp_path / "crashed", 0.1, 0)
    assert not (tmp_path / "crashed").exists()


def start_hour_long_recording(out: Path) -> subprocess.Popen[str]:
    """`m2vae-sim` in a child process, returned once it has written 100 kB under OUT.partial."""
    code = "import sys; from m2vae_ros.sim.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--out", str(out), "--duration", "3600"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    bag_file = out.with_name(out.name + ".partial") / out.name / (out.name + ".mcap")
    deadline = time.monotonic() + 120  # a bound for a stuck child, not a speed requirement
    while not (bag_file.exists() and bag_file.stat().st_size > 100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not bag_file.exists():
        proc.kill()
        pytest.fail(f"the simulator never started writing: {proc.communicate()[1]}")
    return proc


def test_a_killed_run_leaves_no_bag_at_the_output(tmp_path: Path) -> None:
    out = tmp_path / "bag"
    proc = start_hour_long_recording(out)
    proc.kill()
    proc.communicate()
    assert not out.exists()
    with pytest.raises(SimError, match="interrupted"):
        simulate(out, 0.1, 0)


def test_ctrl_c_removes_the_partial_recording(tmp_path: Path) -> None:
    out = tmp_path / "bag"
    proc = start_hour_long_recording(out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and not out.with_name("bag.partial").exists()


def test_cli_writes_a_bag_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bag"
    argv = ["--out", str(out), "--duration", "0.3", "--seed", "9", "--storage", "sqlite3", "--no-points"]
    assert main([*argv, "--drop", "scan@0:0.15"]) == 0
    line = capsys.readouterr().out
    assert f"wrote {out} (sqlite3)" in line and "/scan 1," in line and "/points" not in line
    assert main(argv) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--duration", "1", "--drop", "points@0:1", "--no-points"]) == 2
    assert "--no-points" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--duration", "inf"]) == 2
    assert "duration" in capsys.readouterr().err
    for episodes in ("1", "inf", "nan"):  # inf used to end in an OverflowError traceback
        assert main(["--out", str(tmp_path / "x"), "--duration", "1", "--episode-seconds", episodes]) == 2
        assert "episode_seconds must be between 2.5 and 86400" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--duration", "1", "--look-away", "2"])
    assert "look_away" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "y"), "--duration", "1", "--image-size", "64"])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("camera", "SENSOR@T0:T1"),
        ("radar@1:2", "unknown sensor"),
        ("scan@2:1", "0 ≤ T0 < T1"),
        ("scan@1:x", "not SENSOR"),
    ],
)
def test_bad_dropouts_are_refused(text: str, error: str) -> None:
    with pytest.raises(SimError, match=error):
        parse_dropout(text)


def test_a_dropout_after_the_recording_ends_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimError, match=r"dropouts \['points@10:20'\] start after the recording ends \(5 s\)"):
        simulate(tmp_path / "bag", 5.0, 0, drops=parse_dropout("camera@4:6") + parse_dropout("points@10:20"))
    assert not (tmp_path / "bag").exists()


def test_lidar_dropout_means_scan_and_points() -> None:
    assert parse_dropout("lidar@1:2.5") == [DropWindow("scan", 1.0, 2.5), DropWindow("points", 1.0, 2.5)]
    assert parse_dropout("lidar@1:2.5", points=False) == [DropWindow("scan", 1.0, 2.5)]  # --no-points


def inverse_transform(transform: object) -> Callable[[np.ndarray], np.ndarray]:
    """parent-frame point → child-frame point for a geometry_msgs/Transform (child pose in the parent)."""
    q, t = transform.rotation, transform.translation
    x, y, z, w = q.x, q.y, q.z, q.w
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return lambda point: rotation.T @ (point - np.array([t.x, t.y, t.z]))


def test_tf_places_the_sensors_and_follows_the_robot_pose(recording) -> None:
    _, messages = recording
    (static,) = [TYPESTORE.deserialize_cdr(raw, t) for topic, t, _, raw in messages if topic == TF_STATIC]
    mounts = {tf.child_frame_id: tf for tf in static.transforms}
    assert set(mounts) == {"laser", "lidar", "camera_optical_frame"}
    assert {tf.header.frame_id for tf in static.transforms} == {"base_link"}
    heights = [mounts[f].transform.translation.z for f in ("laser", "camera_optical_frame", "lidar")]
    assert heights == [0.2, 0.3, 0.4]
    # REP 103: the optical frame looks along base_link's x, its x is base_link's −y, its y is −z.
    to_camera = inverse_transform(mounts["camera_optical_frame"].transform)
    np.testing.assert_allclose(to_camera(np.array([2.0, 0.0, 0.3])), [0.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(to_camera(np.array([0.0, -1.0, 0.3])), [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(to_camera(np.array([0.0, 0.0, -0.7])), [0.0, 1.0, 0.0], atol=1e-12)
    poses = {round(stamp_seconds(t, raw), 6): TYPESTORE.deserialize_cdr(raw, t).pose
             for topic, t, _, raw in messages if topic == ROBOT_POSE}
    transforms = [TYPESTORE.deserialize_cdr(raw, t).transforms
                  for topic, t, _, raw in messages if topic == TF]
    assert len(transforms) == len(poses) == 30
    for (tf,) in transforms:
        pose = poses[round((tf.header.stamp.sec * 10**9 + tf.header.stamp.nanosec - START_NS) / 1e9, 6)]
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "base_link")
        assert (tf.transform.translation.x, tf.transform.translation.y) == (pose.position.x, pose.position.y)
        assert tf.transform.rotation == pose.orientation


def test_recorded_images_show_the_object_where_the_markers_and_camera_info_put_it(tmp_path: Path) -> None:
    messages = read_bag(simulate(tmp_path / "bag", 20.0, 1, points=False).out)
    markers = {
        round(stamp_seconds(t, raw), 3): TYPESTORE.deserialize_cdr(raw, t)
        for topic, t, _, raw in messages
        if topic == MARKER
    }
    infos = [TYPESTORE.deserialize_cdr(raw, t) for topic, t, _, raw in messages if topic == CAMERA_INFO]
    (static,) = [TYPESTORE.deserialize_cdr(raw, t) for topic, t, _, raw in messages if topic == TF_STATIC]
    (mount,) = [tf for tf in static.transforms if tf.child_frame_id == "camera_optical_frame"]
    assert mount.header.frame_id == "base_link"
    to_camera = inverse_transform(mount.transform)
    assert len(infos) == sum(topic == CAMERA for topic, *_ in messages)
    k = infos[0].k.reshape(3, 3)
    assert infos[0].header.frame_id == "camera_optical_frame"
    assert (infos[0].width, infos[0].height) == (64, 64)
    marker_times = np.array(sorted(markers))
    sides, projected = Counter(), []
    for topic, msgtype, _, raw in messages:
        if topic != CAMERA:
            continue
        stamp = stamp_seconds(msgtype, raw)
        nearest = marker_times[np.argmin(np.abs(marker_times - stamp))]
        marker = markers[nearest]
        position = marker.pose.position
        bearing = math.atan2(position.y, position.x)
        if abs(nearest - stamp) > 0.01 or not 0.1 < abs(bearing) < 0.4:
            continue
        image = TYPESTORE.deserialize_cdr(raw, msgtype)
        assert image.header.frame_id == "camera_optical_frame"
        pixels = image.data.reshape(image.height, image.width, 3).astype(int)
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        mask = (r > g + 40) & (r > b + 40) if marker.ns.startswith("red") else (g > r + 40) & (g > b + 40)
        rows, columns = np.nonzero(mask)
        left = columns.mean() < image.width / 2
        assert left == (bearing > 0)  # positive bearing (ROS: y left) = left of the image centre
        sides[left] += 1
        if marker.type == 3 and position.x > 1.0 and columns.min() > 3 and columns.max() < 60:
            # A whole cylinder's outline is symmetric about its axis: /tf_static and K must
            # project the marker's centre onto it.
            u, v, w = k @ to_camera(np.array([position.x, position.y, position.z]))
            projected.append((u / w - columns.mean(), v / w - rows.mean()))
    assert sides[True] >= 3 and sides[False] >= 3
    # Columns: half a pixel off (cx = width/2) gives a median of 0.48; rows carry the
    # cylinder's depth (its front is nearer than its axis), hence the looser bound.
    column_offset, row_offset = np.median(projected, axis=0)
    assert len(projected) >= 20 and abs(column_offset) < 0.2 and abs(row_offset) < 0.5
