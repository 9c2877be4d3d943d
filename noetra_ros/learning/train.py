"""Train :class:`VisuomotorPolicy` by behaviour cloning on a recorded LeRobotDataset.

Reproducible command (the one behind models/pick_place_lrmate.onnx, see models/MODEL_CARD.md):

    python -m noetra_ros.learning train --dataset <clean dir>,<noisy dir> \
        --output <checkpoint.pt> --steps 9000 --threads 1

Training-time pre-processing goes through the deployment code path: the policy contract is built
first (from the dataset statistics and the task vocabulary) and every image, state and instruction
is turned into a tensor by ``noetra_ros.core.policy.preprocess`` / ``tokenizer`` with that
contract, exactly as ``PolicyRuntime`` does on the robot. There is no second implementation of
the transforms to drift out of step.

Targets: for frame t the chunk of the T expert actions a[t], ..., a[t+T-1] (the last action of the
episode repeats past its end, i.e. the arm holds), normalised with the action mean / std stored
in the contract. Loss: L1 on the normalised chunk, plus `aux_weight` x L1 of the training-only
key-pose head (the arm targets at which the expert last closed and then opened the gripper in
this episode, read from the recorded actions; see model.py). Optimiser: AdamW with warm-up and
cosine decay; an exponential moving average of the weights is what gets saved and exported.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
import math
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.sim.task import (
    COLOURS, GRASP_SYMMETRY_RAD, instruction_text, PLACES, SHAPES)
from noetra_ros.learning.dataset import (
    concat_datasets, episode_bounds, LoadedDataset, progress, read_dataset)

# Below this the std of a state / action component is raised to it: a joint that barely moved in
# the demonstrations must not turn sensor noise into large normalised inputs.
MIN_JOINT_STD_RAD = 0.05
MIN_GRIPPER_STD_M = 0.005
# Floor of the joint action scale, which is the spread of (target - current position) over a
# chunk (see build_contract), not of the absolute targets.
MIN_JOINT_DELTA_STD_RAD = 0.005
IMAGE_STD_FLOOR = 0.05
# Units of the target-position head: metres from the middle of the object region, per 0.1 m.
TARGET_CENTRE_M = np.array([0.45, 0.0, 0.05])
TARGET_SCALE_M = 0.1
# Input pixels per grounding-map cell: model.CameraEncoder's two stride-2 convs (padding k // 2)
# put cell j's centre on input pixel 4 j.
GROUNDING_STRIDE = 4


def pixels_in_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N] bool: which (u, v) rows (pixel-centre convention) lie inside a width x height image."""
    return (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)


def native_to_grid(uv: np.ndarray, spec: Any, native_w: int, native_h: int) -> np.ndarray:
    """Native camera pixels -> grounding-map cells of an image input `spec` (stretch resize)."""
    scale = np.array([spec.width / native_w, spec.height / native_h])
    return ((np.asarray(uv, dtype=np.float64) + 0.5) * scale - 0.5) / GROUNDING_STRIDE


def grid_to_native(grid: np.ndarray, spec: Any, native_w: int, native_h: int) -> np.ndarray:
    """Inverse of native_to_grid."""
    scale = np.array([native_w / spec.width, native_h / spec.height])
    return (np.asarray(grid, dtype=np.float64) * GROUNDING_STRIDE + 0.5) * scale - 0.5


