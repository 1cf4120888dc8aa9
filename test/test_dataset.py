"""Prepared datasets from real rosbag2 files (sqlite3 and MCAP), the CLI, and the config loader."""

import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from bagutils import cloud, compressed, image, marker, scan, write_bag
from m2vae_training.bags import Bag, BagError, storage_identity
from m2vae_training.config import ConfigError, load_train_config
from m2vae_training.dataset import (
    MANIFEST,
    DatasetError,
    _refuse_a_recording_twice,
    build_dataset,
    load_dataset,
)
from m2vae_training.dataset_cli import TOPIC_KEYS, main
from m2vae_training.dataset_notes import no_samples_error, notes
from m2vae_training.prediction import UsePredictor
from std_msgs.msg import String
from trainutils import signal_when, tiny_bag, tiny_config

from m2vae_ros import codec

MS = 1_000_000
CLASSES = ["red_cylinder", "red_box", "green_cylinder"]
DROPOUT = (1.2e9, 2.4e9)  # LiDAR silent in this window
RNG = np.random.default_rng(5)


def small_config(tmp_path: Path, **topics: str) -> Path:
    """config/train.yaml with 16×16 images and 90-beam scans, so the tests stay fast."""
    data = yaml.safe_load((Path(__file__).parents[1] / "config" / "train.yaml").read_text())
    data["modalities"][0]["preprocess"] = {"width": 16, "height": 16, "channels": 3}
    data["modalities"][1]["preprocess"]["beams"] = 90
    for modality in data["modalities"]:
        modality["topic"] = topics.get(modality["name"], modality["topic"])
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def colour(i: int) -> np.ndarray:
    return np.full((32, 32, 3), (i * 7 % 256, 100, 200), np.uint8)


def recording(path: Path, storage: str, bad: bool = True) -> Path:
    """3 s: camera 30 Hz and LiDAR 10 Hz with ±3 ms jitter, a LiDAR dropout, markers and bad messages."""
    records = []
    for i in range(90):
        stamp = max(MS, i * 33_333_333 + int(RNG.integers(-3, 4)) * MS)  # unsigned, and 0 is "never set"
        msg = image(colour(i), "rgb8", stamp)
        if bad and i == 10:
            msg.data = msg.data[:100]  # short buffer
        if bad and i == 20:
            msg.encoding = "yuv422"
        if bad and i == 30:
            msg.header.stamp.sec = -1  # a driver without a clock
        records.append(("/camera/image_raw", msg, stamp + 2 * MS))
    for i in range(30):
        stamp = i * 100_000_000 + 5 * MS + int(RNG.integers(-3, 4)) * MS
        if not DROPOUT[0] <= stamp <= DROPOUT[1]:
            records.append(("/scan", scan(np.full(90, 2.0 + i / 100, np.float32), stamp), stamp + 1 * MS))
        truth = marker(stamp, i // 10, CLASSES[i // 10], (1.0, -0.5, 0.0))  # a new object each second
        records.append(("/ground_truth/object", truth, stamp))
    records.sort(key=lambda r: r[2])
    if bad:  # two camera frames recorded in swapped order: header stamps go backwards
        cams = [j for j, r in enumerate(records) if r[0] == "/camera/image_raw"]
        (topic, first, t_first), (_, second, t_second) = records[cams[40]], records[cams[41]]
        records[cams[40]], records[cams[41]] = (topic, second, t_first), (topic, first, t_second)
    return write_bag(path, records, storage)


@pytest.fixture(params=["sqlite3", "mcap"])
def storage(request):
    return request.param


def test_build_synchronises_counts_failures_and_fills_dropouts(tmp_path, storage):
    bag = recording(tmp_path / "bag", storage)
    config = load_train_config(small_config(tmp_path))
    ds = build_dataset([bag], config, tmp_path / "out", progress=False)
    topics = ds.manifest["topics"]
    cam, lidar = topics["/camera/image_raw"], topics["/scan"]
    assert (cam["messages"], cam["decoded"], cam["failed"]) == (90, 87, 3)
    assert cam["failures"] == {"short_buffer": 1, "unsupported_encoding": 1, "negative_stamp": 1}
    assert cam["out_of_order"] == 1 and lidar["failed"] == 0
    n_scans = lidar["messages"]
    samples = ds.manifest["samples"]
    assert samples["complete"] == n_scans == samples["by_subset"]["camera+lidar"]
    assert samples["partial"] == samples["by_subset"]["camera"] > 15
    partial = ~ds.available[:, 1]
    assert ds.available[:, 0].all()
    assert (ds.stamps[partial] > DROPOUT[0]).all() and (ds.stamps[partial] < DROPOUT[1]).all()
    scans, masks = np.asarray(ds.arrays["lidar"]), np.asarray(ds.masks["lidar"])
    assert (scans[partial] == 0).all() and not masks[partial].any()
    assert ((scans[~partial] > 0.24) & (scans[~partial] < 0.29)).all() and masks[~partial].all()
    assert ds.arrays["camera"].shape == (len(ds), 3, 16, 16) and ds.arrays["camera"].dtype == np.float32
    assert (np.diff(ds.stamps) >= 0).all() and (ds.bag_index == 0).all()
    assert ds.class_names == CLASSES and set(ds.labels.tolist()) == {-1, 0, 1, 2}
    # Unlabelled: the samples with a camera frame between the last marker of one object and
    # the first of the next, around 1 s and 2 s.
    unlabelled = ds.stamps[ds.labels < 0] / 1e9
    assert 0 < len(unlabelled) <= 6 and (np.abs(unlabelled - np.round(unlabelled)) < 0.11).all()
    np.testing.assert_allclose(ds.positions[ds.labels >= 0], [[1.0, -0.5, 0.0]] * int((ds.labels >= 0).sum()))
    assert np.isnan(ds.positions[ds.labels < 0]).all()  # a sample that saw two objects has no position
    assert ds.spec.modality("camera").msg_type == "sensor_msgs/msg/Image"
    assert ds.spec.modality("lidar").msg_type == "sensor_msgs/msg/LaserScan"
    reasons = {p["reason"] for p in ds.manifest["problems"]}
    assert reasons == {"short_buffer", "unsupported_encoding", "negative_stamp", "out_of_order"}
    assert all(p["topic"] == "/camera/image_raw" for p in ds.manifest["problems"])
    assert all(p["stamp_ns"] > 0 for p in ds.manifest["problems"] if p["reason"] != "negative_stamp")
    assert ds.manifest["labels"]["markers"] == 30
    assert ds.manifest["labels"]["labelled_samples"] == (ds.labels >= 0).sum()


def test_load_dataset_matches_build_and_memory_maps(tmp_path):
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    built = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "out", progress=False)
    loaded = load_dataset(tmp_path / "out")
    assert isinstance(loaded.arrays["camera"], np.memmap)
    np.testing.assert_array_equal(loaded.arrays["camera"], built.arrays["camera"])
    np.testing.assert_array_equal(loaded.available, built.available)
    assert loaded.spec == built.spec and len(loaded) == len(built) > 0
    with pytest.raises(DatasetError):
        load_dataset(tmp_path)


