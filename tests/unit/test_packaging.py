"""The installed `eddy` command must find every module of the project, wherever it is run
from: the README's first command runs it from the console script, not from the source
folder (where Python would find a module the package does not declare)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_top_level_module_and_package_is_declared() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = set(setuptools["py-modules"])
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    found_modules = {p.stem for p in ROOT.glob("*.py")}
    found_packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert found_modules - modules == set(), "add them to [tool.setuptools] py-modules"
    assert found_packages - packages == set(), "add them to [tool.setuptools.packages.find]"


def test_installed_command_runs_outside_the_source_folder(tmp_path: Path) -> None:
    eddy = Path(sys.executable).parent / "eddy"
    if not eddy.exists():
        pytest.skip("the project is not installed in this environment (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user runs it
    done = subprocess.run([str(eddy), "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("up", "worker", "events", "projections", "groups", "dlq"):
        assert command in done.stdout
