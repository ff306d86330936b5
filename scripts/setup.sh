#!/usr/bin/env bash
# Set up everything vbl needs on a fresh Debian machine without a ROS distribution:
# Debian's EGL libraries (offscreen rendering), a virtual environment in .venv with every
# Python dependency from the package index, and vbl itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi

python3 -m venv .venv
# The local CPU-only torch wheel cannot be used by torchvision: take both from the index.
export PIP_FIND_LINKS=""
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "vbl is set up in .venv: try '.venv/bin/vbl --help'"
