"""Recordings as robots leave them: cut sqlite3 files, odd definitions, scene-clearing markers."""

import sqlite3
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bagutils import (
    STORAGES,
    TYPESTORE,
    header,
    image,
    marker,
    overflow_mcap_record,
    scan,
    unclosed_wal_recording,
    write_bag,
)
from m2vae_training.bags import Bag, BagError, fingerprint
from m2vae_training.config import ConfigError, load_train_config
from m2vae_training.dataset import DatasetError, build_dataset
from m2vae_training.dataset_cli import main
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from std_msgs.msg import String
from test_dataset import small_config
from visualization_msgs.msg import Marker

from m2vae_ros.bag_salvage import MCAP_MAGIC, salvage_mcap, salvage_sqlite, storage_files
from m2vae_ros.recording_source import replayed_source

SCANS = [("/scan", scan(np.full(90, 2.0, np.float32), (i + 1) * 10**8), (i + 1) * 10**8) for i in range(10)]


def camera_bag(path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(1, 255, (20, 20, 3), dtype=np.uint8) for _ in range(60)]
    return write_bag(path, [("/camera/image_raw", image(f, "rgb8", (i + 1) * 10**8), (i + 1) * 10**8)
                            for i, f in enumerate(frames)], "sqlite3")


@pytest.mark.parametrize("keep", [0.33, 0.5, 0.97, -300])  # a fraction of the file, or all but 300 bytes
def test_a_cut_sqlite3_bag_yields_only_whole_messages(tmp_path, keep):
    """SQLite fills a short read with zeros; those messages must be lost, not half-black."""
    bag = camera_bag(tmp_path / "bag")
    config = load_train_config(small_config(tmp_path))
    whole = build_dataset([bag], config, tmp_path / "whole", progress=False)
    db = next(bag.glob("*.db3"))
    size = db.stat().st_size
    db.write_bytes(db.read_bytes()[: size + keep if keep < 0 else int(size * keep)])
    cut = build_dataset([bag], config, tmp_path / "cut", progress=False)
    assert 0 < len(cut) < len(whole) and cut.manifest["damage"]
    rows = np.searchsorted(whole.stamps, cut.stamps)
    np.testing.assert_array_equal(whole.stamps[rows], cut.stamps)
    np.testing.assert_array_equal(np.asarray(cut.arrays["camera"]), np.asarray(whole.arrays["camera"])[rows])


def test_a_row_with_no_data_ends_the_salvage_as_damage(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "sqlite3")
    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE messages SET data = 7 WHERE id = 4")  # what a cut record header reads as
    found, messages = salvage_sqlite(db)
    assert len(list(messages)) == 3 and found.damage == [f"{db.name}: damaged row after 3 messages"]


def test_an_empty_definition_of_an_unrelated_type_does_not_stop_the_build(tmp_path):
    """rosbag2 (Iron and later) stores an empty definition for a type the recorder did not know."""
    bag = write_bag(tmp_path / "bag", [*SCANS, ("/vendor/status", String(data="x"), 10**9)], "sqlite3")
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE message_definitions SET encoding = '', encoded_message_definition = '' "
                   "WHERE topic_type = 'std_msgs/msg/String'")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/scan"]["decoded"] == 10 and len(ds) == 10
    assert "KeyError" in ds.manifest["damage"][0]


def test_a_non_utf8_byte_in_an_mcap_schema_keeps_its_topics(tmp_path):
    markers = [("/ground_truth/object", marker(t, 0, "red_box", (1, 0, 0)), t) for _, _, t in SCANS]
    labelled = [*SCANS, *markers]
    bag = write_bag(tmp_path / "bag", sorted(labelled, key=lambda r: r[2]), "mcap")
    storage = next(bag.glob("*.mcap"))
    raw = storage.read_bytes()
    # A Latin-1 comment instead of a constant, same length.
    storage.write_bytes(raw.replace(b"int32 CUBE=1\n", b"#\xb0 CUBE=1   \n"))
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert len(ds) == 10 and ds.class_names == ["red_box"] and (ds.labels == 0).all()


