"""The fusion node as users run it: `m2vae-fusion` in its own process, talked to over real DDS.

The model is tiny and untrained: these tests check the plumbing (which subset is
encoded, stamps, topics, error handling), not the quality of the latent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
from bagutils import cloud
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import ReliabilityPolicy
from rclpy.time import Time
from rclpy.timer import Timer
from rosgraph_msgs.msg import Clock as ClockMessage
from rosutils import VENV_BIN, RosPeer, domain_id_for, ros_peer, run_to_exit, running
from sensor_msgs.msg import CompressedImage, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import String

from m2vae_ros.artifact import load_model, save_model
from m2vae_ros.codec import Decoded
from m2vae_ros.codec.pointcloud import ring_elevations
from m2vae_ros.devices import resolve_device
from m2vae_ros.fusion_diagnostics import (
    CAVEAT_HOLD_S,
    InferenceStats,
    LatencySummary,
    RecentCaveats,
    inference_status,
    modality_status,
)
from m2vae_ros.fusion_node import FusionNode
from m2vae_ros.fusion_params import trained_frames, trained_timeouts, unknown_parameters
from m2vae_ros.inference import LatentFusion, Posterior
from m2vae_ros.latent_msg import latent_image, read_latent
from m2vae_ros.liveness import ModalityLiveness, Pacer
from m2vae_ros.model import M2VAE
from m2vae_ros.qos import latched_qos, sensor_qos
from m2vae_ros.reach import REACH_WINDOW, ReturnsReach
from m2vae_ros.ros_types import MessageTypeError, message_class, modality_message_type, transported_type
from m2vae_ros.spec import (
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
)

REPO = Path(__file__).resolve().parents[1]
LATENT_DIM = 8
BEAMS = 90
TIMEOUT_S = 0.4
CAMERA_PERIOD_S = 0.05
LIDAR_PERIOD_S = 0.1
NODE = "/m2vae_fusion"
FRAME = "fusion_test_frame"
CAMERA_FRAME = "camera_link"
LIDAR_FRAME = "laser"
# How long a started node may take to report something; generous for a loaded CI machine.
STARTUP_WAIT_S = 30.0
# Scheduling slack on top of the liveness rule (timeout + one sensor period) on a busy machine.
SLACK_S = 1.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained camera (32×32 RGB) + 90-beam scan + 4×32 range image model, latent 8."""
    spec = ModelSpec(
        modalities=(
            ModalitySpec("camera", "image", ImagePreprocess(width=32, height=32), topic="/camera/image_raw"),
            ModalitySpec("lidar", "scan", ScanPreprocess(beams=BEAMS), topic="/scan"),
            ModalitySpec("points", "range_image", RangeImagePreprocess(rings=4, bins=32), topic="/points"),
        ),
        latent_dim=LATENT_DIM, feature_dim=16, head_hidden=16,
    )
    torch.manual_seed(0)
    return save_model(M2VAE(spec), tmp_path_factory.mktemp("fusion") / "model")


def _now_ns(peer: RosPeer) -> int:
    return peer.node.get_clock().now().nanoseconds


def _publish_every(peer: RosPeer, msg_type: type, topic: str, period_s: float,
                   make: Callable[[], object]) -> tuple[Publisher, Timer]:
    """A best-effort publisher of `make()` on `topic` every `period_s`, as a sensor driver publishes."""
    publisher = peer.node.create_publisher(msg_type, topic, sensor_qos("best_effort"))
    return publisher, peer.node.create_timer(period_s, lambda: publisher.publish(make()))


def _camera(stamp_ns: int, encoding: str = "rgb8", data: bytes | None = None, pixel_bytes: int = 3) -> Image:
    """A 48×40 frame (the node resizes it to 32×32)."""
    msg = Image(height=40, width=48, encoding=encoding, is_bigendian=0, step=48 * pixel_bytes)
    msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
    msg.header.frame_id = CAMERA_FRAME
    msg.data = data if data is not None else np.full(40 * 48 * 3, 128, np.uint8).tobytes()
    return msg


def _scan(stamp_ns: int) -> LaserScan:
    msg = LaserScan(angle_min=-np.pi, angle_max=np.pi, angle_increment=2 * np.pi / BEAMS,
                    range_min=0.1, range_max=8.0)
    msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
    msg.header.frame_id = LIDAR_FRAME
    msg.ranges = np.full(BEAMS, 3.0, np.float32).tolist()
    return msg


