"""A simulated Oxford RobotCar: a procedural town rendered with MuJoCo, written in the RobotCar format.

``simulate(out_dir, config)`` writes traversal folders that ``vbl convert robotcar`` reads. Importing
this package selects MuJoCo's headless EGL backend unless ``MUJOCO_GL`` is set already.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
