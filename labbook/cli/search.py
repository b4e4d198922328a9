"""``labbook search``: full-text search over notes, failures, configs (:mod:`labbook.store.search`)."""

from __future__ import annotations

import re

import click

from labbook.cli.options import (
    DATA_FORMATS,
    color_option,
    echo_data,
    echo_json,
    filter_options,
    format_options,
    open_store,
    output_format,
    remote_option,
    run_filter,
    use_color,
)
from labbook.textsafe import printable


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@filter_options
@remote_option
@color_option
@format_options
@click.pass_context
def search_cmd(
    ctx: click.Context,
    query: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    color: str,
    fmt: str | None,
    as_json: bool,
) -> None:
    """Full-text search over notes, failures, commands, tags, config and run names.

    Every word must occur in the run (in any of those); "double quotes" keep a
    phrase. Matching is by substring and case-insensitive, in any script (Chinese
    included). Takes the same filters as `labbook ls`.
    """
    import sys

    from labbook.store.search import MARK_END, MARK_START, search_counted

    out_fmt = output_format(fmt, as_json)
    flt = run_filter(status, framework, tag, where, since, None)
    # how many match in all only where a person reads "showing 50 of N" (stderr)
    note = out_fmt != "json" and out_fmt not in DATA_FORMATS and sys.stderr.isatty()
    with open_store(ctx, create=False) as store:
        hits, total = search_counted(store, " ".join(query), flt, limit=limit, count=note)
        from labbook.store.groups import rows_by_ids

        # one query for the page's rows (not a round trip per hit to the lab's notebook)
        rows = rows_by_ids(store, [h.run_id for h in hits])
        records = {r["id"]: r for r in store.records(rows, heavy=False)}
    if out_fmt == "json" or out_fmt in DATA_FORMATS:
        out = []
        for h in hits:
            rec = dict(records.get(h.run_id, {"id": h.run_id}))
            rec["search"] = {"score": h.score, "field": h.field, "snippet": h.snippet}
            out.append(rec)
        if out_fmt == "json":
            echo_json(out)
            return
        from labbook.render.formats import run_row

        flat = [
            run_row(
                rec,
                extra={
                    "search.score": h.score,
                    "search.field": h.field,
                    "search.snippet": h.snippet.replace(MARK_START, "").replace(MARK_END, ""),
                },
            )
            for h, rec in zip(hits, out, strict=True)
        ]
        echo_data(out_fmt, out, flat)
        return
    if not hits:
        click.echo("no runs match", err=True)
        return
    mark = re.compile(re.escape(MARK_START) + "(.*?)" + re.escape(MARK_END))
    color_on = use_color(color) and fmt != "plain"
    for h in hits:
        rec = records.get(h.run_id, {})
        head = f"{h.run_id}  {rec.get('name') or ''}  {rec.get('status', '')}".rstrip()
        click.secho(printable(head), bold=True, color=color_on)
        snippet = mark.sub(
            lambda m: click.style(m.group(1), fg="yellow", bold=True), printable(h.snippet)
        )
        click.echo(f"  {printable(h.field)}: {snippet}", color=color_on)
    from labbook.render.runs import print_limit_note

    print_limit_note(len(hits), total)
