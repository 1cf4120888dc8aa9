"""LaserScans → (1, beams) tensors: "no return" handling and resampling to the spec's bins."""

import math

import numpy as np
import pytest
from bagutils import scan, to_rosbags

from m2vae_ros.codec import CodecError, decode_message
from m2vae_ros.codec.scan import scan_message
from m2vae_ros.spec import ModalitySpec, ScanPreprocess

RNG = np.random.default_rng(1)


def lidar(beams: int = 360, range_max: float = 8.0) -> ModalitySpec:
    pre = ScanPreprocess(beams=beams, range_max=range_max)
    return ModalitySpec(name="lidar", kind="scan", preprocess=pre)


@pytest.fixture(params=["rclpy", "rosbags"])
def flavour(request):
    return (lambda msg: msg) if request.param == "rclpy" else to_rosbags


def test_matching_scan_is_ranges_over_range_max(flavour):
    ranges = RNG.uniform(0.5, 7.5, 360).astype(np.float32)
    out = decode_message(flavour(scan(ranges, 42)), lidar())
    assert out.tensor.shape == (1, 360) and out.mask.shape == (1, 360) and out.stamp_ns == 42
    np.testing.assert_allclose(out.tensor[0], ranges / 8.0, rtol=1e-6)
    assert out.mask.all()


def test_invalid_returns_are_no_return_never_zero(flavour):
    ranges = np.full(360, 4.0, np.float32)
    bad = {0: np.inf, 1: np.nan, 2: 0.05, 3: 12.0, 4: 9.5}  # 9.5: beyond the spec's 8 m only
    for i, value in bad.items():
        ranges[i] = value
    ranges[5] = -np.inf  # REP 117: too close to measure, an obstacle at the sensor's near limit
    out = decode_message(flavour(scan(ranges, range_min=0.2, range_max=10.0)), lidar())
    assert (out.tensor[0, :5] == 1.0).all() and not out.mask[0, :5].any()
    assert out.tensor[0, 5] == np.float32(0.2 / 8.0) and out.mask[0, 5]
    np.testing.assert_allclose(out.tensor[0, 6:], 0.5)
    assert out.mask[0, 6:].all()


def test_denser_scan_keeps_nearest_return_per_bin(flavour):
    ranges = RNG.uniform(0.5, 7.5, 1080).astype(np.float32)  # three beams per bin, centred on it
    out = decode_message(flavour(scan(ranges)), lidar())
    expected = np.roll(ranges, 1).reshape(360, 3).min(axis=1) / 8.0
    np.testing.assert_allclose(out.tensor[0], expected, rtol=1e-6)


def test_a_sparser_scan_fills_each_bin_from_the_beams_covering_it(flavour):
    ranges = RNG.uniform(0.5, 7.5, 180).astype(np.float32)
    ranges[10] = np.inf  # no return: the bins it alone covers stay empty
    out = decode_message(flavour(scan(ranges)), lidar())
    expected = np.minimum(ranges, np.roll(ranges, -1))  # a bin between two beams: the nearer return
    np.testing.assert_allclose(out.tensor[0, ::2], np.minimum(ranges / 8.0, 1.0), rtol=1e-6)
    np.testing.assert_allclose(out.tensor[0, 1::2], np.minimum(expected / 8.0, 1.0), rtol=1e-6)
    assert out.mask[0].sum() == 359 and not out.mask[0, 20]  # bin 19 and 21 take beams 9 and 11


def test_a_sparser_scan_looks_to_the_encoder_like_the_dense_one():
    angles = np.linspace(-math.pi, math.pi, 360, endpoint=False)
    wall = (3.0 + np.cos(2 * angles)).astype(np.float32)  # a smooth room, no gaps
    dense = decode_message(scan(wall), lidar()).tensor
    sparse = decode_message(scan(wall[::4], angle_increment=4 * math.pi / 180), lidar()).tensor
    assert np.abs(sparse - dense).max() < 0.05  # within 0.4 m; it was 1.0 (8 m) in 3 of every 4 bins


def test_coverage_counts_the_bins_a_scans_beams_reach(flavour):
    full, sparse = scan(np.full(360, 2.0, np.float32)), scan(np.full(90, 2.0, np.float32))
    turn_270 = scan(np.full(1081, 2.0, np.float32), angle_min=-0.75 * math.pi, angle_increment=math.pi / 720)
    coverages = [decode_message(flavour(msg), lidar()).coverage for msg in (full, sparse, turn_270)]
    assert coverages == [1.0, 1.0, pytest.approx(271 / 360)]  # −135° … 135°: 271 of the 1° bins


def test_front_half_scan_fills_front_bins_only(flavour):
    ranges = np.full(181, 2.0, np.float32)  # −90° … +90° in 1° steps
    msg = scan(ranges, angle_min=-math.pi / 2, angle_increment=math.pi / 180)
    out = decode_message(flavour(msg), lidar())
    assert out.mask[0, 90:271].all() and out.mask.sum() == 181
    np.testing.assert_allclose(out.tensor[0, 90:271], 0.25)


