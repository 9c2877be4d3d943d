"""Safety profiles: frozen, validated sets of limits loaded from config/safety/<profile>.yaml.

A profile only ever tightens what the robot description allows: velocities are a fraction
(<= 1) of the URDF velocity limits and positions keep a margin inside the URDF bounds. The
acceleration and jerk limits have no URDF counterpart, so the profile states them.

Defaults and where they come from (safety.md anchors; "own" = our choice, no anchor):
  position_margin_rad 0.1            MoveIt Servo joint_limit_margin (0.1 rad)
  soft_limit_band_rad 0.2            own; band inside the margin where speed toward the bound
                                     shrinks (role of ros2_control soft limits)
  velocity_scale 0.5                 own; fraction of the URDF velocity limits
  acceleration_limits 10.0 rad/s^2   own; URDF has none (MoveIt's lrmate200id joint_limits.yaml
                                     uses 1.3-3.5 rad/s^2, too soft for a prompt stop)
  jerk_limit None (off)              diff_drive max_jerk (NaN = off by default)
  command_timeout_s 0.1              MoveIt Servo incoming_command_timeout (0.1 s)
  max_command_age_s 0.1              diff_drive drops twists older than cmd_vel_timeout; we use
                                     our command timeout
  future_tolerance_s 0.02            own (5 cycles at 250 Hz of clock skew)
  sensor_timeouts joint_states 0.1, default (cameras) 0.5   brief; Nav2 source_timeout pattern
  sensor_slowdown_fraction 0.5       own; C8 "slowdown, then stop"
  tracking_error_tolerance_rad 0.1   own; JTC constraints.<joint>.trajectory (0 = off there)
  tracking_window_s 0.1              own; controller lag allowed when comparing with commands
  allow_whole_trajectories false     own; JTC runs a trajectory to its end and counts
                                     cmd_timeout from its last point, so a source that died
                                     mid-chunk still finishes the chunk. Off: a trajectory
                                     expires command_timeout_s after its own stamp, like every
                                     other command
  trajectory_horizon_s 5.0           own; with whole trajectories allowed, the latest last point
                                     accepted (s after the stamp); longer ones are refused
  base cmd_timeout_s 0.5             diff_drive cmd_vel_timeout (0.5 s)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence, Union

import numpy as np
import yaml

from noetra_ros.core import paths
from noetra_ros.core.errors import ConfigError, UnknownNameError
from noetra_ros.core.safety.limits import JointLimits

# Where a source checkout keeps the profiles; lookups without a config_dir go through
# core/paths.config_dir('safety') (the checkout, else the installed share directory).
DEFAULT_PROFILE_DIR = paths.SOURCE_TREE / 'config' / 'safety'

AccelSpec = Union[float, tuple[float, ...], Mapping[str, float]]

_DEFAULT_SENSOR_TIMEOUTS = {'joint_states': 0.1, 'default': 0.5}


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    """`value` as a finite float > 0 (>= 0 with allow_zero), else ConfigError naming `name`."""
    ok_type = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value,
                                                                                        bool)
    if ok_type and math.isfinite(float(value)):
        v = float(value)
        if v > 0.0 or (allow_zero and v == 0.0):
            return v
    allowed = 'a finite number >= 0' if allow_zero else 'a finite number > 0'
    raise ConfigError(f'{name}={value!r} is invalid; {allowed} is required')


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else _positive(name, value)


def _looser(old: float | None, new: float | None) -> bool:
    """True when `new` is a looser upper bound than `old` (None = no bound)."""
    if new is None:
        return old is not None
    return old is not None and new > old


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box (m) in base_link that the tool frame must stay inside."""

    min_xyz: tuple[float, float, float]
    max_xyz: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = self._triple('workspace.min', self.min_xyz)
        hi = self._triple('workspace.max', self.max_xyz)
        for axis, a, b in zip('xyz', lo, hi):
            if not a < b:
                raise ConfigError(f'workspace {axis}: min={a} must be < max={b}')
        object.__setattr__(self, 'min_xyz', lo)
        object.__setattr__(self, 'max_xyz', hi)

    @staticmethod
    def _triple(name: str, values: Any) -> tuple[float, float, float]:
        try:
            out = tuple(float(v) for v in values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'{name}={values!r} must be three numbers [x, y, z]') from exc
        if len(out) != 3 or not all(math.isfinite(v) for v in out):
            raise ConfigError(f'{name}={values!r} must be three finite numbers [x, y, z]')
        return out  # type: ignore[return-value]

    def contains(self, p: Sequence[float], tol: float = 0.0) -> bool:
        """True when point p lies inside the box (grown by tol)."""
        return all(lo - tol <= v <= hi + tol for v, lo, hi in zip(p, self.min_xyz, self.max_xyz))

    def relaxations(self, new: 'WorkspaceBox | None') -> list[str]:
        """Ways in which `new` is bigger than this box."""
        if new is None:
            return ['workspace removed']
        out = []
        for i, axis in enumerate('xyz'):
            if new.min_xyz[i] < self.min_xyz[i]:
                out.append(f'workspace.min.{axis} {self.min_xyz[i]} -> {new.min_xyz[i]}')
            if new.max_xyz[i] > self.max_xyz[i]:
                out.append(f'workspace.max.{axis} {self.max_xyz[i]} -> {new.max_xyz[i]}')
        return out


