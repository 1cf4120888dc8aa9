"""How fast `m2vae-sim` records, against the bare cost of writing the same messages.

Usage: python bench/sim_speed.py [--duration 60] [--storage mcap] [--image-size 64x64] [--no-points]

Both measurements run now, on this machine: first the full simulation (render, ray-cast,
serialize, write), then the baseline — the same number of messages per topic, built
once up front, only serialized and written to a bag of the same storage. The ratio says
how much the simulation itself costs on top of the unavoidable I/O; "× real time" is
simulated seconds per wall-clock second (the target is ≥ 20× for the default sensors).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer

from m2vae_ros.sim import messages
from m2vae_ros.sim.cli import parse_image_size
from m2vae_ros.sim.recorder import (
    CAMERA_INFO_TOPIC,
    LIDAR_RATE,
    MARKER_TOPIC,
    POINTS_TOPIC,
    ROBOT_POSE_TOPIC,
    SCAN_TOPIC,
    START_NS,
    STORAGES,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    Simulation,
    simulate,
)


def prebuilt_messages(sim: Simulation) -> dict[str, object]:
    """One message per topic, built from the simulation's own sensors at t = 1 s."""
    state = sim.world.state(1.0)
    rng = np.random.default_rng(0)
    rgb = sim.camera.render(state, sim.world.arena, rng)
    ranges, intensities = sim.scanner.scan(state, sim.world.arena, rng)
    built = {
        sim.camera_topic: (messages.compressed_image if sim.compressed else messages.image)(START_NS, rgb),
        SCAN_TOPIC: messages.laser_scan(START_NS, sim.scanner, ranges, intensities, LIDAR_RATE),
        CAMERA_INFO_TOPIC: messages.camera_info(START_NS, sim.camera),
        MARKER_TOPIC: messages.object_marker(START_NS, state),
        ROBOT_POSE_TOPIC: messages.robot_pose(START_NS, state),
        TF_TOPIC: messages.robot_transform(START_NS, state),
        TF_STATIC_TOPIC: messages.sensor_transforms(START_NS, sim.camera, sim.scanner, sim.lidar),
    }
    if sim.points:
        built[POINTS_TOPIC] = messages.point_cloud(START_NS, sim.lidar.points(state, sim.world.arena, rng))
    return built


def write_prebuilt(out: Path, storage: str, sim: Simulation, counts: dict[str, int]) -> float:
    """Seconds to serialize and write counts[topic] copies of each prebuilt message."""
    built = prebuilt_messages(sim)
    started = time.perf_counter()
    with Writer(out, version=9, storage_plugin=STORAGES[storage]) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=messages.TYPESTORE)
            for topic, msgtype in sim.topics.items()
        }
        for topic, count in counts.items():
            for i in range(count):
                writer.write(connections[topic], START_NS + i, messages.serialize(built[topic]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--image-size", type=parse_image_size, default=(64, 64))
    parser.add_argument("--compressed", action="store_true")
    parser.add_argument("--no-points", action="store_true")
    args = parser.parse_args()
    width, height = args.image_size
    options = {"compressed": args.compressed, "points": not args.no_points, "image_size": (width, height)}

    with tempfile.TemporaryDirectory() as tmp:
        summary = simulate(Path(tmp) / "sim", args.duration, args.seed, storage=args.storage, **options)
        sim = Simulation(args.duration, args.seed, **options)
        baseline = write_prebuilt(Path(tmp) / "baseline", args.storage, sim, summary.counts)

    total = sum(summary.counts.values())
    print(
        f"sensors: image {width}x{height}{' jpeg' if args.compressed else ''}, scan"
        f"{', points' if options['points'] else ''}; storage {args.storage}; {total} messages"
    )
    print(f"simulate:         {summary.seconds:7.2f} s  {summary.realtime_factor:7.1f}× real time")
    print(f"write prebuilt:   {baseline:7.2f} s  {args.duration / baseline:7.1f}× real time")
    print(f"simulation / plain write: {summary.seconds / baseline:.2f}×")


if __name__ == "__main__":
    main()
