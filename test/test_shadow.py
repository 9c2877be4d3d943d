"""Shadow mode without DDS (docs/SHADOW.md): core/shadow.py, the judge's rules in
core/safety/cell.py, and the cell lint that a shadow policy reaches the robot through nothing.

core/shadow.py gets inputs whose answer is known: identical streams (zero error), a known offset
(that error), answers arriving out of order (placed by joint_states stamp), audit records made
by the safety node's own AuditBatcher (their counts). The judge runs the real SafetyCell on the
LR Mate's description and the collaborative profile.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from noetra_ros.bringup import (cells_dir, check_command_routing, command_routing_problems,
                                available_cells, load_cell)
from noetra_ros.core import audit
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.recording import EpisodeInfo
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.safety import (ArmPositions, MeasuredJoints, SafetyCell, SafetyNodeSettings,
                                    SafetyState)
from noetra_ros.core.shadow import (Answer, AnswerPlacer, compare_answers, DRIVING, episode_report,
                                    EpisodeData, JUDGE_AUTO_ARM_VIA, judge_summary, JudgeSteps,
                                    series_indices, SHADOW, ShadowComparator)

ROBOT = 'fanuc_lrmate200id'
JOINTS = ['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6']
STEP_NS = 50_000_000  # 20 Hz
T0 = 10_000_000_000
THRESHOLD = 0.02125   # half the LR Mate gripper's stroke


def stamps(count: int, first: int = T0) -> list[int]:
    return [first + i * STEP_NS for i in range(count)]


def arm(i: int) -> np.ndarray:
    """A different arm command at every step."""
    return np.array([0.01 * i, -0.02 * i, 0.3, 0.0, 0.5, 0.001 * i * i])


def answers(steps, offset=0.0, gripper=0.0) -> dict[int, Answer]:
    return {s: Answer(s, arm(i) + offset, gripper=gripper) for i, s in enumerate(steps)}


# ---------------------------------------------------------------------------- divergence
def test_identical_streams_have_zero_error():
    steps = stamps(40)
    div = compare_answers(steps, answers(steps), answers(steps), T0, THRESHOLD)
    assert (div.steps, div.compared) == (40, 40)
    assert np.all(div.l2_rad == 0.0) and np.all(div.max_abs_rad == 0.0)
    assert div.gripper_compared == 40 and div.gripper_disagreement == 0.0
    assert div.times_s[0] == 0.0 and div.times_s[-1] == pytest.approx(39 * 0.05)


def test_a_known_offset_is_that_error_and_a_gripper_flip_is_counted():
    steps = stamps(20)
    offset = np.array([0.03, -0.04, 0.0, 0.0, 0.0, 0.0])  # a 3-4-5 triangle: L2 0.05 rad
    shadow = answers(steps, offset, gripper=0.0)
    for s in steps[:5]:  # closed (0.04 > half the stroke) where the reference is open
        shadow[s] = Answer(s, shadow[s].command, gripper=0.04)
    div = compare_answers(steps, answers(steps), shadow, T0, THRESHOLD)
    assert div.l2_rad == pytest.approx(np.full(20, 0.05))
    assert div.max_abs_rad == pytest.approx(np.full(20, 0.04))
    assert div.per_joint_max_abs_rad == pytest.approx([0.03, 0.04, 0, 0, 0, 0])
    assert div.gripper_disagreement == pytest.approx(5 / 20)


def test_steps_the_shadow_did_not_answer_are_not_compared():
    steps = stamps(10)
    shadow = {s: a for s, a in answers(steps, np.full(6, 0.1)).items() if s not in steps[3:6]}
    div = compare_answers(steps, answers(steps), shadow, T0)
    assert (div.steps, div.compared) == (10, 7)
    assert list(div.times_s) == pytest.approx([0.0, 0.05, 0.1, 0.3, 0.35, 0.4, 0.45])
    assert div.gripper_compared == 0  # no threshold given: grippers not compared


def test_the_series_keeps_at_most_max_hz_samples_and_the_peaks():
    times = np.arange(500) * 0.002                # 500 Hz for one second
    values = np.zeros(500)
    values[137] = 9.0                              # one peak
    keep = series_indices(times, values, 20.0)
    assert len(keep) == 20
    assert 137 in keep and list(keep) == sorted(keep)


# ---------------------------------------------------------------------------- placement
def test_answers_are_placed_by_joint_states_stamp_whatever_the_arrival_order():
    placer = AnswerPlacer()
    s = stamps(5)
    placer.joint_state(s[0])
    # The answer to step 1 arrives before joint_states 1 itself: it waits for it.
    assert placer.stamped(s[1], 'answer 1') is None
    settled = placer.joint_state(s[1])
    assert [(a.step_ns, a.command) for a in settled] == [(s[1], 'answer 1')]
    placer.joint_state(s[2])
    placer.joint_state(s[3])
    # The answer to step 0 arrives after steps 1..3: still step 0.
    assert placer.stamped(s[0], 'answer 0').step_ns == s[0]
    # An asynchronous source's stamp between two states: the state at or before it.
    assert placer.stamped(s[2] + 7_000_000, 'between').step_ns == s[2]
    # Unstamped, without source timestamps: the last state handled, with the gripper in force.
    placer.gripper(0.04)
    last = placer.with_gripper(placer.unstamped('unstamped'))
    assert (last.step_ns, last.gripper) == (s[3], 0.04)
    # A stamped answer newer than every state, settled by a later state that skips its stamp.
    assert placer.stamped(s[3] + 10_000_000, 'late state') is None
    assert [a.step_ns for a in placer.joint_state(s[4])] == [s[3]]
    # Older than every state it remembers: dropped, counted.
    assert placer.stamped(T0 - STEP_NS, 'too old') is None and placer.dropped == 1


def test_unstamped_answers_are_placed_by_when_they_were_sent_not_handled():
    # An executor that serves joint_states before the command of the same wake-up: the command
    # sent in answer to state k (after k, before k + 1) is handled after state k + 1.
    placer = AnswerPlacer()
    s = stamps(4)
    sent = [1_000_000 * (i + 1) for i in range(4)]      # states sent at 1, 2, 3, 4 ms
    placer.joint_state(s[0], sent[0])
    placer.joint_state(s[1], sent[1])
    placer.gripper('closed', sent[0] + 100)             # sent with the answer to step 0 ...
    answer = placer.unstamped('answer 0', sent[0] + 200)
    resolved = placer.with_gripper(answer)
    assert (resolved.step_ns, resolved.command, resolved.gripper) == (s[0], 'answer 0', 'closed')
    # Handled before the state it answers: waits until a state sent after it is known.
    assert placer.unstamped('answer 1', sent[1] + 200) is None
    placer.gripper('open', sent[1] + 100)                # ... handled after its arm command
    (settled,) = placer.joint_state(s[2], sent[2])
    resolved = placer.with_gripper(settled)
    assert (resolved.step_ns, resolved.command, resolved.gripper) == (s[1], 'answer 1', 'open')
    # The earlier answer keeps its own gripper, whatever came in since.
    assert placer.with_gripper(answer).gripper == 'closed'


def test_the_comparator_aligns_a_late_shadow_with_the_drive():
    comparator = ShadowComparator(JOINTS, THRESHOLD)
    s = stamps(6)
    # The driving controller answers each state before the next (unstamped, as the expert);
    # the shadow policy (stamped) falls behind and catches up after step 5 was published.
    for i, stamp in enumerate(s):
        comparator.joint_state(stamp, arm(i), wall=0.0)
        comparator.gripper(DRIVING, 0.0)
        comparator.arm(DRIVING, arm(i))
    for i, stamp in enumerate(s):
        comparator.gripper(SHADOW, 0.0)
        comparator.arm(SHADOW, arm(i) + 0.01, stamp)
    driving, shadow = comparator.answers[DRIVING], comparator.answers[SHADOW]
    assert sorted(driving) == sorted(shadow) == s
    div = compare_answers(s, driving, shadow, s[0], THRESHOLD)
    assert div.l2_rad == pytest.approx(np.full(6, 0.01 * math.sqrt(6)))


def task_status(episode: int, stamp: int, state: str = 'running', result: str = '') -> dict:
    return {'state': state, 'episode': str(episode), 'seed': str(100 + episode),
            'instruction': 'put the red block in the left bin', 'result': result,
            'detail': result, 'stamp_ns': str(stamp)}


def test_an_episode_is_reported_once_the_shadow_has_answered_its_last_step():
    comparator = ShadowComparator(JOINTS, THRESHOLD, report_wait_s=5.0)
    s = stamps(12)
    for i, stamp in enumerate(s):
        ended = i >= 8  # steps 8.. are the pause after the episode ended at step 8
        comparator.task_status(task_status(0, stamp, 'success' if ended else 'running',
                                           'success' if ended else ''), wall=1.0)
        comparator.joint_state(stamp, arm(i), wall=1.0)
        comparator.gripper(DRIVING, 0.0)
        comparator.arm(DRIVING, arm(i))
    for i in range(7):  # the shadow has answered steps 0..6 only; closed on the first two
        comparator.gripper(SHADOW, 0.04 if i < 2 else 0.0)
        comparator.arm(SHADOW, arm(i) + 0.02, s[i])
    assert comparator.due(wall=2.0) == []  # step 7 may still come
    comparator.arm(SHADOW, arm(7) + 0.02, s[7])
    (report,) = comparator.due(wall=2.0)
    assert (report['episode'], report['seed'], report['result']) == (0, 100, 'success')
    assert (report['steps'], report['driving_answered'], report['shadow_answered']) == (8, 8, 8)
    assert report['divergence']['l2_rad']['max'] == pytest.approx(0.02 * math.sqrt(6))
    assert report['divergence']['per_joint_max_abs_rad']['joint_3'] == pytest.approx(0.02)
    assert report['series']['t_s'] == pytest.approx([0.05 * i for i in range(8)])
    assert report['duration_s'] == pytest.approx(0.4)
    assert report['gripper'] == {'compared': 8, 'disagreement': 2 / 8}
    assert comparator.steps == s[8:]  # what the report used is forgotten


def test_a_silent_shadow_is_reported_after_the_wait():
    comparator = ShadowComparator(JOINTS, THRESHOLD, report_wait_s=2.0)
    s = stamps(4)
    for i, stamp in enumerate(s):
        ended = i == 3
        comparator.task_status(task_status(0, stamp, 'failed' if ended else 'running',
                                           'failed' if ended else ''), wall=10.0)
        comparator.joint_state(stamp, arm(i), wall=10.0)
        comparator.arm(DRIVING, arm(i))
    assert comparator.due(wall=11.0) == []
    (report,) = comparator.due(wall=12.0)
    assert report['shadow_answered'] == 0 and report['divergence']['l2_rad']['p50'] is None
    assert report['series'] == {'t_s': [], 'l2_rad': [], 'max_abs_rad': []}


def test_windows_are_the_episodes_of_a_cell_without_a_task_checker():
    comparator = ShadowComparator(JOINTS, episodes='window', window_s=1.0, report_wait_s=0.5)
    for i, stamp in enumerate(stamps(50)):  # 2.5 s at 20 Hz
        comparator.joint_state(stamp, arm(i), wall=float(i))
        comparator.arm(DRIVING, arm(i))
        comparator.arm(SHADOW, arm(i), stamp)
    reports = comparator.due(wall=100.0) + comparator.due(wall=100.0, final=True)
    assert [(r['episode'], r['steps'], r['seed']) for r in reports] == [
        (0, 20, None), (1, 20, None), (2, 10, None)]
    assert all(r['divergence']['l2_rad']['max'] == 0.0 for r in reports)


def test_the_measured_reference_is_the_arm_one_step_later():
    comparator = ShadowComparator(JOINTS, THRESHOLD, reference='measured')
    s = stamps(5)
    for i, stamp in enumerate(s):
        comparator.joint_state(stamp, arm(i), wall=0.0)
        comparator.arm(DRIVING, arm(i) + 5.0)            # ignored: the arm is the reference
        comparator.arm(SHADOW, arm(i + 1), stamp)         # the shadow asks for the next pose
    div = compare_answers(s, comparator.answers[DRIVING], comparator.answers[SHADOW], s[0])
    assert div.compared == 4 and np.all(div.l2_rad == 0.0)


# ---------------------------------------------------------------------------- audit
def audit_records(batcher: audit.AuditBatcher) -> list[audit.AuditRecord]:
    """The records a safety node would publish, encoded and decoded as shadow_node reads them."""
    return [r for entry in batcher.take()
            for r in audit.decode_entry(entry.name, dict(entry.values))]


def test_audit_records_become_would_be_interventions_per_minute():
    batcher = audit.AuditBatcher(batch_cycles=2)
    t = T0
    batcher.operator(t, 'arm', JUDGE_AUTO_ARM_VIA, True, 'HOLDING: not armed yet', 'ARMED')
    decisions = ([('passed', '')] * 100 + [('clamped', 'limited_velocity')] * 10
                 + [('passed', '')] * 50 + [('clamped', 'clamped_position,limited_velocity')] * 5
                 + [('held', 'command timeout')] * 3 + [('passed', '')] * 31)
    for decision, reason in decisions:
        t += STEP_NS
        batcher.cycle(t, decision, reason, t if decision != 'held' else None)
    batcher.operator(t, 'arm', JUDGE_AUTO_ARM_VIA, True,
                     'FAULT: tracking error joint_1 0.4100 rad > 0.3 rad', 'ARMED')
    batcher.operator(t, 'arm', JUDGE_AUTO_ARM_VIA, True, 'HOLDING: command timeout', 'ARMED')
    batcher.rejected(t, 'safety/joint_trajectory', 'non-finite value')
    summary = judge_summary(audit_records(batcher))
    assert summary['cycles'] == 199
    assert summary['decisions'] == {'passed': 181, 'clamped': 15, 'held': 3, 'rejected': 1}
    rows = {(r['decision'], r['reason']): (r['count'], r['cycles']) for r in
            summary['interventions']}
    # Runs of cycles: limited_velocity acted in two runs (10 + 5 cycles), the position clamp
    # in one; the hold and the rejection once each.
    assert rows == {('clamped', 'limited_velocity'): (2, 15),
                    ('clamped', 'clamped_position'): (1, 5),
                    ('held', 'command timeout'): (1, 3),
                    ('rejected', 'non-finite value'): (1, 0)}
    minutes = 199 * 0.05 / 60.0  # first to last record
    assert summary['interventions'][0]['per_minute'] == pytest.approx(2 / minutes)
    assert (summary['reanchors'], summary['re_arms']) == (1, 2)


def test_an_episode_report_is_json_ready():
    import json
    s = stamps(10)
    data = EpisodeData(EpisodeInfo(episode=3, seed=7, instruction='x', result='success',
                                   start_stamp_ns=s[0], end_stamp_ns=s[-1] + STEP_NS),
                       s, answers(s), answers(s, np.full(6, 0.01)), answers(s, np.full(6, 0.02)))
    report = json.loads(json.dumps(episode_report(data, JOINTS, THRESHOLD)))
    assert report['judged_divergence']['compared'] == 10
    assert report['judged_divergence']['l2_rad']['p95'] == pytest.approx(0.02 * math.sqrt(6))
    assert report['judge']['cycles'] == 0 and report['gripper']['disagreement'] == 0.0


# ---------------------------------------------------------------------------- judge steps
def test_the_judge_cycles_by_stamp_and_waits_for_the_answer():
    judge = JudgeSteps(wait_s=1.0)
    s = stamps(6)
    judge.joint_state(s[0], 'm0', wall=0.0)
    judge.joint_state(s[1], 'm1', wall=0.0)
    assert judge.due(0.1) == []                       # step 0 waits for its answer
    judge.gripper([0.01])
    judge.answer('a0', s[0])
    (step,) = judge.due(0.1)
    assert (step.stamp_ns, step.measured, step.arm, step.gripper) == (s[0], 'm0', 'a0', [0.01])
    judge.joint_state(s[2], 'm2', wall=0.2)
    judge.answer('a2', s[2])                          # step 1 was skipped by the source
    assert [(st.stamp_ns, st.arm) for st in judge.due(0.2)] == [(s[1], None), (s[2], 'a2')]
    judge.answer('a1 too late', s[1])
    assert judge.late_answers == 1
    judge.joint_state(s[3], 'm3', wall=0.3)
    assert judge.due(1.2) == []                       # not yet a second
    assert [(st.stamp_ns, st.arm) for st in judge.due(1.3)] == [(s[3], None)]
    assert judge.unanswered == 2


# ---------------------------------------------------------------------------- the judge cell
@pytest.fixture(scope='module')
def description():
    return load_robot_description(ROBOT)


def judge_cell(**settings) -> tuple[SafetyCell, list[str]]:
    armed: list[str] = []
    cell = SafetyCell.from_settings(
        SafetyNodeSettings(robot=ROBOT, profile='collaborative', update_trigger='command',
                           period_s=0.05, **settings), on_armed=armed.append)
    return cell, armed


def measured(description, q, t) -> MeasuredJoints:
    return MeasuredJoints(description.state_joint_names, list(q) + [0.0, 0.0], None, t)


def test_the_judge_arms_itself_and_is_not_held_by_an_arm_it_does_not_drive(description):
    judge, armed = judge_cell(judge_only=True)
    driving, _ = judge_cell(auto_arm=True)
    home = np.array(description.home, dtype=float)
    t = 0.05
    first = judge.step(measured(description, home, t), ArmPositions(list(home)), None, t)
    assert first.state is SafetyState.ARMED and armed == ['auto_arm']  # no auto_arm set
    assert judge.armed_from.startswith('HOLDING')
    driving.step(measured(description, home, t), ArmPositions(list(home)), None, t)
    # The arm moves away (another controller drives it: 0.4 rad/s on joint_1) while the source
    # keeps asking for home. The driving supervisor (tracking tolerance 0.1 rad) faults; the
    # judge judges on until the two are more than judge_reanchor_rad (0.3) apart.
    for i in range(1, 19):
        t += 0.05
        q = home + np.array([0.02 * i, 0, 0, 0, 0, 0])
        out = judge.step(measured(description, q, t), ArmPositions(list(home)), None, t)
        driving.step(measured(description, q, t), ArmPositions(list(home)), None, t)
        if 0.02 * i < 0.29:
            assert out.state is SafetyState.ARMED and out.arm[0] == pytest.approx(home[0])
    assert driving.supervisor.counters.get('tracking_faults', 0) >= 1
    assert judge.supervisor.counters.get('tracking_faults', 0) == 1
    assert judge.armed_from.startswith('FAULT: tracking error joint_1')
    # Re-anchored at the measured arm, and judging on from there.
    assert out.state is SafetyState.ARMED and out.arm[0] > home[0] + 0.29


def test_the_judge_clamps_what_the_supervisor_would_have_clamped(description):
    judge, _ = judge_cell(judge_only=True)
    home = np.array(description.home, dtype=float)
    target = home.copy()
    target[0] = description.limits.upper[0] + 0.3  # beyond joint_1's bound
    t = 0.0
    for _ in range(40):
        t += 0.05
        out = judge.step(measured(description, home, t), ArmPositions(list(target)), None, t)
    assert out.state is SafetyState.ARMED and 'clamped_position' in out.interventions
    assert audit.cycle_decision(True, out.reason, out.command_stamp is not None,
                                out.interventions)[0] == audit.CLAMPED


def test_judge_settings_are_checked():
    assert SafetyNodeSettings().judge_only is False
    with pytest.raises(ConfigError, match='judge_only and mobile_base'):
        SafetyNodeSettings(judge_only=True, mobile_base=True)
    with pytest.raises(ConfigError, match='judge_reanchor_rad'):
        SafetyNodeSettings(judge_reanchor_rad=0.0)


# ---------------------------------------------------------------------------- the cell lint
CELL = 'pick_place_lrmate_policy_shadow'


def variant(tmp_path, edit) -> str:
    raw = yaml.safe_load((cells_dir() / f'{CELL}.yaml').read_text())
    nodes = {n['name']: n for n in raw['nodes']}
    edit(nodes)
    path = tmp_path / 'variant.yaml'
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.mark.parametrize('cell_name', available_cells())
def test_every_cell_routes_its_commands_through_a_supervisor(cell_name):
    assert command_routing_problems(load_cell(cell_name)) == []


def test_the_shadow_cell_passes_the_lint_and_a_policy_wired_to_the_driver_does_not(tmp_path):
    check_command_routing(load_cell(CELL))
    straight = variant(tmp_path, lambda n: n['policy']['remappings'].pop(
        'forward_position_controller/commands'))
    with pytest.raises(ConfigError, match='policy would publish forward_position_controller/'
                                          'commands on forward_position_controller/commands'):
        check_command_routing(load_cell(straight))
    judged_to_robot = variant(tmp_path, lambda n: n['shadow_safety']['remappings'].update(
        {'shadow/judged/gripper_commands': 'gripper_position_controller/commands'}))
    with pytest.raises(ConfigError, match="shadow_safety remaps .*shadow/judged/gripper"):
        check_command_routing(load_cell(judged_to_robot))

    def only_the_judge(nodes):
        nodes['expert']['remappings'] = nodes['policy']['remappings']
        nodes['safety']['parameters']['judge_only'] = True
    with pytest.raises(ConfigError, match='no safety_node drives the robot'):
        check_command_routing(load_cell(variant(tmp_path, only_the_judge)))


def test_noetra_run_prints_one_line_per_shadow_episode():
    from noetra_ros.cli import format_shadow
    s = stamps(20)
    batcher = audit.AuditBatcher(batch_cycles=2)
    for i, stamp in enumerate(s):
        batcher.cycle(stamp, 'clamped' if i < 4 else 'passed',
                      'tool_speed_limited' if i < 4 else '', stamp)
    data = EpisodeData(EpisodeInfo(episode=0, seed=3, result='success', start_stamp_ns=s[0],
                                   end_stamp_ns=s[-1] + STEP_NS),
                       s, answers(s), answers(s, np.array([0.03, 0.04, 0, 0, 0, 0])),
                       audit_records=audit_records(batcher))
    header, columns, line = format_shadow([episode_report(data, JOINTS, THRESHOLD)])
    assert 'driving controller' in header and 'judge' in columns
    assert line.split()[:9] == ['0', '20/20', '0.050', '/', '0.050', '/', '0.050', '0.040',
                                '0.0']
    assert line.endswith('clamped tool_speed_limited 1 (63.2/min)')  # one run in 0.95 s
    assert format_shadow([]) == []