def grounding_cells(logits: Any) -> np.ndarray:
    """[B, 2] expected (column, row) cell of grounding logits [B, 1, h, w] (spatial softmax)."""
    import torch

    feat_h, feat_w = logits.shape[2:]
    prob = torch.softmax(logits.flatten(1), dim=1).reshape(-1, feat_h, feat_w)
    column = (prob.sum(dim=1) * torch.arange(feat_w)).sum(dim=1)
    row = (prob.sum(dim=2) * torch.arange(feat_h)).sum(dim=1)
    return torch.stack([column, row], dim=1).detach().numpy().astype(np.float64)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all stored in the checkpoint)."""

    steps: int = 9000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    chunk_length: int = 10
    max_tokens: int = 16
    image_width: int = 128
    image_height: int = 96
    shift_pixels: int = 4
    val_fraction: float = 0.05
    val_every: int = 500
    seed: int = 0
    threads: int = 2
    conv_channels: int = 32
    keypoints: int = 32
    hidden: int = 256
    aux_weight: float = 0.5
    state_noise: float = 0.0
    film: bool = False
    grounding: bool = True
    grounding_weight: float = 1.0
    grounding_sigma: float = 1.0
    grounding_hard_fraction: float = 0.0
    # Weight of "find the other objects by their names": per frame, the grounding map is also
    # asked for each distractor (instruction built from its colour and shape), supervised with
    # its recorded pixel. Needs the object columns of observation.environment_state.
    object_grounding_weight: float = 1.0
    # Cameras whose map gets those queries (comma-separated; '' = every camera).
    object_grounding_cameras: str = ''
    target_position: bool = True
    target_weight: float = 1.0
    # Pool each camera's features under its grounding map (model.PolicyConfig.glimpse).
    glimpse: bool = True
    # Regress the named object's symmetric heading from the glimpses (needs glimpse and the
    # recorded target_yaw column; model.PolicyConfig.target_heading), weighted by heading_weight.
    target_heading: bool = True
    heading_weight: float = 1.0
    stem_channels: int = 16
    action_scale: str = 'absolute'
    contract_name: str = 'pick_place_lrmate'
    init_checkpoint: str = ''  # continue from this checkpoint (same cameras / joints)

    def __post_init__(self) -> None:
        for name in ('steps', 'batch_size', 'chunk_length', 'max_tokens', 'val_every', 'threads',
                     'conv_channels', 'keypoints', 'hidden', 'image_width', 'image_height'):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f'{name}={value!r}: must be a positive integer')
        for name in ('learning_rate', 'grad_clip'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name}={value!r}: must be > 0')
        if self.action_scale not in ('absolute', 'delta'):
            raise ConfigError(f'action_scale={self.action_scale!r}: allowed: absolute, delta')
        if not (math.isfinite(self.state_noise) and self.state_noise >= 0.0):
            raise ConfigError(f'state_noise={self.state_noise!r}: must be >= 0')
        if self.target_position and not self.grounding:
            raise ConfigError('target_position=True needs grounding=True')
        if self.glimpse and not self.grounding:
            raise ConfigError('glimpse=True needs grounding=True')
        if self.target_heading and not self.glimpse:
            raise ConfigError('target_heading=True needs glimpse=True')
        if not (math.isfinite(self.heading_weight) and self.heading_weight >= 0.0):
            raise ConfigError(f'heading_weight={self.heading_weight!r}: must be >= 0')
        if not 0.0 <= self.grounding_hard_fraction <= 1.0:
            raise ConfigError(f'grounding_hard_fraction={self.grounding_hard_fraction!r}: '
                              'must be in [0, 1]')
        if not (math.isfinite(self.target_weight) and self.target_weight >= 0.0):
            raise ConfigError(f'target_weight={self.target_weight!r}: must be >= 0')
        if not (math.isfinite(self.grounding_weight) and self.grounding_weight >= 0.0):
            raise ConfigError(f'grounding_weight={self.grounding_weight!r}: must be >= 0')
        if not (math.isfinite(self.object_grounding_weight)
                and self.object_grounding_weight >= 0.0):
            raise ConfigError(f'object_grounding_weight={self.object_grounding_weight!r}: '
                              'must be >= 0')
        if not (math.isfinite(self.grounding_sigma) and self.grounding_sigma > 0.0):
            raise ConfigError(f'grounding_sigma={self.grounding_sigma!r}: must be > 0')
        if self.stem_channels < 0:
            raise ConfigError(f'stem_channels={self.stem_channels!r}: must be >= 0')
        if not (math.isfinite(self.aux_weight) and self.aux_weight >= 0.0):
            raise ConfigError(f'aux_weight={self.aux_weight!r}: must be >= 0')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f'ema_decay={self.ema_decay!r}: must be in [0, 1)')
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f'val_fraction={self.val_fraction!r}: must be in [0, 0.5)')
        if self.shift_pixels < 0 or self.warmup_steps < 0 or self.seed < 0:
            raise ConfigError('shift_pixels, warmup_steps and seed must be >= 0')


def task_vocabulary() -> tuple[str, ...]:
    """Word vocabulary of every instruction the task can produce (from sim/task.py)."""
    from noetra_ros.core.policy.tokenizer import build_vocabulary

    texts = [instruction_text(c, s, p) for c in COLOURS for s in SHAPES for p in PLACES]
    return build_vocabulary(texts)


def _floored_std(names: list[str], std: np.ndarray) -> np.ndarray:
    floors = np.array([MIN_GRIPPER_STD_M if 'gripper' in n else MIN_JOINT_STD_RAD for n in names])
    return np.maximum(np.asarray(std, dtype=np.float64), floors)


def build_contract(data: LoadedDataset, config: TrainConfig, info: dict[str, Any] | None = None):
    """The policy contract for a dataset: inputs = its cameras + state + instruction, output =
    a chunk of absolute joint position + gripper targets. Normalisation comes from stats.json.

    Camera names become both the ONNX input names and the ROS camera namespaces, so they must be
    the names the sim publishes (``scene_camera``, ``wrist_camera``).
    """
    from noetra_ros.core.policy.contract import (
        ActionComponent, ActionOutput, ImageInput, InstructionInput, PolicyContract,
        StateComponent, StateInput)

    state_names = data.names('observation.state')
    action_names = data.names('action')
    joints = [n for n in state_names if 'gripper' not in n]
    if state_names != joints + ['gripper_position'] or action_names != state_names:
        raise ConfigError(f'dataset state/action names {state_names} / {action_names}: expected '
                          'the arm joints followed by gripper_position in both')
    inputs: list[Any] = []
    for cam in data.cameras:
        key = 'observation.images.' + cam
        stats = data.stats[key]
        mean = [float(v[0][0]) for v in stats['mean']]
        std = [max(float(v[0][0]), IMAGE_STD_FLOOR) for v in stats['std']]
        # The camera's frames (any size) are resized to the model size by preprocess.py, in
        # training as at deployment; per-channel statistics do not change with the size.
        inputs.append(ImageInput(name=cam, camera=cam, height=config.image_height,
                                 width=config.image_width,
                                 resize='stretch', color_order='rgb', layout='nchw',
                                 scale=255.0, mean=tuple(mean), std=tuple(std)))
    state_stats = data.stats['observation.state']
    inputs.append(StateInput(
        name='state',
        components=(StateComponent(source='joint_positions', joints=tuple(joints)),
                    StateComponent(source='gripper_position')),
        mean=tuple(float(v) for v in state_stats['mean']),
        std=tuple(float(v) for v in _floored_std(state_names, state_stats['std']))))
    inputs.append(InstructionInput(name='instruction', vocabulary=task_vocabulary(),
                                   max_length=config.max_tokens))
    action_stats = data.stats['action']
    action_std = _floored_std(action_names, action_stats['std'])
    if config.action_scale == 'delta':
        # Joint action scale = std of (a[t + k] - q[t]) over the chunk instead of the std of
        # the absolute targets: the policy adds its output to the measured joints (model.py),
        # and with the absolute std a 0.01 rad miss on joint_1 (spread 0.4 rad) weighs 8x less
        # in the loss than on a joint that barely moves. (Tried for the shipped model's run of
        # experiments; it did not raise closed-loop success there, see models/MODEL_CARD.md.)
        bounds = episode_bounds(data)
        deltas = []
        for k in range(config.chunk_length):
            for lo, hi in bounds:
                ahead = np.minimum(np.arange(lo, hi) + k, hi - 1)
                deltas.append(data.action[ahead, :len(joints)] - data.state[lo:hi, :len(joints)])
        delta_std = np.concatenate(deltas).astype(np.float64).std(axis=0)
        action_std[:len(joints)] = np.maximum(delta_std, MIN_JOINT_DELTA_STD_RAD)
    output = ActionOutput(
        name='actions', chunk_length=config.chunk_length, step_period_s=1.0 / data.fps,
        components=(ActionComponent(meaning='joint_positions', mode='absolute',
                                    joints=tuple(joints)),
                    ActionComponent(meaning='gripper_position', mode='absolute')),
        mean=tuple(float(v) for v in action_stats['mean']),
        std=tuple(float(v) for v in action_std))
    return PolicyContract(
        name=config.contract_name, robot_joints=tuple(joints), inputs=tuple(inputs),
        outputs=(output,),
        description=('Pick the named object and place it in the named bin; behaviour-cloned '
                     'from the scripted expert in the PyBullet cell (noetra_ros.learning).'),
        info=info or {})


class TrainingSamples:
    """Frame-indexed training data turned into model tensors with the contract's transforms."""

    def __init__(self, data: LoadedDataset, contract: Any, chunk_length: int) -> None:
        from noetra_ros.core.policy.preprocess import state_to_tensor
        from noetra_ros.core.policy.tokenizer import Tokenizer

        self.data = data
        self.contract = contract
        self.image_specs = contract.image_inputs
        state_spec = contract.state_input
        joints = state_spec.components[0].joints
        # One state_to_tensor call per frame: the exact deployment transform, done once.
        self.state = np.concatenate([
            state_to_tensor(state_spec, dict(zip(joints, row[:-1])), gripper_position=row[-1])
            for row in data.state.astype(np.float64)])
        tokenizer = Tokenizer(contract.instruction_input)
        self.task_tokens = np.concatenate([tokenizer.encode(t).ids for t in data.tasks])
        action = contract.action
        self.action = ((data.action.astype(np.float64) - np.asarray(action.mean))
                       / np.asarray(action.std)).astype(np.float32)
        bounds = episode_bounds(data)
        last = np.empty(len(data), dtype=np.int64)
        for lo, hi in bounds:
            last[lo:hi] = hi - 1
        offsets = np.arange(chunk_length)[None, :]
        self.chunk_rows = np.minimum(np.arange(len(data))[:, None] + offsets, last[:, None])
        self.bounds = bounds
        self.key_poses = self._key_poses(data, bounds, action, state_spec)
        self.target_pixels = self._target_pixels(data)
        self.target_position = self._target_position(data)
        self.objects = self._scene_objects(data)
        self.target_heading = self._target_heading(data)
        # Tokens of every (colour, shape) instruction, for the object-grounding queries.
        self.object_tokens = np.stack([
            np.stack([tokenizer.encode(instruction_text(colour, shape, PLACES[0])).ids[0]
                      for shape in SHAPES]) for colour in COLOURS])

    def _scene_objects(self, data: LoadedDataset) -> dict[str, Any] | None:
        """The recorded object slots (record.environment_names): 'colour' / 'shape' [N, S]
        indices (-1 = empty slot) and per camera 'pixels' [N, S, 2]; None without them."""
        if data.environment_state is None:
            return None
        names = data.names('observation.environment_state')
        slots = 0
        while f'object{slots}_colour' in names:
            slots += 1
        if slots == 0:
            return None
        env = data.environment_state
        column = lambda key: env[:, names.index(key)]  # noqa: E731
        out: dict[str, Any] = {
            'colour': np.stack([column(f'object{i}_colour') for i in range(slots)], 1
                               ).astype(np.int64),
            'shape': np.stack([column(f'object{i}_shape') for i in range(slots)], 1
                              ).astype(np.int64),
            'pixels': {}}
        for spec in self.image_specs:
            keys = [(f'object{i}_u_{spec.camera}', f'object{i}_v_{spec.camera}')
                    for i in range(slots)]
            if all(k in names for pair in keys for k in pair):
                out['pixels'][spec.camera] = np.stack(
                    [np.stack([column(u), column(v)], 1) for u, v in keys], 1)
        return out

    def shared_colour_rows(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows)] bool: scenes where a distractor has the named object's colour (slot 0
        is the named object), the scenes only its shape tells apart."""
        if self.objects is None:
            return np.zeros(len(rows), dtype=bool)
        colour = self.objects['colour'][rows]
        return (colour[:, 1:] == colour[:, :1]).any(axis=1)

    def object_queries(self, rows: np.ndarray, shifts: list[np.ndarray], sigma: float,
                       cameras: Sequence[str] = ()
                       ) -> list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray] | None]]]:
        """Per distractor slot: (instruction tokens [B, L] naming that slot's object, per camera
        (soft target, valid mask) as grounding_targets gives them, None for a camera outside
        `cameras` when that is given). Empty slots are masked."""
        if self.objects is None:
            return []
        out = []
        for slot in range(1, self.objects['colour'].shape[1]):
            colour = self.objects['colour'][rows, slot]
            shape = self.objects['shape'][rows, slot]
            present = colour >= 0
            tokens = self.object_tokens[np.maximum(colour, 0), np.maximum(shape, 0)]
            targets = []
            for spec, shift in zip(self.image_specs, shifts):
                pixels = self.objects['pixels'].get(spec.camera)
                if pixels is None or (cameras and spec.camera not in cameras):
                    targets.append(None)
                    continue
                weights, valid = self._soft_targets(pixels[rows, slot], shift, spec, sigma)
                targets.append((weights, valid & present))
            out.append((tokens, targets))
        return out

    @staticmethod
    def _target_heading(data: LoadedDataset) -> tuple[np.ndarray, np.ndarray] | None:
        """((N, 4) cos / sin of 2 yaw and 4 yaw of the named object, (N, 4) mask), or None
        without the target_yaw and object0_shape columns. Only the multiples of the yaw that the
        shape's grasp symmetry leaves unchanged are defined (task.GRASP_SYMMETRY_RAD): both pairs
        for a block (same after a half turn), the 4-yaw pair for a cube (a quarter turn),
        nothing for a cylinder (round)."""
        if data.environment_state is None:
            return None
        names = data.names('observation.environment_state')
        if 'target_yaw' not in names or 'object0_shape' not in names:
            return None
        yaw = data.environment_state[:, names.index('target_yaw')].astype(np.float64)
        shape = data.environment_state[:, names.index('object0_shape')].astype(np.int64)
        value = np.stack([np.cos(2 * yaw), np.sin(2 * yaw), np.cos(4 * yaw), np.sin(4 * yaw)],
                         axis=1)
        # k x yaw is defined when k times the shape's symmetry turn (task.GRASP_SYMMETRY_RAD;
        # 0 = round, nothing defined) is a whole turn.
        def defined(k: int) -> np.ndarray:
            turns = [k * GRASP_SYMMETRY_RAD[name] / (2 * math.pi) for name in SHAPES]
            ok = [t > 0 and abs(t - round(t)) < 1e-9 for t in turns]
            return np.isin(shape, [i for i, good in enumerate(ok) if good])

        two, four = defined(2), defined(4)
        mask = np.stack([two, two, four, four], axis=1)
        return value.astype(np.float32), mask.astype(np.float32)

    @staticmethod
    def _target_position(data: LoadedDataset) -> np.ndarray | None:
        """(N, 3) base-frame position of the instructed object in the units the model's
        target head predicts ((p - TARGET_CENTRE_M) / TARGET_SCALE_M), or None."""
        if data.environment_state is None:
            return None
        names = data.names('observation.environment_state')
        keys = ('target_x', 'target_y', 'target_z')
        if not all(k in names for k in keys):
            return None
        position = data.environment_state[:, [names.index(k) for k in keys]].astype(np.float64)
        return ((position - TARGET_CENTRE_M) / TARGET_SCALE_M).astype(np.float32)

    def _target_pixels(self, data: LoadedDataset) -> dict[str, np.ndarray]:
        """Camera -> (N, 2) native pixel (u, v) of the instructed object, for the cameras whose
        columns the dataset's observation.environment_state has (grounding targets)."""
        if data.environment_state is None:
            return {}
        names = data.names('observation.environment_state')
        out = {}
        for spec in self.image_specs:
            keys = (f'target_u_{spec.camera}', f'target_v_{spec.camera}')
            if all(k in names for k in keys):
                out[spec.camera] = data.environment_state[:, [names.index(k) for k in keys]]
        return out

    def grounding_targets(self, rows: np.ndarray, shifts: list[np.ndarray],
                          sigma: float) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per camera: (soft target over the feature grid [B, h*w], valid mask [B]) or None.

        The object's native pixel moves with the augmentation shift and is mapped onto the
        grounding map (native_to_grid). The target is a Gaussian of `sigma` cells around it.
        """
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        for spec, shift in zip(self.image_specs, shifts):
            pixels = self.target_pixels.get(spec.camera)
            if pixels is None:
                out.append(None)
                continue
            out.append(self._soft_targets(pixels[rows], shift, spec, sigma))
        return out

    def _soft_targets(self, pixels: np.ndarray, shift: np.ndarray, spec: Any,
                      sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """(Gaussian of `sigma` cells around each shifted native pixel on the grounding grid
        [B, h*w], [B] mask of the pixels inside the image)."""
        native_h, native_w = self.data.images[spec.camera].shape[1:3]
        uv = pixels.astype(np.float64) + shift
        valid = pixels_in_image(uv, native_w, native_h)
        grid = native_to_grid(uv, spec, native_w, native_h)
        feat_h = -(-spec.height // GROUNDING_STRIDE)
        feat_w = -(-spec.width // GROUNDING_STRIDE)
        cols = np.arange(feat_w)[None, None, :]
        lines = np.arange(feat_h)[None, :, None]
        d2 = ((cols - grid[:, 0, None, None]) ** 2 + (lines - grid[:, 1, None, None]) ** 2)
        weights = np.exp(-0.5 * d2 / sigma ** 2).reshape(len(pixels), -1)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        return weights.astype(np.float32), valid

    @staticmethod
    def _key_poses(data: LoadedDataset, bounds: np.ndarray, action: Any,
                   state_spec: Any) -> np.ndarray:
        """Per frame: arm targets at the episode's (last) grasp and release, normalised like
        the state (they are absolute joint positions)."""
        joints = action.slices['joint_positions']
        grip_col = action.slices['gripper_position'].start
        mean = np.asarray(state_spec.mean)[joints]
        std = np.asarray(state_spec.std)[joints]
        out = np.zeros((len(data), 2 * (joints.stop - joints.start)), dtype=np.float32)
        for lo, hi in bounds:
            grip = data.action[lo:hi, grip_col]
            closed = grip > 0.5 * float(np.max(grip)) if np.max(grip) > 0 else grip > 1.0
            opens = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
            release = int(opens[-1]) if len(opens) else hi - lo - 1
            closes = np.flatnonzero(closed[1:release + 1] & ~closed[:release]) + 1
            grasp = int(closes[-1]) if len(closes) else release
            pose = np.concatenate([data.action[lo + grasp, joints], data.action[lo + release,
                                                                               joints]])
            out[lo:hi] = ((pose - np.tile(mean, 2)) / np.tile(std, 2)).astype(np.float32)
        return out

    def __len__(self) -> int:
        return len(self.data)

    def images(self, rows: np.ndarray, rng: np.random.Generator | None,
               shift: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(float32 [B, C, H, W] per camera, per camera the [B, 2] (du, dv) native-pixel
        displacement of the content); a random shift of up to `shift` px when rng given."""
        from noetra_ros.core.policy.preprocess import image_to_tensor

        out, moves = [], []
        for spec in self.image_specs:
            frames = self.data.images[spec.camera]
            h, w = frames.shape[1:3]
            batch = np.empty((len(rows),) + spec.shape[1:], dtype=np.float32)
            move = np.zeros((len(rows), 2))
            for i, row in enumerate(rows):
                frame = frames[row]
                if rng is not None and shift > 0:
                    padded = np.pad(frame, ((shift, shift), (shift, shift), (0, 0)), mode='edge')
                    dy, dx = rng.integers(0, 2 * shift + 1, size=2)
                    frame = padded[dy:dy + h, dx:dx + w]
                    move[i] = (shift - dx, shift - dy)
                image_to_tensor(np.ascontiguousarray(frame), w, h, 'rgb8', spec,
                                out=batch[i:i + 1])
            out.append(batch)
            moves.append(move)
        return out, moves

    def batch(self, rows: np.ndarray, rng: np.random.Generator | None = None,
              shift: int = 0, with_moves: bool = False):
        """(model inputs in contract order, normalised target chunks [B, T, A]) and, with
        `with_moves`, the per-camera image shifts (for grounding_targets)."""
        inputs, moves = self.images(rows, rng, shift)
        inputs.append(self.state[rows])
        inputs.append(self.task_tokens[self.data.task_index[rows]])
        if with_moves:
            return inputs, self.action[self.chunk_rows[rows]], moves
        return inputs, self.action[self.chunk_rows[rows]]


