"""``labbook tui``: registered with the core CLI through the ``labbook.commands`` entry point."""

from __future__ import annotations

import click


@click.command("tui")
@click.pass_context
def tui(ctx: click.Context) -> None:
    """Browse, filter, diff and annotate runs in a terminal UI."""
    from labbook_tui.app import run_app

    run_app(db=(ctx.obj or {}).get("db"))
