"""What ``labbook watch`` watches: roots and ignore globs, from the command line or config.

``~/.config/labbook/config.toml`` (``$XDG_CONFIG_HOME`` aware) may hold::

    [watch]
    roots = ["~/experiments", "/scratch/me/runs"]
    ignore = ["*.npy", "wandb/artifacts/*"]
    inactivity_timeout = 600

Paths on the command line win over ``roots``; ``--ignore`` globs add to the
defaults and to the config's.

``[notify]`` (see :mod:`labbook.sources.watch.notify`; ``--notify`` wins)::

    [notify]
    url = "https://chat.example.org/hooks/…"   # or: command = "notify-send labbook"
    on = ["failed", "diverged", "killed"]       # also: "finished", "unknown"
    throttle_s = 60                             # at most `burst` (5) events a window
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.config import config_file as config_file
from labbook.config import read_section
from labbook.recognisers.base import SKIP_DIRS

#: Directory names whose contents never belong to a run's record (the import walk's list).
IGNORED_DIRS = SKIP_DIRS

#: File globs ignored by default: checkpoints and weights (large, rewritten often,
#: never read by labbook), editor and sync leftovers, SQLite side files.
DEFAULT_IGNORE = (
    "*.ckpt",
    "*.pt",
    "*.pth",
    "*.bin",
    "*.safetensors",
    "*.h5",
    "*.onnx",
    "*.npz",
    "*.pkl",
    "*.swp",
    "*~",
    "*.tmp",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
)

DEFAULT_INACTIVITY_S = 600.0


@dataclass
class WatchConfig:
    roots: list[Path]
    ignore: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE))
    inactivity_timeout: float = DEFAULT_INACTIVITY_S


def _read_config(path: Path) -> dict[str, Any]:
    return read_section("watch", path)


def load_config(
    paths: Sequence[str] = (), ignore: Iterable[str] = (), *, cwd: str | None = None
) -> WatchConfig:
    """Roots (given paths, else the config's ``roots``, else the cwd) and ignore globs."""
    section = _read_config(config_file())
    base = cwd or os.getcwd()
    raw_roots: list[str] = list(paths)
    if not raw_roots:
        cfg_roots = section.get("roots", [])
        if isinstance(cfg_roots, list):
            raw_roots = [str(r) for r in cfg_roots]
    if not raw_roots:
        raw_roots = [base]
    roots = []
    for r in raw_roots:
        p = Path(os.path.abspath(os.path.join(base, os.path.expanduser(r))))
        if p not in roots:
            roots.append(p)
    globs = list(DEFAULT_IGNORE)
    cfg_ignore = section.get("ignore", [])
    if isinstance(cfg_ignore, list):
        globs += [str(g) for g in cfg_ignore]
    globs += list(ignore)
    timeout = section.get("inactivity_timeout", DEFAULT_INACTIVITY_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        timeout = DEFAULT_INACTIVITY_S
    return WatchConfig(roots=roots, ignore=globs, inactivity_timeout=float(timeout))


class PathFilter:
    """Whether a path is worth looking at: not in an ignored dir, not matching a glob."""

    def __init__(self, globs: Iterable[str] = DEFAULT_IGNORE) -> None:
        self.globs = list(globs)
        # globs with a slash match the whole path; the others the base name only
        self._name_globs = [g for g in self.globs if "/" not in g]
        self._path_globs = [g for g in self.globs if "/" in g]

    def ignored(self, path: str) -> bool:
        parts = path.split(os.sep)
        if any(p in IGNORED_DIRS for p in parts):
            return True
        name = parts[-1]
        if any(fnmatch.fnmatchcase(name, g) for g in self._name_globs):
            return True
        return any(fnmatch.fnmatchcase(path, "*" + g.lstrip("*")) for g in self._path_globs)


def notify_config(target: str | None = None, on: Sequence[str] | None = None) -> Any:
    """``watch --notify`` (``target``, ``on``) over ``[notify]`` of the config file: a
    :class:`~labbook.sources.watch.notify.NotifyConfig` (``target`` None: off)."""
    from labbook.sources.watch.notify import load_notify

    path = config_file()
    return load_notify(read_section("notify", path), target, on, where=path)
