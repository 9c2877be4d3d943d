"""Parametrised edge cases for the ROS-free safety supervisor (checks C1-C8, C11, C12, C16, C21).

Time is stepped by hand (no sleeping). The "robot" in these tests is a perfect position follower
unless a test blocks a joint or adds lag; its measured state is fed back every cycle.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError, UnknownNameError
from noetra_ros.core.safety.supervisor import MIRROR_DEADBAND_RAD
from noetra_ros.core.safety import (
    available_profiles, BaseLimits, JointLimits, load_profile, SafetyProfile, SafetyState,
    SafetySupervisor, TwistSupervisor, WorkspaceBox)

REPO = Path(__file__).resolve().parents[1]
NAMES = ('j1', 'j2', 'j3')
LOWER = np.array([-2.0, -1.5, -2.5])
UPPER = np.array([2.0, 1.5, 2.5])
LIMITS = JointLimits.from_arrays(NAMES, LOWER, UPPER, [2.0, 3.0, 4.0], [100.0, 50.0, None])
MARGIN = 0.1
TOL = 1e-9
LINKS = (0.4, 0.3, 0.2)


def planar_fk(q: np.ndarray) -> np.ndarray:
    """Planar 3-link arm in the x-y plane at z = 0.5 (tool frame pose as 4x4)."""
    angles = np.cumsum(q)
    pose = np.eye(4)
    pose[0, 3] = sum(length * math.cos(a) for length, a in zip(LINKS, angles))
    pose[1, 3] = sum(length * math.sin(a) for length, a in zip(LINKS, angles))
    pose[2, 3] = 0.5
    return pose


def make_profile(**changes) -> SafetyProfile:
    base = SafetyProfile(name='test', position_margin_rad=MARGIN, soft_limit_band_rad=0.2,
                         velocity_scale=0.5, acceleration_limits=10.0,
                         sensor_timeouts={'joint_states': 0.1, 'default': 0.5})
    return base.replace(**changes)


class Rig:
    """A supervisor, a hand-stepped clock and a position-following robot."""

    def __init__(self, profile: SafetyProfile | None = None, fk=None, period: float = 0.004,
                 q0=(0.0, 0.0, 0.0), sensors: tuple[str, ...] = (), lag_cycles: int = 0,
                 limits: JointLimits = LIMITS) -> None:
        self.sup = SafetySupervisor(limits, profile or make_profile(), fk=fk, period_s=period,
                                    required_sensors=sensors)
        self.names = limits.names
        self.sensors = sensors
        self.dt = period
        self.t = 100.0
        self.q = np.array(q0, dtype=float)
        self.outs = []
        self.blocked: int | None = None
        self.lag = lag_cycles
        self._pending: list[np.ndarray] = []
        self.feed_js = True
        self.feed_sensors = True

    def feed(self) -> None:
        if self.feed_js:
            assert self.sup.on_joint_state(self.names, self.q, None, self.t, self.t)
        if self.feed_sensors:
            for s in self.sensors:
                assert self.sup.on_sensor(s, self.t, self.t)

    def start(self) -> None:
        self.feed()
        self.outs.append(self.sup.update(self.t))
        decision = self.sup.arm(self.t)
        assert decision, decision.reason

    def step(self, n: int = 1, cmd=None):
        out = None
        for _ in range(n):
            self.t += self.dt
            self.feed()
            if cmd is not None:
                cmd(self)
            out = self.sup.update(self.t)
            self.outs.append(out)
            if out.positions is not None:
                self._pending.append(np.array(out.positions))
                if len(self._pending) > self.lag:
                    new = self._pending.pop(0)
                    if self.blocked is not None:
                        new[self.blocked] = self.q[self.blocked]
                    self.q = new
        return out

    def positions(self, since: int = 0) -> np.ndarray:
        return np.array([o.positions for o in self.outs[since:]])

    def velocities(self, since: int = 0) -> np.ndarray:
        return np.array([o.velocities for o in self.outs[since:]])


def send_positions(target):
    target = np.array(target, dtype=float)
    return lambda rig: rig.sup.on_command_positions(rig.names, target, rig.t, rig.t)


def send_velocities(qd):
    qd = np.array(qd, dtype=float)
    return lambda rig: rig.sup.on_command_velocities(rig.names, qd, rig.t, rig.t)


def assert_step_limits(rig: Rig, since: int = 0, check_accel: bool = True) -> None:
    """|dq| <= v_max dt and |dv| <= a_max dt on every non-rebased cycle."""
    eff = rig.sup.effective_limits
    outs = rig.outs[since:]
    for prev, out in zip(outs, outs[1:]):
        if out.rebased or out.dt == 0.0 or out.positions is None or prev.positions is None:
            continue
        dq = np.abs(out.positions - prev.positions)
        assert np.all(dq <= eff.velocity * out.dt * (1 + 1e-9) + TOL), (out.time, dq)
        if check_accel and prev.dt > 0.0:
            dv = np.abs(out.velocities - prev.velocities)
            assert np.all(dv <= eff.acceleration * out.dt * (1 + 1e-6) + 1e-9), (out.time, dv)


# ---------------------------------------------------------------------------------------- C1
@pytest.mark.parametrize('period', [0.004, 0.01])
@pytest.mark.parametrize('kind', ['positions', 'trajectory', 'velocities'])
def test_c1_command_timeout_decelerates_within_braking_bound(period, kind):
    rig = Rig(period=period)
    rig.start()
    eff = rig.sup.effective_limits
    target = np.array([1.8, -1.3, 2.3])
    if kind == 'positions':
        cmd = send_positions(target)
    elif kind == 'velocities':
        cmd = send_velocities(0.9 * eff.velocity * np.array([1, -1, 1]))
    else:
        # Streamed chunks: each runs 0.1 s ahead of the current position at 0.9 v_max.
        vel = 0.9 * eff.velocity * np.array([1, -1, 1])

        def cmd(r):
            here = r.outs[-1].positions
            r.sup.on_command_trajectory(r.names, [0.0, 0.1], [here + r.dt * vel,
                                                              here + (0.1 + r.dt) * vel],
                                        None, r.t, r.t)
    rig.step(int(round(0.4 / period)), cmd)
    t_last = rig.t
    v_last = np.abs(rig.outs[-1].velocities)
    assert rig.sup.state is SafetyState.ARMED
    assert np.max(v_last / eff.velocity) > 0.5  # really moving when the source goes silent
    n_before = len(rig.outs)
    # Whatever the command kind (a trajectory too: its source died mid-chunk), the hold comes
    # within the command timeout of the source's last message.
    timeout = rig.sup.profile.command_timeout_s
    rig.step(int(round((timeout + 1.0) / period)))
    after = rig.outs[n_before:]
    hold_idx = next(i for i, o in enumerate(after) if o.state is SafetyState.HOLDING)
    assert after[hold_idx].reason == 'command timeout'
    assert after[hold_idx].time <= t_last + timeout + period + 1e-9
    assert rig.sup.counters['timeouts'] == 1
    # Excursion from the start of the hold is within the braking distance v^2/(2a) + v dt.
    q_hold_start = rig.outs[n_before + hold_idx - 1].positions
    v_hold = np.abs(rig.outs[n_before + hold_idx - 1].velocities)
    bound = v_hold ** 2 / (2 * eff.acceleration) + v_hold * period
    excursion = np.max(np.abs(rig.positions(n_before + hold_idx) - q_hold_start), axis=0)
    assert np.all(excursion <= bound + 1e-9), (excursion, bound)
    total = np.max(np.abs(rig.positions(n_before) - rig.outs[n_before - 1].positions), axis=0)
    vmax = eff.velocity
    assert np.all(total <= vmax * (timeout + period) + vmax ** 2 / (2 * eff.acceleration)
                  + 1e-9)
    # Comes to rest and stays there; no jump on the way.
    assert np.all(after[-1].velocities == 0.0)
    np.testing.assert_array_equal(after[-1].positions, after[-20].positions)
    assert_step_limits(rig)


def test_c1_fresh_commands_keep_the_supervisor_armed():
    rig = Rig()
    rig.start()
    rig.step(250, send_positions([0.5, 0.5, 0.5]))
    assert rig.sup.state is SafetyState.ARMED
    np.testing.assert_allclose(rig.outs[-1].positions, [0.5, 0.5, 0.5], atol=1e-9)
    assert rig.sup.counters.get('timeouts', 0) == 0


def test_c1_fresh_command_after_timeout_does_not_restart_motion():
    rig = Rig()
    rig.start()
    rig.step(50, send_positions([1.0, 1.0, 1.0]))
    rig.step(100)
    assert rig.sup.state is SafetyState.HOLDING
    rest = rig.outs[-1].positions.copy()
    rig.step(100, send_positions([-1.0, -1.0, -1.0]))
    np.testing.assert_array_equal(rig.outs[-1].positions, rest)
    assert rig.sup.counters['ignored_not_armed'] == 100


# ------------------------------------------------------------------- C1: the trajectory rule
@pytest.mark.parametrize('last_point', [4.0, 2.0 ** 31])
def test_c1_a_trajectory_sent_once_is_not_finished_after_its_source_goes_silent(last_point):
    """A controller that dies mid-chunk must not finish its chunk: a trajectory is followed
    for command_timeout_s after its stamp, however long it is (the fault injector's 4 s, and
    a point at 2^31 s that used to keep the supervisor ARMED)."""
    rig = Rig()
    rig.start()
    start = rig.outs[-1].positions.copy()
    goal = np.array([1.5, -1.2, 2.0])
    sent = rig.t + rig.dt
    n = len(rig.outs)

    def once(r):
        d = r.sup.on_command_trajectory(r.names, [0.0, last_point], [start, goal], None, r.t,
                                        r.t)
        assert d.accepted, d.reason
    rig.step(1, once)
    rig.step(250)  # 1 s of silence
    timeout = rig.sup.profile.command_timeout_s
    hold = next(o for o in rig.outs[n:] if o.state is SafetyState.HOLDING)
    assert hold.reason == 'command timeout'
    assert hold.time <= sent + timeout + rig.dt + 1e-9
    assert rig.sup.state is SafetyState.HOLDING and np.all(rig.outs[-1].velocities == 0.0)
    # It moved for the timeout and then braked (the C1 bound), a small part of the chunk.
    eff = rig.sup.effective_limits
    vmax, amax = eff.velocity, eff.acceleration
    moved = np.max(np.abs(rig.positions() - start), axis=0)
    assert np.all(moved <= vmax * (timeout + rig.dt) + vmax ** 2 / (2 * amax) + 1e-9)
    assert np.all(moved <= 0.05 * np.abs(goal - start))
    assert rig.sup.counters['timeouts'] == 1
    assert any('whole trajectories are not allowed' in e.detail for e in rig.sup.events)


def test_c1_whole_trajectories_run_to_their_end_only_where_the_profile_allows_them():
    rig = Rig(profile=make_profile(allow_whole_trajectories=True, trajectory_horizon_s=3.0))
    rig.start()
    start = rig.outs[-1].positions.copy()
    goal = np.array([1.0, -0.8, 1.2])
    sent = rig.t + rig.dt
    n = len(rig.outs)
    # A cubic path at rest at both ends (a planner's output; a linear one would overshoot the
    # velocity step at its end).
    rig.step(1, lambda r: r.sup.on_command_trajectory(r.names, [0.0, 2.0], [start, goal],
                                                      np.zeros((2, 3)), r.t, r.t))
    rig.step(int(2.0 / rig.dt) - 1)
    assert rig.sup.state is SafetyState.ARMED  # still following, 2 s after the only message
    rig.step(100)
    np.testing.assert_allclose(rig.outs[-1].positions, goal, atol=1e-6)
    hold = next(o for o in rig.outs[n:] if o.state is SafetyState.HOLDING)
    # JTC's rule for whole trajectories: cmd_timeout counts from the last point.
    timeout = rig.sup.profile.command_timeout_s
    assert sent + 2.0 + timeout - rig.dt <= hold.time <= sent + 2.0 + timeout + rig.dt + 1e-9
    assert hold.reason == 'command timeout'
    assert_step_limits(rig)


@pytest.mark.parametrize('last_point', [3.5, 2.0 ** 31])
def test_c1_a_whole_trajectory_beyond_the_horizon_is_refused_with_the_reason(last_point):
    rig = Rig(profile=make_profile(allow_whole_trajectories=True, trajectory_horizon_s=3.0))
    rig.start()
    rig.step(50, send_positions([1.0, 1.0, 1.0]))  # moving
    here = rig.outs[-1].positions.copy()
    n = len(rig.outs)
    d = rig.sup.on_command_trajectory(NAMES, [0.0, last_point], [here, [-1.0, -1.0, -1.0]],
                                      None, rig.t, rig.t)
    assert not d.accepted and '(too_long)' in d.reason
    assert 'trajectory_horizon_s 3 s' in d.reason
    assert rig.sup.state is SafetyState.HOLDING
    assert rig.sup.reason.startswith('trajectory refused (too_long): last point')
    assert rig.sup.counters['rejected_too_long'] == 1
    rig.step(150, send_positions([1.0, 1.0, 1.0]))  # not followed until an explicit arm
    speeds = np.abs(rig.velocities(n))
    assert np.all(np.diff(speeds, axis=0) <= 1e-12) and np.all(speeds[-1] == 0.0)
    assert_step_limits(rig)


# ---------------------------------------------------------------------------------------- C2
@pytest.mark.parametrize('stamp_of, code', [
    (lambda t: 0.0, 'zero_stamp'),
    (lambda t: t - 0.2, 'stale_stamp'),
    (lambda t: t - 0.1001, 'stale_stamp'),
    (lambda t: t + 0.05, 'future_stamp'),
    (lambda t: float('nan'), 'invalid_stamp'),
    (lambda t: float('inf'), 'invalid_stamp'),
    (lambda t: -1.0, 'invalid_stamp'),
    (lambda t: 'yesterday', 'invalid_stamp'),
])
@pytest.mark.parametrize('kind', ['positions', 'trajectory', 'velocities'])
def test_c2_bad_stamps_are_rejected_and_never_actuated(stamp_of, code, kind):
    rig = Rig()
    rig.start()
    rest = rig.outs[-1].positions.copy()

    def bad(r):
        stamp = stamp_of(r.t)
        if kind == 'positions':
            d = r.sup.on_command_positions(r.names, [1.0, 1.0, 1.0], stamp, r.t)
        elif kind == 'velocities':
            d = r.sup.on_command_velocities(r.names, [1.0, 1.0, 1.0], stamp, r.t)
        else:
            d = r.sup.on_command_trajectory(r.names, [0.1], [[1.0, 1.0, 1.0]], None, stamp, r.t)
        assert not d.accepted and code in d.reason

    rig.step(1, bad)
    rig.step(30)
    assert rig.sup.counters[f'rejected_{code}'] == 1
    assert rig.sup.state is SafetyState.ARMED  # a bad stamp is dropped, not a fault
    assert np.all(rig.positions() == rest)


def test_c2_edge_of_age_and_future_tolerance_is_accepted():
    rig = Rig()
    rig.start()
    prof = rig.sup.profile
    assert rig.sup.on_command_positions(NAMES, [0.1, 0, 0], rig.t - prof.max_command_age_s,
                                        rig.t)
    assert rig.sup.on_command_positions(NAMES, [0.1, 0, 0], rig.t + prof.future_tolerance_s,
                                        rig.t)


def test_c2_out_of_order_command_is_rejected():
    rig = Rig()
    rig.start()
    assert rig.sup.on_command_positions(NAMES, [0.1, 0, 0], rig.t, rig.t)
    d = rig.sup.on_command_positions(NAMES, [0.5, 0, 0], rig.t - 0.01, rig.t)
    assert not d.accepted
    assert rig.sup.counters['rejected_out_of_order'] == 1


# ---------------------------------------------------------------------------------------- C3
NAN, INF = float('nan'), float('inf')


@pytest.mark.parametrize('send', [
    lambda r: r.sup.on_command_positions(r.names, [NAN, 0.0, 0.0], r.t, r.t),
    lambda r: r.sup.on_command_positions(r.names, [0.2, INF, 0.1], r.t, r.t),
    lambda r: r.sup.on_command_positions(None, [0.2, 0.1, -INF], r.t, r.t),
    lambda r: r.sup.on_command_velocities(r.names, [0.0, NAN, 0.0], r.t, r.t),
    lambda r: r.sup.on_command_trajectory(r.names, [0.1, 0.2], [[0, 0, 0], [0, NAN, 0]], None,
                                          r.t, r.t),
    lambda r: r.sup.on_command_trajectory(r.names, [0.1, NAN], [[0, 0, 0], [0, 0, 0]], None,
                                          r.t, r.t),
    lambda r: r.sup.on_command_trajectory(r.names, [0.1, 0.2], [[0, 0, 0], [0, 0, 0]],
                                          [[0, 0, 0], [INF, 0, 0]], r.t, r.t),
], ids=['pos-nan', 'pos-inf', 'pos-neg-inf-unnamed', 'vel-nan', 'traj-pos-nan', 'traj-time-nan',
        'traj-vel-inf'])
def test_c3_partial_nan_rejects_whole_message_and_holds(send):
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, -1.0, 2.0]))  # moving at speed
    moving = np.abs(rig.outs[-1].velocities).max()
    assert moving > 0.3
    n = len(rig.outs)
    rig.step(1, lambda r: (send(r), None)[1])
    rig.step(200)
    assert rig.sup.counters['rejected_nonfinite'] == 1
    assert rig.sup.state is SafetyState.HOLDING
    assert rig.sup.reason == 'non-finite command'
    pos = rig.positions()
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(rig.velocities()))
    # Smooth stop: speed never grows after the rejection, within accel limits, then rest.
    speeds = np.abs(rig.velocities(n))
    assert np.all(np.diff(speeds, axis=0) <= 1e-12)
    assert np.all(speeds[-1] == 0.0)
    assert_step_limits(rig)


def test_c3_nonfinite_joint_state_is_rejected_and_goes_stale():
    rig = Rig()
    rig.start()
    rig.feed_js = False

    def nan_state(r):
        d = r.sup.on_joint_state(r.names, [0.0, NAN, 0.0], None, r.t, r.t)
        assert not d.accepted

    rig.step(40, nan_state)
    assert rig.sup.counters['joint_state_rejected_nonfinite'] == 40
    assert rig.sup.state is SafetyState.HOLDING
    assert 'joint_states stale' in rig.sup.reason


# ---------------------------------------------------------------------------------------- C4
@pytest.mark.parametrize('send, code', [
    (lambda r: r.sup.on_command_positions(('j2', 'j1', 'j3'), [0, 0, 0], r.t, r.t), 'names'),
    (lambda r: r.sup.on_command_positions(('j1', 'j2', 'jX'), [0, 0, 0], r.t, r.t), 'names'),
    (lambda r: r.sup.on_command_positions(('j1', 'j2'), [0, 0], r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_positions(('j1', 'j2', 'j3', 'j4'), [0, 0, 0, 0], r.t, r.t),
     'count'),
    (lambda r: r.sup.on_command_positions(None, [0, 0], r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_positions(None, [0, 0, 0, 0], r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_positions(r.names, [0, 0], r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_positions('j1j2j3', [0, 0, 0], r.t, r.t), 'malformed'),
    (lambda r: r.sup.on_command_positions(r.names, [[0, 0, 0]], r.t, r.t), 'malformed'),
    (lambda r: r.sup.on_command_positions(r.names, ['a', 0, 0], r.t, r.t), 'malformed'),
    (lambda r: r.sup.on_command_velocities(('j3', 'j2', 'j1'), [0, 0, 0], r.t, r.t), 'names'),
    (lambda r: r.sup.on_command_trajectory(r.names, [0.1], [[0, 0]], None, r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_trajectory(r.names, [0.1, 0.2], [[0, 0, 0]], None, r.t, r.t),
     'malformed'),
    (lambda r: r.sup.on_command_trajectory(r.names, [0.2, 0.1], [[0, 0, 0], [0, 0, 0]], None,
                                           r.t, r.t), 'malformed'),
    (lambda r: r.sup.on_command_trajectory(r.names, [0.1, 0.2], [[0, 0, 0], [0, 0, 0]],
                                           [[0, 0], [0, 0]], r.t, r.t), 'count'),
    (lambda r: r.sup.on_command_trajectory(r.names, [], [], None, r.t, r.t), 'malformed'),
], ids=['order', 'unknown', 'missing', 'extra', 'unnamed-short', 'unnamed-long',
        'names-values-mismatch', 'names-str', 'values-2d', 'values-text', 'vel-order',
        'traj-width', 'traj-times-count', 'traj-times-order', 'traj-vel-width', 'traj-empty'])
def test_c4_wrong_names_order_or_count_rejects_and_faults(send, code):
    rig = Rig()
    rig.start()
    rig.step(40, send_positions([1.0, 1.0, 1.0]))
    n = len(rig.outs)
    rig.step(1, lambda r: (send(r), None)[1])
    rig.step(150, send_positions([1.0, 1.0, 1.0]))  # later valid commands are not followed
    assert rig.sup.counters[f'rejected_{code}'] == 1
    assert rig.sup.state is SafetyState.FAULT
    assert f'({code})' in rig.sup.reason
    speeds = np.abs(rig.velocities(n))
    assert np.all(np.diff(speeds, axis=0) <= 1e-12) and np.all(speeds[-1] == 0.0)
    assert_step_limits(rig)


def test_c4_unnamed_command_in_joint_order_is_accepted():
    rig = Rig()
    rig.start()
    assert rig.sup.on_command_positions(None, [0.1, 0.2, 0.3], rig.t, rig.t)
    assert rig.sup.state is SafetyState.ARMED


def test_c4_joint_state_in_any_order_with_extra_joints_is_accepted():
    rig = Rig()
    rig.feed_js = False
    d = rig.sup.on_joint_state(('finger', 'j3', 'j1', 'j2'), [0.04, 0.3, 0.1, 0.2], None,
                               rig.t, rig.t)
    assert d.accepted
    np.testing.assert_array_equal(rig.sup.measured_positions, [0.1, 0.2, 0.3])
    d = rig.sup.on_joint_state(('j1', 'j2'), [0.0, 0.0], None, rig.t, rig.t)
    assert not d.accepted and 'missing' in d.reason


# ---------------------------------------------------------------------------------------- C5
@pytest.mark.parametrize('command', [
    send_positions([5.0, 5.0, 5.0]),
    send_positions([-5.0, -5.0, -5.0]),
    send_positions([1e300, -1e300, 1e308]),
    send_positions([1.99, -1.49, 2.49]),  # inside the URDF range, inside the margin band
    send_velocities([1.0, -1.5, 2.0]),
    send_velocities([-1e300, 1e300, -1e300]),
    lambda r: r.sup.on_command_trajectory(r.names, [0.0, 1.0, 2.0],
                                          [[0, 0, 0], [3, -3, 3], [-3, 3, -3]],
                                          [[0, 0, 0], [10, -10, 10], [0, 0, 0]], r.t, r.t),
], ids=['above', 'below', 'huge', 'in-band', 'vel', 'vel-huge', 'traj'])
def test_c5_targets_beyond_limit_minus_margin_are_clamped(command):
    rig = Rig()
    rig.start()
    rig.step(1000, command)  # 4 s of pushing
    pos = rig.positions()
    assert np.all(np.isfinite(pos))
    assert np.all(pos >= LOWER + MARGIN - TOL) and np.all(pos <= UPPER - MARGIN + TOL)
    assert_step_limits(rig)


@pytest.mark.parametrize('target, expected', [
    ([5.0, 5.0, 5.0], UPPER - MARGIN),
    ([-5.0, -5.0, -5.0], LOWER + MARGIN),
])
def test_c5_clamped_target_is_reached_at_the_safe_bound(target, expected):
    rig = Rig()
    rig.start()
    rig.step(1000, send_positions(target))
    np.testing.assert_allclose(rig.outs[-1].positions, expected, atol=1e-6)
    assert rig.sup.counters['clamped_position'] == 1000


def test_c5_armed_inside_the_margin_band_only_moves_back_inward():
    q0 = (1.95, -1.45, 0.0)  # beyond lower/upper + margin, inside the URDF range
    rig = Rig(q0=q0)
    rig.start()
    assert np.array_equal(rig.step(1).positions, q0)
    rig.step(200, send_positions([2.5, -2.5, 0.0]))
    pos = rig.positions()
    assert np.all(pos[:, 0] <= 1.95 + TOL) and np.all(pos[:, 1] >= -1.45 - TOL)
    rig.step(300, send_positions([0.0, 0.0, 0.0]))
    rig.step(500, send_positions([2.5, -2.5, 0.0]))
    late = rig.positions(len(rig.outs) - 500)
    assert np.all(late[:, 0] <= UPPER[0] - MARGIN + TOL)
    assert np.all(late[:, 1] >= LOWER[1] + MARGIN - TOL)
    assert_step_limits(rig)


# ---------------------------------------------------------------------------------------- C6
@pytest.mark.parametrize('period', [0.004, 0.01])
@pytest.mark.parametrize('jump', [0.05, 0.5, 3.0])
def test_c6_step_and_chunk_splice_respect_velocity_and_accel(period, jump):
    rig = Rig(period=period)
    rig.start()
    poses = [np.array([jump, -jump, jump]) / 2, np.array([-jump, jump, -jump]) / 2]
    splice = max(1, int(round(0.06 / period)))
    for k in range(12):
        rig.step(splice, send_positions(poses[k % 2]))
    # Trajectory chunks whose first point jumps away from the previous chunk's end.
    for k in range(6):
        start = poses[k % 2]
        end = -start

        def chunk(r, start=start, end=end):
            r.sup.on_command_trajectory(r.names, [0.0, 0.05, 0.1], [start, (start + end) / 2,
                                                                     end], None, r.t, r.t)
        rig.step(splice, chunk)
    assert rig.sup.state is SafetyState.ARMED
    assert_step_limits(rig)
    if jump >= 0.5:
        assert rig.sup.counters['limited_accel'] > 0


def test_c6_velocity_limit_is_counted_on_a_big_jump():
    rig = Rig()
    rig.start()
    rig.step(300, send_positions([1.5, 1.2, 2.0]))
    assert rig.sup.counters['limited_velocity'] > 0
    vmax = rig.sup.effective_limits.velocity
    assert np.isclose(np.max(np.abs(rig.velocities()) / vmax), 1.0)


def test_jerk_limit_holds_away_from_the_bounds_and_the_target_is_reached():
    jerk = 100.0
    rig = Rig(profile=make_profile(jerk_limit=jerk))
    rig.start()
    rig.step(500, send_positions([1.0, -0.5, 0.3]))
    rig.step(1000, send_positions([-1.0, 1.0, 0.0]))
    vel = rig.velocities(1)
    acc = np.diff(vel, axis=0) / rig.dt
    assert np.max(np.abs(np.diff(acc, axis=0))) <= jerk * rig.dt * (1 + 1e-6) + 1e-9
    np.testing.assert_allclose(rig.outs[-1].positions, [-1.0, 1.0, 0.0], atol=1e-9)


# ------------------------------------------------------------------------------------ C7 / C8
def test_c7_joint_state_stall_holds_within_the_source_timeout():
    rig = Rig()
    rig.start()
    rig.step(50, send_positions([1.0, 1.0, 1.0]))
    last_sample = rig.t
    rig.feed_js = False
    n = len(rig.outs)
    rig.step(60, send_positions([1.0, 1.0, 1.0]))
    hold = next(o for o in rig.outs[n:] if o.state is SafetyState.HOLDING)
    assert hold.reason == 'joint_states stale'
    assert hold.time <= last_sample + 0.1 + rig.dt + 1e-9
    assert_step_limits(rig)


def test_c7_required_camera_stall_holds_and_blocks_arming():
    rig = Rig(sensors=('wrist_camera',))
    rig.start()
    rig.step(50, send_positions([1.0, 1.0, 1.0]))
    last_frame = rig.t
    rig.feed_sensors = False
    n = len(rig.outs)
    rig.step(200, send_positions([1.0, 1.0, 1.0]))
    hold = next(o for o in rig.outs[n:] if o.state is SafetyState.HOLDING)
    assert hold.reason == 'wrist_camera stale'
    assert last_frame + 0.25 < hold.time <= last_frame + 0.5 + rig.dt + 1e-9
    d = rig.sup.arm(rig.t)
    assert not d.accepted and 'wrist_camera' in d.reason


def run_with_latency(latency: float, cycles: int = 5):
    """Joint states arrive `latency` seconds after their stamp, every cycle."""
    sup = SafetySupervisor(LIMITS, make_profile())
    t, dt, q = 100.0, 0.004, np.zeros(3)
    sup.on_joint_state(NAMES, q, None, t - latency, t)
    sup.update(t)
    armed = sup.arm(t).accepted
    outs = []
    for _ in range(cycles):
        t += dt
        sup.on_joint_state(NAMES, q, None, t - latency, t)
        sup.on_command_positions(NAMES, [1.0, 1.0, 1.0], t, t)
        outs.append(sup.update(t))
        if outs[-1].positions is not None:
            q = np.array(outs[-1].positions)
    return sup, armed, outs


def test_c8_latency_slows_down_then_stops_and_logs_a_missed_deadline():
    scales = {}
    for latency in (0.02, 0.06, 0.08):
        sup, armed, outs = run_with_latency(latency)
        assert armed and sup.state is SafetyState.ARMED
        scales[latency] = outs[-1].speed_scale
        assert sup.counters.get('deadline_missed', 0) == (0 if latency < 0.05 else 1)
    assert scales[0.02] == 1.0
    np.testing.assert_allclose([scales[0.06], scales[0.08]], [0.8, 0.4])
    sup, armed, outs = run_with_latency(0.12)
    assert not armed and sup.state is SafetyState.HOLDING
    assert sup.counters['joint_state_rejected_stale_stamp'] == 6  # each too old on arrival


# --------------------------------------------------------------------------------------- C11
@pytest.mark.parametrize('joint', [0, 1, 2])
def test_c11_blocked_joint_faults_and_holds_at_the_measured_position(joint):
    rig = Rig()
    rig.start()
    rig.blocked = joint
    target = np.array([1.0, -1.0, 1.5])
    rig.step(200, send_positions(target))
    fault_idx = next(i for i, o in enumerate(rig.outs) if o.state is SafetyState.FAULT)
    fault = rig.outs[fault_idx]
    assert fault.rebased and f'tracking error {NAMES[joint]}' in fault.reason
    # Tripped promptly: the command had run ahead of the stuck joint by no more than the
    # tolerance plus what the lag window allows.
    stuck = rig.outs[0].positions[joint]
    ran_ahead = abs(rig.outs[fault_idx - 1].positions[joint] - stuck)
    window_travel = rig.sup.effective_limits.velocity[joint] * (
        rig.sup.profile.tracking_window_s + 2 * rig.dt)
    assert 0.1 < ran_ahead <= 0.1 + window_travel
    # After the fault the command stops, then walks back to the measured position no faster
    # than v_max * dt per cycle (no jump), and stays there; commands are not followed.
    after = np.array(rig.positions(fault_idx - 1))
    steps = np.abs(np.diff(after, axis=0))
    assert np.all(steps <= rig.sup.effective_limits.velocity * rig.dt + 1e-12)
    np.testing.assert_allclose(after[-1], rig.q, atol=2e-3)
    assert rig.sup.counters['tracking_faults'] == 1
    assert not rig.outs[-1].active
    # When the obstruction lets go and the joint springs back, the output follows the robot
    # instead of pulling it anywhere; nothing moves again until an explicit arm.
    rig.blocked = None
    rig.q[joint] += 0.05
    rig.step(40, send_positions(target))
    np.testing.assert_allclose(rig.outs[-1].positions, rig.q, atol=2e-3)
    assert rig.sup.state is SafetyState.FAULT


def test_c11_controller_lag_inside_the_window_is_not_a_fault():
    rig = Rig(lag_cycles=10)  # 40 ms behind the commands
    rig.start()
    rig.step(600, send_positions([1.5, -1.2, 2.0]))
    assert rig.sup.state is SafetyState.ARMED
    assert rig.sup.counters.get('tracking_faults', 0) == 0


# --------------------------------------------------------------------------------------- C12
def test_c12_first_output_after_arming_equals_the_measured_state():
    rig = Rig(q0=(0.3, -0.2, 0.1))
    rig.feed()
    held = rig.sup.update(rig.t)
    assert held.state is SafetyState.HOLDING and held.rebased and not held.active
    rig.q = np.array([0.35, -0.25, 0.12])  # moved by something else while not armed
    for _ in range(40):  # never armed: the output follows the measurement, rate-limited
        rig.t += rig.dt
        rig.feed()
        mirrored = rig.sup.update(rig.t)
    # Within the dead band that keeps a steady servo error from becoming a creeping command.
    np.testing.assert_allclose(mirrored.positions, rig.q, atol=MIRROR_DEADBAND_RAD)
    assert rig.sup.arm(rig.t)
    rig.sup.on_command_positions(NAMES, [1.5, 1.0, 2.0], rig.t, rig.t)  # before the update
    first = rig.sup.update(rig.t + rig.dt)
    assert first.rebased and first.state is SafetyState.ARMED
    np.testing.assert_array_equal(first.positions, rig.q)
    np.testing.assert_array_equal(first.velocities, 0.0)


@pytest.mark.parametrize('blocker, expected', [
    ('no_joint_states', 'joint_states not fresh'),
    ('stale_joint_states', 'joint_states not fresh'),
    ('estop', 'estop latched'),
    ('inhibit', 'inhibit qos'),
    ('camera', 'sensor scene_camera not fresh'),
    ('beyond_urdf', 'beyond URDF limits'),
])
def test_c12_arm_is_refused_when_preconditions_fail(blocker, expected):
    rig = Rig(sensors=('scene_camera',))
    t = rig.t
    if blocker != 'no_joint_states':
        stamp = t - 0.5 if blocker == 'stale_joint_states' else t
        q = [2.5, 0.0, 0.0] if blocker == 'beyond_urdf' else [0.0, 0.0, 0.0]
        rig.sup.on_joint_state(NAMES, q, None, stamp, stamp)
    if blocker != 'camera':
        rig.sup.on_sensor('scene_camera', t, t)
    if blocker == 'estop':
        rig.sup.estop(t, 'operator')
    if blocker == 'inhibit':
        rig.sup.set_inhibit(t, 'qos', 'incompatible QoS on /joint_states')
    d = rig.sup.arm(t)
    assert not d.accepted and expected in d.reason
    assert rig.sup.state is not SafetyState.ARMED
    assert rig.sup.counters['arm_refused'] == 1


def test_c12_arm_is_refused_while_still_decelerating():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, 1.0, 2.0]))
    rig.sup.hold(rig.t, 'operator pause')
    rig.step(2)
    d = rig.sup.arm(rig.t)
    assert not d.accepted and 'still decelerating' in d.reason
    rig.step(200)
    assert rig.sup.arm(rig.t)


def test_c12_estop_latches_and_reset_never_restarts_motion():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, 1.0, 2.0]))
    rig.sup.estop(rig.t, 'operator')
    n = len(rig.outs)
    rig.step(150, send_positions([1.5, 1.0, 2.0]))
    assert rig.sup.state is SafetyState.ESTOP
    speeds = np.abs(rig.velocities(n))
    assert np.all(np.diff(speeds, axis=0) <= 1e-12) and np.all(speeds[-1] == 0.0)
    assert not rig.sup.arm(rig.t).accepted
    assert rig.sup.reset_estop(rig.t).accepted
    assert rig.sup.state is SafetyState.HOLDING
    rest = rig.outs[-1].positions.copy()
    rig.step(200, send_positions([-1.0, -1.0, -1.0]))  # fresh commands, no arm yet
    assert np.all(rig.positions(len(rig.outs) - 200) == rest)
    assert rig.sup.arm(rig.t).accepted
    rig.step(800, send_positions([-1.0, -1.0, -1.0]))
    np.testing.assert_allclose(rig.outs[-1].positions, [-1.0, -1.0, -1.0], atol=1e-9)
    assert_step_limits(rig)


def test_c12_no_output_before_the_first_joint_state():
    rig = Rig()
    out = rig.sup.update(rig.t)
    assert out.positions is None and not out.has_command
    assert not rig.sup.arm(rig.t).accepted


@pytest.mark.parametrize('jerk', [None, 300.0])
@pytest.mark.parametrize('period', [0.004, 0.02, 0.05])
@pytest.mark.parametrize('speed_fraction', [0.3, 1.0])
def test_c12_estop_moves_the_output_at_most_the_braking_distance(speed_fraction, period, jerk):
    """The e-stop bound of docs/SAFETY.md: after the request the output still moves, braking at
    a_max, at most v^2 / (2 a_max) per joint (v: its speed at the request); with a jerk limit
    j the deceleration ramps up first, adding at most v (dt + a_max / j)."""
    rig = Rig(period=period, profile=make_profile(jerk_limit=jerk))
    rig.start()
    eff = rig.sup.effective_limits
    wanted = speed_fraction * eff.velocity * np.array([1.0, -1.0, 1.0])
    rig.step(int(round(0.3 / period)), send_velocities(wanted))
    at_request = rig.outs[-1]
    v = np.abs(at_request.velocities)
    assert np.all(v > 0.25 * eff.velocity)  # really moving
    rig.sup.estop(rig.t, 'operator')
    n = len(rig.outs)
    rig.step(int(round(1.0 / period)), send_velocities(wanted))  # the source keeps sending
    after = rig.positions(n)
    moved = np.max(np.abs(after - at_request.positions), axis=0)
    amax = eff.acceleration
    bound = v * v / (2 * amax)
    if jerk is not None:
        bound = bound + v * (period + amax / jerk)
    assert np.all(moved <= bound + 1e-12), (moved, bound)
    if jerk is None:
        # ... and that is the design's real figure: discrete braking at a_max covers it less
        # at most half a cycle of travel; it takes ceil(v / (a_max dt)) cycles.
        assert np.all(moved >= bound - v * period / 2 - 1e-12)
        moving = np.any(rig.velocities(n) != 0.0, axis=1)
        assert moving.sum() <= int(np.max(np.ceil(v / (amax * period))))
    assert np.all(rig.outs[-1].velocities == 0.0) and rig.sup.state is SafetyState.ESTOP


# --------------------------------------------------------------------------------------- C16
def test_c16_clock_backwards_holds_resets_and_needs_fresh_data():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, 1.0, 2.0]))
    before = rig.outs[-1].positions.copy()
    out = rig.sup.update(rig.t - 1.0)
    assert out.state is SafetyState.HOLDING and out.reason == 'clock backwards'
    np.testing.assert_array_equal(out.positions, before)
    np.testing.assert_array_equal(out.velocities, 0.0)
    assert out.dt == 0.0
    assert rig.sup.counters['clock_backwards'] == 1
    # The joint state from the old timeline is gone: arming needs a new sample.
    assert not rig.sup.arm(rig.t - 1.0).accepted
    rig.t -= 1.0
    rig.step(5)
    assert rig.sup.arm(rig.t).accepted


def test_c16_stalled_clock_holds_after_the_command_timeout_worth_of_cycles():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, 1.0, 2.0]))
    before = rig.outs[-1].positions.copy()
    stall = int(math.ceil(rig.sup.profile.command_timeout_s / rig.dt))
    outs = [rig.sup.update(rig.t) for _ in range(stall)]
    assert all(np.array_equal(o.positions, before) and o.dt == 0.0 for o in outs)
    assert all(o.state is SafetyState.ARMED for o in outs[:-1])
    assert outs[-1].state is SafetyState.HOLDING and outs[-1].reason == 'clock stalled'


@pytest.mark.parametrize('bad_now', [float('nan'), float('inf'), None, 'noon'])
def test_c16_invalid_time_holds_without_raising(bad_now):
    rig = Rig()
    rig.start()
    rig.step(20, send_positions([1.0, 1.0, 1.0]))
    out = rig.sup.update(bad_now)
    assert out.state is SafetyState.HOLDING and out.dt == 0.0
    assert np.all(np.isfinite(out.positions))
    assert rig.sup.counters['clock_invalid'] == 1


def test_c16_forward_jump_is_capped_and_logged():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.5, 1.0, 2.0]))
    prev = rig.outs[-1]
    out = rig.sup.update(rig.t + 0.2)  # 50 periods late; commands now stale
    dq = np.abs(out.positions - prev.positions)
    assert np.all(dq <= rig.sup.effective_limits.velocity * 2 * rig.dt + TOL)
    assert rig.sup.counters['cycle_overrun'] == 1
    assert out.state is SafetyState.HOLDING


# --------------------------------------------------------------------------------------- C21
RELAXING = {
    'velocity_scale': dict(velocity_scale=0.8),
    'margin': dict(position_margin_rad=0.05),
    'soft_band': dict(soft_limit_band_rad=0.1),
    'accel': dict(acceleration_limits=20.0),
    'accel_one_joint': dict(acceleration_limits={'j2': 12.0, 'default': 10.0}),
    'command_timeout': dict(command_timeout_s=0.5),
    'command_age': dict(max_command_age_s=0.5),
    'future': dict(future_tolerance_s=0.5),
    'js_timeout': dict(sensor_timeouts={'joint_states': 0.3}),
    'camera_timeout': dict(sensor_timeouts={'default': 2.0}),
    'tracking': dict(tracking_error_tolerance_rad=0.5),
    'tracking_window': dict(tracking_window_s=0.5),
    'base': dict(base=BaseLimits(max_linear_velocity=2.0)),
    'slowdown_fraction': dict(sensor_slowdown_fraction=1.0),
    'whole_trajectories': dict(allow_whole_trajectories=True),
    'trajectory_horizon': dict(trajectory_horizon_s=50.0),
}


@pytest.mark.parametrize('change', list(RELAXING.values()), ids=list(RELAXING))
def test_c21_relaxing_limits_is_rejected_while_armed(change):
    rig = Rig()
    rig.start()
    old = rig.sup.profile
    d = rig.sup.set_profile(old.replace(**change), rig.t)
    assert not d.accepted and 'read-only while ARMED' in d.reason
    assert rig.sup.profile is old and rig.sup.state is SafetyState.ARMED
    assert rig.sup.counters['rejected_relaxation'] == 1
    rig.sup.hold(rig.t, 'operator')
    assert rig.sup.set_profile(old.replace(**change), rig.t).accepted


CART = dict(workspace=WorkspaceBox((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0)), max_tool_speed=0.25)


@pytest.mark.parametrize('change', [
    dict(workspace=WorkspaceBox((-1.2, -1.0, 0.0), (1.0, 1.0, 1.0))),
    dict(workspace=None),
    dict(max_tool_speed=1.0),
    dict(max_tool_speed=None),
    dict(workspace_slowdown_m=0.0),
], ids=['box-bigger', 'box-removed', 'tool-faster', 'tool-unlimited', 'no-slowdown'])
def test_c21_relaxing_cartesian_limits_is_rejected_while_armed(change):
    rig = Rig(profile=make_profile(**CART), fk=planar_fk)
    rig.start()
    d = rig.sup.set_profile(rig.sup.profile.replace(**change), rig.t)
    assert not d.accepted


def test_c21_tightening_while_armed_is_accepted_and_slows_down_smoothly():
    rig = Rig()
    rig.start()
    rig.step(60, send_positions([1.8, -1.3, 2.3]))
    fast = np.abs(rig.outs[-1].velocities)
    old_vmax = rig.sup.effective_limits.velocity
    np.testing.assert_allclose(fast[0], old_vmax[0])  # j1 at its speed limit
    d = rig.sup.set_profile(rig.sup.profile.replace(velocity_scale=0.2), rig.t)
    assert d.accepted and rig.sup.state is SafetyState.ARMED
    n = len(rig.outs)
    rig.step(300, send_positions([1.8, -1.3, 2.3]))
    eff = rig.sup.effective_limits
    vel = rig.velocities(n - 1)
    # No jump: the speed comes down at a_max ...
    assert np.all(np.abs(np.diff(vel, axis=0)) <= eff.acceleration * rig.dt * (1 + 1e-9))
    # ... and is inside the new limit once it had the time to get there.
    settle = int(np.ceil(np.max((fast - eff.velocity) / eff.acceleration) / rig.dt)) + 1
    assert np.all(np.abs(vel[settle:]) <= eff.velocity + TOL)
    assert np.any(np.abs(vel[1]) > eff.velocity)  # it really was faster right after


def test_c21_update_limits_relax_rejected_tighten_accepted():
    rig = Rig()
    rig.start()
    effort = [100.0, 50.0, None]
    looser = JointLimits.from_arrays(NAMES, LOWER - 0.5, UPPER, [2.0, 3.0, 4.0], effort)
    tighter = JointLimits.from_arrays(NAMES, LOWER + 0.2, UPPER - 0.2, [1.0, 3.0, 4.0], effort)
    assert not rig.sup.update_limits(looser, rig.t).accepted
    assert rig.sup.update_limits(tighter, rig.t).accepted
    assert rig.sup.limits is tighter
    rig.step(600, send_positions([5.0, 5.0, 5.0]))
    assert np.all(rig.positions() <= UPPER - 0.2 - MARGIN + TOL)


# ------------------------------------------------------------------------- Cartesian limits
def test_workspace_box_and_tool_speed_with_planar_fk():
    prof = make_profile(workspace=WorkspaceBox((-0.5, -0.8, 0.0), (0.85, 0.8, 1.0)),
                        max_tool_speed=0.25, workspace_slowdown_m=0.05)
    rig = Rig(profile=prof, fk=planar_fk, q0=(0.5, 0.5, 0.5))
    rig.start()
    # The straight arm reaches x = 0.9: outside. 4 s at the tool speed limit get to the face.
    rig.step(1000, send_positions([0.0, 0.0, 0.0]))
    rig.step(400, send_positions([1.5, 1.0, 2.0]))
    tool = np.array([o.tool_position for o in rig.outs])
    assert np.all(tool[:, 0] <= 0.85 + TOL)
    assert tool[:, 0].max() > 0.85 - 0.005  # it really pressed against the face
    speeds = np.linalg.norm(np.diff(tool, axis=0), axis=1) / rig.dt
    assert np.all(speeds <= 0.25 * (1 + 1e-6))
    counters = rig.sup.counters
    assert counters['tool_speed_limited'] > 0
    assert counters.get('workspace_slowdown', 0) + counters.get('workspace_limited', 0) > 0
    # The tool limits choose between accelerating and braking steps: a_max holds as well.
    assert_step_limits(rig)
    assert counters.get('cartesian_overrode_accel', 0) == 0


def test_fk_failure_faults_instead_of_raising():
    def broken_fk(q):
        if q[0] > 0.2:
            raise RuntimeError('singular')
        return planar_fk(q)

    rig = Rig(profile=make_profile(max_tool_speed=0.5), fk=broken_fk)
    rig.start()
    rig.step(300, send_positions([1.0, 0.0, 0.0]))
    assert np.all(rig.positions()[:, 0] <= 0.2 + TOL)
    assert rig.sup.counters['fk_error'] > 0


def test_profile_with_cartesian_limits_requires_fk():
    with pytest.raises(ConfigError, match='fk'):
        SafetySupervisor(LIMITS, make_profile(max_tool_speed=0.25))


def test_collaborative_profile_on_the_lrmate200id_model():
    robot_model = pytest.importorskip('noetra_ros.core.robot_model')
    model = robot_model.RobotModel.from_urdf(REPO / 'urdf' / 'fanuc_lrmate200id.urdf')
    prof = load_profile('collaborative')
    sup = SafetySupervisor.from_robot_model(model, prof)
    assert sup.joint_names == model.joint_names
    names = model.joint_names
    q = np.array([0.0, 0.3, 0.2, 0.0, -0.6, 0.0])
    t, dt = 10.0, 0.004
    sup.on_joint_state(names, q, None, t, t)
    sup.update(t)
    assert sup.arm(t)
    tool = []
    for k in range(750):
        t += dt
        sup.on_joint_state(names, q, None, t, t)
        target = [1.2, 0.8, 0.6, 1.0, -0.2, 2.0] if k < 400 else [-1.2, -0.2, 0.0, 0, -1.0, 0]
        sup.on_command_positions(names, target, t, t)
        out = sup.update(t)
        q = np.array(out.positions)
        tool.append(out.tool_position)
    tool = np.array(tool)
    speeds = np.linalg.norm(np.diff(tool, axis=0), axis=1) / dt
    assert speeds.max() <= 0.25 * (1 + 1e-6)
    box = prof.workspace
    assert all(box.contains(p, tol=1e-9) for p in tool)
    assert sup.counters['tool_speed_limited'] > 0
    assert sup.state is SafetyState.ARMED


# --------------------------------------------------------------------------- profiles/limits
def test_shipped_profiles_load_and_differ_as_documented():
    assert {'industrial', 'collaborative'} <= set(available_profiles())
    coll = load_profile('collaborative')
    ind = load_profile(REPO / 'config' / 'safety' / 'industrial.yaml')
    assert coll.max_tool_speed == 0.25
    assert coll.command_timeout_s == 0.1 and coll.sensor_timeout('joint_states') == 0.1
    assert coll.sensor_timeout('wrist_camera') == 0.5
    assert ind.relaxations(coll) == []  # collaborative is strictly tighter
    assert 'max_tool_speed 0.25 -> 1.0' in coll.relaxations(ind)


@pytest.mark.parametrize('field, value, message', [
    ('velocity_scale', 1.5, 'velocity_scale=1.5'),
    ('velocity_scale', 0.0, 'velocity_scale=0.0'),
    ('position_margin_rad', -0.1, 'position_margin_rad=-0.1'),
    ('acceleration_limits', float('nan'), 'acceleration_limits=nan'),
    ('acceleration_limits', {'j1': -1.0}, 'acceleration_limits.j1=-1.0'),
    ('command_timeout_s', 0, 'command_timeout_s=0'),
    ('max_tool_speed', 'fast', "max_tool_speed='fast'"),
    ('sensor_timeouts', {'joint_states': float('inf')}, 'sensor_timeouts.joint_states=inf'),
    ('sensor_slowdown_fraction', 1.5, 'sensor_slowdown_fraction=1.5'),
    ('jerk_limit', True, 'jerk_limit=True'),
])
def test_profile_validation_names_field_and_value(field, value, message):
    with pytest.raises(ConfigError) as info:
        make_profile(**{field: value})
    assert message in str(info.value)


def test_profile_yaml_errors(tmp_path):
    bad = tmp_path / 'typo.yaml'
    bad.write_text('name: typo\nvelocity_scal: 0.5\n')
    with pytest.raises(ConfigError, match='velocity_scal'):
        load_profile(bad)
    with pytest.raises(UnknownNameError, match='available'):
        load_profile('no_such_profile')
    box = tmp_path / 'box.yaml'
    box.write_text('name: b\nworkspace: {min: [0, 0, 1], max: [1, 1, 0]}\n')
    with pytest.raises(ConfigError, match='workspace z'):
        load_profile(box)


def test_profile_margin_and_accel_must_fit_the_robot():
    with pytest.raises(ConfigError, match='position_margin_rad=1.6'):
        SafetySupervisor(LIMITS, make_profile(position_margin_rad=1.6))
    with pytest.raises(ConfigError, match="unknown joint"):
        SafetySupervisor(LIMITS, make_profile(acceleration_limits={'j9': 1.0, 'default': 5.0}))
    with pytest.raises(ConfigError, match='2 values; 3'):
        SafetySupervisor(LIMITS, make_profile(acceleration_limits=[1.0, 2.0]))
    sup = SafetySupervisor(LIMITS, make_profile(acceleration_limits={'j1': 3.0, 'default': 5.0}))
    np.testing.assert_array_equal(sup.effective_limits.acceleration, [3.0, 5.0, 5.0])
    np.testing.assert_array_equal(sup.effective_limits.velocity, [1.0, 1.5, 2.0])


@pytest.mark.parametrize('kwargs, message', [
    (dict(names=('a', 'a'), lower=[0, 0], upper=[1, 1], velocity=[1, 1]), 'duplicates'),
    (dict(names=('a',), lower=[1.0], upper=[0.0], velocity=[1]), 'lower < upper'),
    (dict(names=('a',), lower=[-np.inf], upper=[0.0], velocity=[1]), 'finite limits'),
    (dict(names=('a',), lower=[0.0], upper=[1.0], velocity=[0.0]), 'velocity=0.0'),
    (dict(names=('a', 'b'), lower=[0.0], upper=[1.0, 1.0], velocity=[1, 1]), 'lower has 1'),
])
def test_joint_limits_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        JointLimits.from_arrays(**kwargs)


# --------------------------------------------------------------------------- twist supervisor
class BaseRig:
    def __init__(self, profile=None, period=0.02):
        self.sup = TwistSupervisor(profile or make_profile(), period_s=period)
        self.t = 50.0
        self.dt = period
        self.outs = []

    def step(self, n=1, lin=None, ang=(0.0, 0.0, 0.0), stamp_offset=0.0):
        for _ in range(n):
            self.t += self.dt
            if lin is not None:
                self.sup.on_twist(lin, ang, self.t + stamp_offset, self.t)
            self.outs.append(self.sup.update(self.t))
        return self.outs[-1]


def test_twist_limits_velocity_and_acceleration_and_stops_on_timeout():
    rig = BaseRig()
    base = rig.sup.profile.base
    rig.step(1)
    assert rig.sup.arm(rig.t)
    rig.step(100, lin=(3.0, 4.0, 0.0), ang=(0.0, 0.0, 5.0))
    lin = np.array([o.linear for o in rig.outs])
    ang = np.array([o.angular for o in rig.outs])
    assert np.linalg.norm(lin, axis=1).max() <= base.max_linear_velocity + TOL
    assert np.isclose(np.linalg.norm(lin[-1]), base.max_linear_velocity)
    np.testing.assert_allclose(lin[-1] / np.linalg.norm(lin[-1]), [0.6, 0.8, 0.0])
    assert np.abs(ang[:, 2]).max() <= base.max_angular_velocity + TOL
    step = np.linalg.norm(np.diff(lin, axis=0), axis=1)
    assert step.max() <= base.max_linear_acceleration * rig.dt + TOL
    last_cmd = rig.t
    n = len(rig.outs)
    rig.step(150)
    hold = next(o for o in rig.outs[n:] if o.state is SafetyState.HOLDING)
    assert hold.reason == 'command timeout' and hold.time <= last_cmd + 0.5 + rig.dt + 1e-9
    assert np.all(rig.outs[-1].linear == 0.0) and np.all(rig.outs[-1].angular == 0.0)
    lin = np.array([o.linear for o in rig.outs])
    assert np.linalg.norm(np.diff(lin, axis=0), axis=1).max() <= (
        base.max_linear_acceleration * rig.dt + TOL)


@pytest.mark.parametrize('lin, ang, code', [
    ((NAN, 0.0, 0.0), (0.0, 0.0, 0.0), 'nonfinite'),
    ((0.1, 0.0, 0.0), (0.0, 0.0, INF), 'nonfinite'),
    ((0.1, 0.0), (0.0, 0.0, 0.0), 'malformed'),
    ('fast', (0.0, 0.0, 0.0), 'malformed'),
])
def test_twist_bad_input_is_rejected(lin, ang, code):
    rig = BaseRig()
    rig.step(1)
    assert rig.sup.arm(rig.t)
    rig.step(20, lin=(0.3, 0.0, 0.0))
    d = rig.sup.on_twist(lin, ang, rig.t, rig.t)
    assert not d.accepted and rig.sup.counters[f'rejected_{code}'] == 1
    rig.step(100)
    assert all(np.all(np.isfinite(o.linear)) for o in rig.outs)
    assert np.all(rig.outs[-1].linear == 0.0)
    if code == 'nonfinite':
        assert rig.sup.state is SafetyState.HOLDING


def test_twist_estop_and_stale_stamp():
    rig = BaseRig()
    rig.step(1)
    assert rig.sup.arm(rig.t)
    assert not rig.sup.on_twist((0.1, 0, 0), (0, 0, 0), rig.t - 1.0, rig.t).accepted
    assert rig.sup.counters['rejected_stale_stamp'] == 1
    rig.step(30, lin=(0.4, 0.0, 0.0))
    rig.sup.estop(rig.t, 'bumper')
    rig.step(60, lin=(0.4, 0.0, 0.0))
    assert rig.sup.state is SafetyState.ESTOP and np.all(rig.outs[-1].linear == 0.0)
    assert rig.sup.reset_estop(rig.t).accepted
    rig.step(30, lin=(0.4, 0.0, 0.0))
    assert np.all(rig.outs[-1].linear == 0.0)  # reset alone never restarts motion
    d = rig.sup.set_profile(rig.sup.profile.replace(base=BaseLimits(max_linear_velocity=2.0)),
                            rig.t)
    assert d.accepted  # not armed: allowed
    assert rig.sup.arm(rig.t)
    d = rig.sup.set_profile(rig.sup.profile.replace(base=BaseLimits(max_linear_velocity=3.0)),
                            rig.t)
    assert not d.accepted


def test_twist_supervisor_shares_the_sensor_rules_of_the_arm():
    """The shared base: a late watched sensor slows the base down (within the acceleration
    limit), a stale one stops it and blocks arming; an out-of-order sample is rejected."""
    sup = TwistSupervisor(make_profile(sensor_timeouts={'odom': 0.2}), period_s=0.02,
                          required_sensors=('odom',))
    base = sup.profile.base
    t = 50.0
    assert sup.on_sensor('odom', t, t)
    sup.update(t)
    assert sup.arm(t)
    outs = []
    odom_stamp = t
    for k in range(150):
        t += 0.02
        if k < 50:
            odom_stamp = t  # fresh
        elif k < 100:
            # Late: 0.15 s of a 0.2 s timeout (slowdown from 0.1 s); stamps never go back.
            odom_stamp = max(odom_stamp, t - 0.15)
        assert sup.on_sensor('odom', odom_stamp, t).accepted or k >= 100
        sup.on_twist((0.4, 0.0, 0.0), (0.0, 0.0, 0.0), t, t)
        outs.append(sup.update(t))
    speed = np.array([o.linear[0] for o in outs])
    np.testing.assert_allclose(speed[49], 0.4)
    np.testing.assert_allclose(speed[99], 0.4 * 0.5)  # scale (0.2 - 0.15) / (0.2 - 0.1)
    assert np.all(np.abs(np.diff(speed)) <= base.max_linear_acceleration * 0.02 + TOL)
    assert outs[-1].state is SafetyState.HOLDING and outs[-1].reason == 'odom stale'
    assert speed[-1] == 0.0
    assert sup.counters['deadline_missed'] == 1 and sup.counters['sensor_stale'] == 1
    refused = sup.arm(t)
    assert not refused and 'sensor odom not fresh' in refused.reason
    assert sup.on_sensor('odom', t, t).accepted
    assert not sup.on_sensor('odom', t - 0.01, t).accepted
    assert sup.counters['sensor_rejected_out_of_order'] == 1


def test_event_log_records_transitions_with_reasons():
    rig = Rig()
    rig.start()
    rig.sup.estop(rig.t, 'operator button')
    kinds = [e.kind for e in rig.sup.events]
    assert 'transition' in kinds and 'estop' in kinds
    assert any('ESTOP: operator button' in e.detail for e in rig.sup.events)


# ------------------------------------------------------------------------ tracking a stream
def test_streamed_position_targets_are_tracked_at_their_own_rate():
    rig = Rig()
    rig.start()
    vel = 0.8 * rig.sup.effective_limits.velocity * np.array([1.0, -0.5, 0.5])
    start = rig.outs[-1].positions.copy()

    def stream(r):
        k = round((r.t - 100.0) / r.dt)
        r.sup.on_command_positions(r.names, start + vel * k * r.dt, r.t, r.t)

    rig.step(250, stream)  # 1 s: catches up within ~0.4 s, stays clear of the soft band
    speeds = rig.velocities(150)
    np.testing.assert_allclose(speeds, np.broadcast_to(vel, speeds.shape), atol=1e-6)
    assert_step_limits(rig)


def test_trajectory_is_followed_once_the_start_is_reached():
    # A planner's trajectory, sent once: runs to its end only where the profile allows it.
    rig = Rig(profile=make_profile(allow_whole_trajectories=True))
    rig.start()
    times = np.linspace(0.0, 2.0, 21)
    path = np.stack([0.5 * np.sin(times), 0.3 * (1 - np.cos(times)), 0.2 * times], axis=1)
    stamp = rig.t + rig.dt
    rig.step(1, lambda r: r.sup.on_command_trajectory(r.names, times, path, None, stamp, r.t))
    rig.step(400)
    lag = []
    for out in rig.outs[-400:-60]:
        s = out.time + rig.dt - stamp  # the output is the target one period ahead
        ref = np.array([np.interp(s, times, path[:, j]) for j in range(3)])
        lag.append(np.abs(out.positions - ref).max())
    # Piecewise-linear path: only the velocity kinks at the waypoints cost a little accuracy.
    assert max(lag[50:]) < 1e-4
    assert rig.sup.state is SafetyState.ARMED
