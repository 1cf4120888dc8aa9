"""Read what is left of a damaged rosbag2 storage file (truncated sqlite3 or MCAP).

rosbags refuses such files as a whole: a truncated MCAP lacks its footer and summary, a
truncated sqlite3 database fails its first query. A recording that lost its last
seconds (a robot that lost power) still holds good data, so these readers walk the file
from the front and stop at the first damaged record. Each yields (topic, msgtype,
record_ns, raw CDR) and reports where it stopped in `damage`.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import apsw
from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat, Qos
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos
from rosbags.rosbag2.storage_mcap import decompress

from m2vae_ros.bag_errors import DECOMPRESSION_ERRORS

MCAP_MAGIC = b"\x89MCAP0\r\n"
STORAGE_SUFFIXES = (".mcap", ".db3")
DEFINITION_FORMATS = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
_vfs_ids = itertools.count()


class Truncated(Exception):
    """The file ends (or is garbage) in the middle of a record."""


@dataclass
class Salvage:
    """Topics and message definitions found in a damaged file, and what went wrong."""

    path: Path
    topics: dict[str, str] = field(default_factory=dict)
    definitions: dict[str, MessageDefinition] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    # the QoS profiles the recorded publishers offered, per topic: a replay keeps /tf_static latched
    qos: dict[str, list[Qos]] = field(default_factory=dict)


def storage_files(path: Path) -> list[Path]:
    """The storage files of a recording: the file itself, or a bag directory's .mcap/.db3 files."""
    if path.is_dir():
        return sorted((p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES), key=_split_order)
    return [path]


def _split_order(path: Path) -> tuple[str, int, str]:
    """rosbag2 numbers split files ``run_0``, ``run_1``, …, ``run_10``: sort by the number, not as text."""
    match = re.fullmatch(r"(.*?)(\d+)", path.stem)
    return (match[1], int(match[2]), path.suffix) if match else (path.stem, -1, path.suffix)


# ---------------------------------------------------------------- sqlite3


class _PaddedFile(apsw.VFSFile):
    """A database file that claims the size its header declares, so SQLite opens it.

    A read that reaches past the real end is an error, not zeros: SQLite would fill a
    short read with zeros and hand back a message whose tail is blank as if it were whole.
    """

    def __init__(self, vfs: str, name: apsw.URIFilename | str | None, flags: list[int], size: int) -> None:
        super().__init__(vfs, name, flags)
        self.size = size
        self.real_size = super().xFileSize()

    def xFileSize(self) -> int:  # apsw's method names
        return max(self.size, self.real_size)

    def xRead(self, amount: int, offset: int) -> bytes:
        if offset + amount > self.real_size:
            raise apsw.IOError(f"the file ends at byte {self.real_size}")
        return super().xRead(amount, offset)


class _PaddedVFS(apsw.VFS):
    def __init__(self, name: str, size: int) -> None:
        self.size = size
        super().__init__(name, "")

    def xOpen(self, name: apsw.URIFilename | str | None, flags: list[int]) -> apsw.VFSFile:
        return _PaddedFile("", name, flags, self.size)


def salvage_sqlite(path: Path) -> tuple[Salvage, Iterator[tuple[str, str, int, bytes]]]:
    """Topics of a truncated .db3 and an iterator over its messages in insertion order."""
    found = Salvage(path)
    ids: dict[int, tuple[str, str]] = {}
    try:
        with _padded_database(path) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
            offered = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
            for topic_id, name, msgtype, qos in db.execute(f"SELECT id, name, type, {offered} FROM topics"):
                ids[topic_id] = (name, msgtype)
                found.topics[name] = msgtype
                found.qos[name] = _offered_qos(qos)
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'message_definitions'").fetchall():
                for msgtype, encoding, text in db.execute(
                    "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
                ):
                    if encoding in DEFINITION_FORMATS:
                        found.definitions[msgtype] = MessageDefinition(DEFINITION_FORMATS[encoding], text)
    except (apsw.Error, UnicodeDecodeError) as exc:  # a damaged page, or a name that is no longer text
        raise ReaderError(f"{path}: not even the topic table is readable ({exc})") from None

    def messages() -> Iterator[tuple[str, str, int, bytes]]:
        count = 0
        try:
            with _padded_database(path) as db:
                rows = db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
                for topic_id, stamp, data in rows:
                    if not (isinstance(stamp, int) and isinstance(data, bytes)):
                        found.damage.append(f"{path.name}: damaged row after {count} messages")
                        return
                    if topic_id in ids:
                        count += 1
                        yield (*ids[topic_id], stamp, data)
        except apsw.Error as exc:
            found.damage.append(f"{path.name}: unreadable after {count} messages ({exc})")

    return found, messages()


def sqlite_declared_size(path: Path) -> int:
    """The size a .db3's header declares (page size × page count); a shorter file was cut."""
    with path.open("rb") as bio:
        header = bio.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise ReaderError(f"{path} is not an SQLite database")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    return page_size * struct.unpack(">I", header[28:32])[0]


@contextmanager
def _padded_database(path: Path) -> Iterator[apsw.Connection]:
    """Read-only connection to a possibly truncated database, padded to the size its header declares."""
    vfs_name = f"m2vae-salvage-{next(_vfs_ids)}"
    vfs = _PaddedVFS(vfs_name, sqlite_declared_size(path))
    try:
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        # A URI: '#', '%' and '?' in a file name must be quoted or SQLite opens another path.
        db = apsw.Connection(f"file:{quote(str(path))}?immutable=1", flags=flags, vfs=vfs_name)
        try:
            yield db
        finally:
            db.close()
    finally:
        vfs.unregister()


