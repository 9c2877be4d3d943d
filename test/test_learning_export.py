"""ONNX export of the learned policy: contract embedding, parity, and the shipped model.

The torch tests use a tiny randomly initialised policy on a tiny synthetic dataset (fast); the
shipped-model test needs only onnxruntime and compares against a stored reference produced by
`python -m noetra_ros.learning reference`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'models' / 'pick_place_lrmate.onnx'
REFERENCE = REPO / 'test' / 'data' / 'shipped_model_reference.npz'
JOINTS = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6')


@pytest.fixture(scope='module')
def tiny_dataset(tmp_path_factory):
    pytest.importorskip('pyarrow')
    from toy_models import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp('tiny') / 'ds', ('scene_camera', 'wrist_camera'),
        ('pick the red cube and place it in the left bin',
         'pick the green cylinder and place it in the right bin'), seed=11)


def _tiny_config(**overrides):
    from noetra_ros.learning.train import TrainConfig

    values = dict(steps=3, batch_size=4, val_every=3, val_fraction=0.0, warmup_steps=1,
                  conv_channels=8, keypoints=8, hidden=32, image_width=32, image_height=24,
                  chunk_length=4)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow
def test_tiny_policy_exports_with_contract_and_parity(tiny_dataset, tmp_path):
    torch = pytest.importorskip('torch')
    import onnx
    import onnxruntime as ort

    from noetra_ros.core.policy.contract import load_contract, validate_against_model
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.learning.export import export_onnx, parity, random_inputs
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.train import build_contract, make_policy

    torch.manual_seed(0)
    config = _tiny_config(film=True)  # the instruction-conditioned path must export too
    contract = build_contract(read_dataset(tiny_dataset), config)
    model = make_policy(contract, config).eval()
    assert model.film is not None
    path = tmp_path / 'tiny.onnx'
    export_onnx(model, contract, path)

    onnx.checker.check_model(onnx.load(str(path)))
    embedded = load_contract(path)
    assert embedded == contract
    validate_against_model(embedded, path)
    assert [i.name for i in onnx.load(str(path)).graph.input] == [
        'scene_camera', 'wrist_camera', 'state', 'instruction']
    assert embedded.cameras == ('scene_camera', 'wrist_camera')
    assert embedded.action.chunk_length == 4 and embedded.action.step_period_s == 0.05
    assert embedded.robot_joints == JOINTS

    inputs = random_inputs(contract, batch=5, seed=1)
    assert parity(model, path, inputs, contract.input_names) < 1e-4
    # Dynamic batch: one sample alone gives the same answer as inside the batch of five.
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (batched,) = session.run(None, dict(zip(contract.input_names, inputs)))
    (single,) = session.run(None, dict(zip(contract.input_names, [x[2:3] for x in inputs])))
    np.testing.assert_allclose(single[0], batched[2], atol=1e-5)

    runtime = PolicyRuntime(path)
    runtime.validate_robot(JOINTS, has_gripper=True)
    chunk = runtime.infer(runtime.zero_inputs())
    assert chunk.values.shape == (4, 7) and np.all(np.isfinite(chunk.values))


@pytest.mark.slow
def test_instruction_padding_does_not_change_the_output(tiny_dataset):
    torch = pytest.importorskip('torch')
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.export import random_inputs
    from noetra_ros.learning.train import build_contract, make_policy

    torch.manual_seed(0)
    config = _tiny_config()
    contract = build_contract(read_dataset(tiny_dataset), config)
    model = make_policy(contract, config).eval()
    tokens = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    swapped = torch.tensor([[7, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    changed = torch.tensor([[5, 6, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    base = [torch.from_numpy(x) for x in random_inputs(contract, 1)][:-1]
    with torch.no_grad():
        out = model(*base, tokens)
        # Bag of words: the pad embedding never reaches the output, word order does not
        # matter, a different word does.
        model.word_embedding.weight[0] = 100.0
        assert torch.equal(out, model(*base, tokens))
        assert torch.allclose(out, model(*base, swapped), atol=1e-6)
        assert not torch.allclose(out, model(*base, changed))


@pytest.mark.slow
def test_training_pipeline_runs_end_to_end(tiny_dataset, tmp_path):
    pytest.importorskip('torch')
    from noetra_ros.learning.export import export_policy
    from noetra_ros.learning.train import load_checkpoint, train

    checkpoint = train(tiny_dataset, tmp_path / 'ckpt.pt', _tiny_config(), log=lambda *a: None)
    assert len(checkpoint['history']) == 1
    assert np.isfinite(checkpoint['history'][0]['train_loss'])
    model, contract, _ = load_checkpoint(tmp_path / 'ckpt.pt')
    assert contract.state_input.size == 7
    report = export_policy(tmp_path / 'ckpt.pt', tmp_path / 'policy.onnx', dataset=tiny_dataset,
                           parity_samples=8)
    assert report.parity_source == 'dataset' and report.parity_samples == 8
    assert report.parity_max_abs_diff < 1e-4
    # The residual joints: with a zero head the output would equal the current joints; the
    # buffers that implement it must have been set from the statistics, not left at identity.
    assert not np.allclose(model.residual_shift.numpy(), 0.0)


def test_shipped_model_reproduces_its_stored_reference():
    """Stored-output test: regenerate with `python -m noetra_ros.learning reference` only after
    deliberately replacing models/pick_place_lrmate.onnx."""
    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime

    assert SHIPPED.is_file(), f'{SHIPPED} is missing'
    assert SHIPPED.stat().st_size < 10 * 1024 * 1024
    ref = np.load(REFERENCE)
    runtime = PolicyRuntime(SHIPPED, intra_op_threads=1)
    assert runtime.contract_origin == 'metadata'
    joint_names = [str(n) for n in ref['joint_names']]
    runtime.validate_robot(joint_names, has_gripper=True)
    assert runtime.contract.cameras == ('workspace_camera', 'wrist_camera')
    frames = {}
    for cam in (str(c) for c in ref['cameras']):
        image = ref[f'image.{cam}']
        frames[cam] = ImageFrame(image, image.shape[1], image.shape[0], 'rgb8')
    inputs = runtime.build_inputs(
        frames, dict(zip(joint_names, ref['joint_positions'].tolist())),
        gripper_position=float(ref['gripper_position']), instruction=str(ref['instruction']))
    for name, tensor in inputs.tensors.items():
        np.testing.assert_allclose(tensor, ref[f'input.{name}'], atol=1e-6, err_msg=name)
    chunk = runtime.infer(inputs)
    np.testing.assert_allclose(chunk.raw, ref['expected_raw'], atol=1e-4)
    np.testing.assert_allclose(chunk.values, ref['expected_actions'], atol=1e-4)
    # The first commanded joint targets stay near the measured start (no wild jump).
    assert np.max(np.abs(chunk.joint_positions[0] - ref['joint_positions'])) < 0.3


def test_key_poses_and_action_scale_come_from_the_demonstrations(tmp_path):
    pytest.importorskip('pyarrow')
    from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode, read_dataset
    from noetra_ros.learning.train import build_contract, TrainingSamples

    names = JOINTS + ('gripper_position',)
    spec = DatasetSpec(fps=20, robot_type='fanuc_lrmate200id', state_names=names,
                       action_names=names, cameras=('scene_camera',), image_height=16,
                       image_width=16, with_wrench=False)
    writer = DatasetWriter(tmp_path / 'ds', spec)
    n = 9
    state = np.zeros((n, 7), np.float32)
    state[:, 0] = np.linspace(0.0, 0.8, n)  # joint_1 sweeps, the others stand still
    action = state.copy()
    action[:, 0] += 0.1  # the command leads the measurement by 0.1 rad
    # A missed grasp (closes at 1, opens at 2), the real grasp at 4, the release at 7.
    action[:, 6] = 0.0425 * np.array([0, 1, 0, 0, 1, 1, 1, 0, 0])
    action[:, 1] = np.arange(n)  # tags each frame
    writer.add_episode(Episode('pick the red cube and place it in the left bin', state, action,
                               {'scene_camera': np.zeros((n, 16, 16, 3), np.uint8)}))
    writer.close()
    data = read_dataset(tmp_path / 'ds')
    contract = build_contract(data, _tiny_config(chunk_length=2, action_scale='delta'))
    samples = TrainingSamples(data, contract, 2)
    state_std = np.asarray(contract.state_input.std)[:6]
    state_mean = np.asarray(contract.state_input.mean)[:6]
    poses = samples.key_poses[0].reshape(2, 6) * state_std + state_mean
    np.testing.assert_allclose(poses[0], action[4, :6], atol=1e-5)  # last grasp before release
    np.testing.assert_allclose(poses[1], action[7, :6], atol=1e-5)
    assert np.all(samples.key_poses == samples.key_poses[0])
    # The joint action scale is the spread of (target - current joints) over the chunk.
    chunk_rows = np.minimum(np.arange(n)[:, None] + np.arange(2)[None, :], n - 1)
    delta = action[chunk_rows, 0] - state[:, None, 0]
    assert contract.action.std[0] == pytest.approx(max(delta.std(), 0.005), rel=1e-6)
    assert contract.action.std[3] == pytest.approx(0.005)  # floor for a joint that never moved
    # The default scale is the spread of the absolute targets (floored at 0.05 rad).
    absolute = build_contract(data, _tiny_config(chunk_length=2))
    assert absolute.action.std[0] == pytest.approx(action[:, 0].std(), rel=1e-5)
    assert absolute.action.std[3] == pytest.approx(0.05)


def _write_scene_camera_episode(root, environment_names, images, env, rng):
    """One episode on one camera ('scene_camera'), random state / action, the red cube named."""
    from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode

    names = JOINTS + ('gripper_position',)
    spec = DatasetSpec(fps=20, robot_type='fanuc_lrmate200id', state_names=names,
                       action_names=names, cameras=('scene_camera',),
                       image_height=images.shape[1], image_width=images.shape[2],
                       with_wrench=False, environment_names=tuple(environment_names))
    writer = DatasetWriter(root, spec)
    state = rng.normal(size=(len(images), 7)).astype(np.float32)
    writer.add_episode(Episode('pick the red cube and place it in the left bin', state,
                               state.copy(), {'scene_camera': images}, environment_state=env))
    writer.close()


def _grounding_dataset(root, n=12, size=(48, 64)):
    """One camera; each frame a dark image with a bright 4x4 square at a random pixel, which
    the environment state names as the target."""
    rng = np.random.default_rng(5)
    h, w = size
    images = np.full((n, h, w, 3), 20, np.uint8)
    env = np.zeros((n, 5), np.float32)
    for t in range(n):
        u, v = int(rng.integers(4, w - 4)), int(rng.integers(4, h - 4))
        images[t, v - 2:v + 2, u - 2:u + 2] = 250
        env[t, 3:] = (u - 0.5, v - 0.5)  # centre of the 4x4 square, pixel-centre convention
        env[t, :3] = (0.3 + u / 200.0, v / 200.0 - 0.1, 0.02)  # a 'table' position for it
    env[-1, 3:] = (-1000.0, -1000.0)  # the last frame: target out of view
    _write_scene_camera_episode(root, ('target_x', 'target_y', 'target_z',
                                       'target_u_scene_camera', 'target_v_scene_camera'),
                                images, env, rng)
    return env


def test_grounding_targets_follow_the_object_through_resize_and_shift(tmp_path):
    pytest.importorskip('pyarrow')
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.train import build_contract, TrainingSamples

    env = _grounding_dataset(tmp_path / 'ds')
    data = read_dataset(tmp_path / 'ds')
    # Model input 32x24 (half the native 64x48): feature grid 8x6, one cell = 8 native px.
    contract = build_contract(data, _tiny_config(image_width=32, image_height=24))
    samples = TrainingSamples(data, contract, 2)
    rows = np.arange(len(data))
    shift = np.array([[4.0, -2.0]] * len(rows))
    (weights, valid), = samples.grounding_targets(rows, [shift], sigma=0.5)
    assert weights.shape == (len(rows), 6 * 8)
    np.testing.assert_allclose(weights[valid].sum(axis=1), 1.0, rtol=1e-5)
    assert valid[:-1].all() and not valid[-1]
    for row in rows[:-1]:
        u, v = env[row, 3] + 4.0, env[row, 4] - 2.0
        cell = np.unravel_index(int(np.argmax(weights[row])), (6, 8))
        # Two stride-2 convs (padding k // 2): cell j is centred on input pixel 4 j, i.e.
        # native pixel 8 j + 0.5 at half resolution (clipped to the grid at the edge).
        assert abs(cell[1] - np.clip((u - 0.5) / 8.0, 0, 7)) <= 0.5 + 1e-6
        assert abs(cell[0] - np.clip((v - 0.5) / 8.0, 0, 5)) <= 0.5 + 1e-6


@pytest.mark.slow
def test_grounded_policy_learns_where_the_object_is_and_exports(tmp_path):
    """A few hundred steps on the bright-square data: the grounding map must find the square
    (random init is ~20 px off), the position head must read it, and the grounded graph must
    export with parity."""
    torch = pytest.importorskip('torch')
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.export import export_policy
    from noetra_ros.learning.train import (
        load_checkpoint, perception_errors, train, TrainingSamples)

    _grounding_dataset(tmp_path / 'ds', n=48)
    config = _tiny_config(steps=300, batch_size=16, val_every=300, image_width=64,
                          image_height=48, grounding=True, grounding_weight=1.0,
                          target_position=True, shift_pixels=2, learning_rate=3e-3)
    checkpoint = train(tmp_path / 'ds', tmp_path / 'ckpt.pt', config, log=lambda *a: None)
    assert np.isfinite(checkpoint['history'][-1]['train_loss'])
    model, contract, _ = load_checkpoint(tmp_path / 'ckpt.pt')
    samples = TrainingSamples(read_dataset(tmp_path / 'ds'), contract, config.chunk_length)
    error = perception_errors(model, samples, np.arange(len(samples)))
    assert error['scene_camera_px'] < 4.0, error
    # The position head reads the grounded pixel: its error is far below the 10 cm spread.
    assert error['target_mm'] < 15.0, error
    report = export_policy(tmp_path / 'ckpt.pt', tmp_path / 'policy.onnx',
                           dataset=tmp_path / 'ds', parity_samples=8)
    assert report.parity_max_abs_diff < 1e-4
    assert torch.is_tensor(next(model.parameters()))


def _two_object_dataset(root, n=48, size=(48, 64)):
    """One camera; each frame a red and a green 4x4 square at random pixels. Every instruction
    names the red cube; the green cube is only a distractor in the object slots (slot 2 empty),
    so only the object-grounding loss can teach the map where 'the green cube' is."""
    from noetra_ros.core.sim.task import COLOURS, SHAPES

    rng = np.random.default_rng(11)
    h, w = size
    env_names = ['target_x', 'target_y', 'target_z', 'target_u_scene_camera',
                 'target_v_scene_camera']
    for slot in range(3):
        env_names += [f'object{slot}_colour', f'object{slot}_shape',
                      f'object{slot}_u_scene_camera', f'object{slot}_v_scene_camera']
    images = np.full((n, h, w, 3), 20, np.uint8)
    env = np.zeros((n, len(env_names)), np.float32)
    cube = float(SHAPES.index('cube'))
    for t in range(n):
        while True:
            red = rng.integers([4, 4], [w - 4, h - 4])
            green = rng.integers([4, 4], [w - 4, h - 4])
            if np.abs(red - green).max() > 10:
                break
        images[t, red[1] - 2:red[1] + 2, red[0] - 2:red[0] + 2] = (250, 20, 20)
        images[t, green[1] - 2:green[1] + 2, green[0] - 2:green[0] + 2] = (20, 250, 20)
        env[t, :3] = (0.3 + red[0] / 200.0, red[1] / 200.0 - 0.1, 0.02)
        env[t, 3:5] = red - 0.5
        env[t, 5:9] = (COLOURS.index('red'), cube, *(red - 0.5))
        env[t, 9:13] = (COLOURS.index('green'), cube, *(green - 0.5))
        env[t, 13:17] = (-1.0, -1.0, -1000.0, -1000.0)
    _write_scene_camera_episode(root, env_names, images, env, rng)
    return env


@pytest.mark.slow
def test_object_grounding_finds_objects_the_instructions_never_name(tmp_path):
    """The training-only object queries: one per distractor slot, its instruction built from
    the slot's colour and shape, masked where the slot is empty; trained with them, the map
    finds the green cube although no recorded instruction names it."""
    torch = pytest.importorskip('torch')
    from noetra_ros.core.policy.tokenizer import Tokenizer
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.train import (
        build_contract, grid_to_native, grounding_cells, load_checkpoint, train,
        TrainingSamples)

    env = _two_object_dataset(tmp_path / 'ds')
    data = read_dataset(tmp_path / 'ds')
    config = _tiny_config(steps=300, batch_size=16, val_every=300, image_width=64,
                          image_height=48, grounding=True, target_position=False,
                          object_grounding_weight=1.0, shift_pixels=2, learning_rate=3e-3)
    contract = build_contract(data, config)
    samples = TrainingSamples(data, contract, config.chunk_length)
    rows = np.arange(len(data))
    zero = [np.zeros((len(rows), 2))]
    (tokens, targets), (_, empty_targets) = samples.object_queries(rows, zero, sigma=1.0)
    green = Tokenizer(contract.instruction_input).encode(
        'pick the green cube and place it in the left bin').ids[0]
    np.testing.assert_array_equal(tokens, np.tile(green, (len(rows), 1)))
    assert targets[0][1].all() and not empty_targets[0][1].any()
    assert not samples.shared_colour_rows(rows).any()
    # Queries can be limited to some cameras (object_grounding_cameras): others get no target.
    (_, only_other), _ = samples.object_queries(rows, zero, sigma=1.0, cameras=('wrist_camera',))
    assert only_other == [None]

    train(tmp_path / 'ds', tmp_path / 'ckpt.pt', config, log=lambda *a: None)
    model, contract, _ = load_checkpoint(tmp_path / 'ckpt.pt')
    samples = TrainingSamples(data, contract, config.chunk_length)
    inputs, _ = samples.batch(rows)
    with torch.no_grad():
        _, extras = model.forward_with_aux(*[torch.from_numpy(x) for x in inputs],
                                           queries=(torch.from_numpy(tokens),))
    spec = contract.image_inputs[0]
    found = grid_to_native(grounding_cells(extras['query_grounding'][0][0]), spec, 64, 48)
    miss = np.linalg.norm(found - env[:, 11:13], axis=1)
    assert np.median(miss) < 4.0, miss
    # The instruction's own map still finds the red cube, not the green one.
    own = grid_to_native(grounding_cells(extras['grounding'][0]), spec, 64, 48)
    assert np.median(np.linalg.norm(own - env[:, 3:5], axis=1)) < 4.0


@pytest.mark.slow
@pytest.mark.episodes
def test_all_records_the_three_sets_trains_fine_tunes_and_exports(tmp_path):
    """`python -m noetra_ros.learning all`, the shipped recipe's one command, at toy size, run
    the way a user runs it (a separate interpreter: its spawned training workers must be able
    to import what they run, which an in-process call does not show)."""
    pytest.importorskip('torch')
    import json
    import subprocess
    import sys

    from noetra_ros.core.policy.contract import load_contract

    work, model = tmp_path / 'flywheel', tmp_path / 'policy.onnx'

    def run_all(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, '-m', 'noetra_ros.learning', 'all', '--workdir', str(work),
             '--model', str(model), '--episodes', '1', '--noisy-episodes', '1',
             '--wide-episodes', '1', '--first-seed', '7', '--batch-size', '4',
             '--val-every', '2', '--threads', '1', '--finetune-steps', '1', *options],
            capture_output=True, text=True, timeout=900,
            cwd=Path(__file__).resolve().parents[1])

    run = run_all('--steps', '2', '--members', '2')
    assert run.returncode == 0, run.stderr[-3000:]
    infos = {name: json.loads((work / name / 'meta' / 'info.json').read_text())['noetra']
             for name in ('clean', 'noisy', 'wide')}
    # Consecutive seeds; no noise, small noise everywhere, large noise in free-space moves.
    assert [infos[n]['first_seed'] for n in ('clean', 'noisy', 'wide')] == [7, 8, 9]
    assert infos['clean']['action_noise_rad'] == 0.0
    assert infos['noisy']['action_noise_rad'] == 0.015 and infos['noisy']['noise_phases'] == []
    assert infos['wide']['action_noise_rad'] == 0.04
    assert infos['wide']['noise_phases'] == ['approach', 'transfer']
    # Two members (with and without the heading head), each fine-tuned, shipped as their mean.
    assert (work / 'member_heading_finetuned.pt').is_file()
    assert (work / 'member_no_heading_finetuned.pt').is_file()
    contract = load_contract(model)
    assert [s.height for s in contract.image_inputs] == [96, 96]  # the recipe's 128x96
    assert contract.info['ensemble_members'] == 2

    # Growing the ensemble in the same workdir reuses the recordings and both members and
    # trains only the new one (the next pair's network with the heading head, seed + 1).
    run = run_all('--steps', '2', '--members', '3')
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count('reusing ') == 2, run.stdout
    assert 'recorded' not in run.stdout
    assert (work / 'member_heading_2_finetuned.pt').is_file()
    assert not (work / 'member_no_heading_2.pt').exists()
    assert load_contract(model).info['ensemble_members'] == 3
    # Other settings than the trained members had: refused, naming the setting and the stage.
    run = run_all('--steps', '3', '--members', '3')
    assert run.returncode != 0
    assert 'member_heading.pt: steps=2 (now 3)' in run.stderr, run.stderr[-3000:]


def test_ensemble_members_alternate_the_heading_head_and_step_the_seed_per_pair():
    from noetra_ros.core.errors import ConfigError
    from noetra_ros.learning.__main__ import ensemble_members
    from noetra_ros.learning.train import TrainConfig

    members = ensemble_members(TrainConfig(seed=5), 4)
    assert [name for name, _ in members] == [
        'member_heading', 'member_no_heading', 'member_heading_2', 'member_no_heading_2']
    assert [config.seed for _, config in members] == [5, 5, 6, 6]
    assert [config.target_heading for _, config in members] == [True, False, True, False]
    # Without the heading head in the base config no member gets one.
    assert not any(c.target_heading for _, c in ensemble_members(
        TrainConfig(target_heading=False), 2))
    with pytest.raises(ConfigError, match='--members'):
        ensemble_members(TrainConfig(), 0)


def test_a_reused_member_must_have_been_trained_with_the_members_settings(tmp_path):
    """`all` reuses a member checkpoint found in the workdir only if its stored TrainConfig is
    the one the member would get now (threads and the init checkpoint's folder aside); the
    differing fields are named. The shipped checkpoints pass for the default recipe."""
    torch = pytest.importorskip('torch')
    from dataclasses import asdict, replace

    from noetra_ros.core.paths import models_dir
    from noetra_ros.learning.__main__ import _train_config, build_parser, ensemble_members
    from noetra_ros.learning.train import settings_differing

    args = build_parser().parse_args(['all', '--workdir', str(tmp_path), '--model', 'm.onnx'])
    members = ensemble_members(_train_config(args), args.members)
    assert len(members) == 4
    for name, config in members:
        assert settings_differing(models_dir() / f'pick_place_lrmate_{name}.pt',
                                  config) == []
    config = members[0][1]
    stale = tmp_path / 'member_heading.pt'
    torch.save({'train_config': asdict(replace(config, steps=10, threads=3))}, stale)
    assert settings_differing(stale, config) == ['steps=10 (now 9000)']
    torch.save({'train_config': asdict(replace(config, threads=3, init_checkpoint='x'))}, stale)
    assert settings_differing(stale, config) == []


@pytest.mark.slow
def test_ensemble_outputs_the_mean_of_its_members_and_needs_one_contract(tiny_dataset,
                                                                          tmp_path):
    pytest.importorskip('torch')
    import onnxruntime as ort

    from noetra_ros.core.errors import ContractError
    from noetra_ros.learning.export import ensemble_onnx, export_policy, random_inputs
    from noetra_ros.learning.train import train

    paths = []
    for seed in (0, 1):
        train(tiny_dataset, tmp_path / f'm{seed}.pt', _tiny_config(seed=seed), log=lambda *a: None)
        paths.append(tmp_path / f'm{seed}.onnx')
        export_policy(tmp_path / f'm{seed}.pt', paths[-1], parity_samples=2)
    contract = ensemble_onnx(paths, tmp_path / 'mean.onnx')
    assert contract.info['ensemble_members'] == 2
    inputs = random_inputs(contract, batch=3, seed=4)

    def run(path):
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        return session.run(None, dict(zip(contract.input_names, inputs)))[0]

    members = [run(p) for p in paths]
    assert np.abs(members[0] - members[1]).max() > 1e-3  # two different networks
    np.testing.assert_allclose(run(tmp_path / 'mean.onnx'), (members[0] + members[1]) / 2,
                               atol=1e-6)
    # A member with other normalisation would read the inputs differently: refused by name.
    train(tiny_dataset, tmp_path / 'other.pt', _tiny_config(chunk_length=2), log=lambda *a: None)
    export_policy(tmp_path / 'other.pt', tmp_path / 'other.onnx', parity_samples=2)
    with pytest.raises(ContractError, match='outputs'):
        ensemble_onnx([paths[0], tmp_path / 'other.onnx'], tmp_path / 'bad.onnx')


@pytest.mark.slow
def test_fine_tuning_needs_a_matching_checkpoint(tiny_dataset, tmp_path):
    pytest.importorskip('torch')
    from noetra_ros.core.errors import ConfigError
    from noetra_ros.learning.train import load_checkpoint, train

    quiet = dict(log=lambda *a: None)
    with pytest.raises(ConfigError, match='no such file'):
        train(tiny_dataset, tmp_path / 'a.pt',
              _tiny_config(init_checkpoint=str(tmp_path / 'missing.pt')), **quiet)
    train(tiny_dataset, tmp_path / 'base.pt', _tiny_config(), **quiet)
    continued = train(tiny_dataset, tmp_path / 'more.pt',
                      _tiny_config(init_checkpoint=str(tmp_path / 'base.pt')), **quiet)
    # The checkpoint's contract (its normalisation) is kept, not rebuilt from the data.
    assert continued['contract'] == load_checkpoint(tmp_path / 'base.pt')[2]['contract']
    _grounding_dataset(tmp_path / 'one_camera')  # scene_camera only
    with pytest.raises(ConfigError, match='do not match the dataset'):
        train(tmp_path / 'one_camera', tmp_path / 'b.pt',
              _tiny_config(init_checkpoint=str(tmp_path / 'base.pt')), **quiet)


def _bar_dataset(root, n=64, size=(48, 64), shapes=('block',), yaw_offset=0.0):
    """One camera; each frame a red bar (a 'block', 14 x 5 px) at a random pixel and yaw and a
    green bar elsewhere at another yaw. The red block is named; target_yaw is its image-plane
    angle (+ `yaw_offset`); the named shape cycles through `shapes`. Its heading is only in
    its outline - position features cannot carry it - and the
    green bar makes the global image average ambiguous."""
    import cv2

    from noetra_ros.core.sim.task import COLOURS, SHAPES

    rng = np.random.default_rng(23)
    h, w = size
    env_names = ['target_x', 'target_y', 'target_z', 'target_u_scene_camera',
                 'target_v_scene_camera', 'object0_colour', 'object0_shape', 'target_yaw']
    images = np.full((n, h, w, 3), 20, np.uint8)
    env = np.zeros((n, len(env_names)), np.float32)
    for t in range(n):
        while True:
            red = rng.uniform([10, 10], [w - 10, h - 10])
            green = rng.uniform([10, 10], [w - 10, h - 10])
            if np.abs(red - green).max() > 18:
                break
        yaw, other = rng.uniform(-np.pi, np.pi, size=2)
        for centre, angle, colour in ((red, yaw, (250, 20, 20)), (green, other, (20, 250, 20))):
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (14.0, 5.0),
                                 float(np.degrees(angle))))
            cv2.fillConvexPoly(images[t], np.round(box).astype(np.int32), colour)
        env[t, :3] = (0.3 + red[0] / 200.0, red[1] / 200.0 - 0.1, 0.02)
        env[t, 3:5] = red
        env[t, 5:7] = (COLOURS.index('red'), SHAPES.index(shapes[t % len(shapes)]))
        env[t, 7] = yaw + yaw_offset
    _write_scene_camera_episode(root, env_names, images, env, rng)
    return env


def test_target_heading_labels_follow_each_shapes_symmetry(tmp_path):
    pytest.importorskip('pyarrow')
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.train import build_contract, TrainingSamples

    env = _bar_dataset(tmp_path / 'ds', n=6, shapes=('block', 'cube', 'cylinder'))
    data = read_dataset(tmp_path / 'ds')
    samples = TrainingSamples(data, build_contract(data, _tiny_config()), 2)
    value, mask = samples.target_heading
    yaw = env[:, 7].astype(np.float64)
    np.testing.assert_allclose(value[:, 0], np.cos(2 * yaw), atol=1e-5)
    np.testing.assert_allclose(value[:, 3], np.sin(4 * yaw), atol=1e-5)
    np.testing.assert_array_equal(mask[:3], [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    # A half turn of a block gives the same label: the gripper cannot tell either.
    _bar_dataset(tmp_path / 'turned', n=6, shapes=('block', 'cube', 'cylinder'),
                 yaw_offset=np.pi)
    turned = read_dataset(tmp_path / 'turned')
    label, _ = TrainingSamples(turned, build_contract(turned, _tiny_config()), 2).target_heading
    np.testing.assert_allclose(label, value, atol=1e-5)


@pytest.mark.slow
def test_glimpse_lets_the_policy_see_which_way_the_named_block_lies(tmp_path):
    """Features pooled under the grounding map (glimpse) carry the named object's outline: the
    heading head learns the red bar's heading (random guessing: ~45 deg median error), the
    graph exports with parity, and training on a dataset without the yaw column says so."""
    pytest.importorskip('torch')
    from noetra_ros.learning.dataset import read_dataset
    from noetra_ros.learning.export import export_policy
    from noetra_ros.learning.train import (
        load_checkpoint, perception_errors, train, TrainingSamples)

    _bar_dataset(tmp_path / 'ds', n=96)
    config = _tiny_config(steps=400, batch_size=16, val_every=400, image_width=64,
                          image_height=48, grounding=True, target_position=False,
                          glimpse=True, target_heading=True, object_grounding_weight=0.0,
                          shift_pixels=2, learning_rate=3e-3)
    train(tmp_path / 'ds', tmp_path / 'ckpt.pt', config, log=lambda *a: None)
    model, contract, _ = load_checkpoint(tmp_path / 'ckpt.pt')
    assert model.config.glimpse and model.config.target_heading
    samples = TrainingSamples(read_dataset(tmp_path / 'ds'), contract, config.chunk_length)
    error = perception_errors(model, samples, np.arange(len(samples)))
    assert error['block_heading_deg'] < 15.0, error
    report = export_policy(tmp_path / 'ckpt.pt', tmp_path / 'policy.onnx',
                           dataset=tmp_path / 'ds', parity_samples=8)
    assert report.parity_max_abs_diff < 1e-4

    _grounding_dataset(tmp_path / 'no_yaw', n=8)
    lines = []
    train(tmp_path / 'no_yaw', tmp_path / 'x.pt', _tiny_config(
        grounding=True, target_position=False, glimpse=True, target_heading=True),
        log=lines.append)
    assert any('heading head untrained' in line and 'target_yaw' in line for line in lines)


def test_shipped_int8_model_is_the_float_model_with_int8_convolutions():
    """models/pick_place_lrmate_int8.onnx (tools/quantize_static.py: static int8 Conv,
    calibrated on the deployed loop's own inputs; docs/results/int8_static_quantisation.txt):
    the same contract, its convolutions run as QDQ int8, and on the stored reference scene its
    actions stay within a few milliradians of the float model's."""
    import onnx

    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime

    int8 = SHIPPED.with_name('pick_place_lrmate_int8.onnx')
    assert int8.is_file() and int8.stat().st_size < 10 * 1024 * 1024
    graph = onnx.load(str(int8)).graph
    ops = [node.op_type for node in graph.node]
    conv_inputs = {name for node in graph.node if node.op_type == 'Conv' for name in node.input}
    dequantised = {node.output[0] for node in graph.node if node.op_type == 'DequantizeLinear'}
    assert ops.count('Conv') > 0 and conv_inputs & dequantised, 'Conv inputs are not int8'
    assert 'QuantizeLinear' in ops
    assert not [n for n in graph.node if n.op_type in ('MatMul', 'Gemm')
                and set(n.input) & dequantised], 'only the convolutions are quantised'
    ref = np.load(REFERENCE)
    joint_names = [str(n) for n in ref['joint_names']]
    frames = {cam: ImageFrame(ref[f'image.{cam}'], ref[f'image.{cam}'].shape[1],
                              ref[f'image.{cam}'].shape[0], 'rgb8')
              for cam in (str(c) for c in ref['cameras'])}
    chunks, contracts = [], []
    for path in (SHIPPED, int8):
        with PolicyRuntime(path, intra_op_threads=1) as runtime:
            contracts.append(runtime.contract.to_dict())
            inputs = runtime.build_inputs(
                frames, dict(zip(joint_names, ref['joint_positions'].tolist())),
                gripper_position=float(ref['gripper_position']),
                instruction=str(ref['instruction']))
            chunks.append(runtime.infer(inputs))
    float_chunk, int8_chunk = chunks
    assert contracts[0] == contracts[1]
    assert np.isfinite(int8_chunk.values).all()
    np.testing.assert_allclose(int8_chunk.joint_positions, float_chunk.joint_positions,
                               atol=0.01)
    assert not np.array_equal(int8_chunk.raw, float_chunk.raw)  # it really is another graph
