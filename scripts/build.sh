#!/usr/bin/env bash
# Set up the venv (if needed) and build the package with colcon into ./install.
source "$(dirname "$0")/env.sh"
colcon build --packages-select noetra_ros --event-handlers console_cohesion- 2>&1 | tail -3
set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
