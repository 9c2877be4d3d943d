"""The Cartesian limiter on its own (core/safety/cartesian.py), and the acceleration it needs at
the workspace box measured on the LR Mate 200iD.

The fault injector saw 4.3 x a_max*dt at the workspace floor: the old limiter cut the step short
when the tool was about to leave the box, a one-cycle stop. Now the limiter only blends the
joint limiter's own tracking and braking steps and brakes early enough for the box, so the
replays below measure |dv| <= a_max dt on every cycle, at 20 Hz (the sim cell) and at 250 Hz.
"""
from __future__ import annotations

import numpy as np
import pytest

from noetra_ros.core.robot_model import RobotModel
from noetra_ros.core.robots import home_positions, urdf_path
from noetra_ros.core.safety import load_profile, SafetyState, SafetySupervisor
from noetra_ros.core.safety.cartesian import LOOKAHEAD_MARGIN_M, limit_tool_step, ToolLimits

ROBOT = 'fanuc_lrmate200id'
DT = 0.01
ACCEL = np.array([10.0, 10.0, 10.0])
BOX = ToolLimits(np.array([-1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0]), None, 0.0)


def identity_tool(q: np.ndarray) -> np.ndarray:
    """A 'robot' whose tool point is its first three joints (the box is then in joint space)."""
    return np.array(q[:3], dtype=float)


def step(q, v, wanted_v, limits, accel=ACCEL, tool=identity_tool, gentle=None):
    """Tracking step toward wanted_v and braking step, both within a_max, then the limiter."""
    q, v = np.asarray(q, float), np.asarray(v, float)
    track_v = np.clip(wanted_v, v - accel * DT, v + accel * DT)
    brake_v = np.sign(v) * np.maximum(np.abs(v) - accel * DT, 0.0)
    result = limit_tool_step(tool, q, tool(q), q + track_v * DT, lambda: q + brake_v * DT,
                             accel, DT, limits, None if gentle is None else lambda: gentle)
    return result, (result.position - q) / DT


def test_without_tool_limits_the_tracking_step_passes():
    limits = ToolLimits(None, None, None, 0.0)
    result, v = step([0.0, 0.0, 0.5], [0.5, 0.0, 0.0], [2.0, 0.0, 0.0], limits)
    assert result.fraction == 1.0 and not result.interventions
    np.testing.assert_allclose(v, [0.6, 0.0, 0.0])


def test_tool_speed_is_kept_while_accelerating():
    limits = ToolLimits(None, None, 0.5, 0.0)
    q, v = np.array([0.0, 0.0, 0.5]), np.zeros(3)
    for _ in range(100):
        result, v_new = step(q, v, [3.0, 0.0, 0.0], limits)
        assert np.all(np.abs(v_new - v) <= ACCEL * DT + 1e-12)
        assert np.linalg.norm(v_new) <= 0.5 * (1 + 1e-9)
        q, v = result.position, v_new
    assert 'tool_speed_limited' in result.interventions
    # Settled just under the limit (the blend is found to 1/64 of a step, then confirmed).
    assert 0.5 - 0.005 <= np.linalg.norm(v) <= 0.5 * (1 + 1e-9)


@pytest.mark.parametrize('speed', [0.5, 2.0, 5.0])
def test_approaching_a_face_brakes_in_time_within_a_max(speed):
    """Driven at the floor at full tilt: stops inside the box (by the look-ahead margin), and
    every cycle stays within the acceleration limit."""
    q, v = np.array([0.0, 0.0, 0.9]), np.zeros(3)
    lowest = 1.0
    for _ in range(300):
        result, v_new = step(q, v, [0.0, 0.0, -speed], BOX)
        assert np.all(np.abs(v_new - v) <= ACCEL * DT * (1 + 1e-9) + 1e-12), (v, v_new)
        assert not result.accel_overridden
        q, v = result.position, v_new
        lowest = min(lowest, q[2])
        assert q[2] >= 0.0
    assert v[2] == pytest.approx(0.0, abs=1e-9)
    # It got to the face, short of it by no more than the look-ahead margin plus one step.
    assert lowest <= LOOKAHEAD_MARGIN_M + ACCEL[2] * DT * DT


def test_braking_is_taken_when_the_tracking_step_would_leave_the_box():
    q, v = np.array([0.0, 0.0, 0.2]), np.array([0.0, 0.0, -2.0])
    result, v_new = step(q, v, [0.0, 0.0, -2.0], BOX)
    np.testing.assert_allclose(v_new, [0.0, 0.0, -1.9])  # braking at a_max
    assert result.fraction == 0.0 and not result.accel_overridden
    assert 'workspace_limited' in result.interventions


def test_when_even_braking_would_leave_the_box_the_box_wins():
    """Moving out at the face (e.g. the box was just tightened): the step is cut, reported."""
    q, v = np.array([0.0, 0.0, 0.001]), np.array([0.0, 0.0, -1.0])
    result, v_new = step(q, v, [0.0, 0.0, -1.0], BOX)
    assert result.accel_overridden
    assert 0.0 <= result.position[2] <= 0.001
    assert abs(v_new[2] - v[2]) > ACCEL[2] * DT  # the acceleration bound gave way


