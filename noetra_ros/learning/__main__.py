"""Command line of the learning pipeline (needs the optional torch==2.13.0 for train / export).

    python -m noetra_ros.learning record    --output DATASET [--episodes 200] [--first-seed 0]
                                            [--workers N [--address ray://...]]
    python -m noetra_ros.learning train     --dataset DATASET --output CKPT [--steps 9000] ...
    python -m noetra_ros.learning export    --checkpoint CKPT --output MODEL.onnx [--dataset DS]
    python -m noetra_ros.learning all       --workdir DIR --model MODEL.onnx   (the shipped recipe)
    python -m noetra_ros.learning ensemble  --models A.onnx,B.onnx --output MODEL.onnx
    python -m noetra_ros.learning evalcheck --model MODEL.onnx [--seeds 10000:10050] [--expert]
                                            [--cell pick_place_lrmate_policy] [--episode-timeout S]
                                            [--one-run] [--lighting NAME] [--phrasing P]
                                            [--workers N [--address ray://...]]
    python -m noetra_ros.learning reference [--model models/pick_place_lrmate.onnx]
    python -m noetra_ros.learning info      DATASET_OR_MODEL

`reference` regenerates test/data/shipped_model_reference.npz (the stored-output test of the
shipped model): run it only after deliberately replacing the shipped model.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
import json
import multiprocessing
from pathlib import Path
import sys
from typing import Any, Sequence

import numpy as np
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.paths import checkout_test_data_dir, models_dir
from noetra_ros.core.policy.chunking import BLEND_STRATEGIES
from noetra_ros.learning.record import DEFAULT_CAMERAS, DEFAULT_EVAL_CELL

# The shipped policy (in models/) and its stored-output fixture (in test/data/), looked up
# through core/paths.py when a command needs them.
SHIPPED_MODEL_FILE = 'pick_place_lrmate.onnx'
REFERENCE_FILE = 'shipped_model_reference.npz'
REFERENCE_SEED = 10000
HELD_OUT_SEEDS = '10000:10050'


def shipped_model() -> Path:
    """The shipped ONNX policy (models/ of the checkout, else of the installed share)."""
    return models_dir() / SHIPPED_MODEL_FILE


def reference_path() -> Path:
    """The shipped model's stored-output fixture (a source checkout's test/data/)."""
    return checkout_test_data_dir() / REFERENCE_FILE


def parse_seeds(text: str) -> list[int]:
    """'a:b' -> range(a, b); 'a,b,c' -> list."""
    if ':' in text:
        lo, hi = text.split(':', 1)
        return list(range(int(lo), int(hi)))
    return [int(s) for s in text.split(',') if s.strip()]


def _train_config(args: argparse.Namespace):
    from noetra_ros.learning.train import TrainConfig

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return TrainConfig(**overrides)


def parse_boolean(text: str) -> bool:
    """argparse type of a boolean option: 1/true/yes/on or 0/false/no/off."""
    if text.lower() in ('1', 'true', 'yes', 'on'):
        return True
    if text.lower() in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'{text!r} is not a boolean (true / false)')


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from noetra_ros.learning.train import TrainConfig

    for f in fields(TrainConfig):
        kind = type(f.default)
        if kind is bool:
            kind = parse_boolean
        parser.add_argument('--' + f.name.replace('_', '-'), dest=f.name, type=kind, default=None,
                            help=f'(default {f.default})')


def cmd_record(args: argparse.Namespace) -> int:
    from noetra_ros.learning.record import RecordConfig, record

    config = RecordConfig(robot=args.robot, episodes=args.episodes, first_seed=args.first_seed,
                          cameras=tuple(args.cameras.split(',')),
                          action_noise_rad=args.action_noise,
                          noise_phases=tuple(p for p in args.noise_phases.split(',') if p))
    if args.workers:  # on Ray workers, written here in seed order (docs/DISTRIBUTED.md)
        from noetra_ros.distributed import record_distributed

        summary, run = record_distributed(config, args.output, args.workers, args.address)
        print(f'{summary.describe()}\n  {run.describe()}')
        return 0
    print(record(config, args.output).describe())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from noetra_ros.learning.train import train

    train(args.dataset, args.output, _train_config(args))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from noetra_ros.learning.export import export_policy

    print(export_policy(args.checkpoint, args.output, dataset=args.dataset).describe())
    return 0


def policy_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The policy node parameters evalcheck's options replace in the cell (those given)."""
    return {key: value for key, value in (
        ('replan_steps', args.replan_every), ('blend', args.blend),
        ('inference_delay_steps', args.inference_delay_steps),
        ('rtc_horizon_s', args.rtc_horizon)) if value is not None}


