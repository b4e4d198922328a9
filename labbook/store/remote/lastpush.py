"""The last push of a job: pushed, or spooled when the lab's notebook is unreachable.

``labbook run`` (with no ``labbook watch`` on its store) and ``labbook watch``, as it
stops, call :func:`push_or_spool`: one push round, and when it fails, the batch that
push would have sent goes to the spool (:mod:`labbook.store.remote.spool`) under the
shared home, for any later push on any node to ingest (issue #13 item 6).

Above both the push and the spool (the push ingests the spool; this writes it).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from labbook.errors import LabbookError
from labbook.store import outbox
from labbook.store.remote.config import RemoteConfig
from labbook.store.remote.push import push_round, snapshot
from labbook.store.remote.spool import parse_name, pending_files, spool_dir_of, write_file


def write_batch(store: Any, cfg: RemoteConfig) -> Path | None:
    """Spool what this store has not pushed (every dirty run, the batch a push would
    send, with every blob it references): one file ``<origin>-<gen>.lbspool`` in
    ``cfg.spool_dir``. The runs stay dirty here (a later push of this node sends them
    again, to the same result); older spool files of this origin are removed once the
    new one is in place (it holds all that they held that is still unpushed).
    Returns the file, or None when nothing is dirty."""
    local = store.conn
    origin = outbox.origin(local, store.path)
    rows = local.execute(
        "SELECT run_id FROM dirty GROUP BY run_id ORDER BY min(gen), run_id"
    ).fetchall()
    if not rows:
        return None
    claimed = outbox.claim(local)
    batch = snapshot(store, origin=origin, claimed=claimed, run_ids=[r[0] for r in rows])
    batch["pending"] = 0
    batch["spooled_at"] = batch.get("at")
    path = write_file(spool_dir_of(cfg), origin, claimed, batch)
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
