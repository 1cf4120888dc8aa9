"""PointCloud2 → range images and planar scans, for any field layout."""

import dataclasses
import math

import numpy as np
import pytest
from bagutils import cloud, to_rosbags
from sensor_msgs.msg import PointCloud2

from m2vae_ros.codec import CodecError, decode_message
from m2vae_ros.codec.pointcloud import ring_elevations
from m2vae_ros.codec.scan import NO_RETURN
from m2vae_ros.spec import ModalitySpec, RangeImagePreprocess, ScanPreprocess

RNG = np.random.default_rng(2)
RINGS, BINS = 4, 36
PRE = RangeImagePreprocess(rings=RINGS, bins=BINS, fov_up_deg=15.0, fov_down_deg=-15.0, range_max=8.0,
                           intensity=True, intensity_max=100.0)


def lidar3d(intensity: bool = True) -> ModalitySpec:
    pre = PRE if intensity else RangeImagePreprocess(rings=RINGS, bins=BINS, range_max=8.0)
    return ModalitySpec(name="lidar", kind="range_image", preprocess=pre)


@pytest.fixture(params=["rclpy", "rosbags"])
def flavour(request):
    return (lambda msg: msg) if request.param == "rclpy" else to_rosbags


def grid_points() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One point per cell at the cell's centre: (columns, ranges[rings, bins], intensity[rings, bins])."""
    ranges = RNG.uniform(1.0, 7.0, (RINGS, BINS))
    intensity = RNG.uniform(0.0, 100.0, (RINGS, BINS))
    elevation = np.radians(np.linspace(15.0, -15.0, RINGS))[:, None]
    azimuth = (-math.pi + np.arange(BINS) * 2 * math.pi / BINS)[None, :]
    columns = {
        "x": (ranges * np.cos(elevation) * np.cos(azimuth)).ravel(),
        "y": (ranges * np.cos(elevation) * np.sin(azimuth)).ravel(),
        "z": (ranges * np.sin(elevation) * np.ones_like(azimuth)).ravel(),
        "intensity": intensity.ravel(),
    }
    return columns, ranges, intensity


def test_spherical_projection_puts_each_point_in_its_cell(flavour):
    columns, ranges, intensity = grid_points()
    out = decode_message(flavour(cloud(columns, 7)), lidar3d())
    assert out.tensor.shape == (2, RINGS, BINS) and out.mask.all() and out.stamp_ns == 7
    np.testing.assert_allclose(out.tensor[0], ranges / 8.0, rtol=1e-5)
    np.testing.assert_allclose(out.tensor[1], intensity / 100.0, rtol=1e-5)


def test_a_single_ring_sits_in_the_middle_of_the_fov_and_takes_all_of_it(flavour):
    pre = RangeImagePreprocess(rings=1, bins=4, fov_up_deg=2.0, fov_down_deg=-2.0, range_max=8.0)
    # One point per azimuth bin (−π, −π/2, 0, π/2), 2 m away; only the middle two are within ±2°.
    elevation, azimuth = np.radians([3.0, -3.9, -1.5, -0.5]), np.array([-1.0, -0.5, 0.0, 0.5]) * math.pi
    columns = {"x": 2.0 * np.cos(elevation) * np.cos(azimuth), "y": 2.0 * np.cos(elevation) * np.sin(azimuth),
               "z": 2.0 * np.sin(elevation)}
    out = decode_message(flavour(cloud(columns)), ModalitySpec("lidar", "range_image", pre))
    assert out.mask[0, 0].tolist() == [False, False, True, True]  # it was [True, False, False, False]
    np.testing.assert_allclose(out.tensor[0, 0], [1.0, 1.0, 0.25, 0.25], rtol=1e-5)
    assert ring_elevations(pre) == pytest.approx([0.0])  # it was +2°, the top of the FOV


@pytest.mark.parametrize("layout", [
    {"types": {"x": "f8", "y": "f8", "z": "f8", "intensity": "u2"}, "point_step": 40, "bigendian": True},
    {"types": {"intensity": "u1"}, "point_step": 32},
    {"height": 4},
])
def test_any_field_layout_gives_the_same_image(flavour, layout):
    columns, _, _ = grid_points()
    columns["intensity"] = np.rint(columns["intensity"])
    plain = decode_message(cloud(columns), lidar3d())
    other = decode_message(flavour(cloud(columns, **layout)), lidar3d())
    np.testing.assert_allclose(other.tensor, plain.tensor, rtol=1e-5)
    np.testing.assert_array_equal(other.mask, plain.mask)


def test_nearest_return_wins_and_nan_points_are_dropped(flavour):
    columns = {"x": np.array([2.0, 4.0, np.nan, 6.0]), "y": np.zeros(4), "z": np.zeros(4)}
    out = decode_message(flavour(cloud(columns)), lidar3d(intensity=False))
    # z = 0 lies between rings 1 (+5°) and 2 (−5°): equidistant, rounds to the even ring
    assert out.mask.sum() == 1
    assert np.isclose(out.tensor[0][out.mask[0]][0], 2.0 / 8.0)
    assert (out.tensor[0][~out.mask[0]] == 1.0).all()


