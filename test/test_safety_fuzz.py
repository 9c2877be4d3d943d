"""Property tests (C20): arbitrary input sequences never raise and never leave the safe set.

Hypothesis feeds the supervisors random interleavings of measurements, commands (with NaN, Inf,
huge values, wrong sizes, random names and stamps), clock steps (including zero, backwards and
non-finite), arm / estop / reset / hold requests and profile changes. After every update the
output is checked against the invariants documented in supervisor.py.
"""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import given, HealthCheck, settings, strategies as st

from noetra_ros.core.safety import (
    JointLimits, SafetyProfile, SafetyState, SafetySupervisor, TwistSupervisor, WorkspaceBox)

NAMES = ('a', 'b', 'c')
LIMITS = JointLimits.from_arrays(NAMES, [-2.0, -1.0, -3.0], [2.0, 1.5, 3.0], [2.0, 3.0, 5.0])
PERIOD = 0.004
TOL = 1e-9
NAN, INF = float('nan'), float('inf')
# Deterministic by default (same examples every run, no example database); set
# NOETRA_FUZZ_EXAMPLES=5000 for a longer, randomised exploration.
_DEEP = os.environ.get('NOETRA_FUZZ_EXAMPLES')
FUZZ = settings(max_examples=int(_DEEP) if _DEEP else 200, deadline=None,
                derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def profile(**changes) -> SafetyProfile:
    return SafetyProfile(name='fuzz', position_margin_rad=0.1, velocity_scale=0.5,
                         acceleration_limits=8.0).replace(**changes)


PROFILES = [profile(), profile(velocity_scale=0.25), profile(velocity_scale=1.0),
            profile(command_timeout_s=0.3), profile(jerk_limit=300.0)]


def planar_fk(q):
    angles = np.cumsum(q)
    pose = np.eye(4)
    pose[0, 3] = 0.5 * math.cos(angles[0]) + 0.4 * math.cos(angles[1]) + 0.1 * math.cos(
        angles[2])
    pose[1, 3] = 0.5 * math.sin(angles[0]) + 0.4 * math.sin(angles[1]) + 0.1 * math.sin(
        angles[2])
    pose[2, 3] = 0.3
    return pose


# ------------------------------------------------------------------------------ strategies
special = st.sampled_from([NAN, INF, -INF, 1e308, -1e308, 0.0, -0.0, 5e-324, 1e20])
value = st.one_of(st.floats(-3.5, 3.5), st.floats(-3.5, 3.5), special,
                  st.floats(allow_nan=True, allow_infinity=True))
sane = st.floats(-2.5, 2.5)


def vectors(elements=value):
    return st.one_of(st.lists(elements, min_size=3, max_size=3),
                     st.lists(elements, min_size=3, max_size=3),
                     st.lists(elements, max_size=5))


names = st.one_of(st.just(NAMES), st.just(NAMES), st.just(None), st.just(('c', 'b', 'a')),
                  st.just(NAMES[:2]), st.just(NAMES + ('d',)), st.just('abc'),
                  st.lists(st.text(max_size=2), max_size=4).map(tuple))
# Stamps relative to the current time, or absolute nonsense.
stamp = st.one_of(st.sampled_from([0.0, 0.0, -0.002, -0.05, -0.2, 0.01, 0.5]).map(
    lambda d: ('rel', d)), st.tuples(st.just('abs'), value))
dt = st.one_of(st.just(PERIOD), st.just(PERIOD), st.just(PERIOD), st.floats(0.0, 0.02),
               st.sampled_from([0.0, -0.01, -1.0, 0.3, NAN, INF]))

good_pos = st.tuples(st.just('pos'), st.just(NAMES), st.lists(sane, min_size=3, max_size=3),
                     st.just(('rel', 0.0)))
good_vel = st.tuples(st.just('vel'), st.just(NAMES),
                     st.lists(st.floats(-4.0, 4.0), min_size=3, max_size=3),
                     st.just(('rel', 0.0)))
good_traj = st.tuples(st.just('traj_ok'), st.lists(sane, min_size=3, max_size=3),
                      st.floats(0.0, 0.5))
# Valid inputs and bursts of normal cycles are weighted up so that many examples spend time
# armed and moving; every malformed kind still appears often.
op = st.one_of(
    st.tuples(st.just('update'), dt),
    st.tuples(st.just('update'), dt),
    st.tuples(st.just('run'), st.integers(1, 40), st.booleans()),
    st.tuples(st.just('run'), st.integers(1, 40), st.booleans()),
    st.tuples(st.just('run'), st.integers(1, 40), st.booleans()),
    good_pos, good_pos, good_vel, good_traj, good_traj,
    st.tuples(st.just('js_follow'), st.sampled_from([0.0, 0.0, 0.03, 0.08, 0.2])),
    st.tuples(st.just('js'), names, vectors(), st.one_of(st.none(), vectors()), stamp),
    st.tuples(st.just('pos'), names, vectors(), stamp),
    st.tuples(st.just('vel'), names, vectors(), stamp),
    st.tuples(st.just('traj'), names, st.lists(value, max_size=4),
              st.lists(vectors(), max_size=4), st.one_of(st.none(), st.lists(vectors(),
                                                                              max_size=4)),
              stamp),
    st.tuples(st.just('sensor'), st.sampled_from(['cam', 'cam', 'other', '', None]), stamp),
    st.just(('arm',)), st.just(('arm',)), st.just(('arm',)), st.just(('estop',)),
    st.just(('reset',)), st.just(('hold',)),
    st.tuples(st.just('profile'), st.sampled_from(range(len(PROFILES)))),
)
# Mostly valid traffic with the occasional clock glitch, stop request or profile change: the
# part of the input space where the robot is armed and moving.
benign_op = st.one_of(
    st.tuples(st.just('run'), st.integers(1, 60), st.just(True)),
    st.tuples(st.just('run'), st.integers(1, 60), st.just(True)),
    st.tuples(st.just('run'), st.integers(1, 60), st.booleans()),
    good_pos, good_pos, good_vel, good_traj,
    st.tuples(st.just('update'), dt),
    st.tuples(st.just('js_follow'), st.sampled_from([0.0, 0.03, 0.08, 0.2])),
    st.tuples(st.just('js_offset'), st.lists(st.floats(-0.3, 0.3), min_size=3, max_size=3)),
    st.just(('arm',)), st.just(('arm',)), st.just(('hold',)), st.just(('estop',)),
    st.just(('reset',)),
    st.tuples(st.just('profile'), st.sampled_from(range(len(PROFILES)))),
)


# ------------------------------------------------------------------------------ the runner
class Runner:
    """Applies operations and checks every output against the invariants."""

    def __init__(self, fk=None, prof=None) -> None:
        self.sup = SafetySupervisor(LIMITS, prof or profile(), fk=fk, period_s=PERIOD,
                                    required_sensors=('cam',))
        self.fk = fk
        self.t = 10.0
        self.prev = None
        self.prev_tool = None
        self.updates = 0
        self.armed_cycles = 0
        self.last_good = None
        self.overrides = 0

    def stamp(self, spec):
        kind, v = spec
        return self.t + v if kind == 'rel' else v

    def apply(self, operation) -> None:
        name = operation[0]
        sup = self.sup
        before = sup.state
        if name == 'update':
            step = operation[1]
            now = self.t + step if math.isfinite(step) else step
            out = sup.update(now)
            if math.isfinite(step):
                self.t = now
            self.check(out)
        elif name == 'run':
            # A burst of normal cycles: fresh measurements, optionally the last command again.
            for _ in range(operation[1]):
                if operation[2] and self.last_good is not None:
                    self.apply(self.last_good)
                self.apply(('js_follow', 0.0))
                self.apply(('sensor', 'cam', ('rel', 0.0)))
                self.apply(('update', PERIOD))
        elif name == 'js_follow':
            q = self.prev.positions if self.prev is not None and self.prev.has_command else (
                np.zeros(3))
            self.decision(sup.on_joint_state(NAMES, q, None, self.t - operation[1], self.t))
        elif name == 'js_offset':
            # The robot is somewhere else than commanded (blocked joint, pushed arm).
            q = self.prev.positions if self.prev is not None and self.prev.has_command else (
                np.zeros(3))
            self.decision(sup.on_joint_state(NAMES, q + np.array(operation[1]), None, self.t,
                                             self.t))
        elif name == 'js':
            self.decision(sup.on_joint_state(operation[1], operation[2], operation[3],
                                             self.stamp(operation[4]), self.t))
        elif name == 'pos':
            d = sup.on_command_positions(operation[1], operation[2], self.stamp(operation[3]),
                                         self.t)
            self.decision(d)
            if d.accepted:
                self.last_good = operation
        elif name == 'vel':
            d = sup.on_command_velocities(operation[1], operation[2], self.stamp(operation[3]),
                                          self.t)
            self.decision(d)
            if d.accepted:
                self.last_good = operation
        elif name == 'traj':
            self.decision(sup.on_command_trajectory(operation[1], operation[2], operation[3],
                                                    operation[4], self.stamp(operation[5]),
                                                    self.t))
        elif name == 'traj_ok':
            end = np.array(operation[1])
            here = self.prev.positions if self.prev is not None and self.prev.has_command else (
                np.zeros(3))
            self.decision(sup.on_command_trajectory(
                NAMES, [0.0, operation[2] + 0.01], [here, end], None, self.t, self.t))
        elif name == 'sensor':
            self.decision(sup.on_sensor(operation[1], self.stamp(operation[2]), self.t))
        elif name == 'arm':
            self.decision(sup.arm(self.t))
        elif name == 'estop':
            sup.estop(self.t, 'fuzz')
            assert sup.state is SafetyState.ESTOP
        elif name == 'reset':
            self.decision(sup.reset_estop(self.t))
        elif name == 'hold':
            sup.hold(self.t, 'fuzz')
        elif name == 'profile':
            self.decision(sup.set_profile(PROFILES[operation[1]], self.t))
        # Only an explicit arm request arms; only a reset leaves ESTOP.
        if sup.state is SafetyState.ARMED and before is not SafetyState.ARMED:
            assert name == 'arm'
        if before is SafetyState.ESTOP and name != 'reset':
            assert sup.state is SafetyState.ESTOP

    @staticmethod
    def decision(d) -> None:
        assert isinstance(d.accepted, bool) and isinstance(d.reason, str)

    def check(self, out) -> None:
        self.updates += 1
        eff = self.sup.effective_limits
        assert math.isfinite(out.time) and math.isfinite(out.dt) and out.dt >= 0.0
        assert 0.0 <= out.speed_scale <= 1.0
        if out.positions is None:
            assert out.velocities is None
            self.prev = out
            return
        q, v = out.positions, out.velocities
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(v))
        assert np.all(q >= eff.lower - TOL) and np.all(q <= eff.upper + TOL)
        if out.state is SafetyState.ARMED:
            self.armed_cycles += 1
        prev = self.prev
        if prev is not None and prev.has_command and not out.rebased:
            p, pv = prev.positions, prev.velocities
            # Never further out of the safe range than before.
            assert np.all(q <= np.maximum(p, eff.safe_upper) + TOL)
            assert np.all(q >= np.minimum(p, eff.safe_lower) - TOL)
            if out.dt == 0.0:
                assert np.array_equal(q, p)
            else:
                step_cap = np.maximum(eff.velocity, np.abs(pv)) * out.dt
                assert np.all(np.abs(q - p) <= step_cap * (1 + 1e-9) + TOL)
                # With an FK too: only a cycle in which the tool limits had to cut even the
                # braking step short (counted) may exceed the acceleration limit.
                overrides = self.sup.counters.get('cartesian_overrode_accel', 0)
                if prev.dt > 0.0 and overrides == self.overrides:
                    assert np.all(np.abs(v - pv) <= eff.acceleration * out.dt * (1 + 1e-6) + TOL)
                if out.state is not SafetyState.ARMED:
                    # Not armed: only ever slowing down, never heading for a new target.
                    assert np.all(np.abs(v) <= np.abs(pv) + TOL)
        self.overrides = self.sup.counters.get('cartesian_overrode_accel', 0)
        if self.fk is not None and out.tool_position is not None:
            box = self.sup.profile.workspace
            bounds = self.sup.workspace_bounds
            tool = out.tool_position
            assert bounds is not None and box is not None
            assert np.all(tool >= bounds[0] - TOL) and np.all(tool <= bounds[1] + TOL)
            if (self.prev_tool is not None and out.dt > 0.0 and not out.rebased
                    and self.sup.profile.max_tool_speed is not None):
                speed = np.linalg.norm(tool - self.prev_tool) / out.dt
                assert speed <= self.sup.profile.max_tool_speed * (1 + 1e-6) + TOL
            self.prev_tool = tool.copy()
        self.prev = out


