#!/usr/bin/env python3
"""Inference latency of the ACT-style policy next to the shipped model, and its training and
closed-loop record, in one text file (docs/results/act_policy.txt).

    nice -n 5 python tools/bench_act.py --model /work/act_out/act.onnx \
        --checkpoint /work/act_out/act.pt --evalcheck-json /work/act_out/evalcheck.json \
        --write docs/results/act_policy.txt

Latency: both models through `PolicyRuntime.infer` (the call policy_node makes: onnxruntime
session.run + post-processing), onnxruntime CPU, 1 intra-op / 1 inter-op thread, batch 1,
seeded random inputs of each contract's shapes, `--repeats` timed calls after 10 untimed ones,
the two models interleaved in blocks so that a change in the machine's load hits both. Prints
p50 / p90 / p99 in ms and the ACT / shipped ratio. onnxruntime only; the training and evalcheck
sections read the checkpoint (torch) and the JSON `python -m noetra_ros.learning evalcheck
--json` wrote.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
import functools
import json
from pathlib import Path
import platform
import sys

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BLOCK = 50  # calls per model before switching to the other


def latency(paths: dict[str, Path], repeats: int) -> dict[str, np.ndarray]:
    """Per model the wall times (ms) of `repeats` runtime.infer calls, models interleaved."""
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.learning.export import random_inputs, time_calls

    runtimes = {name: PolicyRuntime(path, intra_op_threads=1, inter_op_threads=1)
                for name, path in paths.items()}
    feeds = {name: dict(zip(rt.contract.input_names, random_inputs(rt.contract, 1, seed=0)))
             for name, rt in runtimes.items()}
    times: dict[str, list[np.ndarray]] = {name: [] for name in runtimes}
    done = 0
    while done < repeats:
        block = min(BLOCK, repeats - done)
        for name, runtime in runtimes.items():
            call = functools.partial(runtime.infer, feeds[name])
            times[name].append(time_calls(call, block, warmup=10 if done == 0 else 2))
        done += block
    for runtime in runtimes.values():
        runtime.close()
    return {name: np.concatenate(parts) for name, parts in times.items()}


def model_facts(path: Path) -> str:
    from noetra_ros.core.policy.contract import load_contract

    contract = load_contract(path)
    info = contract.info
    return (f'{path} ({path.stat().st_size / 1e6:.1f} MB, contract {contract.name!r}, '
            f'{info.get("parameters", "?")} parameters)')


def training_section(checkpoint: Path) -> list[str]:
    """The run behind the checkpoint: command, steps, wall time, losses."""
    import torch

    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    from noetra_ros.learning.act import ActTrainConfig

    config = ckpt['train_config']
    defaults = {f.name: f.default for f in fields(ActTrainConfig)}
    changed = ' '.join(f'--{k.replace("_", "-")} {v}' for k, v in config.items()
                       if k != 'steps' and defaults.get(k) != v)
    datasets = ','.join(ckpt['dataset']['path'])
    lines = ['## training',
             f'command: python -m noetra_ros.learning.act train --dataset {datasets} '
             f'--output {checkpoint.name} --steps {config["steps"]} {changed}'.rstrip(),
             f'dataset: {ckpt["dataset"]["episodes"]} episodes, {ckpt["dataset"]["frames"]} '
             f'frames ({len(ckpt["dataset"]["train_episodes"])} train / '
             f'{len(ckpt["dataset"]["val_episodes"])} validation episodes)',
             f'parameters (exported graph): {ckpt["parameters"]}',
             f'steps done: {ckpt["steps_done"]} of {config["steps"]} (batch '
             f'{config["batch_size"]}; {ckpt["steps_done"] * config["batch_size"]} samples)',
             f'training wall time: {ckpt["train_time_s"]:.0f} s '
             f'({ckpt["train_time_s"] / max(1, ckpt["steps_done"]):.2f} s / step)',
             'step  train L1 (running)  val L1 (EMA weights)  elapsed s']
    for entry in ckpt['history']:
        lines.append(f'{entry["step"]:>5}  {entry["train_l1"]:18.4f}  {entry["val_l1"]:20.4f}  '
                     f'{entry["elapsed_s"]:9.0f}')
    return lines


def export_line(checkpoint: Path, model: Path) -> str:
    """onnxruntime vs torch on seeded random inputs (batch 16): the file is the checkpoint."""
    from noetra_ros.learning.act import load_act_checkpoint
    from noetra_ros.learning.export import parity, random_inputs

    network, contract, _ = load_act_checkpoint(checkpoint)
    diff = parity(network, model, random_inputs(contract, 16, seed=0), contract.input_names)
    return (f'export: python -m noetra_ros.learning.act export --checkpoint {checkpoint.name} '
            f'--output {model.name}; onnxruntime vs torch, 16 random samples: max |diff| = '
            f'{diff:.1e}')


def evalcheck_section(path: Path) -> list[str]:
    results = json.loads(path.read_text())
    lines = ['## closed loop (python -m noetra_ros.learning evalcheck, in process, supervisor '
             'included)']
    for result in results:
        seeds = result['seeds']
        lines.append(f'command: python -m noetra_ros.learning evalcheck --model <act.onnx> '
                     f'--seeds {seeds[0]}:{seeds[-1] + 1} --json {path.name}')
        wins = sum(result['successes'])
        lines.append(f'{result["label"]}: {wins} / {len(seeds)} = {result["success_rate"]:.2f} '
                     f'on seeds {seeds[0]}..{seeds[-1]} (cell {result["cell"]}, '
                     f'{result["episode_timeout_s"]} s episodes, {result["wall_time_s"]:.0f} s '
                     'wall)')
        reasons: dict[str, int] = {}
        for ok, why in zip(result['successes'], result['explanations']):
            if not ok:
                key = why.split(':')[0][:80]
                reasons[key] = reasons.get(key, 0) + 1
        for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f'  {count} x {why}')
        # What the supervisor did (episodes with each intervention, and its total count).
        seen: dict[str, list[int]] = {}
        for counts in result.get('interventions') or []:
            for key, value in counts.items():
                if key not in ('armed', 'accepted_commands', 'ignored_not_armed') and value:
                    seen.setdefault(key, []).append(int(value))
        for key, values in sorted(seen.items()):
            lines.append(f'  supervisor {key}: in {len(values)} episodes, {sum(values)} in all')
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, help='the exported ACT ONNX file')
    parser.add_argument('--shipped', default=str(REPO / 'models' / 'pick_place_lrmate.onnx'))
    parser.add_argument('--checkpoint', default=None, help='ACT checkpoint (training section)')
    parser.add_argument('--evalcheck-json', default=None,
                        help='evalcheck --json output (closed-loop section)')
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--write', default=None, help='also write the report to this file')
    args = parser.parse_args(argv)

    paths = {'ACT': Path(args.model), 'shipped': Path(args.shipped)}
    times = latency(paths, args.repeats)
    lines = [f'# tools/bench_act.py {" ".join(argv if argv is not None else sys.argv[1:])}',
             f'machine: {platform.processor() or platform.machine()}, shared CPU cores; load '
             f'average at the end {" ".join(f"{v:.1f}" for v in _loadavg())}',
             '## latency: PolicyRuntime.infer, onnxruntime CPU, 1 intra-op thread, batch 1, '
             f'{args.repeats} calls each, interleaved',
             f'ACT:     {model_facts(paths["ACT"])}',
             f'shipped: {model_facts(paths["shipped"])}',
             f'{"model":<8} {"p50 ms":>8} {"p90 ms":>8} {"p99 ms":>8}']
    pct = {}
    for name, values in times.items():
        pct[name] = np.percentile(values, [50, 90, 99])
        lines.append(f'{name:<8} ' + ' '.join(f'{v:8.2f}' for v in pct[name]))
    ratio = pct['ACT'] / pct['shipped']
    lines.append(f'ACT / shipped: p50 x{ratio[0]:.2f}, p90 x{ratio[1]:.2f}, p99 x{ratio[2]:.2f}; '
                 f'control period 50 ms: ACT p99 uses {pct["ACT"][2] / 50.0:.0%} of it')
    if args.checkpoint:
        lines += training_section(Path(args.checkpoint))
        lines.append(export_line(Path(args.checkpoint), paths['ACT']))
    if args.evalcheck_json:
        lines += evalcheck_section(Path(args.evalcheck_json))
    text = '\n'.join(lines) + '\n'
    print(text, end='')
    if args.write:
        Path(args.write).write_text(text)
    return 0


def _loadavg() -> tuple[float, float, float]:
    try:
        import os
        return os.getloadavg()
    except OSError:
        return (float('nan'),) * 3


if __name__ == '__main__':
    sys.exit(main())