def split_episodes(num_episodes: int, val_fraction: float,
                   seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) episode indices; validation is a seeded random subset."""
    rng = np.random.default_rng(seed + 7919)
    order = rng.permutation(num_episodes)
    n_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes > 1:
        n_val = max(1, n_val)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _rows_of(bounds: np.ndarray, episodes: list[int]) -> np.ndarray:
    if not episodes:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(bounds[e, 0], bounds[e, 1]) for e in episodes])


def make_policy(contract: Any, config: TrainConfig):
    """A freshly initialised VisuomotorPolicy shaped for `contract`."""
    from noetra_ros.learning.model import PolicyConfig, VisuomotorPolicy

    images = contract.image_inputs
    joints = contract.action.component('joint_positions')
    policy_config = PolicyConfig(
        cameras=tuple(s.camera for s in images), image_height=images[0].height,
        image_width=images[0].width, state_dim=contract.state_input.size,
        action_dim=contract.action.size, chunk_length=contract.action.chunk_length,
        vocab_size=len(contract.instruction_input.vocabulary),
        max_tokens=contract.instruction_input.max_length, conv_channels=config.conv_channels,
        keypoints=config.keypoints, hidden=config.hidden,
        residual_joints=joints.size if joints is not None else 0,
        aux_dim=2 * joints.size if joints is not None and config.aux_weight > 0 else 0,
        film=config.film, grounding=config.grounding, stem_channels=config.stem_channels,
        target_position=config.target_position, glimpse=config.glimpse,
        target_heading=config.target_heading)
    return VisuomotorPolicy(policy_config)


def _set_residual(model: Any, contract: Any) -> None:
    import torch

    state, action = contract.state_input, contract.action
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    model.set_normalisation(as_tensor(state.mean), as_tensor(state.std),
                            as_tensor(action.mean), as_tensor(action.std))


def seed_everything(seed: int, threads: int) -> None:
    """Seed torch / numpy and ask torch for deterministic kernels on `threads` threads."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def grounding_loss(logits: list[Any], targets: list[tuple[np.ndarray, np.ndarray] | None],
                   hard_fraction: float = 0.0):
    """Cross-entropy of each camera's grounding map against its soft target, over the samples
    where the object is in view; 0 when no camera has a target. With `hard_fraction` > 0 the
    mean over that fraction of the batch with the highest loss is added: the scenes where the
    colour alone does not name the object (a distractor shares it) are rare and hard, and the
    plain mean lets them sit at a map split between the look-alikes."""
    import torch

    total = torch.zeros(())
    for camera_logits, target in zip(logits, targets):
        if camera_logits is None or target is None or not target[1].any():
            continue
        weights, valid = target
        mask = torch.from_numpy(valid)
        log_p = torch.log_softmax(camera_logits.flatten(1), dim=1)[mask]
        per_sample = -(torch.from_numpy(weights)[mask] * log_p).sum(dim=1)
        total = total + per_sample.mean()
        if hard_fraction > 0.0:
            k = max(1, int(round(hard_fraction * len(per_sample))))
            total = total + torch.topk(per_sample, k).values.mean()
    return total


