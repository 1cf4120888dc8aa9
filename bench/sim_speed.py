"""How fast `m2vae-sim` records, against the bare cost of writing the same messages.

Usage: python bench/sim_speed.py [--duration 60] [--repeats 3] [--storage mcap] [--image-size 64x64]
                                 [--no-points]

Both measurements run now, on this machine, alternated in pairs after an untimed 2 s
warm-up pair (the first simulation pays one-off costs the baseline after it would not):
the full simulation (render, ray-cast, serialize, write), then the baseline — the same
number of messages per topic, built once up front, only serialized and written to a bag
of the same storage. Medians over the pairs are printed, with the spread of the per-pair
ratio. The ratio says
how much the simulation itself costs on top of the unavoidable I/O; "× real time" is
simulated seconds per wall-clock second (the target is ≥ 20× for the default sensors).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer

from m2vae_ros.cli_args import positive_float, positive_int
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

TARGET_REAL_TIME = 20.0  # simulated seconds per wall-clock second, camera + scan + 3-D LiDAR


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
    parser.add_argument("--duration", type=positive_float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--image-size", type=parse_image_size, default=(64, 64))
    parser.add_argument("--compressed", action="store_true")
    parser.add_argument("--no-points", action="store_true")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed pairs after the warm-up pair")
    args = parser.parse_args()
    width, height = args.image_size
    options = {"compressed": args.compressed, "points": not args.no_points, "image_size": (width, height)}

    def pair(directory: Path, duration: float) -> tuple[float, float, int]:
        """(simulation seconds, baseline seconds, messages) of one simulation and its baseline."""
        summary = simulate(directory / "sim", duration, args.seed, storage=args.storage, **options)
        sim = Simulation(duration, args.seed, **options)
        baseline = write_prebuilt(directory / "baseline", args.storage, sim, summary.counts)
        return summary.seconds, baseline, sum(summary.counts.values())

    with tempfile.TemporaryDirectory() as tmp:
        pair(Path(tmp) / "warm-up", 2.0)
        pairs = [pair(Path(tmp) / str(i), args.duration) for i in range(args.repeats)]

    simulated, baseline = (statistics.median(p[i] for p in pairs) for i in (0, 1))
    ratios = sorted(s / b for s, b, _ in pairs)
    print(
        f"sensors: image {width}x{height}{' jpeg' if args.compressed else ''}, scan"
        f"{', points' if options['points'] else ''}; storage {args.storage}; {pairs[0][2]} messages; "
        f"median of {args.repeats} pair{'s' if args.repeats > 1 else ''}"
    )
    print(f"simulate:         {simulated:7.2f} s  {args.duration / simulated:7.1f}× real time "
          f"(target ≥ {TARGET_REAL_TIME:.0f}× for the default sensors)")
    print(f"write prebuilt:   {baseline:7.2f} s  {args.duration / baseline:7.1f}× real time")
    spread = f"per pair {ratios[0]:.2f}–{ratios[-1]:.2f}"
    print(f"simulation / plain write: {statistics.median(ratios):.2f}× ({spread})")


if __name__ == "__main__":
    main()
