"""rosbag2 recordings (directories with metadata.yaml, bare .mcap/.db3 files) as message streams.

Message types are read with the definitions stored in the bag itself, falling back to
ROS 2 Kilted's for types a bag does not define. A damaged recording is read as far as
it goes (see `m2vae_ros.bag_salvage`) and the damage is listed in `Bag.damage`; only a path
that yields nothing at all raises `BagError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import Reader
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.base import TypesysError
from rosbags.typesys.store import Typestore

from m2vae_ros.bag_errors import READ_ERRORS
from m2vae_ros.bag_salvage import storage_files
from m2vae_ros.codec import CodecError
from m2vae_ros.recording_source import (
    Salvaged,
    one_line,
    refuse_cut_sqlite,
    replayed_source,
    salvage_files,
    write_ahead_log,
)

# What a reader of a bag directory reads: storage files (rosbag2's file compression adds
# .zstd), the metadata, and an unclosed recording's write-ahead log. Notes or a .DS_Store
# beside them change nothing; SQLite's -shm index is rebuilt by every reader.
RECORDING_FILE = re.compile(r".*\.(mcap|db3)(\.zstd|-wal)?|metadata\.yaml")
IDL_SEPARATOR = "=" * 80 + "\n"
_DIGEST_SPAN = 1 << 20  # bytes read from each end of a message file by storage_digest


class BagError(Exception):
    """A path that is no readable rosbag2 recording at all."""


def recording_files(path: Path) -> list[Path]:
    """The files a reader of the recording at `path` reads (see RECORDING_FILE); those that exist."""
    if not path.is_dir():
        return [f for f in (path, write_ahead_log(path)) if f.is_file()]
    return [f for f in path.iterdir() if RECORDING_FILE.fullmatch(f.name) and f.is_file()]


def fingerprint(path: str | Path) -> dict[str, Any]:
    """Path, total size and newest mtime of a recording's files: a changed bag changes this."""
    path = Path(path).resolve()
    size, mtime_ns = _size_and_mtime(recording_files(path))
    return {"path": str(path), "bytes": size, "mtime_ns": mtime_ns}


def _size_and_mtime(files: list[Path]) -> tuple[int, int]:
    """Total size and newest mtime (0 for none) of `files`."""
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def storage_identity(path: str | Path) -> tuple[int, int] | None:
    """Total size and newest mtime of the files that hold the messages; None without any.

    metadata.yaml is left out, so a bag directory and the .mcap inside it are one
    recording, and so is a copy made with its timestamps (cp -a): whatever path names
    the messages, this is the same.
    """
    files = _message_files(path)
    return _size_and_mtime(files) if files else None


def storage_digest(path: str | Path) -> str:
    """sha256 over the first and last MiB of each message file: tells two recordings with the same
    `storage_identity` apart (bags unpacked from an archive share whole-second mtimes) without
    reading gigabytes."""
    digest = hashlib.sha256()
    for file in sorted(_message_files(path), key=lambda f: f.name):
        with file.open("rb") as stream:
            digest.update(stream.read(_DIGEST_SPAN))
            stream.seek(max(0, file.stat().st_size - _DIGEST_SPAN))
            digest.update(stream.read(_DIGEST_SPAN))
    return digest.hexdigest()


def _message_files(path: str | Path) -> list[Path]:
    """The recording's files that hold its messages: all it reads but metadata.yaml."""
    return [f for f in recording_files(Path(path).resolve()) if f.name != "metadata.yaml"]


def build_typestore(msgtypes: Collection[str], definitions: Mapping[str, MessageDefinition]) -> Typestore:
    """Types as the bag defines them, plus ROS 2 Kilted's for every type it does not define.

    Registering a type generates code, so Kilted's ~160 types are only added when some
    type lacks a usable definition in the bag (a large share of a short build otherwise).
    """
    types: dict[str, Any] = {}
    for msgtype, msgdef in definitions.items():
        try:
            if msgdef.format == MessageDefinitionFormat.MSG:
                types.update(get_types_from_msg(msgdef.data, msgtype))
            elif msgdef.format == MessageDefinitionFormat.IDL:
                texts = msgdef.data.split(IDL_SEPARATOR)[1:] if msgdef.data.startswith(IDL_SEPARATOR) else [
                    "IDL: \n" + msgdef.data
                ]
                for text in texts:
                    types.update(get_types_from_idl(text.split("\n", 1)[1]))
        except TypesysError:
            continue  # an unparsable definition: Kilted's (if any) is used instead
    if _lacks_a_definition(msgtypes, types):
        types = {**get_typestore(Stores.ROS2_KILTED).fielddefs, **types}
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(types)
    except TypesysError:  # the bag's definitions contradict each other (damage): Kilted's alone
        store = get_typestore(Stores.ROS2_KILTED)
    return store


