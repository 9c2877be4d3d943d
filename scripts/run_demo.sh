#!/usr/bin/env bash
# One command, fresh machine: set up, build, and run the main job (a simulated cell doing real work).
#   bash scripts/run_demo.sh [extra `noetra run` arguments]
source "$(dirname "$0")/build.sh"
CELL="${NOETRA_CELL:-pick_place_lrmate}"
exec noetra run "$CELL" --headless --episodes "${NOETRA_EPISODES:-5}" "$@"
