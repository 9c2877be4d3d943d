"""The one policy loop (core/policy/loop.py), without ROS: when it infers, what it commands,
how it reports problems, and that policy_node and the in-process evaluation share its defaults.

The model is a real onnxruntime session of a "ramp" policy: row k of every chunk is the
measured state + k * STEP on every joint and the gripper, so each command says which
observation it was planned from and how far along its chunk it is.
"""
import numpy as np
import onnx
import pytest

from noetra_ros.core.episodes import DEFAULT_EPISODE_TIMEOUT_S, EpisodeSchedule
from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.policy.contract import contract_from_dict
from noetra_ros.core.policy.loop import (
    DEFAULTS, INPUT_ERRORS, LoopConfig, NO_COMMAND_STALE, NoFreshInputs, Observation, PolicyLoop)
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import build_toy_model, PolicyRuntime
from toy_models import ramp_contract, set_ramp_head

JOINTS = [f'joint_{i}' for i in range(1, 7)]
CHUNK, DT, STEP = 10, 0.05, 0.01
IMAGE = np.full((24, 32, 3), 120, np.uint8)


def _contract():
    return ramp_contract(JOINTS, CHUNK, DT)


@pytest.fixture(scope='module')
def runtime(tmp_path_factory):
    model = set_ramp_head(build_toy_model(_contract(), seed=0), CHUNK, STEP, len(JOINTS) + 1)
    path = tmp_path_factory.mktemp('loop') / 'ramp.onnx'
    onnx.save(model, str(path))
    with PolicyRuntime(path, intra_op_threads=1) as session:
        yield session


def _observation(stamp, q, gripper=0.0, images=None):
    return Observation(stamp=stamp, joint_positions=dict(zip(JOINTS, q)),
                       images=images if images is not None else {
                           'scene_camera': ImageFrame(IMAGE, 32, 24, 'rgb8')},
                       instruction='pick the red cube', gripper_position=gripper)


class Recorder:
    """An observe() callable for step t whose state is BASE * step index; logs its calls."""

    def __init__(self):
        self.calls = []

    def at(self, k):
        def observe():
            self.calls.append(k)
            return _observation(k * DT, np.full(6, 0.1 * k), gripper=0.001 * k)
        return observe


