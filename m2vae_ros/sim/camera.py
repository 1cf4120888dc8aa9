"""A pinhole camera rendered by a column ray-caster: one 2-D ray per image column.

Per column the horizontal hits (walls, object) come from `raycast.cast`; per row the
ray's slope decides which surface is hit first, using that walls and the object are
vertical and the floor is flat. Perspective is exact for this world: depth along the
optical axis divides heights, so walls stay straight and the object shrinks with
distance. Lambert shading with the object's surface normal makes a cylinder look round
(smooth gradient across it) and a box flat (one shade per face, edges where faces meet).
The same per-pixel surfaces give the depth image of an RGB-D camera (`Camera.depth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2vae_ros.sim.raycast import Hits, cast
from m2vae_ros.sim.world import OBJECT_HEIGHT, Arena, WorldState

SKY_RGB = np.array([0.82, 0.85, 0.90])
FLOOR_RGB = np.array([0.46, 0.40, 0.33])
FLOOR_TILE = 0.5  # metres; a checker floor gives the image a sense of motion
# Walls facing +x, -x, +y, -y (i.e. the west, east, south and north walls): greys and
# blues, far from the objects' red and green.
WALL_RGB = np.array([[0.55, 0.60, 0.72], [0.70, 0.68, 0.60], [0.60, 0.62, 0.66], [0.48, 0.52, 0.62]])
# A structured-light depth camera's limits (metres) and noise, σ = DEPTH_NOISE_PER_M2 · depth²
# (2 mm at 1 m, 3 cm at 4 m).
DEPTH_MIN, DEPTH_MAX = 0.2, 10.0
DEPTH_NOISE_PER_M2 = 0.002


@dataclass(frozen=True)
class _View:
    """What each pixel sees first: the columns' map-frame yaws, their hits and one mask per surface."""

    yaw: np.ndarray  # (width,)
    hits: Hits
    on_object: np.ndarray  # (height, width)
    on_wall: np.ndarray
    on_floor: np.ndarray


