"""A lockstep cell whose policy joins after the reset runs the same episode as one whose policy
was there first.

On a loaded machine the policy's readers can match the sim's writers seconds after `noetra run`
sent the reset (2.4 s seen on a Ray worker): the episode's first observation never reached the
policy and the sim stepped on without it, so the policy's episode started late and went another
way (a seed that succeeds serially timed out in CI). Here the policy process is started 2.5 s
after the reset, which makes that happen every time: the sim must publish the first observation
again until someone answers, the policy must wait for the latched instruction, and the episode
(outcome, length, every joint state) must be the prompt one. Real node processes, real DDS.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import UInt32
import pytest

from noetra_ros.bringup import load_cell
from ros_harness import key_values, NodeProcess, RosSession

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

CELL = 'pick_place_lrmate_policy'
SEED = 10000  # succeeds in 6.6 s of sim time (test_distributed_graph's serial reference)
LOCKSTEP_TIMEOUT_S = 1.0
LATE_BY_S = 2.5
START_TIMEOUT_S = 120.0  # model loading and discovery on a loaded 2-core machine
EPISODE_TIMEOUT_S = 240.0


def run_episode(work_dir, policy_late_by_s: float) -> dict:
    """One lockstep episode of SEED; the policy node starts `policy_late_by_s` after the reset
    (0: before it, and known to be loaded). Returns outcome, counters and joint states."""
    cell = load_cell(CELL, {'sim': {'episodes': 1, 'first_seed': SEED, 'wait_for_reset': True,
                                    'episode_timeout_s': 8.0,
                                    'lockstep_timeout_s': LOCKSTEP_TIMEOUT_S}})
    procs = {spec.name: NodeProcess(spec, work_dir) for spec in cell.nodes}
    session = RosSession(work_dir)
    session.start()
    try:
        probe = session.probe()
        status = probe.record('task/status', DiagnosticStatus)
        joints = probe.record('joint_states', JointState)
        diagnostics = probe.record('/diagnostics', DiagnosticArray)
        probe.publisher('task/reset', UInt32)
        for name, proc in procs.items():
            if name != 'policy' or not policy_late_by_s:
                proc.start()
        if not policy_late_by_s:
            procs['policy'].wait_log('active (lockstep mode)', START_TIMEOUT_S)
        procs['sim'].wait_log('waiting for the first task/reset', START_TIMEOUT_S)
        session.wait_matched(probe)
        session.spin_for(1.0)  # the sim's side of the matching settles too
        probe.publish('task/reset', UInt32(data=SEED))
        if policy_late_by_s:
            session.spin_for(policy_late_by_s)
            procs['policy'].start()

        def finished() -> bool:
            for name, proc in procs.items():
                assert proc.running() or name not in ('sim', 'policy', 'safety'), \
                    f'{name} exited:\n{proc.log_text()[-3000:]}'
            return bool(status) and key_values(status[-1].msg)['state'] == 'finished'

        session.spin_until(finished, EPISODE_TIMEOUT_S, what='the episode to finish')
        last = key_values(status[-1].msg)

        def sim_counters():
            for received in reversed(diagnostics):
                for entry in received.msg.status:
                    if entry.name == 'sim: simulation':
                        return entry
            return None

        session.spin_until(lambda: sim_counters() is not None, 10.0, what='sim diagnostics')
        sim = sim_counters()
        episode_stamps = {int(k['stamp_ns']) for k in (key_values(r.msg) for r in status)
                          if k['seed'] == str(SEED)}
        first = min(episode_stamps)
        states = {}
        for received in joints:
            header = received.msg.header
            stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            if stamp >= first:
                states.setdefault(stamp - first, tuple(received.msg.position))
        return {'result': last['result'], 'elapsed_s': last['elapsed_s'], 'states': states,
                'lockstep_resends': int(key_values(sim)['lockstep_resends']),
                'lockstep_timeouts': int(key_values(sim)['lockstep_timeouts']),
                'policy_log': procs['policy'].log_text()}
    finally:
        for proc in procs.values():
            proc.stop()
        session.close()


def test_a_policy_that_joins_after_the_reset_drives_the_prompt_episode(ros_domain_id, tmp_path):
    prompt = run_episode(tmp_path / 'prompt', 0.0)
    late = run_episode(tmp_path / 'late', LATE_BY_S)
    assert prompt['result'] == 'success', prompt['policy_log'][-2000:]
    assert late['lockstep_resends'] >= 1, 'the policy was not late: nothing was sent again'
    assert late['lockstep_timeouts'] == prompt['lockstep_timeouts'] == 0
    assert (late['result'], late['elapsed_s']) == (prompt['result'], prompt['elapsed_s'])
    # Every joint state both heard, at the same time into the episode, is the same.
    common = sorted(set(prompt['states']) & set(late['states']))
    assert len(common) >= 0.9 * len(prompt['states']) > 50
    for offset in common:
        assert late['states'][offset] == prompt['states'][offset], \
            f'{offset / 1e9:.2f} s into the episode the arm is elsewhere'
