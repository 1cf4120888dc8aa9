"""Nearest return per cell: the one reduction behind scans, range images and depth images.

Several LiDAR returns may land in one angular bin (a denser scan, a point cloud), several
depth pixels in one pixel of a smaller image; the closest one is what the sensor would have
reported, so each cell keeps its minimum range.
"""

from __future__ import annotations

import math

import numpy as np


def nearest_per_cell(cells: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For integer cell ids and ranges of equal length: (unique cells, index of the nearest return).

    Sorting by (cell, range) and keeping each cell's first entry is vectorised and, unlike
    ``np.minimum.at``, also tells which point won (needed to carry its intensity along).
    """
    order = np.lexsort((ranges, cells))
    sorted_cells = cells[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_cells[1:] != sorted_cells[:-1]
    return sorted_cells[first], order[first]


def nearest_per_grid(ranges: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2-D grid of ranges (+inf: no return) resized to height × width, each cell keeping its nearest.

    Shrinking an axis takes the minimum over the source cells each output cell covers
    (``np.minimum.reduceat``); growing one repeats the source cell under each output cell's
    centre. An output cell whose source cells are all +inf stays +inf.
    """
    # Along the rows first: a reduction over contiguous memory, and the columns' pass then runs
    # on the narrowed image (twice as fast as the other order on a 640 × 480 image).
    return _nearest_along(_nearest_along(ranges, width, axis=1), height, axis=0)


def _nearest_along(ranges: np.ndarray, size: int, axis: int) -> np.ndarray:
    source = ranges.shape[axis]
    if size >= source:
        return np.take(ranges, (np.arange(size) * 2 + 1) * source // (2 * size), axis=axis)
    # Source cell j falls in output cell j·size // source; output cell i starts at ceil(i·source / size).
    starts = (np.arange(size) * source + size - 1) // size
    return np.minimum.reduceat(ranges, starts, axis=axis)


def bin_width(angle_min: float, angle_max: float, bins: int) -> float:
    """Angle between neighbouring bins, read the way a LaserScan reads its limits.

    In a LaserScan `angle_max` is the angle of the last beam, so a partial span of N
    bins has N − 1 steps: a 270° driver's 1081 beams fill 1081 bins exactly. A full
    turn is the exception, as −π and π are one direction: its N bins have N steps.
    """
    span = angle_max - angle_min
    return span / bins if is_full_turn(span) else span / max(bins - 1, 1)


def is_full_turn(span: float) -> bool:
    return span >= 2 * math.pi - 1e-6


def angle_bins(angles: np.ndarray, angle_min: float, angle_max: float, bins: int) -> np.ndarray:
    """Bin index of each angle; bin i is centred on ``angle_min + i·bin_width``.

    Angles are taken modulo a full turn, so a sensor reporting 0…2π feeds a −π…π model
    (or a partial span) like one reporting −π…π. A span of a full turn wraps around (the
    last bin's right half meets the first bin); otherwise angles outside the span get −1.
    """
    width = bin_width(angle_min, angle_max, bins)
    if is_full_turn(angle_max - angle_min):
        return np.rint((angles - angle_min) / width).astype(np.int64) % bins
    # Offset by half a bin so that angles just below angle_min still land in bin 0.
    relative = np.mod(angles - angle_min + width / 2, 2 * math.pi) - width / 2
    index = np.rint(relative / width).astype(np.int64)
    # A span short of a full turn by less than a bin: the angles just below angle_min are
    # also within half a bin of the last bin, and belong to whichever centre is nearer.
    wrapped = relative < 0
    index[wrapped & (np.abs(relative + 2 * math.pi - (bins - 1) * width) < -relative)] = bins - 1
    index[index >= bins] = -1
    return index
