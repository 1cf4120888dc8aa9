"""`m2vae-play`: replay a rosbag2 recording onto live topics, for machines without `ros2 bag play`.

Messages go out as the CDR bytes stored in the bag (rclpy publishes serialized bytes
as they are), so nothing is converted field by field. Spacing follows the bag's log
times divided by `--rate`. `--drop TOPIC@T0:T1` suppresses a topic between T0 and T1
seconds after the bag's first message, simulating a dead sensor. Topics whose message
package is not installed (tf2_msgs has no PyPI wheel) are left out with a note unless
`--topics` names them; topics recorded as latched (/tf_static) are published latched,
so a subscriber that joins late still gets them. Other topics keep the reliability their
recorded publishers offered; a bag without offered profiles gets best effort for sensor
streams (as drivers publish them) and reliable for the rest, which tf2 and rviz subscribe
to reliable. `--qos` sets one reliability for every topic that is not latched.

Header stamps are moved to the wall clock by default: a live node rejects stamps far
from its clock and measures latency from them, so replaying hours-old stamps would
break both. Every stamp of a pass is mapped as record times are (the pass's wall-clock
start + (stamp − bag start) / rate), so stamps recorded equal stay equal (an image and its
camera_info, a scan and its ground truth) and each sensor keeps its capture-to-record
latency; a stamp that would lie ahead of its publish time gets that time. A stamp more
than `STAMP_SKEW_LIMIT_S` from its record time is no capture time on the bag's clock (a
driver on its own clock); it gets its publish time, and the summary counts the message.
Headers nested deeper (tf2_msgs/TFMessage, MarkerArray, nav_msgs/Path) are mapped alike.
A zero stamp stays zero ("no time", or "the latest transform" to tf2). `--keep-stamps`
keeps all recorded stamps (for nodes running on the bag's time).

A recording rosbags refuses (cut short: no metadata.yaml, no MCAP footer, a .db3 cut
mid-page) is replayed up to its damage through `SalvagedReader`, with a note saying so.
"""

from __future__ import annotations

import argparse
import signal
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, QosDurability, QosReliability
from rosbags.rosbag2.errors import ReaderError

from m2vae_ros.bag_errors import READ_ERRORS
from m2vae_ros.cli_args import positive_or_inf
from m2vae_ros.drop_window import DropWindow
from m2vae_ros.nested_stamps import field_holds_header, holds_header, map_header_stamps
from m2vae_ros.qos import RELIABILITIES, latched_qos, sensor_qos
from m2vae_ros.recording_source import one_line, refuse_cut_sqlite, replayed_source
from m2vae_ros.ros_types import MessageTypeError, message_class
from m2vae_ros.salvaged_reader import SalvagedReader

PUBLISHER_DEPTH = 10
SUBSCRIBER_WAIT_S = 30.0
ACK_WAIT_S = 2.0
MIN_LOOP_NS = 1_000_000  # a shorter recording would loop as fast as the CPU allows
STAMP_SKEW_LIMIT_S = 1.0
# Published best effort when the bag does not say how (sensor drivers do, for the newest data).
SENSOR_STREAM_TYPES = frozenset({
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/LaserScan", "sensor_msgs/msg/PointCloud2",
})
# CDR encapsulation header (first 4 bytes): 0x0000 = big-endian CDR, 0x0001 = little-endian.
STAMP_FORMATS = {b"\x00\x00": ">iI", b"\x00\x01": "<iI"}


class PlayError(RuntimeError):
    """The recording or the command line cannot be played; the message is shown as is."""


def has_leading_header(msg_class: type) -> bool:
    """Whether the message starts with a std_msgs/Header, whose stamp then sits at CDR offset 4."""
    fields = list(msg_class.get_fields_and_field_types().items())
    return bool(fields) and fields[0] == ("header", "std_msgs/Header")


