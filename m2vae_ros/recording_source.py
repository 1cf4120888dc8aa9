"""From a recording's path to what a reader opens, for every reader of bags: the dataset build
(training/bags.py) and the replay (play.py, salvaged_reader.py).

Two things come before rosbags may open a recording, and one after it refuses:
- An unclosed recording's SQLite write-ahead log is merged, on a copy (`replayed_source`).
- A .db3 cut short is never given to rosbags, whose SQLite would fill the missing tail with
  zeros and hand back a half-blank message as a whole one (`refuse_cut_sqlite`).
- A recording rosbags refuses is read file by file from the front, up to the damage
  (`salvage_files`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apsw
from rosbags.interfaces import Qos
from rosbags.rosbag2.errors import ReaderError

from m2vae_ros.bag_salvage import Salvage, salvage_mcap, salvage_sqlite, sqlite_declared_size, storage_files

Messages = Iterator[tuple[str, str, int, bytes]]  # (topic, msgtype, record time ns, raw CDR)


@contextlib.contextmanager
def replayed_source(path: Path) -> Iterator[tuple[Path, list[str]]]:
    """The recording, or a temporary copy of it with its SQLite write-ahead logs merged into their
    .db3; with the lines that say so (or that a log could not be replayed).

    rosbag2's `resilient` storage preset writes in WAL mode; when the recorder dies, the newest
    messages are only in `<file>.db3-wal`, which the read-only (immutable) opens of rosbags
    and the salvage ignore. Merging needs write access, hence the copy of those files (the
    others are linked): the recording itself is never written to. The copy is removed when
    the block ends.
    """
    path = Path(os.path.abspath(path))  # "." and ".." have no name, and the copy is named after it
    logs = [f for f in storage_files(path) if f.suffix == ".db3" and _nonempty(write_ahead_log(f))]
    if not logs:
        yield path, []
        return
    with tempfile.TemporaryDirectory(prefix="m2vae-wal-") as temporary:
        copy = Path(temporary) / path.name
        try:
            _merge_logs(path, copy, logs)
            source, notes = copy, [f"{log.name}: an unclosed recording; its "
                                   f"{write_ahead_log(log).stat().st_size}-byte write-ahead log was "
                                   "replayed on a copy" for log in logs]
        except (apsw.Error, OSError) as exc:
            source, notes = path, [f"{path.name}: its write-ahead log could not be replayed "
                                   f"({one_line(exc, copy, path)}); reading without it"]
        yield source, notes  # outside the except: the caller's errors are not chained to a merge's


def _merge_logs(path: Path, copy: Path, logs: list[Path]) -> None:
    if path.is_dir():
        copy.mkdir()
        replayed = {name for log in logs for name in (log.name, write_ahead_log(log).name)}
        for item in path.iterdir():
            if item.name in replayed:
                shutil.copyfile(item, copy / item.name)  # not copy2: an archived bag may be 0444
            elif not item.name.endswith("-shm"):  # SQLite rebuilds its index
                (copy / item.name).symlink_to(item.resolve())
    else:
        for item in (path, write_ahead_log(path)):
            shutil.copyfile(item, copy.parent / item.name)
    for log in logs:
        database = copy / log.name if path.is_dir() else copy
        with contextlib.closing(apsw.Connection(str(database))) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def refuse_cut_sqlite(path: Path) -> None:
    """ReaderError when a .db3 is shorter than its header says: SQLite would zero-fill the missing tail."""
    for file in storage_files(path):
        if file.suffix == ".db3" and file.stat().st_size < sqlite_declared_size(file):
            raise ReaderError(f"{file.name} is shorter than its header declares: the recording was cut")


@dataclass
class Salvaged:
    """Each readable storage file's salvage and message stream, in recording order; `lost` says
    which files gave nothing, and why."""

    files: list[tuple[Salvage, Messages]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def topics(self) -> dict[str, str]:
        return {topic: msgtype for found, _ in self.files for topic, msgtype in found.topics.items()}

    @property
    def qos(self) -> dict[str, list[Qos]]:
        return {topic: profiles for found, _ in self.files for topic, profiles in found.qos.items()}

    def close(self) -> None:
        """Close the message streams not read to their end (an sqlite one holds its database open)."""
        for _, messages in self.files:
            close = getattr(messages, "close", None)
            if close is not None:
                close()


def salvage_files(source: Path, shown: Path) -> Salvaged:
    """Every storage file of the recording read from the front (its topics now, its messages as
    they are read), the files that give nothing left out with a line each. `source` is what
    `replayed_source` gave for the user's recording `shown`, which the lines name."""
    salvaged = Salvaged()
    for file in storage_files(source):
        salvage = salvage_mcap if file.suffix == ".mcap" else salvage_sqlite
        try:
            salvaged.files.append(salvage(file))
        except (ReaderError, OSError) as exc:
            salvaged.lost.append(f"{file.name}: nothing in it is readable ({one_line(exc, source, shown)}); "
                                 "left out")
    return salvaged


def one_line(error: BaseException, source: Path, shown: Path) -> str:
    """An error's text on one line (rosbags quotes whole YAML documents), naming the user's
    recording `shown` where it names `source`, the replayed copy."""
    return " ".join(str(error).replace(str(source), str(shown)).split())


def write_ahead_log(database: Path) -> Path:
    """SQLite's write-ahead log of a database file: `<file>-wal`."""
    return database.with_name(database.name + "-wal")


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0