def test_delete_markers_are_ignored_not_taken_for_labels(tmp_path):
    # RViz users send "clear all" with a default header: stamp 0 is no failure on an ignored marker.
    records = [*SCANS, ("/ground_truth/object", Marker(header=header(0), action=Marker.DELETEALL), 10**8)]
    records += [("/ground_truth/object", marker(t, 0, "red_cylinder", (1, 0, 0)), t) for _, _, t in SCANS[5:]]
    bag = write_bag(tmp_path / "bag", sorted(records, key=lambda r: r[2]), "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.class_names == ["red_cylinder"] and ds.manifest["labels"]["markers"] == 5
    assert ds.manifest["labels"]["failures"] == {}
    assert (ds.labels[:2] == -1).all() and np.isnan(ds.positions[:2]).all()


def test_another_tools_directory_with_a_manifest_is_never_overwritten(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "mcap")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"name": "my web app"}')
    (mine / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        build_dataset([bag], load_train_config(small_config(tmp_path)), mine, progress=False)
    assert (mine / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("slop", ["nan", "inf", "-0.1"])
def test_a_slop_that_is_no_finite_duration_is_refused(tmp_path, capsys, slop):
    bag = write_bag(tmp_path / "bag", SCANS, "mcap")
    argv = [str(bag), "--config", str(small_config(tmp_path)), "--out", str(tmp_path / "o"), "--slop", slop]
    assert main(argv) == 2
    assert "slop must be a finite number of seconds ≥ 0" in capsys.readouterr().err
    (tmp_path / "inf.yaml").write_text(small_config(tmp_path).read_text().replace("slop: 0.05", "slop: .inf"))
    with pytest.raises(ConfigError, match=r"dataset\.slop must be a finite number"):
        load_train_config(tmp_path / "inf.yaml")


def test_split_storage_files_are_read_in_recording_order(tmp_path):
    for i in (0, 1, 2, 10, 11):
        (tmp_path / f"run_{i}.db3").touch()
    assert [p.stem for p in storage_files(tmp_path)] == ["run_0", "run_1", "run_2", "run_10", "run_11"]


def test_a_sample_whose_members_straddle_an_object_change_is_unlabelled(tmp_path):
    """Markers at the scans' stamps say class 0 up to 0.4 s and class 1 from 0.5 s; the camera
    frame 2 ms after the 0.4 s scan may already show the new object."""
    records = []
    for i in range(10):
        t = (i + 1) * 10**8
        records.append(("/scan", scan(np.full(90, 2.0, np.float32), t), t))
        records.append(("/ground_truth/object", marker(t, int(i >= 5), "cls", (1, 0, 0)), t))
        records.append(("/camera/image_raw", image(np.zeros((16, 16, 3), np.uint8), "rgb8", t + 2 * 10**6),
                        t + 2 * 10**6))
    bag = write_bag(tmp_path / "bag", sorted(records, key=lambda r: r[2]), "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.labels.tolist() == [0, 0, 0, 0, -1, 1, 1, 1, 1, 1]


def test_a_short_mcap_message_record_ends_the_salvage_as_damage(tmp_path):
    def record(op: int, content: bytes) -> bytes:
        return struct.pack("<BQ", op, len(content)) + content

    def text(value: str) -> bytes:
        return struct.pack("<I", len(value)) + value.encode()

    def message(t: int) -> bytes:
        return record(0x05, struct.pack("<HIQQ", 1, 0, t, t) + b"\x00\x01\x00\x00\x02\x00\x00\x00x\x00")

    definition = text("std_msgs/msg/String") + text("ros2msg") + text("string data")
    schema = record(0x03, struct.pack("<H", 1) + definition)
    channel = record(0x04, struct.pack("<HH", 1, 1) + text("/chatter") + text("cdr") + struct.pack("<I", 0))
    path = tmp_path / "cut.mcap"
    short = record(0x05, b"\x01" + bytes(9))  # a message record too short for its own header
    path.write_bytes(MCAP_MAGIC + schema + channel + message(1) + short + message(2))
    found, messages = salvage_mcap(path)
    assert [stamp for _, _, stamp, _ in messages] == [1]
    assert found.damage == ["cut.mcap: damaged message record after 1 messages"]


def test_a_definition_stored_without_its_nested_types_falls_back_to_ros2_kilted(tmp_path):
    """Some writers store a message's own text, not the Header and other types it contains."""
    bag = write_bag(tmp_path / "bag", SCANS, "sqlite3")
    floats = ("angle_min", "angle_max", "angle_increment", "time_increment", "scan_time", "range_min",
              "range_max")
    fields = ["std_msgs/Header header", *(f"float32 {name}" for name in floats), "float32[] ranges",
              "float32[] intensities"]
    own_text_only = "\n".join(fields) + "\n"
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE message_definitions SET encoded_message_definition = ? "
                   "WHERE topic_type = 'sensor_msgs/msg/LaserScan'", (own_text_only,))
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/scan"]["decoded"] == 10 and len(ds) == 10


def test_a_record_length_claiming_petabytes_is_damage_not_a_memory_error(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "mcap")
    storage = next(bag.glob("*.mcap"))
    raw = bytearray(storage.read_bytes())
    raw[len(MCAP_MAGIC) + 1 : len(MCAP_MAGIC) + 9] = struct.pack("<Q", 2**60)  # the header record's length
    storage.write_bytes(bytes(raw))
    found, messages = salvage_mcap(storage)
    assert list(messages) == [] and "ends inside a record" in found.damage[0]


def test_an_unclosed_wal_mode_recording_keeps_the_messages_of_its_write_ahead_log(tmp_path):
    bag, writer = unclosed_wal_recording(tmp_path / "bag", SCANS)
    db_file = next(bag.glob("*.db3"))
    before = db_file.read_bytes()
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/scan"]["decoded"] == 20 and len(ds) == 20
    assert "write-ahead log was replayed on a copy" in ds.manifest["damage"][0]
    assert db_file.read_bytes() == before  # the recording itself is not written to
    writer.close()


@pytest.mark.parametrize("relative", [".", "../bag"])
def test_a_recording_named_by_a_relative_path_keeps_its_write_ahead_log(tmp_path, monkeypatch, relative):
    """"." has no file name; the replayed copy must still be a directory of its own."""
    bag, writer = unclosed_wal_recording(tmp_path / "bag", SCANS)
    monkeypatch.chdir(bag)
    with Bag(relative) as opened:
        assert sum(1 for _ in opened.messages({"/scan"})) == 20
        assert "write-ahead log was replayed on a copy" in opened.damage[0]
    writer.close()


def test_damage_lines_name_the_users_recording_and_the_replayed_copy_is_removed(tmp_path, monkeypatch):
    # A split recording: its first file unclosed in WAL mode, its second no database at all.
    bag, writer = unclosed_wal_recording(tmp_path / "bag", SCANS)
    (bag / "bag_1.db3").write_bytes(b"not a database" * 100)
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with Bag(bag) as opened:
        assert sum(1 for _ in opened.messages({"/scan"})) == 20
        assert list(temporary.iterdir())  # the copy with the log merged
    writer.close()
    assert not list(temporary.iterdir())
    assert f"bag_1.db3: nothing in it is readable ({bag}/bag_1.db3 is not an SQLite database); left out" \
        in opened.damage
    assert not [line for line in opened.damage if "m2vae-wal-" in line or "\n" in line], opened.damage


def test_the_recording_named_dot_has_its_write_ahead_log_replayed(tmp_path, monkeypatch):
    bag, writer = unclosed_wal_recording(tmp_path / "bag", SCANS)
    monkeypatch.chdir(bag)
    with replayed_source(Path(".")) as (source, notes):  # "." has no name to give the copy
        assert source.name == "bag" and source != bag and notes[0].endswith("was replayed on a copy")
    writer.close()


def test_a_write_ahead_log_that_cannot_be_replayed_is_damage_not_a_crash(tmp_path):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "bag_0.db3").write_bytes(b"not a database" * 100)
    (bag / "bag_0.db3-wal").write_bytes(b"not a log" * 100)
    with pytest.raises(BagError, match="cannot open bag"):  # as without the log, not an apsw error
        Bag(bag).__enter__()


def test_every_file_a_reader_reads_counts_in_a_bags_fingerprint_and_no_other(tmp_path):
    # rosbags reads file-compressed bags (.mcap.zstd): a replaced one must not reuse the dataset.
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (bag / "bag_0.mcap.zstd").write_bytes(b"x" * 100)
    (bag / "bag_0.db3-shm").write_bytes(b"s" * 10)
    before = fingerprint(bag)
    (bag / "bag_0.db3-shm").write_bytes(b"s" * 20)  # any reader rewrites it
    (bag / "notes.txt").write_text("calibrated on Tuesday")  # a rebuild or a refused --resume for this?
    assert fingerprint(bag) == before
    (bag / "bag_0.mcap.zstd").write_bytes(b"y" * 101)
    assert fingerprint(bag)["bytes"] == before["bytes"] + 1


def test_a_split_recording_names_a_storage_file_it_lost_whole(tmp_path):
    # The other file still gives its messages; the damage says which file gave none.
    bag = tmp_path / "split"
    bag.mkdir()
    part = write_bag(tmp_path / "part", SCANS)
    for i in range(2):
        (bag / f"run_{i}.db3").write_bytes(next(part.glob("*.db3")).read_bytes())
    (bag / "run_0.db3").write_bytes(b"\xab" * 8192)  # not even a header left
    with Bag(bag) as opened:
        messages = list(opened.messages({"/scan"}))
    assert len(messages) == len(SCANS)
    assert any(line.startswith("run_0.db3: nothing in it is readable") for line in opened.damage)


def mcap_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every chunk record of an MCAP file, in file order."""
    chunks, offset = [], len(MCAP_MAGIC)
    while offset + 9 <= len(data):
        op, length = struct.unpack_from("<BQ", data, offset)
        if op == 0x02:  # data end
            break
        if op == 0x06:
            chunks.append((offset, length))
        offset += 9 + length
    return chunks


@pytest.mark.parametrize("footer", [True, False])
def test_a_damaged_zstd_chunk_ends_the_read_as_damage(tmp_path, footer):
    """rosbag2's zstd presets compress MCAP chunks; zstd's error is no ValueError and must not escape."""
    rng = np.random.default_rng(0)
    writer = Writer(tmp_path / "bag", version=9, storage_plugin=STORAGES["mcap"])
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for i in range(24):  # 120 kB each: three of the writer's 1 MB chunks
            stamp = (i + 1) * 10**8
            frame = image(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), "rgb8", stamp)
            writer.write(connection, stamp, serialize_message(frame))
    path = next((tmp_path / "bag").glob("*.mcap"))
    data = bytearray(path.read_bytes())
    chunks = mcap_chunks(data)
    assert len(chunks) == 3
    start = chunks[1][0] + 9 + 28 + 4 + len("zstd") + 8  # past the chunk header: the zstd frame
    data[start:start + 4] = bytes(4)
    path.write_bytes(bytes(data if footer else data[: chunks[2][0] + 20]))
    with Bag(tmp_path / "bag") as bag:
        stamps = [record_ns for _, _, record_ns, _ in bag.messages({"/camera/image_raw"})]
    assert stamps == [(i + 1) * 10**8 for i in range(9)]  # the first chunk's nine, in order
    assert "Zstandard" in bag.damage[-1]


def test_a_cut_sqlite3_bag_whose_name_reads_as_a_uri_is_salvaged(tmp_path):
    """The salvage opens SQLite by URI, where '#', '%' and '?' mean something."""
    # rosbags itself cannot write there (its writer has the same bug): renamed afterwards
    bag = write_bag(tmp_path / "bag", SCANS, "sqlite3").rename(tmp_path / "run#1?%41")
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:-300])
    with Bag(bag) as opened:
        assert 0 < sum(1 for _ in opened.messages({"/scan"})) < len(SCANS)
    assert "reading the storage files directly" in opened.damage[0]


def test_a_data_cell_that_is_no_blob_in_an_intact_bag_is_a_corrupt_message(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "sqlite3")
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE messages SET data = 7 WHERE id = 4")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    scans = ds.manifest["topics"]["/scan"]
    assert (scans["decoded"], scans["failed"], scans["failures"]) == (9, 1, {"corrupt_message": 1})


def test_a_skipped_record_whose_length_overflows_a_file_offset_is_damage_not_a_crash(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "mcap")
    overflow_mcap_record(next(bag.glob("*.mcap")), serialize_message(SCANS[3][1]))
    with Bag(bag) as reader:
        stamps = [stamp for _, _, stamp, _ in reader.messages({"/scan"})]
    assert stamps == []  # the chunk holding the damage is lost whole: rosbags parses it before yielding
    assert reader.damage == [f"{bag.name}: unreadable after 0 messages (Python int too large to "
                             "convert to C ssize_t)"]


def test_a_topic_name_that_is_no_longer_text_is_damage_not_a_crash(tmp_path):
    bag = write_bag(tmp_path / "bag", SCANS, "sqlite3")
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE topics SET name = CAST(X'2FFF73' AS TEXT)")  # "/\xffs": bytes flipped on disk
    (bag / "metadata.yaml").unlink()  # so the salvage reads the topic table itself
    with pytest.raises(BagError, match="not even the topic table is readable"), Bag(bag):
        pass
