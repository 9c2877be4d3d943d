"""The policy contract (versions 1 and 2): what an exported ONNX policy eats and what it returns.

A contract travels with the model, either as JSON in the ONNX `metadata_props` under
`noetra.contract` or as a sidecar YAML file `<model stem>.contract.yaml` next to the `.onnx` (the
sidecar wins when both exist). docs/POLICY_CONTRACT.md is the human reference for the schema.

Every check raises ContractError whose message starts with the exact field path, e.g.
`inputs[1].components[0].joints[3]: 'joint_7' is not a joint of the robot (...)`.

Version 2 adds letterboxed and uint8 images, padded state / action vectors, `tokenizers`
tokenizers with an attention mask, models made of several ONNX graphs (`graphs` + `pipeline`:
run and denoise stages; the contract is then a file of its own, `load_contract_file`, and
pipeline.py validates and runs it), and makes `embodiment` (the robot the policy was trained
for) required. A version 1 document that uses a version 2 field is refused with the field's path;
each dataclass lists the version 2 features it uses (`version_2_fields`), so a contract built
in code is held to the same rule.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
import json
import logging
import math
from pathlib import Path, PurePath
import re
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, NoReturn, Sequence, Union

import numpy as np

from noetra_ros.core.errors import ConfigError, ContractError, ModelLoadError
from noetra_ros.core.policy.tokenizer import PAD_TOKEN, UNK_TOKEN, WORD_PATTERN
from noetra_ros.core.robots import GRIPPER_CLOSED, GRIPPER_OPEN

_LOG = logging.getLogger(__name__)

# The version a contract built in code gets unless it says otherwise (version 1 files keep
# loading unchanged); CONTRACT_VERSIONS are the ones this runtime reads.
CONTRACT_VERSION = 1
CONTRACT_VERSIONS = (1, 2)
METADATA_KEY = 'noetra.contract'
SIDECAR_SUFFIX = '.contract.yaml'

# Finger travel, 0 = open: the one gripper convention (core/robots.py, read back from the URDF).
GRIPPER_OPEN_M = GRIPPER_OPEN
GRIPPER_CLOSED_M = GRIPPER_CLOSED

WRENCH_AXES = ('fx', 'fy', 'fz', 'tx', 'ty', 'tz')
TWIST_AXES = ('vx', 'vy', 'vz', 'wx', 'wy', 'wz')

IMAGE_RESIZE_MODES = ('stretch', 'center_crop', 'letterbox')
# Depth is never letterboxed: its pixels must line up with a colour input's crop (crop_box).
DEPTH_RESIZE_MODES = ('stretch', 'center_crop')
# float32: the runtime normalises; uint8: the image's bytes, normalised inside the graph.
IMAGE_DTYPES = ('float32', 'uint8')
IMAGE_COLOR_ORDERS = ('rgb', 'bgr', 'mono')
IMAGE_LAYOUTS = ('nchw', 'nhwc')
# What a depth outside [min_depth_m, max_depth_m] becomes: invalid (as a pixel without a return)
# or clamped to the nearest bound.
DEPTH_OUT_OF_RANGE = ('invalid', 'clamp')
# Where a camera's depth comes from: `<camera>/aligned_depth_to_color/image_raw`, the name
# realsense2_camera gives depth registered to the colour image (IntelRealSense/realsense-ros
# realsense2_camera/src/rs_node_setup.cpp, startPublishers: "aligned_depth_to_" + stream name;
# docs/CAMERAS.md, "Depth").
DEPTH_NAMESPACE = 'aligned_depth_to_color'
STATE_SOURCES = ('joint_positions', 'joint_velocities', 'gripper_position', 'wrench')
ACTION_MEANINGS = ('joint_positions', 'joint_velocities', 'gripper_position', 'base_twist')
ACTION_MODES = ('absolute', 'delta')
TOKENIZERS = ('word_vocab', 'hf_tokenizers')
UNKNOWN_WORD_POLICIES = ('map_to_unk', 'reject')
# Several graphs (version 2): what a pipeline stage does, how a denoise loop spaces its times
# and what its graph returns per step (DenoiseStage).
STAGE_KINDS = ('run', 'denoise')
DENOISE_SCHEDULES = ('linear', 'cosine')
DENOISE_PREDICTIONS = ('velocity', 'sample')
# A model path with one of these suffixes is a contract file naming its graphs (a multi-graph
# model); any other path is one ONNX model whose contract is its sidecar or metadata.
CONTRACT_FILE_SUFFIXES = ('.yaml', '.yml')

# Upper bounds that catch typos (an image of 96000 px) rather than limit real models.
_MAX_IMAGE_SIDE = 8192
_MAX_TOKENS = 4096
_MAX_VOCABULARY = 1 << 24
_MAX_WIDTH = 1 << 20
_MAX_CHUNK = 10000
_MAX_STEPS = 10000
_MAX_SEED = (1 << 63) - 1
# 16UC1 millimetres end at 65.535 m; a larger bound is a unit mistake.
_MAX_DEPTH_M = 65.535
# core/robot_model.kinematics_fingerprint's form.
_FINGERPRINT = re.compile(r'sha256:[0-9a-f]{64}')


# --------------------------------------------------------------------------------------------
# Validation helpers. Each raises ContractError('<field>: <problem>'); callers that know where
# the value sits in the document prefix the path with `_at`.

def _fail(path: str, message: str) -> NoReturn:
    raise ContractError(f'{path}: {message}')


def _join(prefix: str, message: str) -> str:
    return prefix + ('' if message.startswith('[') else '.') + message


@contextmanager
def _at(prefix: str) -> Iterator[None]:
    """Prefix the field path of any ContractError raised inside with `prefix`."""
    try:
        yield
    except ContractError as error:
        raise ContractError(_join(prefix, str(error))) from None


def _yaml_hint(value: Any) -> str:
    # PyYAML (YAML 1.1) reads unquoted on/off/yes/no as booleans and digits as numbers.
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return (' (YAML reads unquoted on/off/yes/no/true/false and numbers as non-strings: '
                'quote it)')
    return ''


def _check_str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(path, f'must be a non-empty string, got {value!r}{_yaml_hint(value)}')
    return value


def _check_choice(value: Any, path: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        _fail(path, f'{value!r} is not allowed (allowed: {", ".join(allowed)})')
    return str(value)


def _check_int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(path, f'must be an integer, got {value!r}')
    if not low <= int(value) <= high:
        _fail(path, f'must be in [{low}, {high}], got {value}')
    return int(value)


def _check_float(value: Any, path: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(path, f'must be a number, got {value!r}')
    number = float(value)
    if not math.isfinite(number):
        _fail(path, f'must be finite, got {number}')
    if positive and number <= 0.0:
        _fail(path, f'must be > 0, got {number}')
    return number


def _check_floats(values: Any, path: str, length: int, *, positive: bool = False,
                  non_negative: bool = False, default: float | None = None) -> tuple[float, ...]:
    """A tuple of `length` finite floats; an empty value means `default` everywhere."""
    if values is None or (isinstance(values, (list, tuple)) and len(values) == 0
                          and default is not None):
        if default is None:
            _fail(path, f'missing (needs {length} numbers)')
        return (float(default),) * length
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray)):
        _fail(path, f'must be a list of {length} numbers, got {values!r}')
    values = list(np.asarray(values, dtype=object).reshape(-1))
    if len(values) != length:
        _fail(path, f'has {len(values)} values, expected {length}')
    out = []
    for i, value in enumerate(values):
        number = _check_float(value, f'{path}[{i}]', positive=positive)
        if non_negative and number < 0.0:
            _fail(f'{path}[{i}]', f'must be >= 0, got {number}')
        out.append(number)
    return tuple(out)


def _check_names(values: Any, path: str, *, allowed: Sequence[str] | None = None,
                 required: bool = True) -> tuple[str, ...]:
    """A tuple of unique non-empty strings (each one of `allowed` when given)."""
    if values is None:
        values = ()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        _fail(path, f'must be a list of names, got {values!r}')
    if required and not values:
        _fail(path, 'must not be empty')
    seen: set[str] = set()
    for i, value in enumerate(values):
        _check_str(value, f'{path}[{i}]')
        if allowed is not None and value not in allowed:
            _fail(f'{path}[{i}]', f'{value!r} is not allowed (allowed: {", ".join(allowed)})')
        if value in seen:
            _fail(f'{path}[{i}]', f'{value!r} appears more than once')
        seen.add(value)
    return tuple(values)


def _set(obj: object, name: str, value: Any) -> None:
    # Frozen dataclasses normalise their own fields in __post_init__ (lists -> tuples).
    object.__setattr__(obj, name, value)


def _given(values: Any) -> bool:
    """True when an optional list field (mean, std, vocabulary) holds something."""
    return values is not None and len(values) > 0


def _vector_dict(head: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Plain data of a state input or action output: `head`, then components, mean, std and
    (version 2) width."""
    data = dict(head, components=[c.to_dict() for c in spec.components], mean=list(spec.mean),
                std=list(spec.std))
    if spec.width is not None:
        data['width'] = spec.width
    return data


def _check_width(width: Any, size: int, path: str = 'width') -> int | None:
    """A padded vector width (version 2): None, or an integer >= `size` (the real values)."""
    if width is None:
        return None
    width = _check_int(width, path, 1, _MAX_WIDTH)
    if width < size:
        _fail(path, f'{width} is smaller than the {size} values the components name')
    return width


# --------------------------------------------------------------------------------------------
# Inputs

# Why a uint8 image has no scale / mean / std.
_UINT8_NORMALISATION = ('a dtype uint8 input is normalised inside the model: leave scale, mean '
                        'and std out')