def test_the_gentle_brake_keeps_the_tool_speed_when_braking_at_a_max_would_not():
    """Two joints whose tool motions nearly cancel: braking each at its own a_max breaks the
    cancellation and the tool would speed up; slowing both by one factor does not."""
    def difference_tool(q):
        return np.array([q[0] - q[1], 0.0, 0.5])
    accel = np.array([10.0, 50.0])
    limits = ToolLimits(None, None, 0.15, 0.0)
    q, v = np.zeros(2), np.array([1.0, 0.9])  # tool at 0.1 m/s
    gentle_v = 0.9 * v  # the common factor a_max dt / |v| of joint 0 allows
    result, v_new = step(q, v, np.array([1.2, 0.9]), limits, accel, difference_tool,
                         gentle=q + gentle_v * DT)
    # Tracking (0.2 m/s) and braking at a_max (0.9 - 0.4 = 0.5 m/s) both break the limit.
    assert not result.accel_overridden
    assert np.linalg.norm(difference_tool(result.position) - difference_tool(q)) <= 0.15 * DT
    assert np.all(np.abs(v_new - v) <= accel * DT + 1e-12)


def test_a_failing_kinematics_is_reported_and_never_passed():
    def fragile(q):
        return None if q[2] < 0.45 else identity_tool(q)
    limits = ToolLimits(None, None, None, 0.0)
    result, _ = step([0.0, 0.0, 0.5], [0.0, 0.0, -6.0], [0.0, 0.0, -6.0], limits,
                     tool=fragile)
    # Both steps end where the kinematics fail: only the part of the brake before that is kept.
    assert result.fk_failed and result.accel_overridden
    assert 0.45 <= result.position[2] < 0.5 and result.tool is not None


# --------------------------------------------------------------------------- LR Mate replays
FLOOR_TARGETS = [  # joint targets whose tool0 lies 0.15-0.22 m below the table top
    [0.0, 2.0, 0.4, 0.0, 0.0, 0.0],
    [0.4, 2.0, 0.67, 0.0, -1.15, 0.0],
    [-0.5, 1.75, 0.13, 0.5, 0.0, 1.0],
    [0.2, 2.0, 0.93, -0.3, 0.0, 0.0],
]


@pytest.fixture(scope='module')
def lrmate():
    return RobotModel.from_urdf(urdf_path(ROBOT, with_gripper=True))


def replay(model, profile, target, period, seconds=2.5):
    """The supervisor streaming one position target from home, as a perfect robot follows."""
    sup = SafetySupervisor.from_robot_model(model, profile, period_s=period)
    names = model.joint_names
    q = np.array(home_positions(ROBOT), dtype=float)
    t = 10.0
    sup.on_joint_state(names, q, None, t, t)
    sup.update(t)
    assert sup.arm(t)
    outs = []
    for _ in range(int(round(seconds / period))):
        t += period
        sup.on_joint_state(names, q, None, t, t)
        sup.on_command_positions(names, target, t, t)
        out = sup.update(t)
        outs.append(out)
        q = np.array(out.positions)
    assert sup.state is SafetyState.ARMED
    return sup, outs


def measure(sup, outs, period):
    """(max |dv| / (a_max dt), lowest tool z, max tool speed) over a replay."""
    v = np.array([o.velocities for o in outs])
    ratio = float(np.max(np.abs(np.diff(v, axis=0)) / (sup.effective_limits.acceleration
                                                       * period)))
    tool = np.array([o.tool_position for o in outs])
    speed = float(np.max(np.linalg.norm(np.diff(tool, axis=0), axis=1)) / period)
    return ratio, float(tool[:, 2].min()), speed


@pytest.mark.parametrize('profile_name, period, targets', [
    ('industrial', 0.05, FLOOR_TARGETS),
    ('industrial', 0.004, FLOOR_TARGETS[:2]),
    ('collaborative', 0.01, FLOOR_TARGETS),
])
def test_driving_the_tool_into_the_floor_needs_no_more_than_a_max(lrmate, profile_name, period,
                                                                   targets):
    profile = load_profile(profile_name)
    floor = profile.workspace.min_xyz[2]
    for target in targets:
        sup, outs = replay(lrmate, profile, target, period)
        ratio, lowest, speed = measure(sup, outs, period)
        print(f'{profile_name} {1 / period:.0f} Hz target {target}: |dv|/(a dt) {ratio:.6f}, '
              f'lowest tool z {lowest:.4f} m, tool speed {speed:.3f} m/s')
        assert lowest <= floor + 0.01  # it did press on the floor
        assert lowest >= floor - 1e-9
        assert ratio <= 1.0 + 1e-9
        assert speed <= profile.max_tool_speed * (1 + 1e-9)
        assert sup.counters.get('cartesian_overrode_accel', 0) == 0


def test_random_targets_around_home_need_no_more_than_a_max(lrmate):
    """Targets anywhere around home (joints 1-3 included, the fault injector's C20 range) at the
    sim cell's 20 Hz: the box faces and the tool speed limit both act, a_max holds."""
    profile = load_profile('industrial')
    rng = np.random.default_rng(0)
    home = np.array(home_positions(ROBOT))
    worst = 0.0
    acted = 0
    for _ in range(40):
        target = home + rng.uniform(-1.5, 1.5, 6) * np.array([1, 1, 1, 0.3, 1, 0.3])
        sup, outs = replay(lrmate, profile, target, 0.05, seconds=2.0)
        ratio, lowest, speed = measure(sup, outs, 0.05)
        worst = max(worst, ratio)
        counters = sup.counters
        acted += counters.get('tool_speed_limited', 0) + counters.get('workspace_limited', 0)
        assert counters.get('cartesian_overrode_accel', 0) == 0
        assert speed <= profile.max_tool_speed * (1 + 1e-9)
    print(f'40 random targets at 20 Hz: max |dv|/(a dt) {worst:.6f}')
    assert acted > 0 and worst <= 1.0 + 1e-9
