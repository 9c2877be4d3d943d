#!/usr/bin/env bash
# One command, fresh machine: set up, build, and run every test with colcon.
# The tests cover the learning pipeline too, so they need its optional extra.
export NOETRA_WITH_LEARNING=1
source "$(dirname "$0")/build.sh"
# Each test run gets its own DDS domain so parallel runs on one host never hear each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
set +e
colcon test --packages-select noetra_ros --event-handlers console_direct+ \
  --pytest-args -q -p no:cacheprovider
colcon test-result --verbose
status=$?
set -e
exit $status
