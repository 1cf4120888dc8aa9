"""The `~/latent` wire format: a 2 × latent_dim `32FC1` sensor_msgs/Image.

Row 0 is the posterior mean, row 1 the posterior standard deviation. An Image rather
than a custom message keeps the package free of generated interfaces, and every ROS
tool (rosbag2, Foxglove, image viewers) can record and show it.
"""

from __future__ import annotations

import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import Image

ENCODING = "32FC1"


def latent_image(mean: np.ndarray, std: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """Pack a posterior into the latent Image (little-endian float32)."""
    msg = Image()
    msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
    msg.header.frame_id = frame_id
    msg.height = 2
    msg.width = int(mean.shape[-1])
    msg.encoding = ENCODING
    msg.is_bigendian = 0
    msg.step = 4 * msg.width
    msg.data = np.stack([mean, std]).astype("<f4").tobytes()
    return msg


def read_latent(msg: Image) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `latent_image`: (mean, std), each float32 of length msg.width."""
    if (msg.encoding != ENCODING or msg.height != 2 or msg.step != 4 * msg.width
            or len(msg.data) != msg.height * msg.step):
        raise ValueError(f"not a latent image: encoding {msg.encoding!r}, {msg.height}×{msg.width}, "
                         f"step {msg.step}, {len(msg.data)} data bytes")
    dtype = ">f4" if msg.is_bigendian else "<f4"
    values = np.frombuffer(bytes(msg.data), dtype=dtype).reshape(2, msg.width)
    return values[0].astype(np.float32), values[1].astype(np.float32)
