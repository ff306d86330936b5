"""ROS 2 messages of a converted RobotCar traversal, built with a ``rosbags`` typestore.

No ROS install is needed: messages are ``rosbags`` dataclasses serialised with
``typestore.serialize_cdr``. Every stamp comes from RobotCar microseconds via
:func:`~vbl_ros.robotcar.timestamps.us_to_stamp` (``nanosec = (us % 1e6) * 1000``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vbl_ros.geometry.rotations import rotation_to_quaternion
from vbl_ros.geometry.utm import UtmOrigin
from vbl_ros.robotcar.calibration import CameraModel
from vbl_ros.robotcar.timestamps import us_to_stamp

__all__ = ["MessageFactory", "COMPRESSED_BAYER_FORMAT"]

COMPRESSED_BAYER_FORMAT = "{encoding}; png compressed {encoding}"


class MessageFactory:
    """Builds the message objects of one typestore (e.g. ``get_typestore(Stores.ROS2_KILTED)``)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore
        self.types = typestore.types

    def serialize(self, message: Any) -> memoryview:
        """CDR bytes of a message."""
        return self.typestore.serialize_cdr(message, message.__msgtype__)

    def header(self, t_us: int, frame_id: str) -> Any:
        sec, nanosec = us_to_stamp(t_us)
        time = self.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def compressed_image(self, t_us: int, frame_id: str, png: bytes, encoding: str) -> Any:
        """The original PNG bytes, ``format = "<enc>; png compressed <enc>"``."""
        return self.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(t_us, frame_id),
            format=COMPRESSED_BAYER_FORMAT.format(encoding=encoding),
            data=np.frombuffer(png, dtype=np.uint8),
        )

    def image(self, t_us: int, frame_id: str, array: np.ndarray, encoding: str) -> Any:
        """A raw image: ``bayer_*8``/``mono8`` (H, W) uint8, ``rgb8`` (H, W, 3) uint8, ``32FC1`` float32."""
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        step = array.strides[0]
        return self.types["sensor_msgs/msg/Image"](
            header=self.header(t_us, frame_id),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=int(array.dtype.byteorder == ">"),
            step=step,
            data=array.reshape(-1).view(np.uint8),
        )

    def camera_info(self, t_us: int, frame_id: str, model: CameraModel, width: int, height: int) -> Any:
        """Pinhole intrinsics; no distortion (the stereo images are nearly rectified)."""
        k = model.matrix
        p = np.zeros((3, 4))
        p[:, :3] = k
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.types["sensor_msgs/msg/CameraInfo"](
            header=self.header(t_us, frame_id),
            height=height,
            width=width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k.reshape(-1),
            r=np.eye(3).reshape(-1),
            p=p.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def _pose(self, transform: np.ndarray) -> Any:
        x, y, z, w = rotation_to_quaternion(transform[:3, :3])
        px, py, pz = (float(v) for v in transform[:3, 3])
        position = self.types["geometry_msgs/msg/Point"](x=px, y=py, z=pz)
        orientation = self.types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)
        return self.types["geometry_msgs/msg/Pose"](position=position, orientation=orientation)

    def _vector(self, values: Sequence[float]) -> Any:
        x, y, z = (float(v) for v in values)
        return self.types["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)

    def odometry(
        self, t_us: int, map_base: np.ndarray, linear_velocity: np.ndarray, *, frame_id: str = "map"
    ) -> Any:
        """``T_map_base_link`` with the linear velocity expressed in ``base_link`` (angular unknown: 0)."""
        t = self.types
        pose = t["geometry_msgs/msg/PoseWithCovariance"](pose=self._pose(map_base), covariance=np.zeros(36))
        twist = t["geometry_msgs/msg/Twist"](
            linear=self._vector(linear_velocity), angular=self._vector((0, 0, 0))
        )
        return t["nav_msgs/msg/Odometry"](
            header=self.header(t_us, frame_id),
            child_frame_id="base_link",
            pose=pose,
            twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
        )

    def navsatfix(
        self,
        t_us: int,
        frame_id: str,
        latitude: float,
        longitude: float,
        altitude: float,
        sigma_lat_lon_alt: Sequence[float],
        num_satellites: int,
    ) -> Any:
        """A GPS fix; covariance (ENU order) from the three sigma columns."""
        status_type = self.types["sensor_msgs/msg/NavSatStatus"]
        status = status_type(
            status=status_type.STATUS_FIX if num_satellites >= 4 else status_type.STATUS_NO_FIX,
            service=status_type.SERVICE_GPS,
        )
        s_lat, s_lon, s_alt = (float(v) for v in sigma_lat_lon_alt)
        covariance = np.diag([s_lon**2, s_lat**2, s_alt**2]).reshape(-1)
        fix = self.types["sensor_msgs/msg/NavSatFix"]
        return fix(
            header=self.header(t_us, frame_id),
            status=status,
            latitude=float(latitude),
            longitude=float(longitude),
            altitude=float(altitude),
            position_covariance=covariance,
            position_covariance_type=fix.COVARIANCE_TYPE_DIAGONAL_KNOWN,
        )

    def pointcloud(self, t_us: int, frame_id: str, scan: np.ndarray) -> Any:
        """An ``(N, 3)`` scan ``x, y, reflectance`` as x, y, z (= 0), intensity float32 points."""
        field = self.types["sensor_msgs/msg/PointField"]
        points = np.zeros((scan.shape[0], 4), dtype="<f4")
        points[:, 0] = scan[:, 0]
        points[:, 1] = scan[:, 1]
        points[:, 3] = scan[:, 2]
        fields = [
            field(name=name, offset=4 * i, datatype=field.FLOAT32, count=1)
            for i, name in enumerate(("x", "y", "z", "intensity"))
        ]
        return self.types["sensor_msgs/msg/PointCloud2"](
            header=self.header(t_us, frame_id),
            height=1,
            width=points.shape[0],
            fields=fields,
            is_bigendian=False,
            point_step=16,
            row_step=16 * points.shape[0],
            data=points.reshape(-1).view(np.uint8),
            is_dense=bool(np.isfinite(points).all()),
        )

    def tf_message(self, t_us: int, transforms: Sequence[tuple[str, str, np.ndarray]]) -> Any:
        """A ``TFMessage`` of ``(parent, child, T_parent_child)`` transforms."""
        t = self.types
        stamped = []
        for parent, child, matrix in transforms:
            x, y, z, w = rotation_to_quaternion(matrix[:3, :3])
            transform = t["geometry_msgs/msg/Transform"](
                translation=self._vector(matrix[:3, 3]),
                rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
            )
            stamped.append(
                t["geometry_msgs/msg/TransformStamped"](
                    header=self.header(t_us, parent), child_frame_id=child, transform=transform
                )
            )
        return t["tf2_msgs/msg/TFMessage"](transforms=stamped)

    def utm_origin(self, t_us: int, origin: UtmOrigin) -> Any:
        """``PointStamped`` (E0, N0, U0) in frame ``utm_<zone>``."""
        point = self.types["geometry_msgs/msg/Point"](x=origin.easting, y=origin.northing, z=origin.up)
        return self.types["geometry_msgs/msg/PointStamped"](
            header=self.header(t_us, origin.frame_id), point=point
        )
