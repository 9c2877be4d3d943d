#!/usr/bin/env bash
# Set up the venv (if needed), build the driver interface packages (scripts/build_interfaces.sh:
# tf2_msgs, control_msgs, ...; quick when nothing changed) and then the package with colcon into
# ./install, and put `noetra` and the node executables on PATH, with the interface packages
# importable. Source it to keep that environment:  source scripts/build.sh
#   NOETRA_BUILD_ROOT=DIR   put colcon's build/, install/ and log/ under DIR (default: the repository)
# Like env.sh, sourcing leaves the caller's shell options as they were and returns 1 on failure.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" || { return 1 2> /dev/null || exit 1; }
NOETRA_INSTALL="${NOETRA_BUILD_ROOT:-$ROOT}/install"
if ! (
  set -euo pipefail
  base="${NOETRA_BUILD_ROOT:-$ROOT}"
  # First: state_publisher_node needs tf2_msgs, which the ROS 2 wheels lack. Its own subshell
  # and stamp: skipped in a second when interfaces/ did not change.
  NOETRA_BUILD_ROOT="$base" bash "$ROOT/scripts/build_interfaces.sh"
  colcon --log-base "$base/log" build --packages-select noetra_ros \
    --build-base "$base/build" --install-base "$base/install" \
    --event-handlers console_cohesion- 2>&1 | tail -3
); then
  echo "[noetra] build failed (see above)" >&2
  return 1 2> /dev/null || exit 1
fi
# colcon's setup scripts read unset variables: source them without `set -u`, then put the caller's
# options back exactly (`set +o` prints the commands that restore every `set -o` option).
_noetra_caller_options="$(set +o)"
set +u
# shellcheck disable=SC1091
source "$NOETRA_INSTALL/setup.bash"
eval "$_noetra_caller_options"
unset _noetra_caller_options
# ament_python installs executables where `ros2 run` looks (lib/<package>), not on PATH.
export PATH="$NOETRA_INSTALL/noetra_ros/lib/noetra_ros:$PATH"
