"""Camera images → tensors: every supported encoding, padding, byte order and bad input."""

import cv2
import numpy as np
import pytest
from bagutils import compressed, image, scan, to_rosbags

from m2vae_ros.codec import CodecError, decode_message
from m2vae_ros.codec.image import declared_size
from m2vae_ros.spec import ImagePreprocess, ModalitySpec

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
MONO16 = RNG.integers(0, 65536, size=(6, 8), dtype=np.uint16)


def camera(width: int = 8, height: int = 6, channels: int = 3, value_max: float | None = None):
    return ModalitySpec(name="camera", kind="image",
                        preprocess=ImagePreprocess(width=width, height=height, channels=channels,
                                                   value_max=value_max))


@pytest.fixture(params=["rclpy", "rosbags"])
def flavour(request):
    """Every test runs on the rclpy message and on its rosbags twin."""
    return (lambda msg: msg) if request.param == "rclpy" else to_rosbags


def chw(pixels: np.ndarray, scale: float) -> np.ndarray:
    return (pixels.astype(np.float32) / np.float32(scale)).transpose(2, 0, 1)


@pytest.mark.parametrize(("encoding", "pixels"), [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full((6, 8), 7, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full((6, 8), 7, np.uint8)])),
])
def test_colour_encodings_give_rgb(flavour, encoding, pixels):
    out = decode_message(flavour(image(np.ascontiguousarray(pixels), encoding, 1_500_000_000)), camera())
    assert out.tensor.dtype == np.float32 and out.tensor.shape == (3, 6, 8)
    np.testing.assert_array_equal(out.tensor, chw(RGB, 255))
    assert out.mask is None and out.stamp_ns == 1_500_000_000


def test_mono8_becomes_three_equal_channels_and_says_its_colour_is_grey(flavour):
    out = decode_message(flavour(image(RGB[:, :, 0].copy(), "mono8")), camera())
    np.testing.assert_array_equal(out.tensor, np.repeat(chw(RGB[:, :, :1], 255), 3, axis=0))
    assert out.caveats == ("grey_for_colour",)  # the node warns: the model's colour cues read grey
    _, png = cv2.imencode(".png", RGB[:, :, 0])
    assert decode_message(flavour(compressed(png.tobytes(), "png")), camera()).caveats == ("grey_for_colour",)


@pytest.mark.parametrize(("encoding", "pixels", "channels"), [
    ("rgb8", RGB, 3), ("rgb8", RGB, 1), ("mono8", RGB[:, :, 0].copy(), 1)])
def test_colour_or_a_grey_model_loses_no_colour(flavour, encoding, pixels, channels):
    assert not decode_message(flavour(image(pixels, encoding)), camera(channels=channels)).caveats


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_sixteen_bit_both_byte_orders(flavour, encoding, bigendian):
    out = decode_message(flavour(image(MONO16, encoding, bigendian=bigendian)), camera(channels=1))
    np.testing.assert_allclose(out.tensor, chw(MONO16[:, :, None], 65535), rtol=1e-6)


def test_float_image_uses_value_max_and_clips(flavour):
    depth = np.linspace(0.0, 6.0, 48, dtype=np.float32).reshape(6, 8)
    out = decode_message(flavour(image(depth, "32FC1")), camera(channels=1, value_max=4.0))
    np.testing.assert_allclose(out.tensor[0], np.clip(depth / 4.0, 0, 1), rtol=1e-6)
    assert out.tensor.max() == 1.0


def test_a_16uc1_image_with_holes_is_a_depth_cameras_and_says_so(flavour):
    def caveats(pixels: np.ndarray, encoding: str) -> tuple[str, ...]:
        return decode_message(flavour(image(pixels, encoding)), camera(channels=1)).caveats

    millimetres = np.full((6, 8), 2500, np.uint16)
    assert caveats(millimetres, "16UC1") == ()  # no holes: a thermal camera's, perhaps
    millimetres[0, :3] = 0
    assert caveats(millimetres, "16UC1") == ("depth_for_image",)
    assert caveats(millimetres, "mono16") == ()  # a grey camera's encoding
    png = compressed(cv2.imencode(".png", millimetres)[1].tobytes(), "16UC1; png compressed")
    assert decode_message(flavour(png), camera(channels=1)).caveats == ("depth_for_image",)


