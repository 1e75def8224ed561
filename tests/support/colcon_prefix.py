"""Install our ament_python packages the way colcon does, and start their executables from that prefix.

colcon (colcon-core's PythonBuildTask, used by colcon-ros for build type ament_python) builds a package without
`--symlink-install` by running, in the package's source directory:

    python setup.py egg_info --egg-base BUILD build --build-base BUILD/build \
        install --prefix PREFIX --record BUILD/install.log --single-version-externally-managed

so modules land in PREFIX/lib/python3.X/site-packages, console scripts in PREFIX/lib/<package> (setup.cfg), and
data_files (the ament index marker, package.xml, models, configs, launch files) under PREFIX/share. A sourced
install then has PREFIX on AMENT_PREFIX_PATH and its site-packages on PYTHONPATH; launch_ros starts a node as
PREFIX/lib/<package>/<executable>. Nothing of the source tree is on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
PYTHON_PACKAGES = ("diffuseloco_policy", "diffuseloco_sim", "diffuseloco_learning", "diffuseloco_bringup")
ROBOT_PACKAGES = ("diffuseloco_policy", "diffuseloco_bringup")


def colcon_install(prefix: Path, build: Path, packages=PYTHON_PACKAGES) -> Path:
    """Install `packages` into `prefix` as colcon does; returns the prefix's site-packages."""
    for package in packages:
        base = build / package
        base.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "setup.py", "egg_info", "--egg-base", str(base), "build", "--build-base",
               str(base / "build"), "install", "--prefix", str(prefix), "--record", str(base / "install.log"),
               "--single-version-externally-managed"]
        done = subprocess.run(cmd, cwd=ROOT / "src" / package, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"installing {package} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return site_packages(prefix)


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def installed_env(prefix: Path, python_prefix: Optional[Path] = None) -> dict:
    """The environment of a sourced install: our prefix first on AMENT_PREFIX_PATH and PYTHONPATH, then the
    prefix of the Python environment that holds ROS (the wheels install a ROS prefix at the venv root)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), str(python_prefix or sys.prefix)])
    env["PYTHONPATH"] = str(site_packages(prefix))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def executable(prefix: Path, package: str, name: str) -> Path:
    """Where `ros2 run PACKAGE NAME` (and launch_ros) finds a console script: PREFIX/lib/PACKAGE/NAME."""
    return prefix / "lib" / package / name
