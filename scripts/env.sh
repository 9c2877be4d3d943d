# shellcheck shell=bash
# Sourced by the other scripts: creates/updates the project venv and puts ROS 2 (wheels) on the path.
# Usage: source scripts/env.sh
#   NOETRA_WITH_LEARNING=1  also install the optional learning extra (torch CPU, pyarrow)
#   NOETRA_WITH_DEV=1       also install the linters (ruff, mypy; used by scripts/lint.sh)
#   NOETRA_VENV=DIR         use another venv (default: .venv in the repository)
#
# Sourcing leaves the caller's shell options as they were: `set -e` left on in an interactive
# shell closes it at the first failing command. So the strict setup runs in a subshell, and only
# what must reach the caller (venv activation, exports, cd) runs here. On failure this returns 1.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOETRA_VENV:-$ROOT/.venv}"
if ! (
  set -euo pipefail
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[noetra] creating venv $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  # Each requirements file is re-installed only when it changed: a stamp file in the venv holds its
  # hash (.noetra-req for requirements.txt, .noetra-req-<extra> for requirements-<extra>.txt), so
  # switching extras on and off does not re-run pip for the others.
  extras=()
  if [ "${NOETRA_WITH_LEARNING:-0}" = 1 ]; then extras+=(learning); fi
  if [ "${NOETRA_WITH_DEV:-0}" = 1 ]; then extras+=(dev); fi
  for extra in "" "${extras[@]}"; do
    req="$ROOT/requirements${extra:+-$extra}.txt"
    stamp="$VENV/.noetra-req${extra:+-$extra}"
    hash="$(sha256sum < "$req" | cut -c1-16)"
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$hash" ]; then continue; fi
    echo "[noetra] installing $(basename "$req") into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -m pip install -q -r "$req" 2>&1 | grep -v "^WARNING: Location" || true
    # pip's output is filtered above (so its status is lost): check the install here instead.
    case "$extra" in
      "") "$VENV/bin/python" -c "import rclpy, pybullet, onnxruntime, cv2" ;;
      learning) "$VENV/bin/python" -c "import torch, pyarrow" ;;
      dev) "$VENV/bin/ruff" --version > /dev/null && "$VENV/bin/mypy" --version > /dev/null ;;
    esac
    echo "$hash" > "$stamp"
  done
); then
  echo "[noetra] setting up the venv $VENV failed (see above)" >&2
  return 1 2> /dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# ament_index finds the wheel-installed ROS packages only through AMENT_PREFIX_PATH.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VENV:"*) ;;  # sourced before: already there
  *) export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
export PYTHONUNBUFFERED=1
cd "$ROOT" || return 1
