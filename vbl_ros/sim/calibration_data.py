"""Real Oxford RobotCar calibration embedded for the simulator.

Copied verbatim from the Oxford RobotCar dataset SDK (``extrinsics/*.txt`` and
``models/stereo_narrow_left.txt``), licensed CC BY-NC-SA 4.0 by the Oxford Robotics Institute
(Maddern et al., IJRR 2016). Embedded so that ``vbl simulate`` works from an installed package;
``test/test_sim.py`` checks these strings equal the SDK files byte for byte.
"""

from __future__ import annotations

import numpy as np

from vbl_ros.geometry.rotations import se3_from_xyzrpy
from vbl_ros.robotcar.calibration import CameraModel

__all__ = ["EXTRINSICS_TEXT", "STEREO_NARROW_LEFT_TEXT", "extrinsics", "stereo_narrow_left"]

# extrinsics/<sensor>.txt, exactly as in the SDK (some files have no final newline).
EXTRINSICS_TEXT: dict[str, str] = {
    "ins": "-1.7132 0.1181 1.1948 -0.0125 0.0400 0.0050\n",
    "ldmrs": "1.5349 0.0090 1.3777 0.0205 0.0767 -0.0299",
    "lms_front": "1.7589 0.2268 1.0411 -0.0437 -1.4572 0.0356\n",
    "lms_rear": "-2.5850 0.2852 1.0885 -2.8405 -1.5090 -0.3614",
    "mono_left": "-0.0905 1.6375 0.2803 0.2079 -0.2339 1.2321\n",
    "mono_rear": "-2.0582 0.0894 0.3675 -0.0119 -0.2498 3.1283\n",
    "mono_right": "-0.2587 -1.6810 0.3226 -0.1961 -0.2469 -1.2675\n",
    "radar": "-0.71813 0.12 -0.54479 0 0.05 0\n",
    "stereo": "0 0 0 0 0 0\n",
    "velodyne_left": "-0.60072 -0.34077 -0.26837 -0.0053948 -0.041998 -3.1337\n",
    "velodyne_right": "-0.61153 0.55676 -0.27023 0.0027052 -0.041999 -3.1357\n",
}

# models/stereo_narrow_left.txt (the stereo centre images), exactly as in the SDK.
STEREO_NARROW_LEFT_TEXT = (
    "964.828979 964.828979 643.788025 484.407990\n"
    "0.000000 -0.000000 1.000000 0.000000\n"
    "1.000000 0.000000 -0.000000 0.000000\n"
    "0.000000 1.000000 0.000000 0.000000\n"
    "0.000000 0.000000 0.000000 1.000000\n"
)


def extrinsics(sensor: str) -> np.ndarray:
    """The 4x4 transform stored in ``extrinsics/<sensor>.txt`` (``T_vehicle_sensor`` for LIDARs and INS)."""
    values = [float(v) for v in EXTRINSICS_TEXT[sensor].split()]
    return se3_from_xyzrpy(*values)


def stereo_narrow_left() -> CameraModel:
    """The real stereo centre camera model (1280x960 images)."""
    rows = [[float(v) for v in line.split()] for line in STEREO_NARROW_LEFT_TEXT.splitlines() if line.strip()]
    fx, fy, cx, cy = rows[0]
    return CameraModel("stereo_narrow_left", fx, fy, cx, cy, np.array(rows[1:5]))
