"""Launch the M²VAE fusion node: `ros2 launch m2vae_ros fusion.launch.py model_path:=RUN_DIR/model`.

Parameters come from `params_file` (this package's config/fusion.yaml by default); the
launch arguments model_path, use_sim_time and device override it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("m2vae_ros"), "config", "fusion.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file for the m2vae_fusion node"),
        DeclareLaunchArgument("model_path", description="trained model directory (model.yaml + weights)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:<i>"),
    ]
    fusion_node = Node(
        package="m2vae_ros",
        executable="fusion_node",
        name="m2vae_fusion",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model_path": LaunchConfiguration("model_path"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                "device": LaunchConfiguration("device"),
            },
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    return LaunchDescription([*arguments, fusion_node])
