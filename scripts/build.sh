#!/usr/bin/env bash
# Set up the venv (if needed), build the package with colcon into ./install, and put `noetra`
# and the node executables on PATH. Source it to keep that environment:  source scripts/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
colcon build --packages-select noetra_ros --event-handlers console_cohesion- 2>&1 | tail -3
set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
# ament_python installs executables where `ros2 run` looks (lib/<package>), not on PATH.
export PATH="$ROOT/install/noetra_ros/lib/noetra_ros:$PATH"
