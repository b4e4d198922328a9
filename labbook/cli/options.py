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
    """The store, with writes that ``labbook run`` had to leave in its journal written.

    In a command with :func:`remote_option`, the lab's notebook instead when asked
    (``--remote``, ``LABBOOK_REMOTE=1``, ``read = "remote"`` in config.toml; ``--local``
    wins): a :class:`~labbook.store.remote.read.RemoteStore`.
    """
    from labbook.store import Store
    from labbook.store.journal import replay_all

    if reads_remote(ctx):
        return open_remote_store(ctx)
    store = Store.open(ctx.obj["db"], create=create)
    try:
        replay_all(store)
    except Exception as exc:  # never let a leftover journal stop a command
        from labbook.errors import LabbookError
        from labbook.warn import warn_exception

        warn_exception(None, "cannot write the journal", exc, expected=(LabbookError,))
    return store


def remote_option(f: Any = None, *, writes: bool = False) -> Any:
    """``--remote/--local``: read the lab's notebook (PostgreSQL) instead of this
    node's store, or not (overrides ``LABBOOK_REMOTE`` and ``read`` in config.toml).
    ``writes``: the command writes notes or tags (under this node's own origin)."""

    def set_remote(ctx: click.Context, param: click.Parameter, value: bool | None) -> None:
        ctx.ensure_object(dict)
        ctx.obj["remote"] = value
        ctx.obj["remote_ok"] = True
        ctx.obj["remote_writes"] = writes

    what = "Write to" if writes else "Read"
    decorator = click.option(
        "--remote/--local",
        "remote",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=set_remote,
        help=f"{what} the lab's shared notebook (every node's runs) instead of this node's"
        " store; default: [remote] read in config.toml, or LABBOOK_REMOTE=1.",
    )
    return decorator if f is None else decorator(f)


def reads_remote(ctx: click.Context) -> bool:
    """Whether this command reads the lab's notebook (see :func:`remote_option`)."""
    obj = ctx.obj or {}
    if not obj.get("remote_ok"):
        return False
    flag = obj.get("remote")
    if flag is not None:
        return bool(flag)
    import os

    env = os.environ.get("LABBOOK_REMOTE")
    if env is None or env == "":
        # config.toml is read only when it may say something (a file that exists)
        from labbook.config import config_file

        try:
            if not config_file().exists():
                return False
        except OSError:
            return False
    from labbook.store.remote.config import RemoteConfig

    return RemoteConfig.load().read == "remote"


def open_remote_store(ctx: click.Context, *, timeout: float | None = None) -> Any:
    """The lab's notebook; with this node's own store alongside when it exists (its
    origin is what ``note``/``tag --remote`` write under)."""
    from labbook.errors import StoreError
    from labbook.store import Store
    from labbook.store.remote.config import RemoteConfig
    from labbook.store.remote.read import RemoteStore

    cfg = RemoteConfig.load()
    local = None
    if (ctx.obj or {}).get("remote_writes"):
        try:
            local = Store.open((ctx.obj or {}).get("db"), create=False)
        except StoreError:
            local = None
    return RemoteStore.connect(cfg, local=local, timeout=timeout)


def echo_json(value: Any) -> None:
    """The true values, JSON-escaped: no control or bidi character reaches the terminal raw."""
    click.echo(json_text(json.dumps(value, indent=2, ensure_ascii=False, default=str)))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (see README: the --json contract)."
)


def filter_options(f: Any = None, *, limit: int = 50) -> Any:
    """The run filters of ``ls``; ``@filter_options(limit=0)``: every run by default."""
    if f is None:
        return lambda g: filter_options(g, limit=limit)
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
        default=limit,
        show_default=True,
        help="At most this many runs (0: all).",
    )(f)
    return f


def run_filter(
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int | None,
) -> Any:
    """The RunFilter of :func:`filter_options`, as the CLI reads it: strict (a key no
    run has, or a value that does not fit its key, is an error that names the nearest
    keys) and with the metric vocabulary (``val_loss`` also finds ``val/loss``)."""
    from labbook.analysis.filters import user_filter

    return user_filter(
        status=status, framework=framework, tags=tag, where=where, since=since, limit=limit
    )


# -- colour and the pager -------------------------------------------------------------

COLOR_MODES = ("auto", "always", "never")

color_option = click.option(
    "--color",
    "color",
    type=click.Choice(COLOR_MODES),
    default="auto",
    show_default=True,
    help="Colour: auto (on a terminal, unless NO_COLOR is set), always, never.",
)
no_pager_option = click.option("--no-pager", is_flag=True, help="Never page long output.")


def use_color(mode: str = "auto", stream: Any = None) -> bool:
    """Whether to write colour to ``stream`` (stdout): ``--color always``/``never``
    decide; ``auto``: a terminal that is not TERM=dumb, and NO_COLOR unset or empty
    (https://no-color.org)."""
    import os
    import sys

    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        return False
    return bool(tty) and os.environ.get("TERM") != "dumb"


