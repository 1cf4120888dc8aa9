"""2-D ray casting against the arena walls and the object, vectorised over rays.

The camera, the planar LiDAR and the 3-D LiDAR all start from the same horizontal
hits: walls are tall and the object is a vertical prism, so a ray's horizontal
distance to each surface does not depend on its elevation. The sensors then decide
per elevation whether the floor, the object, a wall or nothing is hit first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2vae_ros.sim.world import OBJECT_HALF_WIDTH, WorldState

_TINY = 1e-12


@dataclass(frozen=True)
class Hits:
    """Horizontal distances along each ray (metres) and the surface normals (map frame)."""

    wall_distance: np.ndarray  # (N,), always finite: the robot is inside the arena
    wall_normal: np.ndarray  # (N, 2), pointing into the arena
    object_distance: np.ndarray  # (N,), +inf where the ray misses the object
    object_normal: np.ndarray  # (N, 2), zeros where the ray misses


def cast(state: WorldState, angles: np.ndarray, width: float, depth: float) -> Hits:
    """Cast rays from the robot's position in map-frame directions `angles` (radians)."""
    dx, dy = np.cos(angles), np.sin(angles)
    ox, oy = state.robot_xy
    wall_distance, wall_normal = _walls(ox, oy, dx, dy, width, depth)
    if state.object_class.shape == "cylinder":
        object_distance, object_normal = _cylinder(ox, oy, dx, dy, state.object_xy)
    else:
        object_distance, object_normal = _box(ox, oy, dx, dy, state.object_xy, state.object_yaw)
    return Hits(wall_distance, wall_normal, object_distance, object_normal)


def _walls(
    ox: float, oy: float, dx: np.ndarray, dy: np.ndarray, width: float, depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance from inside the rectangle: the nearer of the x- and y-wall crossings."""
    with np.errstate(divide="ignore"):
        tx = np.where(dx > 0, (width - ox) / np.maximum(dx, _TINY), -ox / np.minimum(dx, -_TINY))
        ty = np.where(dy > 0, (depth - oy) / np.maximum(dy, _TINY), -oy / np.minimum(dy, -_TINY))
    hits_x = tx <= ty
    normal = np.stack([np.where(hits_x, -np.sign(dx), 0.0), np.where(hits_x, 0.0, -np.sign(dy))], axis=1)
    return np.minimum(tx, ty), normal


def _cylinder(
    ox: float, oy: float, dx: np.ndarray, dy: np.ndarray, centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    cx, cy = ox - centre[0], oy - centre[1]
    b = cx * dx + cy * dy
    disc = b * b - (cx * cx + cy * cy - OBJECT_HALF_WIDTH**2)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    hit = (disc >= 0) & (t > 0)
    distance = np.where(hit, t, np.inf)
    safe_t = np.where(hit, t, 0.0)
    normal = np.stack([cx + safe_t * dx, cy + safe_t * dy], axis=1) / OBJECT_HALF_WIDTH
    normal[~hit] = 0.0
    return distance, normal


def _box(
    ox: float, oy: float, dx: np.ndarray, dy: np.ndarray, centre: tuple[float, float], yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    """Slab test in the box frame; the face entered last (largest entry t) is the one hit."""
    c, s = np.cos(yaw), np.sin(yaw)
    px, py = ox - centre[0], oy - centre[1]
    lx, ly = c * px + s * py, -s * px + c * py
    ldx, ldy = c * dx + s * dy, -s * dx + c * dy
    ldx = np.where(np.abs(ldx) < _TINY, _TINY, ldx)
    ldy = np.where(np.abs(ldy) < _TINY, _TINY, ldy)
    h = OBJECT_HALF_WIDTH
    t1x, t2x = (-h - lx) / ldx, (h - lx) / ldx
    t1y, t2y = (-h - ly) / ldy, (h - ly) / ldy
    enter_x, enter_y = np.minimum(t1x, t2x), np.minimum(t1y, t2y)
    enter = np.maximum(enter_x, enter_y)
    leave = np.minimum(np.maximum(t1x, t2x), np.maximum(t1y, t2y))
    hit = (leave >= enter) & (enter > 0)
    distance = np.where(hit, enter, np.inf)
    face_x = enter_x >= enter_y
    nx_local = np.where(face_x, -np.sign(ldx), 0.0)
    ny_local = np.where(face_x, 0.0, -np.sign(ldy))
    normal = np.stack([c * nx_local - s * ny_local, s * nx_local + c * ny_local], axis=1)
    normal[~hit] = 0.0
    return distance, normal
