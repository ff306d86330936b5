"""The ROS 2 layer of vbl: the only subpackage that imports ``rclpy`` and message types.

- :mod:`vbl_ros.ros.messages`: conversions between ROS messages and the core's plain types.
- :mod:`vbl_ros.ros.params`: the node's described parameters and the frozen config built from them.
- :mod:`vbl_ros.ros.localize_node`: the ``localize`` node (console script ``localize``).

Nothing is imported here, so ``import vbl_ros.ros`` stays cheap and works without ROS.
"""

__all__: list[str] = []
