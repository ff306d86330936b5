"""Launch the vbl ``localize`` node with its parameters file.

    ros2 launch vbl localize.launch.py map:=/data/maps/robotcar image_topic:=/camera/image_raw

Every parameter comes from ``params_file`` (default: the package's ``config/localize.yaml``, which
states the node's own defaults). The arguments ``map``, ``model``, ``device``, ``image_transport``,
``image_qos`` and ``inference_threads`` are empty by default and override the file only when given.

The node's process (and only it) gets the Fast DDS profile for large camera frames
(``fastdds_profile``; default: ``$FASTDDS_DEFAULT_PROFILES_FILE`` when set, else the package's
``config/fastdds_large_frames.xml``; docs/ros_interface.md, "Large camera frames").

The launch ends with the node, and with an error when the node failed (an invalid parameter, a
missing map): ``ros2 launch`` then exits non-zero instead of running on without it.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.events.process import ProcessExited
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

#: Launch arguments that become node parameters when given (empty: the params file's value), with
#: their parameter types. The node checks every value and names a wrong one.
OVERRIDES = {
    "map": str,
    "model": str,
    "device": str,
    "image_transport": str,
    "image_qos": str,
    "inference_threads": int,
}


def end_launch(event: ProcessExited, context: LaunchContext) -> list[Shutdown]:
    """The node exited: end the launch, with an error (non-zero exit of ``ros2 launch``) when it failed."""
    if event.returncode != 0:
        raise RuntimeError(f"the localize node exited with code {event.returncode}; its log above says why")
    return [Shutdown(reason="the localize node exited")]


def localize_node(context: LaunchContext) -> list[Node]:
    """The node, with only the arguments that were given on top of ``params_file``."""
    overrides = {}
    for name, value_type in OVERRIDES.items():
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            overrides[name] = ParameterValue(value, value_type=value_type)
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    return [
        Node(
            package="vbl",
            executable="localize",
            name="localize",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", LaunchConfiguration("image_topic")),
                ("odometry", LaunchConfiguration("odometry_topic")),
            ],
            additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else None,
            on_exit=end_launch,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("vbl"), "config", "localize.yaml"])
    default_profile = EnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        default_value=PathJoinSubstitution([FindPackageShare("vbl"), "config", "fastdds_large_frames.xml"]),
    )
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=default_params,
            description="YAML file with the localize node's parameters (ros__parameters).",
        ),
        DeclareLaunchArgument(
            "map",
            default_value="",
            description="Keyframe map folder written by `vbl build-map`; empty = the params file's "
            "value (no map: loop-closure candidates among this session's keyframes only).",
        ),
        DeclareLaunchArgument(
            "model",
            default_value="",
            description="A model file (`vbl init-model`); empty = the params file's value (the "
            "packaged default model). It must be the model the map was built with.",
        ),
        DeclareLaunchArgument(
            "device",
            default_value="",
            description="Where the descriptor network runs: auto, cpu or cuda; empty = the params "
            "file's value.",
        ),
        DeclareLaunchArgument(
            "inference_threads",
            default_value="",
            description="CPU threads of the descriptor network (an integer >= 1); empty = the params "
            "file's value (1, the fastest on a computer shared with other processes).",
        ),
        DeclareLaunchArgument(
            "image_topic",
            default_value="/camera/image_raw",
            description="Camera topic the node's `image` input is remapped to.",
        ),
        DeclareLaunchArgument(
            "image_transport",
            default_value="",
            description="Type on image_topic: raw (sensor_msgs/Image) or compressed "
            "(sensor_msgs/CompressedImage); empty = the params file's value.",
        ),
        DeclareLaunchArgument(
            "image_qos",
            default_value="",
            description="Reliability of the image subscription: auto (match the publishers), "
            "best_effort or reliable; empty = the params file's value.",
        ),
        DeclareLaunchArgument(
            "odometry_topic",
            default_value="/ins/odometry",
            description="nav_msgs/Odometry topic the `odometry` input is remapped to "
            "(used when the parameter use_odometry is true).",
        ),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=default_profile,
            description="Fast DDS XML profile of the node's process (FASTDDS_DEFAULT_PROFILES_FILE); "
            "default: the one already set, else the package's profile for large camera frames; "
            "empty = the middleware's defaults.",
        ),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=localize_node)])
