"""Message types of the interface packages under interfaces/ (tf2_msgs, control_msgs, ...).

ROS 2 from PyPI lacks them; scripts/build_interfaces.sh builds them into the checkout's
install/ (or NOETRA_BUILD_ROOT/install), and a machine with ROS 2 from apt provides them. A shell
that sourced install/setup.bash (scripts/build.sh does) imports them like any other package. A
node started without it (`python -m noetra_ros.<node>` from the checkout, as `noetra run` and the
tests start nodes) would fail to import them, so `interface_type` then looks in our install/:
it puts the package's site-packages on sys.path and loads its libraries into the process, because
rosidl dlopen()s a package's type-support library by bare name when a type is first used, which
only the loader's start-up LD_LIBRARY_PATH or an already loaded library of that name satisfies
(the libraries find each other through their RPATH, see scripts/build_interfaces.sh).
"""
from __future__ import annotations

import ctypes
import importlib
import os
from pathlib import Path
import sys

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.paths import SOURCE_TREE


def _install_dirs() -> list[Path]:
    roots = [os.environ.get('NOETRA_BUILD_ROOT', ''), str(SOURCE_TREE)]
    return [Path(root) / 'install' for root in roots if root]


def _use_our_build(package: str) -> Path | None:
    """Make ``package`` from our install/ importable in this process; its prefix, or None."""
    for install in _install_dirs():
        prefix = install / package
        site = next(iter(sorted(prefix.glob('lib/python3*/site-packages'))), None)
        if site is None or not (site / package).is_dir():
            continue
        sys.path.insert(0, str(site))
        current = os.environ.get('AMENT_PREFIX_PATH')
        os.environ['AMENT_PREFIX_PATH'] = str(prefix) + (os.pathsep + current if current else '')
        for library in sorted((prefix / 'lib').glob('lib*.so')):
            ctypes.CDLL(str(library))
        importlib.invalidate_caches()
        return prefix
    return None


def interface_type(package: str, kind: str, name: str) -> type:
    """The class ``<package>.<kind>.<name>`` (kind 'msg', 'srv' or 'action'), from the
    environment or else from our build of it. Raises ConfigError naming the package and how to
    build it when neither has it."""
    module_name = f'{package}.{kind}'
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (package, module_name):
            raise  # the package is there but something it needs is not: show that error
        prefix = _use_our_build(package)
        if prefix is None:
            raise ConfigError(
                f'interface package {package!r} is not available: the environment does not '
                f'provide it and {" / ".join(str(d) for d in _install_dirs())} has no build of '
                'it; run `bash scripts/build_interfaces.sh` (or install ROS 2 from apt)') from None
        module = importlib.import_module(module_name)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ConfigError(f'interface package {package!r} has no {kind} {name!r}') from None