def _cloud_without_z(stamp_ns: int) -> PointCloud2:
    fields = [PointField(name=axis, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, axis in enumerate("xy")]
    msg = PointCloud2(height=1, width=1, point_step=8, row_step=8, is_dense=True, fields=fields,
                      data=bytes(8))
    msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
    return msg


class Sensors:
    """Camera (20 Hz) and LiDAR (10 Hz) publishers in the test process that can be switched off.

    `lidar_lead_ns` stamps scans ahead of the clock, so that whenever the LiDAR is alive
    its stamp is the newest input and the latent stamp tells which inputs were used.
    """

    def __init__(self, peer: RosPeer, reliability: str = "best_effort", lidar_lead_ns: int = 0) -> None:
        self.peer = peer
        self.camera_on = True
        self.lidar_on = True
        self.lidar_lead_ns = lidar_lead_ns
        self.camera_stamps: set[int] = set()
        self.lidar_stamps: set[int] = set()
        self.camera_pub = peer.node.create_publisher(Image, "/camera/image_raw", sensor_qos(reliability))
        self.lidar_pub = peer.node.create_publisher(LaserScan, "/scan", sensor_qos(reliability))
        self.points_pub = peer.node.create_publisher(PointCloud2, "/points", sensor_qos(reliability))
        peer.node.create_timer(CAMERA_PERIOD_S, self._publish_camera)
        peer.node.create_timer(LIDAR_PERIOD_S, self._publish_lidar)

    def _publish_camera(self) -> None:
        if self.camera_on:
            stamp = _now_ns(self.peer)
            self.camera_stamps.add(stamp)
            self.camera_pub.publish(_camera(stamp))

    def _publish_lidar(self) -> None:
        if self.lidar_on:
            stamp = _now_ns(self.peer) + self.lidar_lead_ns
            self.lidar_stamps.add(stamp)
            self.lidar_pub.publish(_scan(stamp))


@contextmanager
def fusion_node(
    model_dir: Path, tmp_path: Path, domain_id: int, *params: str, remaps: tuple[str, ...] = ()
) -> Iterator[None]:
    """`m2vae-fusion` with the shipped params file, this test's model, extra `-p` params and `-r` remaps."""
    timeouts = [f"modalities.{name}.timeout_s:={TIMEOUT_S}" for name in ("camera", "lidar", "points")]
    params = (*timeouts, *params)
    command = [
        str(VENV_BIN / "m2vae-fusion"), "--ros-args",
        "--params-file", str(REPO / "config" / "fusion.yaml"),
        "-p", f"model_path:={model_dir}", "-p", f"frame_id:={FRAME}",
        *(arg for param in params for arg in ("-p", param)),
        *(arg for remap in remaps for arg in ("-r", remap)),
    ]
    log = tmp_path / "node.log"
    with running(command, domain_id, log) as process:
        yield
        assert process.poll() is None, f"the node died:\n{log.read_text()}"


def _stamp_ns(msg: object) -> int:
    return Time.from_msg(msg.header.stamp).nanoseconds


def _active(messages: list[String]) -> str | None:
    return messages[-1].data if messages else None


def test_subset_follows_lidar_dropout_and_latent_keeps_flowing(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    domain_id = domain_id_for(request.node.nodeid)
    with fusion_node(model_dir, tmp_path, domain_id), ros_peer(domain_id) as peer:
        active = peer.collect(String, f"{NODE}/active_modalities", latched_qos())
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        sensors = Sensors(peer)
        sensors.lidar_on = False

        # Camera-only start: the camera encoder alone produces latents.
        assert peer.spin_until(lambda: _active(active) == "camera" and len(latents) >= 3, STARTUP_WAIT_S)
        mean, std = read_latent(latents[-1])
        assert mean.shape == std.shape == (LATENT_DIM,) and np.all(std > 0) and np.all(np.isfinite(mean))

        sensors.lidar_on = True
        assert peer.spin_until(lambda: _active(active) == "camera+lidar", LIDAR_PERIOD_S + SLACK_S)

        sensors.lidar_on = False
        stopped, latents_before = time.monotonic(), len(latents)
        assert peer.spin_until(lambda: _active(active) == "camera", TIMEOUT_S + LIDAR_PERIOD_S + SLACK_S)
        assert time.monotonic() - stopped >= TIMEOUT_S - LIDAR_PERIOD_S, "declared dead before its timeout"
        peer.spin_for(0.3)
        assert len(latents) - latents_before >= 3, "the latent stopped while the LiDAR was dead"

        sensors.lidar_on = True
        assert peer.spin_until(lambda: _active(active) == "camera+lidar", LIDAR_PERIOD_S + SLACK_S)
        assert not any("points" in m.data.split("+") for m in active)  # never sent, never alive


def test_latent_header_and_dead_lidar_reconstruction(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    domain_id = domain_id_for(request.node.nodeid)
    with (fusion_node(model_dir, tmp_path, domain_id, "modalities.points.frame_id:=velodyne"),
          ros_peer(domain_id) as peer):
        active = peer.collect(String, f"{NODE}/active_modalities", latched_qos())
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        scans = peer.collect(LaserScan, f"{NODE}/reconstruction/lidar", sensor_qos("reliable", depth=50))
        images = peer.collect(Image, f"{NODE}/reconstruction/camera", sensor_qos("reliable", depth=50))
        clouds = peer.collect(PointCloud2, f"{NODE}/reconstruction/points", sensor_qos("reliable", depth=50))
        sensors = Sensors(peer, lidar_lead_ns=300_000_000)

        assert peer.spin_until(lambda: _active(active) == "camera+lidar", STARTUP_WAIT_S)
        peer.spin_for(0.2)  # let camera-only latents computed before the switch arrive
        latents.clear()
        assert peer.spin_until(lambda: len(latents) >= 5, SLACK_S + 1)
        # Both alive: the LiDAR's (lead) stamp is the newest input, so it stamps the latent.
        assert {_stamp_ns(m) for m in latents} <= sensors.lidar_stamps
        assert {m.header.frame_id for m in latents} == {FRAME}

        sensors.lidar_on = False
        assert peer.spin_until(lambda: _active(active) == "camera", TIMEOUT_S + LIDAR_PERIOD_S + SLACK_S)
        peer.spin_for(0.2)  # let outputs computed before the switch arrive
        for outputs in (latents, scans, images, clouds):
            outputs.clear()
        assert peer.spin_until(lambda: min(map(len, (latents, scans, images, clouds))) >= 3, SLACK_S + 1)
        assert {_stamp_ns(m) for m in latents} <= sensors.camera_stamps

        # The dead LiDAR is imputed from the camera: a full scan with the spec's beams, the latent's
        # stamp and the frame its last scan named; the never-heard points take their modality's frame
        # (by default the training recordings', model.yaml provenance.topics.points.frame_id).
        assert {len(m.ranges) for m in scans} == {BEAMS}
        assert {_stamp_ns(m) for m in scans} <= sensors.camera_stamps
        assert {m.header.frame_id for m in scans} == {LIDAR_FRAME}
        assert images and (images[-1].width, images[-1].height) == (32, 32)
        assert {m.header.frame_id for m in images} == {CAMERA_FRAME}
        assert clouds and clouds[-1].width * clouds[-1].height > 0
        assert {m.header.frame_id for m in clouds} == {"velodyne"}


def _latest_status(arrays: list[DiagnosticArray], modality: str) -> DiagnosticStatus | None:
    """The modality's status in the newest diagnostics array; None before one arrived."""
    statuses = [s for array in arrays[-1:] for s in array.status if s.name == f"{NODE}: {modality}"]
    return statuses[0] if statuses else None


def _latest_message(arrays: list[DiagnosticArray], modality: str) -> str:
    return status.message if (status := _latest_status(arrays, modality)) else ""


def _diagnostic_values(arrays: list[DiagnosticArray], modality: str) -> dict[str, str]:
    for array in reversed(arrays):
        for status in array.status:
            if status.name == f"{NODE}: {modality}":
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_bad_messages_are_counted_and_survived(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every kind of bad input, in timer-driven mode (rate_hz) with reliable QoS."""
    domain_id = domain_id_for(request.node.nodeid)
    expected = {
        "camera": {"unsupported_encoding", "short_buffer", "size_mismatch"},
        "lidar": {"future_stamp", "negative_stamp", "non_finite", "zero_stamp"},
        "points": {"missing_field"},
    }
    with fusion_node(model_dir, tmp_path, domain_id, "rate_hz:=15.0", "qos.reliability:=reliable"), \
            ros_peer(domain_id) as peer:
        active = peer.collect(String, f"{NODE}/active_modalities", latched_qos())
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        sensors = Sensors(peer, reliability="reliable")
        assert peer.spin_until(lambda: _active(active) == "camera+lidar", STARTUP_WAIT_S)
        # qos.reliability reaches the subscriptions (DDS discovery carries reliability, not depth).
        for topic in ("/camera/image_raw", "/scan", "/points"):
            (subscription,) = peer.node.get_subscriptions_info_by_topic(topic)
            assert subscription.qos_profile.reliability == ReliabilityPolicy.RELIABLE, topic

        def counted() -> bool:
            return all(
                {f"invalid.{reason}" for reason in reasons} <= set(_diagnostic_values(diagnostics, name))
                for name, reasons in expected.items()
            )

        deadline = time.monotonic() + 20
        while not counted() and time.monotonic() < deadline:
            # A depth-1 subscriber may overwrite one of these with a good frame: repeat until counted.
            now = _now_ns(peer)
            for bad in (
                _camera(now, encoding="yuv_unknown"),
                _camera(now, data=b"\x00" * 100),
                _camera(now, pixel_bytes=2),  # step 96 < 48 × 3 bytes: rows overlap
            ):
                sensors.camera_pub.publish(bad)
                peer.spin_for(0.03)
            sensors.lidar_pub.publish(_scan(now + 10_000_000_000))
            peer.spin_for(0.03)
            nan_limit = _scan(now)
            nan_limit.range_max = float("nan")  # every comparison with it fails: no beam would count
            sensors.lidar_pub.publish(nan_limit)
            peer.spin_for(0.03)
            before_1970 = _scan(0)
            before_1970.header.stamp.sec = -5  # a driver without a clock; rclpy's Time refuses to build it
            sensors.lidar_pub.publish(before_1970)
            peer.spin_for(0.03)  # back to back, the depth-1 reader would keep only the second
            sensors.lidar_pub.publish(_scan(0))  # a driver that never set the stamp
            sensors.points_pub.publish(_cloud_without_z(now))
            peer.spin_for(0.2)
        assert counted(), f"diagnostics never counted all bad inputs: {diagnostics[-1:] }"

        latents_before = len(latents)
        assert peer.spin_until(lambda: len(latents) >= latents_before + 5, SLACK_S + 1), "node went silent"
        assert int(_diagnostic_values(diagnostics, "camera")["invalid_count"]) >= 3
        assert _diagnostic_values(diagnostics, "points")["alive"] == "False"  # invalid input never revives it
        assert _active(active) == "camera+lidar"
    # Warnings are throttled per sensor: the camera's stream of bad frames does not hide the others.
    log = (tmp_path / "node.log").read_text()
    for name in expected:
        assert f"[{NODE.strip('/')}.{name}]: ignoring message" in log, name


def test_triggers_faster_than_inference_are_dropped_not_queued(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A 1 kHz inference timer outpaces the model: superseded triggers are counted, none wait.

    The LiDAR's topic is remapped (the camera alone keeps inference going): diagnostics must
    name the topic the node subscribes to. Ctrl-C lands mid-publish here more often than not.
    """
    domain_id = domain_id_for(request.node.nodeid)
    with fusion_node(model_dir, tmp_path, domain_id, "rate_hz:=1000.0", remaps=("/scan:=/front/scan",)), \
            ros_peer(domain_id) as peer:
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        Sensors(peer)

        def inference() -> dict[str, str]:
            return _diagnostic_values(diagnostics, "inference")

        def dropped_and_inferred() -> bool:
            # The first inference is slow (warm-up): triggers may be dropped before any completes.
            values = inference()
            return int(values.get("dropped_triggers", 0)) > 0 and int(values.get("inferences", 0)) > 0

        assert peer.spin_until(dropped_and_inferred, STARTUP_WAIT_S)
        assert latents
        assert _diagnostic_values(diagnostics, "lidar")["topic"] == "/front/scan"
        assert _diagnostic_values(diagnostics, "camera")["topic"] == "/camera/image_raw"
    log = (tmp_path / "node.log").read_text()
    assert "inference failed" not in log, log  # the shutdown invalidated the context, nothing failed


def _broken_copy(model_dir: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "broken_model"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    return broken


def test_a_compressed_camera_by_its_topic_name_and_a_topic_of_another_type_in_diagnostics(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The model was trained on Image; the robot's camera sends JPEG on image_transport's
    .../compressed, which is all the node is told, and the LiDAR's topic carries Strings. The
    LiDAR and points topics are swapped by remapping: the graph query must not remap the
    already-remapped name a second time."""
    domain_id = domain_id_for(request.node.nodeid)
    params = ("modalities.camera.topic:=/camera/image_raw/compressed",)
    swapped = ("/scan:=/points", "/points:=/scan")
    with fusion_node(model_dir, tmp_path, domain_id, *params, remaps=swapped), ros_peer(domain_id) as peer:
        active = peer.collect(String, f"{NODE}/active_modalities", latched_qos())
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        qos = sensor_qos("best_effort")
        jpegs = peer.node.create_publisher(CompressedImage, "/camera/image_raw/compressed", qos)
        strings = peer.node.create_publisher(String, "/points", qos)
        _, jpeg = cv2.imencode(".jpg", np.full((40, 48, 3), 128, np.uint8))

        def publish() -> None:
            msg = CompressedImage(format="jpeg", data=jpeg.tobytes())
            msg.header.stamp = Time(nanoseconds=_now_ns(peer)).to_msg()
            jpegs.publish(msg)
            strings.publish(String(data="not a scan"))

        peer.node.create_timer(CAMERA_PERIOD_S, publish)

        assert peer.spin_until(lambda: _active(active) == "camera"
                               and "send" in _latest_message(diagnostics, "lidar"), STARTUP_WAIT_S)
    assert _latest_message(diagnostics, "lidar") == (
        "the publishers of /points send std_msgs/msg/String, not sensor_msgs/msg/LaserScan: set parameter "
        "'modalities.lidar.msg_type'")


def test_startup_errors_exit_nonzero_with_one_clear_line(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    domain_id = domain_id_for(request.node.nodeid)
    params_file = tmp_path / "radar.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    modalities:\n      radar:\n        topic: /radar\n")
    fusion = str(VENV_BIN / "m2vae-fusion")
    cases = {
        "no such model directory": [fusion, "--ros-args", "-p", f"model_path:={tmp_path / 'absent'}"],
        "does not match model.yaml": [
            fusion, "--ros-args", "-p", f"model_path:={_broken_copy(model_dir, tmp_path)}"],
        "modalities.radar.topic": [
            fusion, "--ros-args", "-p", f"model_path:={model_dir}", "--params-file", str(params_file)],
        "'device' is 'tpu'": [fusion, "--ros-args", "-p", f"model_path:={model_dir}", "-p", "device:=tpu"],
        "'rate_hz' is 1e-12": [
            fusion, "--ros-args", "-p", f"model_path:={model_dir}", "-p", "rate_hz:=1e-12"],
        "'use_sim_time' to '1' of type 'INTEGER'": [
            fusion, "--ros-args", "-p", f"model_path:={model_dir}", "-p", "use_sim_time:=1"],
        f"{Path.home() / 'absent_model'}: no such model directory": [  # ~ expanded: no shell after :=
            fusion, "--ros-args", "-p", "model_path:=~/absent_model"],
        # rclpy raised RCLError "incompatible type" from create_subscription.
        "modalities 'camera' and 'lidar' both read /camera/image_raw, as sensor_msgs/msg/Image and "
        "sensor_msgs/msg/LaserScan": [
            fusion, "--ros-args", "-p", f"model_path:={model_dir}",
            "-p", "modalities.lidar.topic:=/camera/image_raw"],
    }
    vector = ModelSpec.from_dict(
        {"modalities": [{"name": "imu", "kind": "vector", "preprocess": {"dim": 6}}], "latent_dim": 4})
    vector_model = save_model(M2VAE(vector), tmp_path / "vector_model")
    cases["no ROS message decodes into kind 'vector'"] = [  # not first "has no topic", then "msg_type"
        fusion, "--ros-args", "-p", f"model_path:={vector_model}"]
    for expected, command in cases.items():
        result = run_to_exit(command, domain_id)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0, f"more than one line:\n{result.stderr}"
    usage = run_to_exit([fusion, "--help"], domain_id)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: m2vae-fusion --ros-args -p model_path:=")
    # rcl itself logs a line before the one of m2vae-fusion.
    unreadable = run_to_exit(
        [fusion, "--ros-args", "--params-file", str(tmp_path / "absent.yaml")], domain_id)
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr, unreadable.stderr
    assert "m2vae-fusion: error: " in unreadable.stderr and "absent.yaml" in unreadable.stderr


# --- the node's building blocks, in-process ------------------------------------------------


def test_liveness_follows_valid_messages_only() -> None:
    second = 1_000_000_000
    liveness = ModalityLiveness(timeout_ns=second // 2)
    assert not liveness.alive(0)
    for i in range(11):  # 10 Hz for one second
        liveness.record_valid(i * second // 10)
    assert liveness.alive(second + second // 4) and not liveness.alive(second + second // 2)
    assert liveness.rate_hz(second) == pytest.approx(10.0)
    # Dead at 1.6 s with its arrivals still in the 2 s window: diagnostics show no rate.
    status = modality_status("/n", "lidar", "/scan", liveness, 16 * second // 10)
    values = {kv.key: kv.value for kv in status.values}
    assert (values["alive"], values["rate_hz"]) == ("False", "0.00")
    assert liveness.rate_hz(16 * second // 10) == pytest.approx(10.0)  # the Pacer's estimate stays
    liveness.record_valid(2 * second)
    liveness.record_invalid("short_buffer")
    liveness.record_invalid("short_buffer")
    assert liveness.alive(2 * second + second // 4)
    assert not liveness.alive(2 * second + second // 2 + 1), "invalid messages must not refresh liveness"
    assert (liveness.invalid_count, liveness.invalid_by_reason["short_buffer"]) == (2, 2)
    assert liveness.rate_hz(10 * second) == 0.0  # old arrivals leave the window


SECOND = 1_000_000_000


def test_a_silent_sensors_status_names_what_it_sent_instead() -> None:
    liveness = ModalityLiveness(timeout_ns=SECOND // 2)
    for _ in range(3):
        liveness.record_invalid("zero_stamp")
    status = modality_status("/n", "camera", "/image", liveness, SECOND)
    assert status.message == "no valid message yet; 3 messages rejected, last reason: zero_stamp"
    liveness.record_valid(2 * SECOND)
    liveness.record_invalid("size_mismatch")
    status = modality_status("/n", "camera", "/image", liveness, 3 * SECOND)
    assert status.message == "stale for 1.0 s; 1 message rejected since the last valid one, last reason: " \
        "size_mismatch"
    liveness.record_valid(4 * SECOND)  # recovered: the lifetime counts stay, the blame goes
    liveness.record_valid(5 * SECOND)
    status = modality_status("/n", "camera", "/image", liveness, 6 * SECOND)
    values = {kv.key: kv.value for kv in status.values}
    assert status.message == "stale for 1.0 s" and values["invalid_count"] == "4"


def _sample(stamp_ns: int) -> Decoded:
    return Decoded(np.zeros((3, 2, 2), np.float32), None, stamp_ns)


@pytest.mark.parametrize(("lag_s", "caveats", "level", "message"), [
    (0.1, (), DiagnosticStatus.OK, "alive"),
    (0.6, (), DiagnosticStatus.WARN,
     "alive, but its stamps are 0.6 s old on arrival, more than its timeout: clocks not synchronised, "
     "or a replay keeping the recorded stamps?"),
    (0.0, ("grey_for_colour",), DiagnosticStatus.WARN,
     "alive, but its messages are single-channel, for a colour model: every channel reads grey (a grey "
     "camera takes preprocess channels: 1)"),
    (0.0, ("depth_for_image",), DiagnosticStatus.WARN,
     "alive, but its messages are 16UC1 images with zero pixels, REP 118's depth in millimetres with holes: "
     "the holes read black and the depths as shares of preprocess.value_max (65.5 m unset); kind depth reads "
     "metres, with its holes as no return"),
    (0.0, ("beyond_full_scale",), DiagnosticStatus.WARN,
     "alive, but its messages are float images with values above 1.5 and no preprocess.value_max, so 1.0 "
     "is their full scale and they clip (a depth camera: kind depth reads metres, with its holes as no "
     "return)"),
])
def test_a_live_sensor_whose_data_mislead_the_model_is_warned_about(
    lag_s: float, caveats: tuple[str, ...], level: int, message: str
) -> None:
    liveness = ModalityLiveness(timeout_ns=SECOND // 2)
    arrival = 100 * SECOND
    liveness.record_valid(arrival)
    latest = _sample(arrival - int(lag_s * SECOND))
    status = modality_status("/n", "camera", "/image", liveness, arrival + SECOND // 10, latest=latest,
                             decode_caveats=caveats)
    assert (status.level, status.message) == (level, message)
    values = {kv.key: kv.value for kv in status.values}
    assert values["stamp_lag_s"] == f"{lag_s:.3f}" and values.get("caveats", "") == ",".join(caveats)


def test_a_decode_caveat_is_held_for_a_while_so_the_status_does_not_flip_with_the_scene() -> None:
    # A depth camera in metres exceeds the scale only in frames that see past 1.5 m.
    recent, start = RecentCaveats(), 100 * SECOND
    recent.add(("beyond_full_scale",), start)
    recent.add((), start + SECOND)  # a frame of a near wall: within scale
    assert recent.recent(start + 5 * SECOND) == ("beyond_full_scale",)
    assert recent.recent(start + int((CAVEAT_HOLD_S + 1) * SECOND)) == ()
    assert recent.recent(start - SECOND) == ()  # the clock jumped back: until seen again


def _stream(hz: float, start_s: float, end_s: float, jitter_s: float = 0.0, seed: int = 0) -> list[int]:
    """Arrival times (ns) of a sensor at `hz` from `start_s` to `end_s`, each moved by up to ±jitter."""
    nominal = np.arange(start_s, end_s, 1.0 / hz)
    noise = np.random.default_rng(seed).uniform(-jitter_s, jitter_s, len(nominal))
    return [int((t + n) * SECOND) for t, n in zip(nominal, noise, strict=True)]


def _paced_arrivals(streams: dict[str, list[int]], timeout_ns: int = SECOND // 2) -> np.ndarray:
    """The arrivals (s) that trigger inference, with the node's rule and timeouts."""
    liveness = {name: ModalityLiveness(timeout_ns=timeout_ns) for name in streams}
    pacer = Pacer()
    triggers = []
    for now, name in sorted((t, name) for name, times in streams.items() for t in times):
        liveness[name].record_valid(now)
        if pacer.triggers(name, liveness, now):
            triggers.append(now / SECOND)
    return np.asarray(triggers)


@pytest.mark.parametrize(("camera_hz", "lidar_hz"), [(10, 10), (9, 10), (10, 11.1), (10, 12)])
def test_sensors_at_about_the_same_rate_give_one_latent_per_period(camera_hz: float, lidar_hz: float) -> None:
    """Rate estimates that cross with jitter must not skip arrivals or trigger on both sensors."""
    triggers = _paced_arrivals({"camera": _stream(camera_hz, 0.0, 60.0, 0.003, seed=1),
                                "lidar": _stream(lidar_hz, 0.037, 60.0, 0.003, seed=2)})
    # Each pacer counts once per message; start-up (rates unknown) adds a few.
    assert 60 * min(camera_hz, lidar_hz) - 5 <= len(triggers) <= 60 * max(camera_hz, lidar_hz) + 25
    # Fastest-rate rule at 10/10 Hz: 691 triggers, gaps to 0.30 s; a 10 % equal-rate band: 0.30 s at 9/10.
    assert np.diff(triggers).max() < 1.25 / min(camera_hz, lidar_hz)


def test_sensors_too_slow_for_a_rate_estimate_each_trigger() -> None:
    """0.4 and 0.45 Hz (one message per rate window): both pace, and one dying leaves the other."""
    triggers = _paced_arrivals({"camera": _stream(0.4, 0.0, 30.0), "lidar": _stream(0.45, 0.3, 60.0)},
                               timeout_ns=5 * SECOND)
    assert len(triggers) == len(_stream(0.4, 0.0, 30.0)) + len(_stream(0.45, 0.3, 60.0))
    assert np.diff(triggers).max() < 2.3


def test_when_the_fastest_sensor_dies_the_next_one_paces_at_once() -> None:
    """Camera 20 Hz dies at 10 s; the 10 Hz LiDAR must not wait for the camera's 0.5 s timeout."""
    triggers = _paced_arrivals({"camera": _stream(20, 0.0, 10.0), "lidar": _stream(10, 0.007, 20.0)})
    assert np.diff(triggers).max() < 0.2  # was 0.56 s
    after = triggers[triggers > 10.0]
    assert len(after) >= 97 and np.allclose(np.diff(after), 0.1, atol=1e-6)  # one per LiDAR scan


def test_clock_jumping_back_makes_sensors_start_over() -> None:
    """Sim time of a looping bag: the sensor must be heard after the jump, and nothing goes negative."""
    second = 1_000_000_000
    liveness = ModalityLiveness(timeout_ns=second // 2)
    for i in range(11):  # 10 Hz from t = 100 s
        liveness.record_valid(100 * second + i * second // 10)
    assert not liveness.alive(10 * second), "a negative age is no proof of life"
    status = modality_status("/n", "lidar", "/scan", liveness, 10 * second)
    values = {kv.key: kv.value for kv in status.values}
    assert (status.message, values["alive"], values["rate_hz"]) == ("no valid message yet", "False", "0.00")
    for i in range(11):  # heard again at 10 Hz after the jump
        liveness.record_valid(10 * second + i * second // 10)
    assert liveness.alive(11 * second) and not liveness.alive(11 * second + second // 2)
    assert liveness.rate_hz(11 * second) == pytest.approx(10.0)


def test_latency_window_starts_over_when_the_clock_jumps_back() -> None:
    second = 1_000_000_000
    stats = InferenceStats()
    for i in range(10):  # 10 Hz up to t = 100.9 s, 5 ms each
        stats.record(100 * second + i * second // 10, 0.005)
    stats.record(10 * second, 0.020)  # the bag looped back to t = 10 s
    stats.record(10 * second + second // 10, 0.020)
    assert stats.summary(10 * second + second // 5) == LatencySummary(20.0, 20.0, 2)
    assert stats.inferences == 12


def test_latent_image_round_trip() -> None:
    mean, std = np.arange(LATENT_DIM, dtype=np.float32), np.full(LATENT_DIM, 0.5, np.float32)
    msg = latent_image(mean, std, stamp_ns=1_500_000_000, frame_id="f")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (2, LATENT_DIM, 4 * LATENT_DIM, "32FC1")
    assert msg.is_bigendian == 0
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1, 500_000_000, "f")
    decoded_mean, decoded_std = read_latent(msg)
    np.testing.assert_array_equal(decoded_mean, mean)
    np.testing.assert_array_equal(decoded_std, std)


@pytest.mark.parametrize("data_bytes", [0, 8 * LATENT_DIM - 4, 8 * LATENT_DIM + 4])
def test_a_latent_image_whose_buffer_does_not_fit_its_shape_is_refused(data_bytes: int) -> None:
    msg = latent_image(np.zeros(LATENT_DIM, np.float32), np.ones(LATENT_DIM, np.float32), 0, "f")
    msg.data = bytes(data_bytes)
    with pytest.raises(ValueError, match=f"not a latent image.*{data_bytes} data bytes"):
        read_latent(msg)


def test_modality_message_type_falls_back_to_the_kinds_type() -> None:
    scan = ModalitySpec("lidar", "scan", ScanPreprocess())
    cloud_scan = ModalitySpec("lidar", "scan", ScanPreprocess(), msg_type="sensor_msgs/msg/PointCloud2")
    assert message_class(modality_message_type(scan)) is LaserScan
    assert message_class(modality_message_type(cloud_scan)) is PointCloud2
    with pytest.raises(MessageTypeError, match="not available"):
        message_class("no_such_msgs/msg/Thing")


@pytest.mark.parametrize(("trained_topic", "params", "remaps", "expected"), [
    ("/camera/image_raw", {"modalities.camera.topic": "/camera/image_raw/compressed"}, [], "CompressedImage"),
    ("/camera/image_raw", {}, ["/camera/image_raw:=/camera/image_raw/compressed"], "CompressedImage"),
    ("/camera/image_raw", {"modalities.camera.topic": "/camera/image_raw/compressed",
                           "modalities.camera.msg_type": "sensor_msgs/msg/Image"}, [], "Image"),  # it wins
    ("/camera/image_raw", {}, [], "Image"),
    ("/cam/compressed", {}, [], "Image"),  # trained there on Image: whatever the name says
    ("/cam/compressed", {}, ["/cam/compressed:=/cam/raw"], "Image"),
])
def test_a_sensor_moved_to_image_transports_compressed_stream_subscribes_compressed_images(
    tmp_path: Path, request: pytest.FixtureRequest, trained_topic: str, params: dict[str, str],
    remaps: list[str], expected: str,
) -> None:
    camera = ModalitySpec("camera", "image", ImagePreprocess(16, 16), topic=trained_topic,
                          msg_type="sensor_msgs/msg/Image")
    spec = ModelSpec(modalities=(camera,), latent_dim=LATENT_DIM, feature_dim=16, head_hidden=16)
    model = save_model(M2VAE(spec), tmp_path / "model")
    overrides = _parameters({"model_path": str(model), **params})
    cli_args = ["--ros-args", *[arg for rule in remaps for arg in ("-r", rule)]]
    with ros_peer(domain_id_for(request.node.nodeid)) as peer:
        node = FusionNode(context=peer.context, parameter_overrides=overrides, cli_args=cli_args)
        try:
            assert node.modality_params["camera"].msg_type == f"sensor_msgs/msg/{expected}"
        finally:
            node.stop()
            node.destroy_node()


@pytest.mark.parametrize(("topic", "stored", "expected"), [
    ("/camera/image_raw/compressed", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    ("/camera/depth/image_raw/compressedDepth", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    ("/camera/image_raw", "sensor_msgs/msg/Image", "sensor_msgs/msg/Image"),
    ("/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CompressedImage"),
    ("/lidar/compressed", "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/PointCloud2"),  # no Image
])
def test_image_transports_compressed_topics_carry_compressed_images(topic: str, stored: str, expected: str
                                                                     ) -> None:
    assert transported_type(topic, stored) == expected


def test_unavailable_cuda_falls_back_to_cpu_with_a_warning() -> None:
    assert resolve_device("cpu") == ("cpu", None)
    for bad in ("gpu", "cudaX", "cuda:x", "CPU"):  # one clear line, not a torch traceback
        with pytest.raises(ValueError, match="must be auto, cpu, cuda or cuda:<index>"):
            resolve_device(bad)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == ("cpu", None)
    device, warning = resolve_device("cuda:1")
    assert device == "cpu" and "CUDA is unavailable" in warning


def test_only_the_named_reconstructions_are_decoded(model_dir: Path) -> None:
    """The node asks only for the reconstructions of topics with a subscriber; the rest are not decoded."""
    loaded = load_model(model_dir)
    fusion = LatentFusion(loaded.model, "cpu")
    scan = np.full((1, BEAMS), 0.5, np.float32)
    posterior = fusion.encode({"lidar": scan}, 1 << loaded.model.index("lidar"))
    only_camera = fusion.reconstruct(posterior, ["camera"])
    assert list(only_camera) == ["camera"] and only_camera["camera"].shape == (3, 32, 32)
    everything = fusion.reconstruct(posterior, loaded.spec.names)
    np.testing.assert_array_equal(everything["camera"], only_camera["camera"])
    assert set(everything) == set(loaded.spec.names)


def test_failed_inferences_turn_the_inference_status_to_error_and_keep_their_count() -> None:
    second = 1_000_000_000
    stats = InferenceStats()
    stats.record(10 * second, 0.002)
    stats.record_failure(10 * second + second // 2, "RuntimeError('CUDA error')")
    mixed = inference_status("/n", stats, "camera", 10 * second + second // 2)
    assert mixed.level == DiagnosticStatus.WARN and "CUDA error" in mixed.message
    stats.record_failure(11 * second + second // 4, "RuntimeError('CUDA error')")
    failing = inference_status("/n", stats, "camera", 11 * second + second // 4)
    values = {kv.key: kv.value for kv in failing.values}
    assert failing.level == DiagnosticStatus.ERROR
    assert failing.message == "inference failing: RuntimeError('CUDA error')"
    assert (values["failures"], values["failures_last_second"], values["inferences"]) == ("2", "2", "1")
    # Below 1 Hz the window empties between inferences: still failing until one succeeds.
    still = inference_status("/n", stats, "camera", 13 * second)
    assert still.level == DiagnosticStatus.ERROR and still.message == failing.message
    stats.record(14 * second, 0.002)
    recovered = inference_status("/n", stats, "camera", 15 * second + second // 2)
    assert recovered.level == DiagnosticStatus.OK and recovered.message == "active: camera"


def test_an_inference_stamped_just_after_the_diagnostics_clock_read_is_no_clock_jump() -> None:
    """The worker may record while the diagnostics timer, which read `now` first, builds its message."""
    second = 1_000_000_000
    stats = InferenceStats()
    stats.record(10 * second, 0.004)
    stats.record(10 * second + second // 3, 0.006)
    assert stats.summary(10 * second + second // 4) == LatencySummary(5.0, 6.0, 2)


def test_misspelt_parameters_are_named_with_the_nearest_declared_one(request: pytest.FixtureRequest) -> None:
    with ros_peer(domain_id_for(request.node.nodeid)) as peer:
        overrides = _parameters({"qos.reliabilty": "reliable", "rate": 5.0, "zzz": 1})
        node = rclpy.create_node("plain", context=peer.context, parameter_overrides=overrides)
        node.declare_parameter("qos.reliability", "best_effort")
        node.declare_parameter("rate_hz", 0.0)
        warning = unknown_parameters(node, {"qos.reliabilty", "rate", "zzz", "use_sim_time"})
        node.destroy_node()
    assert warning == ("ignoring parameters this node does not have: 'qos.reliabilty' (did you mean "
                       "'qos.reliability'?), 'rate' (did you mean 'rate_hz'?), 'zzz'")


def test_timeouts_and_frames_default_to_those_the_model_was_trained_with(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    loaded = load_model(model_dir)
    provenance = {"sync": {"timeout": {"camera": 2.0, "points": 0.25}},
                  "topics": {"camera": {"frame_id": "camera_optical_frame"}, "points": {"frame_id": "lidar"}}}
    trained = save_model(loaded.model, tmp_path / "model", provenance=provenance)
    overrides = {"modalities.points.timeout_s": 0.75, "modalities.points.frame_id": "velodyne"}
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, \
            node_in_process(peer, trained, **overrides) as node:
        names = ("camera", "lidar", "points")
        declared = {name: node.get_parameter(f"modalities.{name}.timeout_s").value for name in names}
        assert declared == {"camera": 2.0, "lidar": 0.5, "points": 0.75}  # an override still wins
        assert node.liveness["camera"].timeout_ns == 2_000_000_000
        frames = {name: node.get_parameter(f"modalities.{name}.frame_id").value for name in names}
        assert frames == {"camera": "camera_optical_frame", "lidar": "", "points": "velodyne"}
        # Until a sensor's message names its frame: the trained one, else the node's frame_id.
        expected = ["camera_optical_frame", FRAME, "velodyne"]
        assert [node._reconstruction_frame(name) for name in names] == expected


def test_a_frame_the_model_does_not_name_is_the_nodes() -> None:
    names = ("camera", "lidar")
    hand_edited = ("x", {"topics": "abc"}, {"topics": {"camera": "cam"}},
                   {"topics": {"camera": {"frame_id": 5}}})
    for provenance in hand_edited:
        assert trained_frames({"provenance": provenance}, names) == {"camera": "", "lidar": ""}
    assert trained_frames({}, names) == {"camera": "", "lidar": ""}  # a library model has no provenance


def test_an_unreadable_trained_timeout_falls_back_to_the_default_with_a_warning() -> None:
    names = ("camera", "lidar")
    assert trained_timeouts({"provenance": {"sync": {"timeout": 1.5}}}, names) == (
        {"camera": 1.5, "lidar": 1.5}, None)
    assert trained_timeouts({"provenance": {"source": "m2vae_ros.api"}}, names) == (
        {"camera": 0.5, "lidar": 0.5}, None)
    bad = [  # what training's config check says of each, and one the node's parameter range refuses
        ("soon", "provenance.sync.timeout 'soon' is not a positive, finite number of seconds"),
        (-1.0, "provenance.sync.timeout -1.0 is not a positive"),
        (True, "provenance.sync.timeout True is not a positive"),
        (10**400, "is not a positive, finite number of seconds"),
        ({"camera": None}, "provenance.sync.timeout.camera None is not a positive"),
        ({"radar": 1.0}, "provenance.sync.timeout names unknown modalities ['radar']"),
        (1e9, "provenance.sync.timeout 1000000000.0 lies outside [0.001, 3600.0] s"),
    ]
    for value, expected in bad:
        timeouts, warning = trained_timeouts({"provenance": {"sync": {"timeout": value}}}, names)
        assert timeouts == {"camera": 0.5, "lidar": 0.5}
        assert expected in warning and warning.endswith("timeouts default to 0.5 s (set "
                                                        "modalities.<name>.timeout_s)"), warning
    for provenance in ("x", {"sync": "abc"}, ["sync"]):  # a hand-edited model.yaml: no crash, the default
        assert trained_timeouts({"provenance": provenance}, names) == ({"camera": 0.5, "lidar": 0.5}, None)


def _parameters(values: dict[str, object]) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in values.items()]


@contextmanager
def node_in_process(peer: RosPeer, model_dir: Path, **params: object) -> Iterator[FusionNode]:
    """The fusion node in the test's process and executor, for tests that reach inside it."""
    overrides = {"model_path": str(model_dir), "frame_id": FRAME, **params}
    node = FusionNode(context=peer.context, parameter_overrides=_parameters(overrides))
    peer.executor.add_node(node)
    try:
        yield node
    finally:
        node.stop()
        peer.executor.remove_node(node)
        node.destroy_node()


def _inference_status(arrays: list[DiagnosticArray]) -> DiagnosticStatus | None:
    for array in reversed(arrays):
        for status in array.status:
            if status.name.endswith(": inference"):
                return status
    return None


@pytest.mark.parametrize("broken", ["raises", "non_finite"])
def test_failing_inference_is_an_error_in_diagnostics_and_publishes_nothing(
    model_dir: Path, request: pytest.FixtureRequest, broken: str
) -> None:
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, model_dir) as node:
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        if broken == "raises":
            def encode(arrays, subset):
                raise RuntimeError("CUDA error: an illegal memory access")
        else:
            def encode(arrays, subset):
                nan = np.full(LATENT_DIM, np.nan, np.float32)
                return Posterior(nan, np.ones(LATENT_DIM, np.float32), torch.from_numpy(nan))
        node.fusion.encode = encode
        _publish_every(peer, Image, "/camera/image_raw", CAMERA_PERIOD_S, lambda: _camera(_now_ns(peer)))

        def failing() -> bool:
            status = _inference_status(diagnostics)
            return status is not None and status.level == DiagnosticStatus.ERROR

        assert peer.spin_until(failing, STARTUP_WAIT_S), diagnostics[-1:]
        status = _inference_status(diagnostics)
        expected = "illegal memory access" if broken == "raises" else "non-finite latent"
        assert expected in status.message
        assert int({kv.key: kv.value for kv in status.values}["failures"]) > 0
        assert latents == []


def test_with_sim_time_diagnostics_say_when_the_clock_has_not_started_or_stands_still(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, \
            node_in_process(peer, model_dir, use_sim_time=True):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        _publish_every(peer, Image, "/camera/image_raw", CAMERA_PERIOD_S, lambda: _camera(5_000_000_000))
        assert peer.spin_until(lambda: len(diagnostics) >= 2, STARTUP_WAIT_S), "no diagnostics without /clock"
        status = _inference_status(diagnostics)
        assert status.level == DiagnosticStatus.WARN
        assert status.message == "use_sim_time is true and no /clock has arrived yet"
        # An arrival at time 0 would expire as soon as the clock starts: it is rejected, and
        # not as a future stamp (every stamp is ahead of 0).
        assert peer.spin_until(lambda: "invalid.no_clock" in _diagnostic_values(diagnostics, "camera"),
                               STARTUP_WAIT_S), diagnostics[-1:]
        values = _diagnostic_values(diagnostics, "camera")
        assert values["alive"] == "False" and "invalid.future_stamp" not in values
        # A paused simulator's /clock says 0: the time is no sign of whether it has spoken.
        clock = peer.node.create_publisher(ClockMessage, "/clock", 1)
        sim_ns = [0]

        def tick() -> None:
            clock.publish(ClockMessage(clock=Time(nanoseconds=sim_ns[0]).to_msg()))

        peer.node.create_timer(0.1, tick)

        def says(start: str) -> bool:
            return _inference_status(diagnostics).message.startswith(start)

        assert peer.spin_until(lambda: says("/clock has not advanced for "), STARTUP_WAIT_S), diagnostics[-1:]
        assert _inference_status(diagnostics).level == DiagnosticStatus.WARN
        sim_ns[0] = 5_000_000_000  # the simulator runs, from the camera's stamp on

        def run() -> None:
            sim_ns[0] += 100_000_000

        peer.node.create_timer(0.1, run)
        assert peer.spin_until(lambda: says("active: camera"), STARTUP_WAIT_S), diagnostics[-1:]


def test_a_publisher_with_incompatible_qos_is_named_in_diagnostics(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, \
            node_in_process(peer, model_dir, **{"qos.reliability": "reliable"}):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        camera, timer = _publish_every(peer, Image, "/camera/image_raw", CAMERA_PERIOD_S,
                                       lambda: _camera(_now_ns(peer)))

        assert peer.spin_until(lambda: "cannot take" in _latest_message(diagnostics, "camera"),
                               STARTUP_WAIT_S), diagnostics[-1:]
        assert _latest_message(diagnostics, "camera") == (
            "the publishers of /camera/image_raw offer QoS this subscription cannot take: Best effort "
            "publisher and reliable subscription; parameter 'qos.reliability' is reliable: set it to "
            "best_effort")
        # A publisher that left takes its complaint with it: the camera is merely stale then.
        peer.node.destroy_timer(timer)
        peer.node.destroy_publisher(camera)
        assert peer.spin_until(lambda: _latest_message(diagnostics, "camera") == "no valid message yet",
                               STARTUP_WAIT_S), diagnostics[-1:]


def test_a_sensor_topic_without_publishers_names_the_topics_it_could_read(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    """The model's /scan is silent while the robot's scanner publishes /front/scan."""
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, model_dir):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        _publish_every(peer, LaserScan, "/front/scan", LIDAR_PERIOD_S, lambda: _scan(_now_ns(peer)))
        for cloud_topic in ("/points", "/velodyne_points"):  # clouds a scan reads too; /points is taken
            peer.node.create_publisher(PointCloud2, cloud_topic, sensor_qos("best_effort"))

        assert peer.spin_until(lambda: "velodyne" in _latest_message(diagnostics, "lidar"),
                               STARTUP_WAIT_S), diagnostics[-1:]
        # Not the node's own ~/reconstruction/lidar, a LaserScan too, nor the points sensor's /points.
        assert _latest_message(diagnostics, "lidar") == (
            "no publisher on /scan; topics it could read: /front/scan (sensor_msgs/msg/LaserScan), "
            "/velodyne_points (sensor_msgs/msg/PointCloud2): set parameter 'modalities.lidar.topic' (and "
            "'modalities.lidar.msg_type' for another type)")


def test_a_scan_narrower_than_the_model_is_alive_but_warned_about(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    """A 180° scanner on a 360° model: the other half reads "no return" whatever the scene."""
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, model_dir):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")

        def front_half() -> LaserScan:
            msg = _scan(_now_ns(peer))
            msg.angle_min, msg.angle_max = np.radians(-88.0), np.radians(88.0)
            msg.ranges = msg.ranges[: BEAMS // 2]  # on the model's bins, 4° apart: 45 of its 90
            return msg

        _publish_every(peer, LaserScan, "/scan", 0.1, front_half)

        assert peer.spin_until(lambda: "coverage" in _diagnostic_values(diagnostics[-1:], "lidar"),
                               STARTUP_WAIT_S)
        status = _latest_status(diagnostics, "lidar")
        values = {kv.key: kv.value for kv in status.values}
        assert (values["alive"], values["coverage"]) == ("True", "0.500")
        assert status.level == DiagnosticStatus.WARN and "reach 50% of the model's bins" in status.message


def test_a_depth_image_in_metres_on_a_colour_model_is_warned_about_while_alive(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    """32FC1 metres on the model's rgb camera, no value_max: grey, and clipped beyond 1 m."""
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, model_dir):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        metres = np.full(40 * 48, 3.0, np.float32).tobytes()
        _publish_every(peer, Image, "/camera/image_raw", CAMERA_PERIOD_S,
                       lambda: _camera(_now_ns(peer), "32FC1", metres, pixel_bytes=4))

        assert peer.spin_until(lambda: "caveats" in _diagnostic_values(diagnostics[-1:], "camera"),
                               STARTUP_WAIT_S)
        status = _latest_status(diagnostics, "camera")
        assert {kv.key: kv.value for kv in status.values}["caveats"] == "grey_for_colour,beyond_full_scale"
        assert status.level == DiagnosticStatus.WARN
        assert status.message.startswith("alive, but its messages are single-channel, for a colour model")
        assert "; its messages are float images with values above 1.5" in status.message


def test_a_depth_camera_alone_drives_the_node_and_comes_back_as_32fc1_metres(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An RGB-D pair whose colour stream is dead: the depth camera's 16UC1 millimetres are the subset."""
    spec = ModelSpec(
        modalities=(
            ModalitySpec("camera", "image", ImagePreprocess(16, 16), topic="/camera/image_raw"),
            ModalitySpec("depth", "depth", DepthPreprocess(16, 16), topic="/camera/depth/image_raw"),
        ),
        latent_dim=LATENT_DIM, feature_dim=16, head_hidden=16,
    )
    torch.manual_seed(0)
    rgbd = save_model(M2VAE(spec), tmp_path / "model")
    millimetres = np.full((40, 48), 2500, np.uint16)
    millimetres[:10] = 0  # no data, as over the sky or a window
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, rgbd):
        active = peer.collect(String, f"{NODE}/active_modalities", latched_qos())
        depths = peer.collect(Image, f"{NODE}/reconstruction/depth", sensor_qos("reliable", depth=50))
        colours = peer.collect(Image, f"{NODE}/reconstruction/camera", sensor_qos("reliable", depth=50))
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        _publish_every(peer, Image, "/camera/depth/image_raw", CAMERA_PERIOD_S,
                       lambda: _camera(_now_ns(peer), "16UC1", millimetres.tobytes(), pixel_bytes=2))

        assert peer.spin_until(lambda: _active(active) == "depth" and depths and colours and
                               _latest_status(diagnostics, "depth") is not None, STARTUP_WAIT_S)
        depth = depths[-1]
        assert (depth.encoding, depth.width, depth.height, depth.step) == ("32FC1", 16, 16, 64)
        metres = np.frombuffer(bytes(depth.data), "<f4")
        assert metres.size == 256 and np.nanmin(metres) > 0.0 and np.nanmax(metres) < 8.0  # within range_max
        assert (colours[-1].encoding, depth.header.frame_id) == ("rgb8", CAMERA_FRAME)  # imputed colour
        status = _latest_status(diagnostics, "depth")
        assert status.level == DiagnosticStatus.OK and "reach" not in _diagnostic_values(diagnostics, "depth")


def _rings_cloud(stamp_ns: int, rings: int) -> PointCloud2:
    """A return 5 m away in each bin of the top `rings` rings of the model's 4 × 32 range image."""
    pre = RangeImagePreprocess(rings=4, bins=32)
    elevation, azimuth = np.meshgrid(ring_elevations(pre)[:rings], -np.pi + 2 * np.pi * np.arange(32) / 32)
    xyz = 5.0 * np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)])
    return cloud({axis: values.ravel() for axis, values in zip("xyz", xyz, strict=True)}, stamp_ns)


@pytest.mark.parametrize(("rings", "reach", "level", "message"), [
    (4, "1.000", DiagnosticStatus.OK, "alive"),
    (2, "0.500", DiagnosticStatus.WARN,
     "alive, but 50% of the model's cells held a return in some of 100 recent messages, the others in none: "
     "do rings, fov_up_deg and fov_down_deg match the sensor's beams, and bins its horizontal resolution?"),
])
def test_a_3d_lidar_reaching_half_the_models_rings_is_alive_but_warned_about(
    model_dir: Path, request: pytest.FixtureRequest, rings: int, reach: str, level: int, message: str
) -> None:
    """A 16-ring sensor republished with its rings 0–7 only, on a 4-ring model: rings 0–1 of 4.

    Each cloud is a valid one; only the union of many shows the rings that never hold a return."""
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, node_in_process(peer, model_dir):
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
        _publish_every(peer, PointCloud2, "/points", 0.02, lambda: _rings_cloud(_now_ns(peer), rings))

        assert peer.spin_until(lambda: "reach" in _diagnostic_values(diagnostics[-1:], "points"),
                               STARTUP_WAIT_S), diagnostics[-1:]
        status = _latest_status(diagnostics, "points")
        values = {kv.key: kv.value for kv in status.values}
        assert (values["alive"], values["reach"], status.level) == ("True", reach, level)
        assert status.message.startswith(message), status.message  # a loaded machine may add a stamp lag
        assert "coverage" not in values  # a scan's, from its angles


def test_reach_is_that_of_the_latest_complete_block_of_messages() -> None:
    reach = ReturnsReach("range_image", window=2)
    left, right = np.array([[True, False, False, False]]), np.array([[False, True, False, False]])
    reach.add(left)
    assert reach.share is None  # not enough messages yet
    reach.add(right)
    assert reach.share == 0.5
    reach.add(None)  # a kind without a mask: nothing to count
    for mask in (left, left, np.ones((1, 4), bool)):
        reach.add(mask)
    assert reach.share == 0.25  # the block of the two lefts; the full one is not complete yet
    assert REACH_WINDOW == 100 and ReturnsReach("scan").window == REACH_WINDOW


def test_a_narrow_scan_is_warned_about_once_though_its_reach_is_low_too() -> None:
    """Coverage already says what reach would: one caveat, both values."""
    liveness = ModalityLiveness(timeout_ns=SECOND // 2)
    liveness.record_valid(100 * SECOND)
    reach = ReturnsReach("scan", window=2)
    for _ in range(2):
        reach.add(np.array([[True, False]]))
    latest = Decoded(np.zeros((1, 2), np.float32), np.array([[True, False]]), 100 * SECOND, coverage=0.5)
    status = modality_status("/n", "lidar", "/scan", liveness, 100 * SECOND, latest=latest, reach=reach)
    values = {kv.key: kv.value for kv in status.values}
    assert status.message == "alive, but its scans reach 50% of the model's bins; the rest read no return"
    assert (values["coverage"], values["reach"]) == ("0.500", "0.500")
    for _ in range(2):
        reach.add(np.array([[False, False]]))
    wide = Decoded(np.zeros((1, 2), np.float32), np.array([[False, False]]), 100 * SECOND, coverage=1.0)
    status = modality_status("/n", "lidar", "/scan", liveness, 100 * SECOND, latest=wide, reach=reach)
    assert status.message == ("alive, but 0% of the model's bins held a return in some of 2 recent messages, "
                              "the others in none: is angle_min…angle_max wider than the scanner's?")


@contextmanager
def rate_timed_camera(
    model_dir: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RosPeer, FusionNode, list[Image], Publisher]]:
    """The node at rate_hz 50 with a camera that stays alive 2 s, its latents, and a camera publisher."""
    with ros_peer(domain_id_for(request.node.nodeid)) as peer, \
            node_in_process(peer, model_dir, rate_hz=50.0, **{"modalities.camera.timeout_s": 2.0}) as node:
        latents = peer.collect(Image, f"{NODE}/latent", sensor_qos("reliable", depth=50))
        camera = peer.node.create_publisher(Image, "/camera/image_raw", sensor_qos("reliable"))
        assert peer.spin_until(lambda: camera.get_subscription_count() > 0, STARTUP_WAIT_S)
        yield peer, node, latents, camera


def test_a_rate_timer_without_new_messages_publishes_no_repeated_latent(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    with rate_timed_camera(model_dir, request) as (peer, node, latents, camera):
        stamp = _now_ns(peer)
        camera.publish(_camera(stamp))
        assert peer.spin_until(lambda: len(latents) == 1, STARTUP_WAIT_S)
        peer.spin_for(0.3)  # 15 ticks while the camera stays alive
        assert node.liveness["camera"].alive(_now_ns(peer))
        assert [_stamp_ns(latent) for latent in latents] == [stamp]
        camera.publish(_camera(stamp + 1))
        assert peer.spin_until(lambda: len(latents) == 2, STARTUP_WAIT_S)


def test_a_rate_timer_retries_the_inputs_of_a_failed_inference(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    with rate_timed_camera(model_dir, request) as (peer, node, latents, camera):
        working, calls = node.fusion.encode, []

        def fails_once(arrays, subset):
            calls.append(subset)
            if len(calls) == 1:
                raise RuntimeError("CUDA error: out of memory")
            return working(arrays, subset)

        node.fusion.encode = fails_once
        stamp = _now_ns(peer)
        camera.publish(_camera(stamp))  # the only message: only a retry can publish its latent
        assert peer.spin_until(lambda: len(latents) == 1, STARTUP_WAIT_S), calls
        assert [_stamp_ns(latent) for latent in latents] == [stamp]
        assert node.stats.failures == 1


def test_a_failing_decoder_fails_the_inference_after_its_latent_went_out(
    model_dir: Path, request: pytest.FixtureRequest
) -> None:
    with rate_timed_camera(model_dir, request) as (peer, node, latents, camera):
        peer.collect(Image, f"{NODE}/reconstruction/camera", sensor_qos("reliable"))  # the decoder runs

        def broken_decoder(posterior, names):
            raise RuntimeError("CUDA error: out of memory")

        node.fusion.reconstruct = broken_decoder
        assert peer.spin_until(lambda: node._reconstruction_pubs["camera"].get_subscription_count() > 0,
                               STARTUP_WAIT_S)
        camera.publish(_camera(_now_ns(peer)))
        assert peer.spin_until(lambda: node.stats.failures == 1, STARTUP_WAIT_S)
        peer.spin_for(0.2)  # ticks on the same inputs: their latent went out, so no retry
        assert (len(latents), node.stats.failures, node.stats.inferences) == (1, 1, 0)
        status = inference_status("/n", node.stats, "camera", _now_ns(peer))
        assert status.level == DiagnosticStatus.ERROR and "out of memory" in status.message
