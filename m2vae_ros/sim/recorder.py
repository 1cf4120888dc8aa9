"""Run the simulated sensors over time and write their messages as a rosbag2 recording.

Streams (defaults match config/train.yaml): camera 30 Hz, planar LiDAR 10 Hz, 3-D
LiDAR 10 Hz (phase 25 ms after the scan, as an unsynchronised second device), on request
a depth image with the camera's stamps (an RGB-D camera registers both to one exposure), and the
ground truth at the scan's stamps — a Marker and the robot pose for every scan period,
also while the scan is dropped out, so samples of the other sensors keep their labels.

The bag is written under ``DIR.partial/`` and renamed to DIR only when complete, so a
crash never leaves a valid-looking half recording at DIR. MCAP is the default storage:
rosbag2's own default since Iron, one indexed file.
"""

from __future__ import annotations

import heapq
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from m2vae_ros.drop_window import DropWindow
from m2vae_ros.progress import progress_bar
from m2vae_ros.sim import messages
from m2vae_ros.sim.camera import Camera
from m2vae_ros.sim.lidar import PlanarLidar, SpinningLidar
from m2vae_ros.sim.timing import SENSORS, Frame, SimError, frames
from m2vae_ros.sim.world import EPISODE_SECONDS, Scenario, World

CAMERA_RATE, LIDAR_RATE = 30.0, 10.0
POINTS_PHASE = 0.025
START_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z: stamps never depend on wall time
CAMERA_STREAM, SCAN_STREAM, POINTS_STREAM = 10, 11, 12

CAMERA_TOPIC = "/camera/image_raw"
DEPTH_TOPIC = "/camera/depth/image_raw"
COMPRESSED_DEPTH_TOPIC = "/camera/depth/image_raw/compressedDepth"
COMPRESSED_CAMERA_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
SCAN_TOPIC, POINTS_TOPIC = "/scan", "/points"
MARKER_TOPIC, ROBOT_POSE_TOPIC = "/ground_truth/object", "/ground_truth/robot_pose"
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
SENSOR_TOPICS = frozenset(
    {CAMERA_TOPIC, COMPRESSED_CAMERA_TOPIC, CAMERA_INFO_TOPIC, DEPTH_TOPIC, COMPRESSED_DEPTH_TOPIC,
     SCAN_TOPIC, POINTS_TOPIC})
BAR = "{l_bar}{bar}| {n:.0f}/{total:.0f} simulated s [{elapsed}<{remaining}]"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@dataclass(frozen=True)
class Record:
    """One serialized message: bag log time, topic, CDR bytes and its capture time (s)."""

    log_ns: int
    topic: str
    data: bytes
    t: float


@dataclass(frozen=True)
class SimSummary:
    """What `simulate` wrote: messages per topic, simulated and wall-clock seconds."""

    out: Path
    storage: str
    duration: float
    counts: dict[str, int]
    seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.duration / max(self.seconds, 1e-9)

    def line(self) -> str:
        counts = ", ".join(f"{topic} {n}" for topic, n in sorted(self.counts.items()))
        return (
            f"wrote {self.out} ({self.storage}): {counts} | {self.duration:g} s simulated in "
            f"{self.seconds:.1f} s ({self.realtime_factor:.1f}× real time)"
        )


