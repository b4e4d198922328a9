"""``labbook import``: find run directories below paths and record them.

Discovery walks each path once; each directory is offered to the recognisers in
order (see :mod:`labbook.recognisers`). What a recogniser reads is completed with
what capture knows — git state (one capture per repository per import), the
environment, the seed — and its status is inferred, then saved. Re-importing a
run updates it in place: a run is identified by its source (its path).

Bad input never stops an import: each problem is one warning naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labbook.errors import LabbookError, StoreBusy
from labbook.model import RunFacts
from labbook.recognisers import DirInfo, Recogniser
from labbook.recognisers.base import cannot_read, try_read
from labbook.sources.discover import Completer, discover
from labbook.store import Store, safe_text
from labbook.warn import held, import_warnings, replay, warn, warn_exception

Progress = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    #: runs of run dirs unchanged since they were last recorded (not read again)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # run dirs that could not be read
    missing: list[str] = field(default_factory=list)  # paths given that do not exist
    #: runs read but not recorded (the store refused them): the import failed
    unrecorded: list[str] = field(default_factory=list)
    #: run dirs (source keys) whose runs were removed by ``labbook rm``: not recorded
    removed: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return self.created + self.updated + self.unchanged


def import_paths(
    store: Store,
    paths: Iterable[str | os.PathLike[str]],
    *,
    progress: Progress | None = None,
    git: bool = True,
    full: bool = False,
    include_removed: bool = False,
) -> ImportReport:
    """Discover and record every run below ``paths``.

    A run dir whose files (names, sizes, mtimes) are as they were when it was last
    recorded is not read again (``report.unchanged``) unless ``full``; each run
    dir is committed on its own, so an interrupted import keeps what it did and
    the next one goes on from there.

    A run dir that is gone by the time it is read (deleted, moved) is not recorded
    (an earlier record of it is kept): it gets one warning naming it, instead of
    one per file that could no longer be opened. Directories that cannot be listed
    are warned about and counted in ``report.failed``; runs the store could not
    take (busy for longer than its retries) in ``report.unrecorded``.

    A run dir whose run was removed (``labbook rm``, purged or not) is not recorded
    again (``report.removed``) unless ``include_removed``, which brings a removed
    run back and records a purged one anew.
    """
    from labbook.recognisers.common import dir_signature

    report = ImportReport()
    with import_warnings():
        if progress:
            progress("discover", 0, 0)
        found = discover(paths, missing=report.missing, unreadable=report.failed)
        completer = Completer(git=git, run_dirs=[d.path for _, d in found])
        total = len(found)
        for i, (rec, d) in enumerate(found, 1):
            if progress:
                progress("read", i, total)
            key = safe_text(str(d.path)) or str(d.path)
            if include_removed:
                store.include_source(key)
            elif store.removed_source(key):
                report.removed.append(key)
                continue
            before = store.import_state(key, rec.framework) if not full else None
            if before is not None and dir_signature(d.path, before[1]) == before[0]:
                report.unchanged += before[2]
                continue
            sig = dir_signature(d.path)  # before reading: a change meanwhile reads again
            runs = _read_run(rec, d, report)
            runs = _not_removed(store, runs, report, include=include_removed)
            saved: list[str] = []
            for facts in runs:
                run_id = _save(store, completer, facts, report)
                if run_id is not None:
                    saved.append(run_id)
            if runs and len(saved) == len(runs):
                outside = sorted(
                    {f for facts in runs for f in facts.files if not _below(f, d.path)}
                )
                if outside:
                    sig = dir_signature(d.path, outside)
                _remember(store, key, rec.framework, sig, outside, saved)
    return report


def _not_removed(
    store: Store, runs: list[RunFacts], report: ImportReport, *, include: bool
) -> list[RunFacts]:
    """The runs of a dir that holds several (an MLflow database) but those removed."""
    kept = []
    for facts in runs:
        key = safe_text(facts.source_key) or facts.source_key
        if include:
            store.include_source(key)
        elif store.removed_source(key):
            report.removed.append(key)
            continue
        kept.append(facts)
    return kept


def _below(path: str, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
    except ValueError:
        return False
    return True


def _remember(
    store: Store, key: str, framework: str, sig: str, outside: list[str], run_ids: list[str]
) -> None:
    try:
        store.set_import_state(key, framework, sig, outside, run_ids)
    except Exception as exc:  # only costs a re-read next time
        what = "cannot remember this run dir's state"
        warn_exception(key, what, exc, expected=(LabbookError,))


def _read_run(rec: Recogniser, d: DirInfo, report: ImportReport) -> list[RunFacts]:
    """What ``rec`` reads from ``d``; [] (with one warning) if it cannot be read."""
    if not d.path.is_dir():
        warn(d.path, "vanished during import; not recorded")
        report.failed.append(str(d.path))
        return []
    with held() as said:
        runs, error = try_read(rec, d)
    if not d.path.is_dir():
        # Gone while being read: what was read is partial, and the readers'
        # complaints about files that vanished say less than this one line.
        warn(d.path, "vanished during import; not recorded")
        report.failed.append(str(d.path))
        return []
    replay(said)
    if error is not None:
        cannot_read(rec, d, error)
        report.failed.append(str(d.path))
        return []
    return runs


#: Tries of a save that found the store busy for its whole busy timeout.
SAVE_TRIES = 3


def _save(store: Store, completer: Completer, facts: RunFacts, report: ImportReport) -> str | None:
    """Complete ``facts`` with capture and record them; the run id, or None (one
    warning) when that fails."""
    try:
        completer.complete(facts)
    except Exception as exc:
        warn_exception(facts.path, "cannot read run", exc)
        report.failed.append(facts.path)
        return None
    for attempt in range(1, SAVE_TRIES + 1):
        try:
            run_id, created = store.save_run(facts)
            break
        except StoreBusy as exc:
            if attempt < SAVE_TRIES:
                continue
            warn(facts.path, f"not recorded: {exc.message}")
        except Exception as exc:
            warn_exception(facts.path, "not recorded", exc, expected=(LabbookError,))
        report.unrecorded.append(facts.path)
        return None
    (report.created if created else report.updated).append(run_id)
    return run_id
