"""3-D LiDAR (sensor_msgs/PointCloud2) → range images or planar scans, and back.

Any field layout is read through one numpy structured dtype built from the message's
`fields` (offsets, `point_step` padding, INT8…FLOAT64, either byte order), so no
per-point Python code runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from m2vae_ros.codec.binning import angle_bins, nearest_per_cell
from m2vae_ros.codec.common import CodecError, Decoded, beyond_share, byte_view, stamp_ns
from m2vae_ros.codec.scan import NO_RETURN, NO_RETURN_THRESHOLD, bin_ranges
from m2vae_ros.spec import ModalitySpec, RangeImagePreprocess, ScanPreprocess

# sensor_msgs/PointField datatype constants → numpy base types.
DATATYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
MAX_POINT_STEP = np.iinfo(np.int32).max
FLOAT32 = 7


def read_points(
    msg: Any, names: tuple[str, ...], may_be_nonfinite: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Named fields of every point as float64 arrays; `names` must exist (missing_field otherwise).

    A point with a NaN/inf in any of `names` is dropped, except in the fields listed in
    `may_be_nonfinite` (an intensity), which do not decide whether a point exists. A cloud
    with no (finite) point is a LiDAR that saw nothing in range, like an all-inf
    LaserScan: empty arrays, so it decodes as "no return" everywhere, not as a dead sensor.
    """
    buf = byte_view(msg.data)
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:  # a filter's bare empty cloud: no layout to check, nothing seen
        if buf.size:
            raise CodecError("size_mismatch", f"{buf.size} bytes of data in a {width}×{height} cloud")
        return {n: np.zeros(0) for n in names}
    listed = [str(f.name) for f in msg.fields]
    if twice := sorted({n for n in names if listed.count(n) > 1}):
        raise CodecError("duplicate_field", f"PointCloud2 lists fields {twice} more than once")
    fields = {str(f.name): f for f in msg.fields}
    missing = [n for n in names if n not in fields]
    if missing:
        raise CodecError("missing_field", f"PointCloud2 lacks fields {missing}; has {sorted(fields)}")
    order = ">" if msg.is_bigendian else "<"
    formats = []
    for name in names:
        datatype = int(fields[name].datatype)
        if datatype not in DATATYPES:
            raise CodecError("unsupported_encoding", f"PointCloud2 field {name!r} has datatype {datatype}")
        formats.append(order + DATATYPES[datatype])
    point_step = int(msg.point_step)
    row_step = int(msg.row_step) or width * point_step
    offsets = [int(fields[n].offset) for n in names]
    ends = [o + np.dtype(f).itemsize for o, f in zip(offsets, formats, strict=True)]
    # numpy's itemsize is a C int: a larger point_step must not reach the dtype below.
    if not 0 < point_step <= MAX_POINT_STEP or max(ends) > point_step or row_step < width * point_step:
        raise CodecError("size_mismatch", f"fields end at {max(ends)} > point_step {point_step} or row_step")
    if buf.size < height * row_step:
        raise CodecError("short_buffer", f"{buf.size} bytes < height×row_step = {height * row_step}")
    dtype = np.dtype({"names": list(names), "formats": formats, "offsets": offsets, "itemsize": point_step})
    rows = buf[: height * row_step].reshape(height, row_step)[:, : width * point_step]
    points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    columns = {n: points[n].astype(np.float64) for n in names}
    finite = np.ones(len(points), dtype=bool)
    for n in names:
        if n not in may_be_nonfinite:
            finite &= np.isfinite(columns[n])
    return {n: c[finite] for n, c in columns.items()}


def decode_pointcloud(msg: Any, spec: ModalitySpec) -> Decoded:
    """PointCloud2 → range image (spherical projection) or planar scan (z-slice), as the spec's kind says."""
    pre = spec.preprocess
    if isinstance(pre, ScanPreprocess):
        pts = read_points(msg, ("x", "y", "z"))
        planar = np.hypot(pts["x"], pts["y"])
        # (0, 0, 0) is how organised clouds (Ouster, Hesai) mark a beam without a return.
        in_slice = (pts["z"] >= pre.z_min) & (pts["z"] <= pre.z_max)
        measured = in_slice & (planar > 0) & (planar >= pre.range_min)
        keep = measured & (planar <= pre.range_max)
        angles = np.arctan2(pts["y"][keep], pts["x"][keep])
        tensor, mask = bin_ranges(angles, planar[keep], pre)
        return Decoded(tensor, mask, stamp_ns(msg), beyond_range=beyond_share(measured, ~keep))
    assert isinstance(pre, RangeImagePreprocess)
    # A NaN intensity must not drop the point's range.
    names = ("x", "y", "z", "intensity") if pre.intensity else ("x", "y", "z")
    pts = read_points(msg, names, may_be_nonfinite=("intensity",))
    tensor, mask, beyond = project(pts, pre)
    return Decoded(tensor, mask, stamp_ns(msg), beyond_range=beyond)


