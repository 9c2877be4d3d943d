"""A flow-matching policy trained for how people talk and for the light of a real cell, exported
as a two-graph iterative model (contract version 2) that policy_node runs with no code change.

Why (issue 15, 3a): the shipped regression policy reads one instruction template through a
word vocabulary and one lighting. Tried as a user would, it failed most rephrasings, Japanese
and darker scenes. This trainer keeps its perception trunk (model.VisuomotorPolicy: per-camera
CNN, grounding maps of the named object, target position and heading heads; warm-started from
a trained checkpoint) and changes what the issue names:

* **language**: a byte-level BPE tokenizer (the `tokenizers` library, tokenizer.json shipped
  with the model) trained on English and Japanese phrasings (core/phrasing.py TRAIN split);
  every training sample gets a random phrasing of its task, and the instruction is pooled by
  attention (model.PolicyConfig.text_pooling) so filler words and word order do not dilute it.
  Byte-level: no text is ever unknown, Japanese needs no word segmentation (kana and kanji runs
  are split apart before BPE so a particle does not fuse with the noun before it);
* **light and colour**: per-sample photometric jitter (brightness, per-channel gain, offset)
  of the camera images, so the renderer's darker or tinted conditions are not a new world
  (those conditions themselves are never seen in training);
* **action head**: flow matching (Lipman et al. 2023; the straight path and sign convention
  of pi0: x_t = t * noise + (1 - t) * actions, target velocity noise - actions, integrated from
  t = 1 to 0) over a chunk of joint *deltas* (contract mode `delta`: the runtime adds the
  measured joints) and absolute gripper targets, conditioned on the trunk's fused features.

Export: `encoder.onnx` (images, state, tokens -> condition) runs once per chunk and
`denoiser.onnx` (x_t, t, condition -> velocity) runs `flow_steps` times in the runtime's loop
(core/policy/pipeline.py), with `policy.contract.yaml` and `tokenizer.json` next to them.

    python -m noetra_ros.learning.flow train --dataset D1,D2 --output flow.pt \\
        --init models/pick_place_lrmate_member_heading.pt --steps 3000
    python -m noetra_ros.learning.flow export --checkpoint flow.pt --output-dir out/
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import asdict, dataclass, fields, replace
import math
from pathlib import Path
import sys
import time
from typing import Any, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.phrasing import (
    parse_template_instruction, phrasings, TaskWords, TRAIN_TEMPLATES, UnknownWordNoise)
from noetra_ros.core.sim.task import COLOURS, PLACES, SHAPES
from noetra_ros.learning.dataset import episode_bounds, progress

CHECKPOINT_FORMAT = 'noetra_ros.learning flow checkpoint v1'
TOKENIZER_FILE = 'tokenizer.json'
CONTRACT_FILE = 'policy.contract.yaml'
PAD_TOKEN = '<pad>'
# Kana and kanji runs become separate pre-tokens, each kanji alone: "赤い立方体を" -> 赤 / い /
# 立 / 方 / 体 / を, so BPE merges never cross a word and particle boundary Japanese does not
# mark with a space; Latin words, digits and punctuation are split as usual.
PRETOKEN_PATTERN = (r'\p{Han}|\p{Hiragana}+|\p{Katakana}+|[^\s\p{Han}\p{Hiragana}'
                    r'\p{Katakana}\p{P}\p{S}]+|[\p{P}\p{S}]')
PARITY_TOLERANCE = 1e-4


def build_instruction_tokenizer(texts: Sequence[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts`: NFKC + lower case, the
    PRETOKEN_PATTERN split, `<pad>` as id 0 (the graph treats id 0 as padding)."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, Regex, Tokenizer
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKEN_PATTERN), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD_TOKEN], show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    if tokenizer.token_to_id(PAD_TOKEN) != 0:
        raise ConfigError('tokenizer: <pad> did not get id 0')
    return tokenizer


def training_corpus() -> list[str]:
    """Every TRAIN phrasing of every task (core/phrasing.py): the tokenizer's corpus."""
    return [text for c in COLOURS for s in SHAPES for p in PLACES
            for text in phrasings(TaskWords(c, s, p), 'train')]


