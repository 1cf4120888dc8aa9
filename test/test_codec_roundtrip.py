"""Both message flavours decode identically, and reconstruction messages decode back to their tensor."""

import dataclasses

import cv2
import numpy as np
import pytest
from bagutils import cloud, compressed, header, image, scan, to_rosbags
from sensor_msgs.msg import Image, LaserScan, PointCloud2

from m2vae_ros.codec import (
    CodecError,
    check_and_keep,
    decode_message,
    message_type,
    reconstruction_message,
)
from m2vae_ros.spec import (
    DepthPreprocess,
    ImagePreprocess,
    ModalitySpec,
    RangeImagePreprocess,
    ScanPreprocess,
    VectorPreprocess,
)

RNG = np.random.default_rng(3)
CAMERA = ModalitySpec(name="camera", kind="image", preprocess=ImagePreprocess(width=16, height=12))
MONO = ModalitySpec(name="ir", kind="image", preprocess=ImagePreprocess(width=16, height=12, channels=1))
LIDAR = ModalitySpec(name="lidar", kind="scan", preprocess=ScanPreprocess(beams=90))
LIDAR3D = ModalitySpec(name="lidar3d", kind="range_image",
                       preprocess=RangeImagePreprocess(rings=8, bins=64, intensity=True))
DEPTH = ModalitySpec(name="depth", kind="depth",
                     preprocess=DepthPreprocess(width=16, height=12, range_max=5.0))


def examples():
    pixels = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ranges = RNG.uniform(0.2, 9.0, 400).astype(np.float32)  # 400 beams, some beyond 8 m, into 90 bins
    ranges[::7] = np.inf
    xyz = RNG.normal(0.0, 3.0, (3, 500))
    xyz[2] *= 0.1
    return [
        (image(pixels, "rgb8", 5, pad=3), CAMERA),
        (image(pixels[:, :, 1].astype(np.uint16) * 257, "mono16", 5, bigendian=True), MONO),
        (image(RNG.random((24, 32), dtype=np.float32), "32FC1", 5), MONO),
        (compressed(cv2.imencode(".png", pixels)[1].tobytes(), "png", 5), CAMERA),
        (image(RNG.integers(0, 6000, (24, 32), dtype=np.uint16), "16UC1", 5, pad=2, bigendian=True), DEPTH),
        (scan(ranges, 5), LIDAR),
        (cloud({"x": xyz[0], "y": xyz[1], "z": xyz[2], "intensity": RNG.uniform(0, 255, 500)}, 5,
               types={"x": "f8", "y": "f8", "z": "f8"}, point_step=36, bigendian=True), LIDAR3D),
    ]


@pytest.mark.parametrize(("msg", "spec"), examples())
def test_rclpy_and_rosbags_messages_decode_identically(msg, spec):
    twin = to_rosbags(msg)
    assert type(twin) is not type(msg)
    ours, theirs = decode_message(msg, spec), decode_message(twin, spec)
    np.testing.assert_array_equal(ours.tensor, theirs.tensor)
    assert ours.stamp_ns == theirs.stamp_ns == 5
    if spec.has_mask:
        np.testing.assert_array_equal(ours.mask, theirs.mask)
        assert ours.mask.mean() > 0.5


def bad_examples():
    pixels = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    short = image(pixels, "rgb8", 5)
    short.data = short.data[:-1]
    return [
        (short, CAMERA, "short_buffer"),
        (image(pixels, "yuv422", 5), CAMERA, "unsupported_encoding"),
        (compressed(b"not a png", "png", 5), CAMERA, "unsupported_encoding"),
        (scan([1.0] * 8, 5), CAMERA, "unsupported_type"),
        (image(pixels, "rgb8", 5), DEPTH, "unsupported_encoding"),
    ]


@pytest.mark.parametrize(("msg", "spec"), examples())
def test_the_check_gives_the_decoded_stamp_and_a_decode_it_had_to_do(msg, spec):
    stamp, decoded = check_and_keep(msg, spec)
    assert stamp == decode_message(msg, spec).stamp_ns == 5
    if message_type(msg) in ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/PointCloud2"):
        np.testing.assert_array_equal(decoded.tensor, decode_message(msg, spec).tensor)
    else:
        assert decoded is None  # a cheaper check, no decode


@pytest.mark.parametrize(("msg", "spec", "reason"), bad_examples())
def test_the_check_raises_what_decoding_would(msg, spec, reason):
    for function in (check_and_keep, decode_message):
        with pytest.raises(CodecError) as err:
            function(msg, spec)
        assert err.value.reason == reason