def test_zero_to_two_pi_scan_feeds_a_front_facing_model(flavour):
    ranges = np.linspace(1.0, 4.6, 360, dtype=np.float32)  # 0 … 359° in 1° steps, range grows with angle
    msg = scan(ranges, angle_min=0.0, angle_increment=math.pi / 180)
    half_turn = ScanPreprocess(beams=181, angle_min=-math.pi / 2, angle_max=math.pi / 2)
    front = ModalitySpec("lidar", "scan", half_turn)
    out = decode_message(flavour(msg), front)
    assert out.mask.all()
    # −90° … −1° are the scan's 270° … 359°, 0° … 90° its first 91 beams.
    expected = np.concatenate([ranges[270:], ranges[:91]]) / 8.0
    np.testing.assert_allclose(out.tensor[0], expected, rtol=1e-6)


def test_a_partial_span_reads_angle_max_as_the_last_beam_like_a_laserscan(flavour):
    """A 270° driver's limits copied into the spec fill every bin, and decode gives them back."""
    increment = math.radians(270) / 1080
    ranges = RNG.uniform(0.5, 7.5, 1081).astype(np.float32)
    msg = scan(ranges, angle_min=-math.radians(135), angle_increment=increment)
    spec = ModalitySpec("lidar", "scan", ScanPreprocess(beams=1081, angle_min=msg.angle_min,
                                                        angle_max=msg.angle_max))
    out = decode_message(flavour(msg), spec)
    assert out.mask.all()
    np.testing.assert_allclose(out.tensor[0], ranges / 8.0, rtol=1e-6)
    back = scan_message(out.tensor, spec, msg.header)
    assert math.isclose(back.angle_increment, increment, rel_tol=1e-9)
    assert math.isclose(back.angle_max, msg.angle_max, rel_tol=1e-9)


def test_empty_scan_is_an_error(flavour):
    with pytest.raises(CodecError) as err:
        decode_message(flavour(scan([], angle_increment=0.01)), lidar())
    assert err.value.reason == "empty_scan"


def test_a_scan_without_a_far_limit_is_bounded_by_the_spec(flavour):
    ranges = np.full(360, 3.0, np.float32)
    ranges[0] = 9.0  # beyond the spec's 8 m: no return
    out = decode_message(flavour(scan(ranges, range_max=math.inf)), lidar())
    assert not out.mask[0, 0] and out.mask[0, 1:].all()
    np.testing.assert_allclose(out.tensor[0, 1:], 3.0 / 8.0)
    assert out.beyond_range == pytest.approx(1 / 360)  # for the dataset's note


def test_beyond_range_counts_the_returns_the_spec_cuts_off_not_the_sensors_invalid_ones(flavour):
    ranges = np.full(100, 3.0, np.float32)
    ranges[:20] = 10.0  # measured (the scan reaches 12 m), beyond the spec's 8 m
    ranges[20:30] = np.inf  # no return: not counted either way
    ranges[30:35] = 0.05  # under the scan's range_min: invalid, not counted
    out = decode_message(flavour(scan(ranges, range_max=12.0)), lidar(beams=100))
    assert out.beyond_range == pytest.approx(20 / 85)
    nothing = decode_message(flavour(scan(np.full(10, np.inf, np.float32))), lidar(beams=10))
    assert nothing.beyond_range is None  # no return at all: no share


@pytest.mark.parametrize(("fields", "reason"), [
    ({"angle_increment": math.nan}, "size_mismatch"),
    ({"angle_min": math.nan}, "non_finite"),
    ({"angle_min": math.inf}, "non_finite"),
    ({"range_min": math.nan}, "non_finite"),
    ({"range_max": math.nan}, "non_finite"),
    ({"range_min": math.inf}, "bad_range_limits"),
    ({"range_min": 8.0, "range_max": 8.0}, "bad_range_limits"),
    ({"range_min": 5.0, "range_max": 1.0}, "bad_range_limits"),
    ({"angle_min": 1e30}, "size_mismatch"),  # finite, but binned as int64 it wrapped into bin 0
    ({"angle_increment": 1e30}, "size_mismatch"),
])
def test_bad_scan_fields_raise_with_reason(flavour, fields, reason):
    """Such limits used to pass and silently turn every beam into "no return"."""
    with pytest.raises(CodecError) as err:
        decode_message(flavour(scan([1.0] * 360, **fields)), lidar())
    assert err.value.reason == reason


def test_a_span_short_of_a_turn_by_less_than_a_bin_puts_each_beam_in_the_nearest_bin(flavour):
    """36 bins over −π … π − 1°: the beam at angle_max is bin 35's centre, not bin 0's neighbour."""
    increment = math.radians(1.0)
    ranges = np.full(360, np.inf, np.float32)
    ranges[-1] = 2.0
    msg = scan(ranges, angle_min=-math.pi, angle_increment=increment)
    spec = ModalitySpec("lidar", "scan", ScanPreprocess(beams=36, angle_min=-math.pi,
                                                        angle_max=math.pi - increment))
    assert np.flatnonzero(decode_message(flavour(msg), spec).mask[0]).tolist() == [35]
