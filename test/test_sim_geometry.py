"""The simulated sensors agree with the ground truth: LiDAR returns, image position, colour, shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from m2vae_ros.sim.camera import Camera
from m2vae_ros.sim.lidar import OBJECT_INTENSITY, PlanarLidar, SpinningLidar
from m2vae_ros.sim.world import (
    IN_VIEW_BEARING,
    MIN_DISTANCE,
    OBJECT_CLASSES,
    OBJECT_HALF_WIDTH,
    OBJECT_HEIGHT,
    ROBOT_MARGIN,
    Arena,
    Lighting,
    Scenario,
    World,
    WorldState,
)

ARENA = Arena()
RED_CYLINDER, RED_BOX, GREEN_CYLINDER = OBJECT_CLASSES
LIGHT = Lighting(ambient=0.45, diffuse=0.5, azimuth=math.pi)  # light from behind the robot


def state_at(cls, distance: float, bearing: float, object_yaw: float = 0.0) -> WorldState:
    """Robot at (1.5, 3) facing +x; the object at `distance` and `bearing` (left positive)."""
    robot = (1.5, 3.0)
    obj = (robot[0] + distance * math.cos(bearing), robot[1] + distance * math.sin(bearing))
    return WorldState(0, cls, obj, object_yaw, robot, 0.0, LIGHT)


def object_pixels(image: np.ndarray, cls) -> np.ndarray:
    """Mask of pixels whose dominant channel is the class's colour."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    if cls.rgb[0] > cls.rgb[1]:
        return (r > g + 40) & (r > b + 40)
    return (g > r + 40) & (g > b + 40)


def trajectory_states(
    seed: int = 4, seconds: float = 300.0, scenario: Scenario | None = None
) -> list[WorldState]:
    world = World(seed, scenario=scenario)
    return [world.state(t) for t in np.arange(0.0, seconds, 0.1)]


def test_scan_beam_towards_the_object_returns_its_distance_minus_radius() -> None:
    lidar = PlanarLidar()
    rng = np.random.default_rng(0)
    checked = 0
    for state in trajectory_states(seconds=90.0)[::25]:
        x, y, _ = state.object_in_robot_frame()
        bearing, distance = math.atan2(y, x), math.hypot(x, y)
        ranges, intensities = lidar.scan(state, ARENA, rng)
        beam = round((bearing - lidar.angle_min) / lidar.angle_increment) % lidar.beams
        assert intensities[beam] == OBJECT_INTENSITY
        if state.object_class.shape == "cylinder":
            # The beam is at most half an increment off the centre line: the surface is that much farther.
            assert ranges[beam] == pytest.approx(distance - OBJECT_HALF_WIDTH, abs=0.05)
        else:
            assert distance - OBJECT_HALF_WIDTH * math.sqrt(2) - 0.05 <= ranges[beam]
            assert ranges[beam] <= distance - OBJECT_HALF_WIDTH + 0.05
        checked += 1
    assert checked >= 30


def test_scan_reports_no_return_beyond_range_max_as_inf() -> None:
    # From (0.3, 0.3) the opposite corner is 8.06 m away, beyond the 8 m range; the object is aside.
    state = WorldState(0, RED_CYLINDER, (1.5, 4.5), 0.0, (0.3, 0.3), math.pi / 4, LIGHT)
    lidar = PlanarLidar()
    ranges, _ = lidar.scan(state, ARENA, np.random.default_rng(0))
    forward = round((0.0 - lidar.angle_min) / lidar.angle_increment)
    sideways = round((math.pi / 2 - lidar.angle_min) / lidar.angle_increment)
    assert np.isinf(ranges[forward])
    assert np.all(np.isfinite(np.delete(ranges, forward)))
    assert ranges[sideways] == pytest.approx(0.3 * math.sqrt(2), abs=0.05)


def test_point_cloud_object_returns_lie_at_the_ground_truth_pose() -> None:
    lidar = SpinningLidar()
    state = state_at(RED_CYLINDER, 2.0, 0.4)
    x, y, _ = state.object_in_robot_frame()
    cloud = lidar.points(state, ARENA, np.random.default_rng(1))
    on_object = cloud[cloud["intensity"] == OBJECT_INTENSITY]
    assert len(on_object) >= 10
    horizontal = np.hypot(on_object["x"] - x, on_object["y"] - y)
    assert np.all(np.abs(horizontal - OBJECT_HALF_WIDTH) < 0.05)
    # Heights in the lidar frame: the object spans [0, 0.5] m, the lidar is mounted at 0.4 m.
    assert on_object["z"].min() >= -lidar.mount_height - 0.02
    assert on_object["z"].max() <= OBJECT_HEIGHT - lidar.mount_height + 0.02
    floor = cloud[cloud["intensity"] == 30.0]
    assert len(floor) > 0 and np.allclose(floor["z"], -lidar.mount_height, atol=0.02)
    assert set(np.unique(cloud["ring"])) <= set(range(lidar.rings))


def test_object_image_column_follows_its_bearing() -> None:
    camera = Camera()
    columns = {}
    for bearing in (0.3, 0.0, -0.3):
        image = camera.render(state_at(RED_CYLINDER, 2.0, bearing), ARENA, np.random.default_rng(0))
        _, cols = np.nonzero(object_pixels(image, RED_CYLINDER))
        columns[bearing] = cols.mean()
    assert columns[0.3] < 24 < columns[0.0] < 40 < columns[-0.3]  # left of centre for positive bearings
    assert columns[0.0] == pytest.approx(31.5, abs=1.0)


