"""The flow-matching policy of issue 15 (3a): phrasing splits, the BPE instruction tokenizer,
and a tiny flow policy trained, exported as encoder + denoiser graphs with a version 2
contract, loaded by the runtime and run closed loop through the cell's supervisor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from noetra_ros.core import phrasing
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.sim.task import COLOURS, instruction_text, PLACES, SHAPES

JOINTS = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6')
TEMPLATE = 'pick the red cube and place it in the left bin'


def test_template_instructions_parse_back_to_their_words():
    for c in COLOURS:
        for s in SHAPES:
            for p in PLACES:
                words = phrasing.parse_template_instruction(instruction_text(c, s, p))
                assert (words.colour, words.shape, words.place) == (c, s, p)
    with pytest.raises(ConfigError, match='not in the task template form'):
        phrasing.parse_template_instruction('grab the red cube')
    with pytest.raises(ConfigError, match='outside the vocabulary'):
        phrasing.parse_template_instruction(
            'pick the purple cube and place it in the left bin')


def test_held_out_phrasings_never_occur_in_training():
    """The pre-registration: what evaluation calls unseen is not among the training texts."""
    train = set(phrasing.all_phrasings('train'))
    for split in ('held_out', 'synonyms'):
        unseen = phrasing.all_phrasings(split)
        assert unseen and not train & set(unseen), split
    words = phrasing.TaskWords('red', 'cube', 'left')
    held_out = phrasing.phrasings(words, 'held_out')
    assert 'grab the red cube and drop it into the left bin' in held_out   # the report
    assert '左の箱に赤い立方体を入れて' in phrasing.phrasings(words, 'held_out', 'ja')
    # Every phrasing names its colour, shape and side in its language's words.
    for text in phrasing.phrasings(words, 'train', 'ja') + phrasing.phrasings(
            words, 'held_out', 'ja'):
        assert '赤' in text and '立方体' in text and '左' in text, text
    with pytest.raises(ConfigError, match='allowed'):
        phrasing.phrasings(words, 'test')


def test_sampled_phrasings_come_from_the_split_and_repeat_with_the_seed():
    words = phrasing.TaskWords('blue', 'block', 'right')
    first = [phrasing.sample_phrasing(words, np.random.default_rng([7, i]), 'held_out', 'ja')
             for i in range(20)]
    again = [phrasing.sample_phrasing(words, np.random.default_rng([7, i]), 'held_out', 'ja')
             for i in range(20)]
    assert first == again
    assert set(first) <= set(phrasing.phrasings(words, 'held_out', 'ja'))
    assert len(set(first)) > 1


def test_unknown_word_noise_keeps_the_task_words_and_never_uses_an_evaluation_word():
    """Training noise (random words inserted or in place of the words other than colour,
    shape and side) must leave the task intact and never leak a held-out or synonym word or,
    in Japanese, character into training: that would make the held-out test a seen one."""
    import re

    noise = phrasing.UnknownWordNoise(replace_p=0.5)
    evaluation = ' '.join(text.lower() for split in ('held_out', 'synonyms')
                          for text in phrasing.all_phrasings(split))
    evaluation_words = set(re.findall(r'[a-z]+', evaluation))
    evaluation_chars = {ch for ch in evaluation if ord(ch) > 0x3000}
    train_words = set(re.findall(r'[a-z]+', ' '.join(phrasing.all_phrasings('train'))))
    train_chars = {ch for text in phrasing.all_phrasings('train') for ch in text}
    noisy_seen = 0
    for index, words in enumerate([phrasing.TaskWords(c, s, p) for c in COLOURS
                                   for s in SHAPES for p in PLACES]):
        rng = np.random.default_rng([11, index])
        for language in phrasing.LANGUAGES:
            for _ in range(40):
                text = noise.sample(words, rng, language)
                clean = set(phrasing.phrasings(words, 'train', language))
                noisy_seen += text not in clean
                if language == 'en':
                    assert {words.colour, words.shape, words.place} <= set(text.split()), text
                    new_words = set(text.split()) - train_words
                    assert not new_words & evaluation_words, text
                else:
                    for slot in ('colour', 'shape', 'place'):
                        assert phrasing._WORDS['ja'][slot][getattr(words, slot)][0] in text
                    assert not (set(text) - train_chars) & evaluation_chars, text
    assert noisy_seen > 0.5 * len(COLOURS) * len(SHAPES) * len(PLACES) * 80
    # The same rng draws the same sentence; noise is for training templates only.
    words = phrasing.TaskWords('red', 'cube', 'left')
    assert (noise.sample(words, np.random.default_rng(5)) ==
            noise.sample(words, np.random.default_rng(5)))
    with pytest.raises(ConfigError, match='not a training template'):
        noise.apply(words, phrasing.HELD_OUT_TEMPLATES['en'][0], 'en', np.random.default_rng(0))
    with pytest.raises(ConfigError, match='replace_p'):
        phrasing.UnknownWordNoise(replace_p=1.5)


def test_the_tokenizer_knows_every_byte_and_keeps_japanese_words_apart():
    pytest.importorskip('tokenizers')
    from noetra_ros.learning.flow import build_instruction_tokenizer, training_corpus

    tokenizer = build_instruction_tokenizer(training_corpus(), 512)
    assert tokenizer.token_to_id('<pad>') == 0
    assert tokenizer.get_vocab_size() <= 512
    for text in phrasing.all_phrasings('held_out') + ['ロボット 🤖 grab!']:
        ids = tokenizer.encode(text).ids
        assert ids and 0 not in ids, text           # byte level: nothing unknown, no pad
    # Kana / kanji runs are pre-split, so the particle after the noun never fuses with it:
    # the object's tokens are the same whatever follows it.
    tokens = lambda text: tokenizer.encode(text).tokens  # noqa: E731
    assert tokens('赤い立方体を')[:-1] == tokens('赤い立方体、')[:-1]
    assert tokenizer.decode(tokenizer.encode('左の箱に入れて').ids) == '左の箱に入れて'


def test_flow_settings_are_checked():
    from noetra_ros.learning.flow import FlowConfig

    with pytest.raises(ConfigError, match='languages'):
        FlowConfig(languages='en,fr')
    with pytest.raises(ConfigError, match='time_dim'):
        FlowConfig(time_dim=33)
    with pytest.raises(ConfigError, match='brightness_min'):
        FlowConfig(brightness_min=0.0)
    with pytest.raises(ConfigError, match='template_fraction'):
        FlowConfig(template_fraction=1.5)
    with pytest.raises(ConfigError, match='text_noise_p'):
        FlowConfig(text_noise_p=-0.1)
    with pytest.raises(ConfigError, match='light_gradient'):
        FlowConfig(light_gradient=1.0)


@pytest.fixture(scope='module')
def tiny_flow_model(tmp_path_factory):
    """A tiny trunk (train.py, 3 steps) -> a tiny flow policy (2 steps) -> exported."""
    pytest.importorskip('torch')
    pytest.importorskip('pyarrow')
    from noetra_ros.learning.flow import export_flow, FlowConfig, train_flow
    from noetra_ros.learning.train import train, TrainConfig
    from toy_models import write_synthetic_dataset

    root = tmp_path_factory.mktemp('flow')
    write_synthetic_dataset(root / 'ds', ('workspace_camera', 'wrist_camera'),
                            (TEMPLATE, 'pick the green cylinder and place it in the right bin'),
                            seed=3, state_scale=0.2)
    trunk = TrainConfig(steps=3, batch_size=4, val_every=3, val_fraction=0.0, warmup_steps=1,
                        conv_channels=8, keypoints=8, hidden=32, image_width=32,
                        image_height=24, chunk_length=4, threads=1)
    train(root / 'ds', root / 'trunk.pt', trunk, log=lambda *_: None)
    logged = []
    checkpoint = train_flow(root / 'ds', root / 'flow.pt', FlowConfig(
        steps=2, batch_size=4, val_every=2, val_fraction=0.0, warmup_steps=1, threads=1,
        flow_hidden=32, time_dim=8, vocab_size=400, init_checkpoint=str(root / 'trunk.pt')),
        log=logged.append)
    assert any('tensors from' in line for line in logged)
    contract_path = export_flow(root / 'flow.pt', root / 'model', log=logged.append)
    return contract_path, checkpoint


@pytest.mark.slow
def test_a_flow_run_continues_from_its_checkpoint_and_refuses_one_that_does_not_fit(
        tiny_flow_model):
    import torch

    from noetra_ros.learning.flow import (
        flow_contract_dict, FlowConfig, load_flow_checkpoint, train_flow)

    contract_path, first = tiny_flow_model
    root = Path(contract_path).parents[1]
    settings = dict(steps=2, batch_size=4, val_every=2, val_fraction=0.0, warmup_steps=1,
                    threads=1, flow_hidden=32, time_dim=8, vocab_size=400,
                    init_checkpoint=str(root / 'trunk.pt'))
    logged: list[str] = []
    second = train_flow(root / 'ds', root / 'flow2.pt', FlowConfig(
        resume_checkpoint=str(root / 'flow.pt'), learning_rate=0.0, **settings),
        log=logged.append)
    assert any('continuing from' in line for line in logged)
    # The history goes on where the first run stopped; with a zero learning rate the weights
    # are the first run's, so the run really started from them (not from the trunk alone).
    assert [entry['step'] for entry in second['history']] == [2, 4]
    # An export of the continued run says it was trained 4 steps in all, not its own 2.
    assert flow_contract_dict(second, 400)['info']['train_steps'] == 4
    model, _ = load_flow_checkpoint(root / 'flow2.pt')
    for name, value in model.state_dict().items():
        # (the moving average of unchanged weights may differ in the last bit)
        assert torch.allclose(value, first['state_dict'][name], rtol=1e-6, atol=1e-7), name
    with pytest.raises(ConfigError, match='resume_checkpoint=.*does not fit'):
        train_flow(root / 'ds', root / 'flow3.pt', FlowConfig(
            resume_checkpoint=str(root / 'flow.pt'), **dict(settings, flow_hidden=16)),
            log=lambda *_: None)


def test_noisy_phrasings_and_uneven_light_reach_the_training_batches(tiny_flow_model):
    from dataclasses import replace

    from noetra_ros.learning.flow import (
        _trunk_from_checkpoint, build_instruction_tokenizer, FlowConfig, FlowSamples,
        training_corpus)
    from noetra_ros.learning.train import load_datasets

    root = Path(tiny_flow_model[0]).parents[1]
    config = FlowConfig(steps=2, batch_size=4, vocab_size=400, text_noise_p=1.0,
                        text_noise_variants=16, init_checkpoint=str(root / 'trunk.pt'))
    tokenizer = build_instruction_tokenizer(training_corpus(), config.vocab_size)
    _, contract, _ = _trunk_from_checkpoint(config.init_checkpoint, config,
                                            tokenizer.get_vocab_size())
    data = load_datasets(root / 'ds')
    rows = np.arange(len(data))
    samples = FlowSamples(data, contract, contract.action.chunk_length, tokenizer, config, rows)
    bank = samples.noisy_tokens
    assert bank.shape == (len(data.tasks), 16, config.max_tokens)
    for task, texts in zip(data.tasks, bank):
        words = phrasing.parse_template_instruction(task)
        for ids in texts:
            text = tokenizer.decode([int(i) for i in ids if i != 0])
            assert words.colour in text or '赤' in text or '緑' in text, text
    # With text_noise_p 1 every training sample's tokens come from its task's noisy bank.
    picked = rows[:8]
    inputs, _, _ = samples.batch(picked, np.random.default_rng(0), train=True)
    for row, tokens in zip(picked, inputs[-1]):
        assert any((tokens == variant).all() for variant in bank[data.task_index[row]])
    # Uneven light: a flat grey image gets one side brighter than the other; without the
    # gradient (and with brightness, tint and offset fixed) it stays flat.
    flat = dict(photometric_p=1.0, brightness_min=1.0, brightness_max=1.0, tint=0.0,
                offset=0.0)
    spec = samples.base.image_specs[0]
    grey = np.full((4, 3, 24, 32), 0.5, dtype=np.float32)
    normalised = (grey - np.asarray(spec.mean, np.float32)[None, :, None, None]) / \
        np.asarray(spec.std, np.float32)[None, :, None, None]
    for gradient, uneven in ((0.0, False), (0.5, True)):
        samples.config = replace(config, light_gradient=gradient, **flat)
        batch = [normalised.copy()] + [np.zeros((4, 3, 24, 32), np.float32)] * (
            len(samples.base.image_specs) - 1)
        samples.photometric(batch, np.random.default_rng(1))
        spread = batch[0].reshape(4, -1).max(axis=1) - batch[0].reshape(4, -1).min(axis=1)
        assert bool((spread > 0.05).all()) is uneven, (gradient, spread)


@pytest.mark.slow
def test_a_flow_policy_exports_as_encoder_plus_denoiser_and_runs_in_the_runtime(
        tiny_flow_model):
    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime

    contract_path, checkpoint = tiny_flow_model
    runtime = PolicyRuntime(contract_path, intra_op_threads=1)
    try:
        contract = runtime.contract
        assert contract.contract_version == 2
        assert [s.kind for s in contract.pipeline] == ['run', 'denoise']
        assert contract.pipeline[1].steps == 10
        assert contract.action.component('joint_positions').mode == 'delta'
        assert contract.embodiment.robot == 'fanuc_lrmate200id'
        assert list(contract.action.mean) == pytest.approx(checkpoint['action_mean'])
        images = {s.camera: np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
                  for s in contract.image_inputs}
        joints = dict(zip(JOINTS, [0.1, -0.2, 0.3, 0.0, 0.4, 0.0]))

        def chunk(text: str, key: int) -> np.ndarray:
            frames = {name: ImageFrame(image, 64, 48, 'rgb8') for name, image in images.items()}
            inputs = runtime.build_inputs(frames, joints, gripper_position=0.01,
                                          instruction=text)
            return runtime.infer(inputs, noise_key=key).values

        english, japanese = chunk(TEMPLATE, 5), chunk('左の箱に赤い立方体を入れて', 5)
        assert english.shape == (4, 7) and np.isfinite(english).all()
        assert np.isfinite(japanese).all() and not np.allclose(english, japanese)
        np.testing.assert_array_equal(english, chunk(TEMPLATE, 5))   # same noise, same chunk
        assert not np.allclose(english, chunk(TEMPLATE, 6))
    finally:
        runtime.close()


@pytest.mark.slow
def test_a_flow_policy_drives_the_sim_behind_the_supervisor(tiny_flow_model):
    """In process, as the deployed cell runs it: policy loop -> supervisor -> sim. Untrained, it
    will not do the task; it must produce finite, limited commands every step and no error."""
    from noetra_ros.learning.record import EvalSettings, evaluate_policy

    contract_path, _ = tiny_flow_model
    settings = EvalSettings.from_cell(episode_timeout_s=1.0)
    steps = []
    result = evaluate_policy(contract_path, [0], settings, on_act=lambda seed, step:
                             steps.append(step))
    assert len(result.successes) == 1 and len(steps) >= 19
    loop_stats = [s for s in steps if s.command is not None]
    assert loop_stats, 'the policy never produced a command'
    for step in loop_stats:
        assert np.isfinite(np.asarray(step.command.positions, dtype=float)).all()


@pytest.mark.slow
def test_two_flow_members_export_as_one_ensemble_that_averages_them(tiny_flow_model):
    import torch

    from noetra_ros.learning.flow import (export_flow, FlowConfig, load_flow_members,
                                          train_flow)

    contract_path, _ = tiny_flow_model
    root = Path(contract_path).parents[1]
    settings = dict(steps=2, batch_size=4, val_every=2, val_fraction=0.0, warmup_steps=1,
                    threads=1, flow_hidden=32, time_dim=8, vocab_size=400,
                    init_checkpoint=str(root / 'trunk.pt'))
    train_flow(root / 'ds', root / 'member2.pt', FlowConfig(seed=1, **settings),
               log=lambda *_: None)
    members = [root / 'flow.pt', root / 'member2.pt']
    # The export checks each graph and the runtime's whole loop against torch's ensemble.
    ensemble_path = export_flow(members, root / 'ensemble', log=lambda *_: None)
    contract = yaml.safe_load(ensemble_path.read_text())
    assert contract['info']['members'] == 2 and contract['info']['train_seed'] == '0, 1'
    # Each step's output is the members' mean, each reading its own part of the condition.
    ensemble, _, _ = load_flow_members(members)
    one, two = ensemble.members
    inputs = [torch.randn(1, 3, 24, 32), torch.randn(1, 3, 24, 32),
              torch.randn(1, one.config.state_dim), torch.zeros(1, 32, dtype=torch.long)]
    x_t, t = torch.randn(1, one.chunk_length, one.action_dim), torch.tensor([0.4])
    with torch.no_grad():
        condition = ensemble.condition(*inputs)
        expected = (one.velocity(x_t, t, one.condition(*inputs))
                    + two.velocity(x_t, t, two.condition(*inputs))) / 2
        assert torch.allclose(ensemble.velocity(x_t, t, condition), expected, atol=1e-6)
    assert not torch.allclose(one.velocity(x_t, t, one.condition(*inputs)), expected)
    # Members normalised with other statistics (another split of the data) share the loop in
    # the first member's units; in raw units the result does not depend on which one is first.
    FlowEnsemble = type(ensemble)
    width = one.action_dim
    units_one = (np.linspace(-0.1, 0.1, width), np.full(width, 0.5))
    units_two = (units_one[0] + 0.02 * units_one[1], units_one[1] * 1.03)
    raw = []
    with torch.no_grad():
        for order, units in (((one, two), (units_one, units_two)),
                             ((two, one), (units_two, units_one))):
            mixed = FlowEnsemble(list(order), list(units))
            mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in units[0])
            raw_x = torch.full_like(x_t, 0.01) + 0.1 * x_t
            out = mixed.velocity((raw_x - mean) / std, t, mixed.condition(*inputs))
            raw.append(out * std + mean)
    assert one.prior_head  # outputs are clean chunks, which convert like positions
    assert torch.allclose(raw[0], raw[1], atol=1e-5)
    # A member whose units are far from the first's would start from noise it never saw.
    far = torch.load(root / 'member2.pt', map_location='cpu', weights_only=False)
    far['action_std'] = [1.2 * v for v in far['action_std']]
    torch.save(far, root / 'far.pt')
    with pytest.raises(ConfigError, match=r"far\.pt: cannot join .*action units"):
        load_flow_members([root / 'flow.pt', root / 'far.pt'])
    # A member trained differently is refused by name.
    train_flow(root / 'ds', root / 'other.pt', FlowConfig(**dict(settings, max_tokens=16)),
               log=lambda *_: None)
    with pytest.raises(ConfigError, match=r"other\.pt: cannot join .*prior_head / flow_steps"):
        load_flow_members([root / 'flow.pt', root / 'other.pt'])
