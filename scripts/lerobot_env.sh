#!/usr/bin/env bash
# Creates .venv-lerobot: LeRobot 0.4.4 and what its dataset code needs (requirements-lerobot.txt
# says why it is a venv of its own), plus FFmpeg's shared libraries for torchcodec (Debian).
# Prints the venv's python on the last line. Re-runs only when requirements-lerobot.txt changed.
#   bash scripts/lerobot_env.sh            set up (about 5.5 GB, mostly the torch CUDA build)
# test/test_convert.py runs LeRobot through NOETRA_LEROBOT_PYTHON=<that python>.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${NOETRA_LEROBOT_VENV:-$ROOT/.venv-lerobot}"
LEROBOT_VERSION=0.4.4
req="$ROOT/requirements-lerobot.txt"
hash="$( (cat "$req"; echo "$LEROBOT_VERSION") | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.noetra-req" 2>/dev/null || true)" != "$hash" ]; then
  if ! ldconfig -p | grep -q 'libavcodec\.so\.'; then
    echo "[lerobot] installing FFmpeg's shared libraries (torchcodec decodes with them)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libavcodec59 libavformat59 libavutil57 \
      libswscale6 libswresample4 libavdevice59 libavfilter8 > /dev/null
  fi
  echo "[lerobot] creating $VENV (LeRobot $LEROBOT_VERSION; about 5.5 GB)" >&2
  rm -rf "$VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --no-cache-dir -r "$req" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -m pip install -q --no-cache-dir --no-deps "lerobot==$LEROBOT_VERSION" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  # pip's output is filtered above (its status is lost): check the install here instead.
  "$VENV/bin/python" -c "
from lerobot.datasets.dataset_tools import delete_episodes
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from torchcodec.decoders import VideoDecoder" >&2
  touch "$VENV/COLCON_IGNORE"  # colcon crawls the repository for packages
  echo "$hash" > "$VENV/.noetra-req"
fi
echo "$VENV/bin/python"