@dataclass(frozen=True)
class FlowConfig:
    """Hyper-parameters of one flow-policy training run (stored in the checkpoint)."""

    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    # One thread: with two, a second busy process on a 2-core machine made a step 10x slower
    # (OpenMP threads waiting on each other), while one thread degrades gracefully.
    threads: int = 1
    init_checkpoint: str = ''        # a model.VisuomotorPolicy checkpoint (train.py) to start from
    # A flow checkpoint to continue from (its weights; the schedule starts again at this run's
    # learning rate). The trunk then comes from it, not from init_checkpoint's weights.
    resume_checkpoint: str = ''
    flow_steps: int = 10             # Euler steps at inference (the contract's denoise steps)
    # Weight of the flow-matching loss next to the trunk's auxiliary losses: the gradient is
    # clipped as a whole, and the grounding cross-entropies are an order of magnitude larger.
    flow_weight: float = 10.0
    # Anchor the flow on the warm-started trunk's regression head (FlowMatchingPolicy): the
    # network predicts the clean chunk as that head's chunk plus a residual.
    prior_head: bool = True
    flow_hidden: int = 512
    time_dim: int = 64
    max_tokens: int = 32
    vocab_size: int = 512
    text_heads: int = 4
    shift_pixels: int = 4
    # Photometric jitter: with probability photometric_p a sample's pixels p in [0, 1] become
    # clip(p * brightness * gain_c + offset): brightness ~ U(brightness_min, brightness_max),
    # gain_c ~ U(1 - tint, 1 + tint) per channel, offset ~ U(-offset, offset).
    photometric_p: float = 0.8
    brightness_min: float = 0.55
    brightness_max: float = 1.3
    tint: float = 0.15
    offset: float = 0.05
    # Weights of the trunk's training-only heads (train.auxiliary_losses reads these names).
    grounding_weight: float = 1.0
    grounding_sigma: float = 1.0
    grounding_hard_fraction: float = 0.0
    object_grounding_weight: float = 1.0
    target_weight: float = 1.0
    heading_weight: float = 1.0
    aux_weight: float = 0.5
    val_fraction: float = 0.05
    val_every: int = 250
    languages: str = 'en,ja'         # phrasing languages trained on
    # Share of training samples that get the task template itself (phrasing 0) instead of a
    # random training phrasing: the template is how most users will ask, and with 19 phrasings
    # per task it is otherwise one sample in 19. 0 keeps earlier runs' random streams.
    template_fraction: float = 0.0
    # Share of training samples whose phrasing gets unknown-word noise (core/phrasing.py
    # UnknownWordNoise: random words inserted or in place of words other than the colour,
    # shape and side), drawn from text_noise_variants noisy sentences per task made at start.
    # 0 keeps earlier runs' random streams.
    text_noise_p: float = 0.0
    text_noise_variants: int = 256
    # Uneven light (photometric samples only): pixels also scale by 1 + g * (the image's
    # coordinate along a random direction, -1..1), g ~ U(0, light_gradient): one side of the
    # scene brighter than the other, as a lamp from the side makes it. 0: off (earlier runs).
    light_gradient: float = 0.0

    def __post_init__(self) -> None:
        for name in ('steps', 'batch_size', 'flow_steps', 'flow_hidden', 'time_dim',
                     'max_tokens', 'vocab_size', 'text_heads', 'threads', 'val_every',
                     'text_noise_variants'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f'{name}={value!r}: must be a positive integer')
        if self.time_dim % 2:
            raise ConfigError(f'time_dim={self.time_dim}: must be even (sin and cos halves)')
        if not (math.isfinite(self.flow_weight) and self.flow_weight > 0.0):
            raise ConfigError(f'flow_weight={self.flow_weight!r}: must be > 0')
        if not 0.0 <= self.template_fraction <= 1.0:
            raise ConfigError(f'template_fraction={self.template_fraction!r}: must be in [0, 1]')
        if not 0.0 <= self.text_noise_p <= 1.0:
            raise ConfigError(f'text_noise_p={self.text_noise_p!r}: must be in [0, 1]')
        if not 0.0 <= self.light_gradient < 1.0:
            raise ConfigError(f'light_gradient={self.light_gradient!r}: must be in [0, 1)')
        if not 0.0 <= self.photometric_p <= 1.0:
            raise ConfigError(f'photometric_p={self.photometric_p!r}: must be in [0, 1]')
        if not 0.0 < self.brightness_min <= self.brightness_max:
            raise ConfigError('brightness_min / brightness_max: need 0 < min <= max')
        unknown = [lang for lang in self.languages.split(',') if lang not in TRAIN_TEMPLATES]
        if unknown or not self.languages:
            raise ConfigError(f'languages={self.languages!r}: allowed: '
                              f'{", ".join(TRAIN_TEMPLATES)}')