def test_planar_scan_from_a_z_slice(flavour):
    angles = np.radians(np.arange(-180, 180, 10.0))
    columns = {"x": 3.0 * np.cos(angles), "y": 3.0 * np.sin(angles), "z": np.zeros(36)}
    columns = {k: np.concatenate([v, v * 0.5]) for k, v in columns.items()}  # a closer copy…
    columns["z"][36:] = 1.0  # …lifted out of the slice, so it must not count
    spec = ModalitySpec(name="lidar", kind="scan", preprocess=ScanPreprocess(beams=36, range_max=6.0))
    out = decode_message(flavour(cloud(columns)), spec)
    np.testing.assert_allclose(out.tensor[0], 0.5, rtol=1e-6)
    assert out.mask.all() and out.beyond_range == 0.0
    narrow = dataclasses.replace(spec, preprocess=ScanPreprocess(beams=36, range_max=2.0))
    assert decode_message(flavour(cloud(columns)), narrow).beyond_range == 1.0  # the slice's are at 3 m
    near = ModalitySpec("lidar", "range_image", RangeImagePreprocess(rings=RINGS, bins=BINS, range_max=2.0))
    spheres = decode_message(flavour(cloud(columns)), near)
    assert spheres.beyond_range == 0.5  # those at 1.5 m (√(1.5² + 1²) = 1.8 m) are within


def test_a_cloud_missing_a_coordinate_raises_with_reason(flavour):
    with pytest.raises(CodecError) as err:
        decode_message(flavour(cloud({"x": np.ones(3), "y": np.zeros(3)})), lidar3d(False))
    assert err.value.reason == "missing_field"


def test_a_cloud_without_points_is_no_return_everywhere_not_a_dead_sensor(flavour):
    """An organized LiDAR in open space sends all-NaN points; a filtered one sends none."""
    all_nan = cloud({"x": np.full(3, np.nan), "y": np.zeros(3), "z": np.zeros(3)})
    no_points = cloud({"x": np.zeros(1), "y": np.zeros(1), "z": np.zeros(1)})
    no_points.width, no_points.row_step, no_points.data = 0, 0, b""
    bare = PointCloud2(header=no_points.header)  # no fields, no point_step: a filter's empty output
    absurd_step = cloud({"x": np.zeros(1), "y": np.zeros(1), "z": np.zeros(1)})
    absurd_step.point_step, absurd_step.width, absurd_step.row_step, absurd_step.data = 2**31, 0, 0, b""
    for msg in (all_nan, no_points, bare, absurd_step):
        out = decode_message(flavour(msg), lidar3d(False))
        assert (out.tensor == NO_RETURN).all() and not out.mask.any()


def test_a_planar_slice_skips_the_zero_points_that_mark_missing_beams(flavour):
    # Organised clouds (Ouster, Hesai) put a beam without a return at (0, 0, 0): with
    # range_min 0 it read as an obstacle touching the robot (signed zeros put -0.0 in bin 0).
    angles = np.radians(np.arange(-180, 180, 10.0))
    x, y = 3.0 * np.cos(angles), 3.0 * np.sin(angles)
    x[::3], y[::3] = 0.0, -0.0
    spec = ModalitySpec(name="lidar", kind="scan", preprocess=ScanPreprocess(beams=36, range_min=0.0))
    out = decode_message(flavour(cloud({"x": x, "y": y, "z": np.zeros(36)})), spec)
    assert not out.mask[0, ::3].any() and (out.tensor[0, ::3] == NO_RETURN).all()
    np.testing.assert_allclose(out.tensor[0][out.mask[0]], 3.0 / 8.0, rtol=1e-6)


def test_a_field_listed_twice_is_an_error_not_the_last_one_silently(flavour):
    msg = cloud({"x": np.ones(3), "y": np.zeros(3), "z": np.zeros(3), "w": np.full(3, 5.0)})
    msg.fields[3].name = "x"
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), lidar3d(False))
    assert err.value.reason == "duplicate_field" and "['x']" in str(err.value)


def test_short_buffer(flavour):
    msg = cloud({"x": np.ones(4), "y": np.ones(4), "z": np.ones(4)})
    msg.data = msg.data[:-1]
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), lidar3d(False))
    assert err.value.reason == "short_buffer"


def test_a_nan_intensity_keeps_its_points_range(flavour):
    """Two points in one cell: the nearer, whose intensity is NaN, still wins the range (intensity 0)."""
    columns = {"x": np.array([2.0, 6.0]), "y": np.zeros(2), "z": np.zeros(2),
               "intensity": np.array([np.nan, 50.0])}
    with_intensity = decode_message(flavour(cloud(columns)), lidar3d(True))
    without = decode_message(flavour(cloud(columns)), lidar3d(False))
    np.testing.assert_array_equal(with_intensity.tensor[0], without.tensor[0])
    assert with_intensity.tensor[0].min() == 2.0 / 8.0 and with_intensity.tensor[1].max() == 0.0


def test_a_corrupt_point_step_is_a_codec_error(flavour):
    msg = cloud({"x": np.ones(4), "y": np.zeros(4), "z": np.zeros(4)})
    msg.point_step, msg.row_step = 2**30, 0
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), lidar3d(False))
    assert err.value.reason == "short_buffer"
    # numpy's itemsize is a C int: a point_step beyond it must not reach the dtype.
    msg.point_step = 2**31
    with pytest.raises(CodecError) as err:
        decode_message(flavour(msg), lidar3d(False))
    assert err.value.reason == "size_mismatch"
    # Data without points is no empty cloud.
    msg.point_step, msg.width = 16, 0
    with pytest.raises(CodecError, match="bytes of data in a 0×1 cloud") as err:
        decode_message(flavour(msg), lidar3d(False))
    assert err.value.reason == "size_mismatch"
