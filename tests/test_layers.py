"""Layering: the core never loads the TUI, and the CLI starts without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomllib

from tests.conftest import REPO

HEAVY = ("textual", "tensorboard", "pynvml", "git", "sqlite_utils", "torch", "wandb", "labbook_tui")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module", ["labbook", "labbook.cli", "labbook.store", "labbook.query", "labbook.render"]
)
def test_core_modules_load_nothing_heavy(module):
    mods = loaded_after(f"import {module}")
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_help_loads_nothing_heavy():
    """--help lists every command; a plugin command's module (labbook_tui.cli) may load, Textual not."""
    mods = loaded_after(
        "from labbook.cli import cli\ntry:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert not {m.split(".")[0] for m in mods} & (set(HEAVY) - {"labbook_tui"})


def test_core_never_imports_textual_or_tui():
    offenders = []
    for path in (REPO / "labbook").rglob("*.py"):
        text = path.read_text()
        for needle in ("import textual", "from textual", "labbook_tui"):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert offenders == []


def test_every_package_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "labbook").rglob("__init__.py")
    }
    assert found <= listed