@dataclass(frozen=True)
class BaseLimits:
    """Mobile-base twist limits (norms of the linear / angular vectors)."""

    max_linear_velocity: float = 0.5       # m/s, own
    max_angular_velocity: float = 1.0      # rad/s, own
    max_linear_acceleration: float = 0.5   # m/s^2, own
    max_angular_acceleration: float = 1.0  # rad/s^2, own
    cmd_timeout_s: float = 0.5             # diff_drive cmd_vel_timeout default

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _positive(f'base.{f.name}', getattr(self, f.name)))

    def relaxations(self, new: 'BaseLimits') -> list[str]:
        """Ways in which `new` is looser than these limits."""
        return [f'base.{f.name} {getattr(self, f.name)} -> {getattr(new, f.name)}'
                for f in dataclasses.fields(self) if getattr(new, f.name) > getattr(self, f.name)]


@dataclass(frozen=True)
class SafetyProfile:
    """All safety limits of one operating mode; see the module docstring for the anchors."""

    name: str = 'custom'
    position_margin_rad: float = 0.1
    soft_limit_band_rad: float = 0.2
    velocity_scale: float = 0.5
    # Scalar, one value per joint, or {joint_name: value, 'default': value}.
    acceleration_limits: AccelSpec = 10.0
    jerk_limit: float | None = None
    workspace: WorkspaceBox | None = None
    workspace_slowdown_m: float = 0.05
    max_tool_speed: float | None = None
    tool_frame: str = 'tool0'
    command_timeout_s: float = 0.1
    max_command_age_s: float = 0.1
    future_tolerance_s: float = 0.02
    sensor_timeouts: Mapping[str, float] = field(
        default_factory=lambda: dict(_DEFAULT_SENSOR_TIMEOUTS))
    sensor_slowdown_fraction: float = 0.5
    tracking_error_tolerance_rad: float = 0.1
    tracking_window_s: float = 0.1
    allow_whole_trajectories: bool = False
    trajectory_horizon_s: float = 5.0
    base: BaseLimits = field(default_factory=BaseLimits)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f'name={self.name!r} must be a non-empty string')
        if not isinstance(self.tool_frame, str) or not self.tool_frame:
            raise ConfigError(f'tool_frame={self.tool_frame!r} must be a non-empty string')
        setv = object.__setattr__
        setv(self, 'position_margin_rad',
             _positive('position_margin_rad', self.position_margin_rad, allow_zero=True))
        setv(self, 'soft_limit_band_rad',
             _positive('soft_limit_band_rad', self.soft_limit_band_rad, allow_zero=True))
        scale = _positive('velocity_scale', self.velocity_scale)
        if scale > 1.0:
            raise ConfigError(f'velocity_scale={scale} is invalid; a profile can only tighten the '
                              'URDF velocity limits, so 0 < velocity_scale <= 1 is required')
        setv(self, 'velocity_scale', scale)
        setv(self, 'acceleration_limits', self._accel_spec(self.acceleration_limits))
        setv(self, 'jerk_limit', _optional_positive('jerk_limit', self.jerk_limit))
        if self.workspace is not None and not isinstance(self.workspace, WorkspaceBox):
            raise ConfigError(f'workspace={self.workspace!r} must be a WorkspaceBox or None')
        setv(self, 'workspace_slowdown_m',
             _positive('workspace_slowdown_m', self.workspace_slowdown_m, allow_zero=True))
        setv(self, 'max_tool_speed', _optional_positive('max_tool_speed', self.max_tool_speed))
        if not isinstance(self.allow_whole_trajectories, bool):
            raise ConfigError(f'allow_whole_trajectories={self.allow_whole_trajectories!r} '
                              'must be true or false')
        for name in ('command_timeout_s', 'max_command_age_s', 'tracking_error_tolerance_rad',
                     'tracking_window_s', 'trajectory_horizon_s'):
            setv(self, name, _positive(name, getattr(self, name)))
        setv(self, 'future_tolerance_s',
             _positive('future_tolerance_s', self.future_tolerance_s, allow_zero=True))
        frac = _positive('sensor_slowdown_fraction', self.sensor_slowdown_fraction)
        if frac > 1.0:
            raise ConfigError(f'sensor_slowdown_fraction={frac} is invalid; 0 < value <= 1 '
                              '(1 = no slowdown before the timeout) is required')
        setv(self, 'sensor_slowdown_fraction', frac)
        if not isinstance(self.sensor_timeouts, Mapping):
            raise ConfigError(f'sensor_timeouts={self.sensor_timeouts!r} must be a mapping '
                              'source -> seconds')
        timeouts = dict(_DEFAULT_SENSOR_TIMEOUTS)
        for key, value in self.sensor_timeouts.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f'sensor_timeouts key {key!r} must be a non-empty string')
            timeouts[key] = _positive(f'sensor_timeouts.{key}', value)
        setv(self, 'sensor_timeouts', MappingProxyType(timeouts))
        if not isinstance(self.base, BaseLimits):
            raise ConfigError(f'base={self.base!r} must be a BaseLimits')

    @staticmethod
    def _accel_spec(spec: Any) -> AccelSpec:
        if isinstance(spec, Mapping):
            out = {}
            for key, value in spec.items():
                if not isinstance(key, str) or not key:
                    raise ConfigError(f'acceleration_limits key {key!r} must be a joint name or '
                                      "'default'")
                out[key] = _positive(f'acceleration_limits.{key}', value)
            if not out:
                raise ConfigError('acceleration_limits={} is empty')
            return MappingProxyType(out)
        if isinstance(spec, (list, tuple, np.ndarray)):
            values = tuple(_positive(f'acceleration_limits[{i}]', v) for i, v in enumerate(spec))
            if not values:
                raise ConfigError('acceleration_limits=[] is empty')
            return values
        return _positive('acceleration_limits', spec)

    def sensor_timeout(self, source: str) -> float:
        """Timeout of a sensor source; unnamed sources (e.g. cameras) use the 'default' entry."""
        return self.sensor_timeouts.get(source, self.sensor_timeouts['default'])

    def replace(self, **changes: Any) -> 'SafetyProfile':
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def relaxations(self, new: 'SafetyProfile') -> list[str]:
        """Scalar fields in which `new` is looser (per-joint limits: EffectiveJointLimits)."""
        out = []

        def smaller(name: str) -> None:
            if getattr(new, name) < getattr(self, name):
                out.append(f'{name} {getattr(self, name)} -> {getattr(new, name)}')

        def larger(name: str) -> None:
            if _looser(getattr(self, name), getattr(new, name)):
                out.append(f'{name} {getattr(self, name)} -> {getattr(new, name)}')

        smaller('position_margin_rad')
        smaller('soft_limit_band_rad')
        smaller('workspace_slowdown_m')
        for name in ('velocity_scale', 'jerk_limit', 'max_tool_speed', 'command_timeout_s',
                     'max_command_age_s', 'future_tolerance_s', 'sensor_slowdown_fraction',
                     'tracking_error_tolerance_rad', 'tracking_window_s', 'trajectory_horizon_s'):
            larger(name)
        if new.allow_whole_trajectories and not self.allow_whole_trajectories:
            out.append('allow_whole_trajectories false -> true')
        for key in sorted(set(self.sensor_timeouts) | set(new.sensor_timeouts)):
            if new.sensor_timeout(key) > self.sensor_timeout(key):
                out.append(f'sensor_timeouts.{key} {self.sensor_timeout(key)} -> '
                           f'{new.sensor_timeout(key)}')
        if new.tool_frame != self.tool_frame:
            out.append(f'tool_frame {self.tool_frame} -> {new.tool_frame}')
        if self.workspace is not None:
            out += self.workspace.relaxations(new.workspace)
        out += self.base.relaxations(new.base)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = '<dict>') -> 'SafetyProfile':
        """Build from a parsed YAML mapping; unknown keys are errors (typos must not pass)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'{source}: a mapping of profile fields is required')
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f'{source}: unknown field(s) {unknown}; allowed: {sorted(known)}')
        kwargs = dict(data)
        try:
            ws = kwargs.get('workspace')
            if ws is not None:
                if not isinstance(ws, Mapping) or set(ws) != {'min', 'max'}:
                    raise ConfigError(f'{source}: workspace={ws!r} must be '
                                      '{min: [x, y, z], max: [x, y, z]} or null')
                kwargs['workspace'] = WorkspaceBox(tuple(ws['min']), tuple(ws['max']))
            base = kwargs.get('base')
            if base is not None:
                if not isinstance(base, Mapping):
                    raise ConfigError(f'{source}: base={base!r} must be a mapping')
                allowed = {f.name for f in dataclasses.fields(BaseLimits)}
                bad = sorted(set(base) - allowed)
                if bad:
                    raise ConfigError(f'{source}: unknown base field(s) {bad}; allowed: '
                                      f'{sorted(allowed)}')
                kwargs['base'] = BaseLimits(**base)
            elif 'base' in kwargs:
                del kwargs['base']
            return cls(**kwargs)
        except ConfigError as exc:
            if str(exc).startswith(source):
                raise
            raise ConfigError(f'{source}: {exc}') from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> 'SafetyProfile':
        """Load and validate one profile file."""
        path = Path(path)
        try:
            text = path.read_text(encoding='utf-8')
        except OSError as exc:
            raise ConfigError(f'cannot read safety profile {path}: {exc}') from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f'{path}: invalid YAML ({exc})') from exc
        return cls.from_dict(data, source=str(path))


def available_profiles(config_dir: str | Path | None = None) -> list[str]:
    """Names of the profiles in `config_dir` (default: the package's config/safety)."""
    directory = Path(config_dir) if config_dir is not None else paths.config_dir('safety')
    return sorted(p.stem for p in directory.glob('*.yaml'))


def load_profile(name_or_path: str | Path,
                 config_dir: str | Path | None = None) -> SafetyProfile:
    """Load a profile by name (config/safety/<name>.yaml) or by a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in ('.yaml', '.yml') or candidate.is_file():
        return SafetyProfile.from_yaml(candidate)
    directory = Path(config_dir) if config_dir is not None else paths.config_dir('safety')
    path = directory / f'{name_or_path}.yaml'
    if not path.is_file():
        raise UnknownNameError(f'safety profile {str(name_or_path)!r} not found in {directory}; '
                               f'available: {available_profiles(directory)}')
    return SafetyProfile.from_yaml(path)


@dataclass(frozen=True, eq=False)
class EffectiveJointLimits:
    """Per-joint arrays the supervisor enforces: URDF limits tightened by a profile."""

    names: tuple[str, ...]
    lower: np.ndarray       # URDF hard bounds (rad)
    upper: np.ndarray
    safe_lower: np.ndarray  # lower + margin: outputs stay inside [safe_lower, safe_upper]
    safe_upper: np.ndarray
    soft_band: float        # rad inside the safe bounds where speed toward them shrinks
    velocity: np.ndarray    # rad/s = URDF velocity * velocity_scale
    acceleration: np.ndarray  # rad/s^2
    jerk: np.ndarray | None   # rad/s^3 or None (off)

    @classmethod
    def build(cls, limits: JointLimits, profile: SafetyProfile) -> 'EffectiveJointLimits':
        """Combine; ConfigError when the margin leaves no room or accel entries do not fit."""
        n = limits.count
        margin = profile.position_margin_rad
        for i, name in enumerate(limits.names):
            if limits.upper[i] - limits.lower[i] <= 2.0 * margin:
                raise ConfigError(
                    f'position_margin_rad={margin} leaves no room on joint {name} '
                    f'(range {limits.lower[i]:.6g}..{limits.upper[i]:.6g}); a margin below half '
                    'the range is required')
        spec = profile.acceleration_limits
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(limits.names) - {'default'})
            if unknown:
                raise ConfigError(f'acceleration_limits names unknown joint(s) {unknown}; '
                                  f"joints are {list(limits.names)} (or 'default')")
            missing = [j for j in limits.names if j not in spec and 'default' not in spec]
            if missing:
                raise ConfigError(f'acceleration_limits has no value for {missing} and no '
                                  "'default'")
            accel = np.array([spec.get(j, spec.get('default', 0.0)) for j in limits.names])
        elif isinstance(spec, tuple):
            if len(spec) != n:
                raise ConfigError(f'acceleration_limits has {len(spec)} values; {n} (one per '
                                  'joint) are required')
            accel = np.array(spec, dtype=np.float64)
        else:
            accel = np.full(n, float(spec))
        jerk = None if profile.jerk_limit is None else np.full(n, profile.jerk_limit)
        arrays = dict(safe_lower=limits.lower + margin, safe_upper=limits.upper - margin,
                      velocity=limits.velocity * profile.velocity_scale, acceleration=accel)
        for arr in list(arrays.values()) + ([jerk] if jerk is not None else []):
            arr.setflags(write=False)
        return cls(names=limits.names, lower=limits.lower, upper=limits.upper,
                   soft_band=profile.soft_limit_band_rad, jerk=jerk, **arrays)

    def relaxations(self, new: 'EffectiveJointLimits') -> list[str]:
        """Per-joint ways in which `new` is looser than these limits."""
        if new.names != self.names:
            return [f'joint names change from {list(self.names)} to {list(new.names)}']
        out = []
        for i, name in enumerate(self.names):
            for label, old_v, new_v, looser in (
                    ('lower', self.lower[i], new.lower[i], new.lower[i] < self.lower[i]),
                    ('upper', self.upper[i], new.upper[i], new.upper[i] > self.upper[i]),
                    ('safe_lower', self.safe_lower[i], new.safe_lower[i],
                     new.safe_lower[i] < self.safe_lower[i]),
                    ('safe_upper', self.safe_upper[i], new.safe_upper[i],
                     new.safe_upper[i] > self.safe_upper[i]),
                    ('velocity', self.velocity[i], new.velocity[i],
                     new.velocity[i] > self.velocity[i]),
                    ('acceleration', self.acceleration[i], new.acceleration[i],
                     new.acceleration[i] > self.acceleration[i])):
                if looser:
                    out.append(f'{name}.{label} {old_v:.6g} -> {new_v:.6g}')
            if self.jerk is not None and (new.jerk is None or new.jerk[i] > self.jerk[i]):
                out.append(f'{name}.jerk {self.jerk[i]:.6g} -> '
                           f'{None if new.jerk is None else new.jerk[i]}')
        if new.soft_band < self.soft_band:
            out.append(f'soft_band {self.soft_band} -> {new.soft_band}')
        return out
