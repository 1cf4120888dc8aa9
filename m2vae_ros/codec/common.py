"""What every decoder shares: the result type, the error type and message plumbing.

Decoders accept rclpy messages and rosbags-deserialized messages alike. The two differ
only in how they store arrays (``array.array``/``bytes`` vs numpy) and how they name
their type, so everything here works on field names and the buffer protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class CodecError(ValueError):
    """A message that cannot become a tensor; `reason` is a snake_case key for failure counts."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    """One message as a tensor of exactly `spec.shape`, plus its validity mask and header stamp.

    `mask` is True where a LiDAR element or depth pixel holds a real return (scan, range_image
    and depth kinds) and None for kinds that have no notion of "no return". `coverage` is the fraction of a
    scan's bins the message's beams reach at all (the others read "no return" whatever the
    scene); None for kinds whose every element is measured or whose points fall anywhere.
    `caveats` are keys of `CAVEATS`: the message decoded, but the model sees less than
    the sensor measured. The dataset counts them per sensor and the node warns of them.
    `beyond_range` is the share of the message's returns (from range_min on) that lay beyond
    the spec's range_max and read "no return"; None for kinds without ranges or returns. The
    dataset notes a sensor whose share is large: a choice of range_max, not a fault, so the
    node does not warn of it.
    """

    tensor: np.ndarray
    mask: np.ndarray | None
    stamp_ns: int
    coverage: float | None = None
    caveats: tuple[str, ...] = ()
    beyond_range: float | None = None


# A float image without value_max is taken as [0, 1]; values up to this pass as interpolation
# overshoot, and beyond it the image is on another scale (a depth image in metres).
FLOAT_OVERSHOOT = 1.5

# What each caveat of a decoded message means, completing "<sensor>: N of the messages decoded
# for it were ..." in the dataset notes and "its messages are ..." in the node's diagnostics.
CAVEATS = {
    # A single-channel image fed a colour modality: what the model learnt from colour is lost.
    "grey_for_colour": "single-channel, for a colour model: every channel reads grey (a grey camera takes "
                       "preprocess channels: 1)",
    # A depth camera's 16UC1 read as a picture: its holes (0) read as black, its depths as grey levels.
    "depth_for_image": "16UC1 images with zero pixels, REP 118's depth in millimetres with holes: the "
                       "holes read black and the depths as shares of preprocess.value_max (65.5 m unset); "
                       "kind depth reads metres, with its holes as no return",
    # A float image without value_max is taken as [0, 1]: a depth image in metres clips at 1 m
    # (kind depth is the one for a depth camera).
    "beyond_full_scale": f"float images with values above {FLOAT_OVERSHOOT:g} and no preprocess.value_max, "
                         "so 1.0 is their full scale and they clip (a depth camera: kind depth reads metres, "
                         "with its holes as no return)",
}


def beyond_share(measured: np.ndarray, beyond: np.ndarray) -> float | None:
    """`beyond_range` of a message: the share of its `measured` returns that are `beyond` range_max
    (two boolean masks over its returns); None when it measured none."""
    count = int(np.count_nonzero(measured))
    return np.count_nonzero(beyond & measured) / count if count else None


def message_type(msg: Any) -> str:
    """ROS type name such as ``sensor_msgs/msg/Image`` for a rosbags or an rclpy message."""
    name = getattr(msg, "__msgtype__", None)
    if isinstance(name, str):
        return name
    cls = type(msg)
    # rclpy classes live in modules named ``<package>.msg._<snake_name>``.
    package, _, rest = cls.__module__.partition(".")
    interface = rest.split(".", 1)[0] or "msg"
    return f"{package}/{interface}/{cls.__name__}"


def stamp_ns(msg: Any) -> int:
    """Header stamp in integer nanoseconds (``header.stamp.sec``/``nanosec`` in both APIs).

    ``sec`` is signed, but a stamp before 1970 comes from a driver without a clock: it
    would sort before every real message in a recording and make the node's latency
    meaningless, so both refuse it here. A stamp of exactly 0 is one never set (a
    default-constructed header), refused for the same reason. A `nanosec` of a second or more
    is malformed: it would carry into `sec`, and the node would see a stamp in its future.
    """
    try:
        stamp = msg.header.stamp
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    except AttributeError as exc:
        raise CodecError("missing_field", f"{message_type(msg)} has no header.stamp") from exc
    if nanosec >= 1_000_000_000:  # builtin_interfaces/Time: nanosec < 1e9; more is a driver's bug
        raise CodecError("bad_stamp", f"header stamp nanosec {nanosec} is not below 1e9")
    ns = sec * 1_000_000_000 + nanosec
    if ns < 0:
        raise CodecError("negative_stamp", "header stamp before 1970 (a driver without a clock?)")
    if ns == 0:
        raise CodecError("zero_stamp", "header stamp 0: the driver never set it")
    return ns


def byte_view(data: Any) -> np.ndarray:
    """A uint8 view (no copy) of a message's ``data`` field: bytes, array.array or numpy."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, list):  # rclpy may hold small sequences as lists of ints
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def float_view(values: Any) -> np.ndarray:
    """float32[] fields (LaserScan.ranges) as a 1-D float32 array, without a copy where possible."""
    return np.asarray(values, dtype=np.float32).reshape(-1)
