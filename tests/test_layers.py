"""Layering: the core never loads the TUI, and the CLI starts without heavy imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
    "module",
    ["labbook", "labbook.cli", "labbook.store", "labbook.store.query", "labbook.render.runs"],
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


def _modules() -> list[tuple[str, Path]]:
    out = []
    for root, package in (
        (REPO / "labbook", "labbook"),
        (REPO / "tui" / "labbook_tui", "labbook_tui"),
    ):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join([package, *parts]), path))
    return out


def test_no_module_imports_another_modules_private_names():
    """``from labbook.x import _name`` and ``x._name`` reach into another module's insides."""
    offenders = []
    for name, path in _modules():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labbook"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        offenders.append(f"{name}:{node.lineno} from {node.module} import {a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("labbook"):
                        aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                offenders.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
    assert offenders == []


def test_no_import_cycles():
    """No module imports, directly or not, a module that imports it (TYPE_CHECKING aside)."""
    import grimp

    graph = grimp.build_graph("labbook", "labbook_tui", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    cycles = [
        (m, other)
        for m in modules
        for other in graph.find_modules_directly_imported_by(m)
        if other != m and other in graph.modules and graph.chain_exists(other, m)
    ]
    assert cycles == []
