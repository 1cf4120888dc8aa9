"""Deterministic simulated arena (camera, LiDARs, optional depth camera) written as rosbag2 recordings.

A robot in a walled 6 m × 6 m arena looks at one 0.5 m object per episode — red
cylinder, red box or green cylinder (the M²VAE paper's setting) — on a patrol or an
inspection (`Scenario`), and records, by default:

| topic | type | frame | rate |
| --- | --- | --- | --- |
| /camera/image_raw (or …/compressed) | Image rgb8 (or CompressedImage jpeg) | camera_optical_frame | 30 Hz |
| /camera/camera_info | CameraInfo: pinhole, 60° across, no distortion | camera_optical_frame | 30 Hz |
| /camera/depth/image_raw, --depth | Image 16UC1 mm | camera_optical_frame | 30 Hz |
| /scan | LaserScan, 360 beams from −π, 0.1–8 m, no return = +inf | laser | 10 Hz |
| /points | PointCloud2 x y z intensity (f32) ring (u16), 16 rings ±15°, no returns omitted | lidar | 10 Hz |
| /ground_truth/object | Marker: ns = class name, id = class index, pose | base_link | 10 Hz |
| /ground_truth/robot_pose | PoseStamped, map origin = arena corner | map | 10 Hz |
| /tf | TFMessage map → base_link, the robot pose | map | 10 Hz |
| /tf_static | base_link → laser 0.2 m up, camera_optical_frame 0.3 m, lidar 0.4 m | base_link | once |

The depth image (0.2–10 m, 0 = no data) has the colour image's pixels and stamps, as an
RGB-D camera registers both; with --compressed it is image_transport's compressedDepth PNG
(a CompressedImage on /camera/depth/image_raw/compressedDepth).
The ground truth and /tf share the scan's stamps and keep going through LiDAR dropouts.
base_link lies on the floor under the robot's centre (REP 105).
Modules: world (arena, episodes, trajectory), raycast, camera, lidar, timing (stamps,
jitter, latency, dropouts), messages (rosbags objects), recorder (`simulate`), cli.
"""

from m2vae_ros.drop_window import DropWindow
from m2vae_ros.sim.recorder import SimSummary, Simulation, simulate
from m2vae_ros.sim.timing import SimError, parse_dropout
from m2vae_ros.sim.world import Scenario

__all__ = ["DropWindow", "Scenario", "SimError", "SimSummary", "Simulation", "parse_dropout", "simulate"]
