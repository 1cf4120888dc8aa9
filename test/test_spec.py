"""Model and modality specs: what a spec refuses, so a bad config fails when it is read."""

import math
import re

import numpy as np
import pytest

from m2vae_ros.codec import CodecError, require_decodable
from m2vae_ros.spec import (
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
    SpecError,
    VectorPreprocess,
)


@pytest.mark.parametrize("name", ["front_cam", "lidar3d", "Camera2"])
def test_modality_names_that_are_ros_name_tokens_are_accepted(name):
    assert ModalitySpec(name, "image", ImagePreprocess()).name == name


@pytest.mark.parametrize("name", ["", "3d_lidar", "front-cam", "front.cam", "camera+lidar", "a/b", "über"])
def test_modality_names_that_cannot_name_a_topic_or_parameter_are_refused(name):
    # `~/reconstruction/<name>` and `modalities.<name>.topic` must be valid ROS names.
    with pytest.raises(SpecError, match="letters, digits and '_', starting with a letter"):
        ModalitySpec(name, "image", ImagePreprocess())


def test_only_kinds_and_types_a_ros_message_decodes_into_are_decodable():
    camera = ModalitySpec("camera", "image", ImagePreprocess())
    require_decodable(camera)
    require_decodable(camera, "sensor_msgs/msg/CompressedImage")
    with pytest.raises(CodecError, match="LaserScan cannot feed kind 'image'"):
        require_decodable(camera, "sensor_msgs/msg/LaserScan")
    with pytest.raises(CodecError, match="no ROS message decodes into kind 'vector'"):
        require_decodable(ModalitySpec("imu", "vector", VectorPreprocess(dim=6)))


def test_a_two_part_message_type_is_spelt_like_the_codec_spells_it():
    camera = ModalitySpec("camera", "image", ImagePreprocess(), msg_type="sensor_msgs/CompressedImage")
    assert camera.msg_type == "sensor_msgs/msg/CompressedImage"
    require_decodable(camera, camera.msg_type)
    assert ModalitySpec.from_dict(camera.to_dict()) == camera


@pytest.mark.parametrize(("fields", "message"), [
    ({"msg_type": None}, "msg_type must be a ROS type name"),
    ({"msg_type": 7}, "msg_type must be a ROS type name"),
])
def test_a_msg_type_that_is_no_name_is_a_spec_error(fields, message):
    with pytest.raises(SpecError, match=message):
        ModalitySpec("camera", "image", ImagePreprocess(), **fields)


def test_a_scan_span_must_be_positive():
    with pytest.raises(SpecError, match="angle_max must be above angle_min"):
        ModalitySpec("lidar", "scan", ScanPreprocess(angle_min=0.5, angle_max=0.5))


@pytest.mark.parametrize(("kind", "preprocess", "message"), [
    # Each of these decoded every return as "no return": blank LiDAR, without an error.
    ("scan", ScanPreprocess(range_min=5.0, range_max=2.0), "0 ≤ range_min < range_max, got 5.0 and 2.0"),
    ("scan", ScanPreprocess(range_max=-1.0), "0 ≤ range_min < range_max"),
    ("scan", ScanPreprocess(z_min=0.2, z_max=0.1), "z_max must not be below z_min"),
    ("range_image", RangeImagePreprocess(fov_up_deg=10.0, fov_down_deg=10.0), "fov_up_deg must be above"),
    ("range_image", RangeImagePreprocess(intensity_max=0.0), "intensity_max must be positive"),
    ("range_image", RangeImagePreprocess(range_max=math.inf), "range_max must be finite"),
    ("scan", ScanPreprocess(range_max=np.float32("inf")), "range_max must be finite"),  # not a float
    ("image", ImagePreprocess(value_max=0.0), "value_max must be positive"),
    # One bin centred on angle_min: half the span was dropped, angles beyond it kept.
    ("scan", ScanPreprocess(beams=1, angle_min=-0.2, angle_max=0.2), "needs 2 beams or more"),
])
def test_preprocessing_limits_that_admit_no_value_are_refused(kind, preprocess, message):
    with pytest.raises(SpecError, match=f"modality 'lidar': preprocess .*{re.escape(message)}"):
        ModalitySpec("lidar", kind, preprocess)


def test_a_planar_cloud_slice_may_be_one_height():
    assert ModalitySpec("lidar", "scan", ScanPreprocess(z_min=0.0, z_max=0.0)).preprocess.z_max == 0.0


IMU = ModalitySpec("imu", "vector", VectorPreprocess(3))


@pytest.mark.parametrize(("build", "message"), [
    # Built in Python (the library), not read from YAML: the same refusals as a config gets,
    # so a model is never saved that loading would refuse.
    (lambda: ModelSpec((IMU,), beta=math.inf), "finite and ≥ 0"),
    (lambda: ModelSpec((IMU,), alpha=math.nan), "finite and ≥ 0"),
    (lambda: ModalitySpec("a", "vector", VectorPreprocess(3), scale=math.inf), "positive and finite"),
    (lambda: ModalitySpec("a", "vector", VectorPreprocess(3), weight=math.inf), "positive and finite"),
    (lambda: ModalitySpec("a", "vector", VectorPreprocess(3), hidden=(32.5, 64)), "widths must be integers"),
])
def test_values_that_would_only_fail_later_are_refused_where_the_spec_is_built(build, message):
    with pytest.raises(SpecError, match=message):
        build()