def pager_command() -> tuple[str, dict[str, str]] | None:
    """The pager as git finds it: ``$LABBOOK_PAGER``, else ``$PAGER``, else ``less``
    (None: empty, ``cat``, or not installed), with the environment it runs in:
    ``LESS=FRX`` and ``LV=-c`` when they are unset (quit if one screen, colour codes
    shown as colour, no screen clearing)."""
    import os
    import shlex
    import shutil

    cmd = os.environ.get("LABBOOK_PAGER")
    if cmd is None:
        cmd = os.environ.get("PAGER")
    if cmd is None:
        cmd = "less"
    cmd = cmd.strip()
    if not cmd or cmd == "cat":
        return None
    try:
        program = shlex.split(cmd)[0]
    except (ValueError, IndexError):
        return None
    if shutil.which(program) is None:
        return None
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    env.setdefault("LV", "-c")
    return cmd, env


def pager_shows_color(cmd: str, env: dict[str, str]) -> bool:
    """Whether the pager shows colour codes as colour, not as ``ESC[36m`` text:
    ``less`` with -R or -r (in $LESS or its own arguments), ``lv -c``, ``most``."""
    import os
    import shlex

    words = shlex.split(cmd)
    name = os.path.basename(words[0])
    if name == "less":
        for word in [*shlex.split(env.get("LESS", "")), *words[1:]]:
            low = word.lower()
            if low.startswith("--"):
                if low.split("=")[0] in ("--raw-control-chars", "--raw_control_chars"):
                    return True
            elif "r" in low.lstrip("-+"):
                return not word.startswith("-+")
        return False
    if name == "lv":
        return "-c" in words[1:] or "-c" in env.get("LV", "")
    return name == "most"


def page(text: str, cmd: str, env: dict[str, str]) -> None:
    """Write ``text`` through the pager ``cmd`` (a shell line, as git runs it) and
    wait for it; the pager going away early is not an error."""
    import subprocess
    import sys

    sys.stdout.flush()
    try:
        proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, env=env)
    except OSError:
        sys.stdout.write(text)
        return
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode(sys.stdout.encoding or "utf-8", errors="replace"))
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    while True:
        try:
            proc.wait()
            break
        except KeyboardInterrupt:  # as git: Ctrl-C is the pager's to handle
            continue


def show_text(render: Any, *, mode: str = "auto", pager: bool = True) -> None:
    """Print ``render(color)`` (text with colour codes when ``color``): through the
    pager when stdout is a terminal, paging is on and the text is taller than the
    terminal; in colour only where it will show as colour (``--color always``: always)."""
    import shutil
    import sys

    from labbook.render.diff import needs_pager

    color = use_color(mode)
    text = render(color)
    if pager and sys.stdout.isatty() and needs_pager(text, shutil.get_terminal_size().lines):
        found = pager_command()
        if found is not None:
            cmd, env = found
            paged_color = mode == "always" or (color and pager_shows_color(cmd, env))
            if paged_color != color:
                text = render(paged_color)
            page(text + "\n", cmd, env)
            return
    click.echo(text, color=color)


# -- output formats -------------------------------------------------------------------

FORMATS = ("table", "plain", "json", "jsonl", "csv", "tsv", "md")


def format_options(f: Any) -> Any:
    """``--format table|plain|json|jsonl|csv|tsv|md`` and ``--json`` (= ``--format json``);
    read them with :func:`output_format`."""
    f = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (= --format json; README: the --json contract).",
    )(f)
    f = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=None,
        help="Output: table (the terminal's), plain (aligned text, as piped), json, jsonl "
        "(one object a line), csv, tsv, md (a Markdown table). Default: table on a "
        "terminal, plain when piped.",
    )(f)
    return f


def output_format(fmt: str | None, as_json: bool) -> str:
    """The format ``--format``/``--json`` chose; neither: ``table`` on a terminal, else ``plain``."""
    import sys

    from labbook.errors import UsageError

    if as_json:
        if fmt not in (None, "json"):
            raise UsageError(f"--json and --format {fmt} disagree", hint="give one of them")
        return "json"
    if fmt is not None:
        return fmt
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "table" if tty else "plain"


def echo_data(
    fmt: str,
    objects: list[Any],
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
) -> None:
    """``--format jsonl`` (``objects``, one a line) or csv, tsv, md (``rows``: flat dicts
    of :func:`labbook.render.formats.run_row`): data, written as they are (no terminal
    escaping beyond JSON's own, which keeps the values)."""
    import sys

    from labbook.render import formats

    if fmt == "jsonl":
        sys.stdout.write(formats.jsonl(objects, escape=json_text))
    elif fmt in ("csv", "tsv"):
        sys.stdout.write(formats.delimited(rows, columns, delimiter="," if fmt == "csv" else "\t"))
    elif fmt == "md":
        sys.stdout.write(formats.markdown(rows, columns))
    else:
        raise ValueError(fmt)
    sys.stdout.flush()


#: The formats :func:`echo_data` writes.
DATA_FORMATS = ("jsonl", "csv", "tsv", "md")
