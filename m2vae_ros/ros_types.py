"""ROS type names (``sensor_msgs/msg/Image``) → rclpy message classes.

The artifact spec and rosbag2 recordings name message types as strings; the live node
and the bag player need the generated rclpy classes for them.
"""

from __future__ import annotations

import importlib

from m2vae_ros.spec import ModalitySpec

# What a modality's topic carries when its spec leaves `msg_type` empty.
NATURAL_TYPES = {
    "image": "sensor_msgs/msg/Image",
    "scan": "sensor_msgs/msg/LaserScan",
    "range_image": "sensor_msgs/msg/PointCloud2",
    "depth": "sensor_msgs/msg/Image",
}


# image_transport publishes an Image's compressed streams on <base>/compressed (JPEG or PNG) and
# <base>/compressedDepth (a depth image's PNG), as sensor_msgs/CompressedImage.
COMPRESSED_DEPTH_TRANSPORT = "/compressedDepth"
COMPRESSED_TRANSPORTS = ("/compressed", COMPRESSED_DEPTH_TRANSPORT)


def transported_type(topic: str, msg_type: str) -> str:
    """The type `topic` carries for a modality of `msg_type`: CompressedImage on image_transport's
    compressed streams of an Image, else `msg_type` itself."""
    if msg_type == "sensor_msgs/msg/Image" and topic.endswith(COMPRESSED_TRANSPORTS):
        return "sensor_msgs/msg/CompressedImage"
    return msg_type


class MessageTypeError(ValueError):
    """A type name that is malformed or whose rclpy package is not installed."""


def message_class(type_name: str) -> type:
    """The rclpy class for ``package/msg/Name`` (``package/Name`` is accepted as well)."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise MessageTypeError(f"malformed message type {type_name!r}; expected package/msg/Name")
    package, interface, name = parts
    try:
        module = importlib.import_module(f"{package}.{interface}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise MessageTypeError(
            f"message type {type_name!r} is not available: its Python package {package} is not installed "
            f"(a ROS installation's ros-<distro>-{package.replace('_', '-')}; PyPI has wheels for some only)"
        ) from None


def modality_message_type(spec: ModalitySpec) -> str:
    """The type a modality subscribes to: the spec's `msg_type`, else its kind's natural type."""
    if spec.msg_type:
        return spec.msg_type
    try:
        return NATURAL_TYPES[spec.kind]
    except KeyError:
        raise MessageTypeError(
            f"modality {spec.name!r} of kind {spec.kind!r} needs an explicit msg_type in its spec"
        ) from None
