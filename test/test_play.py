"""m2vae-play: a real rosbag2 recording replayed by the real CLI to a real rclpy subscriber."""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from bagutils import overflow_mcap_record, scan, unclosed_wal_recording, write_bag
from m2vae_training.bags import Bag
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosutils import VENV_BIN, domain_id_for, ros_peer, run_to_exit, running
from sensor_msgs.msg import Image, LaserScan
from std_msgs.msg import String
from visualization_msgs.msg import InteractiveMarker, Marker, MarkerArray

from m2vae_ros.bag_salvage import salvage_mcap
from m2vae_ros.drop_window import DropWindow
from m2vae_ros.play import (
    BagPlayer,
    PlayError,
    drop_argument,
    latched_depth,
    publisher_qos,
    restamp,
    stamps_of,
)
from m2vae_ros.qos import latched_qos, sensor_qos
from m2vae_ros.salvaged_reader import SalvagedReader
from m2vae_ros.sim.recorder import simulate

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BAG_START_NS = 1_000 * 1_000_000_000  # stamps from 1970: obviously not "now"
SCAN_PERIOD_NS = 100_000_000  # 10 Hz
SCANS = 20
IMAGES = 5
# Drivers stamp at capture and the recorder logs later; each image shares its scan's stamp.
SCAN_LATENCY_NS, IMAGE_LATENCY_NS = 3_000_000, 7_000_000


def _header(stamp_ns: int) -> object:
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="laser")


def _scan(stamp_ns: int) -> object:
    return TYPESTORE.types["sensor_msgs/msg/LaserScan"](
        header=_header(stamp_ns), angle_min=-np.pi, angle_max=np.pi, angle_increment=2 * np.pi / 8,
        time_increment=0.0, scan_time=0.1, range_min=0.1, range_max=8.0,
        ranges=np.full(8, 2.0, dtype=np.float32), intensities=np.zeros(0, dtype=np.float32),
    )


