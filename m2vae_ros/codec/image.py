"""Camera images (sensor_msgs/Image, sensor_msgs/CompressedImage) ⇄ CHW float tensors in [0, 1]."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from m2vae_ros.codec.common import FLOAT_OVERSHOOT, CodecError, Decoded, byte_view, stamp_ns
from m2vae_ros.spec import ImagePreprocess, ModalitySpec

# A compressed image declaring more pixels is refused before decoding: 64 MP is above any robot
# camera (a 4K frame is 8.3 MP) and decodes to 192 MB of BGR.
MAX_COMPRESSED_PIXELS = 64 * 2**20

# encoding → (numpy base type, channels, channel order, full scale)
ENCODINGS: dict[str, tuple[str, int, str, float]] = {
    "rgb8": ("u1", 3, "rgb", 255.0),
    "bgr8": ("u1", 3, "bgr", 255.0),
    "rgba8": ("u1", 4, "rgb", 255.0),
    "bgra8": ("u1", 4, "bgr", 255.0),
    "mono8": ("u1", 1, "mono", 255.0),
    "mono16": ("u2", 1, "mono", 65535.0),
    "16UC1": ("u2", 1, "mono", 65535.0),
    "32FC1": ("f4", 1, "mono", 1.0),
}


def decode_image(msg: Any, spec: ModalitySpec) -> Decoded:
    """sensor_msgs/Image → tensor, honouring row padding (`step`) and `is_bigendian`."""
    pixels, order, full_scale = image_pixels(msg, spec)
    if not pixels.dtype.isnative:  # OpenCV works on native byte order only
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return _decoded(pixels, order, full_scale, spec, msg, _depth_caveat(str(msg.encoding), pixels))


def _depth_caveat(encoding: str, pixels: np.ndarray) -> tuple[str, ...]:
    """`depth_for_image` for a 16UC1 image with zero pixels: by REP 118 a depth camera's millimetres
    with holes. A full frame (a thermal camera's) and mono16 (a grey camera's) are not noted."""
    return ("depth_for_image",) if encoding == "16UC1" and not pixels.all() else ()


def _decoded(pixels: np.ndarray, order: str, full_scale: float, spec: ModalitySpec, msg: Any,
             caveats: tuple[str, ...] = ()) -> Decoded:
    """The tensor of both image types' pixels, with the caveats (`CAVEATS`) that apply."""
    caveats = list(caveats)
    if order == "mono" and spec.shape[0] == 3:
        caveats.append("grey_for_colour")
    if pixels.dtype.kind == "f" and spec.preprocess.value_max is None and pixels.max() > FLOAT_OVERSHOOT:
        caveats.append("beyond_full_scale")  # NaN and inf read 1.0 by now (image_pixels)
    tensor = to_tensor(pixels, order, full_scale, spec)
    return Decoded(tensor, None, stamp_ns(msg), caveats=tuple(caveats))


def check_image(msg: Any, spec: ModalitySpec) -> int:
    """Every check `decode_image` makes, without its resizing: the stamp, or the CodecError it would raise."""
    image_pixels(msg, spec)
    return stamp_ns(msg)


def image_pixels(msg: Any, spec: ModalitySpec) -> tuple[np.ndarray, str, float]:
    """Validated HWC view (no copy) of an Image's pixels, with its channel order and full scale."""
    pre = spec.preprocess
    assert isinstance(pre, ImagePreprocess)
    if pre.channels not in (1, 3):
        raise CodecError("unsupported_encoding", f"spec asks for {pre.channels} channels; only 1 or 3")
    pixels, encoding = image_view(msg)
    _, _, order, full_scale = ENCODINGS[encoding]
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        # REP 118 depth: NaN = no estimate and +inf = too far read as the far end of the
        # scale (as a LiDAR's "no return" reads 1.0), −inf = too close as 0.
        far = pre.value_max if pre.value_max is not None else full_scale
        pixels = np.nan_to_num(pixels, nan=far, posinf=far, neginf=0.0)
    return pixels, order, full_scale


