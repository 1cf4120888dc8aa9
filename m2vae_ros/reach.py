"""Whether a LiDAR's returns reach every cell of the model's geometry, offline and live.

A cell (a scan's bin, a range image's ring × bin) that no message reaches lies outside the
sensor's beams: a 270° scanner on a 360° model, a vertical field of view wider than the
sensor's, rings or bins finer than its beams. It reads "no return" in every message, which
the model learnt as free space. m2vae-dataset notes it over a whole recording (the share is
`returns_reach` in manifest.json); the fusion node reports it over recent messages
(`ReturnsReach`). One threshold and one hint per kind serve both.
"""

from __future__ import annotations

import numpy as np

MIN_REACH = 0.95  # below: the config's LiDAR geometry is likely not the sensor's
REACH_HINTS = {
    "scan": "is angle_min…angle_max wider than the scanner's?",
    "range_image": "do rings, fov_up_deg and fov_down_deg match the sensor's beams, and bins its "
                   "horizontal resolution?",
}
REACH_WINDOW = 100  # messages per reach measurement of the fusion node: 10 s of a 10 Hz LiDAR


def cells_word(kind: str) -> str:
    """What a kind's cells are called in a reach note: a scan's bins, a range image's cells."""
    return "bins" if kind == "scan" else "cells"


class ReturnsReach:
    """The share of the model's cells that held a return in some of a block of `window` messages.

    `add` ORs each message's valid-return mask into the block's union (one `|=`); each full
    block sets `share` and the next one starts empty, so `share` is that of the latest
    complete block: None until `window` messages arrived, and a sensor whose geometry
    changed shows within two blocks. Not thread-safe: the node's callbacks use it alone.
    """

    def __init__(self, kind: str, window: int = REACH_WINDOW) -> None:
        self.kind = kind  # a key of REACH_HINTS
        self.window = window
        self.share: float | None = None
        self._union: np.ndarray | None = None
        self._count = 0

    def add(self, mask: np.ndarray | None) -> None:
        if mask is None:
            return
        if self._union is None:
            self._union = mask.copy()
        else:
            self._union |= mask
        self._count += 1
        if self._count >= self.window:
            self.share = float(self._union.mean())
            self._union, self._count = None, 0
