"""Planar LiDAR (sensor_msgs/LaserScan) ⇄ ``(1, beams)`` range tensors with a validity mask.

"No return" (+inf, NaN, or a range outside the message's or the spec's limits) is encoded
as 1.0 with mask False, never as 0, which would read as an obstacle touching the robot.
A −inf is REP 117's "too close to measure": a return at the near limit, never free space.

A scan of another beam count or span than the spec's is resampled to the spec's bins:
each bin keeps the nearest return among the beams that land in it, and a bin none lands
in (a scan sparser than the spec) takes the nearest return among the beams whose angular
footprint, half an increment either side, holds the bin's centre. Bins outside the scan's
span stay "no return": nothing was measured there.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from m2vae_ros.codec.binning import angle_bins, bin_width, nearest_per_cell
from m2vae_ros.codec.common import CodecError, Decoded, beyond_share, float_view, stamp_ns
from m2vae_ros.spec import ModalitySpec, ScanPreprocess

NO_RETURN = 1.0
# Reconstructed ranges at or above this fraction of range_max are published as "no return".
NO_RETURN_THRESHOLD = 0.98
MAX_ANGLE_SPAN = 1e4  # rad; real scans stay within a few turns


def decode_laserscan(msg: Any, spec: ModalitySpec) -> Decoded:
    """sensor_msgs/LaserScan → tensor; other beam counts or angular spans are resampled to the spec bins."""
    pre = spec.preprocess
    assert isinstance(pre, ScanPreprocess)
    ranges, angle_min, increment, range_min, range_max = scan_fields(msg)
    angles = angle_min + increment * np.arange(ranges.size, dtype=np.float64)
    low, high = max(range_min, pre.range_min), min(range_max, pre.range_max)
    ranges = np.where(np.isneginf(ranges), np.float32(low), ranges)
    with np.errstate(invalid="ignore"):
        measured = np.isfinite(ranges) & (ranges >= low) & (ranges <= range_max)  # the sensor's returns
        valid = measured & (ranges <= high)
    tensor, mask = bin_ranges(angles[valid], ranges[valid], pre)
    _fill_from_covering_beams(tensor, mask, np.where(valid, ranges, np.inf), angle_min, increment, pre)
    coverage = scan_coverage(angle_min, increment, ranges.size, pre)
    beyond = beyond_share(measured, ~valid)
    return Decoded(tensor, mask, stamp_ns(msg), coverage=coverage, beyond_range=beyond)


def check_laserscan(msg: Any, spec: ModalitySpec) -> int:
    """Every check `decode_laserscan` makes, without the binning: the stamp, or the CodecError."""
    scan_fields(msg)
    return stamp_ns(msg)


def scan_fields(msg: Any) -> tuple[np.ndarray, float, float, float, float]:
    """Validated (ranges, angle_min, angle_increment, range_min, range_max) of a LaserScan.

    The wire format holds float32; rounding the scalars here makes an rclpy message built
    in Python (which keeps doubles until it is serialized) bin exactly like its received twin.
    """
    ranges = float_view(msg.ranges)
    if ranges.size == 0:
        raise CodecError("empty_scan", "LaserScan without ranges")
    angle_min, increment, range_min, range_max = (
        float(np.float32(v)) for v in (msg.angle_min, msg.angle_increment, msg.range_min, msg.range_max)
    )
    if not np.isfinite(increment) or increment == 0.0:
        raise CodecError("size_mismatch", f"LaserScan angle_increment {increment}")
    # NaN limits fail every comparison, so every beam would silently read "no return";
    # an infinite angle_min puts every beam in one bin. range_max = inf is a sensor
    # without a far limit: the spec's range_max bounds it.
    if not np.isfinite(angle_min) or np.isnan([range_min, range_max]).any():
        raise CodecError("non_finite", f"LaserScan angle_min {angle_min}, range_min {range_min}, "
                         f"range_max {range_max}")
    # Bins are int64 multiples of the bin width: a span of 1e30 rad would overflow into bin 0.
    if abs(angle_min) + abs(increment) * ranges.size > MAX_ANGLE_SPAN:
        raise CodecError("size_mismatch", f"LaserScan angles reach beyond {MAX_ANGLE_SPAN:g} rad "
                         f"(angle_min {angle_min}, angle_increment {increment})")
    if range_min >= range_max:
        raise CodecError("bad_range_limits", f"LaserScan range_min {range_min} >= range_max {range_max}")
    return ranges, angle_min, increment, range_min, range_max


def bin_ranges(angles: np.ndarray, ranges: np.ndarray, pre: ScanPreprocess) -> tuple[np.ndarray, np.ndarray]:
    """Valid returns at `angles` → (tensor, mask) of shape (1, beams), nearest return per bin."""
    tensor = np.full((1, pre.beams), NO_RETURN, dtype=np.float32)
    mask = np.zeros((1, pre.beams), dtype=bool)
    bins = angle_bins(angles, pre.angle_min, pre.angle_max, pre.beams)
    inside = bins >= 0
    cells, nearest = nearest_per_cell(bins[inside], ranges[inside])
    tensor[0, cells] = np.minimum(ranges[inside][nearest] / pre.range_max, 1.0)
    mask[0, cells] = True
    return tensor, mask


def _fill_from_covering_beams(tensor: np.ndarray, mask: np.ndarray, returns: np.ndarray, angle_min: float,
                              increment: float, pre: ScanPreprocess) -> None:
    """Bins no return landed in take the nearest return of the beams whose footprint holds their centre.

    `returns`: the scan's ranges with inf for no return. Without this, 180 beams into 360
    bins would show the encoder free space in every second bin, which it learnt as "no
    return". Bins already holding a return are left alone, so a scan as dense as the spec,
    or denser, decodes as before.
    """
    empty = np.flatnonzero(~mask[0])
    if not empty.size:
        return
    nearest = np.full(empty.size, np.inf, dtype=np.float32)
    for position, beam in _neighbour_beams(_bin_centres(pre)[empty], angle_min, increment):
        # A centre half-way between two beams (within float32 rounding) takes the nearer return.
        covers = (np.abs(position - beam) <= 0.5 + 1e-3) & (beam >= 0) & (beam < returns.size)
        nearest[covers] = np.minimum(nearest[covers], returns[beam[covers].astype(np.int64)])
    filled = np.isfinite(nearest)
    tensor[0, empty[filled]] = np.minimum(nearest[filled] / pre.range_max, 1.0)
    mask[0, empty[filled]] = True


@functools.lru_cache(maxsize=64)
def scan_coverage(angle_min: float, increment: float, beams: int, pre: ScanPreprocess) -> float:
    """The fraction of the spec's bins a scan of this geometry reaches (a sensor's geometry is fixed: cached).

    A bin is reached when a beam lands in it or its centre lies in a beam's footprint. The
    others read "no return" whatever the scene: a 270° scanner feeding a 360° model.
    """
    width = bin_width(pre.angle_min, pre.angle_max, pre.beams)
    reach = max(0.5, width / (2 * abs(increment))) + 1e-3  # in beams
    reached = np.zeros(pre.beams, dtype=bool)
    for position, beam in _neighbour_beams(_bin_centres(pre), angle_min, increment):
        reached |= (np.abs(position - beam) <= reach) & (beam >= 0) & (beam < beams)
    return float(reached.mean())


def _bin_centres(pre: ScanPreprocess) -> np.ndarray:
    return pre.angle_min + np.arange(pre.beams) * bin_width(pre.angle_min, pre.angle_max, pre.beams)


def _neighbour_beams(
    angles: np.ndarray, angle_min: float, increment: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(position, beam) pairs of the two beams either side of each angle, positions counted in beams
    from beam 0 in the scan's direction; the second two reach beam 0 going round from the last."""
    step = abs(increment)
    forward = np.mod((angles - angle_min) * math.copysign(1.0, increment), 2 * math.pi) / step
    return [(position, beam) for position in (forward, forward - 2 * math.pi / step)
            for beam in (np.floor(position), np.ceil(position))]


def scan_message(tensor: np.ndarray, spec: ModalitySpec, header: Any) -> Any:
    """(1, beams) tensor → sensor_msgs/LaserScan with the spec's angles; values ≥ 0.98 become inf."""
    from sensor_msgs.msg import LaserScan

    pre = spec.preprocess
    assert isinstance(pre, ScanPreprocess)
    values = np.asarray(tensor, np.float32).reshape(-1)
    ranges = values * np.float32(pre.range_max)
    ranges[values >= NO_RETURN_THRESHOLD] = np.inf
    increment = bin_width(pre.angle_min, pre.angle_max, pre.beams)
    return LaserScan(
        header=header,
        angle_min=pre.angle_min,
        angle_max=pre.angle_min + increment * (pre.beams - 1),
        angle_increment=increment,
        range_min=pre.range_min,
        range_max=pre.range_max,
        ranges=ranges,
    )
