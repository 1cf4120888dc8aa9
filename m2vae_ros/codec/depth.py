"""Depth cameras (sensor_msgs/Image: 16UC1 or mono16 in millimetres, 32FC1 in metres) ⇄ (1, H, W) ranges.

Recorded depth is often compressed: image_transport's compressedDepth plugin (PNG) and its
compressed plugin (a 16-bit PNG of millimetres) arrive as sensor_msgs/CompressedImage and are
read here too.

The LiDAR's conventions (codec/scan.py): depth / range_max, and "no return" — 0 in an
integer image, NaN or +inf in a float one (REP 118), or a depth outside
range_min…range_max — reads 1.0 with mask False, never 0, which would be an obstacle
touching the lens. A −inf is "too close to measure": a return at range_min.

A depth image of another size than the spec's keeps, per output pixel, the nearest valid
depth among the source pixels it covers (`binning.nearest_per_grid`): an average would
invent depths between a foreground edge and the wall behind it, or between a depth and a
hole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m2vae_ros.codec.binning import nearest_per_grid
from m2vae_ros.codec.common import CodecError, Decoded, beyond_share, byte_view, stamp_ns
from m2vae_ros.codec.image import compressed_pixels, image_view
from m2vae_ros.codec.scan import NO_RETURN, NO_RETURN_THRESHOLD
from m2vae_ros.spec import DepthPreprocess, ModalitySpec

# Depth encodings (REP 118) → stored units per metre. Dividing, not multiplying by 0.001: a
# float32 millimetre times 0.001 can land above the same depth in metres (700 mm → 0.70000005),
# and a depth right at range_max would read no return.
UNITS_PER_METRE = {"16UC1": 1000.0, "mono16": 1000.0, "32FC1": 1.0}
# compressed_depth_image_transport's ConfigHeader, in the publisher's byte order (little endian
# on every platform ROS 2 supports): its format, then a 32FC1 image's inverse-depth quantisation,
# depth = quant_a / (value − quant_b).
CONFIG_HEADER = np.dtype([("format", "<i4"), ("quant_a", "<f4"), ("quant_b", "<f4")])


def decode_depth(msg: Any, spec: ModalitySpec) -> Decoded:
    """sensor_msgs/Image of depths → tensor and validity mask at the spec's size."""
    pre = spec.preprocess
    assert isinstance(pre, DepthPreprocess)
    pixels, encoding = depth_view(msg)
    metres = pixels[:, :, 0].astype(np.float32) / np.float32(UNITS_PER_METRE[encoding])
    return _from_metres(metres, pre, stamp_ns(msg))


def decode_compressed_depth(msg: Any, spec: ModalitySpec) -> Decoded:
    """sensor_msgs/CompressedImage of depths → tensor and validity mask at the spec's size.

    `format` as image_transport writes it: "16UC1; compressedDepth png" (or just
    "compressedDepth", its older spelling) puts a ConfigHeader before a PNG of millimetres,
    "32FC1; compressedDepth png" before a PNG of quantised inverse depth, 0 where there was
    none; "16UC1; png compressed" is a plain 16-bit PNG of millimetres. RVL is refused.
    """
    pre = spec.preprocess
    assert isinstance(pre, DepthPreprocess)
    fmt = str(msg.format)
    encoding = fmt.split(";")[0].strip() if ";" in fmt else "16UC1"  # a bare "png": millimetres
    if encoding not in UNITS_PER_METRE:
        raise CodecError("unsupported_encoding", f"compressed depth encoding {encoding!r} (format {fmt!r}); "
                         f"known: {sorted(UNITS_PER_METRE)}")
    buf = byte_view(msg.data)
    if "compresseddepth" not in fmt.lower():
        if encoding == "32FC1":
            raise CodecError("unsupported_encoding", f"compressed format {fmt!r}: image_transport's "
                             "compressed plugin carries 8 or 16 bits, not 32FC1; compressedDepth does")
        return _from_metres(_millimetre_png(buf, fmt) / np.float32(1000.0), pre, stamp_ns(msg))
    if "rvl" in fmt.lower():
        raise CodecError("unsupported_encoding", f"compressed format {fmt!r}: RVL is not supported; set the "
                         "compressedDepth publisher's format to png")
    if buf.size <= CONFIG_HEADER.itemsize:
        raise CodecError("corrupt_compressed", f"{fmt!r} data of {buf.size} bytes: no room for its "
                         f"{CONFIG_HEADER.itemsize}-byte header and an image")
    pixels = _millimetre_png(buf[CONFIG_HEADER.itemsize :], fmt)
    if encoding != "32FC1":
        return _from_metres(pixels / np.float32(1000.0), pre, stamp_ns(msg))
    header = buf[: CONFIG_HEADER.itemsize].view(CONFIG_HEADER)[0]
    quant_a, quant_b = np.float32(header["quant_a"]), np.float32(header["quant_b"])
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 is no depth: NaN
        metres = np.where(pixels > 0, quant_a / (pixels - quant_b), np.float32(np.nan))
    return _from_metres(metres.astype(np.float32), pre, stamp_ns(msg))


