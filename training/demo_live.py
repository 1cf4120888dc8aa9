"""The live half of `make demo`: the fusion node against a replay with a dead LiDAR.

Starts `m2vae-fusion` on the trained model and `m2vae-play` on a recording the model
has not seen, with the LiDAR suppressed for a window, and records what the node
publishes from a third process (this one), over real DDS. The result is a
`LiveRecord`: per latent message its stamp, receive time, mean/std and active subset,
and per LiDAR reconstruction its ranges, so the report can show the subset switching,
the latent staying up and the imputed LiDAR next to the truth.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, LaserScan
from std_msgs.msg import String

from m2vae_ros.codec import stamp_ns
from m2vae_ros.latent_msg import read_latent
from m2vae_ros.qos import latched_qos, sensor_qos

NODE = "/m2vae_fusion"


@dataclass
class LiveRecord:
    """What the demo saw on the node's topics, in arrival order (times in ns)."""

    latent_stamp: list[int] = field(default_factory=list)
    latent_received: list[int] = field(default_factory=list)
    latent_mean: list[np.ndarray] = field(default_factory=list)
    latent_std: list[np.ndarray] = field(default_factory=list)
    active: list[tuple[int, str]] = field(default_factory=list)  # (receive ns, subset name)
    lidar_stamp: list[int] = field(default_factory=list)
    lidar_received: list[int] = field(default_factory=list)
    lidar_ranges: list[np.ndarray] = field(default_factory=list)
    # The first camera frame the probe saw: (replay stamp, pixel bytes). Its bytes identify
    # the frame in the bag, which anchors replay stamps to bag time even when the probe
    # joined the replay late.
    anchor: tuple[int, bytes] | None = None

    def latency_ms(self) -> np.ndarray:
        return (np.asarray(self.latent_received) - np.asarray(self.latent_stamp)) / 1e6


class _Probe(Node):
    """Subscribes to the node's outputs, like a downstream planner would.

    Reliable with a queue of 100 (the node publishes reliably): on two busy cores the
    probe may stall for a few frames, and the report must count every latent.
    """

    def __init__(self, record: LiveRecord, context: rclpy.Context) -> None:
        super().__init__("m2vae_demo_probe", context=context)
        self.record = record
        queued = sensor_qos("reliable", 100)
        self.create_subscription(Image, f"{NODE}/latent", self._on_latent, queued)
        self.create_subscription(String, f"{NODE}/active_modalities", self._on_active, latched_qos())
        self.create_subscription(LaserScan, f"{NODE}/reconstruction/lidar", self._on_lidar, queued)
        self.create_subscription(Image, "/camera/image_raw", self._on_camera, sensor_qos("best_effort", 10))

    def _on_latent(self, msg: Image) -> None:
        mean, std = read_latent(msg)
        self.record.latent_stamp.append(stamp_ns(msg))
        self.record.latent_received.append(time.time_ns())
        self.record.latent_mean.append(mean)
        self.record.latent_std.append(std)

    def _on_active(self, msg: String) -> None:
        self.record.active.append((time.time_ns(), msg.data))

    def _on_lidar(self, msg: LaserScan) -> None:
        self.record.lidar_stamp.append(stamp_ns(msg))
        self.record.lidar_received.append(time.time_ns())
        self.record.lidar_ranges.append(np.asarray(msg.ranges, dtype=np.float32))

    def _on_camera(self, msg: Image) -> None:
        if self.record.anchor is None:
            self.record.anchor = (stamp_ns(msg), bytes(msg.data))


def run_live(
    model_dir: Path, bag: Path, drop: str, log_dir: Path
) -> LiveRecord:
    """Run node + replay to the end of the bag; return what the probe recorded.

    The DDS domain is this process's own (from its pid) and discovery stays
    on this host, so a concurrent demo or test run cannot feed it; a fusion node already
    visible there is an error rather than a second source of latents.
    """
    domain_id = 1 + os.getpid() % 100
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read by rclpy.init (the probe) too
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    bin_dir = Path(sys.executable).parent
    node_cmd = [str(bin_dir / "m2vae-fusion"), "--ros-args", "-p", f"model_path:={model_dir}"]
    play_cmd = [str(bin_dir / "m2vae-play"), str(bag), "--topics", "/camera/image_raw", "/scan",
                "--drop", drop, "--wait-for-subscribers"]
    log_dir.mkdir(parents=True, exist_ok=True)
    record = LiveRecord()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    executor = SingleThreadedExecutor(context=context)
    probe = _Probe(record, context)
    executor.add_node(probe)
    processes: list[subprocess.Popen] = []
    with open(log_dir / "fusion_node.log", "w") as node_log:
        try:
            spin_for(executor, seconds=1.0)  # discovery: who else is on this domain?
            if any(name == NODE.lstrip("/") for name, _ in probe.get_node_names_and_namespaces()):
                raise RuntimeError(f"a {NODE} node already runs on ROS_DOMAIN_ID={domain_id}")
            print("$ " + " ".join(node_cmd), flush=True)
            node = subprocess.Popen(node_cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT)
            processes.append(node)
            if not _spin_until(executor, lambda: bool(record.active), node, timeout_s=60):
                raise RuntimeError("m2vae-fusion published no active subset within 60 s; see fusion_node.log")
            print("$ " + " ".join(play_cmd), flush=True)
            play = subprocess.Popen(play_cmd, env=env)
            processes.append(play)
            if not _spin_until(executor, lambda: play.poll() is not None, node, timeout_s=3600):
                raise RuntimeError("the replay did not end within an hour")
            spin_for(executor, seconds=1.0)  # let the last outputs arrive
            if play.returncode != 0:
                raise RuntimeError(f"m2vae-play exited with {play.returncode}")
        finally:
            for process in reversed(processes):
                stop_child(process)
            rclpy.shutdown(context=context)
    return record


def stop_child(process: subprocess.Popen) -> None:
    """Terminate a child (SIGTERM, then SIGKILL after 10 s) so none outlives the demo."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spin_for(executor: SingleThreadedExecutor, seconds: float) -> None:
    """Process callbacks for `seconds` of wall time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def _spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], node: subprocess.Popen,
                timeout_s: float) -> bool:
    """Process callbacks until `done()` (True) or the timeout (False); the node dying is an error."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        if node.poll() is not None:
            raise RuntimeError(f"m2vae-fusion exited with {node.returncode}; see fusion_node.log")
        executor.spin_once(timeout_sec=0.05)
    return True
