"""``labbook diff`` and ``labbook compare``: thin commands over :mod:`labbook.analysis.diff`.

Text goes to stdout: coloured on a terminal (``--color``, ``NO_COLOR``) and through a
pager when it is taller than the terminal, as git does it (``$PAGER`` or ``less``,
``LESS=FRX`` when unset, colour only where the pager shows it), plain when piped. ``--json`` is the documented
contract (README: "labbook diff --json").
"""

from __future__ import annotations

import json
from typing import Any

import click

from labbook.cli.complete import complete_run
from labbook.cli.groups import compare_group_option
from labbook.cli.options import (
    DATA_FORMATS,
    color_option,
    echo_data,
    filter_options,
    format_options,
    no_pager_option,
    output_format,
    reads_remote,
    remote_option,
    run_filter,
    show_text,
)
from labbook.errors import UsageError


def _store(ctx: click.Context) -> Any:
    from labbook.store import Store

    if reads_remote(ctx):
        from labbook.cli.options import open_remote_store

        return open_remote_store(ctx)
    return Store.open(ctx.obj["db"], create=False)


def _echo_json(value: Any) -> None:
    from labbook.textsafe import json_text

    click.echo(json_text(json.dumps(value, indent=2, ensure_ascii=False, default=str)))


@click.command("diff")
@click.argument("run_a", shell_complete=complete_run)
@click.argument("run_b", required=False, shell_complete=complete_run)
@click.argument("working_cmd", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--working",
    is_flag=True,
    help="Compare RUN_A with the working tree and a command as they are now: "
    "labbook diff RUN --working [-- CMD ARGS…] (default: RUN's own command).",
)
@click.option(
    "--all", "show_all", is_flag=True, help="Show every section, also those without a difference."
)
@click.option(
    "--only",
    metavar="SECTIONS",
    help="Only these sections, comma-separated: config, seed, code, data, env, command, metrics, speed, outcome.",
)
@click.option("--stat", is_flag=True, help="One line per section that differs.")
@no_pager_option
@remote_option
@color_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (see README: labbook diff --json)."
)
@click.pass_context
def diff_cmd(
    ctx: click.Context,
    run_a: str,
    run_b: str | None,
    working_cmd: tuple[str, ...],
    working: bool,
    show_all: bool,
    only: str | None,
    stat: bool,
    no_pager: bool,
    color: str,
    as_json: bool,
) -> None:
    """What changed between RUN_A and RUN_B: config, seed, code, data, env, metrics, ….

    Only sections that differ are shown. Metric deltas are set against seed noise
    when other runs differ from A or B only in the seed. With RUN_A alone, it is
    compared with the nearest earlier run of the same repository (A is then "B").
    With --working, B is what `labbook run -- CMD` would record now, here (git
    HEAD and uncommitted changes, the config CMD states and reads), before it runs.
    """
    from labbook.analysis.diff import diff_store, nearest_earlier, parse_sections
    from labbook.store.query import resolve

    sections = parse_sections(only)
    if not working and working_cmd:
        raise UsageError("diff takes at most two runs", hint="labbook diff A B")
    with _store(ctx) as store:
        b_id = resolve(store, run_a)
        if working:
            from labbook.sources.working import diff_working

            argv = [*([run_b] if run_b else []), *working_cmd]
            result, a, b = diff_working(store, b_id, argv or None, sections=sections,
                                        include_same=show_all)  # fmt: skip
        elif run_b is None:
            a_id = nearest_earlier(store, b_id)
        else:
            a_id, b_id = b_id, resolve(store, run_b)
        if not working:
            result, a, b = diff_store(store, a_id, b_id, sections=sections, include_same=show_all)
    if as_json:
        _echo_json(result)
        return
    from labbook.render.diff import render_diff

    show_text(
        lambda c: render_diff(result, a, b, color=c, stat=stat), mode=color, pager=not no_pager
    )


@click.command("compare")
@click.argument("runs", nargs=-1, shell_complete=complete_run)
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    help="Metric to show (repeatable; default: the key metrics).",
)
@filter_options
@no_pager_option
@remote_option
@color_option
@format_options
@compare_group_option
@click.pass_context
def compare_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    metrics: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    no_pager: bool,
    color: str,
    fmt: str | None,
    as_json: bool,
) -> None:
    """A table of only the params that differ across RUNS, with their key metrics.

    RUNS are named one by one, or chosen with the filters of `labbook ls` (--where,
    --tag, …; newest first, at most --limit), or both (the named ones first).
    """
    from labbook.analysis.diff import compare_runs
    from labbook.store.query import resolve

    out = output_format(fmt, as_json)
    filtered = bool(status or framework or tag or where or since)
    if len(runs) < 2 and not filtered:
        raise UsageError(
            "compare needs at least two runs",
            hint="labbook compare A B [C…], or choose them: labbook compare --where KEY=VALUE",
        )
    with _store(ctx) as store:
        ids = [resolve(store, r) for r in runs]
        if filtered:
            from labbook.store.query import select_runs

            rows = select_runs(store, run_filter(status, framework, tag, where, since, limit))
            ids += [r for r in (row["id"] for row in rows) if r not in ids]
        ids = list(dict.fromkeys(ids))
        if len(ids) < 2:
            raise UsageError(
                f"compare needs at least two runs; {len(ids)} {'matches' if len(ids) == 1 else 'match'}",
                hint="labbook ls with the same filters lists them",
            )
        records = [store.record(i, heavy=False) for i in ids]
    table = compare_runs(records, list(metrics) or None)
    if out == "json":
        _echo_json(table)
        return
    if out in DATA_FORMATS:
        from labbook.render.formats import run_row

        keys = [k for k in table["params"] if k != "seed"]
        tags = list(table["metrics"])
        objects = [
            {
                "id": r["id"],
                "name": r.get("name"),
                "params": {k: v[i] for k, v in table["params"].items()},
                "metrics": {t: v[i] for t, v in table["metrics"].items()},
            }
            for i, r in enumerate(table["runs"])
        ]
        echo_data(out, objects, [run_row(r, config_keys=keys, metric_tags=tags) for r in records])
        return
    from labbook.render.diff import render_compare

    if fmt == "plain":
        click.echo(render_compare(table, color=False))
        return
    show_text(lambda c: render_compare(table, color=c), mode=color, pager=not no_pager)
