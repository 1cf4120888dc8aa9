"""Simulated sensor data → rosbags message objects of the ROS 2 Kilted typestore.

Messages are built with rosbags' own classes (not rclpy) so a recording can be made
without a ROS installation; `serialize` turns them into the CDR bytes a bag stores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from m2vae_ros.sim.camera import Camera
from m2vae_ros.sim.lidar import POINT_DTYPE, PlanarLidar, SpinningLidar
from m2vae_ros.sim.world import OBJECT_HALF_WIDTH, OBJECT_HEIGHT, WorldState

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types

# REP 103: images live in an optical frame (z forward, x right, y down).
CAMERA_FRAME, SCAN_FRAME, POINTS_FRAME = "camera_optical_frame", "laser", "lidar"
ROBOT_FRAME, MAP_FRAME = "base_link", "map"
JPEG_QUALITY = 90
MARKER_LIFETIME_NS = 200_000_000  # two ground-truth periods: stale markers vanish in rviz

_EMPTY_BYTES = np.zeros(0, dtype=np.uint8)
_POINT_FIELDS = [
    T["sensor_msgs/msg/PointField"](name=name, offset=POINT_DTYPE.fields[name][1], datatype=datatype, count=1)
    for name, datatype in (("x", 7), ("y", 7), ("z", 7), ("intensity", 7), ("ring", 4))  # FLOAT32, UINT16
]


def serialize(msg: object) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def header(stamp_ns: int, frame_id: str) -> object:
    stamp = T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image(stamp_ns: int, rgb: np.ndarray) -> object:
    return _camera_image(stamp_ns, rgb, "rgb8")


def depth_image(stamp_ns: int, millimetres: np.ndarray) -> object:
    """16UC1 in millimetres, 0 = no data (REP 118), in the colour camera's frame: registered to it."""
    return _camera_image(stamp_ns, np.asarray(millimetres, "<u2")[:, :, None], "16UC1")


def _camera_image(stamp_ns: int, pixels: np.ndarray, encoding: str) -> object:
    """An Image of (height, width, channels) little-endian `pixels`, rows unpadded."""
    height, width, channels = pixels.shape
    return T["sensor_msgs/msg/Image"](
        header=header(stamp_ns, CAMERA_FRAME),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * pixels.itemsize,
        data=np.ascontiguousarray(pixels).reshape(-1).view(np.uint8),
    )


def compressed_depth_image(stamp_ns: int, millimetres: np.ndarray) -> object:
    """16UC1 as image_transport's `compressedDepth` plugin publishes it: a 12-byte ConfigHeader (its
    inverse-depth parameters unused for 16 bits) before a PNG of the millimetres."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(millimetres, np.uint16))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG image")
    return T["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, CAMERA_FRAME), format="16UC1; compressedDepth png",
        data=np.concatenate([np.zeros(12, np.uint8), png.reshape(-1)]),
    )


def compressed_image(stamp_ns: int, rgb: np.ndarray) -> object:
    """JPEG as image_transport's `compressed` plugin publishes it (format names both encodings)."""
    ok, jpeg = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG image")
    return T["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, CAMERA_FRAME), format="rgb8; jpeg compressed bgr8", data=jpeg.reshape(-1)
    )


