"""``labbook rm``, ``labbook archive``, ``labbook gc``: tidying the notebook.

``rm`` hides runs (a tombstone: ``deleted_at``, as a deleted note has; ``--undo``
brings them back), ``rm --purge`` deletes them for good, ``archive`` takes runs out
of the default listings only (``ls --archived``), ``gc`` drops what no run
references and gives the space back. A selection is explicit runs or the filters
``ls`` takes, and selects what ``ls -n 0`` with the same filters lists; a filter
that selects every run needs ``--all``, and one that selects none is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import echo_json, json_option, open_store
from labbook.errors import LabbookError, RunNotFound, UsageError
from labbook.textsafe import printable


def selection_options(f: Any) -> Any:
    """The filters of ``ls`` (no --limit: a selection is every run that matches)."""
    for option in reversed(
        [
            click.option(
                "--status", "-s", multiple=True, help="Runs with this status (repeatable)."
            ),
            click.option(
                "--framework", "-f", multiple=True, help="Runs from this framework (repeatable)."
            ),
            click.option("--tag", "-t", multiple=True, help="Runs with this tag (repeatable)."),
            click.option(
                "--where",
                "-w",
                multiple=True,
                help="Condition on config, metrics or run fields, as ls takes it (repeatable).",
            ),
            click.option("--since", help="Runs started within this time, e.g. 30d, 12h."),
            click.option(
                "--all",
                "all_",
                is_flag=True,
                help="Every run (also needed when a filter matches all).",
            ),
            click.option("--dry-run", is_flag=True, help="Only list what would change."),
        ]
    ):
        f = option(f)
    return f


class Selection:
    """What the command line selects: explicit runs or filters, never neither."""

    def __init__(
        self,
        runs: Sequence[str],
        status: Sequence[str],
        framework: Sequence[str],
        tag: Sequence[str],
        where: Sequence[str],
        since: str | None,
        all_: bool,
    ) -> None:
        self.runs = list(runs)
        self.status, self.framework, self.tag = list(status), list(framework), list(tag)
        self.where, self.since, self.all = list(where), since, all_

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.framework or self.tag or self.where or self.since)

    def check(self, verb: str) -> None:
        if self.runs and (self.filtered or self.all):
            raise UsageError(f"{verb} takes RUN… or filters (--where, --status, …), not both")
        if not self.runs and not self.filtered and not self.all:
            raise UsageError(
                f"{verb} needs RUN… or a filter (--where, --status, --tag, --since, --framework)",
                hint=f"`labbook {verb} --all` selects every run",
            )

    def rows(
        self,
        store: Any,
        verb: str,
        *,
        deleted: str = "live",
        archived: str = "hide",
        resolve_removed: bool = False,
    ) -> list[dict[str, Any]]:
        """The selected runs' rows, newest first. ``deleted``: "live" (not removed),
        "removed" (only removed) or "any"; ``archived`` as RunFilter has it."""
        from labbook.analysis.filters import user_filter
        from labbook.store.query import resolve

        if self.runs:
            ids = [resolve(store, ref, removed=resolve_removed) for ref in self.runs]
            rows = [store.run_row(i) for i in dict.fromkeys(ids)]
            return [r for r in rows if r is not None]
        flt = user_filter(
            status=self.status,
            framework=self.framework,
            tags=self.tag,
            where=self.where,
            since=self.since,
        )
        flt.include_deleted = deleted != "live"
        flt.archived = archived
        from labbook.store.query import select_runs

        rows = [r for r in select_runs(store, flt) if _in_scope(r, deleted)]
        if not rows:
            raise RunNotFound(f"no run matches the filter; nothing to {verb}")
        if self.filtered and not self.all and len(rows) > 1:
            everything = user_filter()
            everything.include_deleted, everything.archived = flt.include_deleted, archived
            total = sum(1 for r in select_runs(store, everything) if _in_scope(r, deleted))
            if len(rows) == total:
                raise UsageError(
                    f"the filter matches every run ({total}); add --all if you mean all of them",
                    hint=f"`labbook {verb} --dry-run …` lists what a selection holds",
                )
        return rows


def _in_scope(row: dict[str, Any], deleted: str) -> bool:
    if str(row.get("source_key") or "").startswith("merged:"):
        return False  # merged into another run: not a run of its own
    gone = row.get("deleted_at") is not None
    return deleted == "any" or gone == (deleted == "removed")


def _line(row: dict[str, Any]) -> str:
    started = (row.get("started_at") or row.get("created_at") or "")[:16].replace("T", " ")
    parts = [row["id"], row.get("name") or "-", row.get("status") or "", started]
    return printable("  ".join(p for p in parts if p))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _listing(rows: Sequence[dict[str, Any]], head: str) -> None:
    click.echo(head)
    for r in rows:
        click.echo(f"  {_line(r)}")


def _ids_hint(ids: Sequence[str], limit: int = 8) -> str:
    shown = " ".join(ids[:limit])
    return shown + (" …" if len(ids) > limit else "")


def _confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; -y skips; elsewhere (a pipe, cron) refuse without -y."""
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(f"{question.rstrip('?')}: not asking without a terminal; add -y")
    if not click.confirm(question, default=False, err=True):
        raise LabbookError("nothing deleted")