class Simulation:
    """All message streams of one simulated recording, merged in log-time order."""

    def __init__(
        self,
        duration: float,
        seed: int,
        *,
        drops: Sequence[DropWindow] = (),
        compressed: bool = False,
        points: bool = True,
        depth: bool = False,
        image_size: tuple[int, int] = (64, 64),
        episode_seconds: float = EPISODE_SECONDS,
        scenario: Scenario | None = None,
    ) -> None:
        if not (duration > 0 and math.isfinite(duration)):
            raise SimError(f"duration must be a positive number of seconds, got {duration}")
        if unknown := sorted({d.key for d in drops} - set(SENSORS)):
            raise SimError(f"dropouts of unknown sensors {unknown}; known: {', '.join(SENSORS)}")
        if not points and any(d.key == "points" for d in drops):
            raise SimError("a points dropout was requested but the 3-D LiDAR is off (--no-points)")
        if not depth and any(d.key == "depth" for d in drops):
            raise SimError("a depth dropout was requested but the depth camera is off (add --depth)")
        if late := [f"{d.key}@{d.start:g}:{d.end:g}" for d in drops if d.start >= duration]:
            raise SimError(f"dropouts {late} start after the recording ends ({duration:g} s): they would "
                           "silence nothing")
        self.duration, self.seed, self.drops = duration, seed, tuple(drops)
        self.compressed, self.points, self.depth = compressed, points, depth
        try:
            self.world = World(seed, episode_seconds=episode_seconds, scenario=scenario)
            self.camera = Camera(*image_size)
        except ValueError as exc:
            raise SimError(str(exc)) from None
        self.scanner = PlanarLidar()
        self.lidar = SpinningLidar()

    @property
    def topics(self) -> dict[str, str]:
        """Topic → message type of every stream this simulation writes."""
        camera_type = "sensor_msgs/msg/CompressedImage" if self.compressed else "sensor_msgs/msg/Image"
        topics = {
            self.camera_topic: camera_type,
            CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
            SCAN_TOPIC: "sensor_msgs/msg/LaserScan",
            MARKER_TOPIC: "visualization_msgs/msg/Marker",
            ROBOT_POSE_TOPIC: "geometry_msgs/msg/PoseStamped",
            TF_TOPIC: "tf2_msgs/msg/TFMessage",
            TF_STATIC_TOPIC: "tf2_msgs/msg/TFMessage",
        }
        if self.points:
            topics[POINTS_TOPIC] = "sensor_msgs/msg/PointCloud2"
        if self.depth:
            topics[self.depth_topic] = camera_type
        return topics

    @property
    def camera_topic(self) -> str:
        return COMPRESSED_CAMERA_TOPIC if self.compressed else CAMERA_TOPIC

    @property
    def depth_topic(self) -> str:
        return COMPRESSED_DEPTH_TOPIC if self.compressed else DEPTH_TOPIC

    def records(self) -> Iterator[Record]:
        streams = [self._sensor_transforms(), self._camera(), self._scan(), self._ground_truth()]
        if self.points:
            streams.append(self._points())
        if self.depth:
            streams.append(self._depth())
        return heapq.merge(*streams, key=lambda r: r.log_ns)

    def _frames(
        self, stream: int, rate: float, phase: float, sensor: str | None
    ) -> Iterator[tuple[Frame, np.random.Generator]]:
        drops = [d for d in self.drops if d.key == sensor]
        return frames(self.seed, stream, rate, phase, self.duration, START_NS, drops)

    def _camera(self) -> Iterator[Record]:
        """Each image, then its camera_info with the same stamp, as a camera driver publishes them."""
        build = messages.compressed_image if self.compressed else messages.image
        for frame, rng in self._frames(CAMERA_STREAM, CAMERA_RATE, 0.0, "camera"):
            rgb = self.camera.render(self.world.state(frame.t), self.world.arena, rng)
            yield Record(
                frame.log_ns, self.camera_topic, messages.serialize(build(frame.stamp_ns, rgb)), frame.t
            )
            info = messages.camera_info(frame.stamp_ns, self.camera)
            yield Record(frame.log_ns, CAMERA_INFO_TOPIC, messages.serialize(info), frame.t)

    def _depth(self) -> Iterator[Record]:
        """The camera's frames (same stamps and log times) with the depth camera's own dropouts and noise."""
        build = messages.compressed_depth_image if self.compressed else messages.depth_image
        for frame, rng in self._frames(CAMERA_STREAM, CAMERA_RATE, 0.0, "depth"):
            noise = rng.spawn(1)[0]  # not the colour image's draws: independent noise
            millimetres = self.camera.depth(self.world.state(frame.t), self.world.arena, noise)
            msg = build(frame.stamp_ns, millimetres)
            yield Record(frame.log_ns, self.depth_topic, messages.serialize(msg), frame.t)

    def _scan(self) -> Iterator[Record]:
        for frame, rng in self._frames(SCAN_STREAM, LIDAR_RATE, 0.0, "scan"):
            ranges, intensities = self.scanner.scan(self.world.state(frame.t), self.world.arena, rng)
            msg = messages.laser_scan(frame.stamp_ns, self.scanner, ranges, intensities, LIDAR_RATE)
            yield Record(frame.log_ns, SCAN_TOPIC, messages.serialize(msg), frame.t)

    def _points(self) -> Iterator[Record]:
        for frame, rng in self._frames(POINTS_STREAM, LIDAR_RATE, POINTS_PHASE, "points"):
            cloud = self.lidar.points(self.world.state(frame.t), self.world.arena, rng)
            msg = messages.point_cloud(frame.stamp_ns, cloud)
            yield Record(frame.log_ns, POINTS_TOPIC, messages.serialize(msg), frame.t)

    def _sensor_transforms(self) -> Iterator[Record]:
        """/tf_static once, first: where each sensor sits on the robot."""
        tf = messages.sensor_transforms(START_NS, self.camera, self.scanner, self.lidar)
        yield Record(START_NS, TF_STATIC_TOPIC, messages.serialize(tf), 0.0)

    def _ground_truth(self) -> Iterator[Record]:
        """At the scan's own stamps (same stream seed), whether or not the scan is dropped."""
        for frame, _ in self._frames(SCAN_STREAM, LIDAR_RATE, 0.0, None):
            state = self.world.state(frame.t)
            marker = messages.object_marker(frame.stamp_ns, state)
            yield Record(frame.log_ns, MARKER_TOPIC, messages.serialize(marker), frame.t)
            pose = messages.robot_pose(frame.stamp_ns, state)
            yield Record(frame.log_ns, ROBOT_POSE_TOPIC, messages.serialize(pose), frame.t)
            tf = messages.robot_transform(frame.stamp_ns, state)
            yield Record(frame.log_ns, TF_TOPIC, messages.serialize(tf), frame.t)


