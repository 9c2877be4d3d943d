#!/usr/bin/env bash
# One command, fresh machine: set up, build, and run the main job (a simulated cell doing real work):
# the shipped ONNX policy sorts parts on held-out scenes (seeds 10000+ were never used in training).
#   bash scripts/run_demo.sh [extra `noetra run` arguments]
#   NOETRA_CELL=pick_place_lrmate bash scripts/run_demo.sh     # the scripted expert instead
set -euo pipefail
source "$(dirname "$0")/build.sh"
CELL="${NOETRA_CELL:-pick_place_lrmate_policy}"
exec noetra run "$CELL" --headless --episodes "${NOETRA_EPISODES:-5}" --seed "${NOETRA_SEED:-10000}" "$@"
