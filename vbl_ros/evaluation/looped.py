"""Evaluation data for loop closure: one bag that drives a route twice, made from two drives of it.

:func:`write_looped_bag` writes the camera, odometry and frame of ``first`` then those of ``second``
into ONE bag with continuous stamps (``second`` shifted to start ``gap_s`` after ``first`` ends, the
drive back to the start not recorded) and ``second``'s odometry brought into ``first``'s frame (UTM
origin): the second lap revisits the first's places, so every loop candidate of the second lap can
be judged against the bag's own odometry (:func:`vbl_ros.evaluation.evaluate_localization`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from vbl_ros.bags import CAMERA_TOPICS, ODOMETRY_TOPIC, UTM_ORIGIN_TOPIC, read_utm_origin
from vbl_ros.errors import FrameMismatchError, OutputExistsError

__all__ = ["KEPT_TOPICS", "write_looped_bag"]

#: topics copied into the looped bag (others, e.g. LIDAR and GPS, are left out)
KEPT_TOPICS = (UTM_ORIGIN_TOPIC, "/tf_static", ODOMETRY_TOPIC, *CAMERA_TOPICS, "/stereo/centre/camera_info")


def write_looped_bag(first: Path | str, second: Path | str, out: Path | str, *, gap_s: float = 10.0) -> Path:
    """One bag (MCAP) driving ``first``'s route then ``second``'s, stamps continuous; returns ``out``.

    ``second``'s messages (log and header stamps) are shifted to start ``gap_s`` after ``first``'s
    last message, and its odometry is brought into ``first``'s frame. Only :data:`KEPT_TOPICS` are
    kept; ``second``'s UTM origin and static transforms are dropped (the bag's frame is ``first``'s).

    Raises:
        FrameMismatchError: a bag has no UTM origin, or they lie in different UTM zones.
        OutputExistsError: ``out`` exists.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)
    first, second, out = Path(first), Path(second), Path(out)
    if out.exists():
        raise OutputExistsError(f"{out} exists already; choose another output or remove it")
    origin1, origin2 = read_utm_origin(first), read_utm_origin(second)
    if origin1 is None or origin2 is None or origin1.zone != origin2.zone:
        raise FrameMismatchError(
            f"{first} and {second} need UTM origins in one UTM zone (got {origin1} and {origin2}); "
            "convert both drives with 'vbl convert robotcar'"
        )
    offset = np.array(
        [origin2.easting - origin1.easting, origin2.northing - origin1.northing, origin2.up - origin1.up]
    )
    Time = store.types["builtin_interfaces/msg/Time"]

    def restamp(msg: Any, shift_ns: int) -> Any:
        if not hasattr(msg, "header"):
            return msg
        ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + shift_ns
        header = dataclasses.replace(msg.header, stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9))
        return dataclasses.replace(msg, header=header)

    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_custom_data("vbl.utm_origin", origin1.to_text())
    connections: dict[str, object] = {}
    shift_ns = last_ns = 0
    with writer:
        for lap, bag in enumerate((first, second)):
            with AnyReader([bag], default_typestore=store) as reader:
                conns = [c for c in reader.connections if c.topic in KEPT_TOPICS]
                if lap == 1:
                    shift_ns = last_ns + round(gap_s * 1e9) - reader.start_time
                for conn, t_ns, raw in reader.messages(connections=conns):
                    if lap == 1 and conn.topic in (UTM_ORIGIN_TOPIC, "/tf_static"):
                        continue  # the looped bag's frame is the first lap's
                    msg = reader.deserialize(raw, conn.msgtype)
                    msg = restamp(msg, shift_ns)
                    if lap == 1 and conn.topic == ODOMETRY_TOPIC:
                        p = msg.pose.pose.position
                        position = dataclasses.replace(
                            p, x=p.x + offset[0], y=p.y + offset[1], z=p.z + offset[2]
                        )
                        pose = dataclasses.replace(msg.pose.pose, position=position)
                        msg = dataclasses.replace(msg, pose=dataclasses.replace(msg.pose, pose=pose))
                    if conn.topic not in connections:
                        connections[conn.topic] = writer.add_connection(
                            conn.topic,
                            conn.msgtype,
                            typestore=store,
                            offered_qos_profiles=conn.ext.offered_qos_profiles,
                        )
                    writer.write(
                        connections[conn.topic], t_ns + shift_ns, store.serialize_cdr(msg, conn.msgtype)
                    )
                last_ns = reader.end_time + shift_ns
    return out
