"""Deterministic simulated arena (camera, planar LiDAR, 3-D LiDAR) written as rosbag2 recordings.

A robot in a walled 6 m × 6 m arena looks at one 0.5 m object per episode — red
cylinder, red box or green cylinder (the M²VAE paper's setting) — on a patrol or an
inspection (`Scenario`), and records, by default:

| topic | type | frame | rate |
| --- | --- | --- | --- |
| /camera/image_raw (or …/compressed) | Image rgb8 (or CompressedImage jpeg) | camera_optical_frame | 30 Hz |
| /camera/camera_info | CameraInfo: pinhole, 60° across, no distortion | camera_optical_frame | 30 Hz |
| /scan | LaserScan, 360 beams from −π, 0.1–8 m, no return = +inf | laser | 10 Hz |
| /points | PointCloud2 x y z intensity (f32) ring (u16), 16 rings ±15°, no returns omitted | lidar | 10 Hz |
| /ground_truth/object | Marker: ns = class name, id = class index, pose | base_link | 10 Hz |
| /ground_truth/robot_pose | PoseStamped, map origin = arena corner | map | 10 Hz |

The ground truth shares the scan's stamps and keeps going through LiDAR dropouts.
Modules: world (arena, episodes, trajectory), raycast, camera, lidar, timing (stamps,
jitter, latency, dropouts), messages (rosbags objects), recorder (`simulate`), cli.
"""

from m2vae_ros.drop_window import DropWindow
from m2vae_ros.sim.recorder import SimSummary, Simulation, simulate
from m2vae_ros.sim.timing import SimError, parse_dropout
from m2vae_ros.sim.world import Scenario

__all__ = ["DropWindow", "Scenario", "SimError", "SimSummary", "Simulation", "parse_dropout", "simulate"]
