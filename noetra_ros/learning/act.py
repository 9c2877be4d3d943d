"""An ACT-style transformer policy, trained here and exported as ONE ONNX graph (one pass).

ACT (Zhao et al. 2023, "Learning Fine-Grained Bimanual Manipulation with Low-Cost Hardware",
arXiv:2304.13705) reads the cameras through a CNN backbone whose feature maps become tokens with
2-D sinusoidal position embeddings, adds a proprioception token, runs a transformer encoder over
all tokens and a transformer decoder whose `chunk_length` learned queries cross-attend to the
encoder output and come out as the action chunk, all in one forward pass. Training minimises the
L1 distance between the predicted and the demonstrated chunk in normalised action units.

This module is that architecture at CPU size, for this repository's contract (the shipped
model's: two 128x96 cameras, 7-d state, word-token instruction [B, 16], actions [B, 10, 7]):

* per camera a small CNN (four stride-2 convs and one stride-1 conv, GroupNorm: stride 16 in
  total, a 6 x 8 grid of tokens for a 96 x 128 image; ACT's ResNet-18 has stride 32) and a 1x1
  projection to d_model; fixed 2-D sinusoidal position embedding plus a learned embedding per
  camera. Stride 8 (12 x 16 tokens per camera, 401 in all) trained ~3x slower per step on
  this CPU: at a budget of minutes, more steps were worth more than finer tokens;
* one state token (linear on the normalised state) and one token per instruction word (learned
  word + position embedding); pad words (id 0) are masked out of every attention;
* a pre-norm transformer encoder over [state, words, image tokens] and a pre-norm decoder with
  `chunk_length` learned queries (self-attention, cross-attention to the encoder output, MLP);
  a linear head to the action components.

Where this differs from the paper, and why:

* no CVAE. ACT trains a style latent z with a CVAE encoder and sets z = 0 at inference; it
  models several ways of doing the task, while the scripted expert is one way. At inference
  the exported graph would be the same either way (z = 0 is a constant token).
* pre-norm layers (the paper's DETR code defaults to post-norm): they train stably at a small
  batch and high learning rate without warm-up tuning, which a short CPU budget needs.
* like the shipped model (model.py), the arm joints are predicted relative to the measured
  joints and the measurement is added back inside the graph (`residual_joints`): the output
  stays the contract's absolute, normalised targets, the regression target is small.
* an optional training-only head (`target_weight` > 0) regresses the instructed object's
  position from the encoder output (an attention-pooled query); the recorded position is
  privileged sim state used only as a training target, the head is not in the exported graph.

Commands (torch==2.13.0 from requirements-learning.txt):

    python -m noetra_ros.learning.act train  --dataset D[,D2] --output act.pt --steps N
    python -m noetra_ros.learning.act export --checkpoint act.pt --output act.onnx [--dataset D]

Data loading, the contract and its pre-processing come from train.py (`load_datasets`,
`build_contract`, `TrainingSamples`): the ACT model reads exactly the tensors the runtime builds.
Export and the onnxruntime-vs-torch parity check come from export.py.
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
import torch
from torch import nn

from noetra_ros.core.errors import ConfigError

CHECKPOINT_FORMAT = 'noetra_ros.learning act checkpoint v1'
# Added to the attention score of a masked key (a pad word). Finite, so a row can never become
# all -inf (NaN after softmax) and the exported graph needs no special value.
MASKED_SCORE = -1e9


@dataclass(frozen=True)
class ActConfig:
    """Shapes and sizes of :class:`ActPolicy`."""

    cameras: tuple[str, ...]
    image_height: int
    image_width: int
    state_dim: int
    action_dim: int
    chunk_length: int
    vocab_size: int
    max_tokens: int
    d_model: int = 128
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 2
    feedforward: int = 512
    dropout: float = 0.0
    backbone_channels: tuple[int, ...] = (16, 32, 64, 128)  # one stride-2 conv per entry
    residual_joints: int = 0
    target_head: bool = False  # training-only target-position head

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError('cameras=(): at least one camera is required')
        for name in ('image_height', 'image_width', 'state_dim', 'action_dim', 'chunk_length',
                     'vocab_size', 'max_tokens', 'd_model', 'heads', 'encoder_layers',
                     'decoder_layers', 'feedforward'):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f'{name}={value!r}: must be a positive integer')
        if self.d_model % self.heads:
            raise ConfigError(f'd_model={self.d_model} must be a multiple of heads={self.heads}')
        if self.d_model % 4:
            raise ConfigError(f'd_model={self.d_model}: must be a multiple of 4 (the 2-D '
                              'sinusoidal embedding gives d_model / 4 frequencies per axis)')
        if not self.backbone_channels or any(
                not isinstance(c, int) or c <= 0 for c in self.backbone_channels):
            raise ConfigError(f'backbone_channels={self.backbone_channels!r}: one positive '
                              'integer per stride-2 conv layer, at least one')
        stride = 2 ** len(self.backbone_channels)
        if self.image_height < stride or self.image_width < stride:
            raise ConfigError(f'image {self.image_width}x{self.image_height}: smaller than the '
                              f'backbone stride {stride}')
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f'dropout={self.dropout!r}: must be in [0, 1)')
        limit = min(self.state_dim, self.action_dim)
        if not 0 <= self.residual_joints <= limit:
            raise ConfigError(f'residual_joints={self.residual_joints}: must be in [0, {limit}]')

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of one camera's token grid."""
        h, w = self.image_height, self.image_width
        for _ in self.backbone_channels:
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    @property
    def tokens(self) -> int:
        """Encoder sequence length: state + words + image tokens."""
        rows, cols = self.grid
        return 1 + self.max_tokens + len(self.cameras) * rows * cols

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, stored in checkpoints."""
        data = asdict(self)
        data['cameras'] = list(self.cameras)
        data['backbone_channels'] = list(self.backbone_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'ActConfig':
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data['cameras'] = tuple(data['cameras'])
        data['backbone_channels'] = tuple(data['backbone_channels'])
        return cls(**data)


def sinusoidal_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """[rows * cols, dim] fixed position embedding: the first half encodes the row, the second
    the column, each as sin / cos of geometrically spaced frequencies (the DETR / ACT form)."""
    quarter = dim // 4
    freq = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    y = torch.arange(rows, dtype=torch.float32)[:, None] * freq[None, :]
    x = torch.arange(cols, dtype=torch.float32)[:, None] * freq[None, :]
    y_emb = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(rows, cols, 2 * quarter)
    x_emb = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(rows, cols, 2 * quarter)
    return torch.cat([y_emb, x_emb], dim=2).reshape(rows * cols, 4 * quarter)


class Attention(nn.Module):
    """Multi-head attention from plain MatMul / Softmax (a small, predictable ONNX graph; no
    fused kernel whose export depends on the torch version)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, D] attends to context [B, M, D]; key_bias [B, 1, 1, M] is added to the
        scores (MASKED_SCORE for keys to ignore)."""
        b, n, d = x.shape
        m = context.shape[1]
        head_dim = d // self.heads
        q = self.query(x).reshape(b, n, self.heads, head_dim).transpose(1, 2)
        k, v = self.key_value(context).reshape(b, m, 2, self.heads, head_dim).permute(
            2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        if key_bias is not None:
            scores = scores + key_bias
        mixed = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(mixed.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.mlp = FeedForward(dim, hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        # DETR / ACT add the position embedding to queries and keys at every layer.
        x = x + self.drop(self.attention(h + pos, h + pos, key_bias))
        return x + self.drop(self.mlp(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-norm self-attention among the action queries, cross-attention to the encoder output,
    MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), \
            nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads)
        self.cross_attention = Attention(dim, heads)
        self.mlp = FeedForward(dim, hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.self_attention(h + query_pos, h + query_pos))
        h = self.norm2(x)
        x = x + self.drop(self.cross_attention(h + query_pos, memory + memory_pos, key_bias))
        return x + self.drop(self.mlp(self.norm3(x)))


def _backbone(channels: Sequence[int], dim: int) -> nn.Sequential:
    """Stride-2 conv per entry of `channels` (5x5 first, 3x3 after), one 3x3 stride-1 conv
    at the last width, a 1x1 projection to `dim`. GroupNorm, not BatchNorm: batch statistics
    would make a training batch of 32 and an inference batch of 1 see different features."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, c_out in enumerate(list(channels) + [channels[-1]]):
        kernel = 5 if i == 0 else 3
        stride = 2 if i < len(channels) else 1
        layers += [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
                   nn.GroupNorm(8 if c_out % 8 == 0 else 1, c_out), nn.ReLU(inplace=True)]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, dim, 1))
    return nn.Sequential(*layers)