def auxiliary_losses(model: Any, config: Any, samples: 'TrainingSamples', rows: np.ndarray,
                     moves: list[np.ndarray], queries: list, extras: dict):
    """The weighted training-only losses next to the action loss: grounding of the named
    object and of the other objects (`queries`, from samples.object_queries), the target
    position and heading heads and the key-pose head. `config` holds the weights (TrainConfig
    names); `extras` is what forward_with_aux returned with the same queries."""
    import torch

    loss = torch.zeros(())
    for (_, targets), logits in zip(queries, extras['query_grounding'] or []):
        loss = loss + config.object_grounding_weight * grounding_loss(logits, targets)
    if extras['target_position'] is not None and samples.target_position is not None:
        truth = torch.from_numpy(samples.target_position[rows])
        loss = loss + config.target_weight * torch.abs(extras['target_position'] - truth).mean()
    if extras['target_heading'] is not None and samples.target_heading is not None:
        value, mask = (torch.from_numpy(a[rows]) for a in samples.target_heading)
        miss = torch.abs(extras['target_heading'] - value) * mask
        loss = loss + config.heading_weight * miss.sum() / mask.sum().clamp(min=1.0)
    if extras['key_poses'] is not None:
        aux_target = torch.from_numpy(samples.key_poses[rows])
        loss = loss + config.aux_weight * torch.abs(extras['key_poses'] - aux_target).mean()
    if model.config.grounding and config.grounding_weight > 0:
        loss = loss + config.grounding_weight * grounding_loss(
            extras['grounding'], samples.grounding_targets(rows, moves, config.grounding_sigma),
            config.grounding_hard_fraction)
    return loss