def test_a_float_image_far_beyond_one_without_value_max_says_it_clips(flavour):
    # Metres taken as [0, 1] clip beyond 1 m: the sensor would train as a nearly blank picture.
    depth = np.linspace(0.5, 4.0, 48, dtype=np.float32).reshape(6, 8)
    out = decode_message(flavour(image(depth, "32FC1")), camera(channels=1))
    assert out.caveats == ("beyond_full_scale",) and out.tensor.max() == 1.0
    assert not decode_message(flavour(image(depth, "32FC1")), camera(channels=1, value_max=4.0)).caveats
    overshoot = np.linspace(0.0, 1.1, 48, dtype=np.float32).reshape(6, 8)  # a [0, 1] image, interpolated
    overshoot[0, 0] = np.inf  # too far (REP 118): reads 1.0, not a value beyond the scale
    assert not decode_message(flavour(image(overshoot, "32FC1")), camera(channels=1)).caveats


@pytest.mark.parametrize("bigendian", [False, True])
def test_a_depth_images_nan_and_inf_read_as_rep_118_says_not_as_a_dropped_frame(flavour, bigendian):
    # Real depth cameras leave NaN (no estimate) in almost every frame: refusing those frames
    # lost the whole topic.
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    msg = image(depth, "32FC1", bigendian=bigendian)
    out = decode_message(flavour(msg), camera(channels=1, value_max=4.0))
    assert (out.tensor[0, 0, 0], out.tensor[0, 1, 1], out.tensor[0, 2, 2]) == (1.0, 1.0, 0.0)
    assert (out.tensor[0, 3:] == 0.5).all()


def test_row_padding_is_skipped(flavour):
    padded = decode_message(flavour(image(RGB, "rgb8", pad=5)), camera())
    np.testing.assert_array_equal(padded.tensor, chw(RGB, 255))


def test_shrinking_averages_pixel_blocks(flavour):
    blocks = RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)  # 32×32 of constant 8×8 blocks
    out = decode_message(flavour(image(big, "rgb8")), camera(width=4, height=4))
    np.testing.assert_allclose(out.tensor, chw(blocks, 255), atol=1e-6)


def test_colour_to_mono_uses_luma(flavour):
    red = np.zeros((6, 8, 3), np.uint8)
    red[..., 0] = 255
    out = decode_message(flavour(image(red, "rgb8")), camera(channels=1))
    assert out.tensor.shape == (1, 6, 8)
    np.testing.assert_allclose(out.tensor, 0.299, atol=2 / 255)


def test_png_and_jpeg(flavour):
    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    assert ok
    out = decode_message(flavour(compressed(png.tobytes(), "png")), camera())
    np.testing.assert_array_equal(out.tensor, chw(RGB, 255))
    smooth = np.repeat(np.repeat(RGB[:2, :2], 16, axis=0), 16, axis=1)
    ok, jpeg = cv2.imencode(".jpg", smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_message(flavour(compressed(jpeg.tobytes(), "rgb8; jpeg compressed bgr8")), camera(32, 32))
    assert np.abs(out.tensor - chw(smooth, 255)).mean() < 0.03


def test_sixteen_bit_png_scales_by_65535(flavour):
    _, png = cv2.imencode(".png", MONO16)
    out = decode_message(flavour(compressed(png.tobytes(), "png")), camera(channels=1))
    np.testing.assert_allclose(out.tensor, chw(MONO16[:, :, None], 65535), rtol=1e-6)


@pytest.mark.parametrize(("msg", "reason"), [
    (image(RGB, "rgb8"), "short_buffer"),
    (image(RGB, "yuv422"), "unsupported_encoding"),
    (compressed(b"\xff\xd8 not a jpeg at all", "jpeg"), "corrupt_compressed"),
    (compressed(b"", "jpeg"), "corrupt_compressed"),  # cv2.imdecode asserts on an empty buffer
    (compressed(b"abc", "jpeg"), "unsupported_encoding"),  # the bytes decide, not `format`
    (compressed(b"abc", "16UC1; compressedDepth png"), "unsupported_encoding"),  # kind depth reads it
    (scan([1.0] * 8), "unsupported_type"),
])
def test_bad_images_raise_with_reason(flavour, msg, reason):
    if reason == "short_buffer":
        msg.data = msg.data[: msg.step * msg.height - 1]
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), camera())
    assert err.value.reason == reason