def arm_sequence():
    """A valid start so many examples spend time ARMED and moving."""
    return [('js_follow', 0.0), ('sensor', 'cam', ('rel', 0.0)), ('update', PERIOD),
            ('js_follow', 0.0), ('arm',)]


def run_ops(runner: Runner, ops) -> None:
    for operation in ops:
        runner.apply(operation)
        if operation[0] not in ('update', 'run'):
            # Keep the robot and the camera alive between random inputs.
            runner.apply(('js_follow', 0.0))
            runner.apply(('sensor', 'cam', ('rel', 0.0)))
            runner.apply(('update', PERIOD))


@FUZZ
@given(st.lists(op, min_size=5, max_size=60), st.booleans())
def test_fuzzed_inputs_keep_the_joint_output_safe(ops, start_armed):
    run_ops(Runner(), (arm_sequence() if start_armed else []) + ops)


@FUZZ
@given(st.lists(benign_op, min_size=5, max_size=30))
def test_fuzzed_motion_keeps_the_joint_output_safe(ops):
    run_ops(Runner(), arm_sequence() + ops)


CART_PROFILE = profile(workspace=WorkspaceBox((-0.9, -0.5, 0.0), (0.9, 0.9, 1.0)),
                       max_tool_speed=0.3, workspace_slowdown_m=0.05)