def perception_errors(model: Any, samples: 'TrainingSamples', rows: np.ndarray,
                      batch_size: int = 128) -> dict[str, float]:
    """How well the policy knows where the instructed object is, over `rows`: per camera the
    median distance (native pixels) between its grounding position and the object's true pixel
    (where in view), and 'target_mm', the median error of the target-position head."""
    import torch

    if len(rows) == 0 or not model.config.grounding:
        return {}
    errors: dict[str, list[np.ndarray]] = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            inputs, _ = samples.batch(chunk)
            _, extras = model.forward_with_aux(*[torch.from_numpy(x) for x in inputs])
            for spec, camera_logits in zip(samples.image_specs, extras['grounding']):
                pixels = samples.target_pixels.get(spec.camera)
                if camera_logits is None or pixels is None:
                    continue
                native_h, native_w = samples.data.images[spec.camera].shape[1:3]
                found = grid_to_native(grounding_cells(camera_logits), spec, native_w, native_h)
                truth = pixels[chunk]
                inside = pixels_in_image(truth, native_w, native_h)
                miss = np.linalg.norm(found - truth, axis=1)
                errors.setdefault(f'{spec.camera}_px', []).append(miss[inside])
                if samples.objects is not None:
                    shared = inside & samples.shared_colour_rows(chunk)
                    errors.setdefault(f'{spec.camera}_shared_colour_px', []).append(miss[shared])
            heading = extras.get('target_heading')
            if heading is not None and samples.target_heading is not None:
                value, mask = (a[chunk] for a in samples.target_heading)
                blocks = mask[:, 0] > 0
                # The block's yaw modulo a half turn: half the angle of (cos 2 yaw, sin 2 yaw).
                guess = np.arctan2(heading.numpy()[:, 1], heading.numpy()[:, 0])
                truth = np.arctan2(value[:, 1], value[:, 0])
                miss = np.abs((guess - truth + np.pi) % (2 * np.pi) - np.pi) / 2
                errors.setdefault('block_heading_deg', []).append(np.degrees(miss[blocks]))
            estimate = extras['target_position']
            if estimate is not None and samples.target_position is not None:
                miss = (estimate.numpy() - samples.target_position[chunk]) * TARGET_SCALE_M
                errors.setdefault('target_mm', []).append(1000.0 * np.linalg.norm(miss, axis=1))
    return {name: float(np.median(np.concatenate(e))) for name, e in errors.items()
            if sum(len(part) for part in e)}