def _torch_modules():
    """The nn.Module classes (torch imported only when training / exporting)."""
    import torch
    from torch import nn

    from noetra_ros.learning.model import PolicyConfig, VisuomotorPolicy

    class FlowMatchingPolicy(nn.Module):
        """Trunk (VisuomotorPolicy features) + a network over a normalised chunk, run from
        noise (t = 1) to actions (t = 0).

        Without a prior head the network is a velocity field (`predicts: velocity`). With one
        (FlowConfig.prior_head), the trunk keeps its trained regression head, whose chunk -
        converted to this contract's delta units inside the graph - is the `prior`, and the
        network predicts the clean chunk as prior + a residual (`predicts: sample`, the
        deterministic DDIM step on the same straight path). The residual's last layer starts
        at zero, so training starts from the regression policy instead of from nothing."""

        def __init__(self, trunk_config: PolicyConfig, chunk_length: int, action_dim: int,
                     hidden: int, time_dim: int, prior_head: bool = False) -> None:
            super().__init__()
            self.config = trunk_config
            self.trunk = VisuomotorPolicy(trunk_config)
            self.prior_head = prior_head
            if not prior_head:
                self.trunk.head = nn.Identity()  # the network below replaces it
            self.chunk_length, self.action_dim = chunk_length, action_dim
            half = time_dim // 2
            self.register_buffer('frequencies', torch.exp(
                -math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half))
            width = chunk_length * action_dim
            self.prior_width = width if prior_head else 0
            # The prior's conversion: trunk output (old contract units, absolute) -> this
            # contract's units (joint deltas from the measured joints, gripper absolute).
            for name in ('old_mean', 'old_std', 'new_mean', 'new_std'):
                self.register_buffer(name, torch.zeros(action_dim) if 'mean' in name
                                     else torch.ones(action_dim))
            self.register_buffer('state_mean', torch.zeros(trunk_config.state_dim))
            self.register_buffer('state_std', torch.ones(trunk_config.state_dim))
            self.delta_joints = trunk_config.residual_joints if prior_head else 0
            # The trunk's features mix keypoint coordinates, pooled activations and head
            # outputs of very different scales; normalised, they do not drown x_t and t.
            self.condition_norm = nn.LayerNorm(self.trunk.fused_dim)
            self.velocity_net = nn.Sequential(
                nn.Linear(self.trunk.fused_dim + 2 * width + time_dim, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, width))
            if prior_head:
                nn.init.zeros_(self.velocity_net[-1].weight)
                nn.init.zeros_(self.velocity_net[-1].bias)

        def set_prior_units(self, old_mean, old_std, new_mean, new_std, state_mean,
                            state_std) -> None:
            """The normalisations the prior is converted between (call before training)."""
            for name, value in (('old_mean', old_mean), ('old_std', old_std),
                                ('new_mean', new_mean), ('new_std', new_std),
                                ('state_mean', state_mean), ('state_std', state_std)):
                getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

        def prior(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            """The regression head's chunk in this contract's units [B, T, A]."""
            absolute = self.trunk._actions(features, state) * self.old_std + self.old_mean
            n = self.delta_joints
            measured = state[:, :n] * self.state_std[:n] + self.state_mean[:n]
            raw = torch.cat([absolute[:, :, :n] - measured.unsqueeze(1), absolute[:, :, n:]],
                            dim=2)
            return (raw - self.new_mean) / self.new_std

        def condition(self, *inputs: torch.Tensor) -> torch.Tensor:
            features, _ = self.trunk._features(inputs)
            return self.condition_from(features, inputs[len(self.config.cameras)])

        def condition_from(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            """[features | prior chunk, flattened] (only features without a prior head)."""
            if not self.prior_head:
                return features
            return torch.cat([features, self.prior(features, state).flatten(1)], dim=1)

        def velocity(self, x_t: torch.Tensor, t: torch.Tensor,
                     condition: torch.Tensor) -> torch.Tensor:
            """The denoiser's output at (x_t [B, T, A], t [B] or [1]) for `condition`: dx/dt,
            or with a prior head the clean chunk."""
            angles = t.reshape(-1, 1) * 1000.0 * self.frequencies
            embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
            embedding = embedding.expand(x_t.shape[0], -1)
            features = condition[:, :self.trunk.fused_dim]
            prior = condition[:, self.trunk.fused_dim:]
            if not self.prior_head:
                prior = torch.zeros_like(x_t.flatten(1))
            out = self.velocity_net(torch.cat([self.condition_norm(features), x_t.flatten(1),
                                               embedding, prior], dim=1))
            if self.prior_head:
                out = out + prior
            return out.reshape(-1, self.chunk_length, self.action_dim)

        def sample(self, condition: torch.Tensor, noise: torch.Tensor,
                   steps: int) -> torch.Tensor:
            """From t = 1 (noise) to 0 (actions), as the runtime's loop does
            (pipeline.denoise_update: Euler on the velocity, or the DDIM step on a sample)."""
            x = noise
            times = torch.linspace(1.0, 0.0, steps + 1)
            for k in range(steps):
                out = self.velocity(x, times[k].reshape(1), condition)
                if self.prior_head:
                    x = out + (times[k + 1] / times[k]) * (x - out)
                else:
                    x = x + (times[k + 1] - times[k]) * out
            return x

    class EncoderGraph(nn.Module):
        def __init__(self, policy: FlowMatchingPolicy) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.policy.condition(*inputs)

    class DenoiserGraph(nn.Module):
        def __init__(self, policy: FlowMatchingPolicy) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                    condition: torch.Tensor) -> torch.Tensor:
            return self.policy.velocity(x_t, t, condition)

    class FlowEnsemble(nn.Module):
        """Members trained alike (same tokenizer, cameras, settings), run as one policy: the
        condition is the members' conditions side by side, and each denoising step's output is
        the mean of the members' outputs (their predicted clean chunks, or velocities), as the
        shipped regression model averages its members' chunks.

        The chunk is in the first member's action units. A member normalised its actions with
        other statistics (trained on another split) reads x_t converted to its own units and
        its output is converted back: x_i = x * scale + shift, with scale = std_0 / std_i and
        shift = (mean_0 - mean_i) / std_i per action component."""

        def __init__(self, members: Sequence[FlowMatchingPolicy],
                     units: Sequence[tuple[Sequence[float], Sequence[float]]]) -> None:
            """`units`: each member's (action mean, action std), in member order."""
            super().__init__()
            self.members = nn.ModuleList(members)
            self.widths = [m.trunk.fused_dim + m.prior_width for m in members]
            self.prior_head = members[0].prior_head
            mean0, std0 = (torch.as_tensor(v, dtype=torch.float32) for v in units[0])
            scales, shifts = [], []
            for mean, std in units:
                mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in (mean, std))
                scales.append(std0 / std)
                shifts.append((mean0 - mean) / std)
            self.register_buffer('scales', torch.stack(scales))  # [members, A]
            self.register_buffer('shifts', torch.stack(shifts))
            self.converts = [not (torch.allclose(a, torch.ones_like(a))
                                  and torch.allclose(b, torch.zeros_like(b)))
                             for a, b in zip(scales, shifts)]

        def condition(self, *inputs: torch.Tensor) -> torch.Tensor:
            return torch.cat([m.condition(*inputs) for m in self.members], dim=1)

        def velocity(self, x_t: torch.Tensor, t: torch.Tensor,
                     condition: torch.Tensor) -> torch.Tensor:
            parts = torch.split(condition, self.widths, dim=1)
            outputs = []
            for i, (member, part) in enumerate(zip(self.members, parts)):
                if not self.converts[i]:  # the first member's units: no ops in the graph
                    outputs.append(member.velocity(x_t, t, part))
                    continue
                scale, shift = self.scales[i], self.shifts[i]
                out = member.velocity(x_t * scale + shift, t, part)
                # A clean chunk converts back like x; a velocity (dx/dt) only scales.
                outputs.append((out - shift) / scale if self.prior_head else out / scale)
            return torch.stack(outputs).mean(dim=0)

        sample = FlowMatchingPolicy.sample

    return FlowMatchingPolicy, EncoderGraph, DenoiserGraph, FlowEnsemble


