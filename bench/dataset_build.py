"""Dataset build throughput against plain rosbags deserialisation of the same bag.

Generates a recording (default 60 s of 640×480 rgb8 at 30 Hz + 360-beam scans at 10 Hz)
in a temporary directory, then alternates two passes over it: plain rosbags iteration +
CDR deserialisation of every message (the baseline), and a full `build_dataset` (read,
deserialise, decode, synchronise, write). Prints messages/s, MB/s and the ratio of the
median times (one untimed warm-up pair first) and the per-pair spread; the target is a
build costing at most 2× the baseline.

    .venv/bin/python bench/dataset_build.py [--seconds 60] [--storage mcap] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from m2vae_training.config import load_train_config
from m2vae_training.dataset import build_dataset
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from m2vae_ros.cli_args import positive_float, positive_int

STORE = get_typestore(Stores.ROS2_KILTED)
NS = 1_000_000_000


def header(stamp: int) -> object:
    time_type, header_type = STORE.types["builtin_interfaces/msg/Time"], STORE.types["std_msgs/msg/Header"]
    return header_type(stamp=time_type(sec=stamp // NS, nanosec=stamp % NS), frame_id="base_link")


def write_recording(path: Path, seconds: float, storage: str) -> None:
    """Camera frames (a few distinct random images, cycled) and scans with realistic stamp jitter."""
    image_type, scan_type = STORE.types["sensor_msgs/msg/Image"], STORE.types["sensor_msgs/msg/LaserScan"]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, 480 * 640 * 3, dtype=np.uint8) for _ in range(4)]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        camera = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=STORE)
        lidar = writer.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=STORE)
        events = [(round(i * NS / 30), "camera", i) for i in range(int(seconds * 30))]
        events += [(round(i * NS / 10) + 3_000_000, "lidar", i) for i in range(int(seconds * 10))]
        for stamp, kind, i in sorted(events):
            if kind == "camera":
                msg = image_type(header=header(stamp), height=480, width=640, encoding="rgb8", is_bigendian=0,
                                 step=640 * 3, data=frames[i % len(frames)])
                writer.write(camera, stamp + 1_000_000, STORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            else:
                ranges = (2.0 + np.sin(np.arange(360) / 10.0 + i)).astype(np.float32)
                msg = scan_type(header=header(stamp), angle_min=-math.pi, angle_max=math.pi - math.pi / 180,
                                angle_increment=math.pi / 180, time_increment=0.0, scan_time=0.1,
                                range_min=0.1, range_max=8.0, ranges=ranges,
                                intensities=np.zeros(0, np.float32))
                writer.write(lidar, stamp + 1_000_000, STORE.serialize_cdr(msg, "sensor_msgs/msg/LaserScan"))


def plain_pass(path: Path) -> tuple[int, int]:
    """The baseline: iterate and deserialise every message; returns (messages, payload bytes)."""
    messages = size = 0
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            STORE.deserialize_cdr(raw, connection.msgtype)
            messages += 1
            size += len(raw)
    return messages, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_float, default=60.0)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed pairs, after one untimed warm-up pair")
    args = parser.parse_args()
    config = load_train_config()
    with tempfile.TemporaryDirectory(prefix="m2vae-bench-") as tmp:
        bag = Path(tmp) / "bag"
        start = time.perf_counter()
        write_recording(bag, args.seconds, args.storage)
        print(f"wrote {args.seconds:.0f} s {args.storage} bag in {time.perf_counter() - start:.1f} s")
        plain_times, build_times = [], []
        # Interleaved, so drift in machine load hits both alike; pair 0 warms rosbags' generated
        # deserialisers and the builder's decode thread and is not timed.
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            messages, size = plain_pass(bag)
            plain_times.append(time.perf_counter() - start)
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            start = time.perf_counter()
            dataset = build_dataset([bag], config, Path(tmp) / "out", progress=False)
            build_times.append(time.perf_counter() - start)
        plain_times, build_times = plain_times[1:], build_times[1:]
        plain, build = statistics.median(plain_times), statistics.median(build_times)
        ratios = sorted(b / p for b, p in zip(build_times, plain_times, strict=True))
        mb = size / 1e6
        print(f"messages: {messages}, payload: {mb:.0f} MB, samples: {len(dataset)}")
        for name, seconds in (("plain rosbags read+deserialise", plain), ("build_dataset", build)):
            print(f"{name:31s} {messages / seconds:8.0f} msg/s {mb / seconds:8.1f} MB/s ({seconds:.2f} s)")
        print(f"build / plain time ratio: {build / plain:.2f} (target ≤ 2.0); per pair "
              f"{ratios[0]:.2f}–{ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
