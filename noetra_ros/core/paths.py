"""Where the package's data folders are: the one lookup every module uses.

The data (``urdf/``, ``config/``, ``models/``, ``launch/``) lives next to the code in a source
checkout and under ``share/noetra_ros`` once installed (colcon / ament). The rule: when this
code runs from a checkout (the folder above the ``noetra_ros`` package holds ``package.xml``),
the checkout's own data is used, so a source-tree run never reads a stale installed copy;
otherwise the installed share directory found through the ament index.
"""
from __future__ import annotations

from pathlib import Path

from noetra_ros.core.errors import ConfigError

PACKAGE = 'noetra_ros'
# The folder above the noetra_ros package: a source checkout's root when run from one (else the
# site-packages folder the package was installed into, which holds no package.xml).
SOURCE_TREE = Path(__file__).resolve().parents[2]


def _is_checkout(root: Path) -> bool:
    return (root / 'package.xml').is_file() and (root / PACKAGE).is_dir()


def share_dir() -> Path:
    """The package's data folder: the source checkout, else the installed share directory.

    Raises ConfigError naming both places when neither is available.
    """
    if _is_checkout(SOURCE_TREE):
        return SOURCE_TREE
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # PackageNotFoundError, or ament_index missing altogether
        raise ConfigError(f'cannot find the {PACKAGE} data folder (urdf/, config/, models/): '
                          f'{SOURCE_TREE} is not a source checkout and the package is not '
                          f'installed ({exc})') from exc


def _data_dir(name: str, sub: str = '') -> Path:
    root = share_dir()
    directory = root / name / sub if sub else root / name
    if not directory.is_dir():
        raise ConfigError(f'{PACKAGE} data folder {directory} does not exist')
    return directory


def urdf_dir() -> Path:
    """The generated URDFs (tools/generate_urdfs.py)."""
    return _data_dir('urdf')


def config_dir(sub: str = '') -> Path:
    """config/, or one of its sub-folders ('cells', 'safety')."""
    return _data_dir('config', sub)


def models_dir() -> Path:
    """The shipped policy models."""
    return _data_dir('models')


def checkout_test_data_dir() -> Path:
    """test/data, the tests' stored fixtures: in a source checkout only (not installed)."""
    return _data_dir('test', 'data')


def resolve_data_path(path: str | Path, what: str = 'file') -> Path:
    """A user-given path: as given when absolute or found from the working directory, else
    relative to the data folder (e.g. 'models/x.onnx'). Raises ConfigError naming the places
    looked in when it exists in neither; `what` names the file in that message."""
    text = str(path)
    if not text:
        raise ConfigError(f'{what}: the path is empty')
    candidate = Path(text).expanduser()
    if candidate.is_absolute() or candidate.exists():
        if not candidate.exists():
            raise ConfigError(f'{what} {candidate} does not exist')
        return candidate
    shared = share_dir() / candidate
    if shared.exists():
        return shared
    raise ConfigError(f'{what} {text!r} not found: neither {candidate.resolve()} nor {shared} '
                      'exists')
