#!/usr/bin/env python3
"""Record the scripted expert's commanded trajectories, or compare two recordings.

A change to the expert's kinematics (or to anything it plans with) should leave its motions
nearly as they were. `record` runs seeded in-process episodes (as tools/expert_success.py does)
and stores, per seed, every commanded arm joint vector, gripper command and phase plus the
outcome, and prints the CPU time the expert spent planning (inside act(), process time, so
less sensitive to other load than wall time). `compare` reports, over the seeds both
recordings hold, how far the commanded joint positions moved (max and p99 of |q_new - q_old|,
step by step over the common length and phase by phase), the joint path per episode and which
outcomes changed.

    python tools/expert_trajectories.py record --robot fanuc_lrmate200id --seeds 0:30 \\
        --out /tmp/expert_baseline/fanuc_lrmate200id.npz
    python tools/expert_trajectories.py compare /tmp/expert_baseline/fanuc_lrmate200id.npz \\
        /tmp/expert_after/fanuc_lrmate200id.npz
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.stats import percentiles  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    """'a:b' (a..b-1) or 'a,b,c'."""
    if ':' in text:
        first, end = (int(v) for v in text.split(':'))
        return list(range(first, end))
    return [int(v) for v in text.split(',') if v]


def record(robot: str, seeds: list[int], out: pathlib.Path) -> None:
    """Run one episode per seed and store what the expert commanded."""
    from noetra_ros.core.expert import run_episode, ScriptedExpert
    from noetra_ros.core.sim.world import SimWorld, WorldConfig

    config = WorldConfig(robot=robot)
    world = SimWorld(config)
    expert = ScriptedExpert(robot, control_hz=config.control_hz)
    arrays: dict[str, np.ndarray] = {'seeds': np.array(seeds)}
    successes = []
    plan_calls: list[float] = []
    act = expert.act

    def timed_act(*args, **kwargs):
        start = time.process_time()
        try:
            return act(*args, **kwargs)
        finally:
            plan_calls.append(time.process_time() - start)

    expert.act = timed_act  # type: ignore[method-assign]
    per_episode = []
    try:
        for seed in seeds:
            joints, grippers, phases = [], [], []
            first_call = len(plan_calls)

            def on_step(_obs, action, joints=joints, grippers=grippers, phases=phases) -> None:
                joints.append(np.array(action.joint_positions, dtype=float))
                grippers.append(float(action.gripper_position))
                phases.append(action.phase)

            result = run_episode(world, expert, seed, on_step=on_step)
            successes.append(result.success)
            per_episode.append(sum(plan_calls[first_call:]))
            arrays[f'q_{seed}'] = np.array(joints)
            arrays[f'gripper_{seed}'] = np.array(grippers)
            arrays[f'phase_{seed}'] = np.array(phases)
            print(f'  seed {seed:5d} {"ok  " if result.success else "FAIL"} '
                  f'{len(joints):4d} steps {result.explanation}', flush=True)
    finally:
        expert.close()
        world.close()
    arrays['success'] = np.array(successes)
    arrays['plan_cpu_s'] = np.array(per_episode)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    calls = percentiles([1e3 * c for c in plan_calls], (50, 99))
    print(f'{robot}: {sum(successes)}/{len(seeds)} succeeded; planning CPU per episode mean '
          f'{1e3 * float(np.mean(per_episode)):.0f} ms; one act() p50 {calls["p50"]:.2f} ms, '
          f'p99 {calls["p99"]:.1f} ms, max {1e3 * max(plan_calls):.1f} ms; saved {out}')


def _segments(phases: np.ndarray) -> list[tuple[str, int, int]]:
    """(phase, first step, end step) of each run of one phase."""
    out, start = [], 0
    for i in range(1, len(phases) + 1):
        if i == len(phases) or phases[i] != phases[start]:
            out.append((str(phases[start]), start, i))
            start = i
    return out


def _phase_aligned(q_old, p_old, q_new, p_new) -> np.ndarray | None:
    """|q_new - q_old| with each phase compared from its own first step (a phase that ends a
    step earlier, e.g. the gripper settling one control period sooner, does not shift every
    later step); None when the two runs went through different phase sequences."""
    old_segments, new_segments = _segments(p_old), _segments(p_new)
    if [s[0] for s in old_segments] != [s[0] for s in new_segments]:
        return None
    parts = []
    for (_, a0, a1), (_, b0, b1) in zip(old_segments, new_segments):
        n = min(a1 - a0, b1 - b0)
        parts.append(np.abs(q_new[b0:b0 + n] - q_old[a0:a0 + n]))
    return np.concatenate(parts) if parts else np.zeros((0, q_old.shape[1]))


def compare(old_path: pathlib.Path, new_path: pathlib.Path) -> dict:
    """Differences between two recordings over their common seeds (printed and returned)."""
    old, new = np.load(old_path), np.load(new_path)
    old_success = dict(zip(old['seeds'].tolist(), old['success'].tolist()))
    new_success = dict(zip(new['seeds'].tolist(), new['success'].tolist()))
    seeds = sorted(set(old_success) & set(new_success))
    diffs, per_seed_max, length_change, phase_change, outcome_change = [], [], [], [], []
    aligned, aligned_max, other_sequence = [], [], []
    for seed in seeds:
        q_old, q_new = old[f'q_{seed}'], new[f'q_{seed}']
        common = min(len(q_old), len(q_new))
        delta = np.abs(q_new[:common] - q_old[:common])
        diffs.append(delta.reshape(-1))
        per_seed_max.append((float(delta.max()) if delta.size else 0.0, seed))
        length_change.append(len(q_new) - len(q_old))
        p_old, p_new = old[f'phase_{seed}'][:common], new[f'phase_{seed}'][:common]
        phase_change.append(int(np.sum(p_old != p_new)))
        by_phase = _phase_aligned(q_old, old[f'phase_{seed}'], q_new, new[f'phase_{seed}'])
        if by_phase is None:
            other_sequence.append(seed)
        else:
            aligned.append(by_phase.reshape(-1))
            aligned_max.append((float(by_phase.max()) if by_phase.size else 0.0, seed))
        if old_success[seed] != new_success[seed]:
            outcome_change.append((seed, old_success[seed], new_success[seed]))
    every = np.concatenate(diffs)
    figures = percentiles(every.tolist(), (50, 99))
    every_aligned = np.concatenate(aligned) if aligned else np.zeros(1)
    figures_aligned = percentiles(every_aligned.tolist(), (50, 99))
    summary = {
        'seeds': len(seeds),
        'old_successes': sum(old_success[s] for s in seeds),
        'new_successes': sum(new_success[s] for s in seeds),
        'max_rad': float(every.max()), 'p99_rad': figures['p99'], 'p50_rad': figures['p50'],
        'worst_seeds': sorted(per_seed_max, reverse=True)[:5],
        'steps_changed_max': int(np.max(np.abs(length_change))),
        'steps_changed_mean': float(np.mean(length_change)),
        'phase_mismatch_steps': int(np.sum(phase_change)),
        'outcome_changes': outcome_change,
        'aligned_max_rad': float(every_aligned.max()), 'aligned_p99_rad': figures_aligned['p99'],
        'aligned_p50_rad': figures_aligned['p50'],
        'aligned_worst_seeds': sorted(aligned_max, reverse=True)[:5],
        'other_phase_sequence': other_sequence,
        # Sum of |joint steps| over an episode, mean over the seeds: how much the arm moves.
        'joint_path_old_rad': float(np.mean([np.abs(np.diff(old[f'q_{s}'], axis=0)).sum()
                                             for s in seeds])),
        'joint_path_new_rad': float(np.mean([np.abs(np.diff(new[f'q_{s}'], axis=0)).sum()
                                             for s in seeds])),
    }
    print(f"{new_path.stem}: {summary['seeds']} common seeds; successes "
          f"{summary['old_successes']} -> {summary['new_successes']}; commanded joint "
          f"difference max {summary['max_rad']:.5f} rad, p99 {summary['p99_rad']:.5f} rad, "
          f"p50 {summary['p50_rad']:.6f} rad (step by step over the common length); "
          f"episode length change max {summary['steps_changed_max']} steps, mean "
          f"{summary['steps_changed_mean']:+.2f}; steps in a different phase "
          f"{summary['phase_mismatch_steps']}")
    print('  largest per-seed max: ' + ', '.join(
        f'seed {s} {d:.4f} rad' for d, s in summary['worst_seeds']))
    print(f"  phase-aligned (each phase from its own first step; "
          f"{summary['seeds'] - len(other_sequence)} seeds with the same phase sequence): "
          f"max {summary['aligned_max_rad']:.5f} rad, p99 {summary['aligned_p99_rad']:.5f} rad, "
          f"p50 {summary['aligned_p50_rad']:.6f} rad; largest: " + ', '.join(
              f'seed {s} {d:.4f} rad' for d, s in summary['aligned_worst_seeds']))
    print(f"  joint path per episode (sum of |joint steps|, mean): "
          f"{summary['joint_path_old_rad']:.3f} -> {summary['joint_path_new_rad']:.3f} rad")
    if other_sequence:
        print(f'  seeds with a different phase sequence (retries): {other_sequence}')
    for seed, was, now in outcome_change:
        print(f'  seed {seed}: success {was} -> {now}')
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    rec = sub.add_parser('record', help='run seeded episodes and store the commands')
    rec.add_argument('--robot', default='fanuc_lrmate200id')
    rec.add_argument('--seeds', default='0:30', help="'a:b' or 'a,b,c'")
    rec.add_argument('--out', type=pathlib.Path, required=True)
    cmp_ = sub.add_parser('compare', help='difference of two recordings')
    cmp_.add_argument('old', type=pathlib.Path)
    cmp_.add_argument('new', type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.command == 'record':
        record(args.robot, parse_seeds(args.seeds), args.out)
    else:
        compare(args.old, args.new)
    return 0


if __name__ == '__main__':
    sys.exit(main())