def test_image_round_trip():
    tensor = RNG.random(CAMERA.shape, dtype=np.float32)
    msg = reconstruction_message(tensor, CAMERA, header(11))
    assert isinstance(msg, Image) and msg.encoding == "rgb8" and (msg.width, msg.height) == (16, 12)
    np.testing.assert_allclose(decode_message(msg, CAMERA).tensor, tensor, atol=0.5 / 255 + 1e-6)
    mono = reconstruction_message(tensor[:1], MONO, header(11))
    assert mono.encoding == "mono8"


def test_scan_round_trip_turns_far_values_into_no_return():
    tensor = RNG.uniform(0.05, 0.95, LIDAR.shape).astype(np.float32)
    tensor[0, :5] = 0.99
    msg = reconstruction_message(tensor, LIDAR, header(12))
    assert isinstance(msg, LaserScan) and np.isinf(np.asarray(msg.ranges)[:5]).all()
    back = decode_message(msg, LIDAR)
    expected = tensor.copy()
    expected[0, :5] = 1.0
    np.testing.assert_allclose(back.tensor, expected, rtol=1e-5)
    assert not back.mask[0, :5].any() and back.mask[0, 5:].all() and back.stamp_ns == 12


def test_depth_round_trip_turns_far_and_too_near_values_into_nan():
    tensor = RNG.uniform(0.05, 0.95, DEPTH.shape).astype(np.float32)
    tensor[0, 0, :3] = 0.99
    tensor[0, 0, 3] = 0.01  # 0.05 m, under range_min 0.1 m
    msg = reconstruction_message(tensor, DEPTH, header(14))
    assert isinstance(msg, Image) and msg.encoding == "32FC1" and (msg.width, msg.height) == (16, 12)
    assert np.isnan(np.frombuffer(bytes(msg.data), "<f4")[:4]).all()
    back = decode_message(msg, DEPTH)
    expected = tensor.copy()
    expected[0, 0, :4] = 1.0
    np.testing.assert_allclose(back.tensor, expected, rtol=1e-6)
    assert back.mask.sum() == 16 * 12 - 4 and not back.mask[0, 0, :4].any() and back.stamp_ns == 14


def test_range_image_round_trip():
    tensor = np.empty(LIDAR3D.shape, np.float32)
    tensor[0] = RNG.uniform(0.05, 0.95, LIDAR3D.shape[1:])
    tensor[1] = RNG.uniform(0.0, 1.0, LIDAR3D.shape[1:])
    tensor[0, 3, 10:20], tensor[1, 3, 10:20] = 1.0, 0.0  # no return
    msg = reconstruction_message(tensor, LIDAR3D, header(13))
    assert isinstance(msg, PointCloud2) and msg.width == 8 * 64 - 10 and msg.is_dense
    back = decode_message(msg, LIDAR3D)
    np.testing.assert_allclose(back.tensor, tensor, atol=1e-5)
    assert back.mask.sum() == 2 * (8 * 64 - 10) and not back.mask[:, 3, 10:20].any()
    assert [(f.name, f.offset) for f in msg.fields] == [("x", 0), ("y", 4), ("z", 8), ("intensity", 12)]
    # A model without intensity sends x, y, z only: a field of zeros would read as a measurement.
    ranges_only = dataclasses.replace(LIDAR3D, preprocess=RangeImagePreprocess(rings=8, bins=64))
    msg = reconstruction_message(tensor[:1], ranges_only, header(13))
    assert [f.name for f in msg.fields] == ["x", "y", "z"]
    assert (msg.point_step, msg.width) == (12, 8 * 64 - 10)
    np.testing.assert_allclose(decode_message(msg, ranges_only).tensor, tensor[:1], atol=1e-5)


def test_vector_and_wrong_shapes_have_no_reconstruction_message():
    vector = ModalitySpec(name="imu", kind="vector", preprocess=VectorPreprocess(dim=4))
    for tensor, spec, reason in [(np.zeros(4), vector, "unsupported_type"),
                                 (np.zeros((1, 89)), LIDAR, "size_mismatch")]:
        with pytest.raises(CodecError) as err:
            reconstruction_message(tensor, spec, header(0))
        assert err.value.reason == reason


def test_a_stamp_never_set_is_refused_with_its_own_reason():
    msg = scan([1.0] * 8, 5)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
    with pytest.raises(CodecError) as err:
        check_and_keep(msg, LIDAR)
    assert err.value.reason == "zero_stamp"


def test_a_stamp_whose_nanoseconds_reach_a_second_is_refused():
    msg = scan([1.0] * 8, 5)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100, 1_500_000_000  # would read as 101.5 s
    for function in (check_and_keep, decode_message):
        with pytest.raises(CodecError) as err:
            function(msg, LIDAR)
        assert err.value.reason == "bad_stamp" and "nanosec 1500000000" in str(err.value)
