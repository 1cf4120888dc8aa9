"""Depth images: millimetres and metres, REP 118's special values, nearest-depth resizing, and the
compressed forms image_transport records."""

import cv2
import numpy as np
import pytest
from bagutils import compressed, image, to_rosbags

from m2vae_ros.codec import CodecError, decode_message
from m2vae_ros.spec import DepthPreprocess, ModalitySpec


def depth_spec(width: int = 4, height: int = 2, range_min: float = 0.2, range_max: float = 5.0
               ) -> ModalitySpec:
    return ModalitySpec("depth", "depth", DepthPreprocess(width, height, range_min, range_max))


def test_millimetres_become_metres_over_range_max_and_zero_is_no_return_not_near():
    millimetres = np.array([[0, 1000, 2500, 5000], [100, 5001, 65535, 200]], np.uint16)
    for encoding in ("16UC1", "mono16"):
        out = decode_message(image(millimetres, encoding), depth_spec())
        # 0 (no data), 0.1 m (under range_min 0.2), 5.001 m and 65.5 m (beyond range_max 5) read no return.
        np.testing.assert_allclose(out.tensor[0], [[1.0, 0.2, 0.5, 1.0], [1.0, 1.0, 1.0, 0.04]], rtol=1e-6)
        np.testing.assert_array_equal(out.mask[0], [[False, True, True, True], [False, False, False, True]])


def test_a_depth_right_at_range_max_is_a_return_and_minus_inf_at_range_min_zero_too():
    at_limit = decode_message(image(np.array([[700]], np.uint16), "16UC1"), depth_spec(1, 1, 0.2, 0.7))
    assert at_limit.mask.all() and at_limit.tensor[0, 0, 0] == 1.0  # 0.7 m of 0.7 m, measured
    too_close = decode_message(image(np.array([[-np.inf]], np.float32), "32FC1"), depth_spec(1, 1, 0.0, 5.0))
    assert too_close.mask.all() and too_close.tensor[0, 0, 0] == 0.0


def test_beyond_range_is_the_share_of_measured_depths_past_range_max():
    millimetres = np.array([[0, 1000, 6000, 7000]], np.uint16)  # a hole, 1 m, and two beyond 5 m
    out = decode_message(image(millimetres, "16UC1"), depth_spec(height=1))
    assert out.beyond_range == pytest.approx(2 / 3)


def test_float_metres_follow_rep_118():
    metres = np.array([[np.nan, np.inf, -np.inf, 2.0]], np.float32)
    out = decode_message(image(metres, "32FC1", bigendian=True), depth_spec(height=1))
    # NaN (no estimate) and +inf (too far) read no return; −inf (too close) a return at range_min.
    np.testing.assert_allclose(out.tensor[0, 0], [1.0, 1.0, 0.2 / 5.0, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(out.mask[0, 0], [False, False, True, True])


def test_shrinking_keeps_each_pixels_nearest_depth_and_skips_holes():
    millimetres = np.array([[1000, 0, 3000, 3000],
                            [4000, 4000, 0, 0],
                            [2000, 2000, 0, 0],
                            [2000, 1500, 0, 0]], np.uint16)
    out = decode_message(image(millimetres, "16UC1"), depth_spec(width=2, height=2))
    # No average of an edge (1 m beside 4 m) or of a hole with a depth: the nearest valid one.
    np.testing.assert_allclose(out.tensor[0] * 5.0, [[1.0, 3.0], [1.5, 5.0]], rtol=1e-6)
    np.testing.assert_array_equal(out.mask[0], [[True, True], [True, False]])


def test_growing_repeats_each_source_pixel():
    millimetres = np.array([[1000, 0], [2000, 3000]], np.uint16)
    out = decode_message(image(millimetres, "16UC1"), depth_spec(width=4, height=2))
    np.testing.assert_allclose(out.tensor[0] * 5.0, [[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 3.0, 3.0]], rtol=1e-6)


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "yuv422"])
def test_a_colour_or_unknown_encoding_is_refused_naming_the_depth_encodings(encoding):
    pixels = np.zeros((2, 4, 3 if encoding == "rgb8" else 1), np.uint8)
    with pytest.raises(CodecError, match=r"depth image encoding .*16UC1.*32FC1") as err:
        decode_message(image(pixels, encoding), depth_spec())
    assert err.value.reason == "unsupported_encoding"


def compressed_depth(metres: np.ndarray, encoding: str, depth_max: float = 10.0, quantisation: float = 100.0
                     ) -> bytes:
    """What compressed_depth_image_transport publishes: a ConfigHeader, then a PNG of millimetres
    (16UC1) or of quantised inverse depth (32FC1, its encoder's formula; 0 where NaN or beyond
    depth_max)."""
    if encoding == "16UC1":
        header, values = np.zeros(3, "<i4").tobytes(), np.rint(np.nan_to_num(metres) * 1000).astype(np.uint16)
    else:
        quant_a = np.float32(quantisation * (quantisation + 1.0))
        quant_b = np.float32(1.0 - quant_a / depth_max)
        header = np.array([0], "<i4").tobytes() + np.array([quant_a, quant_b], "<f4").tobytes()
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(metres < depth_max, quant_a / metres + quant_b, 0).astype(np.uint16)
    return header + cv2.imencode(".png", values)[1].tobytes()


METRES = np.array([[0.5, 1.25, np.nan, 4.0], [2.0, 3.0, 12.0, 0.8]], np.float32)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
@pytest.mark.parametrize("flavour", [lambda msg: msg, to_rosbags], ids=["rclpy", "rosbags"])
def test_compressed_depth_png_decodes_like_the_raw_image(encoding, flavour):
    msg = compressed(compressed_depth(METRES, encoding), f"{encoding}; compressedDepth png")
    out = decode_message(flavour(msg), depth_spec(range_max=8.0))
    expected = decode_message(image(METRES, "32FC1"), depth_spec(range_max=8.0))
    np.testing.assert_array_equal(out.mask, expected.mask)  # NaN and 12 m (beyond 8 m, and 10 m) no return
    # 32FC1 goes through inverse depth in 16 bits: a step of z²/quant_a, 1.6 mm at 4 m with the defaults.
    tolerance = 2e-3 if encoding == "32FC1" else 1e-6
    np.testing.assert_allclose(out.tensor * 8.0, expected.tensor * 8.0, atol=tolerance)


def test_a_plain_16_bit_png_of_millimetres_decodes_too():
    millimetres = np.array([[0, 1000], [2500, 4000]], np.uint16)
    out = decode_message(compressed(cv2.imencode(".png", millimetres)[1].tobytes(), "16UC1; png compressed"),
                         depth_spec(width=2, height=2))
    np.testing.assert_allclose(out.tensor[0], [[1.0, 0.2], [0.5, 0.8]], rtol=1e-6)


@pytest.mark.parametrize(("fmt", "data", "detail"), [
    ("16UC1; compressedDepth rvl", bytes(40), "RVL is not supported"),
    ("16UC1; compressedDepth png", bytes(12), "no room for its 12-byte header"),
    ("bgr8; jpeg compressed bgr8", b"", "compressed depth encoding 'bgr8'"),
    ("32FC1; png compressed", b"", "carries 8 or 16 bits, not 32FC1"),
    ("16UC1; png compressed", cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes(),
     "a depth image is one channel of 16 bits"),
])
def test_compressed_depth_it_cannot_read_is_refused_saying_why(fmt, data, detail):
    with pytest.raises(CodecError, match=detail):
        decode_message(compressed(data, fmt), depth_spec())
