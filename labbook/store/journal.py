"""A local journal of writes the store could not take at once.

``labbook run`` must never stand between the user and the command: when the
database is busy (a long import, a hundred jobs starting together) or cannot be
opened at all, what the launch wanted to write is appended here instead, and the
command goes on. The journal is written to the store later: by the same process
when it can (before each write and at exit), else by the daemon or the next
labbook command that opens the store (:func:`replay_all`).

Layout: a directory ``<db>.journal/`` beside the database (mode 0700), one file per
launch, ``<time>-<pid>-<random>.jsonl``, one operation a line. The launch holds an
exclusive ``flock`` on its file while it lives, so a replayer skips the files of
launches still running (they replay their own) and takes over those of launches
that died. Every operation is idempotent (a run is saved by its source key, a note
carries its time and is added once), so a replay interrupted after its commit and
before the file was removed only repeats what is already there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labbook.errors import LabbookError
from labbook.model import EnvInfo, Failure, GitState, Point, RunFacts, Seed
from labbook.warn import warn, warn_exception

if TYPE_CHECKING:
    from labbook.store import Store

SUFFIX = ".jsonl"


def journal_dir(db_path: str | os.PathLike[str]) -> Path:
    """Where the journal of the database at ``db_path`` lives."""
    p = Path(db_path)
    return p.with_name(p.name + ".journal")


# --------------------------------------------------------------------------- #
# RunFacts <-> JSON
# --------------------------------------------------------------------------- #


def facts_to_json(facts: RunFacts) -> dict[str, Any]:
    """A JSON-able copy of ``facts`` (points as ``[step, value, wall_time]``)."""
    d = dataclasses.asdict(facts)
    d["metrics"] = {
        tag: [[p.step, p.value, p.wall_time] for p in points]
        for tag, points in facts.metrics.items()
    }
    return d


def facts_from_json(d: dict[str, Any]) -> RunFacts:
    """The inverse of :func:`facts_to_json`."""
    d = dict(d)
    d["seed"] = Seed(**(d.get("seed") or {}))
    if d.get("failure"):
        d["failure"] = Failure(**d["failure"])
    if d.get("git"):
        d["git"] = GitState(**d["git"])
    if d.get("env"):
        d["env"] = EnvInfo(**d["env"])
    d["metrics"] = {
        tag: [Point(int(s), float(v), w) for s, v, w in points]
        for tag, points in (d.get("metrics") or {}).items()
    }
    known = {f.name for f in dataclasses.fields(RunFacts)}
    return RunFacts(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- #
# Applying operations
# --------------------------------------------------------------------------- #


def apply(store: Store, ops: list[dict[str, Any]]) -> None:
    """Write ``ops`` to ``store`` in one transaction (every op is idempotent)."""
    ids: dict[str, str] = {}  # run id the launch chose -> the id the store gave

    def rid(op: dict[str, Any]) -> str:
        return ids.get(op["run_id"], op["run_id"])

    with store.transaction():
        for op in ops:
            kind = op.get("op")
            if kind == "save_run":
                facts = facts_from_json(op["facts"])
                new_id, _ = store.save_run(facts, run_id=op.get("run_id"))
                if op.get("run_id"):
                    ids[op["run_id"]] = new_id
            elif kind == "adopt_and_save":  # labbook run joining its run directory
                store.adopt_source(rid(op), op["source_key"])
                store.save_run(facts_from_json(op["facts"]), run_id=rid(op))
            elif kind == "update_run":
                store.update_run(rid(op), **op["fields"])
            elif kind == "note":
                store.add_note(rid(op), op["text"], kind=op.get("kind", "note"), at=op.get("at"))
            else:
                warn(None, f"journal: unknown operation {kind!r} skipped")


class Journal:
    """The journal file of one launch (created on the first append)."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.dir = journal_dir(db_path)
        self.path: Path | None = None
        self._fd: int | None = None
        self.pending = 0  # operations appended and not yet written to the store

    def append(self, op: dict[str, Any]) -> bool:
        """Append one operation; False (with a warning) when even that cannot be done."""
        try:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            line = json.dumps(op, ensure_ascii=True, allow_nan=True) + "\n"
            os.write(self._fd, line.encode("ascii"))
        except OSError as exc:
            warn(self.dir, f"cannot keep the journal ({exc.strerror or exc}); not recorded")
            return False
        self.pending += 1
        return True

    def _open(self) -> None:
        import fcntl

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self.path = self.dir / name
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    def flush(self, store: Store) -> bool:
        """Write what is pending to ``store``; True when the journal is empty after."""
        if self.path is None or self.pending == 0:
            return True
        ops = _read_ops(self.path)
        apply(store, ops)  # raises when the store is still busy: the journal stays
        self.pending = 0
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # type: ignore[arg-type]
        return True

    def close(self) -> None:
        """Remove the file when nothing is pending; else leave it for a replayer."""
        if self._fd is None:
            return
        if self.pending == 0 and self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)  # drops the flock
        self._fd = None


#: What an entry of the wrong shape (written by another version, or edited) raises
#: when applied: bad input, not a bug, even in strict mode.
_BAD_ENTRY: tuple[type[BaseException], ...] = (LabbookError, KeyError, TypeError, ValueError)


def _read_ops(path: Path) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    with open(path, encoding="ascii", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # a line cut by a crash mid-write: what came before is whole
            try:
                op = json.loads(line)
            except ValueError:
                warn(path, f"line {n}: not a journal entry; skipped")
                continue
            if isinstance(op, dict):
                ops.append(op)
    return ops


def pending_files(db_path: str | os.PathLike[str]) -> list[Path]:
    """Journal files left for the database at ``db_path`` (cheap: one directory read)."""
    d = journal_dir(db_path)
    try:
        with os.scandir(d) as it:
            return sorted(Path(e.path) for e in it if e.name.endswith(SUFFIX))
    except OSError:
        return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Try to take the file's lock without waiting; yields whether it was taken."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False  # its launch is still running and replays it itself
            return
        yield True
    finally:
        os.close(fd)


def replay_all(store: Store, *, budget_s: float | None = 0.5) -> int:
    """Write every journal left by launches that have ended; return the operations written.

    Files of launches still running are skipped. A file that cannot be written now
    (the store busy for longer than ``budget_s``) stays for the next replayer.
    """
    files = pending_files(store.path)
    if not files:
        return 0
    saved = store.busy_timeout
    if budget_s is not None:
        store.set_busy_timeout(budget_s)
    try:
        return _replay(store, files)
    finally:
        store.set_busy_timeout(saved)


def _replay(store: Store, files: list[Path]) -> int:
    from labbook.errors import StoreError

    written = 0
    for path in files:
        with _locked(path) as mine:
            if not mine:
                continue
            try:
                ops = _read_ops(path)
                if ops:
                    apply(store, ops)
            except (StoreError, sqlite3.OperationalError):
                return written  # busy, or the disk is full: try again later
            except Exception as exc:  # a bad entry must not block the ones after it
                bad = path.with_suffix(".bad")
                what = f"cannot replay journal, kept as {bad}"
                warn_exception(path, what, exc, expected=_BAD_ENTRY)
                with contextlib.suppress(OSError):
                    os.replace(path, bad)
                continue
            written += len(ops)
            with contextlib.suppress(OSError):
                os.unlink(path)
    return written
