"""Planar and 3-D LiDAR from the same 2-D ray caster the camera uses.

Both sensors sit on the robot's vertical axis (base_link x = y = 0) at their own
heights, so a beam's horizontal hits are those of `raycast.cast`. A LaserScan reports
"no return" as +inf (REP 117); the point cloud omits such beams (height 1, is_dense).
Intensities are per-surface reflectivities: floor 30, walls 100, object 200.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2vae_ros.sim.raycast import cast
from m2vae_ros.sim.world import OBJECT_HEIGHT, Arena, WorldState

FLOOR_INTENSITY, WALL_INTENSITY, OBJECT_INTENSITY = 30.0, 100.0, 200.0

# PCL's PointXYZI layout plus a ring: x, y, z, 4 padding bytes, intensity, ring, padded to 32.
POINT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "intensity", "ring"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
        "offsets": [0, 4, 8, 16, 20],
        "itemsize": 32,
    }
)


@dataclass(frozen=True)
class PlanarLidar:
    """A 360° scanner; beam i points at angle_min + i·2π/beams in the `laser` frame."""

    beams: int = 360
    angle_min: float = -math.pi
    range_min: float = 0.1
    range_max: float = 8.0
    noise_std: float = 0.01
    mount_height: float = 0.2

    @property
    def angle_increment(self) -> float:
        return math.tau / self.beams

    def scan(
        self, state: WorldState, arena: Arena, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ranges, intensities) as float32 arrays of length `beams`; no return is +inf."""
        angles = self.angle_min + np.arange(self.beams) * self.angle_increment
        hits = cast(state, state.robot_yaw + angles, arena.width, arena.depth)
        on_object = hits.object_distance < hits.wall_distance
        ranges = np.minimum(hits.object_distance, hits.wall_distance) + rng.normal(
            0.0, self.noise_std, self.beams
        )
        valid = (ranges >= self.range_min) & (ranges <= self.range_max)
        intensities = np.where(on_object, OBJECT_INTENSITY, WALL_INTENSITY)
        return (
            np.where(valid, ranges, np.inf).astype(np.float32),
            np.where(valid, intensities, 0.0).astype(np.float32),
        )


@dataclass(frozen=True)
class SpinningLidar:
    """A multi-ring LiDAR: `rings` elevations evenly over [fov_down, fov_up], `steps` azimuths."""

    rings: int = 16
    steps: int = 360
    fov_down: float = math.radians(-15.0)
    fov_up: float = math.radians(15.0)
    range_min: float = 0.1
    range_max: float = 8.0
    noise_std: float = 0.01
    mount_height: float = 0.4

    def points(self, state: WorldState, arena: Arena, rng: np.random.Generator) -> np.ndarray:
        """Returns as a POINT_DTYPE array in the `lidar` frame, azimuth-major, ring 0 lowest."""
        azimuths = -math.pi + np.arange(self.steps) * (math.tau / self.steps)
        hits = cast(state, state.robot_yaw + azimuths, arena.width, arena.depth)
        slopes = np.tan(np.linspace(self.fov_down, self.fov_up, self.rings))[None, :]  # (1, rings)
        h = self.mount_height
        object_distance, wall_distance = hits.object_distance[:, None], hits.wall_distance[:, None]
        with np.errstate(invalid="ignore"):
            z_object = h + slopes * object_distance
        z_wall = h + slopes * wall_distance
        on_object = (z_object >= 0) & (z_object <= OBJECT_HEIGHT)
        on_wall = ~on_object & (z_wall >= 0) & (z_wall <= arena.wall_height)
        on_floor = ~on_object & ~on_wall & (slopes < 0)
        floor_distance = h / np.maximum(-slopes, 1e-9)
        horizontal = np.where(on_object, object_distance, np.where(on_wall, wall_distance, floor_distance))
        ray_length = horizontal * np.sqrt(1.0 + slopes**2)
        ray_length = ray_length + rng.normal(0.0, self.noise_std, ray_length.shape)
        valid = (
            (on_object | on_wall | on_floor) & (ray_length >= self.range_min) & (ray_length <= self.range_max)
        )
        horizontal = ray_length / np.sqrt(1.0 + slopes**2)

        ring = np.broadcast_to(np.arange(self.rings, dtype=np.uint16)[None, :], valid.shape)
        azimuth = np.broadcast_to(azimuths[:, None], valid.shape)
        slope = np.broadcast_to(slopes, valid.shape)
        intensity = np.where(on_object, OBJECT_INTENSITY, np.where(on_wall, WALL_INTENSITY, FLOOR_INTENSITY))
        d = horizontal[valid]
        cloud = np.zeros(d.shape[0], dtype=POINT_DTYPE)
        cloud["x"] = d * np.cos(azimuth[valid])
        cloud["y"] = d * np.sin(azimuth[valid])
        cloud["z"] = d * slope[valid]
        cloud["intensity"] = intensity[valid]
        cloud["ring"] = ring[valid]
        return cloud
