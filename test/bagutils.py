"""Small helpers that build real sensor messages and write real rosbag2 files for tests.

Messages are built as rclpy objects (every field has a default) and turned into their
rosbags twin by a CDR round trip, so a test can feed the codec both flavours of the very
same message. Bags are written with `rosbags.rosbag2.Writer` in either storage format.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from m2vae_ros.codec import message_type

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
POINT_DATATYPES = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 8}
STAMP_NS = 1_000_000_000  # a set stamp: 0 is a driver that never set one, which the codec refuses


def header(stamp_ns: int, frame_id: str = "base_link") -> Header:
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image(
    pixels: np.ndarray, encoding: str, stamp_ns: int = STAMP_NS, *, pad: int = 0, bigendian: bool = False
) -> Image:
    """HxW or HxWxC `pixels` (already of the encoding's dtype) → Image with `pad` bytes after each row."""
    height, width = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<")
    rows = pixels.astype(dtype).reshape(height, -1).view(np.uint8)
    padded = np.zeros((height, rows.shape[1] + pad), dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(header=header(stamp_ns), height=height, width=width, encoding=encoding,
                 is_bigendian=int(bigendian), step=padded.shape[1], data=padded.tobytes())


def compressed(data: bytes, fmt: str, stamp_ns: int = STAMP_NS) -> CompressedImage:
    return CompressedImage(header=header(stamp_ns), format=fmt, data=data)


def scan(ranges: Sequence[float], stamp_ns: int = STAMP_NS, *, angle_min: float = -math.pi,
         angle_increment: float | None = None, range_min: float = 0.1, range_max: float = 8.0) -> LaserScan:
    """LaserScan whose beams cover a full turn from `angle_min` unless `angle_increment` is given."""
    values = np.asarray(ranges, dtype=np.float32)
    increment = angle_increment if angle_increment is not None else 2 * math.pi / values.size
    return LaserScan(header=header(stamp_ns), angle_min=angle_min,
                     angle_max=angle_min + increment * (values.size - 1), angle_increment=increment,
                     range_min=range_min, range_max=range_max, ranges=values)


def cloud(columns: dict[str, np.ndarray], stamp_ns: int = STAMP_NS, *, types: dict[str, str] | None = None,
          point_step: int | None = None, bigendian: bool = False, height: int = 1) -> PointCloud2:
    """Columns of equal length → PointCloud2 with fields packed in order (float32 unless `types` says).

    `point_step` larger than the packed size adds padding after each point; `height` > 1
    makes an organized cloud of height × (n / height).
    """
    types = types or {}
    order = ">" if bigendian else "<"
    names = list(columns)
    formats = [order + types.get(n, "f4") for n in names]
    offsets = list(np.cumsum([0] + [np.dtype(f).itemsize for f in formats[:-1]]))
    step = point_step or sum(np.dtype(f).itemsize for f in formats)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    n = len(next(iter(columns.values())))
    points = np.zeros(n, dtype=dtype)
    for name in names:
        points[name] = columns[name]
    fields = [PointField(name=name, offset=int(off), datatype=POINT_DATATYPES[types.get(name, "f4")], count=1)
              for name, off in zip(names, offsets, strict=True)]
    return PointCloud2(header=header(stamp_ns), height=height, width=n // height, fields=fields,
                       is_bigendian=bigendian, point_step=step, row_step=step * (n // height),
                       data=points.tobytes(), is_dense=False)


def marker(stamp_ns: int, class_id: int, class_name: str, position: Sequence[float]) -> Marker:
    msg = Marker(header=header(stamp_ns), ns=class_name, id=class_id)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    return msg


def to_rosbags(msg: Any) -> Any:
    """The rosbags twin of an rclpy message, via the CDR bytes both sides agree on."""
    return TYPESTORE.deserialize_cdr(serialize_message(msg), message_type(msg))


def write_bag(path: str | Path, records: Iterable[tuple[str, Any, int]], storage: str = "sqlite3") -> Path:
    """Write (topic, rclpy message, record time ns) records into a rosbag2 directory at `path`.

    One connection per topic and type, as rosbag2 records a topic whose publishers changed type.
    """
    path = Path(path)
    connections: dict[tuple[str, str], Any] = {}
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        for topic, msg, record_ns in records:
            key = (topic, message_type(msg))
            if key not in connections:
                connections[key] = writer.add_connection(topic, key[1], typestore=TYPESTORE)
            writer.write(connections[key], record_ns, serialize_message(msg))
    return path


def overflow_mcap_record(storage: Path, message_data: bytes) -> None:
    """Turn the MCAP message record holding `message_data` into a record of no known kind whose
    length overflows a file offset: rosbags skips it by seeking past it, and Python raises
    OverflowError (seen on a recording with zeroed disk blocks)."""
    raw = bytearray(storage.read_bytes())
    header_at = raw.index(message_data) - (1 + 8 + 2 + 4 + 8 + 8)  # opcode, length, channel, sequence, times
    assert raw[header_at] == 0x05, "not a message record"
    raw[header_at : header_at + 9] = b"\x00" + struct.pack("<Q", 2**63 - 1)
    storage.write_bytes(bytes(raw))


def unclosed_wal_recording(
    path: Path, records: Iterable[tuple[str, Any, int]]
) -> tuple[Path, sqlite3.Connection]:
    """A recording whose recorder died in WAL mode (rosbag2's `resilient` preset): `records` in the
    .db3, the same again 1 s later only in its -wal, no metadata.yaml. The connection stays open;
    close it after."""
    bag = write_bag(path, records, "sqlite3")
    writer = sqlite3.connect(next(bag.glob("*.db3")))
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    for topic_id, stamp, data in writer.execute("SELECT topic_id, timestamp, data FROM messages").fetchall():
        writer.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                       (topic_id, stamp + 10**9, data))
        writer.commit()
    (bag / "metadata.yaml").unlink()  # written only when a recording closes
    return bag, writer