def _stamp_format(raw: bytes) -> str:
    stamp_format = STAMP_FORMATS.get(bytes(raw[:2]))
    if stamp_format is None or len(raw) < 12:
        raise PlayError(f"not a CDR message (encapsulation {bytes(raw[:4])!r}, {len(raw)} bytes)")
    return stamp_format


def recorded_stamp(raw: bytes) -> int:
    """header.stamp (ns) of a header-first message's CDR bytes."""
    sec, nanosec = struct.unpack(_stamp_format(raw), raw[4:12])
    return sec * 1_000_000_000 + nanosec


def restamp(raw: bytes, stamp_ns: int) -> bytes:
    """CDR bytes of a header-first message with header.stamp replaced (sec int32, nanosec uint32)."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return bytes(raw[:4]) + struct.pack(_stamp_format(raw), sec, nanosec) + bytes(raw[12:])


@dataclass
class Topic:
    """A played topic: its publisher, and where its header stamps are (see `stamps_of`)."""

    publisher: Publisher
    msg_class: type
    stamps: str


def stamps_of(msg_class: type) -> str:
    """`leading`: the only header is the first field, rewritten in the bytes; `nested`: headers
    elsewhere too (TFMessage, nav_msgs/Path), rewritten by deserialising; `none`."""
    later = list(msg_class.get_fields_and_field_types().values())[1:]
    if has_leading_header(msg_class) and not any(field_holds_header(t) for t in later):
        return "leading"
    return "nested" if holds_header(msg_class) else "none"


def latched_depth(connections: list[Connection]) -> int:
    """How many messages a topic keeps for late subscribers: one per recorded latching publisher
    (a /tf_static per static broadcaster), not every copy a publisher re-sent; 0 when no
    recorded publisher latched it."""
    latching = [profile for c in connections for profile in getattr(c.ext, "offered_qos_profiles", ())
                if profile.durability == QosDurability.TRANSIENT_LOCAL]
    if not latching:
        return 0
    return max(1, min(sum(profile.depth for profile in latching), sum(c.msgcount for c in connections)))


def publisher_qos(connections: list[Connection], requested: str | None) -> QoSProfile:
    """A topic's publisher profile: latched as recorded, else `requested`, else the recorded
    publishers' reliability (reliable when any offered it: that reaches subscribers of both
    kinds), else by message type (see the module docstring)."""
    latched = latched_depth(connections)
    if latched:
        return latched_qos(latched)
    # SYSTEM_DEFAULT, BEST_AVAILABLE and UNKNOWN say nothing about what subscribers expect.
    offered = [p.reliability for c in connections for p in getattr(c.ext, "offered_qos_profiles", ())
               if p.reliability in (QosReliability.RELIABLE, QosReliability.BEST_EFFORT)]
    if requested:
        reliability = requested
    elif offered:
        reliability = "reliable" if QosReliability.RELIABLE in offered else "best_effort"
    else:
        reliability = "best_effort" if {c.msgtype for c in connections} <= SENSOR_STREAM_TYPES else "reliable"
    return sensor_qos(reliability, depth=PUBLISHER_DEPTH)


class BagPlayer:
    """Publishes one recording's messages with their recorded spacing."""

    def __init__(self, node: Node, reader: AnyReader | SalvagedReader, args: argparse.Namespace) -> None:
        self.node = node
        self.reader = reader
        self.rate: float = args.rate
        self.keep_stamps: bool = args.keep_stamps
        self.drops: list[DropWindow] = args.drop
        recorded = {c.topic: c.msgtype for c in reader.connections}
        wanted = args.topics or sorted(recorded)
        missing = sorted(set(wanted) - set(recorded))
        if missing:
            raise PlayError(f"topics {missing} are not in the recording; it has {sorted(recorded)}")
        # A misspelt --drop would otherwise play the sensor through its "dead" window unnoticed.
        stray = sorted({drop.key for drop in self.drops} - set(wanted))
        if stray:
            raise PlayError(f"--drop topics {stray} are not played; the played topics are {sorted(wanted)}")
        self.topics: dict[str, Topic] = {}
        self.unplayable: dict[str, str] = {}  # topic → why; only when --topics did not ask for it
        for topic in wanted:
            try:
                msg_class = message_class(recorded[topic])
            except MessageTypeError as exc:
                if args.topics:
                    raise PlayError(f"{topic}: {exc}; leave it out of --topics") from None
                self.unplayable[topic] = str(exc)
                continue
            connections = [c for c in reader.connections if c.topic == topic]
            publisher = node.create_publisher(msg_class, topic, publisher_qos(connections, args.qos))
            self.topics[topic] = Topic(publisher, msg_class, stamps_of(msg_class))
        if not self.topics:
            raise PlayError(f"no topic of the recording can be played: {self.unplayable}")
        self.connections = [c for c in reader.connections if c.topic in self.topics]
        if args.loop and not sum(c.msgcount for c in self.connections):
            raise PlayError(f"--loop: the played topics {sorted(self.topics)} hold no messages")
        # rosbags' end_time is one past the last message: a one-message recording lasts 1 ns.
        if args.loop and reader.end_time - reader.start_time < MIN_LOOP_NS:
            raise PlayError("--loop: the recording lasts under 1 ms (one message?); "
                            "it would repeat as fast as the machine allows")
        self.published: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self.stamped_at_publish: Counter[str] = Counter()

    def wait_for_subscribers(self, timeout_s: float) -> None:
        """Block until every played topic has a subscriber, so no message is sent into the void."""
        deadline = time.monotonic() + timeout_s
        while lonely := [n for n, t in self.topics.items() if t.publisher.get_subscription_count() == 0]:
            if time.monotonic() > deadline:
                raise PlayError(self._no_subscriber_reason(lonely, timeout_s))
            time.sleep(0.05)

    def _no_subscriber_reason(self, lonely: list[str], timeout_s: float) -> str:
        """Why the wait failed. A subscriber that DDS never matched asked for a QoS the player does
        not offer (a reliable one against a best-effort player), which `--qos` fixes."""
        unmatched = [name for name in lonely if self.node.get_subscriptions_info_by_topic(name)]
        absent = [name for name in lonely if name not in unmatched]
        reasons = [f"no subscriber appeared within {timeout_s:.0f} s on {absent}"] if absent else []
        if unmatched:
            reasons.append(f"{unmatched} have subscribers that asked for a QoS the player does not "
                           "offer (a reliable subscriber gets nothing from a best-effort publisher: "
                           "try --qos reliable)")
        return "; ".join(reasons)

    def play_once(self) -> None:
        """One pass through the recording, as long as the recording; sleeps to keep the recorded spacing.

        It ends at the recording's end time, not at its last played message: with --loop, a
        --drop window at the end of the bag would otherwise vanish into the next pass.
        """
        bag_start_ns = self.reader.start_time
        wall_start, wall_start_ns = time.monotonic(), time.time_ns()
        for connection, log_ns, raw in self._messages():
            offset_s = (log_ns - bag_start_ns) / 1e9
            if any(drop.covers(connection.topic, offset_s) for drop in self.drops):
                self.suppressed[connection.topic] += 1
                continue
            delay = wall_start + offset_s / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            topic = self.topics[connection.topic]
            data = bytes(raw)
            if not self.keep_stamps and topic.stamps != "none":
                data = self._restamped(connection.topic, data, log_ns, (bag_start_ns, wall_start_ns))
            topic.publisher.publish(data)
            self.published[connection.topic] += 1
        remaining = wall_start + (self.reader.end_time - bag_start_ns) / 1e9 / self.rate - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def _messages(self) -> Iterator[tuple[Connection, int, memoryview | bytes]]:
        """The recording's messages in order; PlayError at damage (what came before was played)."""
        messages, count = self.reader.messages(connections=self.connections), 0
        while True:
            try:
                message = next(messages)
            except StopIteration:
                return
            except READ_ERRORS as exc:
                raise PlayError(f"the recording is damaged after {count} messages of this pass "
                                f"({type(exc).__name__}: {exc})") from None
            count += 1
            yield message

    def _restamped(self, topic: str, data: bytes, log_ns: int, origin: tuple[int, int]) -> bytes:
        """The message with its header stamps moved to this pass's wall clock.

        `origin` pairs the bag's start with the pass's wall-clock start (both ns).
        """
        now_ns, strays = time.time_ns(), []  # one publish time per message: equal stamps stay equal

        def moved(stamp: int) -> int:
            if stamp == 0:  # "no time" / "the latest transform" to tf2 and rviz
                return 0
            if abs(stamp - log_ns) > STAMP_SKEW_LIMIT_S * 1e9:
                strays.append(stamp)
                return now_ns
            bag_start_ns, wall_start_ns = origin
            # Never ahead of now: a stamp recorded ahead of its record time (a clock running fast)
            # would land further ahead the slower the replay, and a node drops future stamps.
            return min(wall_start_ns + round((stamp - bag_start_ns) / self.rate), now_ns)

        if self.topics[topic].stamps == "leading":
            data = restamp(data, moved(recorded_stamp(data)))
        else:
            msg = deserialize_message(data, self.topics[topic].msg_class)
            map_header_stamps(msg, moved)
            data = serialize_message(msg)
        if strays:
            self.stamped_at_publish[topic] += 1
        return data

    def flush(self, timeout_s: float) -> None:
        """Let reliable subscribers acknowledge the last messages before the process exits."""
        for topic in self.topics.values():
            topic.publisher.wait_for_all_acked(Duration(seconds=timeout_s))

    def summary(self, elapsed_s: float) -> str:
        published = ", ".join(f"{t}: {n}" for t, n in sorted(self.published.items())) or "none"
        line = (f"m2vae-play: published {sum(self.published.values())} messages on {len(self.topics)} topics "
                f"({published}) in {elapsed_s:.1f} s")
        if self.suppressed:
            dropped = ", ".join(f"{t}: {n}" for t, n in sorted(self.suppressed.items()))
            line += f"; {sum(self.suppressed.values())} suppressed by --drop ({dropped})"
        if self.stamped_at_publish:
            stray = ", ".join(f"{t}: {n}" for t, n in sorted(self.stamped_at_publish.items()))
            line += (f"; stamped at publish, their recorded stamps over {STAMP_SKEW_LIMIT_S:g} s from "
                     f"their record times: {stray}")
        return line