def test_an_empty_image_says_it_is_empty(flavour):
    msg = image(RGB, "rgb8")
    msg.height = msg.width = msg.step = 0
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), camera())
    assert (err.value.reason, err.value.detail) == ("size_mismatch", "empty image: 0×0 rgb8")


def test_step_smaller_than_row_is_a_size_mismatch(flavour):
    msg = image(RGB, "rgb8")
    msg.step = 8
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), camera())
    assert err.value.reason == "size_mismatch"


@pytest.mark.parametrize(("encoding", "pixels", "pad"), [
    ("32FC1", RNG.random((6, 8), dtype=np.float32), 2),
    ("mono16", MONO16, 1),
])
def test_rows_padded_by_part_of_a_pixel_still_resize(flavour, encoding, pixels, pad):
    """OpenCV refuses rows whose step is no whole number of pixels; the codec copies them first."""
    spec = camera(width=4, height=3, channels=1, value_max=1.0 if encoding == "32FC1" else None)
    padded = decode_message(flavour(image(pixels, encoding, pad=pad)), spec).tensor
    np.testing.assert_array_equal(padded, decode_message(flavour(image(pixels, encoding)), spec).tensor)


def test_compressed_bytes_of_another_format_are_refused_whatever_the_format_says(flavour):
    """imdecode sniffs the bytes: a float TIFF labelled png must not reach it (NaN, cv2.error), nor a
    BMP, whose size could not be checked before decoding."""
    for extension, image_data in ((".tiff", RNG.random((6, 8, 3))), (".bmp", RGB)):
        ok, data = cv2.imencode(extension, image_data)
        assert ok
        with pytest.raises(CodecError) as err:
            decode_message(flavour(compressed(data.tobytes(), "png")), camera())
        assert err.value.reason == "unsupported_encoding" and "not PNG, JPEG or WebP" in str(err.value)


@pytest.mark.parametrize(("extension", "params"), [
    (".png", []), (".jpg", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # 101: lossless
])
def test_a_compressed_image_size_is_read_from_its_header(extension, params):
    ok, data = cv2.imencode(extension, RNG.integers(0, 256, size=(30, 41, 3), dtype=np.uint8), params)
    assert ok
    assert declared_size(data) == (41, 30)
    if extension == ".webp":
        assert data[12:16].tobytes() == (b"VP8L" if params[1] > 100 else b"VP8 ")


def test_a_compressed_image_declaring_gigapixels_is_refused_before_decoding(flavour):
    # A 20000×20000 PNG of one colour compresses to about 1 MB and would decode to 1.2 GB.
    ok, png = cv2.imencode(".png", RGB)
    assert ok
    bomb = bytearray(png.tobytes())
    bomb[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR width and height
    with pytest.raises(CodecError) as err:
        decode_message(flavour(compressed(bytes(bomb), "png")), camera())
    assert err.value.reason == "too_large" and "declares 20000×20000 pixels" in str(err.value)


def test_a_jpeg_frame_header_behind_large_metadata_is_still_found():
    ok, jpeg = cv2.imencode(".jpg", RGB)
    assert ok
    data = jpeg.tobytes()
    app = b"\xff\xe2" + (65535).to_bytes(2, "big") + bytes(65533)  # an ICC profile segment, 64 KB
    padded = data[:2] + app * 3 + data[2:]  # 192 KB of metadata before the frame header
    assert declared_size(np.frombuffer(padded, np.uint8)) == (8, 6)
