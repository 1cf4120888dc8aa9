"""A damaged rosbag2 recording read up to its damage, for `m2vae-play`.

A robot that lost power leaves an MCAP without its footer, a .db3 cut mid-page, or a bag
directory without metadata.yaml. rosbags' AnyReader refuses them (or, for a cut .db3, would
zero-fill its tail), while `recording_source.salvage_files` reads each storage file from the
front and stops at the damage, as the dataset build does. `SalvagedReader` offers the part of
AnyReader's surface that the player uses (`connections`, `start_time`, `end_time`,
`messages`), so the recording before the damage replays like any other. It reads the files
once for the counts and the time span, then once per played pass; each read streams, so a
long recording is never held in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2.errors import ReaderError

from m2vae_ros.recording_source import salvage_files

NO_DEFINITION = MessageDefinition(MessageDefinitionFormat.NONE, "")


class SalvagedReader:
    """The messages of a recording's storage files before their damage; `damage` says where each stopped.

    `source` is what `recording_source.replayed_source` gave for the user's recording `shown`,
    which the damage lines name. Each topic keeps the QoS profiles its recorded publishers
    offered, where the damaged file still holds them. Raises ReaderError when not one message
    is readable.
    """

    is2 = True

    def __init__(self, source: Path, shown: Path) -> None:
        self.source, self.shown = source, shown
        salvaged = salvage_files(source, shown)
        counts: Counter[str] = Counter()
        first_ns, last_ns = None, None
        try:
            for _, messages in salvaged.files:
                for topic, _, log_ns, _ in messages:
                    counts[topic] += 1
                    first_ns = log_ns if first_ns is None else min(first_ns, log_ns)
                    last_ns = log_ns if last_ns is None else max(last_ns, log_ns)
        finally:
            salvaged.close()
        self.damage = [line for found, _ in salvaged.files for line in found.damage] + salvaged.lost
        if first_ns is None or last_ns is None:
            why = "; ".join(self.damage) or "its storage files hold no message"
            raise ReaderError(f"nothing in it can be replayed ({why})")
        types, qos = salvaged.topics, salvaged.qos
        self.connections = [
            Connection(i, topic, types[topic], NO_DEFINITION, "", count,
                       ConnectionExtRosbag2("cdr", qos.get(topic, [])), self)
            for i, (topic, count) in enumerate(sorted(counts.items()), start=1)
        ]
        self.start_time, self.end_time = first_ns, last_ns + 1  # rosbags': one past the last message

    def messages(self, connections: Iterable[Connection]) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time ns, raw CDR) in file order, for the given connections' topics."""
        by_topic = {c.topic: c for c in connections}
        salvaged = salvage_files(self.source, self.shown)
        try:
            for _, messages in salvaged.files:
                for topic, _, log_ns, raw in messages:
                    if topic in by_topic:
                        yield by_topic[topic], log_ns, raw
        finally:
            salvaged.close()