@FUZZ
@given(st.lists(st.one_of(benign_op, op).filter(lambda o: o[0] != 'profile'), min_size=5,
                max_size=30))
def test_fuzzed_inputs_keep_the_tool_in_the_box_and_under_the_speed_limit(ops):
    run_ops(Runner(fk=planar_fk, prof=CART_PROFILE), arm_sequence() + ops)


def test_the_fuzz_runner_reaches_armed_motion():
    """Guard against a vacuous fuzz: the valid path must arm and move."""
    runner = Runner()
    for operation in arm_sequence():
        runner.apply(operation)
    for _ in range(50):
        runner.apply(('pos', NAMES, [1.0, 1.0, 1.0], ('rel', 0.0)))
        runner.apply(('js_follow', 0.0))
        runner.apply(('sensor', 'cam', ('rel', 0.0)))
        runner.apply(('update', PERIOD))
    assert runner.armed_cycles == 50
    assert np.all(np.abs(runner.prev.velocities) > 0.0)


# ------------------------------------------------------------------------------ twist
twist_op = st.one_of(
    st.tuples(st.just('update'), dt), st.tuples(st.just('update'), dt),
    st.tuples(st.just('twist'), vectors(), vectors(), stamp),
    st.tuples(st.just('twist'), st.lists(st.floats(-3, 3), min_size=3, max_size=3),
              st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.just(('rel', 0.0))),
    st.just(('arm',)), st.just(('estop',)), st.just(('reset',)),
)


