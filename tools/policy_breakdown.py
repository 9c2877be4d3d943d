#!/usr/bin/env python3
"""Where a learned policy fails: success and first-frame grounding, split by scene difficulty.

A scene is 'shared colour' when a distractor has the target's colour (so only its shape tells
them apart) and 'unique colour' otherwise. For each group it prints:

* with --eval-json (written by `python -m noetra_ros.learning evalcheck --json` or
  `noetra eval --json`): successes / episodes, also split by the named object's shape;
* with --checkpoint (a training checkpoint; needs torch): the median distance, in native
  pixels, between each camera's instruction-grounded position and the true pixel of the named
  object on the episode's first frame (arm at its ready pose), and how many are off by > 5 px.

    python tools/policy_breakdown.py --eval-json runs/policy.json \
        --checkpoint models/pick_place_lrmate_member_heading.pt --seeds 10000:10050
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.sim.world import SimWorld, WorldConfig  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds  # noqa: E402

OFF_PX = 5.0


def scene_group(episode) -> str:
    target = episode.objects[0]
    shared = any(o.colour == target.colour for o in episode.objects[1:])
    return 'shared colour' if shared else 'unique colour'


def eval_outcomes(path: pathlib.Path) -> dict[int, bool]:
    """seed -> success from an evalcheck JSON (list of results) or a `noetra eval` JSON."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        data = data[0]
    if 'seeds' in data:
        return dict(zip(data['seeds'], data['successes']))
    if 'episode_results' not in data:
        raise SystemExit(f'{path}: no per-episode results (written by an older noetra eval)')
    return {int(e['seed']): bool(e['success']) for e in data['episode_results']}


def first_frame_grounding(checkpoint: pathlib.Path, world: SimWorld, seeds: list[int]):
    """seed -> per camera pixel error of the grounding map on the first frame."""
    import torch

    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.learning.export import export_onnx
    from noetra_ros.learning.train import (
        grid_to_native, grounding_cells, load_checkpoint, pixels_in_image)

    model, contract, _ = load_checkpoint(checkpoint)
    if not model.config.grounding:
        raise SystemExit(f'{checkpoint}: the model has no grounding maps')
    with tempfile.TemporaryDirectory() as tmp:
        # The runtime's build_inputs is the deployment pre-processing; it needs a model file.
        onnx_path = pathlib.Path(tmp) / 'policy.onnx'
        export_onnx(model, contract, onnx_path)
        runtime = PolicyRuntime(onnx_path)
    out = {}
    for seed in seeds:
        episode = world.reset(seed)
        frames = {}
        for cam in contract.cameras:
            image = world.render(cam)
            frames[cam] = ImageFrame(image, image.shape[1], image.shape[0], 'rgb8')
        positions = world.joint_state()[0][:len(world.joint_names)]
        inputs = runtime.build_inputs(frames, dict(zip(world.joint_names, positions.tolist())),
                                      gripper_position=world.gripper_position(),
                                      instruction=episode.instruction)
        with torch.no_grad():
            _, extras = model.forward_with_aux(
                *[torch.from_numpy(inputs.tensors[n]) for n in contract.input_names])
        target, _ = world.target_object_pose()
        errors = []
        for spec, logits in zip(contract.image_inputs, extras['grounding']):
            native_w, native_h = frames[spec.camera].width, frames[spec.camera].height
            found = grid_to_native(grounding_cells(logits), spec, native_w, native_h)[0]
            truth = world.project(spec.camera, target)
            inside = bool(pixels_in_image(truth[None, :], native_w, native_h)[0])
            errors.append(float(np.linalg.norm(found - truth)) if inside else float('nan'))
        out[seed] = errors
    runtime.close()
    return contract.cameras, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--eval-json', type=pathlib.Path, default=None)
    parser.add_argument('--checkpoint', type=pathlib.Path, default=None)
    parser.add_argument('--seeds', default='10000:10050', help="'a:b' (range) or 'a,b,c'")
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    world = SimWorld(WorldConfig())
    groups = {seed: scene_group(world.reset(seed)) for seed in seeds}
    names = sorted(set(groups.values()))
    if args.eval_json:
        outcomes = eval_outcomes(args.eval_json)
        # The named object's shape: a block (65 x 32 mm) needs the most exact grasp.
        shapes = {seed: world.reset(seed).objects[0].shape for seed in seeds}
        for split, keys in ((groups, names), (shapes, sorted(set(shapes.values())))):
            for name in keys:
                members = [s for s in seeds if split[s] == name and s in outcomes]
                wins = sum(outcomes[s] for s in members)
                print(f'{name:14s} success {wins:3d} / {len(members):3d}')
    if args.checkpoint:
        cameras, errors = first_frame_grounding(args.checkpoint, world, seeds)
        for name in names:
            table = np.array([errors[s] for s in seeds if groups[s] == name])
            cells = [f'{cam} median {np.nanmedian(table[:, i]):4.1f} px, '
                     f'{int(np.sum(table[:, i] > OFF_PX))} > {OFF_PX:.0f} px'
                     for i, cam in enumerate(cameras)]
            print(f'{name:14s} first-frame grounding ({len(table)} scenes): ' + '; '.join(cells))
    world.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
