"""``labbook run -- CMD``: run a command and record it as a run (:mod:`labbook.sources.launch`)."""

from __future__ import annotations

from typing import Any

import click

from labbook.cli.check import check_before, print_warnings
from labbook.cli.options import open_store
from labbook.cli.pushing import db_path, push_in_background
from labbook.errors import LabbookError, UsageError
from labbook.textsafe import printable


def _launch_store(ctx: click.Context) -> Any:
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
    store = _launch_store(ctx)
    try:
        result = launch(
            store,
            argv,
            name=name,
            tags=tags,
            note=note,
            git=not no_git,
            db_path=db_path(ctx),
        )
        if store is not None:
            push_in_background(ctx, store, spool=True, run_id=result.run_id)
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


class StrictRepeat(LabbookError):
    """``--strict``: the config is an exact repeat of one that failed."""

    def __init__(self) -> None:
        super().__init__(
            "this is an exact repeat of a config that failed (--strict)",
            hint="change the config, or run without --strict",
        )