class FlowSamples:
    """Training tensors: the trunk's (train.TrainingSamples: images, state, grounding targets)
    plus, per frame, the normalised delta chunk, and per task its phrasings as token ids."""

    def __init__(self, data: Any, trunk_contract: Any, chunk_length: int, tokenizer: Any,
                 config: FlowConfig, train_rows: np.ndarray) -> None:
        from noetra_ros.learning.train import (
            _floored_std, MIN_JOINT_DELTA_STD_RAD, TrainingSamples)

        self.base = TrainingSamples(data, trunk_contract, chunk_length)
        self.data = data
        self.config = config
        self.tokenizer = tokenizer
        languages = config.languages.split(',')
        joints = len(trunk_contract.state_input.components[0].joints)
        # Chunk targets in contract units: joints as deltas from the frame's measured joints
        # (mode delta), the gripper absolute.
        rows = self.base.chunk_rows
        raw = data.action[rows].astype(np.float64)                     # [N, T, A]
        raw[:, :, :joints] -= data.state[:, None, :joints].astype(np.float64)
        sample = raw[train_rows].reshape(-1, raw.shape[2])
        self.mean = sample.mean(axis=0)
        std = sample.std(axis=0)
        names = data.names('action')
        std = _floored_std(names, std)
        std[:joints] = np.maximum(sample[:, :joints].std(axis=0), MIN_JOINT_DELTA_STD_RAD)
        self.std = std
        self.target = ((raw - self.mean) / self.std).astype(np.float32)
        self.joints = joints

        def encode(texts: list[str]) -> np.ndarray:
            out = np.zeros((len(texts), config.max_tokens), dtype=np.int64)
            for i, text in enumerate(texts):
                ids = tokenizer.encode(text).ids[:config.max_tokens]
                out[i, :len(ids)] = ids
            return out

        task_words = [parse_template_instruction(t) for t in data.tasks]
        per_task = [[p for lang in languages for p in phrasings(w, 'train', lang)]
                    for w in task_words]
        self.phrasing_count = len(per_task[0])
        self.task_tokens = np.stack([encode(texts) for texts in per_task])      # [K, P, L]
        # The grounding queries name other objects of the scene: same phrasings, any bin.
        self.object_tokens = np.stack([np.stack([
            encode([p for lang in languages
                    for p in phrasings(TaskWords(c, s, PLACES[0]), 'train', lang)])
            for s in SHAPES]) for c in COLOURS])                                # [C, S, P, L]
        self.noisy_tokens = (self._noisy_phrasings(task_words, languages, encode)
                             if config.text_noise_p > 0 else None)              # [K, V, L]

    def _noisy_phrasings(self, task_words: list[TaskWords], languages: list[str],
                         encode) -> np.ndarray:
        """text_noise_variants noisy training phrasings per task, as token ids; a sentence
        whose tokens would not fit max_tokens is drawn again (truncation could cut off the
        colour, shape or side)."""
        noise = UnknownWordNoise()
        rng = np.random.default_rng([self.config.seed, 15])
        banks = []
        for words in task_words:
            texts: list[str] = []
            while len(texts) < self.config.text_noise_variants:
                lang = languages[int(rng.integers(len(languages)))]
                text = noise.sample(words, rng, lang)
                if len(self.tokenizer.encode(text).ids) <= self.config.max_tokens:
                    texts.append(text)
            banks.append(encode(texts))
        return np.stack(banks)

    def photometric(self, images: list[np.ndarray], rng: np.random.Generator) -> None:
        """Jitter the normalised images in place (FlowConfig: brightness, gain, offset)."""
        cfg = self.config
        for spec, batch in zip(self.base.image_specs, images):
            count = len(batch)
            apply = rng.random(count) < cfg.photometric_p
            brightness = rng.uniform(cfg.brightness_min, cfg.brightness_max, count)
            gain = rng.uniform(1 - cfg.tint, 1 + cfg.tint, (count, 3))
            offset = rng.uniform(-cfg.offset, cfg.offset, (count, 3))
            scale = np.where(apply[:, None], brightness[:, None] * gain, 1.0)
            shift = np.where(apply[:, None], offset, 0.0)
            mean = np.asarray(spec.mean, dtype=np.float32)[None, :, None, None]
            std = np.asarray(spec.std, dtype=np.float32)[None, :, None, None]
            pixels = batch * std + mean
            factor = np.broadcast_to(scale[:, :, None, None].astype(np.float32),
                                     (count, 3) + batch.shape[2:])
            if cfg.light_gradient > 0.0:
                strength = np.where(apply, rng.uniform(0.0, cfg.light_gradient, count), 0.0)
                angle = rng.uniform(0.0, 2.0 * np.pi, count)
                ys = np.linspace(-1.0, 1.0, batch.shape[2], dtype=np.float32)[None, :, None]
                xs = np.linspace(-1.0, 1.0, batch.shape[3], dtype=np.float32)[None, None, :]
                ramp = 1.0 + (strength * np.cos(angle))[:, None, None].astype(np.float32) * xs \
                    + (strength * np.sin(angle))[:, None, None].astype(np.float32) * ys
                factor = factor * ramp[:, None]
            pixels = pixels * factor + shift[:, :, None, None].astype(np.float32)
            np.clip(pixels, 0.0, 1.0, out=pixels)
            batch[...] = (pixels - mean) / std

    def batch(self, rows: np.ndarray, rng: np.random.Generator | None, train: bool):
        """(model inputs, target chunk [B, T, A], image moves); random phrasings, shifts and
        photometric jitter when `train`, else the template phrasing (index 0) unchanged."""
        shift = self.config.shift_pixels if train else 0
        images, moves = self.base.images(rows, rng if train else None, shift)
        if train and rng is not None:
            self.photometric(images, rng)
            choice = rng.integers(self.phrasing_count, size=len(rows))
            if self.config.template_fraction > 0.0:
                choice[rng.random(len(rows)) < self.config.template_fraction] = 0
        else:
            choice = np.zeros(len(rows), dtype=np.int64)
        tokens = self.task_tokens[self.data.task_index[rows], choice]
        if train and rng is not None and self.noisy_tokens is not None:
            noisy = np.flatnonzero(rng.random(len(rows)) < self.config.text_noise_p)
            variant = rng.integers(self.noisy_tokens.shape[1], size=len(noisy))
            tokens[noisy] = self.noisy_tokens[self.data.task_index[rows[noisy]], variant]
        return images + [self.base.state[rows], tokens], self.target[rows], moves

    def use_object_phrasing(self, index: int) -> None:
        """The phrasing the grounding queries of the next batch use."""
        self.base.object_tokens = self.object_tokens[:, :, index]