def _lacks_a_definition(msgtypes: Collection[str], types: Mapping[str, Any]) -> bool:
    """Whether a type in `msgtypes`, or one nested in it (a Header, a PointField), has no definition.

    Third-party writers may store a message's own text without its nested types';
    deserialising it would then fail on every message.
    """
    pending, seen = list(msgtypes), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in types:
            return True
        for _, (nodetype, detail) in types[name][1]:
            while nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                (nodetype, detail), _ = detail
            if nodetype == Nodetype.NAME:
                pending.append(detail)
    return False


class Bag:
    """One recording opened for reading: `topics` (name → type), raw messages and deserialisation.

    Use as a context manager. Damage found while opening or reading is appended to
    `damage` as readable lines; reading stops at the damage and keeps what came before.
    """

    def __init__(self, path: str | Path) -> None:
        # Absolute and normalised: "." and ".." have no name, and the replayed copy is named after it.
        self.path = Path(os.path.abspath(path))
        self.topics: dict[str, str] = {}
        self.damage: list[str] = []
        self.typestore: Typestore = get_typestore(Stores.EMPTY)
        self._reader: Reader | None = None
        self._salvaged = Salvaged()
        self._source = contextlib.ExitStack()  # the write-ahead logs' replayed copy, if any

    def __enter__(self) -> Bag:
        if not self.path.exists():
            raise BagError(f"{self.path}: no such file or directory")
        source, notes = self._source.enter_context(replayed_source(self.path))
        self.damage.extend(notes)
        try:
            refuse_cut_sqlite(source)
            reader = Reader(source)
            reader.open()
        except READ_ERRORS as exc:
            try:
                self._salvage(source, exc)
            except BaseException:  # no __exit__ follows a failed __enter__
                self._salvaged.close()
                self._source.close()
                raise
        else:
            self._reader = reader
            self.topics = {c.topic: c.msgtype for c in reader.connections}
            definitions = {c.msgtype: c.msgdef for c in reader.connections}
            self.typestore = build_typestore(self.topics.values(), definitions)
        return self

    def _salvage(self, source: Path, error: Exception) -> None:
        """Fall back to reading each storage file from the front; BagError if none gives anything."""
        if not storage_files(source):  # rosbags would name the directory itself as the missing metadata
            raise BagError(f"{self.path}: not a rosbag2 recording: no metadata.yaml and no .db3 or .mcap "
                           "file in it")
        self._salvaged = salvage_files(source, self.path)
        self.topics = self._salvaged.topics
        said = one_line(error, source, self.path)  # not the replayed copy's temporary path
        if not self.topics:
            raise BagError(f"cannot open bag {self.path}: {said}; {'; '.join(self._salvaged.lost)}")
        self.damage.append(f"{self.path.name}: rosbags cannot read it ({type(error).__name__}: {said}); "
                           "reading the storage files directly, up to any damage")
        self.damage.extend(self._salvaged.lost)  # a split recording's other files still gave messages
        definitions = {t: d for found, _ in self._salvaged.files for t, d in found.definitions.items()}
        self.typestore = build_typestore(self.topics.values(), definitions)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.close()
        self._salvaged.close()
        self._source.close()

    def messages(self, topics: Collection[str]) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, record time ns, raw CDR) of the given topics, in storage order."""
        if self._reader is not None:
            connections = [c for c in self._reader.connections if c.topic in topics]
            if not connections:
                return  # rosbags reads every topic when given no connections
            count = 0
            try:
                for connection, record_ns, raw in self._reader.messages(connections=connections):
                    count += 1
                    yield connection.topic, connection.msgtype, record_ns, raw
            except READ_ERRORS as exc:
                self.damage.append(f"{self.path.name}: unreadable after {count} messages ({exc})")
            return
        for found, messages in self._salvaged.files:
            for topic, msgtype, record_ns, raw in messages:
                if topic in topics:
                    yield topic, msgtype, record_ns, raw
            self.damage.extend(found.damage)

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> Any:
        """CDR bytes → rosbags message; CodecError("unknown_type"/"corrupt_message") when impossible."""
        if msgtype not in self.typestore.types:
            raise CodecError("unknown_type", f"no definition of {msgtype!r} in the bag or in ROS 2 Kilted")
        try:
            return self.typestore.deserialize_cdr(raw, msgtype)
        except KeyError as exc:  # a nested type neither the bag nor ROS 2 Kilted defines
            raise CodecError("unknown_type", f"{msgtype} contains {exc}, defined neither in the bag nor in "
                             "ROS 2 Kilted") from None
        # TypeError: a damaged .db3 whose data cell holds an int or text instead of a blob.
        except (SerdeError, ValueError, IndexError, UnicodeDecodeError, AssertionError, TypeError) as exc:
            raise CodecError("corrupt_message", f"{msgtype} does not deserialize: {exc}") from None