def ring_elevations(pre: RangeImagePreprocess) -> np.ndarray:
    """Elevation (rad) of each ring, top first: ring i sits at fov_up − i·(fov_up − fov_down)/(rings − 1).

    Centring rings on the FOV's ends matches scanners whose fov_up/fov_down are their
    outermost beams (e.g. ±15° for a 16-beam LiDAR), so each beam fills exactly one ring.
    A single ring has no ends to sit on: it sits in the middle and takes the whole FOV.
    """
    if pre.rings == 1:
        return np.radians([(pre.fov_up_deg + pre.fov_down_deg) / 2])
    return np.radians(np.linspace(pre.fov_up_deg, pre.fov_down_deg, pre.rings))


def project(
    pts: dict[str, np.ndarray], pre: RangeImagePreprocess
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Points → (channels, rings, bins) tensor and mask, keeping the nearest return per cell, and the
    share of the points from range_min on that lay beyond range_max (`Decoded.beyond_range`)."""
    x, y, z = pts["x"], pts["y"], pts["z"]
    ranges = np.sqrt(x * x + y * y + z * z)
    measured = (ranges > 0) & (ranges >= pre.range_min)
    keep = measured & (ranges <= pre.range_max)
    beyond = beyond_share(measured, ~keep)
    x, y, z, ranges = x[keep], y[keep], z[keep], ranges[keep]
    elevation = np.arcsin(np.clip(z / ranges, -1.0, 1.0))
    ring_step = math.radians(pre.fov_up_deg - pre.fov_down_deg) / max(pre.rings - 1, 1)
    ring = np.rint((ring_elevations(pre)[0] - elevation) / ring_step).astype(np.int64)
    column = angle_bins(np.arctan2(y, x), -math.pi, math.pi, pre.bins)
    inside = (ring >= 0) & (ring < pre.rings)
    cells, nearest = nearest_per_cell(ring[inside] * pre.bins + column[inside], ranges[inside])
    shape = (2 if pre.intensity else 1, pre.rings, pre.bins)
    tensor = np.zeros(shape, dtype=np.float32)
    tensor[0] = NO_RETURN
    mask = np.zeros(shape, dtype=bool)
    rows, cols = np.divmod(cells, pre.bins)
    tensor[0, rows, cols] = np.minimum(ranges[inside][nearest] / pre.range_max, 1.0)
    mask[:, rows, cols] = True
    if pre.intensity:
        intensity = np.nan_to_num(pts["intensity"][keep][inside][nearest], nan=0.0, posinf=pre.intensity_max)
        tensor[1, rows, cols] = np.clip(intensity / pre.intensity_max, 0.0, 1.0)
    return tensor, mask, beyond


def pointcloud_message(tensor: np.ndarray, spec: ModalitySpec, header: Any) -> Any:
    """Range-image tensor → unorganized dense PointCloud2 of float32 x, y, z (and intensity when the
    model has it: a field of zeros would read as a measurement), a point per return."""
    from sensor_msgs.msg import PointCloud2, PointField

    pre = spec.preprocess
    assert isinstance(pre, RangeImagePreprocess)
    values = np.asarray(tensor, np.float32)
    rows, cols = np.nonzero(values[0] < NO_RETURN_THRESHOLD)
    ranges = values[0, rows, cols].astype(np.float64) * pre.range_max
    elevation = ring_elevations(pre)[rows]
    azimuth = -math.pi + cols * (2 * math.pi / pre.bins)
    names = ("x", "y", "z", "intensity") if pre.intensity else ("x", "y", "z")
    cloud = np.empty((rows.size, len(names)), dtype=np.float32)
    cloud[:, 0] = ranges * np.cos(elevation) * np.cos(azimuth)
    cloud[:, 1] = ranges * np.cos(elevation) * np.sin(azimuth)
    cloud[:, 2] = ranges * np.sin(elevation)
    if pre.intensity:
        cloud[:, 3] = values[1, rows, cols] * pre.intensity_max
    step = 4 * len(names)
    return PointCloud2(
        header=header,
        height=1,
        width=rows.size,
        fields=[PointField(name=n, offset=4 * i, datatype=FLOAT32, count=1) for i, n in enumerate(names)],
        is_bigendian=False,
        point_step=step,
        row_step=step * rows.size,
        data=cloud.tobytes(),
        is_dense=True,
    )
