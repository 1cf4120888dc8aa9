"""Per-message decode time of each sensor codec, against the colour camera's rgb8 decode.

Usage: python bench/decode_speed.py [--repeats 300] [--size 640x480]

The fusion node decodes every message it hears on its callback thread, and the dataset
build every message a sample keeps, so a codec's time per message is its share of both.
The messages come from the simulator at a robot camera's size: the colour image (rgb8,
and JPEG as image_transport's compressed plugin sends it), the depth image registered to
it (16UC1, and compressedDepth PNG), a 360-beam LaserScan and a 16-ring point cloud,
each decoded into `config/train.yaml`'s shipped shapes (a 64 × 64 depth image and a
16 × 360 range image for the two it does not ship). The cases run round-robin, one
decode each per round, so that the machine's noise falls on all of them alike; the
median per case is printed with its ratio to the rgb8 decode measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from m2vae_ros.cli_args import positive_int
from m2vae_ros.codec import decode_message
from m2vae_ros.sim import messages
from m2vae_ros.sim.camera import Camera
from m2vae_ros.sim.cli import parse_image_size
from m2vae_ros.sim.lidar import PlanarLidar, SpinningLidar
from m2vae_ros.sim.recorder import LIDAR_RATE, START_NS
from m2vae_ros.sim.world import World
from m2vae_ros.spec import (
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    RangeImagePreprocess,
    ScanPreprocess,
)

BASELINE = "rgb8 image"


def cases(width: int, height: int) -> dict[str, Callable[[], object]]:
    """Name → a call decoding one simulated message of that sensor."""
    world, rng = World(1), np.random.default_rng(0)
    state, camera = world.state(2.0), Camera(width, height)
    rgb = camera.render(state, world.arena, rng)
    millimetres = camera.depth(state, world.arena, rng)
    scanner = PlanarLidar()
    ranges, intensities = scanner.scan(state, world.arena, rng)
    points = SpinningLidar().points(state, world.arena, rng)
    colour = ModalitySpec("camera", "image", ImagePreprocess())
    depth = ModalitySpec("depth", "depth", DepthPreprocess())
    scan = ModalitySpec("lidar", "scan", ScanPreprocess())
    cloud = ModalitySpec("lidar3d", "range_image", RangeImagePreprocess())
    built = {
        BASELINE: (messages.image(START_NS, rgb), colour),
        "JPEG image": (messages.compressed_image(START_NS, rgb), colour),
        "16UC1 depth": (messages.depth_image(START_NS, millimetres), depth),
        "compressedDepth PNG": (messages.compressed_depth_image(START_NS, millimetres), depth),
        "LaserScan": (messages.laser_scan(START_NS, scanner, ranges, intensities, LIDAR_RATE), scan),
        "PointCloud2 16 rings": (messages.point_cloud(START_NS, points), cloud),
    }
    return {name: (lambda msg=msg, spec=spec: decode_message(msg, spec))
            for name, (msg, spec) in built.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=300, help="decodes per case (default 300)")
    parser.add_argument("--size", type=parse_image_size, default=(640, 480), metavar="WxH",
                        help="camera and depth image size (default 640x480)")
    args = parser.parse_args()
    decoders = cases(*args.size)
    for decode in decoders.values():  # warm-up: OpenCV's and numpy's first calls
        decode()
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(args.repeats):
        for name, decode in decoders.items():
            started = time.perf_counter()
            decode()
            times[name].append(time.perf_counter() - started)
    baseline = statistics.median(times[BASELINE])
    width, height = args.size
    print(f"\n### Decode time per message ({width}×{height} images, {args.repeats} rounds, round-robin)\n")
    print("| message | median µs | / rgb8 image |")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e6:.0f} | {median / baseline:.2f} |")


if __name__ == "__main__":
    main()
