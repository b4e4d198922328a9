"""Pushing to the lab's notebook after a command wrote to this node's store.

With ``[remote]`` configured and no ``labbook watch`` recording into the store (the
daemon pushes on its own), ``labbook run`` (at its end), ``note`` and ``tag`` hand
the push to a detached ``labbook remote push`` (labbook.store.remote.lastpush): the
user's command never waits on the network. ``labbook run`` also spools its batch
first, which is what keeps an ephemeral node's runs when the job's processes are
killed at its end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labbook.textsafe import printable


def db_path(ctx: click.Context) -> Path:
    from labbook.paths import default_db_path

    db = ctx.obj.get("db") if ctx.obj else None
    return Path(db).expanduser() if db else default_db_path()


def push_in_background(
    ctx: click.Context, store: Any, *, spool: bool, run_id: str | None = None
) -> None:
    """Push what ``store`` has not pushed, without waiting (see the module docstring).
    Nothing is said, unless the spool could not be written (one line; the runs stay
    here for the next push). Never raises: a failure here is never the command's."""
    from labbook.store.dialect import SQLITE
    from labbook.warn import warn_exception

    if store is None or getattr(store, "dialect", SQLITE) is not SQLITE:
        return  # written to the lab's notebook itself (note/tag --remote)
    line = None
    try:
        from labbook.store.remote.config import RemoteConfig

        cfg = RemoteConfig.load()
        if not cfg.enabled or not cfg.push or daemon_records(db_path(ctx)):
            return
        from labbook.store.remote.lastpush import detach_push, spool_and_detach

        db_arg = ctx.obj.get("db") if ctx.obj else None
        db_arg = str(db_arg) if db_arg else None
        if spool:
            line = spool_and_detach(store, cfg, db=Path(store.path), db_arg=db_arg, run_id=run_id)
        else:
            detach_push(Path(store.path), db_arg=db_arg, run_id=run_id)
    except Exception as exc:
        warn_exception(None, "cannot push to the lab's notebook", exc)
        return
    if line:
        click.echo(f"labbook: {printable(line)}", err=True)


def daemon_records(db: Path) -> bool:
    """A ``labbook watch`` holds this store's daemon lock (it pushes itself)."""
    import fcntl
    import os

    from labbook.sources.watch.lock import lock_path

    try:
        fd = os.open(lock_path(db), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it
    return False