@pytest.mark.parametrize("guess", [False, True], ids=["reread-everything", "decode-everything"])
def test_the_dataset_does_not_depend_on_which_decodes_the_reader_guessed(tmp_path, monkeypatch, guess):
    bag = recording(tmp_path / "bag", "mcap")
    config = load_train_config(small_config(tmp_path))
    predicted = build_dataset([bag], config, tmp_path / "predicted", progress=False)
    decodes = predicted.manifest["decodes"]
    used = int((predicted.available).sum())
    assert decodes["reread"] <= 1 and used <= decodes["while_reading"] + decodes["reread"] <= used + 4
    monkeypatch.setattr(UsePredictor, "_expected_used", lambda self, stream, stamp: guess)
    forced = build_dataset([bag], config, tmp_path / "forced", progress=False)
    accepted = sum(topic["decoded"] for topic in forced.manifest["topics"].values())
    assert forced.manifest["decodes"] == ({"while_reading": accepted, "reread": 0} if guess
                                          else {"while_reading": 0, "reread": used})
    for name in ("camera", "lidar"):
        np.testing.assert_array_equal(forced.arrays[name], predicted.arrays[name])
    np.testing.assert_array_equal(forced.masks["lidar"], predicted.masks["lidar"])
    np.testing.assert_array_equal(forced.available, predicted.available)
    assert not list(tmp_path.glob("*/.spill_*"))


def encoded_camera(pixels: np.ndarray) -> list:
    """The same picture in every supported Image encoding (colour ones exact, others reduced)."""
    bgr = np.ascontiguousarray(pixels[:, :, ::-1])
    alpha = np.full((*pixels.shape[:2], 1), 9, np.uint8)
    grey = pixels[:, :, 0]
    grey16 = grey.astype(np.uint16) * 257
    return [
        image(pixels, "rgb8"), image(bgr, "bgr8", pad=4), image(np.dstack([pixels, alpha]), "rgba8"),
        image(np.dstack([bgr, alpha]), "bgra8"), image(grey, "mono8"),
        image(grey16, "mono16", bigendian=True), image(grey16, "16UC1"),
        image(grey.astype(np.float32) / 255, "32FC1"),
    ]


