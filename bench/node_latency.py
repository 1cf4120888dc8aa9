"""End-to-end latency of the fusion node against a pass-through relay, measured in one run.

Four processes on a private ROS domain: a sensor publisher (640×480 rgb8 camera at 30 Hz,
360-beam LaserScan at 10 Hz, stamped at publish time), `m2vae-fusion` (the shipped params
file; the model resizes the camera itself), a relay that answers each camera and scan
message with a latent-sized message carrying its header (the cost of rclpy + DDS alone for
what the node receives and sends), and this process, which subscribes to
the inputs and both outputs and records receive time − header stamp. A latent carries
its newest input's stamp, so each latent is matched to the sensor message that triggered
it and compared with the relay of the same sensor: on two shared cores the camera may
fall below the scan's 10 Hz, and then the node infers on scans. "forward" is the encoder's
time in this process, called every 50 ms as the node calls it (median of 60 calls):
called that rarely, the pass takes about 2–4× longer than in a tight loop (caches gone cold
between calls), so the tight-loop time, also printed, would charge the node for the
machine. The node's own report on /diagnostics (median of its one-second means) is
printed beside it but not used: it includes the node's waits for the GIL, so a slowdown
there would raise the limit with the latency. Targets, per triggering sensor: fusion p50 ≤ relay p50
+ 1.5 × forward; fusion p99 ≤ 3 × its p50, and no growth over the run (last fifth's p50
vs the first fifth's).
CPU is read from /proc/<pid>/stat over the measured window (100 % = one core).

    .venv/bin/python bench/node_latency.py [--duration 60] [--model RUN_DIR/model]

Without --model an untrained model of config/train.yaml's size is used: latency does
not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from m2vae_training.config import load_train_config
from m2vae_training.demo_live import spin_for, stop_child
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, LaserScan

from m2vae_ros.artifact import load_model, save_model
from m2vae_ros.cli_args import positive_float
from m2vae_ros.inference import LatentFusion
from m2vae_ros.latent_msg import latent_image
from m2vae_ros.model import M2VAE
from m2vae_ros.qos import output_qos, sensor_qos
from m2vae_ros.subsets import all_subsets

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CAMERA_TOPIC, SCAN_TOPIC = "/camera/image_raw", "/scan"
RELAY_CAMERA_TOPIC, RELAY_SCAN_TOPIC = "/relay/image_raw", "/relay/scan"
LATENT_TOPIC = "/m2vae_fusion/latent"
WARMUP_S = 5.0  # after every stream is heard: the node's first inferences are slower
START_LIMIT_S = 120.0  # for the three processes to start and every stream to be heard
FORWARD_ITERATIONS = 200
COLD_ITERATIONS, COLD_PAUSE_S = 60, 0.05  # called as rarely as the node calls it: caches gone cold


# --- roles run as child processes ---------------------------------------------------------


def run_sensors() -> None:
    """Camera 30 Hz + LiDAR 10 Hz, each stamped with the wall clock just before publishing."""
    rclpy.init()
    node = Node("bench_sensors")
    camera = node.create_publisher(Image, CAMERA_TOPIC, sensor_qos("best_effort"))
    lidar = node.create_publisher(LaserScan, SCAN_TOPIC, sensor_qos("best_effort"))
    # Built once: filling a 921,600-byte data field from Python takes longer than a 30 Hz period.
    frame = Image(height=480, width=640, encoding="rgb8", is_bigendian=0, step=640 * 3,
                  data=np.random.default_rng(0).integers(0, 256, 480 * 640 * 3, dtype=np.uint8).tobytes())
    scan = LaserScan(angle_min=-np.pi, angle_max=np.pi, angle_increment=2 * np.pi / 360, range_min=0.1,
                     range_max=8.0, ranges=np.linspace(0.5, 7.5, 360, dtype=np.float32).tolist())

    def publish_camera() -> None:
        frame.header.stamp = node.get_clock().now().to_msg()
        camera.publish(frame)

    def publish_lidar() -> None:
        scan.header.stamp = node.get_clock().now().to_msg()
        lidar.publish(scan)

    node.create_timer(1 / 30, publish_camera)
    node.create_timer(1 / 10, publish_lidar)
    _spin_until_interrupted(node)


def run_relay(latent_dim: int) -> None:
    """Answer every camera and scan message with a latent of zeros carrying its header: the latency
    floor of a Python rclpy node that receives what the fusion node receives and sends what it sends.

    Republishing the 921 KB frame itself would charge the baseline a second large transfer
    the node never makes (about 1 ms), and flatter the node.
    """
    rclpy.init()
    node = Node("bench_relay")
    zeros = np.zeros(latent_dim, np.float32)
    streams = ((Image, CAMERA_TOPIC, RELAY_CAMERA_TOPIC), (LaserScan, SCAN_TOPIC, RELAY_SCAN_TOPIC))
    for msg_type, source, target in streams:
        publisher = node.create_publisher(Image, target, output_qos())

        def answer(msg: Image | LaserScan, publisher=publisher) -> None:
            latent = latent_image(zeros, zeros, 0, msg.header.frame_id)
            latent.header.stamp = msg.header.stamp
            publisher.publish(latent)

        node.create_subscription(msg_type, source, answer, sensor_qos("best_effort"))
    _spin_until_interrupted(node)


def _spin_until_interrupted(node: Node) -> None:
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# --- measurement --------------------------------------------------------------------------


def default_model(directory: Path) -> Path:
    """An untrained model with config/train.yaml's spec (same network sizes as a trained one)."""
    torch.manual_seed(0)
    return save_model(M2VAE(load_train_config().spec), directory / "model")


