"""Replaying a rosbag2 bag over DDS, as ``ros2 bag play`` would, from inside a Python process.

Messages are published in their serialized CDR form (exactly the bytes stored in the bag), so the
subscriber sees what a robot's camera driver would have sent.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from vbl_ros.bags import open_reader
from vbl_ros.errors import MissingDataError

__all__ = ["message_class", "replay_bag"]


def message_class(type_name: str) -> type:
    """The rclpy message class of a ROS type name such as ``sensor_msgs/msg/Image``."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def replay_bag(
    node: Node,
    bag: Path,
    topics: dict[str, str],
    *,
    rate: float = 1.0,
    qos: QoSProfile = qos_profile_sensor_data,
    on_publish: Callable[[str, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Publish the messages of ``topics`` (bag topic -> published topic) from ``bag`` in bag-time order.

    ``rate`` scales the bag's pace (2.0 plays twice as fast; 0 plays as fast as possible).
    ``on_publish(topic, bag_time_ns)`` is called right after each message goes out. Returns the count.
    """
    with open_reader(bag) as reader:  # a cut-short bag plays up to the cut, a damaged one is a BagError
        connections = [c for c in reader.connections if c.topic in topics]
        missing = sorted(set(topics) - {c.topic for c in connections})
        if missing:
            raise MissingDataError(
                f"{bag}: topic(s) {missing} not in the bag; it has {sorted({c.topic for c in reader.connections})}"
            )
        publishers = {
            c.topic: node.create_publisher(message_class(c.msgtype), topics[c.topic], qos)
            for c in connections
        }
        count = 0
        start_wall: float | None = None
        start_bag = 0
        for connection, bag_time_ns, rawdata in reader.messages(connections=connections):
            if should_stop is not None and should_stop():
                break
            if start_wall is None:
                start_wall, start_bag = time.monotonic(), bag_time_ns
            elif rate > 0:
                due = start_wall + (bag_time_ns - start_bag) / 1e9 / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            publishers[connection.topic].publish(bytes(rawdata))
            count += 1
            if on_publish is not None:
                on_publish(connection.topic, bag_time_ns)
    for publisher in publishers.values():
        node.destroy_publisher(publisher)
    return count
