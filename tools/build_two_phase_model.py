#!/usr/bin/env python3
"""Build a RANDOM-WEIGHT two-phase policy at realistic size, for cost measurement only.

    python tools/build_two_phase_model.py [--out /tmp/two_phase] [--vocab 16384]

Writes to --out (outside the repository: weights are never committed):
  vlm_encoder.onnx      vision-language encoder (>= 100 M parameters): two 224x224 uint8 cameras
                        (normalised inside the graph), ViT-style 16x16 patches, instruction
                        tokens, one state token, 12 pre-LN transformer layers of width 768; it
                        outputs the action expert's KV cache (per expert layer, keys and values
                        of every prefix token) and the prefix's attention bias (pad tokens off)
  action_expert.onnx    the action expert (~20 M): 6 layers of width 512 over the 50 action
                        tokens, self-attention, cross-attention into the KV cache, the flow time
                        added as a sinusoidal embedding; returns the velocity [1, 50, 32]
  tokenizer.json        a byte-level BPE built here with the `tokenizers` library (trained on the
                        Python standard library's sources: a real, reproducible corpus)
  policy.contract.yaml  contract version 2: letterboxed uint8 cameras, state and action padded
                        to width 32 with the real components named, the instruction with its
                        attention mask, graphs + pipeline (encode, then 10 linear flow-matching
                        Euler steps); `info.weights` says the weights are random

The layout is the one pi0 / SmolVLA use (a vision-language prefix computed once, an action
expert run for ~10 flow-matching steps against its cache); the sizes are at the floor of what
such models have (SmolVLA ~450 M, pi0 ~3.3 B). Load it with PolicyRuntime or policy_node
(model_path:=<out>/policy.contract.yaml); tools/bench_two_phase.py measures it. It is NOT a
policy: its actions are noise-shaped numbers.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
import sys
import sysconfig
import time
import warnings

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Sizes: the encoder ViT-B-like, the expert a quarter of pi0's Gemma-300M expert's width x depth.
IMAGE, PATCH, CAMERAS = 224, 16, ('workspace_camera', 'wrist_camera')
HIDDEN, LAYERS, HEADS, MLP = 768, 12, 12, 3072
TEXT_TOKENS = 48
EXPERT_HIDDEN, EXPERT_LAYERS, EXPERT_HEADS, EXPERT_MLP = 512, 6, 8, 2048
CHUNK, WIDTH, STEPS, STEP_PERIOD_S = 50, 32, 10, 0.05
ROBOT = 'fanuc_lrmate200id'
JOINTS = [f'joint_{i}' for i in range(1, 7)]
# SigLIP's normalisation (pixels to [-1, 1]), as SmolVLA and pi0 feed their vision towers.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.5
# Finite "minus infinity" for masked attention logits: a row of pads never turns into NaN.
MASKED = -1e9
OPSET = 17
PAD, UNK = '<pad>', '<unk>'
CORPUS_BYTES = 12_000_000


def build_tokenizer(path: Path, vocab_size: int) -> int:
    """A byte-level BPE trained on the Python standard library's .py files (sorted, first
    CORPUS_BYTES); `<pad>` is id 0. Returns the vocabulary size (added tokens included)."""
    import tokenizers as hf

    stdlib = Path(sysconfig.get_paths()['stdlib'])
    texts, size = [], 0
    for file in sorted(stdlib.rglob('*.py')):
        if 'site-packages' in file.parts or size >= CORPUS_BYTES:
            continue
        text = file.read_text(encoding='utf-8', errors='ignore')
        texts.append(text)
        size += len(text)
    tokenizer = hf.Tokenizer(hf.models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK],
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.save(str(path))
    return tokenizer.get_vocab_size(with_added_tokens=True)


def make_modules(vocab: int):
    """(encoder, expert) torch modules with random N(0, 0.02) weights (ViT's initialisation)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        """Multi-head attention written out (exports to plain MatMul / Softmax)."""

        def __init__(self, width: int, heads: int, cross: bool = False) -> None:
            super().__init__()
            self.heads, self.head_dim = heads, width // heads
            self.q = nn.Linear(width, width)
            self.kv = None if cross else nn.Linear(width, 2 * width)
            self.out = nn.Linear(width, width)

        def split(self, x):
            b, n, _ = x.shape
            return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x, bias, k=None, v=None):
            q = self.split(self.q(x))
            if self.kv is not None:
                k, v = (self.split(part) for part in self.kv(x).chunk(2, dim=-1))
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + bias
            mixed = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
            return self.out(mixed)

    class Block(nn.Module):
        def __init__(self, width: int, heads: int, mlp: int, cross: bool = False) -> None:
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads)
            self.cross = Attention(width, heads, cross=True) if cross else None
            self.norm_cross = nn.LayerNorm(width) if cross else None
            self.norm2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(approximate='tanh'),
                                     nn.Linear(mlp, width))

        def forward(self, x, bias, k=None, v=None, cross_bias=None):
            x = x + self.attn(self.norm1(x), bias)
            if self.cross is not None:
                x = x + self.cross(self.norm_cross(x), cross_bias, k, v)
            return x + self.mlp(self.norm2(x))

    class Encoder(nn.Module):
        """Cameras + instruction + state -> the expert's KV cache and the prefix's bias."""

        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, HIDDEN, PATCH, PATCH)
            patches = (IMAGE // PATCH) ** 2
            self.image_position = nn.Parameter(torch.zeros(1, patches, HIDDEN))
            self.camera_embedding = nn.Parameter(torch.zeros(len(CAMERAS), 1, HIDDEN))
            self.tokens = nn.Embedding(vocab, HIDDEN)
            self.text_position = nn.Parameter(torch.zeros(1, TEXT_TOKENS, HIDDEN))
            self.state = nn.Linear(WIDTH, HIDDEN)
            self.blocks = nn.ModuleList(Block(HIDDEN, HEADS, MLP) for _ in range(LAYERS))
            self.norm = nn.LayerNorm(HIDDEN)
            # Keys and values for every expert layer: pi0's expert attends to the VLM's cache.
            self.cache = nn.Linear(HIDDEN, 2 * EXPERT_LAYERS * EXPERT_HIDDEN)

        def embed_camera(self, pixels, index: int):
            x = (pixels.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD   # uint8 NHWC in the graph
            x = self.patch(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
            return x + self.image_position + self.camera_embedding[index]

        def forward(self, camera_a, camera_b, input_ids, attention_mask, state):
            text = self.tokens(input_ids) + self.text_position
            x = torch.cat([self.embed_camera(camera_a, 0), self.embed_camera(camera_b, 1), text,
                           self.state(state)[:, None]], dim=1)
            images = 2 * (IMAGE // PATCH) ** 2
            valid = torch.cat([torch.ones(1, images), attention_mask.float(),
                               torch.ones(1, 1)], dim=1)
            bias = ((1.0 - valid) * MASKED)[:, None, None, :]       # [1, 1, 1, L]
            for block in self.blocks:
                x = block(x, bias)
            cache = self.cache(self.norm(x))                          # [1, L, 2 E H]
            length = cache.shape[1]
            cache = cache.view(1, length, 2 * EXPERT_LAYERS, EXPERT_HEADS,
                               EXPERT_HIDDEN // EXPERT_HEADS)
            return cache.permute(2, 0, 3, 1, 4).contiguous(), bias   # [2E, 1, heads, L, d]

    class Expert(nn.Module):
        """x_t, t, the cache -> the flow-matching velocity of the action chunk."""

        def __init__(self) -> None:
            super().__init__()
            self.action_in = nn.Linear(WIDTH, EXPERT_HIDDEN)
            self.position = nn.Parameter(torch.zeros(1, CHUNK, EXPERT_HIDDEN))
            self.time_mlp = nn.Sequential(nn.Linear(EXPERT_HIDDEN, EXPERT_HIDDEN), nn.SiLU(),
                                          nn.Linear(EXPERT_HIDDEN, EXPERT_HIDDEN))
            half = EXPERT_HIDDEN // 2
            self.register_buffer('frequencies', torch.exp(
                -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half))
            self.blocks = nn.ModuleList(Block(EXPERT_HIDDEN, EXPERT_HEADS, EXPERT_MLP,
                                              cross=True) for _ in range(EXPERT_LAYERS))
            self.norm = nn.LayerNorm(EXPERT_HIDDEN)
            self.action_out = nn.Linear(EXPERT_HIDDEN, WIDTH)

        def forward(self, x_t, t, prefix_kv, prefix_bias):
            angles = t[:, None] * 1000.0 * self.frequencies[None]
            time = self.time_mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))
            x = self.action_in(x_t) + self.position + time[:, None]
            no_mask = torch.zeros(1, 1, 1, CHUNK)
            for i, block in enumerate(self.blocks):
                x = block(x, no_mask, prefix_kv[2 * i], prefix_kv[2 * i + 1], prefix_bias)
            return self.action_out(self.norm(x))

    torch.manual_seed(0)
    encoder, expert = Encoder().eval(), Expert().eval()
    for module in (encoder, expert):
        for name, parameter in module.named_parameters():
            if parameter.dim() > 1 or 'position' in name or 'embedding' in name:
                nn.init.normal_(parameter, std=0.02)
    return encoder, expert


def parameter_report(encoder, expert) -> dict[str, int]:
    """Parameter counts by part (printed, and written to the contract's info)."""
    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())
    blocks = count(encoder.blocks)
    embeddings = count(encoder.tokens)
    encoder_total = count(encoder)
    return {'encoder_transformer_layers': blocks, 'encoder_token_embedding': embeddings,
            'encoder_patches_state_positions': encoder_total - blocks - embeddings
            - count(encoder.cache), 'encoder_kv_cache_projection': count(encoder.cache),
            'encoder_total': encoder_total, 'expert_total': count(expert),
            'total': encoder_total + count(expert)}


def export(module, example: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    import torch
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) needs no onnxscript and gives a plain opset-17
        # graph, as learning/export.py uses it.
        warnings.simplefilter('ignore')
        with torch.no_grad():
            torch.onnx.export(module, example, str(path), input_names=inputs,
                              output_names=outputs, opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)


def contract_dict(vocab: int, counts: dict[str, int]) -> dict:
    from noetra_ros.core.robot_model import kinematics_fingerprint

    cameras = [{'name': name, 'kind': 'image', 'camera': name, 'height': IMAGE, 'width': IMAGE,
                'resize': 'letterbox', 'pad_value': 0, 'color_order': 'rgb', 'layout': 'nhwc',
                'dtype': 'uint8'} for name in CAMERAS]
    joints = {'source': 'joint_positions', 'joints': JOINTS}
    return {
        'contract_version': 2,
        'name': 'two_phase_vla_random',
        'description': 'RANDOM WEIGHTS - cost measurement only, not a policy. Vision-language '
                       'encoder (2 cameras, instruction, state) -> KV cache -> action expert '
                       f'run for {STEPS} flow-matching steps (pi0 / SmolVLA layout).',
        'robot_joints': JOINTS,
        'embodiment': {'robot': ROBOT, 'kinematics': kinematics_fingerprint(ROBOT)},
        'inputs': cameras + [
            {'name': 'state', 'kind': 'state', 'components': [joints,
                                                              {'source': 'gripper_position'}],
             'mean': [0.0] * 6 + [0.02], 'std': [1.0] * 6 + [0.02], 'width': WIDTH},
            {'name': 'input_ids', 'kind': 'instruction', 'tokenizer': 'hf_tokenizers',
             'tokenizer_file': 'tokenizer.json', 'vocab_size': vocab,
             'max_length': TEXT_TOKENS, 'attention_mask': 'attention_mask'}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': CHUNK,
                     'step_period_s': STEP_PERIOD_S,
                     'components': [{'meaning': 'joint_positions', 'mode': 'delta',
                                     'joints': JOINTS},
                                    {'meaning': 'gripper_position', 'mode': 'absolute'}],
                     'mean': [0.0] * 6 + [0.02], 'std': [0.01] * 6 + [0.02],
                     'width': WIDTH}],
        'graphs': {'vlm_encoder': 'vlm_encoder.onnx', 'action_expert': 'action_expert.onnx'},
        'pipeline': [
            {'name': 'encode', 'kind': 'run', 'graph': 'vlm_encoder',
             'inputs': {'camera_a': CAMERAS[0], 'camera_b': CAMERAS[1],
                        'input_ids': 'input_ids', 'attention_mask': 'attention_mask',
                        'state': 'state'},
             'outputs': {'prefix_kv': 'prefix_kv', 'prefix_bias': 'prefix_bias'}},
            {'name': 'denoise', 'kind': 'denoise', 'graph': 'action_expert', 'steps': STEPS,
             'schedule': 'linear', 'predicts': 'velocity', 'x_input': 'x_t',
             'time_input': 't', 'step_output': 'velocity', 'noise_shape': [1, CHUNK, WIDTH],
             'inputs': {'prefix_kv': 'prefix_kv', 'prefix_bias': 'prefix_bias'},
             'result': 'actions', 'seed': 0, 'inpaint_prefix': True}],
        'info': {'weights': 'random (cost measurement only; not a policy)',
                 'builder': 'tools/build_two_phase_model.py',
                 **{f'parameters_{k}': v for k, v in counts.items()}},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=Path('/tmp/two_phase'))
    parser.add_argument('--vocab', type=int, default=16384, help='BPE vocabulary to train')
    args = parser.parse_args()
    import torch

    out = args.out.resolve()
    if out == ROOT or ROOT in out.parents:
        parser.error(f'--out {out} is inside the repository; weights are not committed')
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    vocab = build_tokenizer(out / 'tokenizer.json', args.vocab)
    print(f'tokenizer.json: byte-level BPE, {vocab} tokens ({time.perf_counter() - start:.1f} s)')

    encoder, expert = make_modules(vocab)
    counts = parameter_report(encoder, expert)
    for key, value in counts.items():
        print(f'  {key:34s} {value / 1e6:8.2f} M')
    if counts['encoder_total'] < 100_000_000:
        raise SystemExit('the encoder is below 100 M parameters: raise --vocab')

    pixels = torch.zeros(1, IMAGE, IMAGE, 3, dtype=torch.uint8)
    ids = torch.zeros(1, TEXT_TOKENS, dtype=torch.int64)
    mask = torch.ones(1, TEXT_TOKENS, dtype=torch.int64)
    state = torch.zeros(1, WIDTH)
    export(encoder, (pixels, pixels, ids, mask, state), out / 'vlm_encoder.onnx',
           ['camera_a', 'camera_b', 'input_ids', 'attention_mask', 'state'],
           ['prefix_kv', 'prefix_bias'])
    with torch.no_grad():
        prefix_kv, prefix_bias = encoder(pixels, pixels, ids, mask, state)
    export(expert, (torch.zeros(1, CHUNK, WIDTH), torch.ones(1), prefix_kv, prefix_bias),
           out / 'action_expert.onnx', ['x_t', 't', 'prefix_kv', 'prefix_bias'], ['velocity'])
    print(f'exported vlm_encoder.onnx ({(out / "vlm_encoder.onnx").stat().st_size / 1e6:.0f} MB)'
          f', action_expert.onnx ({(out / "action_expert.onnx").stat().st_size / 1e6:.0f} MB); '
          f'prefix_kv {list(prefix_kv.shape)}')

    contract_path = out / 'policy.contract.yaml'
    contract_path.write_text('# noetra policy contract: RANDOM WEIGHTS, for cost measurement '
                             'only (tools/build_two_phase_model.py)\n'
                             + yaml.safe_dump(contract_dict(vocab, counts), sort_keys=False,
                                              default_flow_style=None, width=99),
                             encoding='utf-8')
    from noetra_ros.core.policy.runtime import PolicyRuntime
    runtime = PolicyRuntime(contract_path, intra_op_threads=2)   # validates + warms up once
    print(runtime.describe())
    runtime.close()
    print(f'wrote {contract_path} in {time.perf_counter() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