def drop_argument(text: str) -> DropWindow:
    """`--drop TOPIC@T0:T1`: T0, T1 are seconds of bag time from the recording's start."""
    try:
        window = DropWindow.parse(text, "TOPIC")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--drop {exc}") from None
    if not window.key.startswith("/"):
        raise argparse.ArgumentTypeError(f"--drop {text!r}: TOPIC must be absolute (start with '/')")
    return window


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="m2vae-play", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--rate", type=positive_or_inf, default=1.0,
                        help="playback speed factor; inf plays as fast as it can (default 1)")
    parser.add_argument("--loop", action="store_true", help="replay until interrupted")
    parser.add_argument("--drop", type=drop_argument, action="append", default=[], metavar="TOPIC@T0:T1",
                        help="suppress TOPIC from T0 to T1 seconds after the bag's start (repeatable)")
    parser.add_argument("--topics", nargs="+", metavar="T",
                        help="play only these topics (default: all whose message types are installed)")
    parser.add_argument("--qos", choices=sorted(RELIABILITIES),
                        help="one publisher reliability for every topic (default: as recorded; without "
                        "recorded profiles best_effort for sensor streams, reliable for the rest); topics "
                        "recorded as latched (/tf_static) are replayed reliable and latched")
    parser.add_argument("--keep-stamps", action="store_true",
                        help="keep the recorded header stamps instead of re-stamping to now")
    parser.add_argument("--wait-for-subscribers", action="store_true",
                        help=f"start once every topic has a subscriber (at most {SUBSCRIBER_WAIT_S:.0f} s)")
    return parser.parse_args(argv)


