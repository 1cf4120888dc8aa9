"""A simulated recording goes through the dataset builder with the right labels, gaps and ranges."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from m2vae_training.config import load_train_config
from m2vae_training.dataset import PreparedDataset, build_dataset
from m2vae_training.dataset_notes import notes

from m2vae_ros.sim import parse_dropout, simulate
from m2vae_ros.sim.recorder import START_NS
from m2vae_ros.sim.world import OBJECT_CLASSES, OBJECT_HALF_WIDTH, World
from m2vae_ros.spec import DepthPreprocess, ModalitySpec, RangeImagePreprocess, ScanPreprocess

SEED, EPISODE_SECONDS, DURATION = 11, 2.5, 7.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    tmp = tmp_path_factory.mktemp("simdata")
    drops = parse_dropout("camera@3:4.5")
    bag = simulate(
        tmp / "bag", DURATION, SEED, drops=drops, points=False, episode_seconds=EPISODE_SECONDS
    ).out
    return build_dataset([bag], load_train_config(), tmp / "dataset", progress=False)


def sample_times(dataset: PreparedDataset) -> np.ndarray:
    return (np.asarray(dataset.stamps) - START_NS) / 1e9


def test_samples_carry_the_simulated_class_labels(dataset: PreparedDataset) -> None:
    world = World(SEED, episode_seconds=EPISODE_SECONDS)
    times = sample_times(dataset)
    assert len(dataset) >= 0.9 * DURATION * 10  # ~ one sample per 10 Hz scan
    assert dataset.class_names[:3] == [c.name for c in OBJECT_CLASSES]
    labels = np.asarray(dataset.labels)
    assert set(labels.tolist()) - {-1} == {0, 1, 2}  # three 2.5 s episodes, one block of classes
    expected = np.array([world.state(t).object_class.index for t in times])
    labelled = labels >= 0  # a sample straddling an episode switch has no label
    assert labelled.sum() >= len(labels) - 2 * 2  # two switches in 7 s
    assert np.array_equal(labels[labelled], expected[labelled])


def test_camera_dropout_becomes_lidar_only_samples(dataset: PreparedDataset) -> None:
    times = sample_times(dataset)
    camera, lidar = (
        np.asarray(dataset.available)[:, dataset.spec.names.index(n)] for n in ("camera", "lidar")
    )
    assert lidar.all()
    assert (~camera).sum() >= 5
    assert np.all((times[~camera] >= 3.0) & (times[~camera] < 4.5))
    assert camera[(times < 2.9) | (times > 4.6)].all()
    assert not np.asarray(dataset.arrays["camera"])[~camera].any()  # missing rows are zeros


def test_scan_beam_towards_the_labelled_position_sees_the_object(dataset: PreparedDataset) -> None:
    pre = dataset.spec.modality("lidar").preprocess
    placed = np.isfinite(dataset.positions).all(1)  # not the samples that straddle an object change
    assert placed.mean() > 0.95
    scans = np.asarray(dataset.arrays["lidar"])[placed, 0, :] * pre.range_max
    positions = np.asarray(dataset.positions)[placed]
    errors = []
    for scan, (x, y, _) in zip(scans, positions, strict=True):
        beam = round((math.atan2(y, x) - pre.angle_min) / (2 * math.pi / pre.beams)) % pre.beams
        errors.append(scan[beam] - (math.hypot(x, y) - OBJECT_HALF_WIDTH))
    errors = np.abs(np.asarray(errors))
    # Boxes put their face up to 6 cm nearer than a cylinder's; the robot moves a little per period.
    assert np.median(errors) < 0.05 and np.mean(errors < 0.15) > 0.95


def test_a_range_image_geometry_unlike_the_sensors_is_noted(tmp_path) -> None:
    """A vertical field of view narrower or wider than the simulated 16-ring ±15° LiDAR's used
    to build without a word, its cells outside the beams "no return" in every sample."""
    bag = simulate(tmp_path / "bag", 5.0, SEED, image_size=(32, 32), points=True,
                   episode_seconds=EPISODE_SECONDS).out
    fields_of_view = {"right": (15.0, -15.0), "narrow": (5.0, -5.0), "wide": (25.0, -25.0),
                      "above every beam": (60.0, 40.0)}  # the last, the worst, used to get no note at all
    reach = {}
    for name, (up, down) in fields_of_view.items():
        config = load_train_config()
        geometry = RangeImagePreprocess(fov_up_deg=up, fov_down_deg=down)
        lidar3d = ModalitySpec("lidar3d", "range_image", geometry, topic="/points")
        config = dataclasses.replace(config, spec=dataclasses.replace(
            config.spec, modalities=(*config.spec.modalities, lidar3d)))
        dataset = build_dataset([bag], config, tmp_path / name, progress=False)
        reach[name] = dataset.manifest["returns_reach"]["lidar3d"]
        noted = [line for line in notes(dataset) if line.startswith("lidar3d: ")]
        assert bool(noted) == (name != "right"), noted
    assert reach == {"right": 1.0, "narrow": pytest.approx(6 / 16), "wide": pytest.approx(10 / 16),
                     "above every beam": 0.0}
    assert notes(dataset)[-1].startswith("lidar3d: 0% of its cells hold a return in some sample, the others "
                                         "in none: do rings, fov_up_deg and fov_down_deg match")


def test_a_depth_camera_builds_masked_metres_beside_the_colour_one(tmp_path) -> None:
    bag = simulate(tmp_path / "bag", 3.0, SEED, depth=True, points=False, episode_seconds=EPISODE_SECONDS,
                   drops=parse_dropout("depth@1:2")).out
    config = load_train_config()
    depth = ModalitySpec("depth", "depth", DepthPreprocess(32, 32), topic="/camera/depth/image_raw")
    config = dataclasses.replace(config, spec=dataclasses.replace(
        config.spec, modalities=(*config.spec.modalities, depth)))
    dataset = build_dataset([bag], config, tmp_path / "dataset", progress=False)
    available = np.asarray(dataset.available)[:, dataset.spec.names.index("depth")]
    times = sample_times(dataset)
    assert available[(times < 0.9) | (times > 2.1)].all()
    assert not available[(times > 1.1) & (times < 1.9)].any()
    metres = np.asarray(dataset.arrays["depth"])[available, 0] * depth.preprocess.range_max
    mask = np.asarray(dataset.masks["depth"])[available, 0]
    assert (metres[~mask] == depth.preprocess.range_max).all()  # no return: the sky, in most samples
    assert 0.5 < mask.mean() < 1.0
    # Each 2 × 2 block keeps its nearest depth: the bottom one meets the floor where the 64-pixel
    # image's bottom row does, 0.528 m away (test_sim_recording), unless the object stands there.
    assert abs(np.median(metres[:, -1]) - 0.528) < 0.005
    # The reach of a LiDAR's beams is not a depth camera's: its holes are the scene's (the sky here).
    assert list(dataset.manifest["returns_reach"]) == ["lidar"] and not [
        line for line in notes(dataset) if line.startswith("depth")]


def test_a_misspelt_depth_topic_is_pointed_at_the_depth_image_not_at_the_colour_one(tmp_path) -> None:
    bag = simulate(tmp_path / "bag", 1.0, SEED, depth=True, points=False).out
    config = load_train_config()
    depth = ModalitySpec("depth", "depth", DepthPreprocess(16, 16), topic="/camera/depth")
    config = dataclasses.replace(config, spec=dataclasses.replace(
        config.spec, modalities=(*config.spec.modalities, depth)))
    dataset = build_dataset([bag], config, tmp_path / "dataset", progress=False)
    # /camera/image_raw is an Image too, but the camera reads it.
    assert ("/camera/depth is not in the bags; the bags record for depth: /camera/depth/image_raw "
            "(sensor_msgs/msg/Image)") in notes(dataset)


def test_a_compressed_depth_recording_builds_the_same_depths_as_the_raw_one(tmp_path) -> None:
    """image_transport's compressedDepth (PNG) is lossless for 16UC1."""
    built = {}
    topics = {"raw": "/camera/depth/image_raw", "compressed": "/camera/depth/image_raw/compressedDepth"}
    for name, topic in topics.items():
        bag = simulate(tmp_path / name, 1.0, SEED, depth=True, points=False, compressed=name == "compressed")
        bag = bag.out
        config = load_train_config()
        depth = ModalitySpec("depth", "depth", DepthPreprocess(16, 16), topic=topic)
        config = dataclasses.replace(config, spec=dataclasses.replace(
            config.spec, modalities=(config.spec.modality("lidar"), depth)))
        built[name] = build_dataset([bag], config, tmp_path / f"{name}_dataset", progress=False)
    raw, compressed = built["raw"], built["compressed"]
    assert compressed.manifest["topics"]["/camera/depth/image_raw/compressedDepth"]["type"] == (
        "sensor_msgs/msg/CompressedImage")
    assert len(raw) == len(compressed) >= 9
    np.testing.assert_array_equal(compressed.arrays["depth"], raw.arrays["depth"])
    np.testing.assert_array_equal(compressed.masks["depth"], raw.masks["depth"])


