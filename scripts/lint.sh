#!/usr/bin/env bash
# ruff over the repository and mypy over noetra_ros/core/, from the project venv (settings:
# pyproject.toml; versions: requirements-dev.txt). Exits non-zero if either finds anything.
#   bash scripts/lint.sh            check
#   bash scripts/lint.sh --fix      let ruff fix what it can first (then check as above)
set -euo pipefail
export NOETRA_WITH_DEV=1
source "$(dirname "$0")/env.sh"
if [ "${1:-}" = --fix ]; then ruff check --fix . || true; fi
status=0
echo "[lint] ruff check ."
ruff check . || status=1
echo "[lint] mypy (noetra_ros/core)"
mypy || status=1
exit $status
