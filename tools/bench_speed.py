#!/usr/bin/env python3
"""Speed where it counts, in one run: every ratio the issue sets a goal for, side by side.

    nice -n 10 python tools/bench_speed.py [--repeats 300] [--threads 1]

Sections (p50 / p99 in ms or us, and the ratio each goal is about):
  1. PyTorch eager vs onnxruntime, same weights, batch 1: the shipped model (its member
     checkpoints' mean vs models/pick_place_lrmate.onnx) and, when /tmp/two_phase exists
     (tools/build_two_phase_model.py), its random-weight encoder and one action-expert step
     (the script's own torch modules, same seed); and the flow architecture of
     models/pick_place_lrmate_flow (encoder + 4 denoising steps of 3 members; see
     torch_vs_ort_flow) and the ACT-style transformer (torch_vs_ort_act). Goal: torch /
     onnxruntime >= 2.
  2. onnxruntime settings on the shipped model: graph optimisation off / basic / all, and
     IO binding (inputs bound per call, output into a pre-bound CPU buffer) vs session.run.
  3. dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic, weights int8) of
     the shipped model vs float32: all quantisable operators, and MatMul / Gemm only; and any
     static int8 models given with --static (tools/quantize_static.py).
  4. sensor_msgs/Image (640x480 rgb8) -> input tensor through policy_node's own path
     (`_frame` -> preprocess.frame_to_tensor) vs np.copyto of the same bytes: (a) the shipped
     float32 nchw input (resize + normalise), (b) a contract-v2 uint8 nhwc input at the
     message's size. Goal for (b): <= 1.5x.
  5. policy_node path vs bare inference: the last docs/results/bench_policy_node.txt
     (tools/bench_policy_node.py needs DDS and ~1 min; run it to refresh). Goal: <= 1.1x.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys
import tempfile
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

from noetra_ros.learning.export import random_inputs, time_calls  # noqa: E402

SHIPPED = REPO / 'models' / 'pick_place_lrmate.onnx'
MEMBERS = sorted((REPO / 'models').glob('pick_place_lrmate_member_*.pt'))
TWO_PHASE = Path('/tmp/two_phase')
NODE_RESULT = REPO / 'docs' / 'results' / 'bench_policy_node.txt'
FRAME_W, FRAME_H = 640, 480


def stats(times_ms: np.ndarray) -> tuple[float, float]:
    """(p50, p99) of a sample."""
    p50, p99 = np.percentile(times_ms, [50, 99])
    return float(p50), float(p99)


def row(label: str, times: np.ndarray, unit: str = 'ms') -> tuple[float, float]:
    """Print one timed case; returns its (p50, p99)."""
    p50, p99 = stats(times)
    print(f'  {label:52s} p50 {p50:9.3f} {unit}  p99 {p99:9.3f} {unit}')
    return p50, p99


def ratio(label: str, slow: tuple[float, float], fast: tuple[float, float],
          goal: str = '', met: bool | None = None) -> None:
    """Print slow / fast at p50 and p99, with the goal and whether p50 meets it."""
    verdict = '' if met is None else ('  [goal met]' if met else '  [goal NOT met]')
    goal_text = f'  (goal {goal})' if goal else ''
    print(f'  -> {label}: p50 x{slow[0] / fast[0]:.2f}, p99 x{slow[1] / fast[1]:.2f}'
          f'{goal_text}{verdict}')


def session(path: Path | str, threads: int, level: str = 'ORT_ENABLE_ALL'):
    """A CPU InferenceSession with the runtime's thread settings and optimisation `level`."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=['CPUExecutionProvider'])


def shipped_feed(contract) -> dict[str, np.ndarray]:
    """Seeded inputs of the shipped contract's shapes."""
    return dict(zip(contract.input_names, random_inputs(contract, batch=1, seed=0)))


# torch eager p50 (ms) of the shipped model from section 1, for section 3's scale line.
_torch_eager_p50: dict[str, float] = {}