@click.command("rm")
@click.argument("runs", nargs=-1, shell_complete=complete_run)
@selection_options
@click.option("--undo", is_flag=True, help="Bring removed runs back (RUN… or filters).")
@click.option(
    "--purge",
    is_flag=True,
    help="Delete the runs for good (all their rows), asking first on a terminal.",
)
@click.option("--removed", is_flag=True, help="Select among removed runs (for --purge).")
@click.option("--archived", is_flag=True, help="Select among archived runs only.")
@click.option("--all-runs", "-a", is_flag=True, help="Archived runs too (as ls --all-runs).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --purge.")
@json_option
@click.pass_context
def rm_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    all_: bool,
    dry_run: bool,
    undo: bool,
    purge: bool,
    removed: bool,
    archived: bool,
    all_runs: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove runs (rm --undo brings them back; --purge deletes them).

    RUN… are ids, names, paths, @last; or select with the filters ls takes: what
    `labbook ls -n 0` with the same filters lists (archived runs only with
    --archived or --all-runs). A filter that matches every run needs --all. A
    removed run vanishes from ls, search, compare, diff, check and the TUI, its
    directory is not recorded again by watch or import (import --include-removed),
    and `labbook rm --undo RUN` brings it back. --purge deletes runs (removed ones
    too) with their metrics, notes and files for good; run `labbook gc` afterwards
    to shrink the database file. --undo PATH also lets watch and import record a
    purged run dir again.
    """
    if undo and purge:
        raise UsageError("--undo and --purge do not go together")
    sel = Selection(runs, status, framework, tag, where, since, all_)
    sel.check("rm")
    scope_archived = "only" if archived else "include" if all_runs or sel.runs else "hide"
    with open_store(ctx, create=False) as store:
        if undo:
            _undo(store, sel, scope_archived, dry_run=dry_run, as_json=as_json)
            return
        deleted = "removed" if removed else "any" if purge else "live"
        rows = sel.rows(
            store,
            "rm",
            deleted=deleted,
            archived=scope_archived,
            resolve_removed=purge or removed,
        )
        ids = [r["id"] for r in rows]
        if dry_run:
            if as_json:
                echo_json({"dry_run": True, "purge": purge, "runs": ids})
            else:
                verb = "delete for good" if purge else "remove"
                _listing(rows, f"would {verb} {_plural(len(rows), 'run')}:")
            return
        if purge:
            _confirm(f"delete {_plural(len(rows), 'run')} for good?", yes)
            n = store.purge_runs(ids)
            if as_json:
                echo_json({"dry_run": False, "purged": ids})
            else:
                click.echo(
                    f"deleted {_plural(n, 'run')} for good; `labbook gc` shrinks the database file"
                )
            return
        done = set(store.set_removed(ids))
        changed = [i for i in ids if i in done]
    if as_json:
        echo_json({"dry_run": False, "removed": changed})
        return
    if not changed:
        click.echo("nothing removed: those runs were removed already")
        return
    click.echo(
        f"removed {_plural(len(changed), 'run')}; undo: labbook rm --undo {_ids_hint(changed)}"
    )


def _undo(store: Any, sel: Selection, archived: str, *, dry_run: bool, as_json: bool) -> None:
    """``rm --undo``: removed runs back; a purged run dir's path: recorded again."""
    purged: list[str] = []
    refs = []
    for ref in sel.runs:
        path = os.path.abspath(os.path.expanduser(ref))
        keys = [p["source_key"] for p in store.purged_sources(path)] if os.sep in ref else []
        if keys:
            purged += keys
        else:
            refs.append(ref)
    sel.runs = refs
    rows: list[dict[str, Any]] = []
    if refs or not purged:
        rows = sel.rows(
            store, "restore", deleted="removed", archived=archived, resolve_removed=True
        )
        live = [r["id"] for r in rows if r.get("deleted_at") is None]
        if live and sel.runs:
            raise UsageError(
                f"run {live[0]} is not removed", hint="`labbook rm --undo` brings back removed runs"
            )
    ids = [r["id"] for r in rows]
    if dry_run:
        if as_json:
            echo_json({"dry_run": True, "restore": ids, "record_again": purged})
            return
        if rows:
            _listing(rows, f"would bring back {_plural(len(rows), 'run')}:")
        for key in purged:
            click.echo(f"would let watch and import record {printable(key)} again")
        return
    changed = store.set_removed(ids, removed=False) if ids else []
    forgotten = store.forget_purged(purged) if purged else 0
    if as_json:
        echo_json({"dry_run": False, "restored": changed, "record_again": purged})
        return
    if changed:
        click.echo(f"brought back {_plural(len(changed), 'run')}")
    if forgotten:
        click.echo(f"watch and import will record {_plural(forgotten, 'purged run dir')} again")