def test_every_image_encoding_and_compressed_images_become_samples(tmp_path, storage, monkeypatch):
    pixels = np.repeat(np.repeat(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8), 2, 0), 2, 1)
    records = []
    for i, msg in enumerate(encoded_camera(pixels)):
        stamp = (i + 1) * 200 * MS
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        png = compressed(cv2.imencode(".png", pixels[:, :, ::-1])[1].tobytes(), "png", stamp)
        records += [("/camera/image_raw", msg, stamp), ("/camera/compressed", png, stamp),
                    ("/scan", scan(np.full(90, 4.0, np.float32), stamp + MS), stamp + MS)]
    bag = write_bag(tmp_path / "bag", records, storage)
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "raw", progress=False)
    assert len(ds) == 8 and ds.available.all()
    expected = cv2.resize(pixels, (16, 16), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(ds.arrays["camera"][:4], np.stack([expected] * 4), atol=1e-6)
    for row in ds.arrays["camera"][4:]:  # mono encodings: the red channel, repeated
        np.testing.assert_allclose(row, np.stack([expected[0]] * 3), atol=1e-6)
    config = load_train_config(small_config(tmp_path), {"camera": "/camera/compressed"})
    decodes = []
    key = ("sensor_msgs/msg/CompressedImage", "image")
    decode = codec.DECODERS[key]
    monkeypatch.setitem(codec.DECODERS, key, lambda msg, spec: decodes.append(1) or decode(msg, spec))
    png = build_dataset([bag], config, tmp_path / "png", progress=False)
    assert len(decodes) == 8  # the check has no cheaper form: its decode is spilled, not done again
    assert png.spec.modality("camera").msg_type == "sensor_msgs/msg/CompressedImage"
    np.testing.assert_allclose(png.arrays["camera"], np.stack([expected] * 8), atol=1e-6)


def test_a_depth_image_in_metres_without_value_max_is_noted(tmp_path):
    records = []
    for i in range(5):
        stamp = (i + 1) * 200 * MS
        depth = image(np.full((8, 8), 3.0, np.float32), "32FC1")
        depth.header.stamp.sec, depth.header.stamp.nanosec = divmod(stamp, 10**9)
        records += [("/camera/image_raw", depth, stamp),
                    ("/scan", scan(np.full(90, 4.0, np.float32), stamp + MS), stamp + MS)]
    bag = write_bag(tmp_path / "bag", records, "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert len(ds) == 5 and (ds.arrays["camera"] == 1.0).all()  # clipped, as the note says
    assert ds.manifest["beyond_full_scale"] == ds.manifest["grey_for_colour"] == {"camera": 5}
    assert ("camera: 5 of the messages decoded for it were float images with values above 1.5 and no "
            "preprocess.value_max, so 1.0 is their full scale and they clip (a depth camera: kind depth "
            "reads metres, with its holes as no return)") in notes(ds)


def test_a_depth_cameras_16uc1_read_as_an_image_is_noted(tmp_path):
    records = []
    for i in range(5):
        stamp = (i + 1) * 200 * MS
        millimetres = np.full((8, 8), 2500, np.uint16)
        millimetres[:2] = 0  # no data over the top rows, as over a depth camera's sky
        depth = image(millimetres, "16UC1")
        depth.header.stamp.sec, depth.header.stamp.nanosec = divmod(stamp, 10**9)
        records += [("/camera/image_raw", depth, stamp),
                    ("/scan", scan(np.full(90, 4.0, np.float32), stamp + MS), stamp + MS)]
    bag = write_bag(tmp_path / "bag", records, "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert len(ds) == 5 and ds.manifest["depth_for_image"] == {"camera": 5}
    assert ("camera: 5 of the messages decoded for it were 16UC1 images with zero pixels, REP 118's depth in "
            "millimetres with holes: the holes read black and the depths as shares of preprocess.value_max "
            "(65.5 m unset); kind depth reads metres, with its holes as no return") in notes(ds)


def test_pointcloud_with_padded_big_endian_fields(tmp_path):
    angles = np.radians(np.arange(-180, 180, 4.0))
    columns = {"x": 3 * np.cos(angles), "y": 3 * np.sin(angles), "z": np.zeros(90), "intensity": np.ones(90)}
    records = []
    for i in range(5):
        stamp = (i + 1) * 100 * MS
        pts = cloud(columns, stamp, types={"x": "f8", "y": "f8", "z": "f8"}, point_step=40, bigendian=True)
        camera = image(colour(i), "rgb8", stamp + MS)
        records += [("/points", pts, stamp), ("/camera/image_raw", camera, stamp)]
    nan_cloud = cloud({"x": np.full(2, np.nan), "y": np.zeros(2), "z": np.zeros(2)}, 600 * MS)
    records.append(("/points", nan_cloud, 600 * MS))
    bag = write_bag(tmp_path / "bag", records, "mcap")
    config = load_train_config(small_config(tmp_path, lidar="/points"))
    ds = build_dataset([bag], config, tmp_path / "o", progress=False)
    assert len(ds) == 5 and ds.available.all()
    np.testing.assert_allclose(ds.arrays["lidar"], 3 / 8, rtol=1e-5)
    # The all-NaN cloud (nothing in range) decodes as "no return" everywhere; it is no failure.
    points = ds.manifest["topics"]["/points"]
    assert (points["decoded"], points["failed"]) == (6, 0)
    assert ds.spec.modality("lidar").msg_type == "sensor_msgs/msg/PointCloud2"


def test_unsupported_message_type_is_counted_not_fatal(tmp_path):
    stamps = [(i + 1) * 100 * MS for i in range(3)]
    records = [("/scan", String(data="not a scan"), t) for t in stamps]
    records += [("/camera/image_raw", image(colour(i), "rgb8", t), t) for i, t in enumerate(stamps)]
    bag = write_bag(tmp_path / "bag", records)
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/scan"]["failures"] == {"unsupported_type": 3}
    assert len(ds) == 3 and not ds.available[:, 1].any()
    assert ds.manifest["samples"]["by_subset"] == {"camera": 3}


def test_bag_without_configured_topics_gives_an_empty_dataset(tmp_path):
    bag = write_bag(tmp_path / "bag", [("/ground_truth/object", marker(MS, 1, "red_box", (0, 0, 0)), MS)])
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert len(ds) == 0 and ds.arrays["camera"].shape == (0, 3, 16, 16) and ds.available.shape == (0, 2)
    assert ds.manifest["topics"]["/scan"]["messages"] == 0 and ds.manifest["topics"]["/scan"]["type"] == ""
    assert ds.manifest["missing_from"] == {}  # in no bag at all: "not in the bags", not "in some"
    assert len(load_dataset(tmp_path / "o")) == 0


@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_truncated_bag_keeps_what_precedes_the_damage(tmp_path, storage, fraction):
    bag = recording(tmp_path / "bag", storage, bad=False)
    config = load_train_config(small_config(tmp_path))
    whole = build_dataset([bag], config, tmp_path / "whole", progress=False)
    data = next(f for f in bag.iterdir() if f.suffix in (".db3", ".mcap"))
    with data.open("r+b") as f:
        f.truncate(int(data.stat().st_size * fraction))
    cut = build_dataset([bag], config, tmp_path / "cut", progress=False)
    assert 0 < len(cut) < len(whole) if fraction == 0.5 else 0 < len(cut) <= len(whole)
    assert cut.manifest["damage"] and "reading the storage files directly" in cut.manifest["damage"][0]
    np.testing.assert_array_equal(cut.stamps[:5], whole.stamps[:5])


def test_bag_without_message_definitions_falls_back_to_kilted_types(tmp_path):
    bag = recording(tmp_path / "bag", "sqlite3", bad=False)
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("DELETE FROM message_definitions")
    with Bag(bag) as opened:
        assert opened.topics["/scan"] == "sensor_msgs/msg/LaserScan"
        assert "sensor_msgs/msg/Image" in opened.typestore.types
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["samples"]["complete"] == ds.manifest["topics"]["/scan"]["decoded"] > 0
    assert not ds.manifest["damage"]


def test_bare_mcap_file_and_several_bags(tmp_path):
    first = recording(tmp_path / "a", "mcap", bad=False)
    second = recording(tmp_path / "b", "sqlite3", bad=False)
    mcap_file = next(first.glob("*.mcap"))
    config = load_train_config(small_config(tmp_path))
    ds = build_dataset([mcap_file, second], config, tmp_path / "o", progress=False)
    single = build_dataset([second], config, tmp_path / "s", progress=False)
    assert set(ds.bag_index.tolist()) == {0, 1} and (ds.bag_index == 1).sum() == len(single)


def test_reuse_when_unchanged_rebuild_when_bag_or_config_changes(tmp_path, capsys):
    bag = recording(tmp_path / "bag", "sqlite3", bad=False)
    config_path = small_config(tmp_path)
    first = build_dataset([bag], load_train_config(config_path), tmp_path / "o", progress=False)
    assert first.manifest["reused"] is False
    again = build_dataset([bag], load_train_config(config_path), tmp_path / "o", progress=False)
    assert again.manifest["reused"] is True
    model_only = yaml.safe_load(config_path.read_text())
    model_only["model"]["beta"] = 4.0
    model_only["modalities"][0]["weight"] = 0.5
    (tmp_path / "model_only.yaml").write_text(yaml.safe_dump(model_only))
    retuned = build_dataset([bag], load_train_config(tmp_path / "model_only.yaml"), tmp_path / "o",
                            progress=False)
    assert retuned.manifest["reused"] is True, "model settings do not change the arrays"
    moved = load_train_config(config_path, {"lidar": "/other"})
    capsys.readouterr()
    wider = build_dataset([bag], moved, tmp_path / "o", progress=True)
    assert wider.manifest["reused"] is False and wider.manifest["samples"]["by_subset"] == {"camera": 90}
    # A build the user made by hand (m2vae-dataset, then --dataset-dir) used to be replaced silently.
    assert (f"rebuilding {(tmp_path / 'o').resolve()}, built from other inputs: dataset.config.modalities[1]"
            ".topic: '/scan' in it, '/other' now") in capsys.readouterr().err
    data = next(bag.glob("*.db3"))
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))
    touched = build_dataset([bag], load_train_config(config_path), tmp_path / "o", progress=False)
    assert touched.manifest["reused"] is False and len(touched) == len(first)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []


def test_a_symlinked_out_keeps_its_link_and_a_killed_builds_leftovers_are_removed(tmp_path):
    bag = recording(tmp_path / "bag", "sqlite3", bad=False)
    (tmp_path / "big").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "big" / "ds")
    dead = 2**22 + 1  # above Linux's largest pid: no process has it
    host = socket.gethostname()
    abandoned = tmp_path / "big" / f".ds.building@{host}-{dead}"
    abandoned.mkdir()
    (abandoned / ".spill_x_camera").write_bytes(b"half a build")
    living = tmp_path / "big" / f".ds.building@{host}-{os.getppid()}"  # a build still running
    other_host = tmp_path / "big" / f".ds.building@another-host-{dead}"  # its process ids mean nothing here
    other_host.mkdir()
    living.mkdir()
    build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "link", progress=False)
    moved = load_train_config(small_config(tmp_path), {"lidar": "/other"})
    rebuilt = build_dataset([bag], moved, tmp_path / "link", progress=False)
    assert rebuilt.manifest["reused"] is False and (tmp_path / "link").is_symlink()
    assert load_dataset(tmp_path / "big" / "ds").manifest["samples"]["by_subset"] == {"camera": 90}
    kept = sorted(p.name for p in (tmp_path / "big").iterdir())
    assert kept == sorted([living.name, other_host.name, "ds"])


