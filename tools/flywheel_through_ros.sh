#!/usr/bin/env bash
# Close the flywheel through ROS and compare it with the in-process recorder (issue 14, item 4):
#   1. record expert episodes through the deployed graph (cell pick_place_lrmate_demos: expert ->
#      supervisor -> simulated arm, recorder_node writing one MCAP bag per episode), convert the
#      bags into a LeRobotDataset (`noetra convert`);
#   2. record the same seeds with the in-process recorder (python -m noetra_ros.learning record);
#   3. train both with the same recipe and budget (the shipped model's recipe, fewer episodes and
#      steps), export to ONNX;
#   4. evaluate both on the same held-out seeds, in process, behind the supervisor (evalcheck).
# Usage: bash tools/flywheel_through_ros.sh OUT_DIR [EPISODES] [STEPS] [EVAL_SEEDS]
#   defaults: 120 episodes (seeds 0..119), 1000 training steps, eval seeds 80000:80050.
# Takes about an hour on a quiet 2-core machine (docs/results/flywheel_through_ros.txt). Results: OUT_DIR/summary.txt (+ each step's log).
set -euo pipefail
out="${1:?usage: $0 OUT_DIR [EPISODES] [STEPS] [EVAL_SEEDS]}"
episodes="${2:-120}"
steps="${3:-1000}"
eval_seeds="${4:-80000:80050}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A DDS domain of its own: another cell on the machine's default domain would talk to this one.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
# shellcheck disable=SC1091
source "$here/scripts/build.sh" > /dev/null
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$out/summary.txt"; }
timed() { local name="$1"; shift; local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1; log "$name: done in $((SECONDS - t0)) s"; }

log "flywheel through ROS: $episodes expert episodes (seeds 0..$((episodes - 1))), $steps training steps, eval seeds $eval_seeds"
# 1. Through the graph (lockstep, so the load of the machine changes nothing but the wall time).
timed graph_record noetra run pick_place_lrmate_demos --headless --record \
  --episodes "$episodes" --seed 0 --out "$out/graph_run" --timeout 14400 --quiet
timed graph_convert noetra convert "$out/graph_run/recording" --out "$out/graph_dataset"
tail -1 "$out/graph_convert.log" | tee -a "$out/summary.txt" || true
head -1 "$out/graph_convert.log" | tee -a "$out/summary.txt"
# 2. In process, same seeds.
timed inprocess_record python -m noetra_ros.learning record --output "$out/inprocess_dataset" \
  --episodes "$episodes" --first-seed 0
tail -1 "$out/inprocess_record.log" | tee -a "$out/summary.txt"
# 3. Same recipe and budget, one thread each, both at once (--output is the checkpoint file).
for source in graph inprocess; do
  python -m noetra_ros.learning train --dataset "$out/${source}_dataset" \
    --output "$out/${source}_train.pt" --steps "$steps" --threads 1 \
    > "$out/${source}_train.log" 2>&1 &
done
t0=$SECONDS
wait
log "training (both, in parallel): done in $((SECONDS - t0)) s"
for source in graph inprocess; do
  timed "${source}_export" python -m noetra_ros.learning export \
    --checkpoint "$out/${source}_train.pt" --output "$out/${source}.onnx" \
    --dataset "$out/${source}_dataset"
done
# 4. Same held-out seeds, the policy cell's settings, supervisor included; both at once.
for source in graph inprocess; do
  python -m noetra_ros.learning evalcheck --model "$out/${source}.onnx" \
    --seeds "$eval_seeds" --json "$out/${source}_eval.json" > "$out/${source}_eval.log" 2>&1 &
done
t0=$SECONDS
wait
log "evaluations (both, in parallel): done in $((SECONDS - t0)) s"
for source in graph inprocess; do
  grep -i "success" "$out/${source}_eval.log" | tail -2 | sed "s/^/$source: /" | tee -a "$out/summary.txt"
done
