#!/usr/bin/env python3
"""Latency of a policy in PyTorch eager vs onnxruntime (CPU, batch 1).

    python tools/bench_torch_vs_ort.py [--checkpoint a.pt[,b.pt]] [--repeats 300] [--threads 1]

The torch side is the checkpoints' VisuomotorPolicy (several: the mean of their outputs, as the
shipped two-member model computes it; default: the shipped model's members), or with --random
freshly initialised networks of the same shape; the onnxruntime side is the same network(s)
exported by the pipeline's exporter (several: merged by `ensemble_onnx`, as shipped), so both
run the same weights. Inputs are seeded random tensors of the
contract's shapes. Prints p50 / p90 / p99 in ms and the torch / onnxruntime ratio. Needs torch.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import tempfile

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    # Default: every member checkpoint shipped next to the model (the ONNX file is their mean).
    parser.add_argument('--checkpoint', default=','.join(
        str(path) for path in sorted((REPO / 'models').glob('pick_place_lrmate_member_*.pt'))))
    parser.add_argument('--random', action='store_true',
                        help='use a randomly initialised network of the default shape')
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from noetra_ros.learning.export import (
        ensemble_onnx, export_onnx, random_inputs, time_calls)
    from noetra_ros.learning.train import load_checkpoint

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models, contract = [], None
    for checkpoint in [c for c in args.checkpoint.split(',') if c]:
        model, contract, _ = load_checkpoint(checkpoint)
        if args.random:
            from noetra_ros.learning.model import VisuomotorPolicy
            model = VisuomotorPolicy(model.config).eval()
        models.append(model)

    def forward(*tensors):
        outputs = [m(*tensors) for m in models]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(dim=0)

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f'member{i}.onnx' for i in range(len(models))]
        for model, member_path in zip(models, paths):
            export_onnx(model, contract, member_path)
        path = paths[0]
        if len(paths) > 1:
            path = Path(tmp) / 'bench.onnx'
            ensemble_onnx(paths, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=['CPUExecutionProvider'])
        inputs = random_inputs(contract, batch=1, seed=0)
        feed = dict(zip(contract.input_names, inputs))
        tensors = [torch.from_numpy(x) for x in inputs]
        output = [contract.action.name]
        with torch.inference_mode():
            diff = float(np.max(np.abs(session.run(output, feed)[0].astype(np.float64)
                                       - forward(*tensors).numpy().astype(np.float64))))

        def run_torch() -> None:
            with torch.inference_mode():
                forward(*tensors)

        def run_ort() -> None:
            session.run(output, feed)

        results = {'torch eager': time_calls(run_torch, args.repeats),
                   'onnxruntime': time_calls(run_ort, args.repeats)}
    params = sum(p.numel() for m in models for p in m.parameters())
    print(f'network: {contract.name} ({len(models)} member(s), {params} parameters), batch 1, '
          f'{args.threads} thread(s), '
          f'{args.repeats} runs each; max |torch - ort| = {diff:.2e}')
    print(f'{"runtime":<14} {"p50 ms":>8} {"p90 ms":>8} {"p99 ms":>8}')
    percentiles = {}
    for name, times in results.items():
        p50, p90, p99 = np.percentile(times, [50, 90, 99])
        percentiles[name] = (p50, p90, p99)
        print(f'{name:<14} {p50:8.3f} {p90:8.3f} {p99:8.3f}')
    ratio = [t / o for t, o in zip(percentiles['torch eager'], percentiles['onnxruntime'])]
    print(f'torch / onnxruntime: p50 x{ratio[0]:.2f}, p90 x{ratio[1]:.2f}, p99 x{ratio[2]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