def cmd_evalcheck(args: argparse.Namespace) -> int:
    from noetra_ros.learning.record import EvalSettings, evaluate_expert, evaluate_policy

    seeds = parse_seeds(args.seeds)
    settings = EvalSettings.from_cell(args.cell, episode_timeout_s=args.episode_timeout,
                                      policy=policy_overrides(args), lighting=args.lighting,
                                      phrasing=args.phrasing)
    model = args.model or shipped_model()
    if args.workers:  # on Ray workers (docs/DISTRIBUTED.md)
        from noetra_ros.distributed import evalcheck_on_ray

        return evalcheck_on_ray(args, seeds, settings, model)
    results = [evaluate_policy(model, seeds, settings, as_one_run=args.one_run)]
    if args.expert:
        results.append(evaluate_expert(seeds, robot=settings.robot,
                                       world_config=settings.world_config()))
    for result in results:
        print(result.describe())
        if args.verbose:
            for seed, ok, why in zip(result.seeds, result.successes, result.explanations):
                if not ok:
                    print(f'  seed {seed}: {why}')
    if args.expert:
        policy, expert = results
        ratio = policy.success_rate / max(expert.success_rate, 1e-9)
        print(f'policy / expert success ratio: {ratio:.2f} on {len(seeds)} held-out seeds')
    if args.json:
        from noetra_ros.learning.record import evaluation_json_row

        Path(args.json).write_text(json.dumps(
            [evaluation_json_row(r, settings) for r in results], indent=2) + '\n')
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    """The shipped model's recipe in one command: record the three demonstration sets
    (skipping a dataset that is already there), train, optionally fine-tune, export."""
    from concurrent.futures import ProcessPoolExecutor

    from noetra_ros.learning.export import export_policy
    from noetra_ros.learning.record import record_and_describe, RecordConfig
    from noetra_ros.learning.train import train_member

    config = _train_config(args)
    # Checked before the recordings, which take a quarter of an hour.
    members = ensemble_members(config, args.members)
    workdir = Path(args.workdir)
    seed = args.first_seed
    plans = []
    for name, episodes, noise, phases in (
            ('clean', args.episodes, 0.0, ()),
            # small offsets everywhere (DART-style) ...
            ('noisy', args.noisy_episodes, args.action_noise, ()),
            # ... and large ones in the free-space moves only, gone before the grasp.
            ('wide', args.wide_episodes, args.wide_noise, ('approach', 'transfer'))):
        if episodes > 0:
            plans.append((workdir / name, RecordConfig(
                robot=args.robot, episodes=episodes, first_seed=seed, action_noise_rad=noise,
                noise_phases=phases)))
        seed += episodes
    todo = [(path, config) for path, config in plans
            if not (path / 'meta' / 'info.json').exists()]
    if todo:
        # One PyBullet world per process: the recordings are independent and CPU bound.
        # 'spawn': a fork of a process that may already run torch / OpenMP threads can hang.
        with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(todo))),
                                 mp_context=multiprocessing.get_context('spawn')) as pool:
            configs, outputs = [c for _, c in todo], [p for p, _ in todo]
            for text in pool.map(record_and_describe, configs, outputs):
                print(text)
    datasets = [path for path, _ in plans]
    if args.members == 1:
        checkpoint = train_member(datasets, workdir, 'checkpoint', config, args.finetune_steps,
                                  args.finetune_hard_fraction)
        print(export_policy(checkpoint, args.model, dataset=datasets[0]).describe())
        return 0
    checkpoints = _train_members(datasets, workdir, members, args)
    onnx_paths = []
    for checkpoint in checkpoints:
        onnx_paths.append(checkpoint.with_suffix('.onnx'))
        print(export_policy(checkpoint, onnx_paths[-1], dataset=datasets[0]).describe())
    _write_ensemble(onnx_paths, args.model)
    return 0


