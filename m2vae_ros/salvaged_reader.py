"""A damaged rosbag2 recording read up to its damage, for `m2vae-play`.

A robot that lost power leaves an MCAP without its footer, a .db3 cut mid-page, or a bag
directory without metadata.yaml. rosbags' AnyReader refuses all three, while
`bag_salvage` reads each storage file from the front and stops at the damage.
`SalvagedReader` offers the part of AnyReader's surface that the player uses
(`connections`, `start_time`, `end_time`, `messages`), so the recording before the
damage replays like any other. It reads the files twice: once for the counts and the
time span, then for playing; each pass streams, so a long recording is never held in
memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2.errors import ReaderError

from m2vae_ros.bag_salvage import Salvage, salvage_mcap, salvage_sqlite, storage_files

NO_DEFINITION = MessageDefinition(MessageDefinitionFormat.NONE, "")


class SalvagedReader:
    """The messages of a recording's storage files before their damage; `damage` says where each stopped.

    Without recorded QoS profiles the player falls back to its rule by message type.
    Raises ReaderError when no storage file gives a single message.
    """

    is2 = True

    def __init__(self, path: Path) -> None:
        self.files = storage_files(path)
        self.damage: list[str] = []
        unreadable: list[str] = []
        counts: Counter[str] = Counter()
        types: dict[str, str] = {}
        first_ns, last_ns = None, None
        for file in self.files:
            try:
                found, messages = _salvage(file)
            except (ReaderError, OSError) as exc:
                unreadable.append(f"{file.name}: {exc}")
                continue
            for topic, msgtype, log_ns, _ in messages:
                counts[topic] += 1
                types[topic] = msgtype
                first_ns = log_ns if first_ns is None else min(first_ns, log_ns)
                last_ns = log_ns if last_ns is None else max(last_ns, log_ns)
            self.damage += found.damage
        if first_ns is None or last_ns is None:
            why = ("; ".join(unreadable) if unreadable else "its storage files hold no message" if self.files
                   else "it holds no .mcap or .db3 file")
            raise ReaderError(f"nothing in it can be replayed: {why}")
        self.damage += [f"{line}; left out" for line in unreadable]
        ext = ConnectionExtRosbag2("cdr", [])
        self.connections = [Connection(i, topic, types[topic], NO_DEFINITION, "", count, ext, self)
                            for i, (topic, count) in enumerate(sorted(counts.items()), start=1)]
        self.start_time, self.end_time = first_ns, last_ns + 1  # rosbags': one past the last message

    def messages(self, connections: Iterable[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time ns, raw CDR) in file order, for the given connections' topics."""
        by_topic = {c.topic: c for c in connections}
        for file in self.files:
            try:
                _, messages = _salvage(file)
            except (ReaderError, OSError):
                continue  # said in `damage` by the first pass
            for topic, _, log_ns, raw in messages:
                if topic in by_topic:
                    yield by_topic[topic], log_ns, raw

    def __enter__(self) -> SalvagedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to close: each pass opens and closes its files."""


def _salvage(file: Path) -> tuple[Salvage, Iterator[tuple[str, str, int, bytes]]]:
    return salvage_mcap(file) if file.suffix == ".mcap" else salvage_sqlite(file)
