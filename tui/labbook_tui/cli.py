"""``labbook tui``: registered with the core CLI through the ``labbook.commands`` entry point."""

from __future__ import annotations

import click


@click.command("tui")
@click.option(
    "--remote/--local",
    "remote",
    default=None,
    help="Browse the lab's shared notebook (every node's runs) instead of this node's"
    " store; default: [remote] read in config.toml, or LABBOOK_REMOTE=1.",
)
@click.pass_context
def tui(ctx: click.Context, remote: bool | None) -> None:
    """Browse, filter, diff and annotate runs in a terminal UI."""
    from labbook_tui.app import run_app

    opener = None
    if remote is None:
        from labbook.store.remote.config import RemoteConfig

        remote = RemoteConfig.load().read == "remote"
    if remote:
        from labbook.store.remote.read import open_remote

        opener = open_remote
    run_app(db=(ctx.obj or {}).get("db"), opener=opener)