class ActPolicy(nn.Module):
    """forward(*images, state, instruction) -> normalised actions [B, T, A] in one pass.

    Inputs as the runtime builds them from the contract: images float32 [B, 3, H, W] normalised,
    state float32 [B, D] normalised, instruction int64 [B, L] (0 = pad).
    """

    def __init__(self, config: ActConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        rows, cols = config.grid
        self.backbones = nn.ModuleList([_backbone(config.backbone_channels, d)
                                        for _ in config.cameras])
        self.register_buffer('image_pos', sinusoidal_2d(rows, cols, d), persistent=False)
        self.camera_embedding = nn.Parameter(torch.zeros(len(config.cameras), d))
        self.state_proj = nn.Linear(config.state_dim, d)
        self.word_embedding = nn.Embedding(config.vocab_size, d)
        # Learned positions of the state token and of each word slot.
        self.prefix_pos = nn.Parameter(torch.zeros(1 + config.max_tokens, d))
        self.encoder = nn.ModuleList([
            EncoderLayer(d, config.heads, config.feedforward, config.dropout)
            for _ in range(config.encoder_layers)])
        self.encoder_norm = nn.LayerNorm(d)
        self.action_queries = nn.Parameter(torch.zeros(config.chunk_length, d))
        self.decoder = nn.ModuleList([
            DecoderLayer(d, config.heads, config.feedforward, config.dropout)
            for _ in range(config.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, config.action_dim)
        if config.target_head:
            self.target_query = nn.Parameter(torch.zeros(1, 1, d))
            self.target_pool = Attention(d, config.heads)
            self.target_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 3))
        for p in (self.camera_embedding, self.prefix_pos, self.action_queries):
            nn.init.normal_(p, std=0.02)
        n = config.residual_joints
        # a_norm = s_norm * scale + shift maps a normalised joint state onto the normalised
        # action of the same joint (set from the contract before training).
        self.register_buffer('residual_scale', torch.ones(n))
        self.register_buffer('residual_shift', torch.zeros(n))

    def set_normalisation(self, state_mean: Sequence[float], state_std: Sequence[float],
                          action_mean: Sequence[float], action_std: Sequence[float]) -> None:
        """Fix the residual mapping from the contract's statistics."""
        n = self.config.residual_joints
        if n == 0:
            return
        s_mean, s_std, a_mean, a_std = (torch.tensor(v[:n], dtype=torch.float32)
                                        for v in (state_mean, state_std, action_mean,
                                                  action_std))
        self.residual_scale.copy_(s_std / a_std)
        self.residual_shift.copy_((s_mean - a_mean) / a_std)

    def encode(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(encoder output [B, N, D], its position embedding [1, N, D], key bias
        [B, 1, 1, N])."""
        cfg = self.config
        n_cam = len(cfg.cameras)
        if len(inputs) != n_cam + 2:
            raise ValueError(f'expected {n_cam} images + state + instruction, got {len(inputs)}')
        images, state, tokens = inputs[:n_cam], inputs[n_cam], inputs[n_cam + 1]
        b = state.shape[0]
        parts = [self.state_proj(state).unsqueeze(1), self.word_embedding(tokens)]
        positions = [self.prefix_pos]
        for index, (backbone, image) in enumerate(zip(self.backbones, images)):
            features = backbone(image)                      # [B, D, rows, cols]
            parts.append(features.flatten(2).transpose(1, 2))
            positions.append(self.image_pos + self.camera_embedding[index])
        x = torch.cat(parts, dim=1)
        pos = torch.cat(positions, dim=0).unsqueeze(0)
        pad = (tokens == 0).to(x.dtype)                      # [B, L]
        keep = torch.zeros(b, x.shape[1] - tokens.shape[1], dtype=x.dtype, device=x.device)
        key_mask = torch.cat([keep[:, :1], pad, keep[:, 1:]], dim=1)
        key_bias = (key_mask * MASKED_SCORE).reshape(b, 1, 1, -1)
        for layer in self.encoder:
            x = layer(x, pos, key_bias)
        return self.encoder_norm(x), pos, key_bias

    def decode(self, memory: torch.Tensor, pos: torch.Tensor, key_bias: torch.Tensor,
               state: torch.Tensor) -> torch.Tensor:
        """The action chunk [B, T, A] (normalised, absolute) from the encoder output."""
        cfg = self.config
        b = memory.shape[0]
        query_pos = self.action_queries.unsqueeze(0)
        # DETR / ACT: the decoder starts from zeros; the learned queries enter as positions.
        x = torch.zeros_like(query_pos).expand(b, -1, -1)
        for layer in self.decoder:
            x = layer(x, query_pos, memory, pos, key_bias)
        out = self.action_head(self.decoder_norm(x))
        n = cfg.residual_joints
        if n:
            base = state[:, :n] * self.residual_scale + self.residual_shift
            out = torch.cat([out[:, :, :n] + base.unsqueeze(1), out[:, :, n:]], dim=2)
        return out

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        memory, pos, key_bias = self.encode(*inputs)
        return self.decode(memory, pos, key_bias, inputs[len(self.config.cameras)])

    def forward_train(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(actions, target position [B, 3] or None): the training entry point."""
        memory, pos, key_bias = self.encode(*inputs)
        actions = self.decode(memory, pos, key_bias, inputs[len(self.config.cameras)])
        if not self.config.target_head:
            return actions, None
        query = self.target_query.expand(memory.shape[0], -1, -1)
        pooled = self.target_pool(query, memory + pos, key_bias)[:, 0]
        return actions, self.target_mlp(pooled)


def count_parameters(model: nn.Module, exported_only: bool = False) -> int:
    """Trainable parameters; with `exported_only`, without the training-only head."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not (exported_only and name.startswith('target_')))


# ----------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class ActTrainConfig:
    """Hyper-parameters of one ACT training run (all stored in the checkpoint)."""

    steps: int = 2400
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    shift_pixels: int = 4
    val_fraction: float = 0.05
    val_every: int = 250
    seed: int = 0
    # One torch thread: on two cores shared with other jobs, two threads took 7 s per step of
    # batch 32, one thread 0.7 s (an intra-op thread waiting for a busy core stalls each op).
    threads: int = 1
    d_model: int = 128
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 2
    feedforward: int = 512
    dropout: float = 0.0
    backbone_channels: str = '16,32,64,128'
    residual: bool = True
    target_weight: float = 1.0
    # Contract (train.build_contract): the shipped model's interface by default.
    chunk_length: int = 10
    max_tokens: int = 16
    image_width: int = 128
    image_height: int = 96
    contract_name: str = 'pick_place_lrmate_act'
    # Stop training (and save) after this many seconds of training, 0 = no limit: a CPU time box.
    max_train_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ('steps', 'batch_size', 'val_every', 'threads', 'chunk_length',
                     'max_tokens', 'image_width', 'image_height'):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f'{name}={value!r}: must be a positive integer')
        for name in ('learning_rate', 'grad_clip'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name}={value!r}: must be > 0')
        for name in ('target_weight', 'weight_decay', 'max_train_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f'{name}={value!r}: must be >= 0')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f'ema_decay={self.ema_decay!r}: must be in [0, 1)')
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f'val_fraction={self.val_fraction!r}: must be in [0, 0.5)')
        if self.shift_pixels < 0 or self.warmup_steps < 0 or self.seed < 0:
            raise ConfigError('shift_pixels, warmup_steps and seed must be >= 0')
        self.channels()

    def channels(self) -> tuple[int, ...]:
        """backbone_channels as integers (ConfigError naming the field when malformed)."""
        try:
            values = tuple(int(c) for c in self.backbone_channels.split(',') if c.strip())
        except ValueError:
            values = ()
        if not values or min(values) <= 0:
            raise ConfigError(f'backbone_channels={self.backbone_channels!r}: comma-separated '
                              'positive integers, one per stride-2 conv layer, e.g. 32,64,128')
        return values

    def contract_config(self) -> Any:
        """The train.TrainConfig whose fields build_contract reads (the contract's shape)."""
        from noetra_ros.learning.train import TrainConfig

        return TrainConfig(chunk_length=self.chunk_length, max_tokens=self.max_tokens,
                           image_width=self.image_width, image_height=self.image_height,
                           contract_name=self.contract_name, action_scale='absolute')


def make_act_policy(contract: Any, config: ActTrainConfig) -> ActPolicy:
    """A freshly initialised ActPolicy shaped for `contract`, residual mapping set."""
    images = contract.image_inputs
    if len({(s.height, s.width) for s in images}) != 1:
        raise ConfigError('ACT policy: every camera input must have the same height / width '
                          f'(got {[(s.camera, s.height, s.width) for s in images]})')
    joints = contract.action.component('joint_positions')
    act_config = ActConfig(
        cameras=tuple(s.camera for s in images), image_height=images[0].height,
        image_width=images[0].width, state_dim=contract.state_input.size,
        action_dim=contract.action.size, chunk_length=contract.action.chunk_length,
        vocab_size=len(contract.instruction_input.vocabulary),
        max_tokens=contract.instruction_input.max_length, d_model=config.d_model,
        heads=config.heads, encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers, feedforward=config.feedforward,
        dropout=config.dropout, backbone_channels=config.channels(),
        residual_joints=joints.size if (joints is not None and config.residual) else 0,
        target_head=config.target_weight > 0)
    model = ActPolicy(act_config)
    state, action = contract.state_input, contract.action
    model.set_normalisation(state.mean, state.std, action.mean, action.std)
    return model


def _act_description() -> str:
    return ('Pick the named object and place it in the named bin; ACT-style transformer '
            '(CNN tokens + state + words -> encoder -> decoder with action queries, one pass), '
            'behaviour-cloned from the scripted expert in the PyBullet cell '
            '(noetra_ros.learning.act).')


def train_act(dataset: str | Path | Sequence[str | Path], output: str | Path,
              config: ActTrainConfig | None = None, log=print) -> dict[str, Any]:
    """Train an ActPolicy on `dataset` (one folder, or several joined with ',') and write a
    checkpoint to `output`; returns the checkpoint dict."""
    from noetra_ros.learning.dataset import progress
    from noetra_ros.learning.train import (
        build_contract, evaluate_loss, load_datasets, seed_everything, split_episodes,
        TrainingSamples)

    config = config or ActTrainConfig()
    seed_everything(config.seed, config.threads)
    t0 = time.monotonic()
    data = load_datasets(dataset)
    log(f'loaded {len(data.episodes)} episodes, {len(data)} frames in '
        f'{time.monotonic() - t0:.0f} s')
    contract = replace(build_contract(data, config.contract_config()),
                       description=_act_description())
    samples = TrainingSamples(data, contract, config.chunk_length)
    train_eps, val_eps = split_episodes(len(data.episodes), config.val_fraction, config.seed)
    train_rows = _rows_of(samples.bounds, train_eps)
    val_rows = _rows_of(samples.bounds, val_eps)
    rng = np.random.default_rng(config.seed)
    val_probe = np.sort(rng.choice(val_rows, size=min(1024, len(val_rows)), replace=False)) \
        if len(val_rows) else val_rows

    model = make_act_policy(contract, config)
    model.train()
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = count_parameters(model, exported_only=True)
    log(f'ACT policy: {n_params} parameters in the exported graph '
        f'({count_parameters(model)} with the training-only head), {model.config.tokens} '
        f'encoder tokens; {len(train_eps)} train / {len(val_eps)} val episodes')
    use_target = model.config.target_head and samples.target_position is not None
    if model.config.target_head and not use_target:
        log('target head untrained: the dataset has no target_x/y/z columns in '
            'observation.environment_state')
    # AdamW; no weight decay on norms, biases and embeddings (the usual transformer recipe).
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or 'embedding' in name or name.endswith('_pos')
         or name in ('action_queries', 'target_query') else decay).append(p)
    optimiser = torch.optim.AdamW([{'params': decay, 'weight_decay': config.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}],
                                  lr=config.learning_rate)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    history: list[dict[str, float]] = []
    running = float('nan')
    start = time.monotonic()
    order = rng.permutation(train_rows)
    cursor = 0
    steps_done = 0
    for step in progress(range(config.steps), total=config.steps, desc='training ACT'):
        if cursor + config.batch_size > len(order):
            order = rng.permutation(train_rows)
            cursor = 0
        rows = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        inputs, target = samples.batch(rows, rng, config.shift_pixels)
        model.train()
        for group in optimiser.param_groups:
            group['lr'] = lr_at(step)
        pred, target_position = model.forward_train(*[torch.from_numpy(x) for x in inputs])
        action_l1 = torch.abs(pred - torch.from_numpy(target)).mean()
        loss = action_l1
        if use_target and target_position is not None:
            truth = torch.from_numpy(samples.target_position[rows])
            loss = loss + config.target_weight * torch.abs(target_position - truth).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        with torch.no_grad():
            decay_now = min(config.ema_decay, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.mul_(decay_now).add_(p.detach(), alpha=1 - decay_now)
        value = float(action_l1.detach())
        running = value if step == 0 else 0.98 * running + 0.02 * value
        steps_done = step + 1
        out_of_time = config.max_train_s > 0 and time.monotonic() - start > config.max_train_s
        if steps_done % config.val_every == 0 or steps_done == config.steps or out_of_time:
            val = evaluate_loss(ema, samples, val_probe)
            entry = {'step': steps_done, 'train_l1': running, 'val_l1': val,
                     'lr': lr_at(step), 'elapsed_s': time.monotonic() - start}
            history.append(entry)
            log(f'\nstep {steps_done}: train L1 {running:.4f}  val L1 (EMA) {val:.4f}  '
                f'lr {entry["lr"]:.2e}  {entry["elapsed_s"]:.0f} s')
        if out_of_time:
            log(f'stopping at step {steps_done}: max_train_s={config.max_train_s:.0f} reached')
            break
    train_time = time.monotonic() - start
    checkpoint = {
        'format': CHECKPOINT_FORMAT,
        'act_config': ema.config.to_dict(),
        'state_dict': ema.state_dict(),
        'contract': contract.to_dict(),
        'train_config': asdict(config),
        'steps_done': steps_done,
        'history': history,
        'dataset': {'path': [str(p) for p in data.info.get('sources', [data.root])],
                    'episodes': len(data.episodes), 'frames': len(data), 'fps': data.fps,
                    'train_episodes': train_eps, 'val_episodes': val_eps},
        'parameters': n_params,
        'train_time_s': train_time,
        'torch_version': str(torch.__version__),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, output)
    log(f'saved {output} after {steps_done} steps, {train_time:.0f} s of training')
    return checkpoint


def _rows_of(bounds: np.ndarray, episodes: list[int]) -> np.ndarray:
    # The same as train._rows_of (private there; copied rather than imported across modules).
    if not episodes:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(bounds[e, 0], bounds[e, 1]) for e in episodes])


def load_act_checkpoint(path: str | Path) -> tuple[ActPolicy, Any, dict[str, Any]]:
    """(model in eval mode, contract, checkpoint dict) of an ACT checkpoint."""
    from noetra_ros.core.policy.contract import contract_from_dict

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'checkpoint {str(path)!r}: no such file')
    # weights_only: a checkpoint is plain data + tensors, so loading it cannot run code.
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    if checkpoint.get('format') != CHECKPOINT_FORMAT:
        raise ConfigError(f'checkpoint {str(path)!r}: format {checkpoint.get("format")!r} is '
                          f'not {CHECKPOINT_FORMAT!r} (a VisuomotorPolicy checkpoint exports '
                          'with `python -m noetra_ros.learning export`)')
    model = ActPolicy(ActConfig.from_dict(checkpoint['act_config']))
    model.load_state_dict(checkpoint['state_dict'])
    model.eval()
    return model, contract_from_dict(checkpoint['contract']), checkpoint