def evaluate_loss(model: Any, samples: TrainingSamples, rows: np.ndarray,
                  batch_size: int = 128) -> float:
    """Mean L1 of the normalised action chunk over `rows` (no augmentation)."""
    import torch

    if len(rows) == 0:
        return float('nan')
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            inputs, target = samples.batch(chunk)
            pred = model(*[torch.from_numpy(x) for x in inputs])
            total += float(torch.abs(pred - torch.from_numpy(target)).mean()) * len(chunk)
    return total / len(rows)


def load_datasets(dataset: str | Path | Sequence[str | Path]) -> LoadedDataset:
    """One dataset folder, or several (a list, or one string joined with ',') merged."""
    if isinstance(dataset, (str, Path)):
        paths = [p for p in str(dataset).split(',') if p]
    else:
        paths = [str(p) for p in dataset]
    return concat_datasets([read_dataset(p) for p in paths], release_images=True)


def train(dataset: str | Path | Sequence[str | Path], output: str | Path,
          config: TrainConfig | None = None, log=print) -> dict[str, Any]:
    """Train on `dataset` (one folder or several, see load_datasets) and write a checkpoint to
    `output`; returns the checkpoint dict."""
    import torch

    config = config or TrainConfig()
    seed_everything(config.seed, config.threads)
    t0 = time.monotonic()
    data = load_datasets(dataset)
    log(f'loaded {len(data.episodes)} episodes, {len(data)} frames in '
        f'{time.monotonic() - t0:.0f} s')
    if config.init_checkpoint:
        if not Path(config.init_checkpoint).is_file():
            raise ConfigError(f'init_checkpoint={config.init_checkpoint!r}: no such file')
        # Fine-tuning keeps the checkpoint's contract: its weights assume its normalisation.
        model, contract, _ = load_checkpoint(config.init_checkpoint)
        missing = [cam for cam in contract.cameras if cam not in data.cameras]
        joints = list(contract.state_input.components[0].joints)
        if missing or data.names('observation.state')[:len(joints)] != joints:
            raise ConfigError(f'init_checkpoint={config.init_checkpoint!r}: its cameras '
                              f'{list(contract.cameras)} / joints {joints} do not match the '
                              f'dataset ({data.cameras} / {data.names("observation.state")})')
        log(f'continuing from {config.init_checkpoint} (its contract and weights)')
    else:
        contract = build_contract(data, config)
    samples = TrainingSamples(data, contract, config.chunk_length)
    train_eps, val_eps = split_episodes(len(data.episodes), config.val_fraction, config.seed)
    train_rows = _rows_of(samples.bounds, train_eps)
    val_rows = _rows_of(samples.bounds, val_eps)
    rng = np.random.default_rng(config.seed)
    val_probe = (rng.choice(val_rows, size=min(1024, len(val_rows)), replace=False)
                 if len(val_rows) else val_rows)
    val_probe.sort()

    if not config.init_checkpoint:
        model = make_policy(contract, config)
        _set_residual(model, contract)
    model.train()
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    from noetra_ros.learning.model import count_parameters
    n_params = count_parameters(model)
    log(f'policy: {n_params} parameters; {len(train_eps)} train / {len(val_eps)} val episodes')
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress_frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_frac)))

    history: list[dict[str, float]] = []
    running = 0.0
    start = time.monotonic()
    epoch_order = rng.permutation(train_rows)
    cursor = 0
    query_cameras = tuple(c for c in config.object_grounding_cameras.split(',') if c)
    unknown = [c for c in query_cameras if c not in contract.cameras]
    if unknown:
        raise ConfigError(f'object_grounding_cameras: {unknown} not among the policy cameras '
                          f'{list(contract.cameras)}')
    if config.target_heading and samples.target_heading is None:
        log('heading head untrained: the dataset has no target_yaw / object0_shape columns in '
            'observation.environment_state (recorded before they existed); record it again or '
            'train with --target-heading false')
    if config.object_grounding_weight > 0 and samples.objects is None:
        log('object queries off: the dataset has no object columns in '
            'observation.environment_state (recorded before they existed)')
    for step in progress(range(config.steps), total=config.steps, desc='training'):
        if cursor + config.batch_size > len(epoch_order):
            epoch_order = rng.permutation(train_rows)
            cursor = 0
        rows = epoch_order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        inputs, target, moves = samples.batch(rows, rng, config.shift_pixels, with_moves=True)
        if config.state_noise > 0:
            # Perturbed proprioception (targets unchanged): the arm's own position cannot tell
            # the policy where the object is, so it has to look.
            state_index = len(contract.image_inputs)
            inputs[state_index] = inputs[state_index] + (config.state_noise * rng.standard_normal(
                inputs[state_index].shape)).astype(np.float32)
        model.train()
        for group in optimiser.param_groups:
            group['lr'] = lr_at(step)
        queries = (samples.object_queries(rows, moves, config.grounding_sigma, query_cameras)
                   if model.config.grounding and config.object_grounding_weight > 0 else [])
        pred, extras = model.forward_with_aux(
            *[torch.from_numpy(x) for x in inputs],
            queries=tuple(torch.from_numpy(tokens) for tokens, _ in queries))
        loss = torch.abs(pred - torch.from_numpy(target)).mean()
        loss = loss + auxiliary_losses(model, config, samples, rows, moves, queries, extras)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        loss_value = float(loss.detach())
        running = 0.98 * running + 0.02 * loss_value if step else loss_value
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            val = evaluate_loss(ema, samples, val_probe)
            entry = {'step': step + 1, 'train_loss': running, 'val_l1': val,
                     'lr': lr_at(step), 'elapsed_s': time.monotonic() - start}
            perception = perception_errors(ema, samples, val_probe)
            for name, err in perception.items():
                entry[f'val_{name}'] = err
            history.append(entry)
            grounding_text = ''.join(f'  {name} {err:.1f}' for name, err in perception.items())
            log(f'\nstep {step + 1}: train loss {running:.4f}  val L1 (EMA) {val:.4f}'
                f'{grounding_text}  lr {entry["lr"]:.2e}  {entry["elapsed_s"]:.0f} s')
    train_time = time.monotonic() - start
    checkpoint = {
        'format': 'noetra_ros.learning checkpoint v1',
        'policy_config': ema.config.to_dict(),
        'state_dict': ema.state_dict(),
        'contract': contract.to_dict(),
        'train_config': asdict(config),
        'history': history,
        'dataset': {'path': [str(p) for p in data.info.get('sources', [data.root])],
                    'episodes': len(data.episodes),
                    'frames': len(data), 'fps': data.fps,
                    'seeds': [int(row.get('seed', -1)) for row in data.episodes],
                    'train_episodes': train_eps, 'val_episodes': val_eps},
        'parameters': n_params,
        'train_time_s': train_time,
        'torch_version': str(torch.__version__),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, output)
    log(f'saved {output} after {train_time:.0f} s of training')
    return checkpoint


