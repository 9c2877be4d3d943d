#!/usr/bin/env python3
"""Static int8 quantisation of a single-graph policy, calibrated on what the deployed cell feeds it.

    nice -n 10 python tools/quantize_static.py --output /tmp/int8.onnx \
        [--model models/pick_place_lrmate.onnx] [--calibration-seeds 0:10] [--samples 300] \
        [--format qdq|qoperator] [--method minmax|percentile|entropy] [--per-channel] \
        [--op-types Conv,MatMul]

Calibration data: the float model drives the cell in process (learning.record.evaluate_policy:
policy loop -> supervisor -> sim, the shipped policy cell) on `--calibration-seeds` (the
demonstration range 0..559, never an evaluation range), and every input tensor it is fed is
kept; `--samples` of them, spread evenly, calibrate the activation ranges
(onnxruntime.quantization.quantize_static after quant_pre_process). Activations uint8, weights
int8. The contract (model metadata) is carried over and the output is loaded by the runtime, so
`evalcheck --model <output>` measures it exactly as the float model; the speed comparison is in
tools/bench_speed.py section 3 (`--static <output>`). Results and verdict:
docs/results/int8_static_quantisation.txt.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import tempfile
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHIPPED = REPO / 'models' / 'pick_place_lrmate.onnx'


def collect_feeds(model: Path, seeds: list[int], threads: int) -> list[dict[str, np.ndarray]]:
    """Every input tensor the model is fed while it drives the cell on `seeds`."""
    from noetra_ros.core.policy import runtime as runtime_module
    from noetra_ros.learning.record import evaluate_policy

    feeds: list[dict[str, np.ndarray]] = []
    infer = runtime_module.PolicyRuntime.infer

    def recording_infer(self, inputs, *args, **kwargs):
        tensors = inputs.tensors if isinstance(inputs, runtime_module.PolicyInputs) else inputs
        feeds.append({name: np.array(value, copy=True) for name, value in tensors.items()})
        return infer(self, inputs, *args, **kwargs)

    runtime_module.PolicyRuntime.infer = recording_infer  # type: ignore[method-assign]
    try:
        result = evaluate_policy(model, seeds, threads=threads)
    finally:
        runtime_module.PolicyRuntime.infer = infer  # type: ignore[method-assign]
    print(f'calibration run: {sum(result.successes)}/{len(seeds)} episodes succeeded, '
          f'{len(feeds)} inferences recorded')
    return feeds


class FeedReader:
    """onnxruntime's CalibrationDataReader over recorded feeds (names as the graph has them)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], names: set[str]) -> None:
        self._feeds = [{k: v for k, v in feed.items() if k in names} for feed in feeds]
        self._next = 0

    def get_next(self):
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.quantization import (CalibrationMethod, quant_pre_process, QuantFormat,
                                          quantize_static, QuantType)
    import onnx

    from noetra_ros.core.policy.runtime import PolicyRuntime

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=SHIPPED)
    parser.add_argument('--output', type=Path, required=True)
    parser.add_argument('--calibration-seeds', default='0:10', help='a:b, demonstration range')
    parser.add_argument('--samples', type=int, default=300)
    parser.add_argument('--format', choices=('qdq', 'qoperator'), default='qdq')
    parser.add_argument('--method', choices=('minmax', 'percentile', 'entropy'),
                        default='minmax')
    parser.add_argument('--per-channel', action='store_true')
    parser.add_argument('--op-types', default='',
                        help="','-joined operator types to quantise (default: all it can)")
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    lo, hi = (int(v) for v in args.calibration_seeds.split(':'))
    if not 0 <= lo < hi <= 560:
        parser.error('--calibration-seeds must lie in the demonstration range 0..560')

    started = time.monotonic()
    feeds = collect_feeds(args.model, list(range(lo, hi)), args.threads)
    pick = np.linspace(0, len(feeds) - 1, min(args.samples, len(feeds))).round().astype(int)
    chosen = [feeds[i] for i in pick]
    graph_inputs = {i.name for i in onnx.load(str(args.model), load_external_data=False)
                    .graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / 'prepared.onnx'
        quant_pre_process(str(args.model), str(prepared))
        quantize_static(
            str(prepared), str(args.output), FeedReader(chosen, graph_inputs),
            quant_format=QuantFormat.QDQ if args.format == 'qdq' else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=args.per_channel,
            op_types_to_quantize=[t for t in args.op_types.split(',') if t] or None,
            calibrate_method={'minmax': CalibrationMethod.MinMax,
                              'percentile': CalibrationMethod.Percentile,
                              'entropy': CalibrationMethod.Entropy}[args.method])
    # quant_pre_process keeps metadata_props, but make sure the contract travels with the model.
    source = onnx.load(str(args.model), load_external_data=False)
    quantised = onnx.load(str(args.output))
    present = {p.key for p in quantised.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in present:
            quantised.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(quantised, str(args.output))
    runtime = PolicyRuntime(args.output, intra_op_threads=args.threads)  # the runtime loads it
    try:
        reference = PolicyRuntime(args.model, intra_op_threads=args.threads)
        try:
            diffs = [float(np.abs(runtime.infer(dict(feed)).values
                                  - reference.infer(dict(feed)).values).max())
                     for feed in feeds[::max(1, len(feeds) // 50)]]
        finally:
            reference.close()
    finally:
        runtime.close()
    print(f'wrote {args.output} ({args.output.stat().st_size // 1024} KiB; {args.format}, '
          f'{args.method}, per_channel={args.per_channel}, operators '
          f'{args.op_types or "all"}, {len(chosen)} calibration samples) '
          f'in {time.monotonic() - started:.0f} s; |int8 - float| on {len(diffs)} recorded '
          f'inputs: median {np.median(diffs):.4f}, max {max(diffs):.4f} (action units)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