def test_a_camera_on_a_missing_topic_is_not_pointed_at_the_compressed_depth_stream(tmp_path) -> None:
    """compressedDepth is a CompressedImage too, but kind image refuses its PNG of depths."""
    bag = simulate(tmp_path / "bag", 1.0, SEED, depth=True, points=False, compressed=True).out
    dataset = build_dataset([bag], load_train_config(), tmp_path / "dataset", progress=False)
    assert ("/camera/image_raw is not in the bags; the bags record for camera: /camera/image_raw/compressed "
            "(sensor_msgs/msg/CompressedImage)") in notes(dataset)


def test_a_range_max_short_of_the_scene_is_noted_with_the_share_it_cuts_off(tmp_path) -> None:
    """The arena is 6 m across: a 3 m limit turns many of the scan's and depth camera's returns into
    "no return", which the build used to do without a word."""
    bag = simulate(tmp_path / "bag", 1.0, SEED, depth=True, points=False).out
    shares = {}
    for limit in (8.0, 3.0):
        config = load_train_config()
        depth = ModalitySpec("depth", "depth", DepthPreprocess(16, 16, range_max=limit),
                             topic="/camera/depth/image_raw")
        lidar = dataclasses.replace(config.spec.modality("lidar"), preprocess=ScanPreprocess(range_max=limit))
        config = dataclasses.replace(config, spec=dataclasses.replace(config.spec, modalities=(lidar, depth)))
        dataset = build_dataset([bag], config, tmp_path / f"limit_{limit:g}", progress=False)
        shares[limit] = dataset.manifest["beyond_range_max"]
        noted = [line for line in notes(dataset) if "beyond preprocess.range_max" in line]
        assert len(noted) == (0 if limit == 8.0 else 2), noted
    assert shares[8.0] == {"lidar": 0.0, "depth": 0.0}  # the simulated scan reaches 8 m, the camera 10 m
    assert 0.2 < shares[3.0]["lidar"] < 1.0 and 0.05 < shares[3.0]["depth"] < 1.0, shares
    assert noted[0].startswith(f"lidar: {shares[3.0]['lidar']:.0%} of a message's returns lay beyond "
                               "preprocess.range_max (3 m), on average, and read as no return")
