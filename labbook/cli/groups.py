"""``ls --group``, ``ls --sweep`` and ``compare --group``: runs folded by seed group or
sweep (:mod:`labbook.analysis.groups`), as options of ``ls`` and ``compare``.

:func:`ls_group_options` and :func:`compare_group_option` add the options to those
commands and take the call over when one is given, so the commands themselves
stay as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from labbook.cli.options import (
    DATA_FORMATS,
    echo_data,
    echo_json,
    open_store,
    output_format,
    run_filter,
    show_text,
    use_color,
)
from labbook.errors import RunNotFound, UsageError


def ls_group_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--group [ID]``, ``--expand`` and ``--sweep [ID]`` for ``labbook ls``."""

    @functools.wraps(f)
    def ls_or_grouped(
        *args: Any, group: str | None, expand: bool, sweep: str | None, **kw: Any
    ) -> Any:
        if group is None and sweep is None:
            if expand:
                raise UsageError("--expand goes with --group", hint="labbook ls --group --expand")
            return f(*args, **kw)
        if group is not None and sweep is not None:
            raise UsageError("--group and --sweep are two views; give one of them")
        ctx = click.get_current_context()
        if sweep is not None:
            return ls_sweeps(ctx, sweep or None, **kw)
        return ls_groups(ctx, group or None, expand=expand, **kw)

    ls_or_grouped = click.option(
        "--sweep",
        metavar="[ID]",
        is_flag=False,
        flag_value="",
        default=None,
        help="Sweeps (Hydra multirun, wandb sweep, MLflow parent run, replicate): the "
        "swept keys as columns, a row per point folded over its seeds; ID (an s… id, "
        "the sweep's own id or a run of it): that sweep.",
    )(ls_or_grouped)
    ls_or_grouped = click.option(
        "--expand",
        is_flag=True,
        help="With --group: each group's runs under its row.",
    )(ls_or_grouped)
    ls_or_grouped = click.option(
        "--group",
        metavar="[ID]",
        is_flag=False,
        flag_value="",
        default=None,
        help="One row per seed group (runs alike but for the seed): n, statuses, each "
        "metric as mean ± std (--wide: and min–max), the best run; ID (a g… id or a "
        "run): that group and its runs.",
    )(ls_or_grouped)
    return ls_or_grouped


def _no_sort(kw: dict[str, Any], what: str) -> None:
    if kw.get("sort") or kw.get("reverse"):
        raise UsageError(f"--sort and --reverse do not apply to {what} (newest first)")
    if kw.get("columns") is not None:
        raise UsageError(f"--columns does not apply to {what}", hint="-m METRIC names its metrics")


def _filter(kw: dict[str, Any]) -> Any:
    flt = run_filter(
        kw.get("status", ()),
        kw.get("framework", ()),
        kw.get("tag", ()),
        kw.get("where", ()),
        kw.get("since"),
        kw.get("limit", 50),
    )
    if kw.get("archived"):
        flt.archived = "only"
    elif kw.get("all_runs"):
        flt.archived = "include"
    return flt


def ls_groups(ctx: click.Context, ref: str | None, *, expand: bool, **kw: Any) -> None:
    """``labbook ls --group [ID] [--expand]``."""
    from labbook.analysis.groups import fold, group_members, grouped, metric_columns

    _no_sort(kw, "--group")
    out = output_format(kw.get("fmt"), bool(kw.get("as_json")))
    flt = _filter(kw)
    with open_store(ctx, create=False) as store:
        if ref is not None:
            gid, _named, members = group_members(store, ref)
            groups = [(gid, members)]
            total = 1
            expand = True
        else:
            groups, total = grouped(store, flt)
    if kw.get("quiet"):
        if kw.get("fmt") or kw.get("as_json"):
            raise UsageError("-q prints only ids; it takes no --format or --json")
        click.echo("".join(f"{gid}\n" for gid, _ in groups), nl=False)
        return
    everyone = [r for _, members in groups for r in members]
    metrics = metric_columns(everyone)
    rows = [fold(m, kind="seed", group_id=gid, columns=metrics) for gid, m in groups]
    if out == "json" or out == "jsonl":
        objects: list[Any] = [
            {**row, "runs": members} if expand else row
            for row, (_, members) in zip(rows, groups, strict=True)
        ]
        if out == "json":
            echo_json(objects)
        else:
            echo_data(out, objects, [])
        return
    from labbook.render.groups import group_row, group_row_columns, print_groups

    if out in DATA_FORMATS:
        echo_data(out, rows, [group_row(r, metrics) for r in rows], group_row_columns(metrics))
        return
    print_groups(
        rows,
        metrics,
        wide=bool(kw.get("wide")),
        color=use_color(kw.get("color", "auto")),
        style=kw.get("fmt"),
        members=dict(groups) if expand else None,
    )
    if flt.limit and total > len(rows):
        from labbook.render.runs import print_limit_note

        print_limit_note(len(rows), total)


