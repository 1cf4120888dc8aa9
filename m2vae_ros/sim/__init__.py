"""Deterministic simulated arena (camera, planar LiDAR, 3-D LiDAR) written as rosbag2 recordings."""
