"""Sensor message ↔ tensor conversions shared by the dataset builder and the live node.

`decode_message` turns an rclpy or rosbags message into the tensor `spec.shape`
describes; `reconstruction_message` turns a decoded model output back into a ROS
message for the node's ``~/reconstruction/<modality>`` topics. All preprocessing
parameters come from the spec saved with the model, so training and the node agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from m2vae_ros.codec.common import CodecError, Decoded, message_type, stamp_ns
from m2vae_ros.codec.depth import check_depth, decode_compressed_depth, decode_depth, depth_message
from m2vae_ros.codec.image import check_image, decode_compressed_image, decode_image, image_message
from m2vae_ros.codec.pointcloud import decode_pointcloud, pointcloud_message
from m2vae_ros.codec.scan import check_laserscan, decode_laserscan, scan_message
from m2vae_ros.ros_types import COMPRESSED_DEPTH_TRANSPORT
from m2vae_ros.spec import ModalitySpec

__all__ = [
    "CodecError",
    "Decoded",
    "accepted_types",
    "check_and_keep",
    "could_feed",
    "decode_message",
    "message_type",
    "reconstruction_message",
    "require_decodable",
    "stamp_ns",
]

# (message type, spec kind) → decoder
DECODERS: dict[tuple[str, str], Callable[[Any, ModalitySpec], Decoded]] = {
    ("sensor_msgs/msg/Image", "image"): decode_image,
    ("sensor_msgs/msg/CompressedImage", "image"): decode_compressed_image,
    ("sensor_msgs/msg/Image", "depth"): decode_depth,
    ("sensor_msgs/msg/CompressedImage", "depth"): decode_compressed_depth,
    ("sensor_msgs/msg/LaserScan", "scan"): decode_laserscan,
    ("sensor_msgs/msg/PointCloud2", "scan"): decode_pointcloud,
    ("sensor_msgs/msg/PointCloud2", "range_image"): decode_pointcloud,
}

# Cheaper stand-ins for a full decode where one exists: every check, none of the resizing/binning.
CHECKERS: dict[tuple[str, str], Callable[[Any, ModalitySpec], int]] = {
    ("sensor_msgs/msg/Image", "image"): check_image,
    ("sensor_msgs/msg/Image", "depth"): check_depth,
    ("sensor_msgs/msg/LaserScan", "scan"): check_laserscan,
}

ENCODERS: dict[str, Callable[[np.ndarray, ModalitySpec, Any], Any]] = {
    "image": image_message,
    "scan": scan_message,
    "range_image": pointcloud_message,
    "depth": depth_message,
}


def accepted_types(kind: str) -> list[str]:
    """The ROS message types that decode into a modality of `kind`, sorted."""
    return sorted(t for t, k in DECODERS if k == kind)


def could_feed(kind: str, topic: str, msg_type: str) -> bool:
    """Whether `topic`, carrying `msg_type`, could feed a sensor of `kind`, for advice on a sensor that
    hears nothing: a type that decodes into the kind, and not image_transport's compressedDepth
    stream for a camera (its PNG holds depths, which kind image refuses)."""
    depth_stream = topic.endswith(COMPRESSED_DEPTH_TRANSPORT)
    return msg_type in accepted_types(kind) and not (kind == "image" and depth_stream)


def require_decodable(spec: ModalitySpec, msg_type: str | None = None) -> None:
    """Raise CodecError unless some ROS message type (`msg_type`, when given) decodes into `spec`.

    Checked when a node or a dataset build starts, so a modality that can never receive
    data fails once with a clear line instead of every message failing. Kind `vector` has
    no ROS message: it is for the Python API's in-memory arrays.
    """
    accepted = accepted_types(spec.kind)
    if not accepted:
        raise CodecError("unsupported_type", f"modality {spec.name!r}: no ROS message decodes into kind "
                         f"{spec.kind!r}; it is for in-memory arrays (m2vae_ros.api)")
    if msg_type is not None and msg_type not in accepted:
        raise CodecError("unsupported_type", f"modality {spec.name!r}: {msg_type} cannot feed kind "
                         f"{spec.kind!r}; expected one of {accepted}")


def decode_message(msg: Any, spec: ModalitySpec) -> Decoded:
    """Message → `Decoded` with a float32 tensor of exactly `spec.shape`; raises `CodecError`."""
    msg_type = message_type(msg)
    decoder = DECODERS.get((msg_type, spec.kind))
    if decoder is None:
        raise CodecError("unsupported_type", f"{msg_type} cannot feed a {spec.kind!r} modality ({spec.name})")
    return decoder(msg, spec)


def check_and_keep(msg: Any, spec: ModalitySpec) -> tuple[int, Decoded | None]:
    """The stamp `decode_message` would give, or the CodecError it would raise, skipping costly work.

    A message that passes decodes without error; the dataset builder checks every
    message but decodes only those that end up in a sample (a 30 Hz camera next to a
    10 Hz LiDAR: one frame in three). Where no cheaper check exists (compressed images,
    point clouds) the check is the decode, which is returned so that a caller needing it
    does not decode twice; None where the check was cheaper than a decode.
    """
    checker = CHECKERS.get((message_type(msg), spec.kind))
    if checker is not None:
        return checker(msg, spec), None
    decoded = decode_message(msg, spec)
    return decoded.stamp_ns, decoded


def reconstruction_message(tensor: np.ndarray, spec: ModalitySpec, header: Any) -> Any:
    """Model output of `spec.shape` → rclpy Image, LaserScan or PointCloud2 stamped with `header`.

    A depth modality's comes out as a 32FC1 Image in metres, NaN where the model sees no return.
    """
    encoder = ENCODERS.get(spec.kind)
    if encoder is None:
        raise CodecError("unsupported_type", f"no ROS message for a {spec.kind!r} modality ({spec.name})")
    if tuple(np.shape(tensor)) != spec.shape:
        raise CodecError("size_mismatch", f"tensor shape {np.shape(tensor)} != spec shape {spec.shape}")
    return encoder(tensor, spec, header)