def ensemble_members(config, count: int) -> list[tuple[str, Any]]:
    """(name, TrainConfig) of the recipe's `count` ensemble members: pairs of one network with
    the heading head and one without (`member_heading`, `member_no_heading`); the k-th pair
    (k >= 2) is named `..._k` and trained with seed `config.seed + k - 1`, so members differ in
    initialisation, batch order and validation split as well as in the head."""
    from dataclasses import replace

    if count < 1:
        raise ConfigError(f'--members must be >= 1, got {count}')
    members = []
    for index in range(count):
        pair, with_heading = divmod(index, 2)
        name = 'member_heading' if with_heading == 0 else 'member_no_heading'
        members.append((name + (f'_{pair + 1}' if pair else ''),
                        replace(config, seed=config.seed + pair,
                                target_heading=config.target_heading and with_heading == 0)))
    return members


def _train_members(datasets: Sequence[Path], workdir: Path,
                   members: Sequence[tuple[str, Any]], args: argparse.Namespace) -> list[Path]:
    """Train the members not yet in `workdir`, `--train-jobs` at a time, one process each (set
    --threads 1 on 2 cores). A member whose final checkpoint is there is reused if every stage
    was trained with the settings it would get now (so `--members 4` on a workdir of the
    2-member recipe trains only the new pair); other settings are a ConfigError naming them."""
    from concurrent.futures import ProcessPoolExecutor

    from noetra_ros.learning.train import member_stages, settings_differing, train_member

    checkpoints: dict[str, Path] = {}
    todo = []
    for name, member_config in members:
        stages = member_stages(workdir, name, member_config, args.finetune_steps,
                               args.finetune_hard_fraction)
        final = stages[-1][0]
        if not final.is_file():
            todo.append((name, member_config))
            continue
        for checkpoint, stage_config in stages:
            differing = settings_differing(checkpoint, stage_config) if checkpoint.is_file() \
                else ['the checkpoint is missing']
            if differing:
                raise ConfigError(f'cannot reuse {final}: {checkpoint.name}: '
                                  + ', '.join(differing) + '; delete it or use another --workdir')
        print(f'reusing {final} (delete it to retrain that member)')
        checkpoints[name] = final
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, min(args.train_jobs, len(todo))),
                                 mp_context=multiprocessing.get_context('spawn')) as pool:
            # train_member lives in train.py: a spawned worker unpickles it by module name,
            # and this module runs as __main__ under `python -m`, which a worker cannot import.
            futures = {name: pool.submit(train_member, datasets, workdir, name, member_config,
                                         args.finetune_steps, args.finetune_hard_fraction)
                       for name, member_config in todo}
            checkpoints.update({name: future.result() for name, future in futures.items()})
    return [checkpoints[name] for name, _ in members]


def _write_ensemble(members: Sequence[str | Path], output: str | Path) -> None:
    from noetra_ros.learning.export import ensemble_onnx

    contract = ensemble_onnx(members, output)
    print(f'wrote {output}: mean of {len(members)} members '
          f'({contract.info.get("parameters")} parameters)')


def cmd_ensemble(args: argparse.Namespace) -> int:
    _write_ensemble([m for m in args.models.split(',') if m], args.output)
    return 0


