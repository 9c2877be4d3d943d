"""Joint names at the driver boundary: the robot description's names <-> a driver's names.

The description (URDF) names the arm joints `joint_1..joint_n`; a real driver may not:
fanuc_driver publishes `J1..J6` behind an optional prefix (its launch argument `prefix`), and
MotoROS2 publishes `joint_1..joint_n` on a single-group controller and `group_<g>/joint_<j>` on a
multi-group one (facts from /work/shared/reference/driver-interfaces.md: FANUC-CORPORATION/
fanuc_driver v2.2.0 and Yaskawa-Global/motoros2 `src/ConfigFile.h`). Everything inside the graph
speaks the description's names; a `JointNameMap` translates only where a message crosses to or
from the driver, so a cell changes one parameter, not the code.

Schemes: 'urdf' (identity; names the map does not know pass unchanged, which is today's
behaviour: the supervisor ignores extra joints), 'fanuc' and 'motoros2' (strict: a driver name
that maps to nothing is refused, naming it). A multi-group MotoROS2 arm is 'motoros2' with the
prefix `group_<g>/` (or `group=g`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError

SCHEMES = ('urdf', 'fanuc', 'motoros2')


def scheme_names(count: int, scheme: str, prefix: str = '', group: int | None = None) -> list[str]:
    """The driver's names of arm joints 1..count under `scheme`."""
    if scheme not in SCHEMES:
        raise ConfigError(f'driver joint naming {scheme!r}: must be one of {SCHEMES} '
                          'or an explicit mapping')
    if group is not None:
        if scheme != 'motoros2' or group < 1:
            raise ConfigError(f'joint group {group!r}: only for the motoros2 naming, >= 1')
        prefix = f'{prefix}group_{group}/'
    if scheme == 'fanuc':
        return [f'{prefix}J{i}' for i in range(1, count + 1)]
    return [f'{prefix}joint_{i}' for i in range(1, count + 1)]


class JointNameMap:
    """A one-to-one map from description joint names to driver joint names.

    `mapping` names every arm joint; `keep` are joints whose name the driver shares (the
    gripper's finger joints, published by our own gripper controller). `strict` False lets
    unknown names through unchanged (the identity 'urdf' naming only).
    """

    def __init__(self, mapping: Mapping[str, str], keep: Sequence[str] = (),
                 strict: bool = True) -> None:
        full = {str(k): str(v) for k, v in mapping.items()}
        for name in keep:
            full.setdefault(str(name), str(name))
        targets = list(full.values())
        duplicates = sorted({t for t in targets if targets.count(t) > 1})
        if duplicates:
            raise ConfigError(f'joint name mapping sends several joints to {duplicates}: '
                              'it must be one-to-one')
        self._to_driver = full
        self._from_driver = {v: k for k, v in full.items()}
        self.strict = strict

    @classmethod
    def for_scheme(cls, joint_names: Sequence[str], scheme: str | Mapping[str, str] = 'urdf',
                   prefix: str = '', group: int | None = None,
                   keep: Sequence[str] = ()) -> 'JointNameMap':
        """The map of the description's arm joints (in order) under a named scheme, or an
        explicit {description name: driver name} dict, which must name every arm joint."""
        names = [str(n) for n in joint_names]
        if not isinstance(scheme, str):
            missing = [n for n in names if n not in scheme]
            unknown = [n for n in scheme if n not in names and n not in keep]
            if missing or unknown:
                raise ConfigError(f'joint name mapping: arm joints {missing} have no driver name; '
                                  f'{unknown} are not joints of the description {names}')
            return cls(scheme, keep)
        if scheme == 'urdf':
            if prefix:
                raise ConfigError(f'joint_name_prefix {prefix!r}: the urdf naming has no prefix')
            return cls({n: n for n in names}, keep, strict=False)
        return cls(dict(zip(names, scheme_names(len(names), scheme, prefix, group))), keep)

    @property
    def is_identity(self) -> bool:
        return all(k == v for k, v in self._to_driver.items())

    def to_driver(self, names: Sequence[str]) -> list[str]:
        """Description names -> driver names; ConfigError names the ones the map lacks."""
        return self._translate(names, self._to_driver, ConfigError, 'description')

    def from_driver(self, names: Sequence[str], what: str = 'joint names') -> list[str]:
        """Driver names -> description names; InputError names the ones that map to nothing."""
        return self._translate(names, self._from_driver, InputError, what)

    def _translate(self, names: Sequence[str], table: dict[str, str], error: type,
                   what: str) -> list[str]:
        names = [str(n) for n in names]
        if self.strict:
            unknown = [n for n in names if n not in table]
            if unknown:
                raise error(f'{what}: {unknown} map to no joint (known: {sorted(table)})')
        return [table.get(n, n) for n in names]

    def values_from_driver(self, driver_names: Sequence[str], values: Sequence[float],
                           joint_names: Sequence[str]) -> np.ndarray:
        """Values named by the driver, as a vector in `joint_names` (description) order; extra
        joints in the message are dropped. InputError names unmapped or missing joints."""
        names = self.from_driver(driver_names)
        if len(names) != len(values):
            raise InputError(f'{len(values)} values for {len(names)} joint names')
        by_name = dict(zip(names, values))
        missing = [n for n in joint_names if n not in by_name]
        if missing:
            raise InputError(f'joints {self.to_driver(missing)} missing from {list(driver_names)}')
        return np.array([float(by_name[n]) for n in joint_names])

    def values_to_driver(self, values: Sequence[float], joint_names: Sequence[str],
                         driver_order: Sequence[str]) -> np.ndarray:
        """A vector in `joint_names` (description) order, reordered to `driver_order` (driver
        names, e.g. a controller's joints)."""
        return self.values_from_driver(self.to_driver(joint_names), values,
                                       self.from_driver(driver_order, 'controller joints'))