def ls_sweeps(ctx: click.Context, ref: str | None, **kw: Any) -> None:
    """``labbook ls --sweep [ID]``."""
    from labbook.analysis.groups import sweep_points, sweep_view
    from labbook.store.groups import light_rows, resolve_sweep, sweep_short_id

    _no_sort(kw, "--sweep")
    out = output_format(kw.get("fmt"), bool(kw.get("as_json")))
    flt = _filter(kw)
    with open_store(ctx, create=False) as store:
        if ref is not None:
            found = resolve_sweep(store, ref)
            if found is None:
                found = _sweep_of_run(store, ref)
            chosen = [found]
            ids: dict[tuple[str, str], list[str]] | None = None
        else:
            ids = {}
            for rid, _key, kind, sweep, _status in light_rows(store, flt):
                if kind and sweep:
                    ids.setdefault((kind, sweep), []).append(rid)
            chosen = list(ids)[: flt.limit] if flt.limit else list(ids)
        views = [
            sweep_view(
                sweep_points(store, kind, sweep, ids[(kind, sweep)] if ids else None),
                kind=kind,
                sweep_id=sweep_short_id(kind, sweep) or "",
                source=sweep,
            )
            for kind, sweep in chosen
        ]
    if kw.get("quiet"):
        click.echo("".join(f"{v['id']}\n" for v in views), nl=False)
        return
    if out == "json":
        echo_json(views)
        return
    if out in DATA_FORMATS:
        from labbook.render.groups import group_row, group_row_columns

        rows, objects = [], []
        params: list[str] = []
        metrics: list[str] = []
        for v in views:
            params += [k for k in v["swept"] if k not in params]
            metrics += [m for m in v["metrics"] if m not in metrics]
        for v in views:
            for p in v["points"]:
                rows.append({"sweep": v["id"], **group_row(p, v["metrics"])})
                objects.append({"sweep": v["id"], **p})
        echo_data(out, objects, rows, ["sweep", *group_row_columns(metrics, params)])
        return
    from labbook.render.groups import print_sweeps

    print_sweeps(
        views,
        wide=bool(kw.get("wide")),
        color=use_color(kw.get("color", "auto")),
        style=kw.get("fmt"),
    )


def _sweep_of_run(store: Any, ref: str) -> tuple[str, str]:
    from labbook.store.query import resolve

    try:
        rid = resolve(store, ref)
    except RunNotFound:
        raise RunNotFound(
            f"no sweep or run {ref}", hint="labbook ls --sweep lists the sweeps"
        ) from None
    row = store.run_row(rid) or {}
    if not row.get("sweep_id"):
        raise RunNotFound(
            f"run {rid} was not launched in a sweep",
            hint=f"labbook ls --group {rid} shows its seed group",
        )
    return str(row["sweep_kind"]), str(row["sweep_id"])


# -- compare --group -----------------------------------------------------------------------


def compare_group_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--group`` for ``labbook compare``: A and B are seed groups (or runs: theirs)."""

    @functools.wraps(f)
    def compare_or_groups(*args: Any, group: bool, **kw: Any) -> Any:
        if not group:
            return f(*args, **kw)
        return compare_groups_cmd(click.get_current_context(), **kw)

    return click.option(
        "--group",
        "group",
        is_flag=True,
        help="Compare the seed groups of two runs (or two g… group ids): per metric both "
        "groups' n and mean ± std, B − A with its 95% interval and p (Welch), a verdict.",
    )(compare_or_groups)


def compare_groups_cmd(ctx: click.Context, **kw: Any) -> None:
    """``labbook compare --group A B``."""
    from labbook.analysis.groups import compare_groups, group_members

    runs = list(kw.get("runs") or ())
    if len(runs) != 2:
        raise UsageError(
            f"compare --group takes two runs or groups, not {len(runs)}",
            hint="labbook compare --group RUN_A RUN_B (or g… ids from labbook ls --group)",
        )
    if any(kw.get(k) for k in ("status", "framework", "tag", "where", "since")):
        raise UsageError("compare --group takes two runs or groups, not filters")
    out = output_format(kw.get("fmt"), bool(kw.get("as_json")))
    with open_store(ctx, create=False) as store:
        ga, ra, ma = group_members(store, runs[0])
        gb, rb, mb = group_members(store, runs[1])
    if ga == gb:
        raise UsageError(
            f"{runs[0]} and {runs[1]} are one seed group ({ga})",
            hint="labbook diff A B compares two runs of one group",
        )

    def side(gid: str, ref: str, members: list[Any]) -> dict[str, Any]:
        return {
            "kind": "seed",
            "id": gid,
            "size": len(members),
            "ref": ref,
            "name": members[0].get("name") if members else None,
        }

    result = compare_groups(
        side(ga, ra, ma), side(gb, rb, mb), ma, mb, metrics=list(kw.get("metrics") or ()) or None
    )
    if out == "json":
        echo_json(result)
        return
    if out in DATA_FORMATS:
        rows = []
        for name, e in result["metrics"].items():
            rows.append(
                {
                    "metric": name,
                    "direction": e["direction"],
                    **{f"a.{k}": e["a"][k] for k in ("n", "mean", "std", "min", "max")},
                    **{f"b.{k}": e["b"][k] for k in ("n", "mean", "std", "min", "max")},
                    "difference": e["difference"],
                    "interval": e["interval"],
                    "p": e["p"],
                    "verdict": e["verdict"],
                }
            )
        cols = list(rows[0]) if rows else ["metric"]
        echo_data(out, [{"metric": n, **e} for n, e in result["metrics"].items()], rows, cols)
        return
    from labbook.render.groups import render_compare_groups

    if kw.get("fmt") == "plain":
        click.echo(render_compare_groups(result, color=False), nl=False)
        return
    show_text(
        lambda c: render_compare_groups(result, color=c).rstrip("\n"),
        mode=kw.get("color", "auto"),
        pager=not kw.get("no_pager"),
    )