def _trunk_from_checkpoint(path: str, config: FlowConfig, vocab_size: int):
    """(trunk PolicyConfig for the new tokenizer and attention pooling, trunk contract, state
    dict of the checkpoint's weights that still fit)."""
    from noetra_ros.learning.train import load_checkpoint

    if not Path(path).is_file():
        raise ConfigError(f'init_checkpoint={path!r}: no such file')
    model, contract, _ = load_checkpoint(path)
    trunk_config = replace(model.config, vocab_size=vocab_size, max_tokens=config.max_tokens,
                           text_pooling='attention', text_heads=config.text_heads)
    if not config.prior_head:
        trunk_config = replace(trunk_config, residual_joints=0)
    return trunk_config, contract, model.state_dict()


def train_flow(dataset: str | Sequence[str], output: str | Path, config: FlowConfig,
               log=print) -> dict[str, Any]:
    """Train the flow policy on `dataset` (train.load_datasets) and save a checkpoint."""
    import torch

    from noetra_ros.learning.train import (
        _rows_of, auxiliary_losses, load_datasets, perception_errors, seed_everything,
        split_episodes)

    if not config.init_checkpoint:
        raise ConfigError('init_checkpoint: the flow policy starts from a trained trunk (a '
                          'train.py checkpoint, e.g. models/pick_place_lrmate_member_heading.pt)')
    seed_everything(config.seed, config.threads)
    tokenizer = build_instruction_tokenizer(training_corpus(), config.vocab_size)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    trunk_config, trunk_contract, init_state = _trunk_from_checkpoint(
        config.init_checkpoint, config, vocab)
    t0 = time.monotonic()
    data = load_datasets(dataset)
    log(f'loaded {len(data.episodes)} episodes, {len(data)} frames in '
        f'{time.monotonic() - t0:.0f} s; tokenizer {vocab} tokens')
    train_eps, val_eps = split_episodes(len(data.episodes), config.val_fraction, config.seed)
    bounds = episode_bounds(data)
    train_rows, val_rows = _rows_of(bounds, train_eps), _rows_of(bounds, val_eps)
    chunk = trunk_contract.action.chunk_length
    samples = FlowSamples(data, trunk_contract, chunk, tokenizer, config, train_rows)
    FlowMatchingPolicy = _torch_modules()[0]
    model = FlowMatchingPolicy(trunk_config, chunk, trunk_contract.action.size,
                               config.flow_hidden, config.time_dim, config.prior_head)
    model.set_prior_units(trunk_contract.action.mean, trunk_contract.action.std, samples.mean,
                          samples.std, trunk_contract.state_input.mean,
                          trunk_contract.state_input.std)
    own = model.trunk.state_dict()
    kept = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
    model.trunk.load_state_dict(kept, strict=False)
    log(f'trunk: {len(kept)} of {len(own)} tensors from {config.init_checkpoint} (the '
        f'instruction encoder and the action head are new)')
    resumed_history: list[dict[str, float]] = []
    if config.resume_checkpoint:
        earlier, earlier_checkpoint = load_flow_checkpoint(config.resume_checkpoint)
        if earlier_checkpoint['tokenizer_json'] != tokenizer.to_str():
            raise ConfigError(f'resume_checkpoint={config.resume_checkpoint!r}: its tokenizer '
                              'differs from the one this run builds (other phrasings or vocab)')
        try:
            model.load_state_dict(earlier.state_dict())
        except RuntimeError as error:
            raise ConfigError(f'resume_checkpoint={config.resume_checkpoint!r}: does not fit '
                              f'this configuration ({error})') from None
        resumed_history = list(earlier_checkpoint.get('history', []))
        log(f'continuing from {config.resume_checkpoint} '
            f'({resumed_history[-1]["step"] if resumed_history else "?"} steps)')
    model.train()
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    val_probe = np.sort(rng.choice(val_rows, size=min(256, len(val_rows)), replace=False))
    val_noise = torch.from_numpy(np.random.default_rng([config.seed, 1]).standard_normal(
        (len(val_probe), chunk, trunk_contract.action.size)).astype(np.float32))

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    def validate() -> dict[str, float]:
        """Mean L1 of the sampled chunk (10 Euler steps from fixed noise) on the val probe,
        template phrasing, no jitter; and the trunk's perception errors."""
        ema.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(val_probe), 128):
                rows = val_probe[start:start + 128]
                inputs, target, _ = samples.batch(rows, None, train=False)
                cond = ema.condition(*[torch.from_numpy(x) for x in inputs])
                pred = ema.sample(cond, val_noise[start:start + 128], config.flow_steps)
                total += float(torch.abs(pred - torch.from_numpy(target)).mean()) * len(rows)
        out = {'val_sample_l1': total / max(1, len(val_probe))}
        trunk_samples = _TrunkView(samples)
        out.update(perception_errors(_TrunkPerception(ema.trunk), trunk_samples, val_probe))
        return out

    log(f'flow policy: {n_params} parameters; {len(train_eps)} train / {len(val_eps)} val '
        f'episodes; {samples.phrasing_count} phrasings per task ({config.languages})')
    done_before = int(resumed_history[-1]['step']) if resumed_history else 0
    history: list[dict[str, float]] = list(resumed_history)
    running = running_flow = 0.0
    order, cursor = rng.permutation(train_rows), 0
    start = time.monotonic()
    for step in progress(range(config.steps), total=config.steps, desc='training'):
        if cursor + config.batch_size > len(order):
            order, cursor = rng.permutation(train_rows), 0
        rows = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        inputs, target, moves = samples.batch(rows, rng, train=True)
        samples.use_object_phrasing(int(rng.integers(samples.phrasing_count)))
        queries = (samples.base.object_queries(rows, moves, config.grounding_sigma)
                   if trunk_config.grounding and config.object_grounding_weight > 0 else [])
        model.train()
        for group in optimiser.param_groups:
            group['lr'] = lr_at(step)
        features, extras = model.trunk._features(
            tuple(torch.from_numpy(x) for x in inputs),
            tuple(torch.from_numpy(tokens) for tokens, _ in queries))
        extras['key_poses'] = (model.trunk.aux_head(features)
                               if model.trunk.aux_head is not None else None)
        actions = torch.from_numpy(target)
        noise = torch.from_numpy(rng.standard_normal(target.shape).astype(np.float32))
        t = torch.from_numpy(rng.random(len(rows)).astype(np.float32))
        x_t = t[:, None, None] * noise + (1.0 - t[:, None, None]) * actions
        condition = model.condition_from(
            features, torch.from_numpy(inputs[len(trunk_contract.image_inputs)]))
        prediction = model.velocity(x_t, t, condition)
        # Velocity: target noise - actions; with a prior head the output is the clean chunk.
        goal = actions if model.prior_head else noise - actions
        flow_loss = torch.mean((prediction - goal) ** 2)
        loss = config.flow_weight * flow_loss + auxiliary_losses(
            model.trunk, config, samples.base, rows, moves, queries, extras)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        flow_value = float(flow_loss.detach())
        running_flow = 0.98 * running_flow + 0.02 * flow_value if step else flow_value
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            entry = {'step': done_before + step + 1, 'train_loss': running,
                     'train_flow_mse': running_flow, 'lr': lr_at(step),
                     'elapsed_s': time.monotonic() - start, **validate()}
            history.append(entry)
            log('\n' + '  '.join(f'{k} {v:.4g}' for k, v in entry.items()))
    checkpoint = {
        'format': CHECKPOINT_FORMAT,
        'trunk_config': ema.config.to_dict(),
        'state_dict': ema.state_dict(),
        'trunk_contract': trunk_contract.to_dict(),
        'action_mean': samples.mean.tolist(), 'action_std': samples.std.tolist(),
        'tokenizer_json': tokenizer.to_str(),
        'flow_config': asdict(config),
        'history': history,
        'dataset': {'path': [str(p) for p in data.info.get('sources', [data.root])],
                    'episodes': len(data.episodes), 'frames': len(data),
                    'seeds': [int(row.get('seed', -1)) for row in data.episodes],
                    'train_episodes': train_eps, 'val_episodes': val_eps},
        'parameters': n_params,
        'train_time_s': time.monotonic() - start,
        'torch_version': str(torch.__version__),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, output)
    log(f'saved {output} after {checkpoint["train_time_s"]:.0f} s of training')
    return checkpoint