@contextmanager
def open_recording(path: Path) -> Iterator[AnyReader | SalvagedReader]:
    """The recording through rosbags or, when rosbags cannot have it (a recording cut short: no
    metadata.yaml, no MCAP footer, a .db3 cut mid-page), its messages before the damage, as
    m2vae-dataset reads it; an unclosed recording's write-ahead log merged first, on a copy."""
    if not path.exists():
        raise PlayError("no such file or directory")
    with replayed_source(path) as (source, notes):
        for line in notes:
            print(f"m2vae-play: note: {line}", file=sys.stderr)
        reader, refused = _rosbags_reader(source, path)
        if reader is None:
            yield _salvaged(path, source, refused)
            return
        try:
            yield reader
        finally:
            reader.close()


def _rosbags_reader(source: Path, shown: Path) -> tuple[AnyReader | None, str]:
    """rosbags' reader of the recording, opened; or None and why it is not to be used, naming the
    user's recording `shown` (not a replayed copy)."""
    if source.is_dir() and not (source / "metadata.yaml").is_file():
        return None, "no metadata.yaml in it"
    reader = AnyReader([source])
    try:
        refuse_cut_sqlite(source)  # rosbags' SQLite would zero-fill the missing tail
        reader.open()
    except (AnyReaderError, *READ_ERRORS) as exc:
        return None, f"rosbags cannot read it ({type(exc).__name__}: {one_line(exc, source, shown)})"
    return reader, ""