class Camera:
    """Renders ``height × width`` rgb8 images from a world state; `hfov` in radians."""

    def __init__(
        self,
        width: int = 64,
        height: int = 64,
        *,
        hfov: float = math.radians(60.0),
        mount_height: float = 0.3,
        noise_std: float = 4.0,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self.mount_height = mount_height
        self.noise_std = noise_std
        self.focal = focal = (width / 2) / math.tan(hfov / 2)  # pixels, square pixels
        # Column angles are positive to the left (ROS: y left), rows' slopes positive upward.
        self._column_angles = np.arctan((width / 2 - (np.arange(width) + 0.5)) / focal)
        self._cos = np.cos(self._column_angles)
        self._slopes = ((height / 2 - (np.arange(height) + 0.5)) / focal)[:, None]
        # Where each below-horizon pixel meets the floor, relative to the camera (robot frame).
        depth = np.where(self._slopes < 0, mount_height / np.maximum(-self._slopes, 1e-6), 50.0)
        distance = np.minimum(depth / self._cos, 50.0)
        self._floor_forward = (distance * self._cos).astype(np.float32)
        self._floor_left = (distance * np.sin(self._column_angles)).astype(np.float32)
        self._floor_falloff = (1.0 / (1.0 + 0.04 * distance)).astype(np.float32)

    def render(self, state: WorldState, arena: Arena, rng: np.random.Generator) -> np.ndarray:
        """The image as uint8 (height, width, 3), RGB order."""
        view = self._view(state, arena)
        hits, yaw = view.hits, view.yaw
        light = state.lighting
        to_light = np.array([math.cos(light.azimuth), math.sin(light.azimuth)])

        # Surfaces seen edge-on get less ambient light, so a cylinder darkens towards its sides.
        facing = -(hits.object_normal[:, 0] * np.cos(yaw) + hits.object_normal[:, 1] * np.sin(yaw))
        lambert = np.maximum(hits.object_normal @ to_light, 0.0)
        object_shade = light.ambient * (0.5 + 0.5 * facing) + light.diffuse * lambert
        object_rgb = np.asarray(state.object_class.rgb) * object_shade[:, None]
        wall_index = np.where(
            hits.wall_normal[:, 0] != 0,
            (hits.wall_normal[:, 0] < 0).astype(int),
            2 + (hits.wall_normal[:, 1] < 0),
        )
        wall_shade = light.ambient + light.diffuse * np.maximum(hits.wall_normal @ to_light, 0.0)
        wall_rgb = WALL_RGB[wall_index] * (wall_shade / (1.0 + 0.04 * hits.wall_distance))[:, None]

        sky_rgb = SKY_RGB * (0.7 + 0.3 * light.ambient)
        image = np.where(view.on_object[..., None], object_rgb.astype(np.float32), sky_rgb.astype(np.float32))
        image = np.where(view.on_wall[..., None], wall_rgb.astype(np.float32), image)
        image = np.where(view.on_floor[..., None], self._floor(state), image)

        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(self.noise_std / 255.0)
        image = image * np.float32(rng.normal(1.0, 0.02)) + noise
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def depth(self, state: WorldState, arena: Arena, rng: np.random.Generator) -> np.ndarray:
        """The depth image registered to `render`'s pixels as uint16 (height, width) millimetres (16UC1).

        Depth is along the optical axis, with a structured-light camera's noise growing as its
        square (DEPTH_NOISE_PER_M2 · z²); the sky and anything nearer than DEPTH_MIN or beyond
        DEPTH_MAX read 0, no data, as such a camera reports them.
        """
        view = self._view(state, arena)
        depth = np.where(view.on_object, view.hits.object_distance * self._cos, np.inf)
        depth = np.where(view.on_wall, view.hits.wall_distance * self._cos, depth)
        depth = np.where(view.on_floor, self._floor_forward, depth)
        with np.errstate(invalid="ignore"):  # the sky's +inf times negative noise: NaN, not measured either
            depth = depth + rng.standard_normal(depth.shape) * DEPTH_NOISE_PER_M2 * np.square(depth)
            measured = (depth >= DEPTH_MIN) & (depth <= DEPTH_MAX)
        return np.where(measured, np.rint(depth * 1000.0), 0).astype(np.uint16)

    def _view(self, state: WorldState, arena: Arena) -> _View:
        """Per column the horizontal hits, per pixel the surface it sees first."""
        yaw = state.robot_yaw + self._column_angles
        hits = cast(state, yaw, arena.width, arena.depth)
        h = self.mount_height
        with np.errstate(invalid="ignore"):
            z_object = h + self._slopes * (hits.object_distance * self._cos)
        z_wall = h + self._slopes * (hits.wall_distance * self._cos)
        on_object = (z_object >= 0) & (z_object <= OBJECT_HEIGHT)
        on_wall = ~on_object & (z_wall >= 0) & (z_wall <= arena.wall_height)
        on_floor = ~on_object & ~on_wall & (self._slopes < 0)
        return _View(yaw, hits, on_object, on_wall, on_floor)

    def _floor(self, state: WorldState) -> np.ndarray:
        """Checker-tiled floor colour for every pixel (only floor pixels are used)."""
        light = state.lighting
        c, s = math.cos(state.robot_yaw), math.sin(state.robot_yaw)
        x = state.robot_xy[0] + c * self._floor_forward - s * self._floor_left
        y = state.robot_xy[1] + s * self._floor_forward + c * self._floor_left
        tile = (np.floor(x * (1 / FLOOR_TILE)) + np.floor(y * (1 / FLOOR_TILE))) % 2
        shade = (light.ambient + 0.6 * light.diffuse) * (0.88 + 0.12 * tile) * self._floor_falloff
        return FLOOR_RGB.astype(np.float32) * shade[..., None]
