#!/usr/bin/env python3
"""Latency of one policy network in PyTorch eager vs onnxruntime (CPU, batch 1).

    python tools/bench_torch_vs_ort.py [--checkpoint models/pick_place_lrmate.pt]
                                       [--repeats 300] [--threads 1]

The torch side is the checkpoint's VisuomotorPolicy (or, with --random, a freshly initialised
network of the same shape); the onnxruntime side is that very network exported to ONNX by the
pipeline's exporter, so both run the same weights. Inputs are seeded random tensors of the
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
    parser.add_argument('--checkpoint', default=str(REPO / 'models' / 'pick_place_lrmate.pt'))
    parser.add_argument('--random', action='store_true',
                        help='use a randomly initialised network of the default shape')
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from noetra_ros.learning.export import export_onnx, parity, random_inputs, time_calls
    from noetra_ros.learning.train import load_checkpoint

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, contract, _ = load_checkpoint(args.checkpoint)
    if args.random:
        from noetra_ros.learning.model import VisuomotorPolicy
        model = VisuomotorPolicy(model.config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'bench.onnx'
        export_onnx(model, contract, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=['CPUExecutionProvider'])
        inputs = random_inputs(contract, batch=1, seed=0)
        diff = parity(model, path, inputs, contract.input_names)
        feed = dict(zip(contract.input_names, inputs))
        tensors = [torch.from_numpy(x) for x in inputs]
        output = [contract.action.name]

        def run_torch() -> None:
            with torch.inference_mode():
                model(*tensors)

        def run_ort() -> None:
            session.run(output, feed)

        results = {'torch eager': time_calls(run_torch, args.repeats),
                   'onnxruntime': time_calls(run_ort, args.repeats)}
    params = sum(p.numel() for p in model.parameters())
    print(f'network: {contract.name} ({params} parameters), batch 1, {args.threads} thread(s), '
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
