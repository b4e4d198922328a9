"""``labbook check``: past runs like this one that went wrong (also before ``labbook run``)."""

from __future__ import annotations

import os
from typing import Any

import click

from labbook.cli.options import (
    color_option,
    echo_json,
    json_option,
    open_store,
    reads_remote,
    remote_option,
    use_color,
)
from labbook.errors import LabbookError, StoreError

#: How long ``labbook check`` waits for the lab's notebook before it checks this
#: node's runs only (the shell hook has less: ``analysis.check.HOOK_REMOTE_BUDGET_S``).
CHECK_REMOTE_BUDGET_S = 1.0


def remote_within_budget(budget_s: float) -> Any:
    """The lab's notebook if it answers within ``budget_s``; else None, said in one
    line on stderr (the check then reads this node's store)."""
    from labbook.store.remote.read import open_remote_within

    try:
        return open_remote_within(budget_s)
    except LabbookError as exc:
        from labbook.textsafe import printable

        click.echo(f"labbook: checking this node's runs only: {printable(exc.message)}", err=True)
        return None


def open_store_local(ctx: click.Context) -> Any:
    """This node's own store (``open_store`` without the remote)."""
    ctx.obj["remote"] = False
    return open_store(ctx, create=False)


def print_warnings(warnings: list[Any], *, err: bool, color: str = "auto") -> None:
    import sys

    from labbook.analysis.check import format_warning

    on = use_color(color, sys.stderr if err else sys.stdout)
    for w in warnings:
        for i, line in enumerate(format_warning(w)):
            click.secho(line, err=err, fg="yellow" if i == 0 else None, bold=i == 0, color=on)


def check_before(
    ctx: click.Context, argv: list[str], config: dict[str, Any], *, hook: bool = False
) -> list[Any]:
    """Warnings for ``argv`` (empty when there is no database yet)."""
    from labbook.analysis.check import check
    from labbook.capture.git import find_repo_root

    store = None
    if reads_remote(ctx):
        from labbook.analysis.check import HOOK_REMOTE_BUDGET_S, remote_budget

        budget = remote_budget(HOOK_REMOTE_BUDGET_S if hook else CHECK_REMOTE_BUDGET_S)
        store = remote_within_budget(budget)
    if store is None:
        try:
            store = open_store_local(ctx)
        except StoreError:
            return []
    with store:
        store.set_busy_timeout(0.2)  # reads only; never wait long before the command
        return check(
            store,
            repo_root=find_repo_root(os.getcwd()),
            config=config,
            argv=argv,
            cwd=os.getcwd(),
        )


@click.command(
    "check",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="The config the run will use."
)
@click.option("--strict", is_flag=True, help="Exit 1 on an exact repeat of a failed config.")
@click.option("--line", hidden=True, help="The command as one shell line (for the shell hooks).")
@click.option("--hook", is_flag=True, hidden=True, help="Quiet mode for the shell hooks.")
@remote_option
@color_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def check_cmd(
    ctx: click.Context,
    config_file: str | None,
    strict: bool,
    line: str | None,
    hook: bool,
    color: str,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Before a run: show past runs like it that failed, diverged or have lessons.

    labbook check [--config FILE] [-- CMD ARGS...]

    Looks at runs of the same git repository (else the same directory) that ran
    the same script or module (its path in the repository; torchrun, accelerate
    launch, python -m too) and whose config is the same as or close to this one
    (from FILE, Hydra key=value args and --key value args; most keys of each side
    must be shared, one key is not enough); prints how they ended, what differed
    and which way, and their notes. Without CMD, FILE is compared with every such
    run. Exits 0 with warnings; --strict exits 1 on an exact repeat of a failed
    config.
    """
    from labbook.analysis.check import load_config_file, split_line

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if line is not None:
        argv = split_line(line)
    try:
        config = load_config_file(config_file) if config_file else {}
        warnings = check_before(ctx, argv, config, hook=hook)
    except LabbookError:
        if hook:
            return  # a shell hook never complains
        raise
    if as_json:
        echo_json([w.to_json() for w in warnings])
    elif warnings:
        print_warnings(warnings, err=False, color=color)
    elif not hook:
        click.echo("labbook: no past runs like this one went wrong", err=True)
    if strict and any(w.repeat_of_failure for w in warnings):
        ctx.exit(1)
