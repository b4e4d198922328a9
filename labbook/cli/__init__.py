"""The ``labbook`` command: a thin layer over the library.

Library errors (:class:`labbook.errors.LabbookError`) are turned into a one-line
message on stderr and a non-zero exit in one place, :meth:`LabbookGroup.invoke`.
Warnings about unreadable input go to stderr as ``labbook: warning: …``; stdout
carries only the command's output, so ``--json`` can be piped.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from labbook import __version__
from labbook.cli.options import WARNINGS
from labbook.errors import AmbiguousRun, LabbookError, StoreError
from labbook.textsafe import printable


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
    "import": ("labbook.cli.runs:import_cmd", "Find run directories below PATHS and record them."),
    "ls": ("labbook.cli.runs:ls_cmd", "List runs, newest first."),
    "show": ("labbook.cli.runs:show_cmd", "Show everything recorded about RUN."),
    "demo": (
        "labbook.cli.demo:demo_cmd",
        "Try labbook on a throwaway project of three runs.",
    ),
    "watch": ("labbook.cli.watch:watch_cmd", "Record every run below PATHS as it is written."),
    "run": ("labbook.cli.run:run_cmd", "Run COMMAND and record it as a run."),
    "note": ("labbook.cli.notes:note_cmd", "Attach a note, failure reason or lesson to RUN."),
    "tag": ("labbook.cli.notes:tag_cmd", "Tag RUN with TAGS (or --remove them)."),
    "search": ("labbook.cli.search:search_cmd", "Full-text search over notes, failures, configs."),
    "check": ("labbook.cli.check:check_cmd", "Before a run: past runs like it that went wrong."),
    "hooks": ("labbook.cli.hooks:hooks_cmd", "Shell hooks that warn before repeating a mistake."),
    "diff": ("labbook.cli.diff:diff_cmd", "What changed between two runs."),
    "compare": ("labbook.cli.diff:compare_cmd", "The params that differ across runs."),
    "rm": (
        "labbook.cli.housekeeping:rm_cmd",
        "Remove runs (rm --undo brings them back; --purge deletes them).",
    ),
    "archive": (
        "labbook.cli.housekeeping:archive_cmd",
        "Archive runs: hidden from default listings (ls --archived).",
    ),
    "gc": (
        "labbook.cli.housekeeping:gc_cmd",
        "Drop blobs and series no run references, and shrink the database.",
    ),
    "replicate": (
        "labbook.cli.replicate:replicate_cmd",
        "Rerun RUN with new seeds, to tell a real gain from seed noise.",
    ),
    "reproduce": (
        "labbook.cli.reproduce:reproduce_cmd",
        "Rebuild RUN's code, environment and command in a git worktree.",
    ),
    "report": (
        "labbook.cli.report:report_cmd",
        "Write a report of RUNS: Markdown for a pull request, or HTML.",
    ),
    "export": (
        "labbook.cli.export:export_cmd",
        "Export metric curves or the run table as csv, jsonl or parquet.",
    ),
    "remote": (
        "labbook.cli.remote:remote_cmd",
        "The lab's shared notebook on PostgreSQL: init, push, status.",
    ),
    "usage": (
        "labbook.cli.usage:usage_cmd",
        "GPU-hours of recent runs: lost, utilisation, memory, energy.",
    ),
}
#: Entry-point group through which other packages add commands (the TUI adds ``tui``).
PLUGIN_GROUP = "labbook.commands"


def _load(target: str) -> click.Command | None:
    import importlib

    module_name, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module_name), attr, None)
    return command if isinstance(command, click.Command) else None


def _plugins() -> dict[str, str]:
    """``{name: "module:attr"}``: the commands installed distributions register under
    :data:`PLUGIN_GROUP`.

    What ``importlib.metadata.entry_points(group=PLUGIN_GROUP)`` finds — the
    ``entry_points.txt`` of each ``*.dist-info`` / ``*.egg-info`` directory on
    ``sys.path``, only the first distribution of each name — read here directly:
    importing importlib.metadata alone costs a quarter of ``labbook --help``
    (benchmarks/bench_startup.py). Zipped eggs are not searched.
    """
    import os
    import re

    found: dict[str, str] = {}
    seen: set[str] = set()
    header = f"[{PLUGIN_GROUP}]"
    for entry in sys.path:
        folder = entry or "."
        try:
            children = os.listdir(folder)
        except (OSError, TypeError, ValueError):  # a zip file, gone, not a path
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            dist = re.sub(r"[-_.]+", "_", low.rpartition(".")[0].partition("-")[0])
            if dist in seen:
                continue  # importlib.metadata: the first on sys.path shadows the rest
            seen.add(dist)
            try:
                with open(os.path.join(folder, child, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):  # none, or an egg-info file
                continue
            if header not in text:
                continue
            section = None
            for line in map(str.strip, text.splitlines()):
                if not line or line.startswith("#"):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line.strip("[]")
                elif section == PLUGIN_GROUP and "=" in line:
                    name, _, value = line.partition("=")
                    # "module:attr [extras]" -> "module:attr", as EntryPoint.load reads it
                    found[name.strip()] = "".join(value.partition("[")[0].split())
    return found


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
            try:
                command = self.get_command(ctx, name)
            except click.ClickException as exc:  # a broken plugin does not break --help
                rows.append((name, f"({exc.message})"))
                continue
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
        target = _plugins().get(cmd_name)
        if target is None:
            return None
        import importlib

        module_name, _, attr = target.partition(":")
        try:
            loaded: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise click.ClickException(
                f"the '{cmd_name}' command is installed but cannot load ({exc})"
            ) from exc
        for part in attr.split(".") if attr else ():  # "module:attr.sub", as EntryPoint.load
            loaded = getattr(loaded, part, None)
        return loaded if isinstance(loaded, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabbookError as exc:
            _render_error(exc)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            # An unknown command or option, a bad value: one line and where to look,
            # not click's usage block (exit 2, as click does).
            where = exc.ctx.command_path if exc.ctx is not None else "labbook"
            _render_error(LabbookError(exc.format_message(), hint=f"see '{where} --help'"))
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


@click.group(cls=LabbookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=click.Path(readable=False),  # the store says what is wrong with it, in one line
    envvar="LABBOOK_DB",
    help="Database file. Default: $LABBOOK_DB, else ~/.local/share/labbook/labbook.db.",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Show debug messages on stderr, with the traceback of every error that labbook "
    "went on after (also: LABBOOK_DEBUG=1).",
)
@click.version_option(__version__, prog_name="labbook")
@click.pass_context
def cli(ctx: click.Context, db: str | None, debug: bool) -> None:
    """labbook — a lab notebook for ML experiments.

    Records every training run's code, config, seed, environment, metrics and
    outcome into SQLite, without changes to your training code.
    """
    from labbook.warn import DEBUG_ENV, env_flag

    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    logger = logging.getLogger("labbook")
    if WARNINGS not in logger.handlers:
        saved = (logger.propagate, logger.level, WARNINGS.level)
        level = logging.DEBUG if debug or env_flag(DEBUG_ENV) else logging.WARNING
        logger.addHandler(WARNINGS)
        logger.propagate = False
        logger.setLevel(level)
        WARNINGS.setLevel(level)

        def restore() -> None:  # when run in-process (tests, the demo), leave logging as found
            logger.removeHandler(WARNINGS)
            logger.propagate, logger.level, handler_level = saved
            WARNINGS.setLevel(handler_level)

        ctx.call_on_close(restore)


def main() -> None:
    cli(prog_name="labbook")