def forward_ms(model_dir: Path, iterations: int, pause_s: float) -> float:
    """Median encoder time of the full subset, batch 1, one torch thread, `pause_s` between calls."""
    torch.set_num_threads(1)
    loaded = load_model(model_dir)
    fusion = LatentFusion(loaded.model, "cpu")
    rng = np.random.default_rng(0)
    tensors = {m.name: rng.random(m.shape, dtype=np.float32) for m in loaded.spec.modalities}
    full = all_subsets(len(loaded.spec.modalities))[-1]
    times = []
    for i in range(iterations + 20):
        time.sleep(pause_s)
        started = time.perf_counter()
        fusion.encode(tensors, full)
        if i >= 20:
            times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat, after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LatencyProbe(Node):
    """Receive time − header stamp of the inputs, the relay's and the node's outputs, from raw CDR."""

    def __init__(self) -> None:
        super().__init__("bench_probe")
        self.recording = False
        self.heard: set[str] = set()  # streams that delivered a message, recording or not
        self.samples: dict[str, list[tuple[int, float]]] = {
            name: [] for name in ("camera", "scan", "relay camera", "relay scan", "fusion")
        }
        self.node_values: dict[str, str] = {}
        self.node_forward_ms: list[float] = []  # the node's one-second means while recording
        topics = (("camera", Image, CAMERA_TOPIC), ("scan", LaserScan, SCAN_TOPIC),
                  ("relay camera", Image, RELAY_CAMERA_TOPIC), ("relay scan", Image, RELAY_SCAN_TOPIC),
                  ("fusion", Image, LATENT_TOPIC))
        for name, msg_type, topic in topics:
            self.create_subscription(msg_type, topic, lambda raw, name=name: self._record(name, raw),
                                     sensor_qos("best_effort"), raw=True)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _record(self, name: str, raw: bytes) -> None:
        received_ns = time.time_ns()
        self.heard.add(name)
        if self.recording:
            sec, nanosec = struct.unpack_from("<iI", raw, 4)  # header.stamp right after the CDR header
            stamp = sec * 1_000_000_000 + nanosec
            self.samples[name].append((stamp, (received_ns - stamp) / 1e6))

    def latencies(self) -> dict[str, list[float]]:
        """Latencies per path; the node's split by the sensor whose stamp its latent carries."""
        paths = {name: [ms for _, ms in values] for name, values in self.samples.items() if name != "fusion"}
        camera_stamps = {stamp for stamp, _ in self.samples["camera"]}
        scan_stamps = {stamp for stamp, _ in self.samples["scan"]}
        paths["fusion camera"] = [ms for stamp, ms in self.samples["fusion"] if stamp in camera_stamps]
        paths["fusion scan"] = [ms for stamp, ms in self.samples["fusion"] if stamp in scan_stamps]
        return paths

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": inference"):
                self.node_values = {kv.key: kv.value for kv in status.values}
                if self.recording and int(self.node_values["inferences_last_second"]):
                    self.node_forward_ms.append(float(self.node_values["latency_mean_ms"]))


