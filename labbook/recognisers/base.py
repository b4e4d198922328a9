"""What a recogniser is, and the directory walk that feeds them.

A recogniser knows one on-disk layout. Given a directory listing it answers "is
this a run directory of mine?" (:meth:`Recogniser.match`) and, if so, "what does
it hold?" (:meth:`Recogniser.read`, returning :class:`~labbook.model.RunFacts`).
Most run dirs own everything below them (a Lightning ``version_3`` owns its
``checkpoints/``; a TensorBoard run owns its ``add_hparams`` sub-directory), so
the walk does not descend into a matched directory unless the recogniser says
``owns_subtree = False`` (an MLflow database sits beside other files).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labbook.model import RunFacts
from labbook.warn import warn, warn_exception

#: Directory names never descended into.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        "site-packages",
        "dist-packages",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".cache",
        ".Trash",
    }
)


@dataclass
class DirInfo:
    """One directory's listing, taken once and shared by all recognisers."""

    path: Path
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)

    def has_any(self, *names: str) -> bool:
        return any(n in self.files for n in names)

    def first(self, *names: str) -> Path | None:
        for n in names:
            if n in self.files:
                return self.path / n
        return None


class Recogniser:
    """Base class: subclasses set ``framework`` and implement match/read.

    Every subclass's ``read`` is wrapped: it reads nothing outside ``d.path``
    through a symlink (see :mod:`labbook.readers.contain`), and what it returns
    goes through :func:`checked_facts` (a point or name no store can hold costs
    only itself).
    """

    framework: str = "generic"
    owns_subtree: bool = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        read = cls.__dict__.get("read")
        if read is not None and not getattr(read, "_checked", False):

            @functools.wraps(read)
            def checked(self: Recogniser, d: DirInfo) -> Iterator[RunFacts]:
                from labbook.readers.contain import run_root

                with run_root(d.path):
                    facts_list = list(read(self, d))
                for facts in facts_list:
                    yield checked_facts(facts)

            checked._checked = True  # type: ignore[attr-defined]
            cls.read = checked  # type: ignore[method-assign]

    def match(self, d: DirInfo) -> bool:
        raise NotImplementedError

    def weak(self, d: DirInfo) -> bool:
        """Whether a match of ``d`` yields to runs found below it (see :func:`discover`)."""
        return False

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        raise NotImplementedError


def checked_facts(facts: RunFacts) -> RunFacts:
    """``facts`` without metric points, tags and config keys that cannot be stored.

    Readers skip bad values themselves and name the file and field; this is the
    net under them (one warning naming the run dir), checked in C-level passes.
    """
    from labbook.readers.values import (
        BadValues,
        as_float,
        checked_points,
        shown_value,
        storable_name,
    )

    bad = BadValues()
    for tag in list(facts.metrics):
        points = checked_points(tag, facts.metrics[tag], bad, "in the metrics")
        if points is None:
            del facts.metrics[tag]
        elif points is not facts.metrics[tag]:
            facts.metrics[tag] = points
    for key in list(facts.config):
        value = facts.config[key]
        if not storable_name(key):
            bad.add(key, "the config key is not valid text (a lone surrogate); skipped")
            del facts.config[key]
        elif type(value) is int and as_float(value) is None:
            bad.add(key, f"config value {shown_value(value)} is too large to store; skipped")
            del facts.config[key]
    for name in ("started_at", "ended_at"):  # shown as dates: years 1970 to 9999
        when = getattr(facts, name)
        if when is not None and not (isinstance(when, int | float) and 0 <= when < 253402300800):
            bad.add(name, f"{shown_value(when)} is not a time; ignored")
            setattr(facts, name, None)
    bad.report(facts.path)
    return facts


def claims(d: DirInfo, recognisers: Iterable[Recogniser]) -> Iterator[tuple[Recogniser, bool]]:
    """Each of ``recognisers`` that matches ``d``, in order, with whether its match is weak.

    One that raises is passed over with one warning: a recogniser's bug must not end
    an import's walk, a launch or the daemon.
    """
    for rec in recognisers:
        try:
            matched = rec.match(d)
            is_weak = matched and rec.weak(d)
        except Exception as exc:
            warn_exception(d.path, f"{rec.framework}: cannot check", exc)
            continue
        if matched:
            yield rec, is_weak


def try_read(rec: Recogniser, d: DirInfo) -> tuple[list[RunFacts], Exception | None]:
    """What ``rec`` reads from ``d``, or ``([], the exception)`` when reading raised."""
    try:
        return list(rec.read(d)), None
    except Exception as exc:  # a reader bug or a vanished dir: the caller says so and goes on
        return [], exc


def cannot_read(rec: Recogniser, d: DirInfo, exc: Exception) -> None:
    """The one warning for a run dir that ``rec`` failed to read."""
    warn_exception(d.path, f"cannot read {rec.framework} run", exc)


def read_or_warn(rec: Recogniser, d: DirInfo) -> list[RunFacts]:
    """What ``rec`` reads from ``d``; [] with one warning when reading raised."""
    runs, exc = try_read(rec, d)
    if exc is not None:
        cannot_read(rec, d, exc)
    return runs


def list_dir(path: Path, *, unreadable: list[str] | None = None) -> DirInfo | None:
    """List ``path`` (files and real directories; symlinked dirs are not followed).

    An entry that cannot be looked at (a symlink loop, a link into a directory we
    may not search) is listed as a file: its name may make the directory a run,
    and the reader that opens it warns, naming it, why it cannot be read. A
    dangling symlink is left out. A directory that cannot be listed gives a
    warning and None, and is added to ``unreadable``.
    """
    info = DirInfo(path)
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        info.dirs.add(entry.name)
                    elif entry.is_file():
                        info.files.add(entry.name)
                except FileNotFoundError:
                    continue
                except OSError:
                    info.files.add(entry.name)
    except FileNotFoundError:
        warn(path, "vanished while being read")
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        warn(path, f"cannot list directory ({exc.strerror or exc})")
        if unreadable is not None:
            unreadable.append(str(path))
        return None
    return info


def walk(
    root: Path,
    visit: Callable[[DirInfo], bool],
    *,
    skip: frozenset[str] = SKIP_DIRS,
    unreadable: list[str] | None = None,
) -> Iterator[DirInfo]:
    """Walk ``root`` top-down, yielding each directory's listing.

    ``visit(d)`` returns whether to descend into ``d``'s sub-directories. Symlinked
    directories are not followed, so symlink loops cannot trap the walk; virtual
    environments (a ``pyvenv.cfg``) and the names in ``skip`` are not entered.
    Directories that cannot be listed are warned about and added to ``unreadable``.
    """
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        d = list_dir(path, unreadable=unreadable)
        if d is None:
            continue
        if "pyvenv.cfg" in d.files:
            continue
        yield d
        if visit(d):
            for name in sorted(d.dirs, reverse=True):
                if name not in skip:
                    stack.append(path / name)