def alternating(run_torch: Callable[[], object], run_ort: Callable[[], object],
                repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """(torch times, onnxruntime times) in ms, timed in four alternating blocks so that a
    change in machine load falls on both sides alike."""
    torch_times, ort_times = [], []
    for _ in range(4):
        torch_times.append(time_calls(run_torch, repeats // 4))
        ort_times.append(time_calls(run_ort, repeats // 4))
    return np.concatenate(torch_times), np.concatenate(ort_times)


# -- 1. torch eager vs onnxruntime ------------------------------------------------------------

def torch_vs_ort_shipped(contract, threads: int, repeats: int) -> None:
    """The member checkpoints' mean in torch vs the shipped ONNX file (which is that mean)."""
    import torch

    from noetra_ros.learning.train import load_checkpoint
    models = [load_checkpoint(path)[0] for path in MEMBERS]
    feed = shipped_feed(contract)
    tensors = [torch.from_numpy(feed[name]) for name in contract.input_names]
    ort_session = session(SHIPPED, threads)
    output = [contract.action.name]

    def run_torch():
        with torch.inference_mode():
            return torch.stack([m(*tensors) for m in models]).mean(dim=0)

    diff = float(np.abs(ort_session.run(output, feed)[0] - run_torch().numpy()).max())
    print(f'shipped model {SHIPPED.name}: {len(models)} members '
          f'({sum(p.numel() for m in models for p in m.parameters())} parameters); '
          f'max |torch - ort| = {diff:.1e}')
    torch_times, ort_times = alternating(run_torch, lambda: ort_session.run(output, feed),
                                         repeats)
    eager = row('torch eager', torch_times)
    fast = row('onnxruntime session.run', ort_times)
    _torch_eager_p50['shipped'] = eager[0]
    ratio('torch / onnxruntime', eager, fast, '>= 2x', eager[0] / fast[0] >= 2.0)


def torch_vs_ort_two_phase(threads: int, repeats: int) -> None:
    """The two-phase model's encoder and one expert step, torch (build_two_phase_model's
    modules, same seed, so the same weights) vs the ONNX graphs in TWO_PHASE."""
    import tokenizers
    import torch

    import build_two_phase_model as two_phase
    vocab = tokenizers.Tokenizer.from_file(str(TWO_PHASE / 'tokenizer.json')).get_vocab_size()
    encoder, expert = two_phase.make_modules(vocab)
    pixels = torch.zeros(1, two_phase.IMAGE, two_phase.IMAGE, 3, dtype=torch.uint8)
    encoder_args = (pixels, pixels, torch.ones(1, two_phase.TEXT_TOKENS, dtype=torch.int64),
                    torch.ones(1, two_phase.TEXT_TOKENS, dtype=torch.int64),
                    torch.zeros(1, two_phase.WIDTH))
    with torch.inference_mode():
        prefix_kv, prefix_bias = encoder(*encoder_args)
    expert_args = (torch.zeros(1, two_phase.CHUNK, two_phase.WIDTH), torch.ones(1),
                   prefix_kv, prefix_bias)
    print(f'two-phase model {TWO_PHASE} (random weights), {repeats} runs each')
    for label, module, args, file, names in (
            ('encoder', encoder, encoder_args, 'vlm_encoder.onnx',
             ['camera_a', 'camera_b', 'input_ids', 'attention_mask', 'state']),
            ('one action-expert step', expert, expert_args, 'action_expert.onnx',
             ['x_t', 't', 'prefix_kv', 'prefix_bias'])):
        ort_session = session(TWO_PHASE / file, threads)
        feed = {name: arg.numpy() for name, arg in zip(names, args)}

        def run_torch(module=module, args=args):
            with torch.inference_mode():
                return module(*args)
        first = run_torch()
        first = first[0] if isinstance(first, tuple) else first
        diff = float(np.abs(ort_session.run(None, feed)[0] - first.numpy()).max())
        print(f'  {label}: max |torch - ort| = {diff:.1e} (same weights)')
        eager = row(f'{label}: torch eager', time_calls(run_torch, repeats, warmup=2))
        fast = row(f'{label}: onnxruntime', time_calls(
            lambda s=ort_session, f=feed: s.run(None, f), repeats, warmup=2))
        ratio(f'{label} torch / onnxruntime', eager, fast, '>= 2x', eager[0] / fast[0] >= 2.0)


def torch_vs_ort_flow(threads: int, repeats: int, checkpoints: list[str],
                      steps: int = 4) -> None:
    """The flow architecture (issue 15 3a, models/pick_place_lrmate_flow): one chunk is the
    members' encoder, then `steps` denoising steps of all members (prior head: the sample
    update). Torch: FlowEnsemble.condition + .sample; onnxruntime: encoder.onnx + `steps` runs
    of denoiser.onnx with the same update in numpy (what the runtime's loop does), exported here
    from the same modules. With `checkpoints` (flow checkpoints, the shipped model's recipe) the
    trained members; without, three members of the shipped model's shape whose trunks are the
    shipped heading member's weights and whose flow heads are untrained (time does not depend
    on the values)."""
    import torch

    from noetra_ros.learning.flow import (
        _torch_modules, _trunk_from_checkpoint, build_instruction_tokenizer, FlowConfig,
        load_flow_members, training_corpus)
    from noetra_ros.learning.export import OPSET

    FlowMatchingPolicy, EncoderGraph, DenoiserGraph, FlowEnsemble = _torch_modules()
    if checkpoints:
        policy = load_flow_members(checkpoints)[0]
        label = f'{len(checkpoints)} trained members'
    else:
        config = FlowConfig()
        head = REPO / 'models' / 'pick_place_lrmate_member_heading.pt'
        vocab = build_instruction_tokenizer(training_corpus(), config.vocab_size) \
            .get_vocab_size(with_added_tokens=True)      # as the shipped flow model's
        trunk_config, trunk_contract, trunk_state = _trunk_from_checkpoint(
            str(head), config, vocab)
        members = []
        for seed in range(3):
            torch.manual_seed(seed)
            member = FlowMatchingPolicy(trunk_config, trunk_contract.action.chunk_length,
                                        trunk_contract.action.size, config.flow_hidden,
                                        config.time_dim, prior_head=True)
            own = member.trunk.state_dict()
            member.trunk.load_state_dict({k: v for k, v in trunk_state.items()
                                          if k in own and own[k].shape == v.shape}, strict=False)
            # Each member's own copy of the weights, as in the trained model: identical
            # tensors would be exported once and shared, and three members reading one set of
            # weights run twice as fast as three reading their own (caches), which would
            # flatter onnxruntime.
            with torch.no_grad():
                for weight in member.parameters():
                    weight.mul_(1.0 + 1e-3 * torch.randn_like(weight))
            members.append(member)
        width = trunk_contract.action.size
        policy = FlowEnsemble(members, [(np.zeros(width), np.ones(width))] * len(members))
        label = '3 members of the shipped shape, untrained flow heads'
    policy.eval()
    first = policy.members[0] if hasattr(policy, 'members') else policy
    cameras = first.config.cameras
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, first.config.image_height, first.config.image_width))
              .astype(np.float32) for _ in cameras]
    inputs.append(rng.standard_normal((1, first.config.state_dim)).astype(np.float32))
    ids = np.zeros((1, first.config.max_tokens), dtype=np.int64)
    ids[0, :8] = rng.integers(1, 400, 8)
    inputs.append(ids)
    noise = rng.standard_normal((1, first.chunk_length, first.action_dim)).astype(np.float32)
    tensors = [torch.from_numpy(x) for x in inputs]
    names = list(cameras) + ['state', 'input_ids']
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        condition = policy.condition(*tensors)
        torch.onnx.export(EncoderGraph(policy), tuple(tensors), f'{tmp}/encoder.onnx',
                          input_names=names, output_names=['condition'], opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
        torch.onnx.export(DenoiserGraph(policy), (torch.from_numpy(noise), torch.ones(1),
                                                  condition),
                          f'{tmp}/denoiser.onnx', input_names=['x_t', 't', 'condition'],
                          output_names=['sample'], opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
        encoder, denoiser = session(f'{tmp}/encoder.onnx', threads), \
            session(f'{tmp}/denoiser.onnx', threads)
    feed = dict(zip(names, inputs))
    times = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)

    def run_torch():
        with torch.inference_mode():
            return policy.sample(policy.condition(*tensors), torch.from_numpy(noise), steps)

    def run_ort():
        cond = encoder.run(None, feed)[0]
        x = noise
        for k in range(steps):
            out = denoiser.run(None, {'x_t': x, 't': times[k:k + 1], 'condition': cond})[0]
            x = out + (times[k + 1] / times[k]) * (x - out)
        return x

    diff = float(np.abs(run_ort() - run_torch().numpy()).max())
    print(f'flow policy ({label}; {sum(p.numel() for p in policy.parameters())} parameters), '
          f'one chunk = encoder + {steps} denoising steps; max |torch - ort| = {diff:.1e}')
    torch_times, ort_times = alternating(run_torch, run_ort, repeats)
    eager = row('flow chunk: torch eager', torch_times)
    fast = row('flow chunk: onnxruntime', ort_times)
    ratio('flow chunk torch / onnxruntime', eager, fast, '>= 2x', eager[0] / fast[0] >= 2.0)


def torch_vs_ort_act(contract, threads: int, repeats: int, checkpoint: str) -> None:
    """The ACT-style single-pass transformer (learning/act.py; FOUNDATION_MODELS.md): with
    `checkpoint` the trained one, else a fresh network of ActTrainConfig's default shape for the
    shipped contract's inputs (untrained: time does not depend on the values). Torch eager vs
    the same module exported here, batch 1."""
    import torch

    from noetra_ros.learning.act import (
        ActTrainConfig, count_parameters, load_act_checkpoint, make_act_policy)
    from noetra_ros.learning.export import OPSET

    if checkpoint:
        model, contract, _ = load_act_checkpoint(checkpoint)
        label = f'trained, {Path(checkpoint).name}'
    else:
        torch.manual_seed(0)
        model = make_act_policy(contract, ActTrainConfig()).eval()
        label = 'default shape, untrained'
    feed = shipped_feed(contract)
    tensors = tuple(torch.from_numpy(feed[name]) for name in contract.input_names)
    output = [contract.action.name]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        torch.onnx.export(model, tensors, f'{tmp}/act.onnx',
                          input_names=list(contract.input_names), output_names=output,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
        ort_session = session(f'{tmp}/act.onnx', threads)

    def run_torch():
        with torch.inference_mode():
            return model(*tensors)

    diff = float(np.abs(ort_session.run(output, feed)[0] - run_torch().numpy()).max())
    print(f'ACT-style transformer ({label}; {count_parameters(model, exported_only=True)} '
          f'parameters), one pass; max |torch - ort| = {diff:.1e}')
    torch_times, ort_times = alternating(run_torch, lambda: ort_session.run(output, feed),
                                         repeats)
    eager = row('ACT: torch eager', torch_times)
    fast = row('ACT: onnxruntime', ort_times)
    ratio('ACT torch / onnxruntime', eager, fast, '>= 2x', eager[0] / fast[0] >= 2.0)


# -- 2. onnxruntime settings ------------------------------------------------------------------

def bound_runner(ort_session, feed: dict[str, np.ndarray], output_name: str,
                 shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """A call running `ort_session` through IO binding: the inputs bound each call (a new
    observation each time, as in the node), the output written into one pre-bound buffer."""
    binding = ort_session.io_binding()
    out = np.empty(shape, np.float32)
    binding.bind_output(output_name, 'cpu', 0, np.float32, list(shape), out.ctypes.data)

    def run() -> np.ndarray:
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        ort_session.run_with_iobinding(binding)
        return out
    return run


def ort_settings(contract, threads: int, repeats: int) -> None:
    output = contract.action.name
    feed = shipped_feed(contract)
    print(f'shipped model {SHIPPED.name}, onnxruntime settings')
    levels = {}
    for level in ('ORT_DISABLE_ALL', 'ORT_ENABLE_BASIC', 'ORT_ENABLE_ALL'):
        ort_session = session(SHIPPED, threads, level)
        levels[level] = row(f'graph optimisation {level}', time_calls(
            lambda s=ort_session: s.run([output], feed), repeats))
    ratio('DISABLE_ALL / ENABLE_ALL', levels['ORT_DISABLE_ALL'], levels['ORT_ENABLE_ALL'])
    ratio('ENABLE_BASIC / ENABLE_ALL', levels['ORT_ENABLE_BASIC'], levels['ORT_ENABLE_ALL'])
    ort_session = session(SHIPPED, threads)
    bound = bound_runner(ort_session, feed, output, contract.action.shape)
    assert np.array_equal(bound(), ort_session.run([output], feed)[0])
    # Interleaved halves, so drifting load from other work hits both alike.
    plain_times, bound_times = [], []
    for _ in range(2):
        plain_times.append(time_calls(lambda: ort_session.run([output], feed), repeats // 2))
        bound_times.append(time_calls(bound, repeats // 2))
    plain = row('session.run (ENABLE_ALL)', np.concatenate(plain_times))
    binding = row('io_binding, pre-bound output (ENABLE_ALL)', np.concatenate(bound_times))
    ratio('session.run / io_binding', plain, binding)


# -- 3. int8 ----------------------------------------------------------------------------------

def int8(contract, threads: int, repeats: int, static: list[Path]) -> None:
    from onnxruntime.quantization import quantize_dynamic, QuantType
    output = [contract.action.name]
    feed = shipped_feed(contract)
    reference = session(SHIPPED, threads)
    expected = reference.run(output, feed)[0]
    print(f'dynamic int8 quantisation of {SHIPPED.name} (weights int8, activations quantised '
          'per call)')
    base = row('float32', time_calls(lambda: reference.run(output, feed), repeats))
    with tempfile.TemporaryDirectory() as tmp:
        for label, op_types in (('int8, all quantisable operators', None),
                                ('int8, MatMul / Gemm only', ['MatMul', 'Gemm'])):
            path = Path(tmp) / 'int8.onnx'
            quantize_dynamic(SHIPPED, path, weight_type=QuantType.QInt8,
                             op_types_to_quantize=op_types)
            quantised = session(path, threads)
            diff = float(np.abs(quantised.run(output, feed)[0] - expected).max())
            timed = row(f'{label} (max |diff| {diff:.3f})', time_calls(
                lambda s=quantised: s.run(output, feed), repeats))
            ratio(f'float32 / {label}', base, timed, '> 1x to ship', base[0] / timed[0] > 1.0)
    for path in static:
        # Alternating blocks of float32 and int8 calls, so both see the same machine load.
        quantised = session(path, threads)
        diff = float(np.abs(quantised.run(output, feed)[0] - expected).max())
        label = f'static int8 {path.name}'
        float_times, int8_times = [], []
        for _ in range(4):
            float_times.append(time_calls(lambda: reference.run(output, feed), repeats // 4))
            int8_times.append(time_calls(lambda s=quantised: s.run(output, feed), repeats // 4))
        paired = row('float32 (alternating with the next row)', np.concatenate(float_times))
        timed = row(f'{label} (max |diff| {diff:.3f})', np.concatenate(int8_times))
        ratio(f'float32 / {label}', paired, timed, '> 1x to ship', paired[0] / timed[0] > 1.0)
        torch_p50 = _torch_eager_p50.get('shipped')
        if torch_p50 is not None:
            print(f'  -> torch eager float32 (section 1) / {label}: p50 '
                  f'x{torch_p50 / timed[0]:.2f}  (different precision: for scale only)')


# -- 4. message -> input tensor ---------------------------------------------------------------

def message_to_tensor(contract, repeats: int) -> None:
    from builtin_interfaces.msg import Time

    from noetra_ros.core.policy.contract import ImageInput
    from noetra_ros.core.policy.preprocess import frame_to_tensor
    from noetra_ros.policy_node import _frame
    from noetra_ros.ros_conversions import numpy_to_image

    pixels = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    msg = numpy_to_image(pixels, 'rgb8', Time(), 'camera')
    source = pixels.reshape(-1)
    target = np.empty_like(source)
    float_spec = next(s for s in contract.inputs if isinstance(s, ImageInput))
    uint8_spec = ImageInput(name='image', camera='camera', height=FRAME_H, width=FRAME_W,
                            layout='nhwc', dtype='uint8')
    same = frame_to_tensor(_frame('camera', msg), uint8_spec)
    assert np.array_equal(same.reshape(FRAME_H, FRAME_W, 3), pixels)
    print(f'sensor_msgs/Image {FRAME_W}x{FRAME_H} rgb8 ({source.nbytes} bytes) -> input tensor, '
          f'policy_node\'s path (_frame -> frame_to_tensor); times in us')

    def us(function) -> np.ndarray:
        return time_calls(function, repeats) * 1e3
    copy = row('np.copyto of the same bytes', us(lambda: np.copyto(target, source)), 'us')
    shipped = row(f'(a) float32 nchw {float_spec.height}x{float_spec.width}, resize + '
                  'normalise', us(lambda: frame_to_tensor(_frame('camera', msg), float_spec)),
                  'us')
    view = row(f'(b) uint8 nhwc {FRAME_H}x{FRAME_W} (contract v2)',
               us(lambda: frame_to_tensor(_frame('camera', msg), uint8_spec)), 'us')
    ratio('(a) / memcpy', shipped, copy)
    ratio('(b) / memcpy', view, copy, '<= 1.5x', view[0] / copy[0] <= 1.5)


# -- 5. node path -----------------------------------------------------------------------------

def node_path() -> None:
    print(f'policy_node path vs bare inference: last {NODE_RESULT.relative_to(REPO)} '
          '(tools/bench_policy_node.py, DDS; not rerun here)')
    if not NODE_RESULT.exists():
        print('  (no result file: run tools/bench_policy_node.py)')
        return
    for line in NODE_RESULT.read_text().splitlines():
        if line.startswith(('model ', 'overhead ratio, inference path')):
            print(f'  {line}  (goal <= 1.1x)' if 'ratio' in line else f'  {line}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of onnxruntime and torch')
    parser.add_argument('--two-phase-repeats', type=int, default=5)
    parser.add_argument('--act-checkpoint', default='',
                        help='a trained ACT checkpoint (default: a fresh network of its shape)')
    parser.add_argument('--flow-checkpoints', default='',
                        help="the flow model's member checkpoints, ','-joined (default: members "
                             'of its shape with the shipped trunk and untrained flow heads)')
    parser.add_argument('--static', type=Path, action='append', default=[],
                        help='a static int8 model of the shipped one (tools/quantize_static.py) '
                             'to time in section 3; repeatable')
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from noetra_ros.core.policy.runtime import PolicyRuntime
    torch.set_num_threads(args.threads)
    with PolicyRuntime(SHIPPED, intra_op_threads=args.threads) as runtime:
        contract = runtime.contract
    print(f'# tools/bench_speed.py --repeats {args.repeats} --threads {args.threads}')
    print(f'# machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), '
          f'load average {os.getloadavg()[0]:.1f} at start (other work shares the cores); '
          f'onnxruntime {ort.__version__} CPUExecutionProvider, torch {torch.__version__}, '
          f'{args.threads} intra-op thread(s), batch 1\n')
    print('1. PyTorch eager vs onnxruntime')
    torch_vs_ort_shipped(contract, args.threads, args.repeats)
    torch_vs_ort_flow(args.threads, args.repeats,
                      [c for c in args.flow_checkpoints.split(',') if c])
    torch_vs_ort_act(contract, args.threads, args.repeats, args.act_checkpoint)
    if (TWO_PHASE / 'policy.contract.yaml').exists():
        torch_vs_ort_two_phase(args.threads, args.two_phase_repeats)
    else:
        print(f'two-phase model: {TWO_PHASE} missing (tools/build_two_phase_model.py builds it)')
    print('\n2. onnxruntime graph optimisation and IO binding')
    ort_settings(contract, args.threads, args.repeats)
    print('\n3. int8')
    int8(contract, args.threads, args.repeats, args.static)
    print('\n4. message -> input tensor vs memcpy')
    message_to_tensor(contract, args.repeats * 5)
    print('\n5. node path vs bare inference')
    node_path()
    return 0


if __name__ == '__main__':
    sys.exit(main())
