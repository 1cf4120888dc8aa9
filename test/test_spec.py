"""Model and modality specs: what a spec refuses, so a bad config fails when it is read."""

import pytest

from m2vae_ros.codec import CodecError, require_decodable
from m2vae_ros.spec import ImagePreprocess, ModalitySpec, ScanPreprocess, SpecError, VectorPreprocess


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