def _millimetre_png(buf: np.ndarray, fmt: str) -> np.ndarray:
    """The (H, W) uint16 values of a single-channel 16-bit compressed image (millimetres, or a
    compressedDepth 32FC1 image's quantised inverse depth)."""
    pixels = compressed_pixels(buf, fmt)
    if pixels.dtype != np.uint16 or pixels.shape[2] != 1:
        raise CodecError("unsupported_encoding", f"{fmt!r} data decoded to {pixels.shape[2]} channels of "
                         f"{pixels.dtype}: a depth image is one channel of 16 bits")
    return pixels[:, :, 0]


def _from_metres(metres: np.ndarray, pre: DepthPreprocess, stamp: int) -> Decoded:
    """(H, W) float32 metres in REP 118's conventions → the decoded tensor at the spec's size."""
    too_close = np.isneginf(metres)  # a return at range_min, even where that is 0
    metres[too_close] = pre.range_min
    with np.errstate(invalid="ignore"):  # NaN compares False: no return
        measured = (too_close | (metres > 0)) & (metres >= pre.range_min) & (metres < np.inf)
        valid = measured & (metres <= pre.range_max)
    nearest = nearest_per_grid(np.where(valid, metres, np.float32(np.inf)), pre.height, pre.width)
    mask = np.isfinite(nearest)
    tensor = np.where(mask, nearest / np.float32(pre.range_max), np.float32(NO_RETURN)).astype(np.float32)
    return Decoded(tensor[None], mask[None], stamp, beyond_range=beyond_share(measured, ~valid))


def check_depth(msg: Any, spec: ModalitySpec) -> int:
    """Every check `decode_depth` makes, without its resizing: the stamp, or the CodecError it would raise."""
    depth_view(msg)
    return stamp_ns(msg)


def depth_view(msg: Any) -> tuple[np.ndarray, str]:
    """`image_view` of an Image whose encoding is a depth encoding."""
    if str(msg.encoding) not in UNITS_PER_METRE:  # checked first: image_view's error lists colour encodings
        raise CodecError("unsupported_encoding", f"depth image encoding {str(msg.encoding)!r}; known: "
                         f"{sorted(UNITS_PER_METRE)}")
    return image_view(msg)


def depth_message(tensor: np.ndarray, spec: ModalitySpec, header: Any) -> Any:
    """(1, H, W) tensor → sensor_msgs/Image 32FC1 in metres; no return is NaN.

    No return is a value at or above NO_RETURN_THRESHOLD, or a depth below range_min: an Image,
    unlike a LaserScan, carries no limits for a consumer to filter by, and this codec would
    read such a depth back as no return.
    """
    from sensor_msgs.msg import Image

    pre = spec.preprocess
    assert isinstance(pre, DepthPreprocess)
    values = np.asarray(tensor, np.float32)[0]
    metres = values * np.float32(pre.range_max)
    metres[(values >= NO_RETURN_THRESHOLD) | (metres < pre.range_min)] = np.nan
    return Image(header=header, height=pre.height, width=pre.width, encoding="32FC1", is_bigendian=0,
                 step=pre.width * 4, data=np.ascontiguousarray(metres, "<f4").tobytes())
