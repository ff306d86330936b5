"""The ROS 2 layer of vbl: the only subpackage that imports ``rclpy`` and message types.

- :mod:`vbl_ros.ros.messages`: conversions between ROS messages and the core's plain types.
- :mod:`vbl_ros.ros.params`: the node's described parameters and the frozen config built from them.
- :mod:`vbl_ros.ros.localize_node`: the ``localize`` node (console script ``localize``).
- :mod:`vbl_ros.ros.log_bridge`: the core's ``logging`` records to the node's ROS logger.
- :mod:`vbl_ros.ros.middleware`: the node process's Fast DDS profile for large camera frames.
- :mod:`vbl_ros.ros.process`: starting the node as its own process, as ``ros2 launch`` would.
- :mod:`vbl_ros.ros.collector`: the one collector of the node's outputs over DDS (demo, tests, benchmarks).
- :mod:`vbl_ros.ros.replay`: replaying a bag over DDS; :mod:`vbl_ros.ros.demo`: ``vbl demo``.

Nothing is imported here, so ``import vbl_ros.ros`` stays cheap and works without ROS.
"""

__all__: list[str] = []