class _TrunkPerception:
    """What train.perception_errors calls of a policy, for a trunk without its action head."""

    def __init__(self, trunk: Any) -> None:
        self.trunk, self.config = trunk, trunk.config

    def eval(self) -> None:
        self.trunk.eval()

    def forward_with_aux(self, *inputs: Any) -> tuple[None, dict]:
        return None, self.trunk._features(inputs)[1]


class _TrunkView:
    """What train.perception_errors reads of a TrainingSamples, with the flow tokens."""

    def __init__(self, samples: FlowSamples) -> None:
        base = samples.base
        self.image_specs, self.target_pixels, self.data = (base.image_specs, base.target_pixels,
                                                          base.data)
        self.objects, self.target_heading = base.objects, base.target_heading
        self.target_position = base.target_position
        self.shared_colour_rows = base.shared_colour_rows
        self._samples = samples

    def batch(self, rows: np.ndarray):
        inputs, target, _ = self._samples.batch(rows, None, train=False)
        return inputs, target


def load_flow_checkpoint(path: str | Path):
    """(FlowMatchingPolicy in eval mode, checkpoint dict)."""
    import torch

    from noetra_ros.learning.model import PolicyConfig

    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        checkpoint = torch.load(Path(path), map_location='cpu', weights_only=True)
    if checkpoint.get('format') != CHECKPOINT_FORMAT:
        raise ConfigError(f'{path}: not a flow checkpoint (format '
                          f'{checkpoint.get("format")!r}, expected {CHECKPOINT_FORMAT!r})')
    config = FlowConfig(**{f.name: checkpoint['flow_config'][f.name] for f in fields(FlowConfig)
                           if f.name in checkpoint['flow_config']})
    trunk_config = PolicyConfig.from_dict(checkpoint['trunk_config'])
    FlowMatchingPolicy = _torch_modules()[0]
    mean = checkpoint['action_mean']
    model = FlowMatchingPolicy(trunk_config, int(checkpoint['trunk_contract']['outputs'][0]
                                                 ['chunk_length']), len(mean),
                               config.flow_hidden, config.time_dim, config.prior_head)
    model.load_state_dict(checkpoint['state_dict'])
    model.eval()
    return model, checkpoint


