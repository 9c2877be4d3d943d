"""`noetra eval`'s plots (eval_plots.py) and the monitor's episode traces, without DDS."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from noetra_ros.core.errors import NoetraError
from noetra_ros.eval_plots import (DPI, LATENCY_SIZE_IN, SUCCESS_SIZE_IN, TRACE_SIZE_IN,
                                   write_evaluation_plots)
from noetra_ros.monitor import EpisodeTraces, TRACE_MAX_SAMPLES, TRACE_PERIOD_S

JOINTS = ['J1', 'J2', 'J3', 'J4', 'J5', 'J6']
FINGERS = ['gripper_left_finger_joint', 'gripper_right_finger_joint']


def episode(index: int, success: bool, target: str, distractors: int) -> dict:
    return {'episode': index, 'seed': 10000 + index, 'instruction': f'pick the {target}',
            'success': success, 'reason': 'success' if success else 'timeout after 25.0 s',
            'duration_s': 5.0, 'target_object': target, 'distractors': distractors}


def trace_of_failed_episode() -> dict:
    """What EpisodeTraces keeps of a failed episode: 20 Hz steps, commands one step ahead."""
    traces = EpisodeTraces()
    traces.start(1)
    for step in range(100):
        t = 30.0 + 0.05 * step
        target = np.sin(0.1 * step + np.arange(6))
        traces.measure(t, JOINTS + FINGERS, [*(target - 0.02), 0.0, 0.0])
        traces.command(t, target)
    traces.finish(episode(1, False, 'red_cube', 2))
    return traces.first_failed


def report(*, with_policy: bool, failed_trace: dict | None) -> dict:
    episodes = [episode(0, True, 'red_cube', 1), episode(1, False, 'red_cube', 2),
                episode(2, True, 'blue_cylinder', 3), episode(3, True, 'blue_cylinder', 1)]
    rng = np.random.default_rng(0)
    policy = {'p50': 11.0, 'p90': 14.0, 'p99': 21.0} if with_policy else {}
    return {
        'episodes': episodes,
        'command_latency_samples_ms': list(rng.gamma(4.0, 0.5, size=500)),
        'failed_episode_trace': failed_trace,
        'evaluation': {'cell': 'pick_place_lrmate', 'controller': 'expert', 'baseline': '',
                       'policy_inference_ms': policy,
                       'policy_end_to_end_ms': {k: v + 3.0 for k, v in policy.items()}},
    }


def assert_png(path: str, size_in: tuple[float, float]) -> np.ndarray:
    image = cv2.imread(path)
    assert image is not None, f'{path} does not decode'
    assert image.shape == (round(size_in[1] * DPI), round(size_in[0] * DPI), 3)
    # A drawn plot, not a blank canvas: a good share of pixels is not white.
    assert (image < 200).any(axis=2).mean() > 0.02
    return image


def test_plots_of_a_policy_run_with_a_failure(tmp_path):
    # Through JSON, as the report is stored: every value the plots read survives it.
    data = json.loads(json.dumps(report(with_policy=True,
                                        failed_trace=trace_of_failed_episode())))
    paths = write_evaluation_plots(data, tmp_path / 'plots' / 'eval')
    assert paths == [str(tmp_path / 'plots' / f'eval_{kind}.png')
                     for kind in ('success', 'latency', 'trace')]
    assert_png(paths[0], SUCCESS_SIZE_IN)
    assert_png(paths[1], LATENCY_SIZE_IN)
    assert_png(paths[2], TRACE_SIZE_IN)


def test_without_a_failure_there_is_no_trace_plot_and_no_policy_panel(tmp_path):
    paths = write_evaluation_plots(report(with_policy=False, failed_trace=None),
                                   tmp_path / 'eval')
    assert [p.rsplit('_', 1)[1] for p in paths] == ['success.png', 'latency.png']
    with_policy = write_evaluation_plots(report(with_policy=True, failed_trace=None),
                                         tmp_path / 'policy')
    # The policy's percentile bars are drawn where the cell without one has a note.
    without = assert_png(paths[1], LATENCY_SIZE_IN)
    drawn = assert_png(with_policy[1], LATENCY_SIZE_IN)
    right = slice(without.shape[1] // 2, None)
    assert (drawn[:, right] < 200).any(axis=2).mean() > 2 * (without[:, right] < 200).any(
        axis=2).mean()


def test_a_run_without_episodes_or_samples_still_plots(tmp_path):
    empty = report(with_policy=False, failed_trace=None)
    empty['episodes'], empty['command_latency_samples_ms'] = [], []
    for path in write_evaluation_plots(empty, tmp_path / 'eval'):
        assert cv2.imread(path) is not None


def test_a_trace_without_commands_plots_the_measured_positions(tmp_path):
    # MotoROS2 cells command through services: the monitor sees no command topic.
    trace = trace_of_failed_episode()
    trace['commanded'] = {'t_s': [], 'positions': []}
    paths = write_evaluation_plots(report(with_policy=False, failed_trace=trace), tmp_path / 'e')
    assert_png(paths[-1], TRACE_SIZE_IN)


def test_a_report_not_from_eval_is_refused_by_name(tmp_path):
    with pytest.raises(NoetraError, match="no 'evaluation'"):
        write_evaluation_plots({'episodes': []}, tmp_path / 'eval')


# ---------------------------------------------------------------- the monitor's traces
def test_traces_keep_the_first_failed_episode_in_joint_order():
    trace = trace_of_failed_episode()
    assert (trace['episode'], trace['seed'], trace['joints']) == (1, 10001, JOINTS)
    assert len(trace['measured']['t_s']) == len(trace['commanded']['t_s']) == 100
    measured, commanded = (np.array(trace[k]['positions']) for k in ('measured', 'commanded'))
    np.testing.assert_allclose(commanded - measured, 0.02, atol=2e-5)


def test_traces_map_named_commands_and_drop_other_episodes():
    traces = EpisodeTraces(['a', 'b'])  # safety's controller_joints
    traces.start(0)
    traces.measure(0.0, ['b', 'a', FINGERS[0]], [2.0, 1.0, 0.01])
    traces.command(0.0, [10.0, 20.0])                      # Float64MultiArray: a, b
    traces.command(0.05, [30.0], names=['b'])              # a trajectory naming b only
    traces.finish({'episode': 0, 'seed': 5, 'success': True, 'reason': 'success'})
    assert traces.first_failed is None  # a success keeps nothing
    traces.measure(0.1, ['a', 'b'], [9.0, 9.0])            # between episodes: not recorded
    assert traces.measured.samples[-1][0] == 0.0

    traces.start(1)
    traces.command(1.0, [10.0, 20.0])
    traces.command(1.05, [30.0], names=['b'])
    traces.finish({'episode': 1, 'seed': 6, 'success': False, 'reason': 'dropped'})
    kept = traces.first_failed
    assert kept['commanded']['t_s'] == [1.0, 1.05] and kept['measured']['t_s'] == []
    assert kept['commanded']['positions'][0] == [10.0, 20.0]
    assert math.isnan(kept['commanded']['positions'][1][0])
    assert kept['commanded']['positions'][1][1] == 30.0
    # A later failure does not replace the first.
    traces.start(2)
    traces.finish({'episode': 2, 'seed': 7, 'success': False, 'reason': 'other'})
    assert traces.first_failed is kept


def test_traces_are_thinned_and_bounded():
    traces = EpisodeTraces(['a'])
    traces.start(0)
    for i in range(5 * TRACE_MAX_SAMPLES):  # a 500 Hz driver over a long episode
        traces.measure(i * 0.002, ['a'], [float(i)])
    samples = traces.measured.samples
    assert len(samples) == TRACE_MAX_SAMPLES
    assert np.diff([t for t, _ in samples]) == pytest.approx(TRACE_PERIOD_S)
    assert samples[-1][0] == pytest.approx((5 * TRACE_MAX_SAMPLES - 5) * 0.002)
