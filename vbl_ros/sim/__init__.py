"""A simulated Oxford RobotCar: a procedural town rendered with MuJoCo, written in the RobotCar format.

``simulate(out_dir, config)`` writes traversal folders that ``vbl convert robotcar`` reads. Importing
this package selects MuJoCo's headless EGL backend unless ``MUJOCO_GL`` is set already.
"""

import importlib
import importlib.util
import os

os.environ.setdefault("MUJOCO_GL", "egl")

# Mesa's software OpenGL (llvmpipe, behind EGL here) and Triton (pulled in by torch/torchvision) each
# carry their own LLVM; loading Triton after Mesa has made a GL context segfaults. Loading Triton
# first, when it is installed, makes rendering and the descriptor network safe in one process
# (``vbl demo`` simulates and then builds a map).
if importlib.util.find_spec("triton") is not None:
    importlib.import_module("triton")