def export_act(checkpoint: str | Path, output: str | Path, dataset: str | Path | None = None,
               parity_samples: int = 32, seed: int = 0) -> Any:
    """ACT checkpoint -> one ONNX graph with its contract embedded (no training-only head),
    reloaded and validated, onnxruntime vs torch parity checked; returns export.ExportReport."""
    from noetra_ros.learning.export import (
        contract_with_info, OPSET, trained_embodiment, write_checked_export)

    model, contract, ckpt = load_act_checkpoint(checkpoint)
    cfg = model.config
    history = ckpt.get('history') or [{}]
    val_l1 = float(history[-1].get('val_l1', float('nan')))
    contract = contract_with_info(contract, {
        'producer': 'noetra_ros.learning.act',
        'architecture': (f'ACT-style transformer: per-camera CNN (stride '
                         f'{2 ** len(cfg.backbone_channels)}) tokens + state token + word '
                         f'tokens, {cfg.encoder_layers} encoder / {cfg.decoder_layers} decoder '
                         f'layers, d_model {cfg.d_model}, {cfg.chunk_length} action queries, '
                         'one pass, no CVAE'),
        'parameters': count_parameters(model, exported_only=True),
        'train_steps': int(ckpt.get('steps_done', ckpt['train_config']['steps'])),
        'train_seed': int(ckpt['train_config']['seed']),
        'train_time_s': round(float(ckpt.get('train_time_s', 0.0)), 1),
        'final_val_l1': round(val_l1, 5) if np.isfinite(val_l1) else None,
        'dataset_episodes': int(ckpt['dataset']['episodes']),
        'dataset_frames': int(ckpt['dataset']['frames']),
        'dataset_format': 'LeRobotDataset v3.0',
        'torch_version': str(ckpt.get('torch_version', torch.__version__)),
        'opset': OPSET,
    })
    if contract.embodiment is None:
        contract = replace(contract, embodiment=trained_embodiment(ckpt, dataset))
    return write_checked_export(model, contract, output, dataset, parity_samples, seed)