def _offered_qos(topic: str) -> list[Qos]:
    """What the recorded publisher offered, as a ROS system would: sensors best effort (drivers'
    sensor-data QoS), /tf_static latched (transient local, as tf2 broadcasts it), the rest
    reliable. Players follow it (tf2 and rviz subscribe reliable)."""
    never = QosTime(sec=0, nsec=0)  # rmw's "infinite"/"default"
    if topic == TF_STATIC_TOPIC:
        reliability, durability, depth = QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, 1
    elif topic in SENSOR_TOPICS:
        reliability, durability, depth = QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 5
    else:
        reliability, durability, depth = QosReliability.RELIABLE, QosDurability.VOLATILE, 10
    return [Qos(QosHistory.KEEP_LAST, depth, reliability, durability, never, never,
                QosLiveliness.AUTOMATIC, never, False)]


def simulate(
    out: Path | str,
    duration: float,
    seed: int,
    *,
    storage: str = "mcap",
    drops: Sequence[DropWindow] = (),
    compressed: bool = False,
    points: bool = True,
    depth: bool = False,
    image_size: tuple[int, int] = (64, 64),
    episode_seconds: float = EPISODE_SECONDS,
    scenario: Scenario | None = None,
    progress: bool = False,
) -> SimSummary:
    """Simulate `duration` seconds and write them as a rosbag2 recording at `out` (must not exist)."""
    out = Path(out)
    if storage not in STORAGES:
        raise SimError(f"storage {storage!r} not in {sorted(STORAGES)}")
    if out.exists():
        raise SimError(f"{out} exists already; choose a new output directory")
    sim = Simulation(
        duration,
        seed,
        drops=drops,
        compressed=compressed,
        points=points,
        depth=depth,
        image_size=image_size,
        episode_seconds=episode_seconds,
        scenario=scenario,
    )
    staging = out.with_name(out.name + ".partial")
    try:
        staging.mkdir(parents=True)
    except FileExistsError:
        raise SimError(f"{staging} exists, left by an interrupted run; remove it and retry") from None
    started = time.perf_counter()
    counts = Counter(dict.fromkeys(sim.topics, 0))
    try:
        with (
            Writer(staging / out.name, version=9, storage_plugin=STORAGES[storage]) as writer,
            progress_bar(enabled=progress, total=duration, leave=False, bar_format=BAR) as bar,
        ):
            connections = {
                topic: writer.add_connection(
                    topic, msgtype, typestore=messages.TYPESTORE, offered_qos_profiles=_offered_qos(topic)
                )
                for topic, msgtype in sim.topics.items()
            }
            shown = 0.0
            for record in sim.records():
                writer.write(connections[record.topic], record.log_ns, record.data)
                counts[record.topic] += 1
                if record.t - shown >= 0.5:
                    bar.update(record.t - shown)
                    shown = record.t
        os.replace(staging / out.name, out)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SimSummary(out, storage, duration, dict(counts), time.perf_counter() - started)
