"""Launch the vbl ``localize`` node with its parameters file.

    ros2 launch vbl localize.launch.py map:=/data/maps/robotcar image_topic:=/stereo/centre/image_raw/compressed

The arguments ``map``, ``model``, ``device`` and ``image_transport`` override the values in
``params_file``; every other parameter comes from that file (default: the package's
``config/localize.yaml``).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("vbl"), "config", "localize.yaml"])
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=default_params,
            description="YAML file with the localize node's parameters (ros__parameters).",
        ),
        DeclareLaunchArgument(
            "map",
            default_value="",
            description="Keyframe map folder written by `vbl build-map`; empty = no map "
            "(loop-closure candidates among this session's keyframes only).",
        ),
        DeclareLaunchArgument(
            "model",
            default_value="",
            description="Model file written by `vbl train`; empty = the packaged default model. "
            "It must be the model the map was built with.",
        ),
        DeclareLaunchArgument(
            "device",
            default_value="auto",
            choices=["auto", "cpu", "cuda"],
            description="Where the descriptor network runs.",
        ),
        DeclareLaunchArgument(
            "image_topic",
            default_value="/stereo/centre/image_raw/compressed",
            description="Camera topic the node's `image` input is remapped to.",
        ),
        DeclareLaunchArgument(
            "image_transport",
            default_value="compressed",
            choices=["raw", "compressed"],
            description="Type on image_topic: raw (sensor_msgs/Image) or compressed "
            "(sensor_msgs/CompressedImage).",
        ),
        DeclareLaunchArgument(
            "odometry_topic",
            default_value="/ins/odometry",
            description="nav_msgs/Odometry topic the `odometry` input is remapped to "
            "(used when the parameter use_odometry is true).",
        ),
    ]
    node = Node(
        package="vbl",
        executable="localize",
        name="localize",
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "map": ParameterValue(LaunchConfiguration("map"), value_type=str),
                "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "image_transport": ParameterValue(LaunchConfiguration("image_transport"), value_type=str),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("odometry", LaunchConfiguration("odometry_topic")),
        ],
    )
    return LaunchDescription([*arguments, node])