def make_reference(model: str | Path, seed: int = REFERENCE_SEED) -> dict[str, np.ndarray]:
    """The stored-output fixture of a model: raw observation of a seeded SimWorld reset and
    the runtime's outputs for it (model tensors, raw chunk, post-processed chunk)."""
    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.core.sim.world import SimWorld, WorldConfig

    runtime = PolicyRuntime(model, intra_op_threads=1)
    contract = runtime.contract
    with SimWorld(WorldConfig()) as world:
        episode = world.reset(seed)
        positions = world.joint_state()[0][:len(world.joint_names)]
        gripper = world.gripper_position()
        images = {cam: world.render(cam) for cam in contract.cameras}
        joint_names = world.joint_names
    frames = {cam: ImageFrame(img, img.shape[1], img.shape[0], 'rgb8')
              for cam, img in images.items()}
    inputs = runtime.build_inputs(frames, dict(zip(joint_names, positions.tolist())),
                                  gripper_position=gripper, instruction=episode.instruction)
    chunk = runtime.infer(inputs)
    out: dict[str, np.ndarray] = {
        'seed': np.array(seed), 'instruction': np.array(episode.instruction),
        'joint_names': np.array(joint_names), 'joint_positions': positions,
        'gripper_position': np.array(gripper), 'cameras': np.array(contract.cameras),
        'expected_raw': np.asarray(chunk.raw), 'expected_actions': np.asarray(chunk.values)}
    for cam, img in images.items():
        out[f'image.{cam}'] = img
    for name, tensor in inputs.tensors.items():
        out[f'input.{name}'] = tensor
    return out