def image_view(msg: Any) -> tuple[np.ndarray, str]:
    """An Image's pixels as a validated HWC view (no copy) in the message's byte order, and its encoding.

    Every check of the buffer against the declared size, row step and encoding; the camera
    and depth codecs share it.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise CodecError("unsupported_encoding", f"image encoding {encoding!r}; known: {sorted(ENCODINGS)}")
    base, channels, _, _ = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * int(base[1])
    if height <= 0 or width <= 0:
        raise CodecError("size_mismatch", f"empty image: {width}×{height} {encoding}")
    if step < row_bytes:
        raise CodecError("size_mismatch", f"{width}×{height} {encoding} with step {step} < {row_bytes}")
    buf = byte_view(msg.data)
    if buf.size < height * step:
        raise CodecError("short_buffer", f"{buf.size} bytes < height×step = {height * step}")
    rows = buf[: height * step].reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(base).newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(dtype).reshape(height, width, channels)
    if step % dtype.itemsize:  # rows padded by a non-whole number of pixels: OpenCV needs aligned rows
        pixels = np.ascontiguousarray(pixels)
    return pixels, encoding


def decode_compressed_image(msg: Any, spec: ModalitySpec) -> Decoded:
    """sensor_msgs/CompressedImage (JPEG, PNG or WebP, 8 or 16 bits) → tensor."""
    # compressedDepth prefixes its PNG with a depth-quantisation header that imdecode cannot
    # read. The format is read from the bytes, not from `format` (drivers leave it empty or
    # write "rgb8; jpeg compressed bgr8"), and only where the size can be read first: the
    # other formats OpenCV decodes (BMP, TIFF, PNM, ...) could declare any size.
    if "compresseddepth" in str(msg.format).lower():
        raise CodecError("unsupported_encoding", f"compressed format {msg.format!r}: compressedDepth is a "
                         "depth camera's; kind depth reads it")
    pixels = compressed_pixels(byte_view(msg.data), str(msg.format))
    order = "mono" if pixels.shape[2] == 1 else "bgr"
    full_scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    encoding = str(msg.format).split(";")[0].strip()  # image_transport's "16UC1; png compressed"
    return _decoded(pixels, order, full_scale, spec, msg, _depth_caveat(encoding, pixels))


def compressed_pixels(buf: np.ndarray, fmt: str) -> np.ndarray:
    """PNG, JPEG or WebP bytes → HWC uint8 or uint16 pixels (OpenCV's BGR order), checked.

    The declared size is checked before decoding (`MAX_COMPRESSED_PIXELS`), and what
    imdecode returns afterwards: it trusts the bytes, not `fmt` (a TIFF or HDR labelled
    png decodes to floats). `fmt` only names the data in errors.
    """
    size = declared_size(buf)
    if size[0] * size[1] > MAX_COMPRESSED_PIXELS:
        raise CodecError("too_large", f"{fmt!r} data declares {size[0]}×{size[1]} pixels; over "
                         f"{MAX_COMPRESSED_PIXELS // 2**20} MP is refused before decoding")
    pixels = imdecode(buf)
    if pixels is None:
        raise CodecError("corrupt_compressed", f"cv2.imdecode could not decode {fmt!r} data")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.shape[2] not in (1, 3, 4):
        raise CodecError("corrupt_compressed", f"{fmt!r} data decoded to {pixels.dtype} with "
                         f"{pixels.shape[2]} channels, not an 8/16-bit image")
    return pixels


def declared_size(buf: np.ndarray) -> tuple[int, int]:
    """(width, height) from a PNG, JPEG or WebP header, read without decoding.

    A few bytes can declare an image of gigabytes (a 1 MB PNG of 20000×20000 decodes to
    1.2 GB), which imdecode would allocate before it found anything wrong; the other
    formats OpenCV decodes (BMP, TIFF, PNM, ...) are refused rather than parsed here.
    CodecError: unsupported_encoding for another format, corrupt_compressed for a header
    of these three that does not give its size.
    """
    data = buf.tobytes()
    size = None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data[12:16] == b"IHDR" and len(data) >= 24:
            size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
    elif not data:
        raise CodecError("corrupt_compressed", "no compressed data")
    else:
        raise CodecError("unsupported_encoding", f"compressed data starting {data[:8]!r}: not PNG, JPEG "
                         "or WebP")
    if size is None:
        raise CodecError("corrupt_compressed", "a PNG, JPEG or WebP header that does not give its size")
    return size


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame header's size: segments are walked by their lengths up to the first SOFn marker."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT/JPG/DAC
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The size of a lossy (VP8), lossless (VP8L) or extended (VP8X) WebP."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = (int.from_bytes(data[at : at + 2], "little") & 0x3FFF for at in (26, 28))
        return width, height
    return None


def imdecode(buf: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode, or None where it cannot decode `buf`.

    OpenCV returns None for most bad data but raises cv2.error for some (an empty buffer
    trips an assertion); callers only expect CodecError, so both must read as a failed decode.
    """
    if buf.size == 0:
        return None
    try:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def to_tensor(pixels: np.ndarray, order: str, full_scale: float, spec: ModalitySpec) -> np.ndarray:
    """HWC pixels (native dtype) → float32 (channels, height, width) as the spec asks.

    Resizing comes first, on the raw dtype: it is the costly step and shrinking a
    640×480 uint8 image is several times cheaper than shrinking its float copy.
    """
    pre = spec.preprocess
    assert isinstance(pre, ImagePreprocess)
    pixels = resize(pixels, pre.width, pre.height)
    if order != "mono":
        pixels = pixels[:, :, 2::-1] if order == "bgr" else pixels[:, :, :3]
    if pre.channels == 1 and order != "mono":
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[:, :, None]
    elif pre.channels == 3 and order == "mono":
        pixels = np.repeat(pixels, 3, axis=2)
    scale = pre.value_max if pre.value_max is not None else full_scale
    tensor = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(scale)
    return np.clip(tensor, 0.0, 1.0, out=tensor)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """HWC pixels → height×width×C: INTER_AREA when shrinking both ways, INTER_LINEAR otherwise.

    Area averaging is separable, so shrinking the width first and the height second
    gives the same averages (up to one rounding step) while letting OpenCV take its
    integer-factor fast path for the common widths (640 → 64): about twice as fast.
    """
    source_height, source_width = pixels.shape[:2]
    if (source_width, source_height) == (width, height):
        return pixels
    if width <= source_width and height <= source_height:
        pixels = cv2.resize(pixels, (width, source_height), interpolation=cv2.INTER_AREA)
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    else:
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
    return pixels if pixels.ndim == 3 else pixels[:, :, None]


def image_message(tensor: np.ndarray, spec: ModalitySpec, header: Any) -> Any:
    """CHW tensor in [0, 1] → sensor_msgs/Image (rgb8 or mono8) at the model's resolution."""
    from sensor_msgs.msg import Image

    channels, height, width = tensor.shape
    pixels = np.clip(np.rint(np.asarray(tensor, np.float32) * 255.0), 0, 255).astype(np.uint8)
    hwc = np.ascontiguousarray(pixels.transpose(1, 2, 0))
    return Image(
        header=header,
        height=height,
        width=width,
        encoding="rgb8" if channels == 3 else "mono8",
        is_bigendian=0,
        step=width * channels,
        data=hwc.tobytes(),
    )
