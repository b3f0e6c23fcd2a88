"""Each notebook's install cell: from a clone it installs the clone (editable) and imports from it,
elsewhere it installs from the package index, and it does nothing where everything imports."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"surgery_cartpole": "", "experiments": "[experiments]"}  # notebook: its pip extras


def install_cell(name: str) -> str:
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


def run_install_cell(name, monkeypatch, cwd, importable):
    """The pip commands the cell runs, and the folders it puts on ``sys.path``."""
    calls, before = [], list(sys.path)
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *args: importable or None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(cwd)
    exec(compile(install_cell(name), f"{name}.ipynb", "exec"), {})
    return calls, sys.path[: len(sys.path) - len(before)]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_inside_a_clone_it_installs_the_clone(name, monkeypatch):
    calls, added = run_install_cell(name, monkeypatch, ROOT / "notebooks", importable=False)
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    assert calls == [[*pip, "-e", f"{ROOT}{NOTEBOOKS[name]}"]]
    assert added == [str(ROOT)]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_elsewhere_it_installs_from_the_package_index(name, monkeypatch, tmp_path):
    calls, added = run_install_cell(name, monkeypatch, tmp_path, importable=False)
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    assert calls == [[*pip, f"jsurgery{NOTEBOOKS[name]}"]]
    assert added == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_where_everything_imports_it_installs_nothing(name, monkeypatch):
    assert run_install_cell(name, monkeypatch, ROOT / "notebooks", importable=True) == ([], [])
