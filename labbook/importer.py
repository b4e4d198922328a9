"""``labbook import``: find run directories below paths and record them.

Discovery walks each path once; each directory is offered to the recognisers in
order (see :mod:`labbook.recognisers`). What a recogniser reads is completed with
what capture knows — git state (one capture per repository per import), the
environment, the seed — and its status is inferred, then saved. Re-importing a
run updates it in place: a run is identified by its source (its path).

Bad input never stops an import: each problem is one warning naming the file.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labbook.model import RunFacts
from labbook.recognisers import RECOGNISERS, DirInfo, Recogniser, walk
from labbook.status import infer_status
from labbook.store import Store
from labbook.warn import warn

Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # run dirs that could not be read
    missing: list[str] = field(default_factory=list)  # paths given that do not exist

    @property
    def ids(self) -> list[str]:
        return self.created + self.updated


def discover(
    paths: Iterable[str | os.PathLike[str]],
    recognisers: list[Recogniser] | None = None,
    missing: list[str] | None = None,
) -> list[tuple[Recogniser, DirInfo]]:
    """Every (recogniser, directory) pair below ``paths``, in walk order."""
    recs = RECOGNISERS if recognisers is None else recognisers
    found: list[tuple[Recogniser, DirInfo]] = []
    weak: set[Path] = set()

    def visit(d: DirInfo) -> bool:
        for rec in recs:
            try:
                matched = rec.match(d)
                is_weak = matched and rec.weak(d)
            except Exception as exc:  # a recogniser bug must not end the walk
                warn(d.path, f"{rec.framework}: cannot check ({type(exc).__name__}: {exc})")
                continue
            if matched:
                found.append((rec, d))
                if is_weak:
                    weak.add(d.path)
                    return True
                if rec.owns_subtree:
                    return False
        return True

    for p in paths:
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(p))))
        if not root.exists():
            warn(root, "no such file or directory")
            if missing is not None:
                missing.append(str(root))
            continue
        if root.is_file():
            root = root.parent
        for _ in walk(root, visit):
            pass
    if weak:
        # A weak match (a bare console log) with runs below it is their parent, not a run.
        parents = {p for _, d in found if d.path not in weak for p in d.path.parents}
        found = [(r, d) for r, d in found if d.path not in weak or d.path not in parents]
    return found


class Completer:
    """Completes recogniser facts with capture; caches per-repository git state."""

    def __init__(self, *, git: bool = True) -> None:
        self.git = git
        self._git_cache: dict[str, object] = {}
        self._host = socket.gethostname()
        try:
            self._user = getpass.getuser()
        except Exception:
            self._user = str(os.getuid())

    def complete(self, facts: RunFacts) -> RunFacts:
        from labbook.capture.env import importer_env
        from labbook.capture.seed import pick_seed, seed_from_argv, seed_from_config

        facts.host = facts.host or self._host
        facts.user = facts.user or self._user
        if facts.seed.value is None:
            facts.seed = pick_seed(
                seed_from_config(facts.config), seed_from_argv(facts.command or [])
            )
        if self.git:
            self._complete_git(facts)
        if facts.env is None:
            facts.env = importer_env()
        infer_status(facts)
        return facts

    def _complete_git(self, facts: RunFacts) -> None:
        from labbook.capture.git import capture_git, find_repo_root

        if facts.git is not None and facts.git.diff:
            return  # the framework recorded the run's own git state
        base = facts.path.split("#", 1)[0]
        root = find_repo_root(base)
        if root is None:
            return
        if root not in self._git_cache:
            self._git_cache[root] = capture_git(root)
        state = self._git_cache[root]
        if state is None:
            return
        if facts.git is not None and facts.git.commit and facts.git.commit != state.commit:  # type: ignore[attr-defined]
            return  # recorded at a different commit: today's working tree says nothing of it
        facts.git = state  # type: ignore[assignment]


def import_paths(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    progress: Progress | None = None,
    git: bool = True,
) -> ImportReport:
    """Discover and record every run below ``paths``."""
    report = ImportReport()
    if progress:
        progress("discover", 0, 0)
    found = discover(paths, missing=report.missing)
    completer = Completer(git=git)
    total = len(found)
    for i, (rec, d) in enumerate(found, 1):
        if progress:
            progress("read", i, total)
        try:
            runs = list(rec.read(d))
        except Exception as exc:  # a reader bug or a vanished dir: one warning, go on
            warn(d.path, f"cannot read {rec.framework} run ({type(exc).__name__}: {exc})")
            report.failed.append(str(d.path))
            continue
        if not runs and not d.path.exists():
            warn(d.path, "vanished during import")
            report.failed.append(str(d.path))
        for facts in runs:
            try:
                completer.complete(facts)
                run_id, created = store.save_run(facts)
            except Exception as exc:
                warn(facts.path, f"cannot record run ({type(exc).__name__}: {exc})")
                report.failed.append(facts.path)
                continue
            (report.created if created else report.updated).append(run_id)
    return report