@FUZZ
@given(st.lists(twist_op, max_size=60))
def test_fuzzed_twists_stay_limited(ops):
    sup = TwistSupervisor(profile(), period_s=0.02)
    base = sup.profile.base
    t = 5.0
    prev = None
    for operation in [('update', 0.02), ('arm',)] + ops:
        name = operation[0]
        before = sup.state
        if name == 'update':
            step = operation[1]
            now = t + step if math.isfinite(step) else step
            out = sup.update(now)
            if math.isfinite(step):
                t = now
            assert np.all(np.isfinite(out.linear)) and np.all(np.isfinite(out.angular))
            assert np.linalg.norm(out.linear) <= base.max_linear_velocity + TOL
            assert np.linalg.norm(out.angular) <= base.max_angular_velocity + TOL
            if prev is not None and out.dt > 0.0:
                assert (np.linalg.norm(out.linear - prev.linear)
                        <= base.max_linear_acceleration * out.dt + TOL)
                assert (np.linalg.norm(out.angular - prev.angular)
                        <= base.max_angular_acceleration * out.dt + TOL)
                if out.state is not SafetyState.ARMED:
                    assert np.linalg.norm(out.linear) <= np.linalg.norm(prev.linear) + TOL
            prev = out
        elif name == 'twist':
            kind, d = operation[3]
            stamp_value = t + d if kind == 'rel' else d
            decision = sup.on_twist(operation[1], operation[2], stamp_value, t)
            assert isinstance(decision.accepted, bool)
        elif name == 'arm':
            sup.arm(t)
        elif name == 'estop':
            sup.estop(t, 'fuzz')
        elif name == 'reset':
            sup.reset_estop(t)
        if sup.state is SafetyState.ARMED and before is not SafetyState.ARMED:
            assert name == 'arm'
        if before is SafetyState.ESTOP and name != 'reset':
            assert sup.state is SafetyState.ESTOP
