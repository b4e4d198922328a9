"""What the commands share: opening the store, ``--json`` output, the run filters."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from labbook.textsafe import json_text, printable


class WarningHandler(logging.Handler):
    """Prints labbook's warnings on stderr, one line each, and counts them.

    With ``--debug`` (or ``LABBOOK_DEBUG=1``) its level is DEBUG: debug messages
    are printed too, as ``labbook: debug: …``, each followed by the traceback it
    carries (:func:`labbook.warn.warn_exception` keeps one for every exception
    that a handler swallowed).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.console: Any = None  # a rich Console while a progress bar is shown

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            self._debug(record)
            return
        self.count += 1
        line = f"labbook: warning: {printable(record.getMessage())}"
        if self.console is not None:
            self.console.print(line, markup=False, highlight=False, style="yellow")
        else:
            click.echo(line, err=True)

    def _debug(self, record: logging.LogRecord) -> None:
        lines = [f"labbook: debug: {printable(record.getMessage())}"]
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            lines += [printable(line) for line in text.splitlines()]
        text = "\n".join(lines)
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, style="dim")
        else:
            click.echo(text, err=True)


WARNINGS = WarningHandler()


def open_store(ctx: click.Context, *, create: bool = True) -> Any:
    """The store, with writes that ``labbook run`` had to leave in its journal written."""
    from labbook.store import Store
    from labbook.store.journal import replay_all

    store = Store.open(ctx.obj["db"], create=create)
    try:
        replay_all(store)
    except Exception as exc:  # never let a leftover journal stop a command
        from labbook.errors import LabbookError
        from labbook.warn import warn_exception

        warn_exception(None, "cannot write the journal", exc, expected=(LabbookError,))
    return store


def echo_json(value: Any) -> None:
    """The true values, JSON-escaped: no control or bidi character reaches the terminal raw."""
    click.echo(json_text(json.dumps(value, indent=2, ensure_ascii=False, default=str)))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (see README: the --json contract)."
)


def filter_options(f: Any) -> Any:
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
