"""The last push of a job: spooled, then pushed in the background (or pushed, or spooled).

``labbook run`` (with no ``labbook watch`` on its store) calls :func:`spool_and_detach`:
the batch is written to the spool (:mod:`labbook.store.remote.spool`) under the shared
home first, synchronously (a local or NFS write: what makes an ephemeral node safe,
since Slurm kills a job's leftover processes), and the push itself is handed to a
detached ``labbook remote push`` (its own session, no pipe of the job's), so that the
user's command never waits on the network: not on a slow server, not on libpq's
connect timeout, not on a partition. That push ingests the spool (this node's file
too) and deletes it once the server committed it; killed, it leaves the file for any
later push on any node (issue #13 item 6).

``labbook watch``, as it stops, calls :func:`push_or_spool`: one push round, and when
it fails, the batch goes to the spool.

Above both the push and the spool (the push ingests the spool; this writes it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from labbook.errors import LabbookError
from labbook.store import outbox
from labbook.store.remote.config import RemoteConfig
from labbook.store.remote.push import push_round, snapshot
from labbook.store.remote.spool import parse_name, pending_files, spool_dir_of, write_file

#: At most this many runs in the spool file a ``labbook run`` exit writes (the run it
#: recorded first): an exit costs a bounded write even after an upgrade marked every
#: run of a large store unpushed; the rest goes with the detached push.
EXIT_SPOOL_MAX_RUNS = 200


def write_batch(
    store: Any,
    cfg: RemoteConfig,
    *,
    incremental: bool = False,
    first: list[str] | None = None,
) -> Path | None:
    """Spool what this store has not pushed: one file ``<origin>-<gen>.lbspool`` in
    ``cfg.spool_dir`` (the batch a push would send, with every blob it references).
    The runs stay dirty here (a later push of this node sends them again, to the same
    result).

    By default (``labbook watch`` stopping) every dirty run, and older spool files of
    this origin are removed once the new one is in place (it holds all that they held
    that is still unpushed). ``incremental`` (``labbook run``'s exit): only what no
    spool file of this origin already holds — the runs marked since the newest such
    file was claimed — with ``first`` (the run this launch recorded) first and at most
    :data:`EXIT_SPOOL_MAX_RUNS`; older files stay (ingest is guarded by ``(origin,
    version)``, so several files of one origin, in any order, give the same rows), so
    a long backlog is not rewritten at every exit.
    Returns the file, or None when nothing is to be spooled."""
    local = store.conn
    origin = outbox.origin(local, store.path)
    folder = spool_dir_of(cfg)
    if incremental:
        since = max(
            (
                parsed[1]
                for f in pending_files(folder)
                if (parsed := parse_name(f.name)) and parsed[0] == origin
            ),
            default=-1,
        )
        wanted = list(first or [])
        marks = ", ".join("?" * len(wanted)) or "NULL"
        rows = local.execute(
            f"SELECT run_id FROM dirty WHERE gen > ? GROUP BY run_id"
            f" ORDER BY run_id IN ({marks}) DESC, min(gen), run_id LIMIT ?",
            [since, *wanted, EXIT_SPOOL_MAX_RUNS],
        ).fetchall()
    else:
        rows = local.execute(
            "SELECT run_id FROM dirty GROUP BY run_id ORDER BY min(gen), run_id"
        ).fetchall()
    if not rows:
        return None
    claimed = outbox.claim(local)
    batch = snapshot(store, origin=origin, claimed=claimed, run_ids=[r[0] for r in rows])
    batch["pending"] = 0
    batch["spooled_at"] = batch.get("at")
    path = write_file(folder, origin, claimed, batch)
    if not incremental:
        for old in pending_files(path.parent):
            parsed = parse_name(old.name)
            if parsed and parsed[0] == origin and parsed[1] < claimed:
                with contextlib.suppress(OSError):
                    old.unlink()
    return path


def push_or_spool(
    store: Any,
    cfg: RemoteConfig,
    *,
    timeout: float | None = None,
    max_batches: int | None = None,
) -> str:
    """The last push of a job (``labbook run`` with no daemon on its store, ``labbook
    watch`` stopping): one push round; when the lab's notebook cannot be reached, the
    batch goes to the spool instead. Never raises: returns one line saying what
    happened (for ``--debug`` and the daemon's log). ``max_batches``: push at most
    that many batches now (``labbook run`` pushes one: a node with a long backlog
    does not keep its user waiting; the rest goes with the next push)."""
    if not cfg.enabled or not cfg.push:
        return "no lab notebook to push to"
    if timeout is not None:
        cfg = replace(cfg, connect_timeout_s=timeout)
    try:
        result = push_round(store, cfg, max_batches=max_batches)
        return f"pushed {result.pushed} runs to the lab's notebook"
    except Exception as exc:  # unreachable, lost mid-push, no schema yet: spool it all
        reason = exc.message if isinstance(exc, LabbookError) else f"{type(exc).__name__}: {exc}"
        reason = (reason.strip().splitlines() or [type(exc).__name__])[0]
        try:
            path = write_batch(store, cfg)
        except Exception as spool_exc:  # the runs stay dirty locally
            return f"not pushed ({reason}); cannot spool: {spool_exc}"
        if path is None:
            return f"not pushed ({reason}); nothing to spool"
        return f"not pushed ({reason}); spooled to {path}"


#: The detached push's log (beside the database) is started afresh past this size.
LOG_MAX_BYTES = 256 * 1024


def push_log(db: Path) -> Path:
    """The detached pushes' log of the store at ``db``: ``<db>.push.log`` (private)."""
    return db.with_name(db.name + ".push.log")


def detach_push(db: Path, *, db_arg: str | None = None, run_id: str | None = None) -> int | None:
    """Start ``labbook [--db DB] remote push`` detached: a session of its own (no
    terminal, no job's process group), stdin from /dev/null, stdout and stderr to the
    store's push log (never the caller's pipes: a caller reading them to EOF, a test
    or ``$(labbook run ...)``, does not wait for it). Returns its pid, or None when it
    could not be started (the spool and the dirty runs stay for a later push)."""
    log = push_log(db)
    argv = [sys.executable, "-m", "labbook"]
    if db_arg:
        argv += ["--db", db_arg]
    argv += ["remote", "push"]
    try:
        with contextlib.suppress(OSError):
            if log.stat().st_size > LOG_MAX_BYTES:
                log.unlink()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            close_fds=True,
            start_new_session=True,
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        what = f"run {run_id}: " if run_id else ""
        with contextlib.suppress(OSError):
            os.write(fd, f"{stamp} {what}pushing in the background (pid {proc.pid})\n".encode())
        # not waited for: it outlives this process (then reparented to init)
        proc.returncode = 0  # keeps Popen.__del__ from warning that it still runs
        return proc.pid
    except OSError:
        return None
    finally:
        os.close(fd)


def spool_and_detach(
    store: Any,
    cfg: RemoteConfig,
    *,
    db: Path,
    db_arg: str | None = None,
    run_id: str | None = None,
) -> str | None:
    """The last push of ``labbook run``: spool this store's unpushed batch (fast, local
    or NFS), then push in a detached process (:func:`detach_push`) and return at once.
    Returns None, or one line when the batch could not be spooled (the runs stay dirty
    here and go with the next push). Never raises."""
    if not cfg.enabled or not cfg.push:
        return None
    line = None
    try:
        path = write_batch(store, cfg, incremental=True, first=[run_id] if run_id else None)
    except Exception as exc:  # a full or read-only home: the runs stay dirty locally
        reason = exc.message if isinstance(exc, LabbookError) else f"{type(exc).__name__}: {exc}"
        reason = (str(reason).strip().splitlines() or [type(exc).__name__])[0]
        line = (
            f"cannot spool the run for the lab's notebook ({reason}); it stays in this"
            " node's store for the next push"
        )
        path = None
    else:
        if path is None and not outbox.pending(store.conn):
            return None  # nothing unpushed (neither this run nor a backlog)
    detach_push(db, db_arg=db_arg, run_id=run_id)
    return line