def load_checkpoint(path: str | Path):
    """(model in eval mode, contract, checkpoint dict) from a checkpoint file."""
    import torch

    from noetra_ros.core.policy.contract import contract_from_dict
    from noetra_ros.learning.model import PolicyConfig, VisuomotorPolicy

    # weights_only: a checkpoint is plain data + tensors, so nothing in it can run code.
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        checkpoint = torch.load(Path(path), map_location='cpu', weights_only=True)
    model = VisuomotorPolicy(PolicyConfig.from_dict(checkpoint['policy_config']))
    model.load_state_dict(checkpoint['state_dict'])
    model.eval()
    return model, contract_from_dict(checkpoint['contract']), checkpoint


def member_stages(workdir: str | Path, name: str, config: TrainConfig, finetune_steps: int = 0,
                  hard_fraction: float = 0.25) -> list[tuple[Path, TrainConfig]]:
    """(checkpoint, TrainConfig) of each training stage of one member: `workdir`/`name`.pt, then
    with `finetune_steps` > 0 a second stage `..._finetuned.pt` on the same data with a lower
    learning rate and the grounding loss pushed onto the hardest scenes (a distractor of the
    named object's colour). The last entry is the member's final checkpoint."""
    base = Path(workdir) / f'{name}.pt'
    stages = [(base, config)]
    if finetune_steps > 0:
        stages.append((Path(workdir) / f'{name}_finetuned.pt', replace(
            config, init_checkpoint=str(base), steps=finetune_steps,
            learning_rate=config.learning_rate / 2, warmup_steps=100,
            grounding_hard_fraction=hard_fraction)))
    return stages


def train_member(datasets: Sequence[str | Path], workdir: str | Path, name: str,
                 config: TrainConfig, finetune_steps: int = 0,
                 hard_fraction: float = 0.25) -> Path:
    """Train (and optionally fine-tune) one network through its `member_stages`; returns the
    final checkpoint. A module-level function so that `learning all` can run members in
    spawned worker processes."""
    stages = member_stages(workdir, name, config, finetune_steps, hard_fraction)
    for checkpoint, stage_config in stages:
        train(datasets, checkpoint, stage_config)
    return stages[-1][0]


def settings_differing(checkpoint: str | Path, config: TrainConfig) -> list[str]:
    """'field=stored (now wanted)' for each TrainConfig field the checkpoint was trained with
    differently, ignoring the thread count (it changes float summation order, not the recipe)
    and the init checkpoint's path (the same file may sit in another folder)."""
    import torch

    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        stored = torch.load(Path(checkpoint), map_location='cpu',
                            weights_only=True).get('train_config', {})
    wanted = asdict(config)
    return [f'{key}={stored[key]!r} (now {wanted[key]!r})' for key in sorted(wanted)
            if key not in ('threads', 'init_checkpoint') and key in stored
            and stored[key] != wanted[key]]
