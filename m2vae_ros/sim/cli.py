"""`m2vae-sim`: write a simulated camera + LiDAR recording with ground truth as a rosbag2 bag."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from m2vae_ros.sim.recorder import STORAGES, simulate
from m2vae_ros.sim.timing import SimError, parse_dropout
from m2vae_ros.sim.world import EPISODE_SECONDS, Scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        scenario = Scenario(max_distance=args.max_distance, look_away=args.look_away)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        drops = [window for text in args.drop for window in parse_dropout(text, points=not args.no_points)]
        summary = simulate(
            args.out,
            args.duration,
            args.seed,
            storage=args.storage,
            drops=drops,
            compressed=args.compressed,
            points=not args.no_points,
            depth=args.depth,
            image_size=args.image_size,
            episode_seconds=args.episode_seconds,
            scenario=scenario,
            progress=True,
        )
    except SimError as exc:
        print(f"m2vae-sim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"m2vae-sim: interrupted; nothing written to {args.out}", file=sys.stderr)
        return 130
    print(summary.line())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2vae-sim",
        description="Simulate a robot in a walled arena looking at a red cylinder, red box or green "
        "cylinder, and record camera (and with --depth a depth camera), LiDAR and ground truth as a "
        "rosbag2 bag.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output bag directory (must not exist)")
    parser.add_argument("--duration", type=float, required=True, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same messages (default 0)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="default mcap")
    parser.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="SENSOR@T0:T1",
        help="no messages of SENSOR (camera, depth, scan, points, or lidar = scan+points) from T0 to T1 "
        "seconds after the start; repeatable",
    )
    parser.add_argument("--compressed", action="store_true", help="JPEG on /camera/image_raw/compressed (and "
                        "with --depth a compressedDepth PNG on /camera/depth/image_raw/compressedDepth)")
    parser.add_argument("--no-points", action="store_true", help="leave out the 3-D LiDAR (/points)")
    parser.add_argument("--depth", action="store_true", help="add a depth camera registered to the colour "
                        "one (/camera/depth/image_raw, 16UC1 millimetres)")
    parser.add_argument(
        "--image-size", type=parse_image_size, default=(64, 64), metavar="WxH", help="default 64x64"
    )
    parser.add_argument(
        "--episode-seconds", type=float, default=EPISODE_SECONDS,
        help=f"seconds per object (class and pose), default {EPISODE_SECONDS:g}"
    )
    parser.add_argument(
        "--max-distance",
        type=float,
        default=Scenario.max_distance,
        metavar="METRES",
        help="farthest the robot gets from the object, default 4 (an inspection: 2.5)",
    )
    parser.add_argument(
        "--look-away",
        type=float,
        default=Scenario.look_away,
        metavar="P",
        help="probability that the robot turns the object out of the camera's view at a keyframe, "
        "default 0.15 (an inspection: 0)",
    )
    return parser


def parse_image_size(text: str) -> tuple[int, int]:
    """``WxH`` → (width, height), for argparse."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(
            f"image size {text!r} is not WxH with positive integers, e.g. 640x480"
        )
    return int(width), int(height)