@dataclass(frozen=True)
class ImageInput:
    """A camera image fed as float32 [1, C, H, W] (nchw) or [1, H, W, C] (nhwc).

    pixel value p becomes ((p / scale) - mean[c]) / std[c]; C is 3 for rgb / bgr, 1 for mono.
    `camera` is the ROS camera namespace: frames come from `<camera>/image_raw`.

    Version 2: `resize: letterbox` keeps the aspect ratio, centres the frame and fills the rest
    with `pad_value` (0..255, before normalisation); `dtype: uint8` feeds the pixel bytes as
    they are (the model normalises inside its graph), so scale / mean / std must be left out.
    """

    kind: ClassVar[str] = 'image'
    name: str
    camera: str
    height: int
    width: int
    resize: str = 'stretch'
    color_order: str = 'rgb'
    layout: str = 'nchw'
    scale: float = 255.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pad_value: int = 0
    dtype: str = 'float32'

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        _check_str(self.camera, 'camera')
        _set(self, 'height', _check_int(self.height, 'height', 1, _MAX_IMAGE_SIDE))
        _set(self, 'width', _check_int(self.width, 'width', 1, _MAX_IMAGE_SIDE))
        _check_choice(self.resize, 'resize', IMAGE_RESIZE_MODES)
        _check_choice(self.color_order, 'color_order', IMAGE_COLOR_ORDERS)
        _check_choice(self.layout, 'layout', IMAGE_LAYOUTS)
        _check_choice(self.dtype, 'dtype', IMAGE_DTYPES)
        _set(self, 'pad_value', _check_int(self.pad_value, 'pad_value', 0, 255))
        if self.pad_value and self.resize != 'letterbox':
            _fail('pad_value', f'only applies to resize: letterbox (resize is {self.resize})')
        _set(self, 'scale', _check_float(self.scale, 'scale', positive=True))
        if self.dtype == 'uint8':
            self._check_no_normalisation()
            return
        _set(self, 'mean', _check_floats(self.mean, 'mean', self.channels, default=0.0))
        _set(self, 'std', _check_floats(self.std, 'std', self.channels, positive=True,
                                        default=1.0))

    def _check_no_normalisation(self) -> None:
        # The bytes go to the model as they are: a normalisation here would never be applied.
        for key in ('mean', 'std'):
            if _given(getattr(self, key)):
                _fail(key, _UINT8_NORMALISATION)
        if self.scale != 255.0:
            _fail('scale', _UINT8_NORMALISATION)
        _set(self, 'mean', ())
        _set(self, 'std', ())

    def version_2_fields(self) -> tuple[str, ...]:
        """The fields whose values need contract_version 2."""
        return tuple(key for key, used in (('resize', self.resize == 'letterbox'),
                                           ('pad_value', self.pad_value != 0),
                                           ('dtype', self.dtype != 'float32')) if used)

    @property
    def channels(self) -> int:
        """Number of colour channels the model expects (1 for mono, else 3)."""
        return 1 if self.color_order == 'mono' else 3

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The tensor shape fed to the model (batch 1)."""
        return _pixel_shape(self.layout, self.channels, self.height, self.width)

    @property
    def source(self) -> str:
        """Key of this input's frames in an observation (runtime.build_inputs): the camera."""
        return self.camera

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready); version 2 keys only when they are used."""
        data: dict[str, Any] = {
            'name': self.name, 'kind': self.kind, 'camera': self.camera,
            'height': self.height, 'width': self.width, 'resize': self.resize,
            'color_order': self.color_order, 'layout': self.layout}
        if self.pad_value:
            data['pad_value'] = self.pad_value
        if self.dtype == 'uint8':
            data['dtype'] = self.dtype
        else:
            data.update(scale=self.scale, mean=list(self.mean), std=list(self.std))
        return data


def _pixel_shape(layout: str, channels: int, height: int,
                 width: int) -> tuple[int, int, int, int]:
    if layout == 'nchw':
        return (1, channels, height, width)
    return (1, height, width, channels)


def depth_source(camera: str) -> str:
    """Key (and topic namespace) of a camera's depth aligned to its colour image:
    `<camera>/aligned_depth_to_color`; frames arrive on `<that>/image_raw`."""
    return f'{camera}/{DEPTH_NAMESPACE}'


@dataclass(frozen=True)
class DepthInput:
    """A depth image aligned to a camera's colour image, fed as float32 [1, C, H, W] (nchw)
    or [1, H, W, C] (nhwc) in metres.

    Frames come from `<camera>/aligned_depth_to_color/image_raw` (16UC1 mm or 32FC1 m). A
    pixel is valid when it holds a finite distance > 0 within [min_depth_m, max_depth_m]
    (`out_of_range: clamp` clamps a finite distance > 0 into the range instead). Channel 0 is
    (d - mean) / std, d being the distance, or `invalid_value_m` for an invalid pixel; with
    `validity_mask`, channel 1 is 1.0 where the pixel is valid and 0.0 where not (not
    normalised). Resizing picks the nearest pixel (preprocess.depth_to_tensor says why).
    """

    kind: ClassVar[str] = 'depth'
    name: str
    camera: str
    height: int
    width: int
    max_depth_m: float
    min_depth_m: float = 0.0
    out_of_range: str = 'invalid'
    invalid_value_m: float = 0.0
    validity_mask: bool = False
    resize: str = 'stretch'
    layout: str = 'nchw'
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        _check_str(self.camera, 'camera')
        _set(self, 'height', _check_int(self.height, 'height', 1, _MAX_IMAGE_SIDE))
        _set(self, 'width', _check_int(self.width, 'width', 1, _MAX_IMAGE_SIDE))
        _set(self, 'min_depth_m', _check_float(self.min_depth_m, 'min_depth_m'))
        _set(self, 'max_depth_m', _check_float(self.max_depth_m, 'max_depth_m', positive=True))
        if self.min_depth_m < 0.0:
            _fail('min_depth_m', f'must be >= 0, got {self.min_depth_m}')
        if self.max_depth_m <= self.min_depth_m:
            _fail('max_depth_m', f'must be > min_depth_m ({self.min_depth_m}), got '
                  f'{self.max_depth_m}')
        if self.max_depth_m > _MAX_DEPTH_M:
            _fail('max_depth_m', f'must be <= {_MAX_DEPTH_M} m (metres, not millimetres), got '
                  f'{self.max_depth_m}')
        _check_choice(self.out_of_range, 'out_of_range', DEPTH_OUT_OF_RANGE)
        _set(self, 'invalid_value_m', _check_float(self.invalid_value_m, 'invalid_value_m'))
        if not isinstance(self.validity_mask, bool):
            _fail('validity_mask', f'must be true or false, got {self.validity_mask!r}')
        _check_choice(self.resize, 'resize', DEPTH_RESIZE_MODES)
        _check_choice(self.layout, 'layout', IMAGE_LAYOUTS)
        # One mean / std: the distance channel (the mask channel is fed as 0 / 1).
        _set(self, 'mean', _check_floats(self.mean, 'mean', 1, default=0.0))
        _set(self, 'std', _check_floats(self.std, 'std', 1, positive=True, default=1.0))

    @property
    def channels(self) -> int:
        """1 (distance), or 2 with the validity mask."""
        return 2 if self.validity_mask else 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The tensor shape fed to the model (batch 1)."""
        return _pixel_shape(self.layout, self.channels, self.height, self.width)

    @property
    def source(self) -> str:
        """Key of this input's frames in an observation: `<camera>/aligned_depth_to_color`."""
        return depth_source(self.camera)

    def version_2_fields(self) -> tuple[str, ...]:
        """The fields whose values need contract_version 2 (none)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return {'name': self.name, 'kind': self.kind, 'camera': self.camera,
                'height': self.height, 'width': self.width, 'min_depth_m': self.min_depth_m,
                'max_depth_m': self.max_depth_m, 'out_of_range': self.out_of_range,
                'invalid_value_m': self.invalid_value_m, 'validity_mask': self.validity_mask,
                'resize': self.resize, 'layout': self.layout, 'mean': list(self.mean),
                'std': list(self.std)}


def _check_joints_and_axes(component: Any, kind: str, axes_kind: str,
                           allowed_axes: Sequence[str], default_axes: Sequence[str] = ()) -> None:
    """Shared rule of state and action components, by their source / meaning `kind`: joint
    kinds name joints and have no axes, `axes_kind` names axes from `allowed_axes` (default
    `default_axes`) and has no joints, the rest (gripper_position) has neither. Normalises
    both fields to tuples on the frozen dataclass."""
    _set(component, 'joints', tuple(component.joints or ()))
    _set(component, 'axes', tuple(component.axes or ()))
    if kind in ('joint_positions', 'joint_velocities'):
        _set(component, 'joints', tuple(_check_names(component.joints, 'joints')))
        if component.axes:
            _fail('axes', f'only {axes_kind} components have axes, not {kind}')
    elif kind == axes_kind:
        if component.joints:
            _fail('joints', f'a {axes_kind} component has no joints')
        axes = component.axes if component.axes else tuple(default_axes)
        _set(component, 'axes', tuple(_check_names(axes, 'axes', allowed=allowed_axes)))
    else:
        if component.joints:
            _fail('joints', f'a {kind} component has no joints')
        if component.axes:
            _fail('axes', f'a {kind} component has no axes')


def _component_size(kind: str, joints: Sequence[str], axes: Sequence[str]) -> int:
    return 1 if kind == 'gripper_position' else (len(joints) if joints else len(axes))


@dataclass(frozen=True)
class StateComponent:
    """One block of the state vector: joint positions / velocities (by name), gripper, wrench."""

    source: str
    joints: tuple[str, ...] = ()
    axes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_choice(self.source, 'source', STATE_SOURCES)
        _check_joints_and_axes(self, self.source, 'wrench', WRENCH_AXES, WRENCH_AXES)

    @property
    def size(self) -> int:
        """Number of values this component contributes."""
        return _component_size(self.source, self.joints, self.axes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; keys that do not apply to the source are left out."""
        data: dict[str, Any] = {'source': self.source}
        if self.joints:
            data['joints'] = list(self.joints)
        if self.axes:
            data['axes'] = list(self.axes)
        return data


