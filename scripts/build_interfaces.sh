#!/usr/bin/env bash
# Build the interface packages under interfaces/ (the drivers' control_msgs, industrial_msgs,
# motoros2_interfaces, fanuc_msgs, tf2_msgs, and our own noetra_msgs) with colcon into the same
# install/ as noetra_ros.
#   bash scripts/build_interfaces.sh      or      source scripts/build_interfaces.sh
#   NOETRA_BUILD_ROOT=DIR   put colcon's build/, install/ and log/ under DIR (default: the repository)
#   NOETRA_INTERFACES_FORCE=1   rebuild even when nothing changed
#
# Why these exist: ROS 2 Jazzy from PyPI has no wheels for these packages, and the real drivers
# (MotoROS2, fanuc_driver, ros2_control) speak them. Each driver package reproduces its upstream
# package, type and field names, field types and order, so it interoperates over DDS
# (docs/DRIVERS.md). noetra_msgs holds our own types (interfaces/noetra_msgs).
# A package the environment already provides (a ROS 2 install from apt, or a wheel) is skipped,
# found by the ament index of AMENT_PREFIX_PATH outside our own install/, so the real one is used.
#
# Idempotent and quick when nothing changed: a stamp in build/ holds the hash of interfaces/, the
# pinned build requirements, this script and the set of packages to build; if it matches and every
# package is installed, colcon is not run at all.
# Like env.sh, sourcing leaves the caller's shell options as they were and returns 1 on failure.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" || { return 1 2> /dev/null || exit 1; }
if ! (
  set -euo pipefail
  base="${NOETRA_BUILD_ROOT:-$ROOT}"
  install_base="$base/install"
  interfaces="$ROOT/interfaces"
  venv="$VIRTUAL_ENV"

  # The build tools, pinned; re-installed only when the file changed (same stamp scheme as env.sh).
  req="$ROOT/requirements-interfaces.txt"
  req_stamp="$venv/.noetra-req-interfaces"
  req_hash="$(sha256sum < "$req" | cut -c1-16)"
  if [ "$(cat "$req_stamp" 2>/dev/null || true)" != "$req_hash" ]; then
    echo "[noetra] installing $(basename "$req") into $venv"
    python -m pip install -q -r "$req" 2>&1 | grep -v "^WARNING: Location" || true
    # pip's output is filtered above (so its status is lost): check the tools are there instead.
    python -c "import rosidl_adapter, rosidl_generator_py, rosidl_generator_type_description"
    test -f "$venv/share/rosidl_default_generators/cmake/rosidl_default_generators-config.cmake"
    echo "$req_hash" > "$req_stamp"
  fi

  # provided_elsewhere NAME: true if a prefix on AMENT_PREFIX_PATH other than our install/ has NAME
  # in its ament index (the lookup ament_index_python does, minus our own earlier builds).
  provided_elsewhere() {
    local prefix prefixes
    IFS=: read -r -a prefixes <<< "${AMENT_PREFIX_PATH:-}"
    for prefix in "${prefixes[@]}"; do
      case "$prefix" in "" | "$install_base" | "$install_base"/*) continue ;; esac
      if [ -e "$prefix/share/ament_index/resource_index/packages/$1" ]; then
        echo "$prefix"
        return 0
      fi
    done
    return 1
  }

  packages=()
  for manifest in "$interfaces"/*/package.xml; do
    name="$(basename "$(dirname "$manifest")")"
    if where="$(provided_elsewhere "$name")"; then
      echo "[noetra] $name: provided by $where, not building ours"
      # An earlier build of ours would shadow the provided one once install/setup.bash is sourced.
      if [ -d "$install_base/$name" ] || [ -d "$base/build/$name" ]; then
        echo "[noetra] $name: removing our earlier build of it from $base/{build,install}"
        rm -rf "${install_base:?}/$name" "${base:?}/build/$name"
      fi
      continue
    fi
    packages+=("$name")
  done
  if [ "${#packages[@]}" = 0 ]; then
    echo "[noetra] interface packages: all provided by the environment, nothing to build"
    exit 0
  fi

  stamp="$base/build/.noetra-interfaces-stamp"
  hash="$( { find "$interfaces" -type f -print0 | sort -z | xargs -0 sha256sum
             cat "$req" "${BASH_SOURCE[0]}"
             echo "${packages[*]} $venv $install_base"; } | sha256sum | cut -c1-16)"
  all_installed=1
  for name in "${packages[@]}"; do
    [ -f "$install_base/$name/share/$name/package.xml" ] || all_installed=0
  done
  if [ "${NOETRA_INTERFACES_FORCE:-0}" != 1 ] && [ "$all_installed" = 1 ] \
      && [ "$(cat "$stamp" 2>/dev/null || true)" = "$hash" ]; then
    echo "[noetra] interface packages up to date: ${packages[*]}"
    exit 0
  fi

  echo "[noetra] building interface packages: ${packages[*]}"
  # CMake finds the wheel-installed ament / rosidl packages through CMAKE_PREFIX_PATH.
  case ":${CMAKE_PREFIX_PATH:-}:" in
    *":$venv:"*) ;;
    *) export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;;
  esac
  # Release: nothing here is debugged in C. No tests: the packages hold only interface files.
  # RPATH $ORIGIN: the generated Python extension (in lib/python3.X/site-packages/<pkg>/) and the
  # libraries (in lib/) find each other without LD_LIBRARY_PATH, so a process that only adds the
  # package to sys.path (test/test_interfaces.py) can load them.
  colcon --log-base "$base/log" build --base-paths "$interfaces" \
    --packages-select "${packages[@]}" \
    --build-base "$base/build" --install-base "$install_base" \
    --event-handlers console_cohesion- \
    --cmake-args -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      "-DPython3_EXECUTABLE=$venv/bin/python" \
      "-DCMAKE_INSTALL_RPATH=\$ORIGIN;\$ORIGIN/../../.." 2>&1 | tail -4
  for name in "${packages[@]}"; do
    test -f "$install_base/$name/share/$name/package.xml" \
      || { echo "[noetra] $name was not installed" >&2; exit 1; }
  done
  echo "$hash" > "$stamp"
); then
  echo "[noetra] building the interface packages failed (see above; full log in log/latest_build)" >&2
  return 1 2> /dev/null || exit 1
fi
