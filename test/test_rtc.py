"""Real-time chunking (ActionQueue strategy `rtc`) and the emulated inference delay of the
policy loop (LoopConfig.inference_delay_steps), without ROS.

The queue tests use straight-line chunks, whose own velocity never changes, so any velocity
change in the output is the blending's. The loop tests run a real onnxruntime session of the
"ramp" toy policy (row k of a chunk = the observed state + k * STEP), so each command says
which observation it came from and how far along its chunk it is.
"""
import math

import numpy as np
import onnx
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.policy.chunking import (ActionQueue, BlendConfig, rtc_correction,
                                             soft_mask)
from noetra_ros.core.policy.loop import (LoopConfig, LoopResult, NO_COMMAND_STALE, Observation,
                                         PolicyLoop)
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import build_toy_model, PolicyRuntime
from toy_models import ramp_contract, set_ramp_head

DT = 0.05
ROWS = 10       # the toy policy's chunk length
HORIZON = 0.25


def line(start, velocity, rows=20):
    """A chunk whose row k is start + velocity * k * DT (and twice that in a second column)."""
    values = start + velocity * DT * np.arange(rows)
    return np.stack([values, 2.0 * values], axis=1)


def velocities_around(queue, t, eps=1e-4):
    """(velocity just before t, velocity just after t) of the queue's output, sampled in time
    order as a control loop samples it (the queue forgets what can no longer matter)."""
    before, here, after = (queue.action_at(t - eps), queue.action_at(t),
                           queue.action_at(t + eps))
    return (here - before) / eps, (after - here) / eps


def executing_then_offset_chunk(strategy, horizon=HORIZON):
    """A queue executing a chunk moving at 1 rad/s, then, arriving at 0.3 s, a chunk planned
    from 0.1 s that is 0.08 rad off the executed path and moves at 0.4 rad/s; sampled up to
    just before the arrival."""
    queue = ActionQueue(BlendConfig(strategy=strategy, blend_window_s=0.1,
                                    rtc_horizon_s=horizon))
    assert queue.add(line(0.0, 1.0), stamp=0.0, step_period_s=DT, now=0.0)
    for t in np.arange(0.0, 0.3 - 1e-3, DT):
        queue.action_at(float(t))
    new = line(0.18, 0.4)
    assert queue.add(new, stamp=0.1, step_period_s=DT, now=0.3)
    return queue, new


def test_rtc_joins_at_the_executed_position_and_velocity_where_a_crossfade_jumps():
    queue, _ = executing_then_offset_chunk('rtc')
    left, right = velocities_around(queue, 0.3)
    np.testing.assert_allclose(queue.action_at(0.3), [0.3, 0.6], atol=1e-12)  # executed
    np.testing.assert_allclose(left, [1.0, 2.0], atol=1e-6)  # the old chunk's
    rtc_jump = float(np.abs(right - left).max())
    # Both chunks are straight lines: the chunk's own velocity change is 0.
    assert rtc_jump < 0.02
    # The same arrival cross-faded changes the velocity by (offset + velocity step) / window.
    fade, _ = executing_then_offset_chunk('crossfade')
    fade_left, fade_right = velocities_around(fade, 0.3)
    assert float(np.abs(fade_right - fade_left).max()) > 50 * rtc_jump


def test_rtc_correction_has_vanished_after_the_horizon_and_the_early_rows_are_never_used():
    queue, new = executing_then_offset_chunk('rtc')
    chunk_at = lambda t: new[0] + (t - 0.1) * np.array([0.4, 0.8])  # noqa: E731
    for t in np.arange(0.3, 0.3 + HORIZON, 0.01):  # corrected: not yet the chunk
        queue.action_at(float(t))
    assert np.abs(queue.action_at(0.3 + HORIZON / 2) - chunk_at(0.3 + HORIZON / 2)).max() > 1e-3
    for t in (0.3 + HORIZON, 0.3 + HORIZON + 0.05, 0.1 + 19 * DT):
        np.testing.assert_allclose(queue.action_at(t), chunk_at(t), atol=1e-12)
    # Rows before the arrival (0.1 .. 0.3 s) do not change what is commanded from 0.3 s on.
    altered_queue = ActionQueue(BlendConfig(strategy='rtc', rtc_horizon_s=HORIZON))
    altered_queue.add(line(0.0, 1.0), stamp=0.0, step_period_s=DT, now=0.0)
    altered = new.copy()
    altered[:4] += 5.0  # rows at 0.1, 0.15, 0.2, 0.25 s
    altered_queue.add(altered, stamp=0.1, step_period_s=DT, now=0.3)
    reference, _ = executing_then_offset_chunk('rtc')
    for t in np.arange(0.3, 0.55, 0.01):
        np.testing.assert_allclose(altered_queue.action_at(float(t)),
                                   reference.action_at(float(t)), atol=1e-12)