def _salvaged(path: Path, source: Path, refused: str) -> SalvagedReader:
    """The messages before the damage, with a note on stderr saying how many and where it stops."""
    try:
        salvaged = SalvagedReader(source, path)
    except ReaderError as exc:
        raise PlayError(f"{refused}, and {exc}") from None
    count = sum(c.msgcount for c in salvaged.connections)
    which = f"before the damage ({'; '.join(salvaged.damage)})" if salvaged.damage else "of its storage files"
    print(f"m2vae-play: note: {path}: {refused}; playing the {count} messages {which}", file=sys.stderr)
    return salvaged


def main(argv: list[str] | None = None) -> int:
    """Entry point of `m2vae-play` / `ros2 run m2vae_ros play`; returns the exit status."""
    ros_argv = sys.argv if argv is None else ["m2vae-play", *argv]
    args = parse_args(remove_ros_args(ros_argv)[1:])
    # Ctrl-C must raise KeyboardInterrupt here (and print the summary) rather than let rclpy
    # shut the context down under a publish() call.
    rclpy.init(args=ros_argv, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("m2vae_play")
    started = time.monotonic()
    player = None
    try:
        signal.signal(signal.SIGTERM, _stop)  # `timeout`, `kill`: stop as Ctrl-C does, with the summary
        with open_recording(args.bag) as reader:
            if not reader.is2:
                raise PlayError(f"{args.bag} is a ROS 1 bag; m2vae-play replays rosbag2 recordings only")
            player = BagPlayer(node, reader, args)
            for topic, why in sorted(player.unplayable.items()):
                print(f"m2vae-play: not playing {topic}: {why}", file=sys.stderr)
            if args.wait_for_subscribers:
                player.wait_for_subscribers(SUBSCRIBER_WAIT_S)
            started = time.monotonic()
            player.play_once()
            while args.loop:
                player.play_once()
            player.flush(ACK_WAIT_S)
    except (PlayError, AnyReaderError, FileNotFoundError) as exc:
        said = str(exc) if str(args.bag) in str(exc) else f"{args.bag}: {exc}"  # rosbags' may name no file
        print(f"m2vae-play: error: {said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if player is not None:
            print(player.summary(time.monotonic() - started))
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