def summarize(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies)
    fifth = max(1, len(values) // 5)
    return {
        "n": len(values),
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "first": float(np.percentile(values[:fifth], 50)),
        "last": float(np.percentile(values[-fifth:], 50)),
    }


def measure(model_dir: Path, duration: float, node_params: list[str]) -> None:
    domain = str(1 + os.getpid() % 100)
    env = {**os.environ, "ROS_DOMAIN_ID": domain, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    tight_forward = forward_ms(model_dir, FORWARD_ITERATIONS, 0.0)
    forward = forward_ms(model_dir, COLD_ITERATIONS, COLD_PAUSE_S)
    latent = str(load_model(model_dir).spec.latent_dim)

    script = [sys.executable, str(Path(__file__).resolve()), "--role"]
    params_file = REPO / "config" / "fusion.yaml"
    fusion_cmd = [str(VENV_BIN / "m2vae-fusion"), "--ros-args", "--params-file", str(params_file),
                  "-p", f"model_path:={model_dir}", "-p", "device:=cpu",
                  *(arg for param in node_params for arg in ("-p", param))]
    commands = {"fusion": fusion_cmd, "relay": [*script, "relay", "--latent-dim", latent],
                "sensors": [*script, "sensors"]}
    processes = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, cmd in commands.items()}
    rclpy.init()
    probe = LatencyProbe()
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    try:
        wait_until_heard(executor, probe, processes)
        spin_for(executor, WARMUP_S)
        cpu_start = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        probe.recording = True
        started = time.monotonic()
        spin_for(executor, duration)
        elapsed = time.monotonic() - started
        probe.recording = False
        cpu = {name: 100 * (cpu_seconds(p.pid) - cpu_start[name]) / elapsed for name, p in processes.items()}
    finally:
        for process in processes.values():
            stop_child(process)
        probe.destroy_node()
        rclpy.try_shutdown()
    report(probe, forward, tight_forward, cpu, duration)


def wait_until_heard(executor: SingleThreadedExecutor, probe: LatencyProbe,
                     processes: dict[str, subprocess.Popen]) -> None:
    """Spin until every stream has delivered, so that a slow start (three processes importing torch
    and rclpy at once) is not measured; exit naming what stayed silent or which process ended."""
    deadline = time.monotonic() + START_LIMIT_S
    while set(probe.samples) - probe.heard:
        ended = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
        if ended or time.monotonic() > deadline:
            silent = sorted(set(probe.samples) - probe.heard)
            why = f"ended with exit status {ended}" if ended else f"started, but after {START_LIMIT_S:.0f} s"
            sys.exit(f"node_latency: nothing heard on {', '.join(silent)}: the processes {why}")
        spin_for(executor, 0.5)


def report(
    probe: LatencyProbe, forward: float, tight_forward: float, cpu: dict[str, float], duration: float
) -> None:
    latencies = probe.latencies()
    if not latencies["relay camera"] or not (latencies["fusion camera"] or latencies["fusion scan"]):
        sys.exit(f"no samples received: {({k: len(v) for k, v in latencies.items()})}")
    if not probe.node_forward_ms:
        sys.exit("the node published no inference diagnostics while recording")
    node_forward = float(np.median(probe.node_forward_ms))
    stats = {name: summarize(values) for name, values in latencies.items() if values}
    print(f"\n### Fusion node latency ({duration:.0f} s; 640×480 rgb8 @ 30 Hz + 360-beam scan @ 10 Hz)\n")
    print("| path | samples | p50 ms | p99 ms | first-fifth p50 | last-fifth p50 | CPU % of its process |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = (
        ("camera, received directly (transport only)", "camera", "sensors"),
        ("scan, received directly (transport only)", "scan", "sensors"),
        ("relay: camera → latent-sized answer", "relay camera", "relay"),
        ("relay: scan → latent-sized answer", "relay scan", "relay"),
        ("fusion: camera-triggered → ~/latent", "fusion camera", "fusion"),
        ("fusion: scan-triggered → ~/latent", "fusion scan", "fusion"),
    )
    for title, name, process in rows:
        if name in stats:
            st = stats[name]
            print(f"| {title} | {st['n']} | {st['p50']:.2f} | {st['p99']:.2f} | {st['first']:.2f} | "
                  f"{st['last']:.2f} | {cpu[process]:.0f} |")
    print(f"\nencoder forward, every {COLD_PAUSE_S * 1e3:.0f} ms in this process (the limit's): "
          f"{forward:.2f} ms; "
          f"back to back: {tight_forward:.2f} ms; as the node reports it (median of "
          f"{len(probe.node_forward_ms)} one-second means): {node_forward:.2f} ms; node diagnostics: "
          f"dropped_triggers={probe.node_values.get('dropped_triggers', '?')}, "
          f"inferences={probe.node_values.get('inferences', '?')}\n")
    checks = []
    for sensor in ("camera", "scan"):
        fusion, relay = stats.get(f"fusion {sensor}"), stats.get(f"relay {sensor}")
        if fusion is None or relay is None:
            continue
        checks += [
            (f"{sensor}-triggered p50 ≤ relay {sensor} p50 + 1.5 × forward", fusion["p50"],
             relay["p50"] + 1.5 * forward),
            (f"{sensor}-triggered p99 ≤ 3 × p50", fusion["p99"], 3 * fusion["p50"]),
            (f"{sensor}-triggered no growth: last-fifth p50 ≤ 1.5 × first-fifth p50", fusion["last"],
             1.5 * fusion["first"]),
        ]
    print("| check | value ms | limit ms | ratio | result |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, value, limit in checks:
        verdict = "PASS" if value <= limit else "FAIL"
        print(f"| {label} | {value:.2f} | {limit:.2f} | {value / limit:.2f} | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive_float, default=60.0,
                        help="measured seconds (300: full check)")
    parser.add_argument("--model", type=Path, help="model directory (default: untrained, train.yaml's size)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra fusion node parameter, e.g. publish_reconstructions:=false (repeatable)")
    parser.add_argument("--role", choices=("sensors", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--latent-dim", type=int, help=argparse.SUPPRESS)  # the relay's answer size
    args = parser.parse_args()
    if args.role == "sensors":
        run_sensors()
    elif args.role == "relay":
        run_relay(args.latent_dim)
    elif args.model:
        measure(args.model, args.duration, args.param)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(default_model(Path(tmp)), args.duration, args.param)


if __name__ == "__main__":
    main()