def test_rtc_ends_its_correction_without_a_velocity_step():
    queue, _ = executing_then_offset_chunk('rtc')
    queue.action_at(0.3)
    left, right = velocities_around(queue, 0.3 + HORIZON)
    assert float(np.abs(right - left).max()) < 0.02
    # The soft mask: 1 at the arrival, 0 at the horizon, falling in between.
    weights = [soft_mask(u) for u in np.linspace(0.0, 1.0, 11)]
    assert weights[0] == 1.0 and weights[-1] == 0.0
    assert all(a > b for a, b in zip(weights, weights[1:]))
    offset, slope = np.array([0.08]), np.array([-0.6])
    np.testing.assert_allclose(rtc_correction(0.0, 0.3, offset, slope), offset)
    np.testing.assert_allclose(
        (rtc_correction(1e-6, 0.3, offset, slope) - offset) / 1e-6, slope, rtol=1e-3)
    assert rtc_correction(0.3, 0.3, offset, slope)[0] == 0.0


def test_rtc_chunk_arriving_after_its_horizon_is_dropped_and_the_first_chunk_is_as_planned():
    queue = ActionQueue(BlendConfig(strategy='rtc', rtc_horizon_s=HORIZON))
    first = line(0.5, 1.0)
    assert queue.add(first, stamp=0.0, step_period_s=DT, now=0.0)
    np.testing.assert_allclose(queue.action_at(0.1), first[2])  # nothing to join: no correction
    assert not queue.add(line(0.0, 1.0, rows=10), stamp=0.0, step_period_s=DT, now=0.5)
    assert queue.expired_on_arrival == 1 and len(queue) == 1
    np.testing.assert_allclose(queue.action_at(0.2), first[4])


def test_rtc_after_a_dry_spell_starts_from_the_held_last_row():
    # The first chunk ran out at 0.45 s: no command since, the robot keeps its last target.
    queue = ActionQueue(BlendConfig(strategy='rtc', rtc_horizon_s=HORIZON))
    first = line(0.0, 1.0, rows=10)
    queue.add(first, stamp=0.0, step_period_s=DT, now=0.0)
    for t in (0.4, 0.45, 0.5, 0.6):
        queue.action_at(t)
    assert queue.action_at(0.6) is None
    queue.add(line(0.9, 1.0), stamp=0.3, step_period_s=DT, now=0.7)
    np.testing.assert_allclose(queue.action_at(0.7), first[9], atol=1e-12)
    right = (queue.action_at(0.7 + 1e-4) - queue.action_at(0.7)) / 1e-4
    np.testing.assert_allclose(right, 0.0, atol=0.02)  # it was standing still


def test_rtc_horizon_is_checked_and_defaults_to_the_blend_window():
    assert BlendConfig(strategy='rtc', blend_window_s=0.2).rtc_horizon == 0.2
    assert BlendConfig(strategy='rtc', rtc_horizon_s=0.3).rtc_horizon == 0.3
    with pytest.raises(ConfigError, match='rtc_horizon_s'):
        BlendConfig(strategy='rtc', rtc_horizon_s=-0.1)
    with pytest.raises(ConfigError, match='inference_delay_steps'):
        LoopConfig(inference_delay_steps=-1)
    config = LoopConfig.from_parameters({'blend': 'rtc', 'rtc_horizon_s': 0,
                                         'inference_delay_steps': 4})
    assert config.blend_config().rtc_horizon_s == 0.0 and config.inference_delay_steps == 4


# ---------------------------------------------------------------------- the loop's delay
JOINTS = [f'joint_{i}' for i in range(1, 7)]
STEP = 0.01
IMAGE = np.full((24, 32, 3), 120, np.uint8)


@pytest.fixture(scope='module')
def runtime(tmp_path_factory):
    contract = ramp_contract(JOINTS, ROWS, DT)
    model = set_ramp_head(build_toy_model(contract, seed=0), ROWS, STEP, len(JOINTS) + 1)
    path = tmp_path_factory.mktemp('rtc') / 'ramp.onnx'
    onnx.save(model, str(path))
    with PolicyRuntime(path, intra_op_threads=1) as session:
        yield session


def state_at(k):
    """An observed state that wanders, so consecutive chunks disagree."""
    return 0.3 * math.sin(0.7 * k) + 0.05 * k


class Observer:
    """observe() callables for step k; records which steps were observed."""

    def __init__(self):
        self.calls = []

    def at(self, k):
        def observe():
            self.calls.append(k)
            return Observation(stamp=k * DT, joint_positions=dict.fromkeys(JOINTS, state_at(k)),
                               images={'scene_camera': ImageFrame(IMAGE, 32, 24, 'rgb8')},
                               instruction='pick the red cube', gripper_position=0.0)
        return observe


