"""Launch the M²VAE fusion node: `ros2 launch m2vae_ros fusion.launch.py model_path:=RUN_DIR/model`.

Parameters come from `params_file` (this package's config/fusion.yaml by default). The
launch arguments model_path, and device and use_sim_time when given, override it; left
out, device and use_sim_time keep the params file's values.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

# Launch arguments that override params_file only when given: a default here would
# silently replace what the user's params file says.
OPTIONAL_OVERRIDES = {"device": str, "use_sim_time": bool}


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("m2vae_ros"), "config", "fusion.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameters file for the m2vae_fusion node"),
        DeclareLaunchArgument("model_path", description="trained model directory (model.yaml + weights)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true: follow /clock (default: as params_file says)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:<i> (default: as params_file says)"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=fusion_node)])


def fusion_node(context: LaunchContext) -> list[Node]:
    """The node, with the launch arguments the user gave laid over params_file."""
    # value_type=str: untyped, launch would YAML-parse the text, and a directory named 2024 is an int.
    overrides = {"model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str)}
    for name, value_type in OPTIONAL_OVERRIDES.items():
        if LaunchConfiguration(name).perform(context):
            overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=value_type)
    return [Node(
        package="m2vae_ros",
        executable="fusion_node",
        name="m2vae_fusion",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )]
