"""Default run names that tell runs apart.

A run a framework did not name (MLflow's run name, wandb's, ``labbook.json``'s
``name``) is named by its path, relative to its git repository's root, else to
the directory above all run dirs of one import: the parts that distinguish it
from its siblings are kept (the scenario folder, ``multirun`` vs ``outputs``,
``csv_logs``), and the parts every framework adds (``lightning_logs``) are left
out unless they are needed to keep two names apart (:func:`path_names`). Names
are unique among the run dirs of one import and, relative to a repository root,
within that repository.

A ``labbook run`` without ``--name`` is named from its script (or module or
program) and the arguments it was given: ``train.py --lr 5 --seed 1`` →
``train lr=5 seed=1`` (:func:`command_name`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Path parts a framework puts above every run it writes: they tell no run apart.
NOISE_PARTS = frozenset({"lightning_logs"})
#: The fewest trailing parts a path name keeps (``runs/exp1``, as names read before).
MIN_PARTS = 2
#: At most this many arguments go into a command's name.
MAX_NAME_ARGS = 6
#: Longest value of an argument in a command's name.
MAX_VALUE_CHARS = 24


def is_path_name(name: str | None, path: str) -> bool:
    """Whether ``name`` is the path-derived default a recogniser gave ``path``."""
    if not name:
        return True
    parts = Path(path.split("#", 1)[0]).parts
    return any(name == "/".join(parts[-k:]) for k in range(1, 4))


def _repo_root(path: Path, cache: dict[Path, Path | None]) -> Path | None:
    for parent in [path, *path.parents]:
        if parent in cache:
            return cache[parent]
        if (parent / ".git").exists():
            cache[path] = parent
            return parent
    cache[path] = None
    return None


def _common_parent(paths: Sequence[Path]) -> Path | None:
    if not paths:
        return None
    try:
        common = Path(os.path.commonpath([str(p) for p in paths]))
    except ValueError:  # different drives
        return None
    return common.parent if len(paths) == 1 or common in paths else common


def _name(parts: tuple[str, ...], rel: tuple[str, ...], drop: bool) -> str:
    kept = [p for p in rel if not (drop and p in NOISE_PARTS)]
    if len(kept) < MIN_PARTS:  # keep some context: ``runs/exp1``, not ``exp1``
        tail = [p for p in parts if not (drop and p in NOISE_PARTS)]
        kept = tail[-MIN_PARTS:] if len(tail) >= MIN_PARTS else list(parts[-MIN_PARTS:])
    return "/".join(kept)


def path_names(run_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Default names for run dirs found together (one import): ``str(path)`` → name.

    Each is its path relative to its repository root (a ``.git`` above it), else
    to the directory above all of this import's run dirs outside a repository,
    without :data:`NOISE_PARTS`, and at least its last :data:`MIN_PARTS` parts.
    Where two come out the same, both keep every part.
    """
    dirs = [Path(os.path.abspath(os.fspath(d))) for d in run_dirs]
    cache: dict[Path, Path | None] = {}
    roots = {d: _repo_root(d, cache) for d in dirs}
    loose = _common_parent([d for d in dirs if roots[d] is None])
    rels: dict[Path, tuple[str, ...]] = {}
    for d in dirs:
        base = roots[d] or loose
        try:
            rels[d] = d.relative_to(base).parts if base is not None else d.parts[-MIN_PARTS:]
        except ValueError:
            rels[d] = d.parts[-MIN_PARTS:]
    names = {d: _name(d.parts, rels[d], drop=True) for d in dirs}
    count: dict[tuple[Path | None, str], int] = {}
    for d, n in names.items():
        count[(roots[d], n)] = count.get((roots[d], n), 0) + 1
    for d, n in names.items():
        if count[(roots[d], n)] > 1:
            names[d] = _name(d.parts, rels[d], drop=False)
    return {str(d): n for d, n in names.items()}


def repo_name(path: str) -> str | None:
    """The default name of a run dir found alone (``labbook watch``, ``labbook run``):
    relative to its repository root, as :func:`path_names` names it; None outside one."""
    d = Path(os.path.abspath(path.split("#", 1)[0]))
    if _repo_root(d, {}) is None:
        return None
    return path_names([d]).get(str(d))


def _shown(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def command_name(argv: Sequence[str]) -> str:
    """A run name from a command line: its script, module or program, and its arguments.

    ``python train.py --lr 5 --seed 1`` → ``train lr=5 seed=1``; ``python -m
    pkg.train`` → ``pkg.train``; ``./run.sh`` → ``run``; a flag is ``name``. Never
    blank: a command labbook cannot read is named by its first word.
    """
    from labbook.analysis.check import config_from_argv, parse_command

    args = [str(a) for a in argv]
    kind, target, _start = parse_command(args) if args else (None, None, 0)
    if kind == "script" and target:
        stem = Path(target).stem or Path(target).name
    elif target:
        stem = os.path.basename(target) if kind == "program" else target
    else:
        stem = os.path.basename(args[0]) if args else "command"
    words = [stem or "command"]
    for key, value in list(config_from_argv(args).items())[:MAX_NAME_ARGS]:
        words.append(key if value is True else f"{key}={_shown(value)}")
    return " ".join(words)