# ---------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    """argparse parser of `python -m noetra_ros.learning.act`."""
    from noetra_ros.learning.__main__ import parse_boolean

    parser = argparse.ArgumentParser(prog='python -m noetra_ros.learning.act',
                                     description='Train / export the ACT-style policy.')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('train', help='train an ACT-style policy on a dataset')
    p.add_argument('--dataset', required=True, help="dataset folder(s), joined with ','")
    p.add_argument('--output', required=True, help='checkpoint file to write')
    for f in fields(ActTrainConfig):
        kind: Any = type(f.default)
        if kind is bool:
            kind = parse_boolean
        p.add_argument('--' + f.name.replace('_', '-'), dest=f.name, type=kind, default=None,
                       help=f'(default {f.default})')
    p = sub.add_parser('export', help='export an ACT checkpoint to ONNX with its contract')
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--output', required=True)
    p.add_argument('--dataset', default=None, help='real samples for the parity check')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m noetra_ros.learning.act`."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'train':
            overrides = {f.name: getattr(args, f.name) for f in fields(ActTrainConfig)
                         if getattr(args, f.name, None) is not None}
            train_act(args.dataset, args.output, ActTrainConfig(**overrides))
        else:
            print(export_act(args.checkpoint, args.output, dataset=args.dataset).describe())
    except ConfigError as error:   # a setting the user can fix: the message, not a traceback
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