@click.command("archive")
@click.argument("runs", nargs=-1, shell_complete=complete_run)
@selection_options
@click.option("--undo", is_flag=True, help="Take runs out of the archive.")
@json_option
@click.pass_context
def archive_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    all_: bool,
    dry_run: bool,
    undo: bool,
    as_json: bool,
) -> None:
    """Archive runs: hidden from default listings (ls --archived).

    RUN… or the filters ls takes select the runs, as for `labbook rm`. Archived
    runs leave ls, search, compare filters and the TUI's list; `ls --archived`
    lists them, `ls --all-runs` lists them with the rest, and they still count
    as seed peers in diff and as past mistakes in check. --undo takes runs out
    of the archive.
    """
    sel = Selection(runs, status, framework, tag, where, since, all_)
    sel.check("archive")
    with open_store(ctx, create=False) as store:
        rows = sel.rows(store, "archive", archived="only" if undo else "hide")
        if sel.runs:
            want = (lambda r: r.get("archived_at") is not None) if undo else None
            rows = [r for r in rows if want is None or want(r)]
        ids = [r["id"] for r in rows]
        if dry_run:
            if as_json:
                echo_json({"dry_run": True, "undo": undo, "runs": ids})
            else:
                verb = "take out of the archive" if undo else "archive"
                _listing(rows, f"would {verb} {_plural(len(rows), 'run')}:")
            return
        changed = store.set_archived(ids, archived=not undo)
    if as_json:
        echo_json({"dry_run": False, "unarchived" if undo else "archived": changed})
        return
    if undo:
        click.echo(f"took {_plural(len(changed), 'run')} out of the archive")
    elif changed:
        click.echo(
            f"archived {_plural(len(changed), 'run')} (labbook ls --archived lists them;"
            f" undo: labbook archive --undo {_ids_hint(changed)})"
        )
    else:
        click.echo("nothing archived: those runs were archived already")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be freed.")
@json_option
@click.pass_context
def gc_cmd(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Drop blobs and series no run references, and shrink the database.

    Removed runs (labbook rm without --purge) keep what they reference, so that
    `rm --undo` brings them back whole. Safe while watch or a run writes: the
    scan and the delete are one write transaction, and the vacuum that follows
    makes writers wait for it.
    """
    report: dict[str, Any]
    progress: Callable[[str], None] = (lambda _s: None) if as_json else _status
    with open_store(ctx, create=False) as store:
        if not dry_run:
            progress("labbook: collecting and vacuuming …")
        report = store.gc(dry_run=dry_run)
    if as_json:
        echo_json(report)
        return
    what = f"{_plural(report['blobs'], 'blob')}, {report['series']:,} series"
    if report["rows"]:
        what += f", {_plural(report['rows'], 'stray row')}"
    if dry_run:
        free = report["freed_bytes"] + report["free_bytes"]
        click.echo(
            f"would free {_mb(report['freed_bytes'])}: {what}; the database "
            f"({_mb(report['database_before'])}) would shrink by about {_mb(free)}"
        )
        return
    click.echo(
        f"freed {_mb(report['freed_bytes'])}: {what}; database "
        f"{_mb(report['database_before'])} → {_mb(report['database_after'])}"
    )


def _status(text: str) -> None:
    if sys.stderr.isatty():
        click.echo(text, err=True)
