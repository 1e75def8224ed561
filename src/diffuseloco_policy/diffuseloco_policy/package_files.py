"""Where a package's run-time files are: the ROS way.

Every file a node reads at run time (the shipped model, the robot config, parameter files, the teleop script,
the MJCF) is installed under `share/<package>/` and found through the ament index, exactly as `ros2 launch`
finds launch files. In a source checkout (`pip install -e` or PYTHONPATH on `src/<package>`) the same relative
path is read from `src/<package>/`, which has the layout of the installed share directory. Nothing resolves a
file relative to where a module happens to be installed: that breaks as soon as colcon installs without
`--symlink-install`, where modules land in `lib/python3.X/site-packages` and data in `share/`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional


class PackageFileNotFound(FileNotFoundError):
    """A package's run-time file is neither in its source tree nor under its installed share directory."""


def source_dir(package: str) -> Optional[Path]:
    """`src/<package>` when the package is imported from a source checkout (its package.xml beside the module
    directory), else None (an install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    return root if (root / "package.xml").is_file() else None


def share_dir(package: str) -> Path:
    """The package's share directory: its source tree in a checkout, else through the ament index
    (AMENT_PREFIX_PATH, set by sourcing the install's setup script)."""
    source = source_dir(package)
    if source is not None:
        return source
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError as exc:  # pragma: no cover - every ROS install and the ROS wheels ship it
        raise PackageFileNotFound(f"{package}: not a source checkout and ament_index_python is missing") from exc
    try:
        return Path(get_package_share_directory(package))
    except (PackageNotFoundError, LookupError, OSError) as exc:
        # EnvironmentError when AMENT_PREFIX_PATH is unset, PackageNotFoundError when no prefix has it
        raise PackageFileNotFound(f"{package} is not installed in any prefix of AMENT_PREFIX_PATH and no source "
                                  f"tree is present ({exc}); source the install's setup script") from exc


def package_file(package: str, relative: str) -> Path:
    """A run-time file of `package` (a path relative to its share directory), checked to exist."""
    path = share_dir(package) / relative
    if not path.exists():
        raise PackageFileNotFound(f"{path} not found ({package} share/{relative})")
    return path
