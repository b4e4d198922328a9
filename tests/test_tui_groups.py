"""The runs table grouped by seed group (``g``), driven with Pilot over a real store
whose runs are real ``labbook run`` training runs (tests/seed_lab.py): toggling,
expanding a group, opening a member, a filter then grouping, sorting groups by a
column's mean; and one SVG snapshot of the grouped view at 80x24 (fixed runs, as
tests/test_tui_snapshots.py makes them, for the ids and times on screen)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from labbook_tui.app import LabbookApp, make_app
from labbook_tui.run_screen import RunScreen
from labbook_tui.run_table import RunTable
from textual.widgets import Input, Static

from tests.conftest import run_cli
from tests.seed_lab import Planned, record_lab
from tests.test_tui_data import NOW, UTC, add_diverged, add_seeds, fill, fixed_ids

pytestmark = pytest.mark.anyio

#: A tiny training loop; seeds divisible by 4 or 5 blow up (the loss turns NaN on
#: step 4, the run goes on to the end): "3 finished, 2 diverged" over seeds 1..5.
TRAIN = """\
import argparse, random
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--width", type=int, default=8)
a = p.parse_args()
rng = random.Random(a.seed)
blows_up = a.seed % 4 == 0 or a.seed % 5 == 0
w = 0.0
for step in range(1, 7):
    w += a.lr * (3.0 - w) + rng.gauss(0, 0.05)
    loss = float("nan") if blows_up and step >= 4 else (3.0 - w) ** 2
    print(f"step={step} val_loss={loss:.6f} val_acc={1 / (1 + loss):.6f}", flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Four seed groups: lr 0.3 seeds 1..5 (two diverge), lr 0.05 seeds 1..3, lr 0.3
    width 16 seeds 6 and 7, and lr 0.2 seed 1 alone."""
    plan: list[Planned] = [
        *[("fast", ["--lr", "0.3"], s) for s in range(1, 6)],
        *[("slow", ["--lr", "0.05"], s) for s in range(1, 4)],
        *[("wide", ["--lr", "0.3", "--width", "16"], s) for s in (6, 7)],
        ("solo", ["--lr", "0.2"], 1),
    ]
    lab: dict[str, Any] = record_lab(tmp_path_factory.mktemp("tui-groups"), TRAIN, plan)
    r = run_cli("ls", "-n", "0", "--json", db=lab["db"], env=lab["env"])
    assert r.returncode == 0, r.stderr
    lab["records"] = {rec["id"]: rec for rec in json.loads(r.stdout)}
    return lab


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_for(db: Path, **kw: Any) -> LabbookApp:
    return make_app(db, clock=lambda: NOW, tz=UTC, poll_interval=None, **kw)


def table(app: LabbookApp) -> RunTable:
    return app.screen.query_one(RunTable)


def status_text(app: LabbookApp) -> str:
    return str(app.screen.query_one("#status", Static).content)


def group_of(lab: dict[str, Any], label: str) -> str:
    """The group id labbook gave the runs of ``label`` (``--json``'s ``group``)."""
    ids = {lab["records"][rid]["group"]["id"] for rid in lab["runs"][label]}
    assert len(ids) == 1
    return ids.pop()


def finals(lab: dict[str, Any], label: str, metric: str) -> dict[str, float]:
    """The final ``metric`` of the runs of ``label`` that finished, by run id."""
    out = {}
    for rid in lab["runs"][label]:
        rec = lab["records"][rid]
        if rec["status"] == "finished":
            out[rid] = rec["metrics"][metric]["last"]
    return out


def row_of(t: RunTable, gid: str) -> int:
    return next(i for i, (g, m) in enumerate(t.lines) if g.id == gid and m is None)


def cell(t: RunTable, row: int, key: str) -> str:
    keys = [c.key for c in t._columns]
    return t.get_row_at(row)[keys.index(key)]


async def test_g_folds_each_seed_group_into_a_row(lab: dict[str, Any]) -> None:
    app = app_for(lab["db"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        assert t.row_count == 11 and "of 11 runs" in status_text(app)
        wide = lab["runs"]["wide"][0]
        t.move_cursor(row=next(i for i, r in enumerate(t.records) if r["id"] == wide))
        await pilot.press("g")
        await pilot.pause()
        assert t.grouped and t.row_count == 4
        group = t.current_group()  # the cursor's run's group under the cursor
        assert group is not None and group.id == group_of(lab, "wide")
        assert status_text(app).startswith("grouped: 4 groups of 11 runs")
        # the frozen columns, then n and the status breakdown before the metrics
        keys = [c.key for c in t._columns]
        assert keys[:6] == ["mark", "id", "name", "n", "status", "metrics.val_loss"]
        assert "best" in keys
        fast = row_of(t, group_of(lab, "fast"))
        assert cell(t, fast, "id") == group_of(lab, "fast")
        assert cell(t, fast, "n") == "5"
        assert cell(t, fast, "status") == "3 finished, 2 diverged"
        # mean ± std over the members that finished, against a direct computation
        values = finals(lab, "fast", "val_loss")
        assert len(values) == 3
        mean, std = (float(x) for x in cell(t, fast, "metrics.val_loss").split(" ± "))
        assert mean == pytest.approx(statistics.mean(values.values()), rel=1e-3)
        assert std == pytest.approx(statistics.stdev(values.values()), rel=0.05)
        assert cell(t, fast, "best") == min(values, key=values.__getitem__)
        solo = row_of(t, group_of(lab, "solo"))
        assert cell(t, solo, "n") == "1" and " ± " not in cell(t, solo, "metrics.val_loss")
        # the group's row is no run: opening or annotating it has nothing to act on
        assert t.current_run_id() is None
        # the screen still says what is where: a group's row at 80 columns
        line = "".join(s.text for s in t.render_line(1 + row_of(t, t.lines[0][0].id)))
        assert t.lines[0][0].id in line and len(line) == 80
        await pilot.press("g")
        await pilot.pause()
        assert not t.grouped and t.row_count == 11
        assert "1–11 of 11 runs" in status_text(app)


async def test_enter_expands_a_group_and_opens_a_member(lab: dict[str, Any]) -> None:
    app = app_for(lab["db"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g")
        t = table(app)
        gid = group_of(lab, "slow")
        t.move_cursor(row=row_of(t, gid))
        await pilot.press("enter")
        await pilot.pause()
        assert t.row_count == 4 + 3 and gid in t.expanded
        at = row_of(t, gid)
        assert t.cursor_row == at  # the cursor stays on the group's row
        members = [m["id"] for _, m in t.lines[at + 1 : at + 4] if m]
        assert set(members) == set(lab["runs"]["slow"])
        # members beneath their group, their ids indented
        assert cell(t, at + 1, "id") == "  " + members[0]
        assert cell(t, at + 1, "n") == "" and cell(t, at + 1, "status") == "finished"
        best = cell(t, at, "best")
        assert [cell(t, i, "best") for i in range(at + 1, at + 4)].count("best") == 1
        assert cell(t, at + 1 + members.index(best), "best") == "best"
        await pilot.press("down", "down")
        assert t.current_run_id() == members[1]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == members[1]
        await pilot.press("escape")
        await pilot.pause()
        t = table(app)
        assert t.grouped and gid in t.expanded and t.current_run_id() == members[1]
        # a member can be marked (and diffed) as in the runs list; the group row cannot
        await pilot.press("space")
        assert t.marked == [members[1]]
        t.move_cursor(row=row_of(t, gid))
        await pilot.press("enter")  # collapses
        await pilot.pause()
        assert t.row_count == 4 and gid not in t.expanded
        # back to the runs: the cursor's group was collapsed, so the top row
        await pilot.press("g")
        await pilot.pause()
        assert not t.grouped and t.row_count == 11 and t.marked == [members[1]]


async def test_filter_then_group(lab: dict[str, Any]) -> None:
    """The filter picks the runs, then they are grouped: a group shows only its matches."""
    app = app_for(lab["db"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g", "slash", *"status=diverged", "enter")
        await pilot.pause()
        t = table(app)
        assert t.grouped and t.row_count == 1
        assert status_text(app).startswith("grouped: 1 group of 2 runs")
        assert cell(t, 0, "id") == group_of(lab, "fast")
        assert cell(t, 0, "n") == "2" and cell(t, 0, "status") == "2 diverged"
        assert cell(t, 0, "metrics.val_loss") == "—"  # a diverged run's last value counts not
        box = app.screen.query_one("#filter", Input)
        box.value = ""
        await pilot.pause()
        assert t.row_count == 4
        await pilot.press("slash", *"lr<0.1", "enter")
        await pilot.pause()
        assert t.row_count == 1 and cell(t, 0, "id") == group_of(lab, "slow")
        await pilot.press("enter")  # expanded: the filter's runs of the group
        await pilot.pause()
        assert {m["id"] for _, m in t.lines[1:] if m} == set(lab["runs"]["slow"])
        await pilot.press("slash", *"xyz-no-such-run", "enter")
        await pilot.pause()
        assert t.row_count == 0 and "No runs match" in str(
            app.screen.query_one("#empty", Static).content
        )
        assert status_text(app).startswith("grouped: 0 groups of 0 runs")


async def test_sort_sorts_groups_by_the_columns_mean(lab: dict[str, Any]) -> None:
    app = app_for(lab["db"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g")
        await pilot.pause()
        screen: Any = app.screen
        t = table(app)
        means = {
            group_of(lab, label): statistics.mean(finals(lab, label, "val_loss").values())
            for label in ("fast", "slow", "wide", "solo")
        }
        screen.sort_by("metrics.val_loss", False)
        await pilot.pause()
        assert [g.id for g in t.groups] == sorted(means, key=means.__getitem__)
        assert t.cursor_row == 0 and "sort val_loss ▲" in status_text(app)
        screen.sort_by("metrics.val_loss", True)
        await pilot.pause()
        assert [g.id for g in t.groups] == sorted(means, key=means.__getitem__, reverse=True)
        # n is a column of the grouped view; sorting by it, then back to the runs
        screen.sort_by("n", True)
        await pilot.pause()
        assert [g.row["size"] for g in t.groups] == [5, 3, 2, 1]
        # an expanded group keeps its members under it in the new order
        t.move_cursor(row=row_of(t, group_of(lab, "wide")))
        await pilot.press("enter")
        screen.sort_by("metrics.val_loss", False)
        await pilot.pause()
        at = row_of(t, group_of(lab, "wide"))
        assert {m["id"] for _, m in t.lines[at + 1 : at + 3] if m} == set(lab["runs"]["wide"])
        screen.sort_by("n", False)
        await pilot.press("g")  # n is no column of the runs list: the default order again
        await pilot.pause()
        assert t.query_state.sort is None and t.row_count == 11


async def test_a_new_seed_joins_its_group_live(lab: dict[str, Any], tmp_path: Path) -> None:
    """Another process records one more seed (a real ``labbook run``): on the next poll
    the grouped table reads the groups again, the new run counted in its group."""
    import sqlite3

    db = tmp_path / "copy.db"
    with sqlite3.connect(lab["db"]) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g")
        t = table(app)
        solo = group_of(lab, "solo")
        assert cell(t, row_of(t, solo), "n") == "1"
        assert not app.poll()  # nothing new: the groups are not read again
        r = run_cli(
            "run", "--", "python", "train.py", "--seed", "2", "--lr", "0.2",
            db=db, cwd=lab["root"], env=lab["env"],
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert app.poll()
        await pilot.pause()
        assert t.grouped and cell(t, row_of(t, solo), "n") == "2"
        assert " ± " in cell(t, row_of(t, solo), "metrics.val_loss")
        assert status_text(app).startswith("grouped: 4 groups of 12 runs")


async def test_footer_and_help_list_g(lab: dict[str, Any]) -> None:
    from labbook_tui.modals import HELP

    app = app_for(lab["db"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = {k: a.binding for k, a in app.screen.active_bindings.items() if a.binding.show}
        assert shown["g"].description == "Group"
        footer = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
        assert "Group" in footer
        assert any(k == "g" and "group" in what for _, k, what in HELP)


# -- the snapshot ----------------------------------------------------------------------------


async def test_runs_grouped(snapshot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """80x24, grouped, the seed group of four expanded: its members beneath it."""
    pytest.importorskip("pytest_textual_snapshot")
    from tests.test_tui_snapshots import check, shoot

    fixed_ids(monkeypatch)
    db = tmp_path / "labbook.db"
    fill(db)
    add_seeds(db)
    add_diverged(db)

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("g", "enter")

    check(snapshot, await shoot(db, (80, 24), steps))
