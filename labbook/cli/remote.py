"""``labbook remote``: the lab's shared notebook on PostgreSQL (init, push, status)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from labbook.cli.options import echo_json, json_option, open_store


@click.group("remote")
def remote_cmd() -> None:
    """The lab's shared notebook on PostgreSQL: init, push, status."""


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    from datetime import datetime, timezone

    try:
        then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return iso
    s = max(0, int(time.time() - then.timestamp()))
    if s < 90:
        return f"{s} s ago"
    if s < 5400:
        return f"{s // 60} min ago"
    if s < 172800:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


@remote_cmd.command("init")
@click.argument("url")
@click.option(
    "--write-config",
    is_flag=True,
    help="Also write the [remote] block into ~/.config/labbook/config.toml.",
)
def remote_init_cmd(url: str, write_config: bool) -> None:
    """Create the lab's notebook in the PostgreSQL database at URL.

    Creates the schema `labbook` (and the pg_trgm extension) in an existing
    database; safe to run again. Refuses a database whose LC_CTYPE (C, POSIX)
    would leave Chinese text unsearchable. Prints the [remote] block to put in
    config.toml on every node, without any password: keep that in ~/.pgpass (or
    the file PGPASSFILE names).
    """
    from labbook.config import config_file
    from labbook.store.remote.config import RemoteConfig, describe_url, strip_password
    from labbook.store.remote.conn import connect
    from labbook.store.remote.schema import create_schema

    conn = connect(url)
    try:
        create_schema(conn)
    finally:
        conn.close()
    clean = strip_password(url)
    block = RemoteConfig(url=clean).toml_block()
    click.echo(f"created the lab's notebook at {describe_url(url)}")
    if write_config:
        path = config_file()
        _write_remote_block(path, block)
        click.echo(f"wrote [remote] to {path}")
    else:
        click.echo(f"put this in {config_file()} on every node:\n")
        click.echo(block)
    if clean != url:
        click.echo(
            "the password was left out: put it in ~/.pgpass (host:port:db:user:password,"
            " mode 0600) or in the file PGPASSFILE names",
            err=True,
        )
    else:
        click.echo("a password, if the server needs one, goes in ~/.pgpass (or PGPASSFILE)")


def _write_remote_block(path: Any, block: str) -> None:
    """Replace (or add) the [remote] table of config.toml, keeping the rest as written."""
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            skipping = stripped.split("#", 1)[0].strip() == "[remote]"
        if not skipping:
            out.append(line)
    body = "".join(out)
    if body and not body.endswith("\n"):
        body += "\n"
    if body and not body.endswith("\n\n"):
        body += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(body + block, encoding="utf-8")
    tmp.replace(path)


@remote_cmd.command("push")
@click.option("--all", "push_all", is_flag=True, help="Push every run (rebuilds a lost server).")
@json_option
@click.pass_context
def remote_push_cmd(ctx: click.Context, push_all: bool, as_json: bool) -> None:
    """Push this node's changed runs to the lab's notebook (one round).

    `labbook watch` pushes on its own every push_interval seconds; this is for a
    node without a daemon, the end of a batch job, or --all after the server's
    database was lost or recreated.
    """
    from labbook.store.remote.config import RemoteConfig
    from labbook.store.remote.push import push_round

    cfg = RemoteConfig.load()
    store = open_store(ctx)
    show = not as_json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            click.echo(f"\rpushing: {done}/{total} runs", nl=False, err=True)

    try:
        result = push_round(store, cfg, all=push_all, progress=progress)
    finally:
        if show:
            click.echo("\r\033[K", nl=False, err=True)
        store.close()
    if as_json:
        echo_json(result.as_dict())
        return
    parts = [f"pushed {result.pushed} run{'s' if result.pushed != 1 else ''}"]
    if result.deleted:
        parts.append(f"removed {result.deleted}")
    if result.blobs:
        parts.append(f"{result.blobs} blob{'s' if result.blobs != 1 else ''}")
    if result.spooled:
        parts.append(f"{result.spooled} from the spool")
    line = ", ".join(parts) + f" in {result.seconds:.2f} s"
    if result.pending:
        line += f"; {result.pending} still pending"
    click.echo(line)


@remote_cmd.command("status")
@json_option
@click.pass_context
def remote_status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Each node of the lab's notebook: last push, lag, pending runs, conflicts.

    This node's count of runs not yet pushed is shown even when the server cannot
    be reached (with the reason, in one line).
    """
    from labbook.store import outbox
    from labbook.store.remote.config import RemoteConfig, describe_url
    from labbook.store.remote.status import remote_status

    cfg = RemoteConfig.load()
    store = open_store(ctx)
    try:
        origin = outbox.origin(store.conn, store.path)
        pending = outbox.pending(store.conn)
    finally:
        store.close()
    report: dict[str, Any] = {
        "url": describe_url(cfg.url) if cfg.url else None,
        "origin": origin,
        "pending": pending,
        "reachable": False,
        "error": None,
        "origins": [],
    }
    if not cfg.url:
        report["error"] = "no lab notebook is configured ([remote] url in config.toml)"
    else:
        from labbook.errors import LabbookError

        try:
            report["origins"] = remote_status(cfg)
            report["reachable"] = True
        except LabbookError as exc:
            report["error"] = exc.message
    if as_json:
        echo_json(report)
        return
    click.echo(
        f"this node: {pending} run{'s' if pending != 1 else ''} not pushed yet (origin {origin[:8]})"
    )
    if report["error"]:
        click.echo(f"lab notebook: unreachable: {report['error']}")
        return
    click.echo(f"lab notebook: {report['url']}")
    rows = report["origins"]
    if not rows:
        click.echo("no node has pushed yet")
        return
    head = ("host", "user", "origin", "runs", "last push", "lag", "pending", "superseded")
    table = [head]
    for o in rows:
        me = " *" if o["origin"] == origin else ""
        table.append(
            (
                (o["host"] or "?") + me,
                o["user"] or "?",
                o["origin"][:8],
                str(o["runs"]),
                o["last_push"] or "never",
                _ago(o["last_push"]),
                str(o["pending"] if o["pending"] is not None else "?"),
                str(o["superseded"]),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