def cmd_reference(args: argparse.Namespace) -> int:
    data = make_reference(args.model or shipped_model(), args.seed)
    output = Path(args.output) if args.output else reference_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **data)
    print(f'wrote {output} ({output.stat().st_size / 1024:.0f} KiB): seed {args.seed}, '
          f'instruction {str(data["instruction"])!r}, first action row '
          f'{np.round(data["expected_actions"][0], 4).tolist()}')
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.suffix == '.onnx':
        from noetra_ros.core.policy.contract import load_contract
        print(load_contract(path).to_yaml())
    else:
        from noetra_ros.learning.dataset import describe, read_dataset
        print(describe(read_dataset(path, load_videos=False)))
    return 0


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--workers', type=int, default=0,
                        help='spread the episodes over N Ray workers (default 0: serial, in this '
                             'process); results equal the serial run seed for seed '
                             '(docs/DISTRIBUTED.md)')
    parser.add_argument('--address', default=None,
                        help='with --workers: a Ray cluster (ray://HEAD:10001, HEAD:6379 or '
                             'auto); default a local Ray runtime')


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    parser = argparse.ArgumentParser(prog='python -m noetra_ros.learning',
                                     description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('record', help='record expert demonstrations into a LeRobotDataset')
    p.add_argument('--output', required=True)
    p.add_argument('--robot', default='fanuc_lrmate200id')
    p.add_argument('--episodes', type=int, default=200)
    p.add_argument('--first-seed', type=int, default=0)
    p.add_argument('--cameras', default=','.join(DEFAULT_CAMERAS))
    p.add_argument('--action-noise', type=float, default=0.0,
                   help='std (rad) of the offset added to the executed arm command')
    p.add_argument('--noise-phases', default='',
                   help='expert phases with injected noise, e.g. approach,transfer (default all)')
    _add_ray_options(p)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser('train', help='train a policy on a dataset')
    p.add_argument('--dataset', required=True)
    p.add_argument('--output', required=True)
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser('export', help='export a checkpoint to ONNX with its contract')
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--output', required=True)
    p.add_argument('--dataset', default=None, help='real samples for the parity check')
    p.set_defaults(func=cmd_export)

    p = sub.add_parser('all', help='record (unless present), train and export: the shipped '
                       "model's recipe")
    p.add_argument('--workdir', required=True)
    p.add_argument('--model', required=True)
    p.add_argument('--robot', default='fanuc_lrmate200id')
    p.add_argument('--episodes', type=int, default=240, help='clean expert episodes')
    p.add_argument('--noisy-episodes', type=int, default=160,
                   help='noise-injected episodes, seeded after the clean ones')
    p.add_argument('--wide-episodes', type=int, default=160,
                   help='episodes with large offsets in the free-space moves only')
    p.add_argument('--first-seed', type=int, default=0)
    p.add_argument('--action-noise', type=float, default=0.015,
                   help='std (rad) of the noise-injected episodes\' executed-command offset')
    p.add_argument('--wide-noise', type=float, default=0.04,
                   help='std (rad) of the offset in the wide episodes\' approach / transfer')
    p.add_argument('--finetune-steps', type=int, default=0,
                   help='second training stage (0 = none)')
    p.add_argument('--finetune-hard-fraction', type=float, default=0.25)
    p.add_argument('--jobs', type=int, default=2, help='recordings run in parallel')
    p.add_argument('--members', type=int, default=4,
                   help='networks whose mean action is shipped (default 4: the shipped '
                        'recipe): alternately with and without the heading head, each pair '
                        'with the next training seed (1 = one network, no ensemble)')
    p.add_argument('--train-jobs', type=int, default=2,
                   help='members trained in parallel (one process each)')
    _add_train_options(p)
    p.set_defaults(func=cmd_all)

    p = sub.add_parser('ensemble', help='one ONNX model averaging models of one contract')
    p.add_argument('--models', required=True, help='comma-separated ONNX files')
    p.add_argument('--output', required=True)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser('evalcheck', help='closed-loop success of an ONNX policy in the sim, '
                       'run as a cell\'s graph runs it (supervisor included), without ROS')
    p.add_argument('--model', default=None,
                   help=f'ONNX policy (default: the shipped models/{SHIPPED_MODEL_FILE})')
    p.add_argument('--cell', default=DEFAULT_EVAL_CELL,
                   help='cell file (name or path) giving the robot, world, episode limit, '
                        'policy loop and safety supervisor (default %(default)s)')
    p.add_argument('--episode-timeout', type=float, default=None,
                   help='episode limit in sim seconds (default: the cell\'s)')
    p.add_argument('--seeds', default=HELD_OUT_SEEDS, help="'a:b' (range) or 'a,b,c'")
    # Default: the cell's policy node settings.
    p.add_argument('--replan-every', type=int, default=None)
    p.add_argument('--blend', default=None, choices=BLEND_STRATEGIES)
    p.add_argument('--rtc-horizon', type=float, default=None,
                   help='blend rtc: seconds over which a new chunk\'s correction fades out '
                        '(default: the cell\'s rtc_horizon_s, 0 = its blend_window_s)')
    p.add_argument('--inference-delay-steps', type=int, default=None,
                   help='emulate an inference that takes N control steps: each chunk is used '
                        'N steps after its observation, one inference in flight '
                        '(docs/REALTIME_CHUNKING.md; default: the cell\'s, 0)')
    p.add_argument('--one-run', action='store_true',
                   help='run the seeds as one `noetra eval` run does (one supervisor, reset '
                        'pauses, a running clock): the results are that run\'s; default: '
                        'every episode on its own, as the first of a run')
    p.add_argument('--lighting', default=None,
                   help='lighting condition of the cameras (core/sim/lighting.CONDITIONS: '
                        'default, darker_15, darker_30, warm, cool, side; default: the cell\'s)')
    p.add_argument('--phrasing', default='template',
                   help="instruction phrasing: 'template' (the task's text), or a split of "
                        "core/phrasing.py (train, held_out, synonyms), optionally ':en' / ':ja'; "
                        'drawn per seed (default %(default)s)')
    p.add_argument('--expert', action='store_true', help='also run the expert on the seeds')
    p.add_argument('--json', default=None, help='write the results to this file')
    p.add_argument('--verbose', action='store_true')
    _add_ray_options(p)
    p.set_defaults(func=cmd_evalcheck)

    p = sub.add_parser('reference', help='regenerate the shipped-model stored-output fixture')
    p.add_argument('--model', default=None,
                   help=f'ONNX policy (default: the shipped models/{SHIPPED_MODEL_FILE})')
    p.add_argument('--output', default=None,
                   help=f'(default: test/data/{REFERENCE_FILE} of the source checkout)')
    p.add_argument('--seed', type=int, default=REFERENCE_SEED)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser('info', help='describe a dataset folder or print a model contract')
    p.add_argument('path')
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m noetra_ros.learning`."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:   # a setting the user can fix: the message, not a traceback
        print(f'error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
