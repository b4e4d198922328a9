"""``labbook run -- CMD``: run a command and record it as a run (:mod:`labbook.sources.launch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labbook.cli.check import check_before, print_warnings
from labbook.cli.options import open_store
from labbook.errors import LabbookError, UsageError
from labbook.textsafe import printable


def _db_path(ctx: click.Context) -> Any:
    from labbook.paths import default_db_path

    db = ctx.obj.get("db")
    return Path(db).expanduser() if db else default_db_path()


def _launchopen_store(ctx: click.Context) -> Any:
    """The store for ``labbook run``, or None (one line said) when it cannot be opened:
    the command runs all the same and its record waits in the journal."""
    from labbook.warn import warn, warn_exception

    try:
        return open_store(ctx)
    except LabbookError as exc:
        warn(None, f"cannot open the notebook ({exc.message}); the run is kept in the journal")
        return None
    except Exception as exc:
        what = "cannot open the notebook; the run is kept in the journal"
        warn_exception(None, what, exc)
        return None


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="Name of the run (default: the run directory's or none).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--note", help="A note to attach to the run at launch.")
@click.option("--no-check", is_flag=True, help="Do not look for past runs like this one first.")
@click.option(
    "--strict", is_flag=True, help="Do not start an exact repeat of a config that failed (exit 1)."
)
@click.option("--no-git", is_flag=True, help="Do not record git state.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    name: str | None,
    tags: tuple[str, ...],
    note: str | None,
    no_check: bool,
    strict: bool,
    no_git: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and record it as a run: labbook run [OPTIONS] -- CMD ARGS...

    Records argv, cwd, git state, environment (secrets redacted), packages and
    seed at launch; passes the terminal through (a pty when stdout is a
    terminal); keeps the head and tail of the output; records the exit code or
    signal, the duration and why it failed; and joins the run directory the
    command writes, so both are one run. Exits with the command's exit code.
    Past runs like this one that went wrong are shown first (see `labbook check`).
    """
    from labbook.sources.launch import launch

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command to run", hint="labbook run -- python train.py --lr 0.1")
    if not no_check:
        try:
            warnings = check_before(ctx, argv, {})
        except Exception as exc:  # a broken check must not stop the command
            from labbook.warn import warn_exception

            warn_exception(None, "cannot check past runs", exc, expected=(LabbookError,))
            warnings = []
        print_warnings(warnings, err=True)
        if strict and any(w.repeat_of_failure for w in warnings):
            raise StrictRepeat()
    store = _launchopen_store(ctx)
    try:
        result = launch(
            store,
            argv,
            name=name,
            tags=tags,
            note=note,
            git=not no_git,
            db_path=_db_path(ctx),
        )
        if store is not None:
            _push_at_end(ctx, store, result.run_id)
    finally:
        if store is not None:
            store.close()
    if result.journal:
        click.echo(
            f"labbook: the notebook was busy; run {result.run_id} is kept in {result.journal}"
            " and will be recorded by the next labbook command",
            err=True,
        )
    how = "finished" if result.failure is None and result.exit_code == 0 else "ended"
    detail = (
        printable(f"{result.failure.kind}: {result.failure.message}") if result.failure else "ok"
    )
    click.echo(
        f"labbook: run {result.run_id} {how} ({detail}; exit {result.exit_code},"
        f" {result.duration:.1f} s)",
        err=True,
    )
    ctx.exit(result.exit_code)


def _push_at_end(ctx: click.Context, store: Any, run_id: str | None = None) -> None:
    """The job's last push, when a lab notebook is configured ([remote] in config.toml)
    and no ``labbook watch`` records into this store (the daemon pushes on its own):
    the batch is spooled under the home now (fast, and what keeps an ephemeral node's
    runs), and a detached ``labbook remote push`` sends it (labbook.store.remote.
    lastpush): the command's end never waits on the network. Nothing is said, unless
    the spool could not be written (one line; the runs stay here for the next push)."""
    from labbook.warn import warn_exception

    try:
        from labbook.store.remote.config import RemoteConfig

        cfg = RemoteConfig.load()
        if not cfg.enabled or not cfg.push or _daemon_records(_db_path(ctx)):
            return
        from labbook.store.remote.lastpush import spool_and_detach

        db_arg = ctx.obj.get("db")
        line = spool_and_detach(
            store, cfg, db=Path(store.path), db_arg=str(db_arg) if db_arg else None, run_id=run_id
        )
    except Exception as exc:  # never the command's exit code
        warn_exception(None, "cannot push the run to the lab's notebook", exc)
        return
    if line:
        click.echo(f"labbook: {printable(line)}", err=True)


def _daemon_records(db: Path) -> bool:
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


class StrictRepeat(LabbookError):
    """``--strict``: the config is an exact repeat of one that failed."""

    def __init__(self) -> None:
        super().__init__(
            "this is an exact repeat of a config that failed (--strict)",
            hint="change the config, or run without --strict",
        )