def test_lockstep_infers_every_replan_steps_and_commands_the_chunk_for_now(runtime):
    loop = PolicyLoop(runtime, JOINTS, LoopConfig(replan_steps=3, blend='replace'))
    recorder = Recorder()
    for k in range(10):
        result = loop.step(k * DT, recorder.at(k))
        assert not result.problems
        planned_at = 3 * (k // 3)
        assert (result.inference is not None) == (k == planned_at)
        command = result.command
        # The newest chunk (observation of step planned_at) sampled k - planned_at rows in.
        rows = np.array([np.full(6, 0.1 * planned_at + (k - planned_at + i) * STEP)
                         for i in range(3)])
        assert np.allclose(command.positions, rows, atol=1e-6)
        assert command.gripper_position == pytest.approx(
            0.001 * planned_at + (k - planned_at) * STEP, abs=1e-6)
        assert command.stamp == k * DT and command.joint_names == tuple(JOINTS)
        # Row i is reached i + 1 periods after the command's stamp (JointTrajectory points).
        assert command.times_from_start_ns == (50_000_000, 100_000_000, 150_000_000)
    # Cameras are read only when the loop infers.
    assert recorder.calls == [0, 3, 6, 9]


def test_default_loop_replans_every_second_step_and_reset_restarts_in_phase(runtime):
    loop = PolicyLoop(runtime, JOINTS)
    assert loop.config == DEFAULTS and DEFAULTS.replan_steps == 2
    recorder = Recorder()
    for k in range(5):
        loop.step(k * DT, recorder.at(k))
    loop.reset()  # a new task: nothing queued, replanning starts again at once
    assert loop.command_at(5 * DT).command is None
    for k in range(5, 8):
        loop.step(k * DT, recorder.at(k))
    assert recorder.calls == [0, 2, 4, 5, 7]


def test_a_failed_replan_still_commands_from_the_queue_and_retries_next_step(runtime):
    loop = PolicyLoop(runtime, JOINTS, LoopConfig(replan_steps=2, blend='replace'))
    assert loop.step(0.0, lambda: _observation(0.0, np.zeros(6))).inference is not None

    def stale():
        raise NoFreshInputs('joints is stale: 0.600 s old')

    loop.step(DT, stale)  # not due: stale() is not called
    result = loop.step(2 * DT, stale)
    assert [(p.kind, p.reason) for p in result.problems] == [
        (NO_COMMAND_STALE, 'joints is stale: 0.600 s old')]
    # The queue still covers now: the robot keeps following the last chunk.
    assert np.allclose(result.command.positions[0], 2 * STEP, atol=1e-6)
    result = loop.step(3 * DT, lambda: _observation(3 * DT, np.full(6, 0.5)))
    assert result.inference is not None and not result.problems
    assert np.allclose(result.command.positions[0], 0.5, atol=1e-6)


def test_unusable_inputs_are_problems_that_name_the_cause(runtime):
    loop = PolicyLoop(runtime, JOINTS)

    def no_camera():
        return _observation(0.0, np.zeros(6), images={})

    def bad_state():
        raise InputError('joint_states.position: 5 values for 8 names')

    for observe, words in ((no_camera, "camera 'scene_camera'"),
                           (bad_state, '5 values for 8 names')):
        result = loop.plan(observe, now=0.0)
        assert result.inference is None and len(result.problems) == 1
        problem = result.problems[0]
        assert problem.kind == INPUT_ERRORS and words in problem.reason
    # Nothing was queued: no command, and the reason says so.
    result = loop.command_at(0.0)
    assert result.command is None
    assert result.problems[0].kind == NO_COMMAND_STALE and 'queue empty' in \
        result.problems[0].reason


def test_async_chunk_inferred_across_a_reset_is_dropped(runtime):
    # The inference thread takes an observation of the old task; the new instruction arrives
    # (reset) before its chunk is queued: that chunk must never be commanded.
    loop = PolicyLoop(runtime, JOINTS)

    def observe_then_new_task():
        observation = _observation(1.0, np.zeros(6))
        loop.reset()
        return observation

    result = loop.plan(observe_then_new_task, now=1.01)
    assert result.inference is None and result.problems[0].kind == NO_COMMAND_STALE
    assert loop.command_at(1.02).command is None
    # A chunk planned within one task is queued and sampled at the control clock.
    result = loop.plan(lambda: _observation(2.0, np.zeros(6)), now=2.01)
    assert result.inference is not None and result.inference.stamp == 2.0
    command = loop.command_at(2.05).command
    assert np.allclose(command.positions[0], STEP, atol=1e-6)


def test_loop_config_rejects_bad_values_naming_them():
    for kwargs, name in (({'replan_steps': 0}, 'replan_steps'), ({'blend': 'mix'}, 'blend'),
                         ({'trajectory_points': True}, 'trajectory_points'),
                         ({'command_interface': 'velocity'}, 'command_interface'),
                         ({'blend_window_s': -1.0}, 'blend_window_s')):
        with pytest.raises(ConfigError, match=name):
            LoopConfig(**kwargs)
    # Parameters it does not know are ignored; YAML integers are accepted for seconds.
    config = LoopConfig.from_parameters({'replan_steps': 3, 'blend_window_s': 0,
                                         'model_path': 'x.onnx'})
    assert config == LoopConfig(replan_steps=3, blend_window_s=0.0)


def test_a_model_without_joint_position_targets_is_refused(tmp_path):
    contract = contract_from_dict({
        'contract_version': 1, 'name': 'velocities', 'robot_joints': JOINTS,
        'inputs': [{'name': 'state', 'kind': 'state', 'components': [
            {'source': 'joint_positions', 'joints': JOINTS}]}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 4,
                     'step_period_s': DT, 'components': [
                         {'meaning': 'joint_velocities', 'joints': JOINTS}]}]})
    path = tmp_path / 'velocities.onnx'
    onnx.save(build_toy_model(contract), str(path))
    with PolicyRuntime(path) as session:
        with pytest.raises(ConfigError, match='joint position targets'):
            PolicyLoop(session, JOINTS)


