"""``labbook search``: full-text search over notes, failures, configs (:mod:`labbook.store.search`)."""

from __future__ import annotations

import re

import click

from labbook.cli.options import (
    color_option,
    echo_json,
    filter_options,
    json_option,
    open_store,
    run_filter,
    use_color,
)
from labbook.textsafe import printable


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@filter_options
@color_option
@json_option
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
    as_json: bool,
) -> None:
    """Full-text search over notes, failures, commands, tags, config and run names.

    Every word must occur in the run (in any of those); "double quotes" keep a
    phrase. Matching is by substring and case-insensitive, in any script (Chinese
    included). Takes the same filters as `labbook ls`.
    """
    from labbook.store.search import MARK_END, MARK_START, search

    flt = run_filter(status, framework, tag, where, since, None)
    with open_store(ctx, create=False) as store:
        found = search(store, " ".join(query), flt, limit=0)
        hits = found[:limit] if limit else found
        rows = {r: store.run_row(r) for r in (h.run_id for h in hits)}
        records = {
            r["id"]: r
            for r in store.records([row for row in rows.values() if row is not None], heavy=False)
        }
    if as_json:
        out = []
        for h in hits:
            rec = dict(records.get(h.run_id, {"id": h.run_id}))
            rec["search"] = {"score": h.score, "field": h.field, "snippet": h.snippet}
            out.append(rec)
        echo_json(out)
        return
    if not hits:
        click.echo("no runs match", err=True)
        return
    mark = re.compile(re.escape(MARK_START) + "(.*?)" + re.escape(MARK_END))
    for h in hits:
        rec = records.get(h.run_id, {})
        head = f"{h.run_id}  {rec.get('name') or ''}  {rec.get('status', '')}".rstrip()
        click.secho(printable(head), bold=True, color=use_color(color))
        snippet = mark.sub(
            lambda m: click.style(m.group(1), fg="yellow", bold=True), printable(h.snippet)
        )
        click.echo(f"  {printable(h.field)}: {snippet}", color=use_color(color))
    from labbook.render.runs import print_limit_note

    print_limit_note(len(hits), len(found))