def test_a_delayed_chunk_lands_delay_steps_after_its_observation_one_in_flight(runtime):
    loop = PolicyLoop(runtime, JOINTS, LoopConfig(replan_steps=2, blend='replace',
                                                  inference_delay_steps=3))
    observer = Observer()
    landed = {}
    for k in range(12):
        result = loop.step(k * DT, observer.at(k))
        if result.inference is not None:
            landed[k] = result.inference.stamp
        if k < 3:  # nothing has landed yet: no command, and it says why
            assert result.command is None
            assert [p.kind for p in result.problems] == [NO_COMMAND_STALE]
            continue
        planned = 3 * (k // 3) - 3  # the chunk in use: observed 3 steps before it landed
        expected = state_at(planned) + (k - planned) * STEP
        np.testing.assert_allclose(result.command.positions[0], expected, atol=1e-6)
    # One inference in flight: the next starts when one lands, every max(2, 3) steps.
    assert observer.calls == [0, 3, 6, 9]
    assert landed == {3: 0.0, 6: 3 * DT, 9: 6 * DT}


def test_the_delay_waits_for_replan_steps_when_inference_is_quicker(runtime):
    loop = PolicyLoop(runtime, JOINTS, LoopConfig(replan_steps=5, blend='ensemble',
                                                  inference_delay_steps=2))
    observer = Observer()
    lands = [k for k in range(16) if loop.step(k * DT, observer.at(k)).inference is not None]
    assert observer.calls == [0, 5, 10, 15] and lands == [2, 7, 12]
    # A reset drops the chunk in flight and starts planning again at once.
    loop.reset()
    assert loop.step(16 * DT, observer.at(16)).inference is None
    assert observer.calls[-1] == 16
    result = loop.step(17 * DT, observer.at(17))
    assert result.inference is None and result.command is None


def todays_step(loop, t, observe, state):
    """The lockstep step as it was before the delay existed: due when replan_steps steps have
    passed or nothing is queued for t; plan with now = t; then the command for t."""
    state['since'] += 1
    due = state['since'] >= loop.config.replan_steps or loop.queue.action_at(t) is None
    planned = LoopResult()
    if due:
        planned = loop.plan(observe, now=t)
        if planned.inference is not None:
            state['since'] = 0
    commanded = loop.command_at(t)
    return LoopResult(command=commanded.command, inference=planned.inference,
                      problems=planned.problems + commanded.problems)


@pytest.mark.parametrize('blend', ['crossfade', 'ensemble', 'rtc', 'replace'])
def test_delay_zero_gives_todays_step_results_byte_for_byte(runtime, blend):
    config = LoopConfig(replan_steps=2, blend=blend, rtc_horizon_s=0.2)
    assert config.inference_delay_steps == 0
    loop, reference = PolicyLoop(runtime, JOINTS, config), PolicyLoop(runtime, JOINTS, config)
    state = {'since': 0}
    for k in range(25):
        ours = loop.step(k * DT, Observer().at(k))
        theirs = todays_step(reference, k * DT, Observer().at(k), state)
        assert ours.command.positions.tobytes() == theirs.command.positions.tobytes()
        assert ours.command.gripper_position == theirs.command.gripper_position
        assert ours.command.observations == theirs.command.observations
        assert (ours.inference is None) == (theirs.inference is None)
        if ours.inference is not None:
            assert ours.inference.stamp == theirs.inference.stamp
            assert ours.inference.input_stamps == theirs.inference.input_stamps
        assert ours.problems == theirs.problems


def test_rtc_keeps_delayed_commands_continuous_where_replace_jumps(runtime):
    def largest_step(blend):
        loop = PolicyLoop(runtime, JOINTS, LoopConfig(replan_steps=2, blend=blend,
                                                      rtc_horizon_s=0.2,
                                                      inference_delay_steps=4))
        rows = [loop.step(k * DT, Observer().at(k)).command for k in range(40)]
        q = np.array([c.positions[0, 0] for c in rows if c is not None])
        return float(np.abs(np.diff(q)).max())

    # The wandering state puts consecutive chunks up to ~0.4 rad apart; rtc spreads that over
    # its horizon instead of stepping.
    assert largest_step('rtc') < 0.5 * largest_step('replace')


def test_evalcheck_options_reach_the_in_process_evaluation_settings():
    from noetra_ros.learning.__main__ import build_parser, policy_overrides
    from noetra_ros.learning.record import EvalSettings

    args = build_parser().parse_args(['evalcheck', '--blend', 'rtc', '--rtc-horizon', '0.25',
                                      '--inference-delay-steps', '4'])
    settings = EvalSettings.from_cell('pick_place_lrmate_policy',
                                      policy=policy_overrides(args))
    assert (settings.loop.blend, settings.loop.rtc_horizon_s,
            settings.loop.inference_delay_steps) == ('rtc', 0.25, 4)
    assert settings.loop.replan_steps == 2  # the cell's, not given
    assert 'rtc horizon 0.25 s, inference delay 4 steps' in settings.describe()
    plain = build_parser().parse_args(['evalcheck'])
    assert policy_overrides(plain) == {}
    assert 'inference delay' not in EvalSettings.from_cell('pick_place_lrmate_policy').describe()