def _image(stamp_ns: int) -> object:
    return TYPESTORE.types["sensor_msgs/msg/Image"](
        header=_header(stamp_ns), height=2, width=2, encoding="rgb8", is_bigendian=0, step=6,
        data=np.arange(12, dtype=np.uint8),
    )


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 scans at 10 Hz (1.9 s) and 5 images, written by rosbags as an MCAP rosbag2."""
    path = tmp_path_factory.mktemp("play") / "tiny_bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        images = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for i in range(SCANS):
            stamp = BAG_START_NS + i * SCAN_PERIOD_NS
            scan = TYPESTORE.serialize_cdr(_scan(stamp), "sensor_msgs/msg/LaserScan")
            writer.write(scans, stamp + SCAN_LATENCY_NS, scan)
            if i % 4 == 0:
                image = TYPESTORE.serialize_cdr(_image(stamp), "sensor_msgs/msg/Image")
                writer.write(images, stamp + IMAGE_LATENCY_NS, image)
    return path


def _stamp_ns(msg: object) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _play(bag: Path, domain_id: int, tmp_path: Path, *options: str) -> tuple[list, list, list[float], str]:
    """Replay to a reliable subscriber; returns scans, images, scan arrival times and the CLI output."""
    command = [str(VENV_BIN / "m2vae-play"), str(bag), "--qos", "reliable", "--wait-for-subscribers"]
    command += options
    with ros_peer(domain_id) as peer:
        scans: list[LaserScan] = []
        arrivals: list[float] = []

        def on_scan(msg: LaserScan) -> None:
            scans.append(msg)
            arrivals.append(peer.node.get_clock().now().nanoseconds / 1e9)

        peer.node.create_subscription(LaserScan, "/scan", on_scan, sensor_qos("reliable", depth=50))
        images = peer.collect(Image, "/camera/image_raw", sensor_qos("reliable", depth=50))
        log = tmp_path / "play.log"
        with running(command, domain_id, log) as player:
            peer.spin_until(lambda: player.poll() is not None, timeout_s=60)
            peer.spin_for(0.3)  # the last messages may still be in flight
        output = log.read_text()
        assert player.returncode == 0, output
    return scans, images, arrivals, output


def test_replay_keeps_count_spacing_and_restamps(
    bag: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started_ns = time.time_ns()
    scans, images, arrivals, output = _play(bag, domain_id_for(request.node.nodeid), tmp_path, "--rate", "2")
    finished_ns = time.time_ns()

    assert len(scans) == SCANS and len(images) == IMAGES, output
    # Recorded spacing 1.9 s at rate 2 → 0.95 s; a player that dumps the bag takes milliseconds.
    assert arrivals[-1] - arrivals[0] >= 0.8 * (SCANS - 1) * SCAN_PERIOD_NS / 1e9 / 2
    stamps = [_stamp_ns(m) for m in scans + images]
    assert started_ns < min(stamps) and max(stamps) < finished_ns, "stamps were not moved to now"
    # One offset for the whole pass: exact spacing (halved by --rate 2), and an image keeps its scan's stamp.
    assert set(np.diff([_stamp_ns(m) for m in scans])) == {SCAN_PERIOD_NS // 2}
    assert [_stamp_ns(m) for m in images] == [_stamp_ns(m) for m in scans[::4]]
    assert [m.header.frame_id for m in scans] == ["laser"] * SCANS  # the rest of the message is intact
    assert list(scans[0].ranges) == [2.0] * 8 and list(images[-1].data) == list(range(12))
    assert f"published {SCANS + IMAGES} messages" in output


def test_stamps_on_another_clock_get_their_publish_time(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A driver stamping from its boot clock: moving its stamps by the bag's offset would land in
    1970. Then a driver whose clock runs 0.5 s fast: at --rate 0.5 its moved stamps would lie
    1 s ahead of their publish time, where a node drops them as future stamps."""
    path = tmp_path / "boot_clock_bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        for i in range(3):
            boot_stamp = (5 + i) * SCAN_PERIOD_NS  # 0.5 s after the sensor powered up
            data = TYPESTORE.serialize_cdr(_scan(boot_stamp), "sensor_msgs/msg/LaserScan")
            writer.write(scans, BAG_START_NS + i * SCAN_PERIOD_NS, data)
        for i in range(3, 6):
            fast = BAG_START_NS + i * SCAN_PERIOD_NS + 500_000_000
            data = TYPESTORE.serialize_cdr(_scan(fast), "sensor_msgs/msg/LaserScan")
            writer.write(scans, BAG_START_NS + i * SCAN_PERIOD_NS, data)
    domain_id = domain_id_for(request.node.nodeid)
    command = [str(VENV_BIN / "m2vae-play"), str(path), "--qos", "reliable", "--wait-for-subscribers",
               "--rate", "0.5"]
    with ros_peer(domain_id) as peer:
        received: list[tuple[LaserScan, int]] = []
        peer.node.create_subscription(LaserScan, "/scan", lambda msg: received.append((msg, time.time_ns())),
                                      sensor_qos("reliable", depth=10))
        log = tmp_path / "play.log"
        started_ns = time.time_ns()
        with running(command, domain_id, log) as player:
            peer.spin_until(lambda: player.poll() is not None and len(received) == 6, timeout_s=30)
    output = log.read_text()
    assert len(received) == 6, output
    assert all(abs(_stamp_ns(m) - started_ns) < 30e9 for m, _ in received[:3])
    assert all(_stamp_ns(m) <= arrived_ns for m, arrived_ns in received[3:])
    assert "stamped at publish" in output and "/scan: 3" in output