# ---------------------------------------------------------------- MCAP


def salvage_mcap(path: Path) -> tuple[Salvage, Iterator[tuple[str, str, int, bytes]]]:
    """Topics of a truncated .mcap and an iterator over its messages in file order."""
    found = Salvage(path)
    schemas: dict[int, tuple[str, MessageDefinition]] = {}
    channels: dict[int, tuple[str, str]] = {}
    with path.open("rb") as bio:
        if bio.read(8) != MCAP_MAGIC:
            raise ReaderError(f"{path} is not an MCAP file")
        try:  # first pass: schemas and channels only
            for op, record in _records(bio):
                try:
                    _register(op, record, schemas, channels, found.qos)
                except (struct.error, UnicodeDecodeError) as exc:
                    raise Truncated(f"damaged record {op:#04x} ({exc})") from None
        except Truncated as exc:
            found.damage.append(f"{path.name}: {exc}")
    for name, msgtype in channels.values():
        found.topics[name] = msgtype
    found.definitions.update(dict(schemas.values()))

    def messages() -> Iterator[tuple[str, str, int, bytes]]:
        count = 0
        with path.open("rb") as bio:
            bio.seek(8)
            try:
                for op, record in _records(bio):
                    if op == 0x05:
                        if len(record) < 22:
                            found.damage.append(f"{path.name}: damaged message record after {count} messages")
                            return
                        channel_id, _, log_time, _ = struct.unpack_from("<HIQQ", record)
                        if channel_id in channels:
                            count += 1
                            yield (*channels[channel_id], log_time, record[22:])
            except Truncated:
                pass  # reported by the first pass

    return found, messages()


def _register(op: int, record: bytes, schemas: dict, channels: dict, qos: dict) -> None:
    """Remember a schema (0x03) or channel (0x04) record."""
    rec = BytesIO(record)
    if op == 0x03:
        (schema_id,) = struct.unpack("<H", rec.read(2))
        name, encoding, data = _string(rec), _string(rec), _bytes(rec)
        if encoding in DEFINITION_FORMATS:
            # A stray non-UTF-8 byte (a Latin-1 comment) must not lose the schema's topics.
            text = data.decode(errors="replace")
            schemas[schema_id] = (name, MessageDefinition(DEFINITION_FORMATS[encoding], text))
    elif op == 0x04:
        channel_id, schema_id = struct.unpack("<HH", rec.read(4))
        topic = _string(rec)
        msgtype = schemas[schema_id][0] if schema_id in schemas else ""
        channels[channel_id] = (topic, msgtype)
        try:  # the message encoding (cdr), then the metadata map; neither is needed to read messages
            _string(rec)
            qos[topic] = _offered_qos(_channel_qos_text(BytesIO(_bytes(rec))))
        except (struct.error, UnicodeDecodeError):
            qos[topic] = []


def _remaining(bio: BinaryIO) -> int:
    """Bytes from the current position to the end of `bio`."""
    here = bio.tell()
    end = bio.seek(0, os.SEEK_END)
    bio.seek(here)
    return end - here


def _records(bio: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of each record, descending into chunks; raises Truncated at damage.

    The records of an uncompressed chunk cut short are still read up to the cut: the
    writer keeps a whole megabyte in one chunk, often the entire tail of a recording.
    """
    while True:
        head = bio.read(9)
        if not head:
            return
        if len(head) < 9:
            raise Truncated("file ends inside a record header")
        op, length = struct.unpack("<BQ", head)
        if op == 0x02:
            return  # the footer: the file was complete after all
        content = bio.read(min(length, _remaining(bio)))  # a damaged length may claim petabytes
        complete = len(content) == length
        if op == 0x06:
            yield from _records(BytesIO(_chunk_records(content, complete)))
        elif complete:
            yield op, content
        if not complete:
            raise Truncated(f"file ends inside a record (opcode {op:#04x})")


def _chunk_records(content: bytes, complete: bool) -> bytes:
    """The records inside a chunk: decompressed, or the readable part of an uncompressed one."""
    try:
        _, _, size, crc = struct.unpack_from("<QQQI", content)
        rec = BytesIO(content[28:])
        compression = _string(rec)
        (compressed_size,) = struct.unpack("<Q", rec.read(8))
    except (struct.error, UnicodeDecodeError):
        raise Truncated("file ends inside a chunk header") from None
    if not complete:
        if compression:
            raise Truncated(f"file ends inside a {compression} chunk")
        return rec.read()
    try:
        return decompress(rec.read(compressed_size), compression, size, crc)
    except DECOMPRESSION_ERRORS as exc:
        raise Truncated(f"damaged chunk ({exc})") from None


def _channel_qos_text(metadata: BytesIO) -> str:
    """The `offered_qos_profiles` entry of an MCAP channel's metadata map, '' when it has none."""
    while metadata.tell() < len(metadata.getbuffer()):
        key, value = _string(metadata), _string(metadata)
        if key == "offered_qos_profiles":
            return value
    return ""


def _offered_qos(text: object) -> list[Qos]:
    """rosbag2's offered_qos_profiles YAML as rosbags' Qos; [] when absent or unreadable (the player
    then chooses by message type, as for a bag without profiles)."""
    try:
        return parse_qos(text) if isinstance(text, str) else []
    except (ReaderError, AttributeError, KeyError, TypeError, ValueError):  # valid YAML of another shape
        return []


def _bytes(rec: BytesIO) -> bytes:
    (length,) = struct.unpack("<I", rec.read(4))
    return rec.read(length)


def _string(rec: BytesIO) -> str:
    return _bytes(rec).decode()