def test_node_evaluation_and_cell_share_one_set_of_defaults(tmp_path):
    from noetra_ros.core.sim.world import WorldConfig
    from noetra_ros.core.safety import SafetyNodeSettings
    from noetra_ros.learning.record import EvalSettings, SAFETY_SETTINGS_IN_PROCESS
    from noetra_ros.policy_node import PARAMETERS as POLICY_PARAMETERS
    from noetra_ros.safety_node import PARAMETERS as SAFETY_PARAMETERS
    from noetra_ros.sim_node import PARAMETERS as SIM_PARAMETERS

    for name in LoopConfig.__dataclass_fields__:
        assert POLICY_PARAMETERS[name][0] == getattr(DEFAULTS, name), name
    # The safety node declares its parameters from the settings the evaluation reads a cell
    # with, and the evaluation has decided what to do with each of them.
    defaults = SafetyNodeSettings()
    for name, (default, _) in SAFETY_PARAMETERS.items():
        if name in SafetyNodeSettings.FROM_DRIVER:
            # '' = the driver's own (core/drivers/profiles.py), resolved by the settings.
            assert default == '' and getattr(defaults, name), name
            continue
        assert default == (list(getattr(defaults, name)) if isinstance(default, list)
                           else getattr(defaults, name)), name
    assert set(SAFETY_PARAMETERS) == set(SAFETY_SETTINGS_IN_PROCESS)
    # One episode limit: the world's task check, the sim node and its schedule.
    assert WorldConfig().episode_timeout_s == DEFAULT_EPISODE_TIMEOUT_S
    assert SIM_PARAMETERS['episode_timeout_s'][0] == DEFAULT_EPISODE_TIMEOUT_S
    assert EpisodeSchedule().episode_timeout_s == DEFAULT_EPISODE_TIMEOUT_S

    # The in-process evaluation reads the shipped cell as its nodes do ...
    shipped = EvalSettings.from_cell('pick_place_lrmate_policy')
    assert shipped.loop == LoopConfig(replan_steps=2, blend='ensemble', blend_window_s=0.1)
    assert shipped.episode_timeout_s == 25.0 and shipped.world_config().episode_timeout_s == 25.0
    assert (shipped.safety.profile, shipped.safety.period_s, shipped.safety.auto_arm) == (
        'collaborative', 0.05, True)
    # ... and a cell that leaves the loop and the limit out gets the nodes' defaults.
    cell = tmp_path / 'bare.yaml'
    cell.write_text(
        'cell: {name: bare, robot: fanuc_lrmate200id}\n'
        'nodes:\n'
        '  - {name: sim, executable: sim_node, parameters: {cameras: [workspace_camera],\n'
        '     workspace_camera: {width: 64, height: 48}}}\n'
        '  - {name: policy, executable: policy_node, parameters: {model_path: m.onnx}}\n'
        '  - {name: safety, executable: safety_node, parameters: {profile: industrial,\n'
        '     period_s: 0.05, update_trigger: command}}\n')
    bare = EvalSettings.from_cell(str(cell))
    assert bare.loop == DEFAULTS and bare.episode_timeout_s == DEFAULT_EPISODE_TIMEOUT_S
    assert bare.safety == SafetyNodeSettings(profile='industrial', update_trigger='command')
    assert not bare.safety.auto_arm
    world = bare.world_config()
    assert [(c.name, c.width, c.height) for c in world.cameras] == [('workspace_camera', 64, 48)]
    assert EvalSettings.from_cell(str(cell), episode_timeout_s=9.0).episode_timeout_s == 9.0


def test_cells_the_evaluation_cannot_reproduce_are_refused_with_the_reason(tmp_path):
    from noetra_ros.learning.__main__ import main as learning_main
    from noetra_ros.learning.record import EvalSettings

    cell = tmp_path / 'realtime.yaml'
    cell.write_text(
        'cell: {name: realtime, robot: fanuc_lrmate200id}\n'
        'nodes:\n'
        '  - {name: sim, executable: sim_node}\n'
        '  - {name: policy, executable: policy_node}\n'
        '  - {name: safety, executable: safety_node, parameters: {profile: industrial}}\n')
    with pytest.raises(ConfigError, match='update_trigger: command'):
        EvalSettings.from_cell(str(cell))
    # Safety node settings with no in-process counterpart are refused by name, not ignored.
    for extra, named in (('watched_sensors: [scene_camera/image_raw]', 'watched_sensors'),
                         ('mobile_base: true', 'mobile_base'),
                         ('lockstep_inputs: [arm]', 'lockstep_inputs')):
        cell.write_text(
            'cell: {name: lockstep, robot: fanuc_lrmate200id}\n'
            'nodes:\n'
            '  - {name: sim, executable: sim_node}\n'
            '  - {name: policy, executable: policy_node}\n'
            '  - {name: safety, executable: safety_node, parameters: {profile: industrial,\n'
            f'     period_s: 0.05, update_trigger: command, {extra}}}}}\n')
        with pytest.raises(ConfigError, match=f"safety node's {named}=.*not reproduced"):
            EvalSettings.from_cell(str(cell))
    assert learning_main(['evalcheck', '--cell', 'no_such_cell', '--seeds', '1']) == 2
