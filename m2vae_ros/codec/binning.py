"""Nearest return per cell: the one reduction behind scans and range images.

Several LiDAR returns may land in one angular bin (a denser scan, a point cloud); the
closest one is what the sensor would have reported, so each cell keeps its minimum range.
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


def angle_bins(angles: np.ndarray, angle_min: float, angle_max: float, bins: int) -> np.ndarray:
    """Bin index of each angle; bin i is centred on ``angle_min + i·(angle_max − angle_min)/bins``.

    Angles are taken modulo a full turn, so a sensor reporting 0…2π feeds a −π…π model
    (or a partial span) like one reporting −π…π. A span of a full turn wraps around (the
    last bin's right half meets the first bin); otherwise angles outside the span get −1.
    """
    width = (angle_max - angle_min) / bins
    if angle_max - angle_min >= 2 * math.pi - 1e-6:
        return np.rint((angles - angle_min) / width).astype(np.int64) % bins
    # Offset by half a bin so that angles just below angle_min still land in bin 0.
    relative = np.mod(angles - angle_min + width / 2, 2 * math.pi) - width / 2
    index = np.rint(relative / width).astype(np.int64)
    index[index >= bins] = -1
    return index