def camera_info(stamp_ns: int, camera: Camera) -> object:
    """The ideal pinhole the renderer casts rays through, for rviz and image_proc.

    ROS puts pixel centres at integer coordinates; the renderer's rays pass through
    pixel centres around a middle at (width/2, height/2) in edge coordinates, so the
    principal point is half a pixel less.
    """
    f = camera.focal
    cx, cy = camera.width / 2 - 0.5, camera.height / 2 - 0.5
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, CAMERA_FRAME),
        height=camera.height,
        width=camera.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]),
        r=np.eye(3).reshape(-1),
        p=np.array([f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def laser_scan(
    stamp_ns: int, lidar: PlanarLidar, ranges: np.ndarray, intensities: np.ndarray, rate: float
) -> object:
    return T["sensor_msgs/msg/LaserScan"](
        header=header(stamp_ns, SCAN_FRAME),
        angle_min=lidar.angle_min,
        angle_max=lidar.angle_min + (lidar.beams - 1) * lidar.angle_increment,
        angle_increment=lidar.angle_increment,
        time_increment=0.0,  # every beam is cast from the world at header.stamp: nothing to deskew
        scan_time=1.0 / rate,
        range_min=lidar.range_min,
        range_max=lidar.range_max,
        ranges=ranges,
        intensities=intensities,
    )


def point_cloud(stamp_ns: int, points: np.ndarray) -> object:
    """Unorganised cloud (height 1) without "no return" points, hence is_dense."""
    return T["sensor_msgs/msg/PointCloud2"](
        header=header(stamp_ns, POINTS_FRAME),
        height=1,
        width=points.shape[0],
        fields=_POINT_FIELDS,
        is_bigendian=False,
        point_step=POINT_DTYPE.itemsize,
        row_step=POINT_DTYPE.itemsize * points.shape[0],
        data=points.view(np.uint8).reshape(-1),
        is_dense=True,
    )


def object_marker(stamp_ns: int, state: WorldState) -> object:
    """Ground truth label: ns = class name, id = class index, pose in the robot frame."""
    cls = state.object_class
    marker = T["visualization_msgs/msg/Marker"]
    x, y, yaw = state.object_in_robot_frame()
    return marker(
        header=header(stamp_ns, ROBOT_FRAME),
        ns=cls.name,
        id=cls.index,
        type=marker.CYLINDER if cls.shape == "cylinder" else marker.CUBE,
        action=marker.ADD,
        pose=_pose(x, y, OBJECT_HEIGHT / 2, yaw),
        scale=T["geometry_msgs/msg/Vector3"](
            x=2 * OBJECT_HALF_WIDTH, y=2 * OBJECT_HALF_WIDTH, z=OBJECT_HEIGHT
        ),
        color=T["std_msgs/msg/ColorRGBA"](r=cls.rgb[0], g=cls.rgb[1], b=cls.rgb[2], a=1.0),
        lifetime=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=MARKER_LIFETIME_NS),
        frame_locked=False,
        points=[],
        colors=[],
        texture_resource="",
        texture=T["sensor_msgs/msg/CompressedImage"](header=header(0, ""), format="", data=_EMPTY_BYTES),
        uv_coordinates=[],
        text="",
        mesh_resource="",
        mesh_file=T["visualization_msgs/msg/MeshFile"](filename="", data=_EMPTY_BYTES),
        mesh_use_embedded_materials=False,
    )


def sensor_transforms(stamp_ns: int, camera: Camera, scanner: PlanarLidar, lidar: SpinningLidar) -> object:
    """/tf_static: each sensor above base_link (REP 105: on the floor under the robot's centre).

    The camera's optical frame turns x forward, z up into z forward, y down: rpy (−π/2, 0, −π/2).
    """
    mounts = (
        (SCAN_FRAME, scanner.mount_height, _yaw_quaternion(0.0)),
        (POINTS_FRAME, lidar.mount_height, _yaw_quaternion(0.0)),
        (CAMERA_FRAME, camera.mount_height, T["geometry_msgs/msg/Quaternion"](x=-0.5, y=0.5, z=-0.5, w=0.5)),
    )
    return T["tf2_msgs/msg/TFMessage"](
        transforms=[_transform(stamp_ns, ROBOT_FRAME, frame, 0.0, 0.0, height, rotation)
                    for frame, height, rotation in mounts]
    )


def robot_transform(stamp_ns: int, state: WorldState) -> object:
    """/tf: map → base_link, the ground-truth pose as a localisation would publish it."""
    x, y = state.robot_xy
    transform = _transform(stamp_ns, MAP_FRAME, ROBOT_FRAME, x, y, 0.0, _yaw_quaternion(state.robot_yaw))
    return T["tf2_msgs/msg/TFMessage"](transforms=[transform])


def _transform(
    stamp_ns: int, parent: str, child: str, x: float, y: float, z: float, rotation: object
) -> object:
    translation = T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)
    return T["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns, parent),
        child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](translation=translation, rotation=rotation),
    )


def robot_pose(stamp_ns: int, state: WorldState) -> object:
    """The robot in the map frame, whose origin is the arena's corner (0, 0)."""
    return T["geometry_msgs/msg/PoseStamped"](
        header=header(stamp_ns, MAP_FRAME), pose=_pose(*state.robot_xy, 0.0, state.robot_yaw)
    )


def _pose(x: float, y: float, z: float, yaw: float) -> object:
    return T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=x, y=y, z=z), orientation=_yaw_quaternion(yaw)
    )


def _yaw_quaternion(yaw: float) -> object:
    return T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
