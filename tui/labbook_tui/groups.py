"""Seed groups in the runs table (``g``): each group folded into one row, its members
under it when expanded.

The folding is the core's (:func:`labbook.analysis.groups.fold`: n, the status
breakdown, each metric's mean ± std over the members that count, the best member),
and so is the text of a folded cell (:func:`labbook.render.groups.mean_std`,
:func:`labbook.render.groups.status_cell`): ``labbook ls --group`` and the TUI say
the same thing about a group. What is the TUI's own is only how the rows are laid
out and put in order: groups sorted by the sorted column's mean (the core's
listing is newest first and takes no sort), the expanded groups' members beneath.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labbook.model import RunRecord
from labbook.render.groups import mean_std, status_cell
from labbook_tui.fmt import column_value

#: Columns a grouped table has that a runs table has not (sort keys, labels).
GROUP_ONLY = ("n", "best")


@dataclass
class Group:
    """One seed group: the core's folded row (``ls --group --json``'s object) and its
    members (newest first)."""

    row: dict[str, Any]
    members: list[RunRecord]
    #: the text of each metric cell, once formatted (widths are measured on every relayout)
    _texts: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def best_id(self) -> str | None:
        best = self.row.get("best")
        return str(best["id"]) if best else None

    def stat(self, metric: str) -> dict[str, Any]:
        """The summary of ``metric`` (``n``, ``mean``, ``std``, ``min``, ``max``)."""
        return dict((self.row.get("metrics") or {}).get(metric) or {})

    def status(self) -> str:
        """``3 finished, 2 diverged``."""
        text = self._texts.get("status")
        if text is None:
            text = self._texts["status"] = status_cell(self.row.get("statuses") or {})
        return text

    def cell(self, key: str) -> str:
        """The text of a scrolling column (``metrics.NAME``: mean ± std)."""
        if not key.startswith("metrics."):
            return ""
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = mean_std(self.stat(key.split(".", 1)[1]))
        return text


@dataclass
class GroupedRuns:
    """The runs matching a filter, by seed group: what the table shows with ``g``."""

    groups: list[Group]
    #: the metrics each group summarises (canonical names, as the columns show them)
    metrics: list[str]
    #: how many runs the groups hold in all
    runs: int
    extra: list[str] = field(default_factory=list)


def worst_status(counts: dict[str, int]) -> str:
    """The status a group's breakdown is coloured by: its worst (diverged, failed, killed),
    else its only one, as ``labbook ls --group`` colours it."""
    worst = next((s for s in ("diverged", "failed", "killed") if counts.get(s)), None)
    if worst:
        return worst
    return next(iter(counts), "unknown") if len(counts) == 1 else "finished"


def sort_value(group: Group, key: str | None) -> Any:
    """What a group sorts by for column ``key`` (a sort key as the runs table has
    them): a metric's mean, n, the best member's value, the group's id, name, status
    breakdown or newest start; any other column: its newest member's value."""
    row = group.row
    if key is None or key == "started":
        return row.get("started_at")
    if key == "n":
        return row.get("size")
    if key == "id":
        return group.id
    if key == "name":
        return row.get("name") or ""
    if key == "status":
        return group.status()
    if key == "best":
        best = row.get("best")
        return best["value"] if best else None
    metric = key.split(".", 1)[1] if key.startswith("metrics.") else key
    if metric in (row.get("metrics") or {}):
        return group.stat(metric).get("mean")
    newest = group.members[0] if group.members else None
    if newest is None:
        return None
    if key in ("duration", "seed", "framework"):
        return None if key != "framework" else newest.get("framework")
    return column_value(newest, key)


def sort_groups(groups: Sequence[Group], key: str | None, descending: bool) -> list[Group]:
    """``groups`` in the order of column ``key`` (None: newest first, the core's order);
    groups without a value last either way."""
    if key is None:
        return list(groups)
    have: list[tuple[Any, Group]] = []
    missing: list[tuple[Any, Group]] = []
    for g in groups:
        value = sort_value(g, key)
        (missing if value is None else have).append((value, g))
    try:
        have.sort(key=lambda vg: vg[0], reverse=descending)
    except TypeError:  # numbers and text in one config key: compare them as text
        have.sort(key=lambda vg: str(vg[0]), reverse=descending)
    return [g for _, g in have] + [g for _, g in missing]


#: A line of the grouped table: a group's own row (member None) or one of its members.
Line = tuple[Group, RunRecord | None]


def lines_of(groups: Sequence[Group], expanded: set[str]) -> list[Line]:
    """The table's lines: each group, its members beneath it when it is expanded."""
    out: list[Line] = []
    for g in groups:
        out.append((g, None))
        if g.id in expanded:
            out += [(g, m) for m in g.members]
    return out