def test_object_image_size_shrinks_with_distance() -> None:
    camera = Camera()
    areas = [
        object_pixels(
            camera.render(state_at(GREEN_CYLINDER, d, 0.0), ARENA, np.random.default_rng(0)), GREEN_CYLINDER
        ).sum()
        for d in (1.0, 2.0, 4.0)
    ]
    assert areas[0] > 2.5 * areas[1] > 2.5 * 2.5 * areas[2] > 0  # area ∝ 1/d²


def test_red_and_green_objects_differ_in_colour() -> None:
    camera = Camera()
    means = {}
    for cls in (RED_CYLINDER, GREEN_CYLINDER):
        image = camera.render(state_at(cls, 1.5, 0.0), ARENA, np.random.default_rng(0))
        means[cls.name] = image[object_pixels(image, cls)].mean(axis=0)
    red, green = means["red_cylinder"], means["green_cylinder"]
    assert red[0] > 2 * red[1] and green[1] > 2 * green[0]


def test_cylinder_is_shaded_round_and_a_box_face_flat() -> None:
    camera = Camera()

    def column_profile(cls) -> np.ndarray:
        image = camera.render(state_at(cls, 1.2, 0.0), ARENA, np.random.default_rng(0))
        mask = object_pixels(image, cls)
        cols = np.nonzero(mask.any(axis=0))[0][1:-1]  # inner columns: no anti-aliasing at the rims
        return np.array([image[mask[:, c], c, 0].mean() for c in cols])

    cylinder = column_profile(RED_CYLINDER)
    box = column_profile(RED_BOX)  # yaw 0: one face squarely towards the camera
    assert cylinder[len(cylinder) // 2] - min(cylinder[0], cylinder[-1]) > 20
    assert np.ptp(box) < 10


def test_trajectory_stays_in_the_arena_and_mostly_looks_at_the_object() -> None:
    states = trajectory_states()
    robot = np.array([s.robot_xy for s in states])
    # Keyframe arcs are checked at 12 points each; between them the path may sag by millimetres.
    assert np.all(robot >= ROBOT_MARGIN - 0.01) and np.all(robot <= 6.0 - ROBOT_MARGIN + 0.01)
    relative = np.array([s.object_in_robot_frame()[:2] for s in states])
    distance = np.hypot(relative[:, 0], relative[:, 1])
    assert distance.min() >= MIN_DISTANCE - 1e-9 and distance.max() <= Scenario().max_distance + 1e-9
    assert distance.max() - distance.min() > 2.5  # varied, not one orbit
    bearing = np.arctan2(relative[:, 1], relative[:, 0])
    in_view = np.abs(bearing) < math.radians(30)
    assert 0.6 < in_view.mean() < 0.98  # mostly facing it, sometimes not
    assert (bearing > 0.1).mean() > 0.15 and (bearing < -0.1).mean() > 0.15


def test_an_inspection_keeps_the_object_near_and_in_view() -> None:
    states = trajectory_states(scenario=Scenario(max_distance=2.5, look_away=0.0))
    relative = np.array([s.object_in_robot_frame()[:2] for s in states])
    distance = np.hypot(relative[:, 0], relative[:, 1])
    assert distance.min() >= MIN_DISTANCE - 1e-9 and distance.max() <= 2.5 + 1e-9
    assert distance.max() - distance.min() > 1.5
    bearing = np.arctan2(relative[:, 1], relative[:, 0])
    assert np.all(np.abs(bearing) <= IN_VIEW_BEARING + 1e-9)


@pytest.mark.parametrize(
    ("max_distance", "look_away"), [(MIN_DISTANCE, 0.0), (4.5, 0.0), (2.0, -0.1), (2.0, 1.5)]
)
def test_scenario_rejects_unreachable_distances_and_non_probabilities(
    max_distance: float, look_away: float
) -> None:
    with pytest.raises(ValueError, match=r"max_distance|look_away"):
        Scenario(max_distance=max_distance, look_away=look_away)


def test_trajectory_is_smooth_within_an_episode() -> None:
    world = World(2)
    t = np.arange(0.0, 14.99, 0.01)
    states = [world.state(x) for x in t]
    xy = np.array([s.robot_xy for s in states])
    yaw = np.unwrap([s.robot_yaw for s in states])
    assert np.max(np.hypot(*np.diff(xy, axis=0).T)) < 0.03  # < 3 m/s
    assert np.max(np.abs(np.diff(yaw))) < 0.05  # < 5 rad/s


def test_classes_are_balanced_and_fixed_per_episode() -> None:
    world = World(7, episode_seconds=10.0)
    per_episode = [world.state(10.0 * k + 0.1).object_class.index for k in range(9)]
    assert sorted(per_episode) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(world.state(10.0 * 4 + dt).object_class.index == per_episode[4] for dt in (0.0, 3.3, 9.99))
    assert World(7, episode_seconds=10.0).state(42.0) == world.state(42.0)
    assert World(8, episode_seconds=10.0).state(42.0) != world.state(42.0)


def test_world_rejects_negative_seed_and_time() -> None:
    with pytest.raises(ValueError, match="seed"):
        World(-1)
    with pytest.raises(ValueError, match="time"):
        World(0).state(-0.5)
