"""The arena, its one object per episode and the robot's trajectory, as a function of time.

The paper's setting: a small robot in a walled arena looks at one of three objects
(red cylinder, red box, green cylinder). The camera tells red from green and round
from flat; the LiDAR sees shape and distance but no colour, so each sensor alone is
ambiguous in a different way and fusion has something to gain.

Everything here is a pure function of (seed, time): each episode draws its own numpy
Generator from ``SeedSequence([seed, EPISODE_STREAM, episode])``, so a recording does
not depend on wall time, on how long it is, or on which sensors were dropped.

Episodes (``episode_seconds`` long, 15 s by default) each place one object at a random
pose. Classes come in shuffled blocks of three, so any recording of 3·k episodes holds
every class exactly k times. Within an episode the robot moves between keyframes
(every ``KEYFRAME_SECONDS``) given in polar coordinates around the object — distance
and angle around the object — and the object's bearing in the robot frame is
keyframed as well: mostly inside the camera's field of view, sometimes far outside.
Smoothstep interpolation between keyframes keeps position and heading smooth; every
keyframe segment is checked to stay inside the arena.

A `Scenario` sets how far the robot strays and how often it looks away. The default
patrol (0.6–4 m, looks away at 15 % of keyframes) gives the camera moments without the
object, which is what the fusion demo is about; an inspection (e.g. ≤ 2.5 m, never
looking away) keeps the object resolvable by both sensors, which is what a
classification benchmark needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CLASS_STREAM = 0
EPISODE_STREAM = 1
KEYFRAME_SECONDS = 2.5
EPISODE_SECONDS = 15.0  # the default: one object, its pose and lighting, for this long
MAX_EPISODE_SECONDS = 86_400.0  # an episode's keyframes are drawn up front: bounded, and never inf
OBJECT_HEIGHT = 0.5
# Cylinder radius, half the box side: a 0.5 m bin or barrel spans 16 beams of a 1° scan at
# 1.8 m, enough for its outline (arc vs. straight faces) to stand out of 1 cm range noise.
OBJECT_HALF_WIDTH = 0.25
ROBOT_MARGIN = 0.3  # keep the robot centre this far from the walls
OBJECT_MARGIN = 1.0  # and the object this far, so the robot can circle it
MIN_DISTANCE = 0.6  # robot centre to object centre; keeps the camera from touching the object
MAX_DISTANCE = 4.0  # the 6 m arena's reach: farther keyframes seldom fit inside it
IN_VIEW_BEARING = 0.35  # rad; the default camera sees ±0.52 rad


@dataclass(frozen=True)
class ObjectClass:
    """One of the three objects: its label fields and how it looks."""

    index: int
    name: str
    shape: str  # "cylinder" or "box"
    rgb: tuple[float, float, float]


OBJECT_CLASSES = (
    ObjectClass(0, "red_cylinder", "cylinder", (0.80, 0.08, 0.06)),
    ObjectClass(1, "red_box", "box", (0.80, 0.08, 0.06)),
    ObjectClass(2, "green_cylinder", "cylinder", (0.10, 0.65, 0.12)),
)


@dataclass(frozen=True)
class Scenario:
    """How the robot watches each episode's object.

    `max_distance` bounds the robot's distance to the object (from MIN_DISTANCE);
    `look_away` is the probability that a keyframe turns the object out of the
    camera's view (bearing 0.8–2.5 rad) instead of inside it (±IN_VIEW_BEARING).
    """

    max_distance: float = MAX_DISTANCE
    look_away: float = 0.15

    def __post_init__(self) -> None:
        if not MIN_DISTANCE < self.max_distance <= MAX_DISTANCE:
            raise ValueError(
                f"max_distance must be in ({MIN_DISTANCE}, {MAX_DISTANCE}] m, got {self.max_distance}"
            )
        if not 0.0 <= self.look_away <= 1.0:
            raise ValueError(f"look_away must be a probability in [0, 1], got {self.look_away}")


@dataclass(frozen=True)
class Arena:
    """A walled rectangle [0, width] × [0, depth] in the map frame; walls are `wall_height` tall."""

    width: float = 6.0
    depth: float = 6.0
    wall_height: float = 2.0


@dataclass(frozen=True)
class Lighting:
    """Per-episode light: ambient level, diffuse strength, horizontal direction the light comes from."""

    ambient: float
    diffuse: float
    azimuth: float


@dataclass(frozen=True)
class WorldState:
    """Everything a sensor needs at one instant (map frame, metres and radians)."""

    episode: int
    object_class: ObjectClass
    object_xy: tuple[float, float]
    object_yaw: float
    robot_xy: tuple[float, float]
    robot_yaw: float
    lighting: Lighting

    def object_in_robot_frame(self) -> tuple[float, float, float]:
        """(x, y, yaw) of the object seen from the robot: x forward, y left."""
        dx = self.object_xy[0] - self.robot_xy[0]
        dy = self.object_xy[1] - self.robot_xy[1]
        c, s = math.cos(self.robot_yaw), math.sin(self.robot_yaw)
        yaw = math.remainder(self.object_yaw - self.robot_yaw, math.tau)
        return c * dx + s * dy, -s * dx + c * dy, yaw


@dataclass(frozen=True)
class _Episode:
    object_class: ObjectClass
    object_xy: tuple[float, float]
    object_yaw: float
    lighting: Lighting
    distance: np.ndarray  # per keyframe
    angle: np.ndarray  # robot position angle around the object, per keyframe
    bearing: np.ndarray  # object bearing in the robot frame, per keyframe


class World:
    """Deterministic arena scenario: ``state(t)`` for any t ≥ 0 seconds from the start."""

    def __init__(
        self,
        seed: int,
        *,
        episode_seconds: float = EPISODE_SECONDS,
        scenario: Scenario | None = None,
        arena: Arena | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be ≥ 0, got {seed}")
        if not KEYFRAME_SECONDS <= episode_seconds <= MAX_EPISODE_SECONDS:
            raise ValueError(f"episode_seconds must be between {KEYFRAME_SECONDS} and {MAX_EPISODE_SECONDS} "
                             f"(a day), got {episode_seconds}")
        self.seed = seed
        self.episode_seconds = episode_seconds
        self.scenario = scenario or Scenario()
        self.arena = arena or Arena()
        self._keyframes = math.ceil(episode_seconds / KEYFRAME_SECONDS) + 1
        self._episode = lru_cache(maxsize=4)(self._make_episode)

    def state(self, t: float) -> WorldState:
        if t < 0:
            raise ValueError(f"time must be ≥ 0, got {t}")
        index = int(t // self.episode_seconds)
        ep = self._episode(index)
        u = (t - index * self.episode_seconds) / KEYFRAME_SECONDS
        k = min(int(u), self._keyframes - 2)
        w = _smoothstep(u - k)
        distance = ep.distance[k] + w * (ep.distance[k + 1] - ep.distance[k])
        angle = ep.angle[k] + w * (ep.angle[k + 1] - ep.angle[k])
        bearing = ep.bearing[k] + w * (ep.bearing[k + 1] - ep.bearing[k])
        ox, oy = ep.object_xy
        rx, ry = ox + distance * math.cos(angle), oy + distance * math.sin(angle)
        # The robot at angle `angle` around the object sees it in direction angle + π.
        yaw = math.remainder(angle + math.pi - bearing, math.tau)
        return WorldState(index, ep.object_class, ep.object_xy, ep.object_yaw, (rx, ry), yaw, ep.lighting)

    def _make_episode(self, index: int) -> _Episode:
        block = np.random.default_rng([self.seed, CLASS_STREAM, index // 3]).permutation(3)
        rng = np.random.default_rng([self.seed, EPISODE_STREAM, index])
        a = self.arena
        ox = float(rng.uniform(OBJECT_MARGIN, a.width - OBJECT_MARGIN))
        oy = float(rng.uniform(OBJECT_MARGIN, a.depth - OBJECT_MARGIN))
        lighting = Lighting(
            ambient=float(rng.uniform(0.35, 0.55)),
            diffuse=float(rng.uniform(0.35, 0.6)),
            azimuth=float(rng.uniform(-math.pi, math.pi)),
        )
        object_yaw = float(rng.uniform(-math.pi, math.pi))
        distance, angle = self._polar_keyframes(rng, (ox, oy))
        in_view = rng.uniform(-IN_VIEW_BEARING, IN_VIEW_BEARING, self._keyframes)
        away = rng.choice([-1.0, 1.0], self._keyframes) * rng.uniform(0.8, 2.5, self._keyframes)
        bearing = np.where(rng.random(self._keyframes) < self.scenario.look_away, away, in_view)
        return _Episode(
            OBJECT_CLASSES[block[index % 3]], (ox, oy), object_yaw, lighting, distance, angle, bearing
        )

    def _polar_keyframes(
        self, rng: np.random.Generator, centre: tuple[float, float]
    ) -> tuple[np.ndarray, ...]:
        """Robot keyframes (distance, angle) around the object whose connecting arcs stay in the arena."""
        distance = [0.0] * self._keyframes
        angle = [0.0] * self._keyframes
        while True:
            distance[0] = float(rng.uniform(MIN_DISTANCE, self.scenario.max_distance))
            angle[0] = float(rng.uniform(-math.pi, math.pi))
            if self._segment_inside(centre, distance[0], angle[0], distance[0], angle[0]):
                break
        for k in range(1, self._keyframes):
            distance[k], angle[k] = distance[k - 1], angle[k - 1]  # stand still if nothing fits
            for _ in range(100):
                d = float(rng.uniform(MIN_DISTANCE, self.scenario.max_distance))
                # At most ~1.5 m of arc per keyframe: a small robot, not a race car.
                step = min(1.2, 1.5 / max(d, distance[k - 1]))
                a = angle[k - 1] + float(rng.uniform(-step, step))
                if self._segment_inside(centre, distance[k - 1], angle[k - 1], d, a):
                    distance[k], angle[k] = d, a
                    break
        return np.array(distance), np.array(angle)

    def _segment_inside(
        self, centre: tuple[float, float], d0: float, a0: float, d1: float, a1: float
    ) -> bool:
        w = _smoothstep(np.linspace(0.0, 1.0, 12))
        d = d0 + w * (d1 - d0)
        a = a0 + w * (a1 - a0)
        x = centre[0] + d * np.cos(a)
        y = centre[1] + d * np.sin(a)
        m = ROBOT_MARGIN
        return bool(np.all((x >= m) & (x <= self.arena.width - m) & (y >= m) & (y <= self.arena.depth - m)))


def _smoothstep(u: float | np.ndarray) -> float | np.ndarray:
    """3u² − 2u³: zero velocity at both keyframes, so the path has no kinks."""
    return u * u * (3.0 - 2.0 * u)
