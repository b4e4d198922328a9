"""``labbook search``: full-text search over notes, failures, configs (:mod:`labbook.store.search`)."""

from __future__ import annotations

import re

import click

from labbook.cli.options import echo_json, filter_options, json_option, open_store
from labbook.textsafe import printable


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@filter_options
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
    as_json: bool,
) -> None:
    """Full-text search over notes, failures, commands, tags, config and run names.

    Every word must occur in the run (in any of those); "double quotes" keep a
    phrase. Matching is by substring and case-insensitive, in any script (Chinese
    included). Takes the same filters as `labbook ls`.
    """
    from labbook.store.query import RunFilter, parse_since, parse_where
    from labbook.store.search import MARK_END, MARK_START, search

    flt = RunFilter(
        status=list(status),
        framework=list(framework),
        tags=list(tag),
        where=parse_where(list(where)),
        since=parse_since(since) if since else None,
        limit=None,
    )
    with open_store(ctx, create=False) as store:
        hits = search(store, " ".join(query), flt, limit=limit or 0)
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
        click.secho(printable(head), bold=True)
        snippet = mark.sub(
            lambda m: click.style(m.group(1), fg="yellow", bold=True), printable(h.snippet)
        )
        click.echo(f"  {printable(h.field)}: {snippet}")