@dataclass(frozen=True)
class StateInput:
    """Proprioception fed as float32 [1, D]: components concatenated in order, then normalised
    as (x - mean) / std (D = sum of component sizes).

    Version 2: `width` N >= D feeds [1, N], the normalised D values followed by zeros (a model
    built for a wider state vector, e.g. one shared by several robots)."""

    kind: ClassVar[str] = 'state'
    name: str
    components: tuple[StateComponent, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    width: int | None = None

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        if not isinstance(self.components, (list, tuple)) or not self.components:
            _fail('components', 'must be a non-empty list')
        seen: dict[str, int] = {}
        for i, component in enumerate(self.components):
            if not isinstance(component, StateComponent):
                _fail(f'components[{i}]', f'must be a StateComponent, got {component!r}')
            if component.source in seen:
                _fail(f'components[{i}].source', f'{component.source!r} already given by '
                      f'components[{seen[component.source]}]')
            seen[component.source] = i
        _set(self, 'components', tuple(self.components))
        _set(self, 'mean', _check_floats(self.mean, 'mean', self.size, default=0.0))
        _set(self, 'std', _check_floats(self.std, 'std', self.size, positive=True, default=1.0))
        _set(self, 'width', _check_width(self.width, self.size))

    @property
    def size(self) -> int:
        """D, the number of real values (the components' sizes added up)."""
        return sum(c.size for c in self.components)

    @property
    def model_width(self) -> int:
        """The length of the vector the model reads: `width` when padded, else D."""
        return self.size if self.width is None else self.width

    @property
    def shape(self) -> tuple[int, int]:
        """The tensor shape fed to the model (batch 1)."""
        return (1, self.model_width)

    def version_2_fields(self) -> tuple[str, ...]:
        """The fields whose values need contract_version 2."""
        return ('width',) if self.width is not None else ()

    def component(self, source: str) -> StateComponent | None:
        """The component reading `source`, or None."""
        return next((c for c in self.components if c.source == source), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return _vector_dict({'name': self.name, 'kind': self.kind}, self)


@dataclass(frozen=True)
class InstructionInput:
    """A language instruction fed as int64 [1, L] token ids (see tokenizer.py).

    `word_vocab`: vocabulary[0] must be `<pad>` (id 0); `<unk>` must be present when
    unknown_words is map_to_unk. Every other entry must be a word the tokenizer can produce
    (lower-case run of letters / digits).

    `hf_tokenizers` (version 2): a `tokenizers` library tokenizer.json shipped with the model
    (`tokenizer_file`, relative to the model file's folder) holding `vocab_size` tokens (added
    tokens included; checked when the runtime loads it), right-padded with `pad_id` (default:
    the tokenizer's pad token, else 0). `attention_mask` (version 2, either tokenizer) names an
    extra int64 [1, L] model input: 1 per real token, 0 per pad.
    """

    kind: ClassVar[str] = 'instruction'
    name: str
    vocabulary: tuple[str, ...] = ()
    max_length: int = 0
    tokenizer: str = 'word_vocab'
    unknown_words: str = 'map_to_unk'
    tokenizer_file: str | None = None
    vocab_size: int | None = None
    pad_id: int | None = None
    attention_mask: str | None = None

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        _check_choice(self.tokenizer, 'tokenizer', TOKENIZERS)
        _check_choice(self.unknown_words, 'unknown_words', UNKNOWN_WORD_POLICIES)
        _set(self, 'max_length', _check_int(self.max_length, 'max_length', 1, _MAX_TOKENS))
        if self.attention_mask is not None:
            _check_str(self.attention_mask, 'attention_mask')
            if self.attention_mask == self.name:
                _fail('attention_mask', f'{self.name!r} is already the token ids\' input name')
        if self.tokenizer == 'word_vocab':
            self._check_word_vocabulary()
        else:
            self._check_tokenizer_file()

    def _check_word_vocabulary(self) -> None:
        for key in ('tokenizer_file', 'vocab_size', 'pad_id'):
            if getattr(self, key) is not None:
                _fail(key, 'only applies to tokenizer hf_tokenizers (word_vocab ids are '
                      'vocabulary indices, <pad> = 0)')
        if not _given(self.vocabulary):
            _fail('vocabulary', 'missing (word_vocab needs the list of words)')
        vocabulary = _check_names(self.vocabulary, 'vocabulary')
        if vocabulary[0] != PAD_TOKEN:
            _fail('vocabulary[0]', f'must be {PAD_TOKEN!r} (id 0 pads), got {vocabulary[0]!r}')
        if self.unknown_words == 'map_to_unk' and UNK_TOKEN not in vocabulary:
            _fail('vocabulary', f'needs {UNK_TOKEN!r} when unknown_words is map_to_unk')
        for i, word in enumerate(vocabulary):
            if word in (PAD_TOKEN, UNK_TOKEN):
                continue
            if WORD_PATTERN.fullmatch(word) is None or word != word.lower():
                _fail(f'vocabulary[{i}]', f'{word!r} can never be produced by the tokenizer '
                      '(words are lower-case runs of letters or digits)')
        _set(self, 'vocabulary', vocabulary)

    def _check_tokenizer_file(self) -> None:
        if _given(self.vocabulary):
            _fail('vocabulary', 'hf_tokenizers reads its tokens from tokenizer_file: leave '
                  'vocabulary out')
        _set(self, 'vocabulary', ())
        if self.tokenizer_file is None:
            _fail('tokenizer_file', 'missing (hf_tokenizers needs the tokenizer.json shipped '
                  'with the model)')
        _check_str(self.tokenizer_file, 'tokenizer_file')
        if PurePath(self.tokenizer_file).is_absolute():
            _fail('tokenizer_file', f'{self.tokenizer_file!r} must be relative to the model '
                  'file\'s folder (an absolute path does not travel with the model)')
        if self.vocab_size is None:
            _fail('vocab_size', 'missing (hf_tokenizers needs the number of token ids the '
                  'model embeds)')
        _set(self, 'vocab_size', _check_int(self.vocab_size, 'vocab_size', 1, _MAX_VOCABULARY))
        if self.pad_id is not None:
            _set(self, 'pad_id', _check_int(self.pad_id, 'pad_id', 0, self.token_count - 1))

    @property
    def token_count(self) -> int:
        """The number of token ids: len(vocabulary) or vocab_size."""
        return len(self.vocabulary) if self.vocab_size is None else self.vocab_size

    @property
    def shape(self) -> tuple[int, int]:
        """The tensor shape fed to the model (batch 1); the attention mask has it too."""
        return (1, self.max_length)

    def version_2_fields(self) -> tuple[str, ...]:
        """The fields whose values need contract_version 2."""
        return tuple(key for key, used in (('tokenizer', self.tokenizer != 'word_vocab'),
                                           ('attention_mask', self.attention_mask is not None))
                     if used)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready); version 2 keys only when they are used."""
        data: dict[str, Any] = {'name': self.name, 'kind': self.kind,
                                'tokenizer': self.tokenizer}
        if self.tokenizer == 'word_vocab':
            data['vocabulary'] = list(self.vocabulary)
        else:
            data.update(tokenizer_file=self.tokenizer_file, vocab_size=self.vocab_size)
            if self.pad_id is not None:
                data['pad_id'] = self.pad_id
        data.update(max_length=self.max_length, unknown_words=self.unknown_words)
        if self.attention_mask is not None:
            data['attention_mask'] = self.attention_mask
        return data


PolicyInput = Union[ImageInput, DepthInput, StateInput, InstructionInput]
# Inputs made of pixels: fed as [1, C, H, W] / [1, H, W, C] from a frame of `source`.
PIXEL_INPUTS = (ImageInput, DepthInput)


# --------------------------------------------------------------------------------------------
# Outputs

@dataclass(frozen=True)
class ActionComponent:
    """One block of each action row.

    joint_positions (rad; mode absolute, or delta = offset from the joint positions of the
    observation the chunk was computed from), gripper_position (m, 0 open .. 0.0425 closed; mode
    absolute or delta), joint_velocities (rad/s, absolute), base_twist (m/s, rad/s, absolute).
    """

    meaning: str
    mode: str = 'absolute'
    joints: tuple[str, ...] = ()
    axes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_choice(self.meaning, 'meaning', ACTION_MEANINGS)
        _check_choice(self.mode, 'mode', ACTION_MODES)
        if self.mode == 'delta' and self.meaning not in ('joint_positions', 'gripper_position'):
            _fail('mode', f'delta is only defined for joint_positions and gripper_position, '
                  f'not {self.meaning}')
        _check_joints_and_axes(self, self.meaning, 'base_twist', TWIST_AXES)

    @property
    def size(self) -> int:
        """Number of values this component contributes to each action row."""
        return _component_size(self.meaning, self.joints, self.axes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; keys that do not apply to the meaning are left out."""
        data: dict[str, Any] = {'meaning': self.meaning, 'mode': self.mode}
        if self.joints:
            data['joints'] = list(self.joints)
        if self.axes:
            data['axes'] = list(self.axes)
        return data


@dataclass(frozen=True)
class ActionParts:
    """Action values split by meaning; arrays have the leading shape of what was split
    ((T, n) for a chunk, (n,) for one row). Absent parts are None."""

    joint_names: tuple[str, ...]
    joint_positions: np.ndarray | None
    gripper_position: np.ndarray | float | None
    velocity_joint_names: tuple[str, ...]
    joint_velocities: np.ndarray | None
    twist_axes: tuple[str, ...]
    base_twist: np.ndarray | None


@dataclass(frozen=True)
class ActionOutput:
    """An action chunk read as float32 [1, T, A]; each row is un-normalised as raw * std + mean
    and row k applies at (observation stamp + k * step_period_s).

    Version 2: `width` N >= A says the model outputs [1, T, N]; the components name the first
    A columns and the rest are ignored (padding of a model shared by wider robots)."""

    kind: ClassVar[str] = 'action_chunk'
    name: str
    chunk_length: int
    step_period_s: float
    components: tuple[ActionComponent, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    width: int | None = None

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        _set(self, 'chunk_length', _check_int(self.chunk_length, 'chunk_length', 1, _MAX_CHUNK))
        _set(self, 'step_period_s', _check_float(self.step_period_s, 'step_period_s',
                                                 positive=True))
        if not isinstance(self.components, (list, tuple)) or not self.components:
            _fail('components', 'must be a non-empty list')
        seen: dict[str, int] = {}
        for i, component in enumerate(self.components):
            if not isinstance(component, ActionComponent):
                _fail(f'components[{i}]', f'must be an ActionComponent, got {component!r}')
            if component.meaning in seen:
                _fail(f'components[{i}].meaning', f'{component.meaning!r} already given by '
                      f'components[{seen[component.meaning]}]')
            seen[component.meaning] = i
        _set(self, 'components', tuple(self.components))
        _set(self, 'mean', _check_floats(self.mean, 'mean', self.size, default=0.0))
        # std 0 is allowed: a dimension that never varied in the data comes out constant.
        _set(self, 'std', _check_floats(self.std, 'std', self.size, non_negative=True,
                                        default=1.0))
        _set(self, 'width', _check_width(self.width, self.size))

    @property
    def size(self) -> int:
        """A, the number of values in one action row (the components' sizes added up)."""
        return sum(c.size for c in self.components)

    @property
    def model_width(self) -> int:
        """The number of columns the model outputs: `width` when padded, else A."""
        return self.size if self.width is None else self.width

    @property
    def shape(self) -> tuple[int, int, int]:
        """The tensor shape the model returns (batch 1)."""
        return (1, self.chunk_length, self.model_width)

    def version_2_fields(self) -> tuple[str, ...]:
        """The fields whose values need contract_version 2."""
        return ('width',) if self.width is not None else ()

    def component(self, meaning: str) -> ActionComponent | None:
        """The component with `meaning`, or None."""
        return next((c for c in self.components if c.meaning == meaning), None)

    @cached_property
    def slices(self) -> Mapping[str, slice]:
        """Column range of each meaning in an action row."""
        out: dict[str, slice] = {}
        start = 0
        for component in self.components:
            out[component.meaning] = slice(start, start + component.size)
            start += component.size
        return MappingProxyType(out)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """A label per action column: 'joint_positions.joint_1', 'gripper_position', ..."""
        labels: list[str] = []
        for c in self.components:
            names = c.joints or c.axes
            if names:
                labels.extend(f'{c.meaning}.{n}' for n in names)
            else:
                labels.append(c.meaning)
        return tuple(labels)

    def split(self, values: np.ndarray) -> ActionParts:
        """Split action values of shape (..., A) by meaning (views, no copies)."""
        values = np.asarray(values)
        if values.shape[-1] != self.size:
            raise ValueError(f'action values have {values.shape[-1]} columns, expected '
                             f'{self.size}')
        joints = self.component('joint_positions')
        velocities = self.component('joint_velocities')
        twist = self.component('base_twist')
        gripper = None
        if 'gripper_position' in self.slices:
            gripper = values[..., self.slices['gripper_position'].start]
        return ActionParts(
            joint_names=joints.joints if joints else (),
            joint_positions=values[..., self.slices['joint_positions']] if joints else None,
            gripper_position=gripper,
            velocity_joint_names=velocities.joints if velocities else (),
            joint_velocities=(values[..., self.slices['joint_velocities']]
                              if velocities else None),
            twist_axes=twist.axes if twist else (),
            base_twist=values[..., self.slices['base_twist']] if twist else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return _vector_dict({'name': self.name, 'kind': self.kind,
                             'chunk_length': self.chunk_length,
                             'step_period_s': self.step_period_s}, self)


# --------------------------------------------------------------------------------------------
# The embodiment

@dataclass(frozen=True)
class Embodiment:
    """The robot a policy was trained for: its name (core/robots.py, the URDF's) and the
    fingerprint of its arm's kinematics (core/robot_model.kinematics_fingerprint). Two arms
    with the same joint names but other link lengths have different fingerprints."""

    robot: str
    kinematics: str

    def __post_init__(self) -> None:
        _check_str(self.robot, 'robot')
        if not isinstance(self.kinematics, str) or _FINGERPRINT.fullmatch(self.kinematics) is None:
            _fail('kinematics', "must be 'sha256:' and 64 lower-case hex digits (core/"
                  f'robot_model.kinematics_fingerprint), got {self.kinematics!r}')

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return {'robot': self.robot, 'kinematics': self.kinematics}


# --------------------------------------------------------------------------------------------
# Several graphs (version 2): `graphs` names the ONNX files, `pipeline` runs them in order.
# Values flow by name: the contract inputs (and attention masks) are the first values; each
# stage reads values and adds its own; the action output names the value it reads.

def _check_value_map(values: Any, path: str, *, required: bool) -> Mapping[str, str]:
    """A {graph tensor name: pipeline value name} mapping of strings."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        _fail(path, f'must be a mapping of graph tensor name: value name, got {values!r}')
    if required and not values:
        _fail(path, 'must not be empty')
    for key, value in values.items():
        _check_str(key, f'{path} key')
        _check_str(value, f'{path}.{key}')
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class RunStage:
    """One graph run once: `inputs` {graph input: value} feeds it, `outputs` {graph output:
    value} keeps what later stages (or the action output) read. Graph outputs not named are not
    computed beyond what the kept ones need."""

    kind: ClassVar[str] = 'run'
    name: str
    graph: str
    inputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    outputs: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_str(self.name, 'name')
        _check_str(self.graph, 'graph')
        _set(self, 'inputs', _check_value_map(self.inputs, 'inputs', required=True))
        _set(self, 'outputs', _check_value_map(self.outputs, 'outputs', required=True))

    def produces(self) -> tuple[tuple[str, str], ...]:
        """(field path inside the stage, value name) of every value the stage adds."""
        return tuple((f'outputs.{key}', value) for key, value in self.outputs.items())

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return {'name': self.name, 'kind': self.kind, 'graph': self.graph,
                'inputs': dict(self.inputs), 'outputs': dict(self.outputs)}


@dataclass(frozen=True)
class DenoiseStage:
    """The iterative loop the runtime runs (flow matching / diffusion sampling).

    x starts as seeded standard normal noise of `noise_shape` (float32). For k = 0 .. steps-1
    the graph gets x at `x_input`, t_k at `time_input` and the values of `inputs` (e.g. an
    encoder's prefix or KV cache), and returns `step_output`:

    * `predicts: velocity`: dx/dt, Euler step x <- x + (t_{k+1} - t_k) * v (pi0 / SmolVLA:
      t from 1 (noise) to 0 (data), x_t = t * noise + (1 - t) * actions, v = noise - actions);
    * `predicts: sample`: the clean sample x0, DDIM-style deterministic step
      x <- x0 + (a_{k+1} / a_k) * (x - x0), a = (t - t_end) / (t_start - t_end) the noise share.

    `schedule`: `linear` (equal steps from t_start to t_end) or `cosine` (t_start + (t_end -
    t_start) * (1 - cos(pi k / steps)) / 2: smaller steps near both ends). The final x becomes
    the value `result`. `inpaint_prefix`: rows given to `PolicyRuntime.infer(prefix=...)` are
    held at their noised known value at every step (real-time chunking, pipeline.py).
    """

    kind: ClassVar[str] = 'denoise'
    name: str
    graph: str
    steps: int
    x_input: str
    time_input: str
    step_output: str
    noise_shape: tuple[int, ...]
    result: str
    inputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    schedule: str = 'linear'
    predicts: str = 'velocity'
    t_start: float = 1.0
    t_end: float = 0.0
    seed: int = 0
    inpaint_prefix: bool = False

    def __post_init__(self) -> None:
        for key in ('name', 'graph', 'x_input', 'time_input', 'step_output', 'result'):
            _check_str(getattr(self, key), key)
        _set(self, 'steps', _check_int(self.steps, 'steps', 1, _MAX_STEPS))
        _check_choice(self.schedule, 'schedule', DENOISE_SCHEDULES)
        _check_choice(self.predicts, 'predicts', DENOISE_PREDICTIONS)
        _set(self, 'noise_shape', self._checked_shape())
        _set(self, 'inputs', _check_value_map(self.inputs, 'inputs', required=False))
        for key in (self.x_input, self.time_input):
            if key in self.inputs:
                _fail(f'inputs.{key}', f'{key!r} is the x_input or time_input: the loop feeds it')
        if self.x_input == self.time_input:
            _fail('time_input', f'{self.time_input!r} is already the x_input')
        _set(self, 't_start', _check_float(self.t_start, 't_start'))
        _set(self, 't_end', _check_float(self.t_end, 't_end'))
        if self.t_start == self.t_end:
            _fail('t_end', f'must differ from t_start ({self.t_start})')
        _set(self, 'seed', _check_int(self.seed, 'seed', 0, _MAX_SEED))
        if not isinstance(self.inpaint_prefix, bool):
            _fail('inpaint_prefix', f'must be true or false, got {self.inpaint_prefix!r}')

    def _checked_shape(self) -> tuple[int, ...]:
        shape = self.noise_shape
        if isinstance(shape, (str, bytes)) or not isinstance(shape, (list, tuple)) or not shape:
            _fail('noise_shape', f'must be a non-empty list of sizes, got {shape!r}')
        return tuple(_check_int(size, f'noise_shape[{i}]', 1, _MAX_WIDTH)
                     for i, size in enumerate(shape))

    def produces(self) -> tuple[tuple[str, str], ...]:
        """(field path inside the stage, value name) of every value the stage adds."""
        return (('result', self.result),)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready)."""
        return {'name': self.name, 'kind': self.kind, 'graph': self.graph, 'steps': self.steps,
                'schedule': self.schedule, 'predicts': self.predicts, 't_start': self.t_start,
                't_end': self.t_end, 'x_input': self.x_input, 'time_input': self.time_input,
                'step_output': self.step_output, 'noise_shape': list(self.noise_shape),
                'inputs': dict(self.inputs), 'result': self.result, 'seed': self.seed,
                'inpaint_prefix': self.inpaint_prefix}


PipelineStage = Union[RunStage, DenoiseStage]


def _check_graphs(graphs: Any) -> Mapping[str, str]:
    """{graph name: ONNX file path relative to the contract file's folder}."""
    if not isinstance(graphs, Mapping) or not graphs:
        _fail('graphs', f'must be a non-empty mapping of graph name: ONNX file, got {graphs!r}')
    for name, file in graphs.items():
        _check_str(name, 'graphs key')
        _check_str(file, f'graphs.{name}')
        if PurePath(file).is_absolute():
            _fail(f'graphs.{name}', f'{file!r} must be relative to the contract file\'s folder '
                  '(an absolute path does not travel with the model)')
    return MappingProxyType(dict(graphs))


# --------------------------------------------------------------------------------------------
# The contract

@dataclass(frozen=True)
class PolicyContract:
    """Everything the runtime must know to feed a model and read its actions.

    At most one state and one instruction input, any number of images and depth images, exactly
    one action_chunk output. Every joint named anywhere must be listed in `robot_joints`.
    `info` is free-form provenance (training run, dataset, exporter version): string keys,
    scalar values. `embodiment` names the robot the policy was trained for (required in
    version 2, optional in version 1).

    Several graphs (version 2): `graphs` {name: ONNX file relative to the contract file's
    folder} and `pipeline` (stages run in order) come together. The input names are then
    pipeline value names (not ONNX input names), stages read and add values, and the action
    output names the value it reads (`_check_pipeline` has the rules).
    """

    name: str
    robot_joints: tuple[str, ...]
    inputs: tuple[PolicyInput, ...]
    outputs: tuple[ActionOutput, ...]
    contract_version: int = CONTRACT_VERSION
    description: str = ''
    info: Mapping[str, Any] = field(default_factory=dict, hash=False)
    embodiment: Embodiment | None = None
    graphs: Mapping[str, str] = field(default_factory=dict, hash=False)
    pipeline: tuple[PipelineStage, ...] = ()

    def __post_init__(self) -> None:
        _check_version(self.contract_version)
        _check_str(self.name, 'name')
        if not isinstance(self.description, str):
            _fail('description', f'must be a string, got {self.description!r}')
        _set(self, 'robot_joints', _check_names(self.robot_joints, 'robot_joints'))
        _set(self, 'info', MappingProxyType(_check_info(self.info)))
        if not isinstance(self.inputs, (list, tuple)) or not self.inputs:
            _fail('inputs', 'must be a non-empty list')
        _set(self, 'inputs', tuple(self.inputs))
        if not isinstance(self.outputs, (list, tuple)) or len(self.outputs) != 1:
            _fail('outputs', 'must hold exactly one action_chunk output')
        _set(self, 'outputs', tuple(self.outputs))

        names: dict[str, str] = {}
        counts = {'state': 0, 'instruction': 0}
        for i, spec in enumerate(self.inputs):
            if not isinstance(spec, (ImageInput, DepthInput, StateInput, InstructionInput)):
                _fail(f'inputs[{i}]', f'must be an ImageInput, DepthInput, StateInput or '
                      f'InstructionInput, got {spec!r}')
            if spec.name in names:
                _fail(f'inputs[{i}].name', f'{spec.name!r} already used by {names[spec.name]}')
            names[spec.name] = f'inputs[{i}]'
            if spec.kind in counts:
                counts[spec.kind] += 1
                if counts[spec.kind] > 1:
                    _fail(f'inputs[{i}].kind', f'only one {spec.kind} input is supported')
            if isinstance(spec, StateInput):
                for j, component in enumerate(spec.components):
                    self._check_known_joints(component.joints, f'inputs[{i}].components[{j}]')
        for i, output in enumerate(self.outputs):
            if not isinstance(output, ActionOutput):
                _fail(f'outputs[{i}]', f'must be an ActionOutput, got {output!r}')
            if output.name in names:
                _fail(f'outputs[{i}].name',
                      f'{output.name!r} already used by {names[output.name]}')
            for j, part in enumerate(output.components):
                self._check_known_joints(part.joints, f'outputs[{i}].components[{j}]')
        self._check_attention_masks(names)
        self._check_version_2_parts()
        self._check_pipeline()

    def _check_attention_masks(self, names: dict[str, str]) -> None:
        for i, spec in enumerate(self.inputs):
            mask = getattr(spec, 'attention_mask', None)
            if mask is not None and mask in names:
                _fail(f'inputs[{i}].attention_mask', f'{mask!r} already used by {names[mask]}')

    def _check_version_2_parts(self) -> None:
        """Version 2 requires the embodiment; version 1 refuses every version 2 feature."""
        if self.embodiment is not None and not isinstance(self.embodiment, Embodiment):
            _fail('embodiment', f'must be an Embodiment, got {self.embodiment!r}')
        if self.contract_version >= 2:
            if self.embodiment is None:
                _fail('embodiment', 'missing: contract_version 2 names the robot the policy was '
                      'trained for ({robot: <name>, kinematics: <fingerprint>})')
            return
        for key in ('graphs', 'pipeline'):
            if getattr(self, key):
                _needs_version_2(key, self.contract_version)
        parts: list[tuple[str, Any]] = [(f'inputs[{i}]', s) for i, s in enumerate(self.inputs)]
        parts += [(f'outputs[{i}]', o) for i, o in enumerate(self.outputs)]
        for path, part in parts:
            for key in part.version_2_fields():
                _needs_version_2(f'{path}.{key}', self.contract_version)

    def _check_pipeline(self) -> None:
        """Graphs and stages agree, and every value is produced before it is read.

        Rules: `graphs` and `pipeline` come together; each stage runs a graph of `graphs` and
        every graph is run; stage names are unique; a stage reads only contract inputs,
        attention masks and values of earlier stages, and adds no value that exists already;
        every contract input is read by some stage; the action output reads a stage's value;
        a denoise stage whose result is the action has the action's shape as noise_shape, and
        `inpaint_prefix` is only for that stage (its rows are the action's rows).
        """
        if not self.graphs and not self.pipeline:
            _set(self, 'graphs', MappingProxyType({}))
            _set(self, 'pipeline', ())
            return
        if not self.pipeline:
            _fail('pipeline', 'missing: graphs name the ONNX files, the pipeline says how they '
                  'run')
        _set(self, 'graphs', _check_graphs(self.graphs))
        if isinstance(self.pipeline, (str, bytes)) or not isinstance(self.pipeline,
                                                                     (list, tuple)):
            _fail('pipeline', f'must be a list of stages, got {self.pipeline!r}')
        _set(self, 'pipeline', tuple(self.pipeline))
        values = {spec.name: f'inputs[{i}]' for i, spec in enumerate(self.inputs)}
        values.update({mask: f'inputs[{i}].attention_mask' for i, spec in enumerate(self.inputs)
                       if (mask := getattr(spec, 'attention_mask', None)) is not None})
        read: set[str] = set()
        stage_names: dict[str, int] = {}
        for i, stage in enumerate(self.pipeline):
            path = f'pipeline[{i}]'
            if not isinstance(stage, (RunStage, DenoiseStage)):
                _fail(path, f'must be a RunStage or DenoiseStage, got {stage!r}')
            if stage.name in stage_names:
                _fail(f'{path}.name', f'{stage.name!r} already names pipeline'
                      f'[{stage_names[stage.name]}]')
            stage_names[stage.name] = i
            if stage.graph not in self.graphs:
                _fail(f'{path}.graph', f'{stage.graph!r} is not in graphs (graphs: '
                      f'{", ".join(self.graphs)})')
            for key, value in stage.inputs.items():
                if value not in values:
                    _fail(f'{path}.inputs.{key}', f'value {value!r} is produced by no earlier '
                          f'stage and is no contract input (values: {", ".join(values)})')
                read.add(value)
            for where, value in stage.produces():
                if value in values:
                    _fail(f'{path}.{where}', f'value {value!r} exists already ({values[value]})')
                values[value] = f'{path}.{where}'
            self._check_denoise_result(stage, path)
        run = {stage.graph for stage in self.pipeline}
        for name in self.graphs:
            if name not in run:
                _fail(f'graphs.{name}', 'is run by no stage of the pipeline')
        for value, where in values.items():
            if where.startswith('inputs[') and value not in read:
                field_path = where if where.endswith('attention_mask') else f'{where}.name'
                _fail(field_path, f'value {value!r} is read by no stage of the pipeline')
        action = self.action.name
        if action not in values or values[action].startswith('inputs['):
            _fail('outputs[0].name', f'{action!r} is no value a stage produces (values: '
                  f'{", ".join(v for v, w in values.items() if not w.startswith("inputs["))})')

    def _check_denoise_result(self, stage: PipelineStage, path: str) -> None:
        if not isinstance(stage, DenoiseStage):
            return
        action = self.action
        if stage.result == action.name and stage.noise_shape != action.shape:
            _fail(f'{path}.noise_shape', f'{list(stage.noise_shape)} but its result '
                  f'{stage.result!r} is the action chunk, {list(action.shape)} (1, chunk_length, '
                  'width)')
        if stage.inpaint_prefix and stage.result != action.name:
            _fail(f'{path}.inpaint_prefix', f'the known rows are action rows: only the stage '
                  f'whose result is the action ({action.name!r}) can inpaint them, this one '
                  f'makes {stage.result!r}')

    def _check_known_joints(self, joints: Sequence[str], path: str) -> None:
        for k, joint in enumerate(joints):
            if joint not in self.robot_joints:
                _fail(f'{path}.joints[{k}]', f'{joint!r} is not in robot_joints '
                      f'({", ".join(self.robot_joints)})')

    # Convenience views used by the runtime and the node.

    @property
    def image_inputs(self) -> tuple[ImageInput, ...]:
        """Image inputs in contract order."""
        return tuple(s for s in self.inputs if isinstance(s, ImageInput))

    @property
    def state_input(self) -> StateInput | None:
        """The state input, or None."""
        return next((s for s in self.inputs if isinstance(s, StateInput)), None)

    @property
    def instruction_input(self) -> InstructionInput | None:
        """The instruction input, or None."""
        return next((s for s in self.inputs if isinstance(s, InstructionInput)), None)

    @property
    def action(self) -> ActionOutput:
        """The action_chunk output."""
        return self.outputs[0]

    @property
    def depth_inputs(self) -> tuple[DepthInput, ...]:
        """Depth inputs in contract order."""
        return tuple(s for s in self.inputs if isinstance(s, DepthInput))

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera namespaces whose colour images the policy needs, without repeats, in
        contract order."""
        return tuple(dict.fromkeys(s.camera for s in self.image_inputs))

    @property
    def depth_cameras(self) -> tuple[str, ...]:
        """Camera namespaces whose aligned depth the policy needs, without repeats, in
        contract order (frames from `<camera>/aligned_depth_to_color/image_raw`)."""
        return tuple(dict.fromkeys(s.camera for s in self.depth_inputs))

    @property
    def same_capture(self) -> Mapping[str, str]:
        """{depth source: camera} for each camera whose colour AND depth the policy reads: the
        two must be one capture (same header stamp), or the observation is not used."""
        return MappingProxyType({depth_source(c): c for c in self.depth_cameras
                                 if c in self.cameras})

    @property
    def input_names(self) -> tuple[str, ...]:
        """ONNX input names in contract order (one per contract input)."""
        return tuple(s.name for s in self.inputs)

    @property
    def attention_masks(self) -> Mapping[str, str]:
        """{attention mask input name: its instruction input's name} (version 2)."""
        return MappingProxyType({s.attention_mask: s.name for s in self.inputs
                                 if isinstance(s, InstructionInput)
                                 and s.attention_mask is not None})

    @property
    def model_input_names(self) -> tuple[str, ...]:
        """Every ONNX input the model has: the contract inputs, then attention masks."""
        return self.input_names + tuple(self.attention_masks)

    @property
    def uses_gripper(self) -> bool:
        """True when the state reads or the action commands the gripper."""
        state = self.state_input
        return bool((state and state.component('gripper_position'))
                    or self.action.component('gripper_position'))

    @property
    def uses_wrench(self) -> bool:
        """True when the state reads a force-torque sensor."""
        state = self.state_input
        return bool(state and state.component('wrench'))

    @property
    def uses_joint_velocities(self) -> bool:
        """True when the state reads joint velocities."""
        state = self.state_input
        return bool(state and state.component('joint_velocities'))

    @property
    def uses_base(self) -> bool:
        """True when the action commands a mobile base."""
        return self.action.component('base_twist') is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON / YAML ready); `from_dict(to_dict())` gives an equal contract."""
        data: dict[str, Any] = {'contract_version': self.contract_version, 'name': self.name}
        if self.description:
            data['description'] = self.description
        data['robot_joints'] = list(self.robot_joints)
        if self.embodiment is not None:
            data['embodiment'] = self.embodiment.to_dict()
        data['inputs'] = [s.to_dict() for s in self.inputs]
        data['outputs'] = [s.to_dict() for s in self.outputs]
        if self.graphs:
            data['graphs'] = dict(self.graphs)
            data['pipeline'] = [stage.to_dict() for stage in self.pipeline]
        if self.info:
            data['info'] = dict(self.info)
        return data

    def to_json(self) -> str:
        """The JSON text stored in the ONNX metadata."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_yaml(self) -> str:
        """The YAML text of a sidecar file."""
        import yaml
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                              allow_unicode=True, width=99)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'PolicyContract':
        """Parse and validate a plain-data contract; ContractError names the bad field."""
        return contract_from_dict(data)


def _check_version(version: Any) -> None:
    if isinstance(version, bool) or version not in CONTRACT_VERSIONS:
        _fail('contract_version', f'{version!r} is not supported (this runtime reads versions '
              f'{", ".join(map(str, CONTRACT_VERSIONS))})')


def _needs_version_2(path: str, version: int) -> NoReturn:
    _fail(path, f'needs contract_version 2 (this contract says {version})')


def _check_info(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        _fail('info', f'must be a mapping, got {info!r}')
    out = {}
    for key, value in info.items():
        if not isinstance(key, str):
            _fail('info', f'keys must be strings, got {key!r}')
        if value is not None and not isinstance(value, (str, int, float, bool)):
            _fail(f'info.{key}', f'must be a string, number, boolean or null, got {value!r}')
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# Parsing plain data (JSON / YAML) with exact field paths

_TOP_KEYS = ('contract_version', 'name', 'description', 'robot_joints', 'embodiment', 'inputs',
             'outputs', 'graphs', 'pipeline', 'info')
_INPUT_KEYS = {
    'image': ('name', 'kind', 'camera', 'height', 'width', 'resize', 'color_order', 'layout',
              'scale', 'mean', 'std', 'pad_value', 'dtype'),
    'depth': ('name', 'kind', 'camera', 'height', 'width', 'min_depth_m', 'max_depth_m',
              'out_of_range', 'invalid_value_m', 'validity_mask', 'resize', 'layout', 'mean',
              'std'),
    'state': ('name', 'kind', 'components', 'mean', 'std', 'width'),
    'instruction': ('name', 'kind', 'tokenizer', 'vocabulary', 'max_length', 'unknown_words',
                    'tokenizer_file', 'vocab_size', 'pad_id', 'attention_mask'),
}
_REQUIRED_INPUT_KEYS = {
    'image': ('name', 'camera', 'height', 'width'),
    'depth': ('name', 'camera', 'height', 'width', 'max_depth_m'),
    'state': ('name', 'components'),
    'instruction': ('name', 'max_length'),
}
_STAGE_KEYS = {
    'run': ('name', 'kind', 'graph', 'inputs', 'outputs'),
    'denoise': ('name', 'kind', 'graph', 'steps', 'schedule', 'predicts', 't_start', 't_end',
                'x_input', 'time_input', 'step_output', 'noise_shape', 'inputs', 'result',
                'seed', 'inpaint_prefix'),
}
_REQUIRED_STAGE_KEYS = {
    'run': ('name', 'graph', 'inputs', 'outputs'),
    'denoise': ('name', 'graph', 'steps', 'x_input', 'time_input', 'step_output', 'noise_shape',
                'result'),
}
_OUTPUT_KEYS = ('name', 'kind', 'chunk_length', 'step_period_s', 'components', 'mean', 'std',
                'width')
_REQUIRED_OUTPUT_KEYS = ('name', 'chunk_length', 'step_period_s', 'components')
# What a version 1 document may not use, even at its default: keys, and values of a key.
# (The dataclasses' version_2_fields catch non-default values of contracts built in code.)
_VERSION_2_KEYS = {
    'image': ('pad_value', 'dtype'),
    'state': ('width',),
    'instruction': ('tokenizer_file', 'vocab_size', 'pad_id', 'attention_mask'),
    'action_chunk': ('width',),
}
_VERSION_2_VALUES = {
    'image': {'resize': ('letterbox',)},
    'instruction': {'tokenizer': ('hf_tokenizers',)},
}


def _check_mapping(data: Any, path: str, allowed: Sequence[str],
                   required: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        _fail(path, f'must be a mapping, got {data!r}')
    for key in data:
        if key not in allowed:
            _fail(path, f'unknown key {key!r} (allowed: {", ".join(allowed)})')
    for key in required:
        if key not in data:
            _fail(_join(path, key) if path else key, 'missing')
    return data


def _kwargs(data: Mapping[str, Any], skip: Sequence[str] = ('kind',)) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in skip}


def _parse_list(data: Any, path: str) -> list[Any]:
    if not isinstance(data, (list, tuple)):
        _fail(path, f'must be a list, got {data!r}')
    return list(data)


def _refuse_version_2(data: Mapping[str, Any], path: str, kind: str, version: int) -> None:
    """A version 1 document naming a version 2 key (or value) fails with its path."""
    if version >= 2:
        return
    for key in _VERSION_2_KEYS.get(kind, ()):
        if key in data:
            _needs_version_2(f'{path}.{key}', version)
    for key, values in _VERSION_2_VALUES.get(kind, {}).items():
        if data.get(key) in values:
            _needs_version_2(f'{path}.{key}', version)


def _parse_input(data: Any, path: str, version: int) -> PolicyInput:
    if not isinstance(data, Mapping):
        _fail(path, f'must be a mapping, got {data!r}')
    kind = data.get('kind')
    if kind not in _INPUT_KEYS:
        _fail(f'{path}.kind', f'{kind!r} is not allowed (allowed: {", ".join(_INPUT_KEYS)})')
    _check_mapping(data, path, _INPUT_KEYS[kind], _REQUIRED_INPUT_KEYS[kind])
    _refuse_version_2(data, path, kind, version)
    if kind == 'image' and data.get('dtype') == 'uint8':
        # Even at their defaults: a document that states a normalisation expects it applied.
        for key in ('scale', 'mean', 'std'):
            if key in data:
                _fail(f'{path}.{key}', _UINT8_NORMALISATION)
    with _at(path):
        if kind == 'image':
            return ImageInput(**_kwargs(data))
        if kind == 'depth':
            return DepthInput(**_kwargs(data))
        if kind == 'instruction':
            return InstructionInput(**_kwargs(data))
        components = []
        for j, item in enumerate(_parse_list(data['components'], 'components')):
            _check_mapping(item, f'components[{j}]', ('source', 'joints', 'axes'), ('source',))
            with _at(f'components[{j}]'):
                components.append(StateComponent(**item))
        return StateInput(components=tuple(components), **_kwargs(data, ('kind', 'components')))


def _parse_output(data: Any, path: str, version: int) -> ActionOutput:
    _check_mapping(data, path, _OUTPUT_KEYS, _REQUIRED_OUTPUT_KEYS)
    if data.get('kind', 'action_chunk') != 'action_chunk':
        _fail(f'{path}.kind', f'{data["kind"]!r} is not allowed (allowed: action_chunk)')
    _refuse_version_2(data, path, 'action_chunk', version)
    with _at(path):
        components = []
        for j, item in enumerate(_parse_list(data['components'], 'components')):
            _check_mapping(item, f'components[{j}]', ('meaning', 'mode', 'joints', 'axes'),
                           ('meaning',))
            with _at(f'components[{j}]'):
                components.append(ActionComponent(**item))
        return ActionOutput(components=tuple(components),
                            **_kwargs(data, ('kind', 'components')))


def _parse_stage(data: Any, path: str) -> PipelineStage:
    if not isinstance(data, Mapping):
        _fail(path, f'must be a mapping, got {data!r}')
    kind = data.get('kind')
    if kind not in _STAGE_KEYS:
        _fail(f'{path}.kind', f'{kind!r} is not allowed (allowed: {", ".join(STAGE_KINDS)})')
    _check_mapping(data, path, _STAGE_KEYS[kind], _REQUIRED_STAGE_KEYS[kind])
    with _at(path):
        if kind == 'run':
            return RunStage(**_kwargs(data))
        return DenoiseStage(**_kwargs(data))


def _parse_pipeline(data: Mapping[str, Any], version: int) -> dict[str, Any]:
    """The `graphs` and `pipeline` sections as PolicyContract keyword arguments."""
    for key in ('graphs', 'pipeline'):
        if key in data and version < 2:
            _needs_version_2(key, version)
    if 'pipeline' not in data:
        return {'graphs': data.get('graphs') or {}}
    stages = tuple(_parse_stage(item, f'pipeline[{i}]')
                   for i, item in enumerate(_parse_list(data['pipeline'], 'pipeline')))
    if not stages:
        _fail('pipeline', 'must not be empty')
    if 'graphs' not in data:
        _fail('graphs', 'missing: the pipeline runs graphs that `graphs` names (name: ONNX '
              'file)')
    return {'graphs': data['graphs'], 'pipeline': stages}


def contract_from_dict(data: Mapping[str, Any]) -> PolicyContract:
    """Parse and validate a plain-data contract; ContractError names the bad field."""
    if not isinstance(data, Mapping):
        raise ContractError(f'contract must be a mapping, got {type(data).__name__}')
    for key in data:
        if key not in _TOP_KEYS:
            _fail(str(key), f'unknown key (allowed: {", ".join(_TOP_KEYS)})')
    for key in ('contract_version', 'name', 'robot_joints', 'inputs', 'outputs'):
        if key not in data:
            _fail(key, 'missing')
    version = data['contract_version']
    _check_version(version)
    inputs = tuple(_parse_input(item, f'inputs[{i}]', version)
                   for i, item in enumerate(_parse_list(data['inputs'], 'inputs')))
    outputs = tuple(_parse_output(item, f'outputs[{i}]', version)
                    for i, item in enumerate(_parse_list(data['outputs'], 'outputs')))
    return PolicyContract(name=data['name'], robot_joints=data['robot_joints'], inputs=inputs,
                          outputs=outputs, contract_version=version,
                          description=data.get('description', ''), info=data.get('info') or {},
                          embodiment=_parse_embodiment(data.get('embodiment')),
                          **_parse_pipeline(data, version))


def _parse_embodiment(data: Any) -> Embodiment | None:
    """The `embodiment` section (optional in version 1, required in version 2: PolicyContract
    checks that)."""
    if data is None:
        return None
    _check_mapping(data, 'embodiment', ('robot', 'kinematics'), ('robot', 'kinematics'))
    with _at('embodiment'):
        return Embodiment(**data)


# --------------------------------------------------------------------------------------------
# Storage: ONNX metadata and sidecar YAML

def sidecar_path(model_path: str | Path) -> Path:
    """`policy.onnx` -> `policy.contract.yaml` in the same folder."""
    path = Path(model_path)
    return path.with_name(path.stem + SIDECAR_SUFFIX)


def contract_from_json(text: str, origin: str = 'metadata') -> PolicyContract:
    """Parse the JSON text of a contract (as stored in ONNX metadata)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ContractError(f'{origin}: contract is not valid JSON ({error})') from None
    return _with_origin(data, origin)


def contract_from_yaml(text: str, origin: str = 'sidecar') -> PolicyContract:
    """Parse the YAML text of a contract (a sidecar file)."""
    import yaml
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f'{origin}: contract is not valid YAML ({error})') from None
    return _with_origin(data, origin)


def _with_origin(data: Any, origin: str) -> PolicyContract:
    try:
        return contract_from_dict(data)
    except ContractError as error:
        raise ContractError(f'{error} [in {origin}]') from None


def save_sidecar(model_path: str | Path, contract: PolicyContract) -> Path:
    """Write `contract` as the sidecar YAML of `model_path`; returns the sidecar path."""
    path = sidecar_path(model_path)
    path.write_text(f'# noetra policy contract for {Path(model_path).name}\n'
                    + contract.to_yaml(), encoding='utf-8')
    return path


def read_metadata(model_path: str | Path) -> dict[str, str]:
    """The ONNX `metadata_props` of a model file (weights are not read into memory)."""
    import onnx
    path = _existing_model(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - onnx raises DecodeError, OSError, ...: all mean unreadable
        raise ModelLoadError(f'cannot read ONNX model {path}: {error}') from None
    return {p.key: p.value for p in model.metadata_props}


def _existing_model(model_path: str | Path) -> Path:
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f'model file {str(path)!r} does not exist or is not a file')
    return path


@dataclass(frozen=True)
class LoadedContract:
    """A contract and where it came from ('sidecar <path>' or 'metadata'), plus warnings."""

    contract: PolicyContract
    origin: str
    warnings: tuple[str, ...] = ()


def locate_contract(model_path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> LoadedContract:
    """Find the contract of `model_path`: the sidecar if present (warning when the metadata
    has one too), else the `noetra.contract` metadata entry, else ContractError.

    `metadata` saves re-reading the model when the caller already has its metadata map (e.g.
    from `onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map`).
    """
    path = _existing_model(model_path)
    if metadata is None:
        metadata = read_metadata(path)
    side = sidecar_path(path)
    embedded = metadata.get(METADATA_KEY)
    warnings: list[str] = []
    if side.is_file():
        try:
            text = side.read_text(encoding='utf-8')
        except OSError as error:
            raise ContractError(f'cannot read contract sidecar {side}: {error}') from None
        contract = _single_graph(contract_from_yaml(text, origin=f'sidecar {side}'),
                                 f'sidecar {side}')
        if embedded is not None:
            same = False
            try:
                same = contract_from_json(embedded) == contract
            except ContractError:
                pass
            warnings.append(
                f'model {path.name} has both a sidecar contract ({side.name}) and an embedded '
                f'{METADATA_KEY!r} entry ({"identical" if same else "they differ"}); '
                'using the sidecar')
            for message in warnings:
                _LOG.warning(message)
        return LoadedContract(contract, f'sidecar {side}', tuple(warnings))
    if embedded is None:
        raise ContractError(
            f'model {path} has no contract: neither a sidecar {side.name} nor a '
            f'{METADATA_KEY!r} metadata entry')
    return LoadedContract(_single_graph(contract_from_json(embedded,
                                                           origin=f'metadata of {path.name}'),
                                        f'metadata of {path.name}'), 'metadata')


def _single_graph(contract: PolicyContract, origin: str) -> PolicyContract:
    """The contract of one ONNX model names no graphs: a multi-graph model is loaded by its
    contract file's path, so that its graphs' folder is unambiguous."""
    if contract.graphs:
        raise ContractError(f'graphs: the contract in {origin} names graphs; load a multi-graph '
                            'model by the path of its contract file (e.g. policy_node '
                            'model_path: <folder>/policy.contract.yaml), not by one of its '
                            'ONNX files')
    return contract


def is_contract_file(model_path: str | Path) -> bool:
    """True when `model_path` is a contract file (a multi-graph model), not an ONNX model."""
    return Path(model_path).suffix.lower() in CONTRACT_FILE_SUFFIXES


def load_contract_file(contract_path: str | Path) -> LoadedContract:
    """The contract of a multi-graph model from its own YAML file; it must name its graphs
    (`graphs` + `pipeline`, version 2). ModelLoadError when the file is missing."""
    path = Path(contract_path)
    if not path.is_file():
        raise ModelLoadError(f'contract file {str(path)!r} does not exist or is not a file')
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f'cannot read contract file {path}: {error}') from None
    contract = contract_from_yaml(text, origin=f'contract file {path}')
    if not contract.graphs:
        raise ContractError(f'graphs: missing in contract file {path}: a contract given as the '
                            'model path names its ONNX graphs and the pipeline that runs them '
                            '(one ONNX model is given by its .onnx path) [in contract file '
                            f'{path}]')
    return LoadedContract(contract, f'file {path}')


def graph_files(contract: PolicyContract, folder: str | Path) -> dict[str, Path]:
    """{graph name: ONNX file} of a multi-graph contract whose file is in `folder`; a missing
    file is a ModelLoadError naming `graphs.<name>`."""
    files = {}
    for name, relative in contract.graphs.items():
        path = Path(folder) / relative
        if not path.is_file():
            raise ModelLoadError(f'graphs.{name}: ONNX file {str(path)!r} does not exist (paths '
                                 f'are relative to the contract file\'s folder {folder})')
        files[name] = path
    return files


def load_contract(model_path: str | Path) -> PolicyContract:
    """The contract of `model_path` (sidecar wins over metadata); ContractError if neither."""
    return locate_contract(model_path).contract


def embed_contract(model: Any, contract: PolicyContract, output_path: str | Path | None = None,
                   *, validate: bool = True) -> Any:
    """Store `contract` in the ONNX metadata under `noetra.contract` (replacing an old one).

    `model` is a path or an `onnx.ModelProto`. A path is rewritten in place unless
    `output_path` is given; a ModelProto is changed in place and saved only when `output_path`
    is given. With `validate`, the contract is checked against the model first. Returns the
    ModelProto. External weight files are referenced, not copied: keep `output_path` in the
    model's folder for such models.
    """
    import onnx
    source = None
    if isinstance(model, (str, Path)):
        source = _existing_model(model)
        try:
            model = onnx.load(str(source), load_external_data=False)
        except Exception as error:  # noqa: BLE001 - onnx / onnxruntime errors share no base class
            raise ModelLoadError(f'cannot read ONNX model {source}: {error}') from None
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f'model must be a path or onnx.ModelProto, got {type(model).__name__}')
    if validate:
        validate_against_model(contract, model)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = contract.to_json()
    target = Path(output_path) if output_path is not None else source
    if target is not None:
        onnx.save(model, str(target))
    return model


# --------------------------------------------------------------------------------------------
# Validation against a model

@dataclass(frozen=True)
class TensorInfo:
    """Name, numpy dtype name ('float32', 'int64', ... or the raw type string for non-tensors)
    and shape (None for a dynamic dimension) of a model input or output."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def describe(self) -> str:
        """E.g. `float32 [batch, 3, 96, 96]`."""
        if self.shape is None:
            return f'{self.dtype} [unknown rank]'
        dims = ', '.join('?' if d is None else str(d) for d in self.shape)
        return f'{self.dtype} [{dims}]'


_ORT_DTYPES = {'tensor(float)': 'float32', 'tensor(double)': 'float64',
               'tensor(float16)': 'float16', 'tensor(bfloat16)': 'bfloat16',
               'tensor(int64)': 'int64', 'tensor(int32)': 'int32', 'tensor(int16)': 'int16',
               'tensor(int8)': 'int8', 'tensor(uint8)': 'uint8', 'tensor(bool)': 'bool',
               'tensor(string)': 'str'}


def _ort_dim(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def _proto_info(value_info: Any) -> TensorInfo:
    import onnx
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField('tensor_type'):
        return TensorInfo(value_info.name, str(value_info.type.WhichOneof('value')), None)
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = f'onnx elem_type {tensor.elem_type}'
    if not tensor.HasField('shape'):
        return TensorInfo(value_info.name, dtype, None)
    shape = tuple(d.dim_value if d.HasField('dim_value') and d.dim_value > 0 else None
                  for d in tensor.shape.dim)
    return TensorInfo(value_info.name, dtype, shape)


def model_io(model: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """(inputs, outputs) of an `onnxruntime.InferenceSession`, an `onnx.ModelProto` or a path."""
    if isinstance(model, (str, Path)):
        import onnx
        path = _existing_model(model)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # noqa: BLE001 - onnx / onnxruntime errors share no base class
            raise ModelLoadError(f'cannot read ONNX model {path}: {error}') from None
    if hasattr(model, 'get_inputs') and hasattr(model, 'get_outputs'):
        def info(arg: Any) -> TensorInfo:
            shape = None if arg.shape is None else tuple(_ort_dim(d) for d in arg.shape)
            return TensorInfo(arg.name, _ORT_DTYPES.get(arg.type, arg.type), shape)
        return (tuple(info(a) for a in model.get_inputs()),
                tuple(info(a) for a in model.get_outputs()))
    graph = getattr(model, 'graph', None)
    if graph is None:
        raise TypeError('model must be an onnxruntime.InferenceSession, onnx.ModelProto or path, '
                        f'got {type(model).__name__}')
    # Old IR versions list initializers (weights) as graph inputs; those are not fed.
    initializers = {t.name for t in graph.initializer}
    return (tuple(_proto_info(v) for v in graph.input if v.name not in initializers),
            tuple(_proto_info(v) for v in graph.output))


@dataclass(frozen=True)
class _ExpectedTensor:
    """One model input or output as the contract declares it, and the fields to blame."""

    path: str
    name: str
    kind: str
    is_output: bool
    dtype: str
    dtype_field: str
    shape: tuple[int, ...]
    rank_field: str
    dims: tuple[tuple[str, int, str], ...]  # (dimension, expected size, field blamed)
    pixels: ImageInput | DepthInput | None = None


def _pixel_tensor(path: str, spec: ImageInput | DepthInput) -> _ExpectedTensor:
    channel_field = 'color_order' if isinstance(spec, ImageInput) else 'validity_mask'
    channels = ('channels', spec.channels, f'{path}.{channel_field}')
    height = ('height', spec.height, f'{path}.height')
    width = ('width', spec.width, f'{path}.width')
    dims = (channels, height, width) if spec.layout == 'nchw' else (height, width, channels)
    dtype = spec.dtype if isinstance(spec, ImageInput) else 'float32'
    dtype_field = f'{path}.dtype' if isinstance(spec, ImageInput) else f'{path}.kind'
    return _ExpectedTensor(path, spec.name, spec.kind, False, dtype, dtype_field, spec.shape,
                           f'{path}.layout', dims, spec)


def _vector_width(label: str, path: str, width: int | None,
                  size: int) -> tuple[str, int, str]:
    """(dimension, size, field blamed) of a state / action vector, padded or not."""
    if width is None:
        return (f'{label} (sum of component sizes)', size, f'{path}.components')
    return (f'{label} (width)', width, f'{path}.width')


def _expected_io(contract: PolicyContract) -> list[_ExpectedTensor]:
    """Every model input and the action output as the contract declares them."""
    rows: list[_ExpectedTensor] = []
    for i, spec in enumerate(contract.inputs):
        path = f'inputs[{i}]'
        kind = f'{path}.kind'
        if isinstance(spec, PIXEL_INPUTS):
            rows.append(_pixel_tensor(path, spec))
        elif isinstance(spec, StateInput):
            rows.append(_ExpectedTensor(path, spec.name, spec.kind, False, 'float32', kind,
                                        spec.shape, kind,
                                        (_vector_width('D', path, spec.width, spec.size),)))
        else:
            length = (('L', spec.max_length, f'{path}.max_length'),)
            rows.append(_ExpectedTensor(path, spec.name, spec.kind, False, 'int64', kind,
                                        spec.shape, kind, length))
            if spec.attention_mask is not None:
                mask = f'{path}.attention_mask'
                rows.append(_ExpectedTensor(mask, spec.attention_mask, 'attention mask', False,
                                            'int64', mask, spec.shape, mask, length))
    for i, output in enumerate(contract.outputs):
        path = f'outputs[{i}]'
        rows.append(_ExpectedTensor(path, output.name, output.kind, True, 'float32',
                                    f'{path}.kind', output.shape, f'{path}.kind',
                                    (('T', output.chunk_length, f'{path}.chunk_length'),
                                     _vector_width('A', path, output.width, output.size))))
    return rows


def _is_other_layout(spec: ImageInput | DepthInput, shape: tuple[int | None, ...]) -> bool:
    """True when `shape` fits the image in the other layout but not in the declared one."""
    def fits(expected: tuple[int, ...]) -> bool:
        return all(a is None or a == e for a, e in zip(shape[1:], expected[1:]))
    c, h, w = spec.channels, spec.height, spec.width
    mine, other = ((1, c, h, w), (1, h, w, c))
    if spec.layout == 'nhwc':
        mine, other = other, mine
    return not fits(mine) and fits(other)


def _tensor_problems(expected: _ExpectedTensor, info: TensorInfo) -> list[str]:
    """What differs between a declared tensor and the model's, one line per field."""
    what = 'output' if expected.is_output else 'input'
    name = expected.name
    problems = []
    if info.dtype != expected.dtype:
        problems.append(f'{expected.dtype_field}: a {expected.kind} {what} is {expected.dtype}, '
                        f'but model {what} {name!r} is {info.dtype}')
    if info.shape is None:
        return problems  # rank unknown to the model: checked on the first inference instead
    if len(info.shape) != len(expected.dims) + 1:
        problems.append(f'{expected.rank_field}: a {expected.kind} {what} has rank '
                        f'{len(expected.dims) + 1} {list(expected.shape)}, but model {what} '
                        f'{name!r} is {info.describe()}')
        return problems
    if info.shape[0] not in (None, 1):
        problems.append(f'{expected.path}: model {what} {name!r} has a fixed batch size of '
                        f'{info.shape[0]}; the runtime uses batch 1 ({info.describe()})')
    pixels = expected.pixels
    if pixels is not None and _is_other_layout(pixels, info.shape):
        other = 'nhwc' if pixels.layout == 'nchw' else 'nchw'
        problems.append(f'{expected.path}.layout: the contract says {pixels.layout} but model '
                        f'input {name!r} ({info.describe()}) has the {other} shape')
        return problems
    for (label, size, blame), actual in zip(expected.dims, info.shape[1:]):
        if actual is not None and actual != size:
            problems.append(f'{blame}: {label} is {size} in the contract but {actual} in model '
                            f'{what} {name!r} ({info.describe()})')
    return problems


def action_value_problems(contract: PolicyContract, value: TensorInfo) -> list[str]:
    """What differs between the action output and `value`, the tensor it reads (a pipeline
    value of a multi-graph model), one line per field; empty when they agree."""
    expected = next(row for row in _expected_io(contract) if row.is_output)
    return _tensor_problems(expected, value)


def validate_against_model(contract: PolicyContract, model: Any) -> None:
    """Check that `model` (InferenceSession, ModelProto or path) has exactly the declared
    inputs, and the declared output, with matching dtype, rank and sizes.

    The batch dimension may be dynamic or 1; other dynamic dimensions are accepted. Extra model
    outputs are ignored. All problems are reported in one ContractError, one line per field.
    """
    if contract.graphs:
        raise ContractError(f'graphs: contract {contract.name!r} runs several graphs; '
                            'pipeline.check_pipeline validates it against them')
    inputs, outputs = model_io(model)
    by_name = {t.name: t for t in inputs}
    out_by_name = {t.name: t for t in outputs}
    problems: list[str] = []
    for expected in _expected_io(contract):
        table = out_by_name if expected.is_output else by_name
        info = table.get(expected.name)
        if info is None:
            what = 'output' if expected.is_output else 'input'
            names = ', '.join(repr(n) for n in table) or 'none'
            field_name = (expected.path if expected.kind == 'attention mask'
                          else f'{expected.path}.name')
            problems.append(f'{field_name}: {expected.name!r} is not an {what} of the model '
                            f'(model {what}s: {names})')
            continue
        problems.extend(_tensor_problems(expected, info))
    declared = set(contract.model_input_names)
    for info in inputs:
        if info.name not in declared:
            problems.append(f'inputs: model input {info.name!r} ({info.describe()}) is not '
                            'declared in the contract')
    if problems:
        raise ContractError(f'contract {contract.name!r} does not match the model:\n  '
                            + '\n  '.join(problems))


# --------------------------------------------------------------------------------------------
# Validation against a robot

def validate_against_robot(contract: PolicyContract, joint_names: Sequence[str],
                           has_gripper: bool, *, has_wrench: bool = False,
                           has_base: bool = False,
                           base_axes: Sequence[str] = TWIST_AXES) -> None:
    """Check that every joint, the gripper, the wrench sensor and the base the contract uses
    exist on the robot. `joint_names` are the robot's joint names (as in its joint_states).

    All problems are reported in one ContractError, one line per field, e.g.
    `inputs[1].components[0].joints[3]: 'joint_7' is not a joint of the robot (joints: ...)`.
    """
    known = tuple(joint_names)
    listing = ', '.join(known) if known else 'none'
    problems: list[str] = []

    def check_joints(joints: Sequence[str], path: str) -> None:
        for k, joint in enumerate(joints):
            if joint not in known:
                problems.append(f'{path}.joints[{k}]: {joint!r} is not a joint of the robot '
                                f'(joints: {listing})')

    for k, joint in enumerate(contract.robot_joints):
        if joint not in known:
            problems.append(f'robot_joints[{k}]: {joint!r} is not a joint of the robot '
                            f'(joints: {listing})')
    for i, spec in enumerate(contract.inputs):
        if not isinstance(spec, StateInput):
            continue
        for j, component in enumerate(spec.components):
            path = f'inputs[{i}].components[{j}]'
            check_joints(component.joints, path)
            if component.source == 'gripper_position' and not has_gripper:
                problems.append(f'{path}.source: the state reads gripper_position but the robot '
                                'has no gripper')
            if component.source == 'wrench' and not has_wrench:
                problems.append(f'{path}.source: the state reads a wrench but the robot has no '
                                'force-torque sensor')
    for i, output in enumerate(contract.outputs):
        for j, part in enumerate(output.components):
            path = f'outputs[{i}].components[{j}]'
            check_joints(part.joints, path)
            if part.meaning == 'gripper_position' and not has_gripper:
                problems.append(f'{path}.meaning: the policy commands gripper_position but the '
                                'robot has no gripper')
            if part.meaning == 'base_twist':
                if not has_base:
                    problems.append(f'{path}.meaning: the policy commands base_twist but the '
                                    'robot has no mobile base')
                else:
                    for k, axis in enumerate(part.axes):
                        if axis not in base_axes:
                            problems.append(f'{path}.axes[{k}]: the base cannot move along '
                                            f'{axis!r} (axes: {", ".join(base_axes)})')
    if problems:
        raise ContractError(f'contract {contract.name!r} does not match the robot:\n  '
                            + '\n  '.join(problems))


def check_embodiment(contract: PolicyContract, robot: str, kinematics: str, *,
                     allow_other_embodiment: bool = False) -> str | None:
    """Check that the policy was trained for the cell's robot: `robot` (core/robots.py name)
    whose arm has the kinematics fingerprint `kinematics` (robot_model.kinematics_fingerprint).

    Same robot and fingerprint: None. Another robot, or the same name with other kinematics:
    ConfigError naming both, unless `allow_other_embodiment` (the cell's explicit choice), then
    a warning text for the log. A contract without `embodiment` (an old version 1 file): a
    warning that the embodiment cannot be checked.
    """
    trained = contract.embodiment
    if trained is None:
        return (f'model {contract.name!r} does not say which robot it was trained for (its '
                f'contract has no embodiment): cannot check that it fits {robot}')
    if trained.robot == robot and trained.kinematics == kinematics:
        return None
    if allow_other_embodiment:
        return (f'model {contract.name!r} trained for {trained.robot} runs on {robot} by the '
                "cell's choice (allow_other_embodiment)")
    raise ConfigError(
        f'embodiment: model {contract.name!r} was trained for {trained.robot} (kinematics '
        f"{trained.kinematics}); this cell's robot is {robot} (kinematics {kinematics}). "
        'A model runs on a robot it was not trained for only when the cell sets '
        'allow_other_embodiment')
