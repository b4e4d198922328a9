"""What ``labbook import``, ``labbook run`` and ``labbook watch`` share: finding run
directories below paths (:func:`discover`) and completing what a recogniser read
with what capture knows (:class:`Completer`: git state, environment, seed, data
fingerprints, owner, status).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

from labbook.analysis.status import infer_status
from labbook.capture.owner import current_user, owner_of
from labbook.model import RunFacts
from labbook.recognisers import RECOGNISERS, DirInfo, Recogniser, walk
from labbook.recognisers.base import claims
from labbook.sources.names import is_path_name, path_names, repo_name
from labbook.warn import warn


def discover(
    paths: Iterable[str | os.PathLike[str]],
    recognisers: list[Recogniser] | None = None,
    missing: list[str] | None = None,
    unreadable: list[str] | None = None,
) -> list[tuple[Recogniser, DirInfo]]:
    """Every (recogniser, directory) pair below ``paths``, in walk order.

    Paths that do not exist are added to ``missing``, directories that cannot be
    listed to ``unreadable`` (each with its warning).
    """
    recs = RECOGNISERS if recognisers is None else recognisers
    found: list[tuple[Recogniser, DirInfo]] = []
    weak: set[Path] = set()

    def visit(d: DirInfo) -> bool:
        for rec, is_weak in claims(d, recs):
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
        for _ in walk(root, visit, unreadable=unreadable):
            pass
    if weak:
        # A weak match (a bare console log) with runs below it is their parent, not a run.
        parents = {p for _, d in found if d.path not in weak for p in d.path.parents}
        found = [(r, d) for r, d in found if d.path not in weak or d.path not in parents]
    return found


class Completer:
    """Completes recogniser facts with capture; caches per-repository git state."""

    def __init__(
        self, *, git: bool = True, run_dirs: Iterable[str | os.PathLike[str]] = ()
    ) -> None:
        self.git = git
        #: every run dir of this import: their files are outputs, not untracked code
        self.run_dirs = [os.fspath(d) for d in run_dirs]
        #: default names that tell this import's runs apart (labbook.sources.names)
        self._names = path_names(self.run_dirs) if self.run_dirs else {}
        self._git_cache: dict[str, object] = {}
        self._host = socket.gethostname()
        self._user = current_user()

    def complete(self, facts: RunFacts) -> RunFacts:
        from labbook.capture.env import importer_env
        from labbook.capture.seed import pick_seed, seed_from_argv, seed_from_config

        if is_path_name(facts.name, facts.path):
            base = facts.path.split("#", 1)[0]
            facts.name = self._names.get(base) or repo_name(base) or facts.name
        facts.host = facts.host or self._host
        facts.user = facts.user or owner_of(facts.path) or self._user  # the writer, not us
        if facts.seed.value is None:
            facts.seed = pick_seed(  # an unknown seed stays unknown unless one is found
                seed_from_config(facts.config), seed_from_argv(facts.command or []), facts.seed
            )
        if self.git:
            self._complete_git(facts)
        if facts.env is None:
            facts.env = importer_env()
        # -- data fingerprints (issue #5): config values that name existing paths ----
        if not facts.data:
            from labbook.capture.data import data_base_dir, fingerprint_paths

            cache = self.__dict__.setdefault("_data_cache", {})  # one walk per path per import
            facts.data = fingerprint_paths(
                facts.config, data_base_dir(facts), skip=[facts.path.split("#", 1)[0]], cache=cache
            )
        # -- end of data fingerprints ---------------------------------------------------
        infer_status(facts)
        return facts

    def _complete_git(self, facts: RunFacts) -> None:
        from labbook.capture.git import capture_git, find_repo_root, without_outputs

        if facts.git is not None and facts.git.diff:
            return  # the framework recorded the run's own git state
        base = facts.path.split("#", 1)[0]
        root = find_repo_root(base)
        if root is None:
            return
        if root not in self._git_cache:
            captured = capture_git(root)
            if captured is not None and self.run_dirs:
                captured = without_outputs(captured, self.run_dirs)
            self._git_cache[root] = captured
        state = self._git_cache[root]
        if state is None:
            return
        if facts.git is not None and facts.git.commit and facts.git.commit != state.commit:  # type: ignore[attr-defined]
            return  # recorded at a different commit: today's working tree says nothing of it
        facts.git = state  # type: ignore[assignment]