def test_one_marker_id_with_two_class_names_is_refused(tmp_path):
    first = recording(tmp_path / "first", "mcap", bad=False)
    records = [("/camera/image_raw", image(colour(0), "rgb8", 10 * MS), 10 * MS),
               ("/scan", scan(np.full(90, 2.0, np.float32), 12 * MS), 12 * MS),
               ("/ground_truth/object", marker(11 * MS, 1, "blue_cone", (1.0, 0.0, 0.0)), 11 * MS)]
    second = write_bag(tmp_path / "second", records, "mcap")
    with pytest.raises(DatasetError, match="marker id 1 is 'blue_cone' here but 'red_box' earlier"):
        build_dataset([first, second], load_train_config(small_config(tmp_path)), tmp_path / "o",
                      progress=False)
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []


def test_the_notes_name_a_camera_on_its_own_clock_frozen_stamps_and_grey_images_for_colour(tmp_path):
    # A mono8 camera stamping from its own clock, 50 years behind the scans (which stamp from the
    # computer's): by header stamp the two never pair. Every third frame repeats the stamp before it.
    own_clock = 1_000 * MS
    records = []
    for i in range(30):
        record_ns = 1_700_000_000_000 * MS + i * 100 * MS
        camera_stamp = own_clock + (i - i % 3 // 2) * 100 * MS
        records.append(("/camera/image_raw", image(np.full((16, 16), 90, np.uint8), "mono8", camera_stamp),
                        record_ns))
        records.append(("/scan", scan(np.full(90, 2.0, np.float32), record_ns - 2 * MS), record_ns))
    bag = write_bag(tmp_path / "bag", records, "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    lines = notes(ds)
    assert ds.manifest["samples"]["complete"] == 0 and len(ds) == 60
    assert ds.manifest["topics"]["/scan"]["stamp_offset_s"] == pytest.approx(-0.002)
    assert "/camera/image_raw: 10 header stamps repeat the one before (a clock standing still?)" in lines
    assert "/scan: 0 header stamps" not in "\n".join(lines)
    [split] = [line for line in lines if line.startswith("header stamps against the record times")]
    assert split.index("/camera/image_raw -1.7e+09 s") < split.index("/scan -0.002 s")
    assert ("camera: 30 of the messages decoded for it were single-channel, for a colour model: every "
            "channel reads grey (a grey camera takes preprocess channels: 1)") in lines


def test_a_sensor_topic_that_only_some_bags_hold_is_noted(tmp_path):
    # One recording with a raw camera, the next with a compressed one: the second's samples lack it.
    raw, jpeg, both = [], [], []
    for i in range(10):
        stamp = (i + 1) * 100 * MS
        ranges = scan(np.full(90, 2.0, np.float32), stamp)
        raw += [("/camera/image_raw", image(colour(i), "rgb8", stamp), stamp), ("/scan", ranges, stamp)]
        _, data = cv2.imencode(".jpg", colour(i))
        jpeg += [("/camera/image_raw/compressed", compressed(data.tobytes(), "jpeg", stamp), stamp),
                 ("/scan", ranges, stamp)]
        both.append(("/scan", ranges, stamp))
    bags = [write_bag(tmp_path / "raw", raw, "mcap"), write_bag(tmp_path / "jpeg", jpeg, "sqlite3")]
    ds = build_dataset(bags, load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["samples"]["by_subset"] == {"camera+lidar": 10, "lidar": 10}
    assert ds.manifest["missing_from"] == {"/camera/image_raw": [str(bags[1])]}
    assert (f"/camera/image_raw is not in 1 of the 2 bags ({bags[1]}): their samples lack camera; the bags "
            "record for camera: /camera/image_raw/compressed (sensor_msgs/msg/CompressedImage)") in notes(ds)


def test_sensors_on_one_clock_get_no_clock_note(tmp_path):
    bag = recording(tmp_path / "bag", "mcap", bad=False)  # camera 2 ms, scan 1 ms after their stamps
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/camera/image_raw"]["stamp_offset_s"] == pytest.approx(-0.002)
    assert notes(ds) == [f"dataset written: {tmp_path / 'o'}"]


def test_existing_directory_that_is_no_dataset_is_never_overwritten(tmp_path):
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError):
        build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_json_is_one_object_on_stdout(tmp_path, capsys):
    bag = recording(tmp_path / "bag", "mcap")
    config = str(small_config(tmp_path))
    argv = [str(bag), "--config", config, "--out", str(tmp_path / "o"), "--json", "--slop", "0.04"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) == {"topics", "samples", "out"} and out["out"] == str(tmp_path / "o")
    assert out["topics"]["/camera/image_raw"]["failures"] == {"short_buffer": 1, "unsupported_encoding": 1,
                                                               "negative_stamp": 1}
    assert all(set(t) == set(TOPIC_KEYS) for t in out["topics"].values())
    assert tuple(out["samples"]) == ("complete", "partial", "by_subset")
    assert TOPIC_KEYS == ("type", "messages", "decoded", "failed", "failures")
    assert set(out["samples"]["by_subset"]) == {"camera+lidar", "camera"}
    assert "/camera/image_raw: 1 header stamps out of order" in captured.err.splitlines()
    assert out["samples"]["complete"] + out["samples"]["partial"] == len(load_dataset(tmp_path / "o"))
    assert load_dataset(tmp_path / "o").manifest["config"]["slop"] == 0.04
    # A misspelt topic: the note names the recorded ones that could feed the sensor.
    assert main([*argv[:-2], "--topic", "lidar=/scna", "--out", str(tmp_path / "misspelt")]) == 1  # was 0
    err = capsys.readouterr().err
    assert "/scna is not in the bags; the bags record for lidar: /scan (sensor_msgs/msg/LaserScan)" in err
    assert err.endswith("error: no sample of the bags holds lidar=/scna, so m2vae-train would refuse this "
                        "dataset (the per-topic counts and notes say why)\n")
    assert load_dataset(tmp_path / "misspelt").manifest["samples"]["by_subset"] == {"camera": 87}  # written
    # A recorded topic of another kind's type: said in the notes, not only in manifest.json's problems.
    assert main([*argv[:-2], "--topic", "lidar=/camera/image_raw", "--out", str(tmp_path / "kind")]) == 1
    assert ("/camera/image_raw is sensor_msgs/msg/Image, which lidar (a scan) cannot read: it takes "
            "sensor_msgs/msg/LaserScan, sensor_msgs/msg/PointCloud2") in capsys.readouterr().err
    # A recorded topic that gave nothing is not offered as its own replacement.
    recorded = {"/scan": "sensor_msgs/msg/LaserScan", "/camera/image_raw": "sensor_msgs/msg/Image"}
    lidar = load_train_config(config).spec.modality("lidar")
    error = str(no_samples_error([lidar], {"recorded_topics": recorded}))
    assert error.endswith("(`m2vae-dataset` prints what each topic gave)")


def test_a_sensor_whose_every_message_failed_is_refused_saying_why_not_as_a_wrong_topic(tmp_path):
    records = []
    for i in range(5):
        stamp = (i + 1) * 200 * MS
        frame = image(np.zeros((8, 8, 3), np.uint8), "rgb8")
        frame.encoding = "yuv422"  # a camera's own format, which the codec does not read
        frame.header.stamp.sec, frame.header.stamp.nanosec = divmod(stamp, 10**9)
        records += [("/camera/image_raw", frame, stamp),
                    ("/scan", scan(np.full(90, 4.0, np.float32), stamp + MS), stamp + MS)]
    bag = write_bag(tmp_path / "bag", records, "mcap")
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert [m.name for m in ds.silent_modalities()] == ["camera"]
    error = str(no_samples_error(ds.silent_modalities(), ds.manifest))
    assert error.startswith("no sample of the bags holds camera=/camera/image_raw; /camera/image_raw: "
                            "all 5 messages failed (unsupported_encoding 5), e.g. [image encoding 'yuv422'; ")
    assert "--topic" not in error  # the topic is right: its messages are not


@pytest.mark.parametrize("bad", ["text", "missing", "empty_dir"])
def test_cli_unopenable_bag_is_one_error_line(tmp_path, capsys, bad):
    path = tmp_path / bad
    if bad == "text":
        path.write_text("this is no bag")
    elif bad == "empty_dir":
        path.mkdir()
    assert main([str(path), "--out", str(tmp_path / "o"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_rejects_unknown_modality_in_topic_override(tmp_path, capsys):
    assert main([str(tmp_path), "--topic", "radar=/radar"]) == 2
    assert "radar" in capsys.readouterr().err


def test_config_defaults_overrides_and_strictness(tmp_path):
    config = load_train_config()
    assert config.spec.names == ("camera", "lidar") and config.slop == 0.05 and config.timeout == 0.5
    assert config.labels_topic == "/ground_truth/object" and config.training.epochs == 60
    moved = load_train_config(None, {"lidar": "/front/scan"})
    assert moved.spec.modality("lidar").topic == "/front/scan" and moved.spec.modality("camera").topic
    with pytest.raises(ConfigError, match="radar"):
        load_train_config(None, {"radar": "/radar"})
    with pytest.raises(ConfigError):
        load_train_config(tmp_path / "absent.yaml")
    (tmp_path / "typo.yaml").write_text("model:\n  latent_dim: 8\n   beta: 1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: mapping values are not allowed here at line 3, "
                                          r"column 8$"):  # one line, not PyYAML's six
        load_train_config(tmp_path / "typo.yaml")
    # A `name:` indented into the sensor above would rename it and drop the other: YAML keeps the last.
    (tmp_path / "twice.yaml").write_text("modalities:\n  - name: lidar\n    kind: scan\n    name: lidar3d\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: the key 'name' is given twice at line 4, "
                                          r"column 5 \(while reading a mapping\)$"):
        load_train_config(tmp_path / "twice.yaml")
    # A merge key is no key given twice, and a key beside it overrides the merged one.
    (tmp_path / "merged.yaml").write_text(
        "modalities:\n  - name: lidar\n    kind: scan\n"
        "    preprocess: {<<: &geometry {beams: 90, range_max: 6.0}, beams: 45}\n")
    preprocess = load_train_config(tmp_path / "merged.yaml").spec.modality("lidar").preprocess
    assert (preprocess.beams, preprocess.range_max) == (45, 6.0)
    # A key given twice inside a merged mapping, which PyYAML flattens without the usual check.
    (tmp_path / "merged_twice.yaml").write_text(
        "modalities:\n  - name: lidar\n    kind: scan\n    preprocess: {<<: [{beams: 90, beams: 45}]}\n")
    with pytest.raises(ConfigError, match=r"the key 'beams' is given twice"):
        load_train_config(tmp_path / "merged_twice.yaml")


@pytest.mark.parametrize(("section", "key"), [("dataset", "slope"), ("training", "patiense"),
                                              ("labels", "topik")])
def test_a_misspelt_key_in_any_section_is_refused(tmp_path, section, key):
    typo = yaml.safe_load(small_config(tmp_path).read_text())
    typo[section][key] = 1
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
    with pytest.raises(ConfigError, match=rf"unknown {section} keys \['{key}'\]"):
        load_train_config(tmp_path / "typo.yaml")


@pytest.mark.parametrize(("settings", "expected"), [
    ({"lr": "1e-3", "epochs": 3}, {"lr": 0.001, "epochs": 3, "batch_size": 64}),  # PyYAML reads 1e-3 as text
    ({"val_fraction": 0}, {"val_fraction": 0.0, "patience": 5}),
    ({"epochs": 0}, "training.epochs must be ≥ 1"), ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"patience": True}, "patience must be a number"), ({"lr": "fast"}, "lr must be a number"),
    ({"lr": 0}, "lr must be positive"), ({"lr": 10**400}, "lr must be a number within float range"),
    ({"block_seconds": float("inf")}, "finite"),
    ({"val_fraction": 1}, r"val_fraction must be in \[0, 1\)"), ({"seed": -1}, "seed must be ≥ 0"),
])
def test_training_settings_are_typed_checked_and_defaulted(tmp_path, settings, expected):
    config = yaml.safe_load(small_config(tmp_path).read_text())
    config["training"] = settings
    (tmp_path / "training.yaml").write_text(yaml.safe_dump(config))
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            load_train_config(tmp_path / "training.yaml")
        return
    training = load_train_config(tmp_path / "training.yaml").training
    assert {key: getattr(training, key) for key in expected} == expected


@pytest.mark.parametrize(("timeout", "expected"), [
    (0.25, [250_000_000, 250_000_000]),
    ({"lidar": 2}, [500_000_000, 2_000_000_000]),
    ({"camera": 0.1, "lidar": 1.5}, [100_000_000, 1_500_000_000]),
    ({"radar": 1.0}, "unknown modalities"), (-1, "positive"), ({"lidar": "soon"}, "positive"),
    ({}, "empty mapping"), (float("inf"), "finite"), (True, "positive"),
])
def test_dataset_timeout_is_one_number_or_one_per_modality(tmp_path, timeout, expected):
    data = yaml.safe_load(small_config(tmp_path).read_text())
    data["dataset"]["timeout"] = timeout
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            load_train_config(tmp_path / "t.yaml")
    else:
        assert load_train_config(tmp_path / "t.yaml").timeouts_ns() == expected


def test_bag_error_is_raised_by_the_library(tmp_path):
    with pytest.raises(BagError, match="nope: no such file or directory"):
        build_dataset([tmp_path / "nope"], load_train_config(), tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()  # rosbags named the directory itself as the missing metadata file
    with pytest.raises(BagError, match=r"empty: not a rosbag2 recording: no metadata\.yaml and no \.db3"):
        build_dataset([tmp_path / "empty"], load_train_config(), tmp_path / "o", progress=False)
    assert math.isfinite(load_train_config().slop)


def test_a_modality_no_ros_message_decodes_into_is_refused_before_reading(tmp_path):
    data = yaml.safe_load(small_config(tmp_path).read_text())
    data["modalities"].append({"name": "imu", "kind": "vector", "topic": "/imu", "preprocess": {"dim": 6}})
    (tmp_path / "vector.yaml").write_text(yaml.safe_dump(data))
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    with pytest.raises(DatasetError, match="'imu': no ROS message decodes into kind 'vector'"):
        build_dataset([bag], load_train_config(tmp_path / "vector.yaml"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_one_recording_given_twice_is_refused(tmp_path):
    # Its frames would train twice and the split would validate on copies of training frames.
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    config = load_train_config(small_config(tmp_path))
    hard_link = tmp_path / "elsewhere.mcap"
    os.link(next(bag.glob("*.mcap")), hard_link)
    for bags in ([bag, bag], [bag, next(bag.glob("*.mcap"))], [hard_link, bag]):
        with pytest.raises(DatasetError, match=r"are one recording \(.*\.mcap\); give it once"):
            build_dataset(bags, config, tmp_path / "o", progress=False)
    copy = shutil.copytree(bag, tmp_path / "copy")  # with its mtimes, as cp -a: used to train twice
    with pytest.raises(DatasetError, match=r"copy and .*bag hold the same messages \(same size"):
        build_dataset([bag, copy], config, tmp_path / "o", progress=False)
    # Another recording that happens to share the size and mtime (unpacked from one archive) is not one.
    other = shutil.copytree(bag, tmp_path / "other")
    data = next(other.glob("*.mcap"))
    stat, content = data.stat(), bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert storage_identity(other) == storage_identity(bag)
    _refuse_a_recording_twice([bag, other])


def test_sensors_recorded_into_separate_bags_at_the_same_time_are_named_in_the_notes(tmp_path, capsys):
    # One recorder per sensor: each bag is synchronised alone, so no sample has both.
    stamps = [(i + 1) * 100 * MS for i in range(20)]
    cameras = [("/camera/image_raw", image(colour(i), "rgb8", t), t) for i, t in enumerate(stamps)]
    scans = [("/scan", scan(np.full(90, 2.0, np.float32), t + MS), t + MS) for t in stamps]
    camera_bag, scan_bag = write_bag(tmp_path / "cam", cameras), write_bag(tmp_path / "lidar", scans)
    assert main([str(camera_bag), str(scan_bag), "--config", str(small_config(tmp_path)),
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert (f"{camera_bag.resolve()} (camera) and {scan_bag.resolve()} (lidar) overlap for 1.9 s and are "
            "synchronised separately") in out
    # Runs sharing a sensor are separate runs whose clocks may overlap (simulations all start at
    # the same time), a LiDAR dropout or not.
    both = write_bag(tmp_path / "both", sorted(cameras + scans, key=lambda r: r[2]))
    ds = build_dataset([camera_bag, both], load_train_config(small_config(tmp_path)), tmp_path / "o2",
                       progress=False)
    assert ds.manifest["separately_synchronised"] == []


@pytest.mark.parametrize("configured", ["", "sensor_msgs/msg/PointCloud2"])
def test_a_sensor_reads_one_message_type_the_first_or_the_configured_one(tmp_path, configured):
    # The node subscribes with one type: training on a second would learn data it never sees.
    angles = np.radians(np.arange(-180, 180, 4.0))
    columns = {"x": 3 * np.cos(angles), "y": 3 * np.sin(angles), "z": np.zeros(90)}
    records = []
    for i in range(10):
        stamp = (i + 1) * 100 * MS
        lidar = scan(np.full(90, 2.0, np.float32), stamp) if i < 4 else cloud(columns, stamp)
        records += [("/scan", lidar, stamp), ("/camera/image_raw", image(colour(i), "rgb8", stamp), stamp)]
    bag = write_bag(tmp_path / "bag", records, "mcap")
    config_path = small_config(tmp_path)
    data = yaml.safe_load(config_path.read_text())
    data["modalities"][1]["msg_type"] = configured
    config_path.write_text(yaml.safe_dump(data))
    ds = build_dataset([bag], load_train_config(config_path), tmp_path / "o", progress=False)
    stats = ds.manifest["topics"]["/scan"]
    kept, dropped = (4, 6) if not configured else (6, 4)
    assert (stats["decoded"], stats["failures"]) == (kept, {"wrong_type": dropped})
    assert ds.spec.modality("lidar").msg_type == (configured or "sensor_msgs/msg/LaserScan")
    np.testing.assert_allclose(ds.arrays["lidar"][ds.available[:, 1]], (2.0 if not configured else 3.0) / 8)


def test_one_topic_feeding_two_sensors_keeps_the_message_for_the_one_that_can_read_it(tmp_path):
    angles = np.radians(np.arange(-180, 180, 4.0))
    columns = {"x": 3 * np.cos(angles), "y": 3 * np.sin(angles), "z": np.zeros(90)}  # no intensity
    records = [("/points", cloud(columns, (i + 1) * 100 * MS), (i + 1) * 100 * MS) for i in range(5)]
    bag = write_bag(tmp_path / "bag", records)
    config_path = small_config(tmp_path, camera="/points", lidar="/points")
    data = yaml.safe_load(config_path.read_text())
    data["modalities"][0] = {"name": "cloud", "kind": "range_image", "topic": "/points",
                             "preprocess": {"rings": 4, "bins": 90, "intensity": True}}
    config_path.write_text(yaml.safe_dump(data))
    ds = build_dataset([bag], load_train_config(config_path), tmp_path / "o", progress=False)
    assert ds.manifest["samples"]["by_subset"] == {"lidar": 5}  # the range image needs an intensity
    assert ds.manifest["topics"]["/points"]["decoded"] == 5
    assert ds.manifest["shared_topic_failures"] == {"cloud": {"missing_field": 5}}  # the topic counts hide it
    assert {p["reason"] for p in ds.manifest["problems"]} == {"missing_field"}
    shared = [line for line in notes(ds) if line.startswith("cloud (on a topic it shares")]
    assert shared and shared[0].startswith("cloud (on a topic it shares with another sensor) failed on "
                                           "missing_field 5, e.g. [") and "intensity" in shared[0], shared
    # m2vae-train's refusal names the sensor's own failures, not the topic's (all decoded for lidar).
    assert str(no_samples_error(ds.silent_modalities(), ds.manifest)).startswith(
        "no sample of the bags holds cloud=/points; /points: all 5 messages failed (missing_field 5), e.g. [")


def test_a_stamp_a_driver_never_set_is_a_failure_not_a_sample_dated_1970(tmp_path):
    # Two unset camera stamps among good ones became camera-only samples at t = 0, each
    # wasting a scan; an unset marker stamp labelled nothing without a word.
    records = []
    for i in range(10):
        t = (i + 1) * 100 * MS
        camera = image(colour(i), "rgb8", 0 if i in (3, 6) else t)
        records += [("/camera/image_raw", camera, t), ("/scan", scan(np.full(90, 2.0, np.float32), t), t),
                    ("/ground_truth/object", marker(0 if i == 9 else t, 0, "red_box", (1, 0, 0)), t)]
    bag = write_bag(tmp_path / "bag", records)
    ds = build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "o", progress=False)
    assert ds.manifest["topics"]["/camera/image_raw"]["failures"] == {"zero_stamp": 2}
    assert ds.stamps.min() > 0 and ds.manifest["samples"]["by_subset"] == {"camera+lidar": 8}
    assert ds.manifest["labels"]["failures"] == {"zero_stamp": 1}


def test_a_killed_build_into_an_out_named_like_a_glob_pattern_is_removed(tmp_path):
    """`run[1]` is a file name, not a character class: its leftovers go, `run1`'s stay."""
    bag = recording(tmp_path / "bag", "sqlite3", bad=False)
    dead, host = 2**22 + 1, socket.gethostname()
    mine = tmp_path / f".run[1].building@{host}-{dead}"
    another_outs = tmp_path / f".run1.building@{host}-{dead}"  # what the pattern run[1] would match
    mine.mkdir()
    another_outs.mkdir()
    build_dataset([bag], load_train_config(small_config(tmp_path)), tmp_path / "run[1]", progress=False)
    assert not mine.exists() and another_outs.exists()


def _edited(data: dict, where: tuple, value: object) -> dict:
    """`data` with the entry at the key path `where` (keys and list indexes) set to `value`."""
    *parents, last = where
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(("where", "value", "message"), [
    (("model",), "x", "model must be a mapping, got 'x'"),
    (("training",), 0, "training must be a mapping, got 0"),  # a 0 was read as "the defaults"
    (("modalities",), "x", "modalities must be a list of modality mappings, got 'x'"),
    (("modalities",), 0, "modalities must be a list of modality mappings, got 0"),
    (("modalities", 1), None, "modalities[1] must be a mapping, got None"),
    (("modalities", 0, "kind"), [], "modality 'camera': kind [] not in"),
    (("modalities", 0, "preprocess"), -1,
     "modality 'camera': preprocess must be a mapping of ImagePreprocess keys, got -1"),
    (("modalities", 1, "topic"), -1, "modality 'lidar': topic must be a ROS topic name"),
    (("modalities", 1, "topic"), ["/scan"], "modality 'lidar': topic must be a ROS topic name"),
    (("modalities", 1, "topic"), None, "modality 'lidar': topic must be a ROS topic name"),
    (("labels", "topic"), [], "labels.topic must be a ROS topic name"),
    (("dataset", "timeout"), {"lidar": "soon"}, "dataset.timeout.lidar 'soon' is not a positive"),
    (("dataset", "timeout"), 10**400, "dataset.timeout 1000"),  # beyond float range: an OverflowError
    (("training", "block_seconds"), 1e12, "training.block_seconds must be at most 1e+09 s"),
    (("training", "guard_seconds"), 1e12, "training.guard_seconds must be at most 1e+09 s"),
])
def test_cli_config_of_wrong_types_is_one_error_line_naming_the_file_and_key(tmp_path, capsys, where, value,
                                                                           message):
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_edited(yaml.safe_load(small_config(tmp_path).read_text()), where, value)))
    assert main([str(bag), "--config", str(bad), "--out", str(tmp_path / "o"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: config {bad}: ")
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("text", "message"), [
    # A stray `-` line under modalities: YAML reads an entry of None.
    (lambda config: config.replace("modalities:", "modalities:\n  -", 1), "modalities[0] must be a mapping"),
    # A comment saved in Latin-1.
    (lambda config: b"# Gr\xf6\xdfe\n" + config.encode(), " is not UTF-8 text: byte 0xf6 at offset 4"),
    # --config naming a binary file, such as the model's weights.
    (lambda config: b"\x89PNG\r\n\x1a\n\x00\x00", " is not UTF-8 text: byte 0x89 at offset 0"),
    # PyYAML's int() refuses integers of over 4300 digits with a ValueError.
    (lambda config: config.replace("slop: 0.05", "slop: " + "1" * 5000, 1),
     " is not valid YAML: Exceeds the limit (4300 digits)"),
])
def test_cli_config_file_that_is_no_utf8_yaml_is_one_error_line_naming_it(tmp_path, capsys, text, message):
    bag = recording(tmp_path / "bag", "mcap", bad=False)
    content = text((Path(__file__).parents[1] / "config" / "train.yaml").read_text(encoding="utf-8"))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([str(bag), "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config {bad}") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """40 s of simulated camera and LiDAR: a build of it runs for a good fraction of a second."""
    return tiny_bag(tmp_path_factory.mktemp("long") / "bag", seed=2, seconds=40.0)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "kill"])
@pytest.mark.parametrize("earlier", [False, True], ids=["new_out", "earlier_dataset"])
def test_cli_interrupted_mid_build_says_out_is_unchanged_and_exits_128_plus_the_signal(
        tmp_path, long_recording, stop, earlier):
    out, config = tmp_path / "out", tiny_config(tmp_path / "train.yaml")
    if earlier:  # a dataset of other bags, which the build would replace
        assert main([str(recording(tmp_path / "bag", "mcap", bad=False)), "--config", str(config),
                     "--out", str(out), "--json"]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    manifest = (out / MANIFEST).read_bytes() if earlier else None
    returncode, stdout, stderr = signal_when(
        [str(Path(sys.executable).parent / "m2vae-dataset"), str(long_recording), "--config", str(config),
         "--out", str(out), "--json"],
        lambda: bool(list(tmp_path.glob(".out.building@*/.spill_*"))),  # the build is decoding messages
        stop,
    )
    assert returncode == 128 + stop, stderr  # 130 for Ctrl-C, 143 for a SIGTERM
    assert stdout == "" and stderr == f"m2vae-dataset: interrupted; {out} is unchanged\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the work directory is gone
    if earlier:
        assert (out / MANIFEST).read_bytes() == manifest and len(load_dataset(out)) > 0


def test_cli_interrupted_after_the_build_says_out_holds_the_new_dataset(tmp_path, capsys, monkeypatch):
    bag = recording(tmp_path / "bag", "mcap", bad=False)

    def interrupted(dataset):
        raise KeyboardInterrupt

    monkeypatch.setattr("m2vae_training.dataset_cli.summary", interrupted)
    assert main([str(bag), "--config", str(small_config(tmp_path)), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    out = tmp_path / "o"
    assert err.endswith(f"m2vae-dataset: interrupted after the build was complete; {out} holds the new "
                        "dataset\n"), err
    assert len(load_dataset(tmp_path / "o")) > 0
