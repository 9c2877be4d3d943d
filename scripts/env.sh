# Sourced by the other scripts: creates/updates the project venv and puts ROS 2 (wheels) on the path.
# Usage: source scripts/env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOETRA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[noetra] creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Re-install only when requirements changed (a stamp file holds the hash).
# NOETRA_WITH_LEARNING=1 adds the optional learning extra (torch CPU, pyarrow).
REQ_FILES=("$ROOT/requirements.txt")
if [ "${NOETRA_WITH_LEARNING:-0}" = 1 ]; then REQ_FILES+=("$ROOT/requirements-learning.txt"); fi
REQ_HASH="$(cat "${REQ_FILES[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.noetra-req" 2>/dev/null || true)" != "$REQ_HASH" ]; then
  echo "[noetra] installing pinned requirements into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  for req in "${REQ_FILES[@]}"; do
    "$VENV/bin/python" -m pip install -q -r "$req" 2>&1 | grep -v "^WARNING: Location" || true
  done
  "$VENV/bin/python" -c "import rclpy, pybullet, onnxruntime, cv2"  # pip output is filtered above, so check the install here
  echo "$REQ_HASH" > "$VENV/.noetra-req"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# ament_index finds the wheel-installed ROS packages only through AMENT_PREFIX_PATH.
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PYTHONUNBUFFERED=1
cd "$ROOT"
