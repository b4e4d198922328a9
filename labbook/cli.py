"""The ``labbook`` command: a thin layer over the library.

Library errors (:class:`labbook.errors.LabbookError`) are turned into a one-line
message on stderr and a non-zero exit in one place, :meth:`LabbookGroup.invoke`.
Warnings about unreadable input go to stderr as ``labbook: warning: …``; stdout
carries only the command's output, so ``--json`` can be piped.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from labbook import __version__
from labbook.errors import AmbiguousRun, LabbookError, NothingReadable, StoreError
from labbook.textsafe import json_text, printable


class _WarningHandler(logging.Handler):
    """Prints labbook's warnings on stderr, one line each, and counts them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.console: Any = None  # a rich Console while a progress bar is shown

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        line = f"labbook: warning: {printable(record.getMessage())}"
        if self.console is not None:
            self.console.print(line, markup=False, highlight=False, style="yellow")
        else:
            click.echo(line, err=True)


WARNINGS = _WarningHandler()


def _render_error(exc: LabbookError) -> None:
    """``labbook: error: MESSAGE`` (and ``hint: …``), control characters escaped.

    A message is one line; only an ambiguous run reference lists its candidates on
    lines of their own (each escaped: a run's name cannot add lines).
    """
    if isinstance(exc, AmbiguousRun):
        n = len(exc.candidates)
        ref = exc.message.split(f" matches {n} runs:", 1)[0]
        lines = [f"{printable(ref)} matches {n} runs:"]
        lines += [f"  {printable(c)}" for c in exc.candidates[:20]]
        if n > 20:
            lines.append(f"  … and {n - 20} more")
        message = "\n".join(lines)
    else:
        message = printable(exc.message)
    click.echo(f"labbook: error: {message}", err=True)
    if exc.hint:
        click.echo(f"hint: {printable(exc.hint)}", err=True)


def _environment_error(exc: BaseException, db: str | None = None) -> LabbookError | None:
    """A database or file-system error that escaped the library, as a one-line error.

    The library turns what it expects into :class:`StoreError`; this is the net for
    the rest (a read-only database met in the middle of a write, a directory without
    search permission on the way to ``--db``), so that no bad path prints a traceback.
    Anything else is a bug and keeps its traceback.
    """
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        if not db:
            from labbook.paths import default_db_path

            db = str(default_db_path())
        return StoreError(f"{db}: {exc}")
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        where = exc.filename if exc.filename is not None else None
        what = exc.strerror or str(exc)
        return StoreError(f"{where}: {what}" if where is not None else what)
    return None


#: Commands defined in their own modules, imported only when used. ``--help`` lists
#: them with the one-line summary here, so that it imports none of them
#: (tests/test_cli.py checks that each summary is its command's own).
LAZY_COMMANDS = {
    "watch": ("labbook.cli_watch:watch_cmd", "Record every run below PATHS as it is written."),
    "run": ("labbook.cli_memory:run_cmd", "Run COMMAND and record it as a run."),
    "note": ("labbook.cli_memory:note_cmd", "Attach a note, failure reason or lesson to RUN."),
    "tag": ("labbook.cli_memory:tag_cmd", "Tag RUN with TAGS (or --remove them)."),
    "search": ("labbook.cli_memory:search_cmd", "Full-text search over notes, failures, configs."),
    "check": ("labbook.cli_memory:check_cmd", "Before a run: past runs like it that went wrong."),
    "hooks": ("labbook.cli_memory:hooks_cmd", "Shell hooks that warn before repeating a mistake."),
    "diff": ("labbook.cli_diff:diff_cmd", "What changed between two runs."),
    "compare": ("labbook.cli_diff:compare_cmd", "The params that differ across runs."),
}
#: Entry-point group through which other packages add commands (the TUI adds ``tui``).
PLUGIN_GROUP = "labbook.commands"


def _load(target: str) -> click.Command | None:
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # not part of this build
        raise
    command = getattr(module, attr, None)
    return command if isinstance(command, click.Command) else None


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