@pytest.mark.parametrize(("hidden", "message"), [
    (5, "hidden must be a list of widths, got 5"),
    (0, "hidden must be a list of widths, got 0"),  # was read as "the default"
    ([32.5, 64], "hidden must be an integer, got 32.5"),
])
def test_hidden_widths_in_a_config_are_checked_like_other_numbers(hidden, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        ModalitySpec.from_dict({"name": "imu", "kind": "vector", "preprocess": {"dim": 3}, "hidden": hidden})


def _lidar_dict(**preprocess):
    return {"name": "lidar", "kind": "scan", "preprocess": preprocess, "scale": "5e-2", "weight": "3e-2"}


def test_numbers_yaml_reads_as_strings_become_floats_in_every_section():
    # PyYAML reads 1e-3 (no dot) as a string; config files, run.yaml and model.yaml all pass here.
    modalities = [_lidar_dict(range_min="1e-1")]
    spec = ModelSpec.from_dict({"modalities": modalities, "beta": "1e-3", "alpha": "5e-1"})
    lidar = spec.modalities[0]
    assert (spec.beta, spec.alpha, lidar.scale, lidar.weight, lidar.preprocess.range_min) == (
        0.001, 0.5, 0.05, 0.03, 0.1)
    assert all(isinstance(v, float) for v in (spec.beta, lidar.scale, lidar.preprocess.range_min))


@pytest.mark.parametrize(("model", "preprocess", "message"), [
    ({"beta": "lots"}, {}, "model: beta must be a number, got 'lots'"),
    ({"beta": "nan"}, {}, "model: beta must be finite"),
    ({"beta": -1.0}, {}, "alpha and beta weigh KL terms"),
    ({"latent_dim": 8.5}, {}, "model: latent_dim must be an integer, got 8.5"),
    ({}, {"beams": "360"}, "lidar: beams must be an integer"),
    ({}, {"range_max": True}, "lidar: range_max must be a number, got True"),
    ({"beta": 10**400}, {}, "model: beta must be a number within float range, got an integer of 401 digits"),
    ({"latent_dim": 10**40}, {}, "model: latent_dim must be an integer within int64, got one of 41 digits"),
    ({"feature_dim": 0}, {}, "latent_dim, feature_dim and head_hidden must be ≥ 1, got 32, 0, 256"),
    ({}, {"beams": 0}, "modality 'lidar': sizes must be ≥ 1, got tensor shape (1, 0)"),
])
def test_a_number_of_the_wrong_kind_is_one_clear_spec_error(model, preprocess, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        ModelSpec.from_dict({"modalities": [_lidar_dict(**preprocess)], **model})


@pytest.mark.parametrize(("modalities", "message"), [
    ("x", "modalities must be a list of modality mappings, got 'x'"),
    ({"lidar": _lidar_dict()}, "modalities must be a list of modality mappings"),
    ([_lidar_dict(), None], "modalities[1] must be a mapping, got None"),  # a stray `-` line in YAML
    ([_lidar_dict(), "camera"], "modalities[1] must be a mapping, got 'camera'"),
    ([{**_lidar_dict(), "name": 5}], "modality name 5 must be letters, digits and '_'"),
    ([{**_lidar_dict(), "kind": []}], "modality 'lidar': kind [] not in"),
    ([{**_lidar_dict(), "preprocess": -1}],
     "modality 'lidar': preprocess must be a mapping of ScanPreprocess keys, got -1"),
    ([{**_lidar_dict(), "preprocess": 0}],  # was read as "the defaults"
     "modality 'lidar': preprocess must be a mapping of ScanPreprocess keys, got 0"),
    ([{**_lidar_dict(), "preprocess": {1: 2, "bins": 3}}], "lidar: unknown ScanPreprocess keys [1, 'bins']"),
    # A depth camera configured as a picture: the keys say which kind was meant.
    ([{"name": "depth", "kind": "image", "preprocess": {"width": 64, "range_max": 5.0}}],
     "depth: unknown ImagePreprocess keys ['range_max']; known: ['channels', 'height', 'value_max', "
     "'width']; kind depth takes them all"),
    ([{**_lidar_dict(), "topic": -1}], "modality 'lidar': topic must be a ROS topic name such as /scan"),
    ([{**_lidar_dict(), "topic": ["/scan"]}], "modality 'lidar': topic must be a ROS topic name"),
    ([{**_lidar_dict(), "topic": None}], "modality 'lidar': topic must be a ROS topic name"),
])
def test_modalities_of_the_wrong_shape_are_one_clear_spec_error(modalities, message):
    # Each was a TypeError, KeyError or "dictionary update sequence" error deep in the loader.
    with pytest.raises(SpecError, match=re.escape(message)):
        ModelSpec.from_dict({"modalities": modalities})