def test_latched_topics_reach_late_subscribers_and_uninstalled_types_are_left_out(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A simulator-like bag: a latched label at the start (as /tf_static), scans for 4 s, and TF."""
    never = QosTime(sec=0, nsec=0)
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                  never, never, QosLiveliness.AUTOMATIC, never, False)
    path = tmp_path / "latched_bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        label = writer.add_connection("/label", "std_msgs/msg/String", typestore=TYPESTORE,
                                      offered_qos_profiles=[latched, latched])  # two broadcasters
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TYPESTORE)
        for i, text in enumerate(("arena", "robot")):  # two static broadcasters
            writer.write(label, BAG_START_NS + i, TYPESTORE.serialize_cdr(
                TYPESTORE.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))
        writer.write(tf, BAG_START_NS, TYPESTORE.serialize_cdr(
            TYPESTORE.types["tf2_msgs/msg/TFMessage"](transforms=[]), "tf2_msgs/msg/TFMessage"))
        for i in range(40):
            stamp = BAG_START_NS + i * SCAN_PERIOD_NS
            writer.write(scans, stamp, TYPESTORE.serialize_cdr(_scan(stamp), "sensor_msgs/msg/LaserScan"))
    domain_id = domain_id_for(request.node.nodeid)
    with ros_peer(domain_id) as peer:
        received = peer.collect(LaserScan, "/scan", sensor_qos("best_effort", depth=10))
        log = tmp_path / "play.log"
        with running([str(VENV_BIN / "m2vae-play"), str(path)], domain_id, log) as player:
            assert peer.spin_until(lambda: len(received) >= 3, timeout_s=30), log.read_text()
            labels = peer.collect(String, "/label", latched_qos(depth=2))  # joins after /label went out
            assert peer.spin_until(lambda: len(labels) == 2, timeout_s=10), log.read_text()
            peer.spin_until(lambda: player.poll() is not None, timeout_s=30)
    output = log.read_text()
    assert [m.data for m in labels] == ["arena", "robot"]
    assert "not playing /tf: message type 'tf2_msgs/msg/TFMessage' is not available" in output
    named = run_to_exit([str(VENV_BIN / "m2vae-play"), str(path), "--topics", "/tf"], domain_id)
    assert named.returncode == 2 and "/tf: message type" in named.stderr, named.stderr
    # One latching publisher that re-sent its message 5 times: a late subscriber needs the last only.
    resent = tmp_path / "resent_bag"
    with Writer(resent, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        label = writer.add_connection("/label", "std_msgs/msg/String", typestore=TYPESTORE,
                                      offered_qos_profiles=[latched])
        for i in range(5):
            writer.write(label, BAG_START_NS + i, TYPESTORE.serialize_cdr(
                TYPESTORE.types["std_msgs/msg/String"](data=str(i)), "std_msgs/msg/String"))
    for bag_path, depth in ((path, 2), (resent, 1)):
        with AnyReader([bag_path]) as reader:
            assert latched_depth([c for c in reader.connections if c.topic == "/label"]) == depth


def test_headers_nested_in_a_marker_array_move_with_the_scans(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A MarkerArray (laid out like /tf's TFMessage) stamped as the scan it annotates, a marker
    stamped 0 ("use the latest transform"), which must stay 0, and two markers stamped on a
    driver's boot clock, which get one publish time per message. A lone Marker stamped 0
    keeps it too."""
    def _marker(stamp_ns: int) -> Marker:  # rclpy's, whose CDR is what a bag stores
        marker = Marker()
        marker.header.stamp.sec, marker.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return marker

    path = tmp_path / "marker_bag"
    array_type = "visualization_msgs/msg/MarkerArray"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        markers = writer.add_connection("/markers", array_type, typestore=TYPESTORE)
        lone = writer.add_connection("/marker", "visualization_msgs/msg/Marker", typestore=TYPESTORE)
        for i in range(5):
            stamp = BAG_START_NS + i * SCAN_PERIOD_NS
            scan = TYPESTORE.serialize_cdr(_scan(stamp), "sensor_msgs/msg/LaserScan")
            writer.write(scans, stamp + SCAN_LATENCY_NS, scan)
            boot = 5_000_000_000 + i
            msg = MarkerArray(markers=[_marker(stamp), _marker(0), _marker(boot), _marker(boot)])
            writer.write(markers, stamp + IMAGE_LATENCY_NS, serialize_message(msg))
            writer.write(lone, stamp + IMAGE_LATENCY_NS, serialize_message(_marker(0)))
    domain_id = domain_id_for(request.node.nodeid)
    command = [str(VENV_BIN / "m2vae-play"), str(path), "--qos", "reliable", "--wait-for-subscribers"]
    with ros_peer(domain_id) as peer:
        received_scans = peer.collect(LaserScan, "/scan", sensor_qos("reliable", depth=10))
        arrays = peer.collect(MarkerArray, "/markers", sensor_qos("reliable", depth=10))
        lones = peer.collect(Marker, "/marker", sensor_qos("reliable", depth=10))
        log = tmp_path / "play.log"
        with running(command, domain_id, log) as player:
            peer.spin_until(lambda: player.poll() is not None and len(arrays) == len(lones) == 5,
                            timeout_s=30)
    assert len(received_scans) == len(arrays) == len(lones) == 5, log.read_text()
    assert [_stamp_ns(a.markers[0]) for a in arrays] == [_stamp_ns(m) for m in received_scans]
    assert _stamp_ns(arrays[0].markers[0]) > BAG_START_NS * 1000  # moved to now, not 1970
    assert {_stamp_ns(a.markers[1]) for a in arrays} == {_stamp_ns(m) for m in lones} == {0}
    assert all(_stamp_ns(a.markers[2]) == _stamp_ns(a.markers[3]) > BAG_START_NS * 1000 for a in arrays)
    assert "stamped at publish, their recorded stamps over 1 s from their record times: /markers: 5" in (
        log.read_text())


def test_drop_window_suppresses_a_topic(bag: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    scans, images, _, output = _play(
        bag, domain_id_for(request.node.nodeid), tmp_path,
        "--rate", "4", "--keep-stamps", "--drop", "/scan@0.5:1.0",
    )

    offsets = [(_stamp_ns(m) - BAG_START_NS) / 1e9 for m in scans]
    assert offsets == pytest.approx([i / 10 for i in range(SCANS) if not 0.5 <= i / 10 < 1.0]), output
    assert len(images) == IMAGES  # other topics play through the window
    assert "; 5 suppressed by --drop (/scan: 5)" in output


def test_a_drop_window_at_the_end_of_the_bag_survives_looping(
    bag: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Scans 0-1.0 s play, 1.0-1.9 s are dropped: the sensor must be silent ~0.9 s before each new pass."""
    domain_id = domain_id_for(request.node.nodeid)
    command = [str(VENV_BIN / "m2vae-play"), str(bag), "--qos", "reliable", "--wait-for-subscribers",
               "--topics", "/scan", "--drop", "/scan@1.0:9.0", "--loop"]
    with ros_peer(domain_id) as peer:
        arrivals: list[float] = []
        peer.node.create_subscription(LaserScan, "/scan", lambda _: arrivals.append(time.monotonic()),
                                      sensor_qos("reliable", depth=50))
        with running(command, domain_id, tmp_path / "loop.log"):
            assert peer.spin_until(lambda: len(arrivals) >= 25, timeout_s=30)  # into the second pass
    # Between the last scan played (1.0 s) and the next pass's first: 0.9 s of drop, up to the bag's end.
    assert max(np.diff(arrivals)) >= 0.85  # it was one scan period, 0.1 s


def test_sigterm_stops_a_replay_as_ctrl_c_does_with_its_summary(
    bag: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`timeout` and `kill` send SIGTERM, which used to end Python without the summary."""
    domain_id = domain_id_for(request.node.nodeid)
    command = [str(VENV_BIN / "m2vae-play"), str(bag), "--qos", "reliable", "--wait-for-subscribers",
               "--topics", "/scan", "--loop"]
    with ros_peer(domain_id) as peer:
        scans = peer.collect(LaserScan, "/scan", sensor_qos("reliable", depth=50))
        with running(command, domain_id, tmp_path / "play.log") as player:
            assert peer.spin_until(lambda: len(scans) >= 3, timeout_s=30)
            player.send_signal(signal.SIGTERM)
            player.wait(timeout=10)
    assert player.returncode == 0  # as after Ctrl-C: a stop, not a failure
    assert "m2vae-play: published " in (tmp_path / "play.log").read_text()


def test_bad_arguments_fail_clearly(bag: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    domain_id = domain_id_for(request.node.nodeid)
    bad_drop = run_to_exit([str(VENV_BIN / "m2vae-play"), str(bag), "--drop", "/scan@2:1"], domain_id)
    missing_topic = run_to_exit([str(VENV_BIN / "m2vae-play"), str(bag), "--topics", "/nope"], domain_id)
    missing_bag = run_to_exit([str(VENV_BIN / "m2vae-play"), str(tmp_path / "absent")], domain_id)
    (tmp_path / "no_bag").mkdir()
    not_a_bag = run_to_exit([str(VENV_BIN / "m2vae-play"), str(tmp_path / "no_bag")], domain_id)
    (tmp_path / "text.mcap").write_text("not a recording")
    not_mcap = run_to_exit([str(VENV_BIN / "m2vae-play"), str(tmp_path / "text.mcap")], domain_id)
    unplayed_drop = run_to_exit([str(VENV_BIN / "m2vae-play"), str(bag), "--topics", "/scan",
                                 "--drop", "/camera/image_raw@0:1"], domain_id)
    empty = tmp_path / "empty_bag"
    with Writer(empty, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)  # never written
    empty_loop = run_to_exit([str(VENV_BIN / "m2vae-play"), str(empty), "--loop"],
                             domain_id, timeout_s=30)  # it used to spin a core forever

    assert bad_drop.returncode == 2 and "TOPIC@T0:T1" in bad_drop.stderr
    assert missing_topic.returncode == 2 and "'/nope'" in missing_topic.stderr
    # As m2vae-dataset says it, not rosbags' "The following paths are missing: [PosixPath(...)]".
    assert missing_bag.returncode == 2 and "absent: no such file or directory" in missing_bag.stderr
    # Not rosbags' "Expected metadata file '<the directory>' does not exist".
    assert not_a_bag.returncode == 2 and "no_bag: no metadata.yaml in it" in not_a_bag.stderr
    assert not_mcap.returncode == 2 and "text.mcap: " in not_mcap.stderr, not_mcap.stderr  # the file is named
    assert unplayed_drop.returncode == 2, unplayed_drop.stderr
    assert "['/camera/image_raw']" in unplayed_drop.stderr and "['/scan']" in unplayed_drop.stderr
    assert empty_loop.returncode == 2 and "hold no messages" in empty_loop.stderr, empty_loop.stderr
    single = tmp_path / "single_bag"
    with Writer(single, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        data = TYPESTORE.serialize_cdr(_scan(BAG_START_NS), "sensor_msgs/msg/LaserScan")
        writer.write(scans, BAG_START_NS, data)
    single_loop = run_to_exit([str(VENV_BIN / "m2vae-play"), str(single), "--loop"], domain_id, timeout_s=30)
    assert single_loop.returncode == 2 and "under 1 ms" in single_loop.stderr, single_loop.stderr
    runs = (bad_drop, missing_topic, missing_bag, not_a_bag, not_mcap, unplayed_drop, empty_loop, single_loop)
    assert not any("Traceback" in run.stderr for run in runs)


def test_a_damaged_recording_stops_the_replay_with_one_line(
    bag: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    damaged = tmp_path / "damaged_bag"
    shutil.copytree(bag, damaged)
    sixth = TYPESTORE.serialize_cdr(_scan(BAG_START_NS + 5 * SCAN_PERIOD_NS), "sensor_msgs/msg/LaserScan")
    overflow_mcap_record(next(damaged.glob("*.mcap")), sixth)  # its chunk, the only one, is lost whole
    result = run_to_exit([str(VENV_BIN / "m2vae-play"), str(damaged)], domain_id_for(request.node.nodeid))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "the recording is damaged after 0 messages of this pass (OverflowError" in result.stderr


def test_a_recording_cut_short_replays_what_came_before_the_cut(
    bag: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A recorder that lost power: the MCAP ends mid-record, without footer or summary, which
    # rosbags refuses; and a bag directory whose metadata.yaml was never written.
    cut = tmp_path / "cut_bag"
    shutil.copytree(bag, cut)
    storage = next(cut.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size * 2 // 5])  # mid-chunk
    _, messages = salvage_mcap(storage)
    before_cut = [topic for topic, *_ in messages]
    no_metadata = tmp_path / "no_metadata_bag"
    shutil.copytree(bag, no_metadata)
    (no_metadata / "metadata.yaml").unlink()
    domain_id = domain_id_for(request.node.nodeid)

    scans, images, _, output = _play(cut, domain_id, tmp_path, "--rate", "4")
    assert 0 < before_cut.count("/scan") < SCANS, before_cut
    assert (len(scans), len(images)) == (before_cut.count("/scan"), before_cut.count("/camera/image_raw"))
    assert (f"m2vae-play: note: {cut}: rosbags cannot read it (AnyReaderError: File end magic is invalid.); "
            f"playing the {len(before_cut)} messages before the damage (") in output
    assert list(scans[-1].ranges) == [2.0] * 8  # whole messages only
    scans, images, _, output = _play(no_metadata, domain_id, tmp_path, "--rate", "4")
    assert (len(scans), len(images)) == (SCANS, IMAGES)
    assert f"{no_metadata}: no metadata.yaml in it; playing the {SCANS + IMAGES} messages of its" in output


def test_an_sqlite_recording_cut_short_or_left_unclosed_replays_as_m2vae_dataset_reads_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    stamps = [BAG_START_NS + i * SCAN_PERIOD_NS for i in range(SCANS)]
    records = [("/scan", scan(np.full(360, 2.0, np.float32), stamp), stamp) for stamp in stamps]
    # rosbags opens a .db3 cut short, and its SQLite fills the lost tail with zeros: a half-blank
    # scan would go out as a whole one. The dataset build reads it up to the cut instead.
    cut = write_bag(tmp_path / "cut_bag", records, "sqlite3")
    storage = next(cut.glob("*.db3"))
    storage.write_bytes(storage.read_bytes()[:-1000])
    with Bag(cut) as opened:
        as_the_dataset_reads_it = sum(1 for _ in opened.messages({"/scan"}))
    domain_id = domain_id_for(request.node.nodeid)

    scans, _, _, output = _play(cut, domain_id, tmp_path, "--rate", "4")
    assert 0 < len(scans) == as_the_dataset_reads_it < SCANS, output
    assert all(np.all(np.asarray(m.ranges) == 2.0) for m in scans)
    assert "cut_bag.db3 is shorter than its header declares: the recording was cut" in output
    # A recorder that died in WAL mode: the newest messages are only in the -wal file.
    unclosed, writer = unclosed_wal_recording(tmp_path / "unclosed_bag", records)
    scans, _, _, output = _play(unclosed, domain_id, tmp_path, "--rate", "8")
    writer.close()
    assert len(scans) == 2 * SCANS, output
    assert "write-ahead log was replayed on a copy" in output and "no metadata.yaml in it" in output


def test_waiting_for_subscribers_names_a_qos_mismatch(bag: Path, request: pytest.FixtureRequest) -> None:
    """A reliable subscriber never matches a best-effort player; "no subscriber appeared" would send
    the user looking for a node that is running."""
    args = argparse.Namespace(rate=1.0, keep_stamps=False, drop=[], loop=False, qos="best_effort",
                              topics=["/scan", "/camera/image_raw"])
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, AnyReader([bag]) as reader:
        peer.node.create_subscription(LaserScan, "/scan", lambda _: None, sensor_qos("reliable", depth=5))
        player = BagPlayer(peer.node, reader, args)
        with pytest.raises(PlayError) as raised:
            player.wait_for_subscribers(timeout_s=1.0)
    message = str(raised.value)
    assert "no subscriber appeared within 1 s on ['/camera/image_raw']" in message, message
    assert "['/scan'] have subscribers" in message and "--qos reliable" in message, message


def test_drop_argument_parsing() -> None:
    window = drop_argument("/camera/image_raw@1.5:3")
    assert window == DropWindow("/camera/image_raw", 1.5, 3.0)
    assert window.covers("/camera/image_raw", 1.5) and not window.covers("/camera/image_raw", 3.0)
    assert not window.covers("/scan", 2.0)
    for bad in ("/scan", "/scan@1", "/scan@x:1", "/scan@-1:1", "/scan@2:1"):
        with pytest.raises(argparse.ArgumentTypeError, match="TOPIC@T0:T1"):
            drop_argument(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="must be absolute"):
        drop_argument("scan@0:1")


def test_where_each_type_keeps_its_stamps() -> None:
    """Header first and nowhere else: the bytes; a header deeper (a marker's texture): the objects."""
    assert stamps_of(LaserScan) == "leading" and stamps_of(Image) == "leading"
    assert stamps_of(Marker) == stamps_of(MarkerArray) == stamps_of(InteractiveMarker) == "nested"
    assert stamps_of(String) == "none"


def test_restamp_rewrites_only_the_stamp() -> None:
    raw = bytes(TYPESTORE.serialize_cdr(_scan(BAG_START_NS), "sensor_msgs/msg/LaserScan"))
    new = restamp(raw, 1_700_000_000_123_456_789)
    scan = TYPESTORE.deserialize_cdr(new, "sensor_msgs/msg/LaserScan")
    assert (scan.header.stamp.sec, scan.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert scan.header.frame_id == "laser" and len(new) == len(raw)
    assert new[12:] == raw[12:]
    with pytest.raises(PlayError, match="not a CDR message"):
        restamp(b"\x07\x07" + raw[2:], 0)


def test_publishers_keep_the_recorded_reliability_or_choose_by_message_type(tmp_path: Path) -> None:
    """tf2 and rviz subscribe reliable: a best-effort /tf or ground truth would reach none of them."""
    simulated = simulate(tmp_path / "sim", 1.0, 3, points=False).out
    bare = tmp_path / "bare"  # written by a tool that records no offered profiles
    with Writer(bare, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        scans = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=TYPESTORE)
        scan = TYPESTORE.serialize_cdr(_scan(BAG_START_NS), "sensor_msgs/msg/LaserScan")
        writer.write(scans, BAG_START_NS, scan)
        labels = writer.add_connection("/label", "std_msgs/msg/String", typestore=TYPESTORE)
        writer.write(labels, BAG_START_NS, TYPESTORE.serialize_cdr(
            TYPESTORE.types["std_msgs/msg/String"](data="box"), "std_msgs/msg/String"))
    against_type = tmp_path / "against_type"  # recorded reliabilities the type rule would not pick
    with Writer(against_type, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msgtype, reliability in (
            ("/scan", "sensor_msgs/msg/LaserScan", QosReliability.RELIABLE),
            ("/label", "std_msgs/msg/String", QosReliability.BEST_EFFORT),
            ("/unsaid", "std_msgs/msg/String", QosReliability.SYSTEM_DEFAULT),
            ("/unsaid_scan", "sensor_msgs/msg/LaserScan", QosReliability.BEST_AVAILABLE),
        ):
            never = QosTime(sec=0, nsec=0)
            offered = [Qos(QosHistory.KEEP_LAST, 5, reliability, QosDurability.VOLATILE, never, never,
                           QosLiveliness.AUTOMATIC, never, False)]
            writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=offered)
    profiles = {}
    for path, requested in ((simulated, None), (simulated, "reliable"), (bare, None), (against_type, None)):
        with AnyReader([path]) as reader:
            for topic in {c.topic for c in reader.connections}:
                qos = publisher_qos([c for c in reader.connections if c.topic == topic], requested)
                profiles[path.name, requested, topic] = (qos.reliability.name, qos.durability.name)
    assert profiles["sim", None, "/scan"] == profiles["sim", None, "/camera/image_raw"] == (
        "BEST_EFFORT", "VOLATILE")
    for topic in ("/tf", "/ground_truth/object", "/ground_truth/robot_pose"):
        assert profiles["sim", None, topic] == ("RELIABLE", "VOLATILE"), topic
    assert profiles["sim", None, "/tf_static"] == profiles["sim", "reliable", "/tf_static"] == (
        "RELIABLE", "TRANSIENT_LOCAL")
    assert profiles["sim", "reliable", "/scan"] == ("RELIABLE", "VOLATILE")
    assert profiles["bare", None, "/scan"] == ("BEST_EFFORT", "VOLATILE")
    assert profiles["bare", None, "/label"] == ("RELIABLE", "VOLATILE")
    assert profiles["against_type", None, "/scan"] == ("RELIABLE", "VOLATILE")
    assert profiles["against_type", None, "/label"] == ("BEST_EFFORT", "VOLATILE")
    assert profiles["against_type", None, "/unsaid"] == ("RELIABLE", "VOLATILE")  # the type rule
    assert profiles["against_type", None, "/unsaid_scan"] == ("BEST_EFFORT", "VOLATILE")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_salvaged_recording_keeps_its_recorded_qos(tmp_path: Path, storage: str) -> None:
    """/tf_static stays latched, sensors best effort, as in a replay of the whole recording."""
    bag = simulate(tmp_path / "bag", 1.0, 3, storage=storage, points=False).out
    storage_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    storage_file.write_bytes(storage_file.read_bytes()[: storage_file.stat().st_size * 3 // 4])
    (bag / "metadata.yaml").unlink()
    connections = {c.topic: [c] for c in SalvagedReader(bag, bag).connections}
    assert publisher_qos(connections["/tf_static"], None) == latched_qos(1)
    assert publisher_qos(connections["/scan"], None).reliability == ReliabilityPolicy.BEST_EFFORT
    assert publisher_qos(connections["/ground_truth/object"], None).reliability == ReliabilityPolicy.RELIABLE