class LabbookGroup(click.Group):
    """Renders every LabbookError once, here, instead of in each command.

    Besides the commands defined in this module it offers :data:`LAZY_COMMANDS`
    and commands that installed packages register under :data:`PLUGIN_GROUP`
    (that is how ``labbook tui`` exists without the core importing the TUI).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS, *_plugins()})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in LAZY_COMMANDS:
            return _load(LAZY_COMMANDS[cmd_name][0])
        plugin = _plugins().get(cmd_name)
        if plugin is None:
            return None
        try:
            loaded = plugin.load()
        except ImportError as exc:
            raise click.ClickException(
                f"the '{cmd_name}' command is installed but cannot load ({exc})"
            ) from exc
        return loaded if isinstance(loaded, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabbookError as exc:
            _render_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("labbook: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `labbook ls | head`: the reader went away; that is not an error.
            sys.stderr.close()
            ctx.exit(0)
        except Exception as exc:  # the environment's errors; anything else is re-raised
            error = _environment_error(exc, (ctx.obj or {}).get("db"))
            if error is None:
                raise
            _render_error(error)
            ctx.exit(error.exit_code)


def _store(ctx: click.Context, *, create: bool = True) -> Any:
    """The store, with writes that ``labbook run`` had to leave in its journal written."""
    from labbook.journal import replay_all
    from labbook.store import Store

    store = Store.open(ctx.obj["db"], create=create)
    try:
        replay_all(store)
    except Exception as exc:  # never let a leftover journal stop a command
        from labbook.warn import warn

        warn(None, f"cannot write the journal ({type(exc).__name__}: {exc})")
    return store


def _echo_json(value: Any) -> None:
    """The true values, JSON-escaped: no control or bidi character reaches the terminal raw."""
    click.echo(json_text(json.dumps(value, indent=2, ensure_ascii=False, default=str)))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (see README: the --json contract)."
)


@click.group(cls=LabbookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=click.Path(readable=False),  # the store says what is wrong with it, in one line
    envvar="LABBOOK_DB",
    help="Database file. Default: $LABBOOK_DB, else ~/.local/share/labbook/labbook.db.",
)
@click.version_option(__version__, prog_name="labbook")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """labbook — a lab notebook for ML experiments.

    Records every training run's code, config, seed, environment, metrics and
    outcome into SQLite, without changes to your training code.
    """
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    logger = logging.getLogger("labbook")
    if WARNINGS not in logger.handlers:
        saved = (logger.propagate, logger.level)
        logger.addHandler(WARNINGS)
        logger.propagate = False
        logger.setLevel(logging.WARNING)

        def restore() -> None:  # when run in-process (tests, the demo), leave logging as found
            logger.removeHandler(WARNINGS)
            logger.propagate, logger.level = saved

        ctx.call_on_close(restore)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--no-git", is_flag=True, help="Do not capture git state.")
@click.option(
    "--full", is_flag=True, help="Read every run dir again, also those unchanged since last time."
)
@json_option
@click.pass_context
def import_cmd(
    ctx: click.Context, paths: tuple[str, ...], no_git: bool, full: bool, as_json: bool
) -> None:
    """Find run directories below PATHS and record them.

    Recognises TensorBoard, PyTorch Lightning, Hugging Face Trainer, Hydra, wandb,
    MLflow and plain config + metrics/log directories. Importing again updates
    runs in place; it never duplicates them, and run dirs whose files have not
    changed since they were recorded are not read again (--full reads them).
    Exits 1 when a run could not be recorded.
    """
    from labbook.importer import import_paths
    from labbook.render import progress_bar

    with _store(ctx) as store, progress_bar(WARNINGS, enabled=not as_json) as progress:
        report = import_paths(store, paths, progress=progress, git=not no_git, full=full)
    if as_json:
        _echo_json(
            {
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "failed": report.failed,
                "unrecorded": report.unrecorded,
                "missing": report.missing,
                "warnings": WARNINGS.count,
            }
        )
    else:
        parts = [f"{len(report.created)} new", f"{len(report.updated)} updated"]
        if report.unchanged:
            parts.append(f"{len(report.unchanged)} unchanged")
        if report.failed:
            parts.append(f"{len(report.failed)} unreadable")
        if report.unrecorded:
            parts.append(f"{len(report.unrecorded)} not recorded")
        if WARNINGS.count:
            parts.append(f"{WARNINGS.count} warning{'s' if WARNINGS.count != 1 else ''}")
        click.echo(
            f"imported {len(report.ids)} run{'s' if len(report.ids) != 1 else ''} ({', '.join(parts)})"
        )
    if report.unrecorded:
        n = len(report.unrecorded)
        raise StoreError(
            f"{n} run{'s' if n != 1 else ''} could not be recorded",
            hint="run the same import again: what was recorded is kept and not read twice",
        )
    if not report.ids and (report.failed or report.missing):
        raise NothingReadable("nothing could be read from the given paths")


def _filter_options(f: Any) -> Any:
    f = click.option(
        "--status", "-s", multiple=True, help="Only runs with this status (repeatable)."
    )(f)
    f = click.option(
        "--framework", "-f", multiple=True, help="Only runs from this framework (repeatable)."
    )(f)
    f = click.option("--tag", "-t", multiple=True, help="Only runs with this tag (repeatable).")(f)
    f = click.option(
        "--where",
        "-w",
        multiple=True,
        help="Condition on config, metrics or run fields, e.g. 'optimizer.lr>=0.01', 'val/loss<0.3', "
        "'name~resnet*' (repeatable; all must hold).",
    )(f)
    f = click.option(
        "--since", help="Only runs started within this time, e.g. 30d, 12h, 2026-11-01."
    )(f)
    f = click.option(
        "--limit",
        "-n",
        type=int,
        default=50,
        show_default=True,
        help="At most this many runs (0: all).",
    )(f)
    return f


@cli.command("ls")
@_filter_options
@json_option
@click.pass_context
def ls_cmd(
    ctx: click.Context,
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    from labbook.query import RunFilter, parse_since, parse_where, select_runs

    flt = RunFilter(
        status=list(status),
        framework=list(framework),
        tags=list(tag),
        where=parse_where(list(where)),
        since=parse_since(since) if since else None,
        limit=limit or None,
    )
    with _store(ctx, create=False) as store:
        rows = select_runs(store, flt)
        records = store.records(rows, heavy=False)
    if as_json:
        _echo_json(records)
        return
    from labbook.render import print_runs

    print_runs(records)


@cli.command("show")
@click.argument("run")
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show everything recorded about RUN.

    RUN is an id or id prefix, a name, a path, @last, or @-N (the N-th newest).
    """
    from labbook.query import resolve

    with _store(ctx, create=False) as store:
        record = store.record(resolve(store, run))
    if as_json:
        _echo_json(record)
        return
    from labbook.render import print_run

    print_run(record)


@cli.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo project directory.")
@click.pass_context
def demo_cmd(ctx: click.Context, keep: bool) -> None:
    """Try labbook on a throwaway project: three runs, recorded and shown.

    Creates a git project in a temporary directory, runs the example training
    script three times (a normal run, one that diverges, one with another seed),
    imports the runs into a demo database and prints `labbook ls` and `labbook show`.
    """
    from labbook.demo import run_demo

    run_demo(db=ctx.obj["db"], keep=keep)


def main() -> None:
    cli(prog_name="labbook")