def flow_contract_dict(checkpoint: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The version 2 contract of an exported flow policy (encoder + denoiser graphs)."""
    from noetra_ros.core.policy.contract import contract_from_dict
    from noetra_ros.learning.export import trained_embodiment

    trunk = contract_from_dict(checkpoint['trunk_contract'])
    config = checkpoint['flow_config']
    images = [spec.to_dict() for spec in trunk.image_inputs]
    state = trunk.state_input.to_dict()
    joints = list(trunk.state_input.components[0].joints)
    chunk = trunk.action.chunk_length
    width = len(checkpoint['action_mean'])
    embodiment = trunk.embodiment or trained_embodiment(checkpoint)
    predicts = 'sample' if config.get('prior_head') else 'velocity'
    history = checkpoint.get('history') or [{}]
    return {
        'contract_version': 2,
        'name': 'pick_place_lrmate_flow',
        'description': ('Pick the named object and place it in the named bin, asked in English '
                        'or Japanese in many phrasings; flow-matching action head over joint '
                        'deltas, trained with photometric jitter (noetra_ros.learning.flow).'),
        'robot_joints': joints,
        'embodiment': embodiment.to_dict(),
        'inputs': images + [state, {
            'name': 'input_ids', 'kind': 'instruction', 'tokenizer': 'hf_tokenizers',
            'tokenizer_file': TOKENIZER_FILE, 'vocab_size': vocab_size, 'pad_id': 0,
            'max_length': int(config['max_tokens'])}],
        'outputs': [{
            'name': 'actions', 'kind': 'action_chunk', 'chunk_length': chunk,
            'step_period_s': trunk.action.step_period_s,
            'components': [{'meaning': 'joint_positions', 'mode': 'delta', 'joints': joints},
                           {'meaning': 'gripper_position', 'mode': 'absolute'}],
            'mean': [float(v) for v in checkpoint['action_mean']],
            'std': [float(v) for v in checkpoint['action_std']]}],
        'graphs': {'encoder': 'encoder.onnx', 'denoiser': 'denoiser.onnx'},
        'pipeline': [
            {'name': 'encode', 'kind': 'run', 'graph': 'encoder',
             'inputs': {**{spec.name: spec.name for spec in trunk.image_inputs},
                        'state': state['name'], 'input_ids': 'input_ids'},
             'outputs': {'condition': 'condition'}},
            {'name': 'denoise', 'kind': 'denoise', 'graph': 'denoiser',
             'steps': int(config['flow_steps']), 'schedule': 'linear', 'predicts': predicts,
             't_start': 1.0, 't_end': 0.0, 'x_input': 'x_t', 'time_input': 't',
             'step_output': predicts, 'noise_shape': [1, chunk, width],
             'inputs': {'condition': 'condition'}, 'result': 'actions', 'seed': 0,
             'inpaint_prefix': True}],
        'info': {'producer': 'noetra_ros.learning.flow',
                 'architecture': 'VisuomotorPolicy trunk (attention-pooled BPE instruction) + '
                                 + ('flow-matching MLP predicting the clean chunk as the '
                                    'regression head\'s chunk + a residual'
                                    if predicts == 'sample' else 'flow-matching velocity MLP'),
                 'parameters': int(checkpoint.get('parameters', 0)),
                 'train_steps': _trained_steps(checkpoint), 'train_seed': int(config['seed']),
                 'init_checkpoint': Path(str(config['init_checkpoint'])).name,
                 'train_time_s': round(float(checkpoint.get('train_time_s', 0.0)), 1),
                 'final_val_sample_l1': round(float(history[-1].get('val_sample_l1',
                                                                    float('nan'))), 5),
                 'dataset_episodes': int(checkpoint['dataset']['episodes']),
                 'phrasing_languages': str(config['languages'])},
    }


def _trained_steps(checkpoint: dict[str, Any]) -> int:
    """Optimiser steps behind a checkpoint, counting the runs it continued (its history goes
    on from theirs), not only its own run's `steps`."""
    history = checkpoint.get('history') or []
    return int(history[-1]['step']) if history else int(checkpoint['flow_config']['steps'])


# How far (a fraction of a std) a member's action normalisation may be from the first member's
# for the two to share one denoising loop. Members trained on other splits of one dataset differ
# by well under 1 % (0.55 % seen).
ACTION_UNITS_TOLERANCE = 0.05


def load_flow_members(paths: Sequence[str | Path]):
    """(policy, first checkpoint, checkpoints): one checkpoint's FlowMatchingPolicy, or for
    several a FlowEnsemble of them, after checking they were trained alike (ConfigError naming
    the checkpoint and what differs)."""
    loaded = [load_flow_checkpoint(path) for path in paths]
    if not loaded:
        raise ConfigError('no flow checkpoint given')
    first = loaded[0][1]
    for path, (_model, checkpoint) in zip(paths[1:], loaded[1:]):
        ratio = np.asarray(first['action_std']) / np.asarray(checkpoint['action_std'])
        offset = ((np.asarray(first['action_mean']) - np.asarray(checkpoint['action_mean']))
                  / np.asarray(checkpoint['action_std']))
        same = {
            'tokenizer': checkpoint['tokenizer_json'] == first['tokenizer_json'],
            # Converted inside the graph (FlowEnsemble), but each member starts from noise
            # drawn in the first member's units: far from its own, it would denoise noise it
            # was never trained on.
            f'action units (beyond {ACTION_UNITS_TOLERANCE:.0%} of a std)':
            bool(np.all(np.abs(ratio - 1.0) <= ACTION_UNITS_TOLERANCE)
                 and np.all(np.abs(offset) <= ACTION_UNITS_TOLERANCE)),
            'image and state inputs': checkpoint['trunk_contract']['inputs']
            == first['trunk_contract']['inputs'],
            'chunk': checkpoint['trunk_contract']['outputs'][0]['chunk_length']
            == first['trunk_contract']['outputs'][0]['chunk_length'],
            'prior_head / flow_steps / max_tokens': all(
                checkpoint['flow_config'][key] == first['flow_config'][key]
                for key in ('prior_head', 'flow_steps', 'max_tokens'))}
        differ = [what for what, ok in same.items() if not ok]
        if differ:
            raise ConfigError(f'{path}: cannot join {paths[0]} in one ensemble: its {differ} '
                              'differ')
    if len(loaded) == 1:
        return loaded[0][0], first, [first]
    FlowEnsemble = _torch_modules()[3]
    ensemble = FlowEnsemble([model for model, _ in loaded],
                            [(c['action_mean'], c['action_std']) for _, c in loaded])
    ensemble.eval()
    return ensemble, first, [checkpoint for _, checkpoint in loaded]


def export_flow(checkpoint_path: str | Path | Sequence[str | Path], output_dir: str | Path,
                log=print) -> Path:
    """Write encoder.onnx, denoiser.onnx, tokenizer.json and policy.contract.yaml into
    `output_dir`; check ORT against torch per graph and load the result in the runtime.
    Several checkpoints are exported as one ensemble (load_flow_members). Returns the contract
    path (what a cell's `model_path` names)."""
    import warnings

    import onnxruntime as ort
    import torch
    import yaml
    from tokenizers import Tokenizer

    from noetra_ros.core.policy.pipeline import stage_noise
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.learning.export import OPSET

    paths = ([checkpoint_path] if isinstance(checkpoint_path, (str, Path))
             else list(checkpoint_path))
    model, checkpoint, members = load_flow_members(paths)
    _, EncoderGraph, DenoiserGraph, _ = _torch_modules()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_str(checkpoint['tokenizer_json'])
    tokenizer.save(str(out / TOKENIZER_FILE))
    contract = flow_contract_dict(checkpoint, tokenizer.get_vocab_size(with_added_tokens=True))
    if len(members) > 1:
        info = contract['info']
        info['architecture'] = (f'ensemble of {len(members)} members (each step: the mean of '
                                f'their outputs); each: {info["architecture"]}')
        info['members'] = len(members)
        info['parameters'] = sum(int(c.get('parameters', 0)) for c in members)
        for key, value in (('train_steps', _trained_steps),
                           ('train_seed', lambda c: int(c['flow_config']['seed'])),
                           ('init_checkpoint',
                            lambda c: Path(str(c['flow_config']['init_checkpoint'])).name)):
            info[key] = ', '.join(str(value(c)) for c in members)
    image_inputs = [spec for spec in contract['inputs'] if spec['kind'] == 'image']
    state_width = len(contract['inputs'][len(image_inputs)]['mean'])
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((1, 3, s['height'], s['width'])).astype(np.float32)
              for s in image_inputs]
    state = rng.standard_normal((1, state_width)).astype(np.float32)
    ids = np.zeros((1, int(checkpoint['flow_config']['max_tokens'])), dtype=np.int64)
    ids[0, :5] = tokenizer.encode('pick the red cube').ids[:5]
    encoder_names = [s['name'] for s in image_inputs] + ['state', 'input_ids']
    with torch.no_grad():
        condition = model.condition(*[torch.from_numpy(x) for x in images + [state, ids]])
    chunk, width = contract['pipeline'][1]['noise_shape'][1:]
    x_t = rng.standard_normal((1, chunk, width)).astype(np.float32)
    t = np.array([0.7], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(EncoderGraph(model), tuple(torch.from_numpy(x) for x in
                                                     images + [state, ids]),
                          str(out / 'encoder.onnx'), input_names=encoder_names,
                          output_names=['condition'], opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
        torch.onnx.export(DenoiserGraph(model), (torch.from_numpy(x_t), torch.from_numpy(t),
                                                 condition),
                          str(out / 'denoiser.onnx'), input_names=['x_t', 't', 'condition'],
                          output_names=[contract['pipeline'][1]['step_output']],
                          opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    # Graph-level parity: the same inputs through torch and onnxruntime.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    encoder = ort.InferenceSession(str(out / 'encoder.onnx'), options,
                                   providers=['CPUExecutionProvider'])
    denoiser = ort.InferenceSession(str(out / 'denoiser.onnx'), options,
                                    providers=['CPUExecutionProvider'])
    ort_condition = encoder.run(None, dict(zip(encoder_names, images + [state, ids])))[0]
    with torch.no_grad():
        torch_velocity = model.velocity(torch.from_numpy(x_t), torch.from_numpy(t),
                                        condition).numpy()
    ort_velocity = denoiser.run(None, {'x_t': x_t, 't': t, 'condition': ort_condition})[0]
    diffs = {'encoder': float(np.abs(ort_condition - condition.numpy()).max()),
             'denoiser': float(np.abs(ort_velocity - torch_velocity).max())}
    bad = {k: v for k, v in diffs.items() if not v < PARITY_TOLERANCE}
    if bad:
        raise ConfigError(f'export parity: onnxruntime and torch differ by {bad} '
                          f'(> {PARITY_TOLERANCE:.0e})')
    contract_path = out / CONTRACT_FILE
    contract_path.write_text(
        '# noetra policy contract (version 2): flow-matching policy, '
        'noetra_ros.learning.flow export\n'
        + yaml.safe_dump(contract, sort_keys=False, allow_unicode=True, width=99),
        encoding='utf-8')
    runtime = PolicyRuntime(contract_path, intra_op_threads=1)   # validates + warms up once
    try:
        # End to end: the runtime's loop (its noise rule, its update) against torch's sample()
        # from the same noise, so the contract's schedule and `predicts` match the training.
        stage = runtime.contract.pipeline[1]
        noise = stage_noise(stage, 3)
        chunk = runtime.infer(dict(zip(encoder_names, images + [state, ids])),
                              joint_positions=dict(zip(contract['robot_joints'],
                                                       [0.0] * len(contract['robot_joints']))),
                              gripper_position=0.0, noise_key=3)
        with torch.no_grad():
            expected = model.sample(condition, torch.from_numpy(noise), stage.steps).numpy()[0]
        diffs['loop'] = float(np.abs(chunk.raw - expected).max())
    finally:
        runtime.close()
    if not diffs['loop'] < 1e-3:
        raise ConfigError(f'export parity: the runtime\'s denoising loop and torch\'s sample() '
                          f'differ by {diffs["loop"]:.2e} from the same noise')
    log(f'exported {contract_path} (encoder {diffs["encoder"]:.1e}, denoiser '
        f'{diffs["denoiser"]:.1e}, whole loop {diffs["loop"]:.1e} max |ORT - torch|); loads '
        'in the runtime')
    return contract_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m noetra_ros.learning.flow',
                                     description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('train', help='train a flow policy on demonstrations')
    p.add_argument('--dataset', required=True, help="dataset folder(s), ','-joined")
    p.add_argument('--output', required=True, help='checkpoint file to write')
    p.add_argument('--init', required=True, help='train.py checkpoint whose trunk to start from')
    for f in fields(FlowConfig):
        if f.name == 'init_checkpoint':
            continue
        kind = type(f.default)
        p.add_argument('--' + f.name.replace('_', '-'), type=kind, default=f.default)
    p = sub.add_parser('export', help='export a flow checkpoint as a version 2 contract')
    p.add_argument('--checkpoint', required=True,
                   help="flow checkpoint, or several ','-joined: exported as one ensemble")
    p.add_argument('--output-dir', required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == 'train':
            values = {f.name: getattr(args, f.name) for f in fields(FlowConfig)
                      if f.name != 'init_checkpoint'}
            train_flow(args.dataset, args.output, FlowConfig(init_checkpoint=args.init,
                                                             **values))
        else:
            export_flow(args.checkpoint.split(','), args.output_dir)
    except ConfigError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
