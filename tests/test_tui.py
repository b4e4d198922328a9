"""Pilot tests of the labbook TUI against a real SQLite store filled through labbook's API."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from labbook_tui.app import LabbookApp, make_app
from labbook_tui.fmt import short_middle
from labbook_tui.modals import HelpScreen, NoteModal, SortModal, TagsModal
from labbook_tui.notebook import EMPTY_HINT, parse_filter
from labbook_tui.plot import CurvePlot, Series, breaks, describe_breaks, fmt_axis, render_plot
from labbook_tui.run_table import RunTable
from labbook_tui.runs_screen import RunsScreen
from textual.widgets import Input, OptionList, Static, TabbedContent, Tree

from labbook.model import Point
from labbook.store import Store
from tests.conftest import REPO
from tests.test_tui_data import (
    INF_STEP,
    NAN_FROM,
    NOW,
    SEED_NAMES,
    UTC,
    add_diverged,
    add_seeds,
    facts,
    fill,
    fixed_ids,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tui_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fixed_ids(monkeypatch)
    db = tmp_path / "labbook.db"
    fill(db)
    return db


def app_for(db: Path, **kw: Any) -> LabbookApp:
    kw.setdefault("poll_interval", None)
    return make_app(db, clock=lambda: NOW, tz=UTC, **kw)


def table(app: LabbookApp) -> RunTable:
    return app.screen.query_one(RunTable)


def plain(widget: Static) -> str:
    """The text a Static shows (whatever rich renderable it holds), without styles."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def text_of(app: LabbookApp, selector: str) -> str:
    return plain(app.screen.query_one(selector, Static))


def status_text(app: LabbookApp) -> str:
    return text_of(app, "#status")


def ids_shown(app: LabbookApp) -> list[str]:
    return [r["id"] for r in table(app).records]


def query_error(text: str) -> str:
    """The store's own message for a filter it cannot read (whatever its wording)."""
    from labbook.errors import QueryError

    with pytest.raises(QueryError) as caught:
        parse_filter(text)
    return str(caught.value)


def row_text(app: LabbookApp, row: int) -> str:
    """Row ``row`` of the runs table as it shows on screen (scrolled, cut to fit)."""
    return table(app).render_line(1 + row).text


def header_text(app: LabbookApp) -> str:
    return table(app).render_line(0).text


# -- runs screen -----------------------------------------------------------------------


async def test_runs_newest_first_with_status_line(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert ids_shown(app) == [f"{i:08x}" for i in range(6, 0, -1)]
        assert "1–6 of 6 runs" in status_text(app)
        t = table(app)
        assert set(t.metric_columns) == {"val_acc", "val_loss", "train_loss"}  # canonical names
        assert t.has_focus


async def test_filter_bar_uses_where_syntax(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash")
        assert app.screen.query_one("#filter", Input).has_focus
        await pilot.press(*"status=failed")
        assert [r["status"] for r in table(app).records] == ["failed"]
        await pilot.press("enter")
        assert table(app).has_focus
        box = app.screen.query_one("#filter", Input)
        # numeric config comparison and an "and"
        box.value = "optimizer.lr>=0.01 and model.depth=18"
        await pilot.pause()
        assert sorted(r["config"]["optimizer.lr"] for r in table(app).records) == [0.01, 0.1]
        # an unreadable filter says why and leaves the table alone
        before = ids_shown(app)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert not screen.apply_filter("lr>>")
        assert ids_shown(app) == before
        assert app.screen.query_one("#status", Static).has_class("-error")
        assert query_error("lr>>") in text_of(app, "#filter-error")
        # a bare word matches names
        box.value = "run03"
        await pilot.pause()
        assert [r["name"] for r in table(app).records] == ["exp/run03"]
        # escape leaves the bar, a second escape clears it
        await pilot.press("slash", "escape", "escape")
        assert len(ids_shown(app)) == 6


async def test_no_match_says_so(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"status=running")
        assert app.screen.has_class("-empty")
        assert "No runs match" in plain(app.screen.query_one("#empty", Static))


async def test_invalid_filter_shows_why_and_keeps_the_last_good_rows_stale(
    tui_db: Path,
) -> None:
    """Typing through an unreadable filter: the store's message right under the bar,
    the rows of the last filter that read stay, marked stale, until it reads again."""
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"status=failed")
        good = ids_shown(app)
        assert len(good) == 1
        error = app.screen.query_one("#filter-error", Static)
        assert not error.display
        # (pasted: typed, "status=failed and lr" would read, as a name, and match none)
        box = app.screen.query_one("#filter", Input)
        box.insert_text_at_cursor(" and lr>>")
        await pilot.pause()
        assert box.value == "status=failed and lr>>"
        assert error.display
        assert query_error("status=failed and lr>>") in text_of(app, "#filter-error")
        assert ids_shown(app) == good  # the last good result, not emptied, not stale-less
        assert table(app).has_class("-stale")
        assert "stale: the rows of 'status=failed'" in status_text(app)
        assert app.screen.query_one("#filter", Input).has_class("-invalid")
        # a live update keeps the message (the table re-reads the good filter)
        app.refresh_screens()
        await pilot.pause()
        assert error.display and "stale" in status_text(app)
        # reads again: the message goes, the rows are the new filter's
        await pilot.press("backspace", *"0.01")
        assert box.value == "status=failed and lr>0.01"
        assert not error.display
        assert not table(app).has_class("-stale")
        assert "stale" not in status_text(app)
        assert ids_shown(app) == []  # no failed run had lr > 0.01
        await pilot.press("ctrl+u")
        assert len(ids_shown(app)) == 6


async def test_frozen_id_and_name_while_columns_scroll(tui_db: Path) -> None:
    """At 80 columns: id, name, status and at least two metrics show; Left/Right move
    a whole column, and id and name stay where they are."""
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        shown = t.visible_columns()
        assert shown[:4] == ["mark", "id", "name", "status"]
        metrics = [k for k in shown if k.startswith("metrics.")]
        assert len(metrics) >= 2
        assert "00000006  exp/run05" in row_text(app, 0)
        assert "status" in header_text(app) and header_text(app).rstrip().endswith("▸")
        assert "more column" in status_text(app)
        at = row_text(app, 0).index("exp/run05")
        order = [c.key for c in t._columns[3:]]
        for step in range(1, len(order)):
            await pilot.press("right")
            if t.first_visible_column() == order[step - 1]:
                break  # the last columns are all in view: Right stops
            assert t.first_visible_column() == order[step]  # one whole column a press
            assert t.scroll_offset.x in t._edges()
            row = row_text(app, 0)
            assert row.index("exp/run05") == at and row.startswith("    00000006")
            assert "killed" not in row  # the status column scrolled away
            assert "◂" in header_text(app)
        assert "framework" in t.visible_columns()
        assert "hydra" in row_text(app, 0)  # run05's framework
        await pilot.press("right")  # at the end: nothing moves
        assert "framework" in t.visible_columns()
        for _ in order:
            await pilot.press("left")
        assert t.scroll_offset.x == 0 and t.first_visible_column() == "status"
        # the cursor moves with id and name in view
        await pilot.press("right", "right", "down")
        assert t.current_run_id() == "00000005" and "exp/run04" in row_text(app, 1)


async def test_sort_puts_cursor_on_top_and_shows_the_sorted_column(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "down")
        t = table(app)
        assert t.cursor_row == 3
        await pilot.press("o")
        options = app.screen.query_one(OptionList)
        keys = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = keys.index("framework")  # off screen at 80 columns
        await pilot.press("enter")
        assert t.absolute == 0 and t.cursor_row == 0 and t.scroll_offset.y == 0
        assert "framework" in t.visible_columns()
        assert t.records[0]["framework"] == "generic"  # the top of the new order
        assert "exp/run" in row_text(app, 0)  # the name still shows
        # sorting by a metric scrolls back to it
        await pilot.press("down", "o")
        options = app.screen.query_one(OptionList)
        options.highlighted = keys.index("metrics.val_loss")
        await pilot.press("enter")
        assert t.cursor_row == 0 and "metrics.val_loss" in t.visible_columns()
        assert "val_loss ▼" in header_text(app)


async def test_long_names_are_cut_in_the_middle(tui_db: Path) -> None:
    """Three seeds of one config: each row keeps the end of its name (the seed)."""
    add_seeds(tui_db)
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        rows = [row_text(app, i) for i in range(3)]
        for row, k in zip(rows, (3, 2, 1), strict=True):
            assert f"_seed{k} " in row and "seeds/lig" in row and "…" in row
        assert len(set(rows)) == 3
        assert len([k for k in table(app).visible_columns() if k.startswith("metrics.")]) >= 2


async def test_metric_columns_use_the_metric_vocabulary(tmp_path: Path) -> None:
    """Runs that spell their loss train/loss, train_loss and Loss/train show it in one
    column (train_loss), sort by it, and filter on it."""
    db = tmp_path / "labbook.db"
    with Store.open(db) as store:
        for i, tag in enumerate(["train/loss", "train_loss", "Loss/train"]):
            f = facts(i, tmp_path, name=f"exp/{tag.replace('/', '-')}")
            f.metrics = {tag: [Point(step=0, value=2.0), Point(step=9, value=0.5 + i)]}
            store.save_run(f)
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        assert t.metric_columns[0] == "train_loss"
        at = [k for k, _ in t.columns_spec()].index("metrics.train_loss")
        assert [t.get_row_at(i)[at] for i in range(3)] == ["2.5", "1.5", "0.5"]
        screen: Any = app.screen
        screen.sort_by("metrics.train_loss")
        await pilot.pause()
        assert [r["name"] for r in t.records] == [
            "exp/train-loss",
            "exp/train_loss",
            "exp/Loss-train",
        ]
        await pilot.press("slash", *"train_loss<1")
        assert [r["name"] for r in t.records] == ["exp/train-loss"]


def test_short_middle() -> None:
    name = SEED_NAMES[0]
    assert short_middle(name, 100) == name
    cut = short_middle(name, 20)
    assert cut == "seeds/lig…0.05_seed1" and len(cut) == 20
    assert short_middle("abcdef", 4) == "a…ef"  # the end gets the odd cell
    assert short_middle("数据集名称很长的运行", 9) == "数据…运行"  # wide characters: 2 cells
    assert short_middle("abc", 1) == "…" and short_middle("abc", 0) == ""


async def test_sort_by_column_and_flip(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("o")
        assert isinstance(app.screen, SortModal)
        options = app.screen.query_one(OptionList)
        keys = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = keys.index("name")
        await pilot.press("enter")
        assert [r["name"] for r in table(app).records] == [f"exp/run{i:02d}" for i in range(6)]
        await pilot.press("o")
        app.screen.query_one(OptionList).highlighted = keys.index("name")
        await pilot.press("enter")
        assert table(app).records[0]["name"] == "exp/run05"
        assert "sort name ▼" in status_text(app)
        # by a metric: best (lowest) val/loss first, runs without it last
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        screen.sort_by("metrics.val_loss")
        await pilot.pause()
        values = [r["metrics"]["val/loss"]["last"] for r in table(app).records]
        assert values == sorted(values)


async def test_extra_columns(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.press("c")
        await pilot.press(*"optimizer.lr", "enter")
        t = table(app)
        assert "optimizer.lr" in [k for k, _ in t.columns_spec()]
        row = t.get_row_at(0)
        assert "0.01" in [str(c) for c in row]


async def test_window_pages_through_many_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table holds a window; moving past its edge re-reads around the cursor."""
    db = tmp_path / "many.db"
    fill(db, n=60)
    monkeypatch.setattr(RunTable, "WINDOW", 10)
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        assert t.total == 60 and len(t.records) == 10 and t.row_count == 10
        for _ in range(15):
            await pilot.press("down")
        assert t.absolute == 15
        assert t.current_record()["name"] == "exp/run44"  # newest first: 59 - 15
        assert t.row_count <= 10
        await pilot.press("G")
        assert t.absolute == 59 and t.current_record()["name"] == "exp/run00"
        assert "of 60 runs" in status_text(app)
        await pilot.press("up")
        assert t.current_record()["name"] == "exp/run01"
        await pilot.press("home")  # (g groups the runs: tests/test_tui_groups.py)
        assert t.absolute == 0 and t.current_record()["name"] == "exp/run59"
        await pilot.press("pagedown")
        assert t.absolute > 5


async def test_counting_stops_at_the_cap_and_the_end_is_still_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a big store the table says "N+ runs" instead of counting on every keystroke."""
    from labbook_tui.notebook import Notebook

    db = tmp_path / "many.db"
    fill(db, n=60)
    monkeypatch.setattr(RunTable, "WINDOW", 10)
    monkeypatch.setattr(Notebook, "COUNT_CAP", 20)
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        assert t.more and t.total == 20
        assert "of 20+ runs" in status_text(app)
        for _ in range(25):  # past the cap: the window moves on, counting goes further
            await pilot.press("down")
        assert t.absolute == 25 and t.current_record()["name"] == "exp/run34"
        await pilot.press("G")  # the end: counted exactly, once
        assert not t.more and t.total == 60
        assert t.absolute == 59 and t.current_record()["name"] == "exp/run00"
        assert "of 60 runs" in status_text(app)


async def test_live_update_from_another_process(tui_db: Path, tmp_path: Path) -> None:
    """A run written by another process shows up through PRAGMA data_version polling."""
    app = app_for(tui_db, poll_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert table(app).total == 6
        code = (
            "import sys; sys.path.insert(0, sys.argv[2])\n"
            "from pathlib import Path\n"
            "from labbook.store import Store\n"
            "from tests.test_tui_data import facts\n"
            "with Store.open(sys.argv[1]) as s:\n"
            "    s.save_run(facts(7, Path('/data/exp'), name='exp/from-watch', started_at=2e9))\n"
        )
        subprocess.run([sys.executable, "-c", code, str(tui_db), str(REPO)], check=True, timeout=60)
        deadline = time.monotonic() + 20
        while table(app).total != 7 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert table(app).total == 7
        assert table(app).records[0]["name"] == "exp/from-watch"


async def test_cursor_stays_on_its_run_when_new_runs_arrive(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down")
        rid = table(app).current_run_id()
        with Store.open(tui_db) as other:
            other.save_run(facts(9, Path("/data/exp"), started_at=2e9))
        assert app.poll()
        await pilot.pause()
        assert table(app).total == 7
        assert table(app).current_run_id() == rid
        assert not app.poll()  # nothing new since


# -- empty and missing databases ------------------------------------------------------------


async def test_missing_database_says_what_to_do_then_opens_it(tmp_path: Path) -> None:
    db = tmp_path / "later" / "labbook.db"
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = plain(app.screen.query_one("#empty", Static))
        assert "no labbook database at" in text and EMPTY_HINT in text
        assert not db.exists()  # the TUI never creates it
        await pilot.press("n")  # nothing to annotate: a warning, no crash
        fill(db, n=2)
        assert app.poll()
        await pilot.pause()
        assert table(app).total == 2
        assert not app.screen.has_class("-empty")


async def test_empty_database(tmp_path: Path) -> None:
    db = tmp_path / "labbook.db"
    Store.open(db).close()
    app = app_for(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = plain(app.screen.query_one("#empty", Static))
        assert "No runs yet" in text and EMPTY_HINT in text


# -- run screen ---------------------------------------------------------------------------


async def test_run_screen_tabs(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "down", "down")  # exp/run01: diverged, dirty
        await pilot.press("enter")
        screen = app.screen
        assert type(screen).__name__ == "RunScreen"
        overview = plain(screen.query_one("#overview-body", Static))
        assert "diverged" in overview and "nan at step 60" in overview
        assert "not set" not in overview and "python train.py --lr 0.1" in overview
        tabs = screen.query_one(TabbedContent)
        for key, name in zip(
            "1234567", ("overview", "config", "code", "env", "metrics", "gpu", "log"), strict=True
        ):
            await pilot.press(key)
            assert tabs.active == name
        code = plain(screen.query_one("#code-body", Static))
        assert "+lr = 0.1" in code and "notes.py" in code
        env = plain(screen.query_one("#env-body", Static))
        assert "torch" in env and "CUDA_VISIBLE_DEVICES" in env
        log = plain(screen.query_one("#log-body", Static))
        assert "epoch=11" in log
        assert screen.query_one("#gpu-plot", CurvePlot).series[0].label == "gpu/util"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_config_tree_search(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter", "2")
        tree: Tree[Any] = app.screen.query_one("#config-tree", Tree)

        def leaves() -> list[str]:
            out = []
            stack = [tree.root]
            while stack:
                node = stack.pop()
                if node.data:
                    out.append(node.data)
                stack.extend(node.children)
            return sorted(out)

        assert leaves() == sorted(
            [
                "data.batch_size",
                "model.depth",
                "model.dropout",
                "optimizer.lr",
                "optimizer.name",
                "seed",
            ]
        )
        await pilot.click("#config-search")
        await pilot.press(*"optim")
        assert leaves() == ["optimizer.lr", "optimizer.name"]
        await pilot.press("ctrl+u", *"adam")  # values match too
        assert leaves() == ["optimizer.name"]


async def test_metrics_tab_choice_and_log_scale(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter", "5")
        screen: Any = app.screen
        plot = screen.query_one("#metric-plot", CurvePlot)
        assert plot.series[0].label == "val/acc"  # validation first, system metrics last
        await pilot.press("right_square_bracket")
        assert plot.series[0].label == "val/loss"
        assert not plot.log_scale
        await pilot.press("L")
        assert plot.log_scale
        assert "(log scale)" in plot.render().plain  # type: ignore[union-attr]
        screen.query_one("#metric-tags", OptionList).focus()
        await pilot.press("down")
        assert plot.series[0].label == "train/loss"


async def test_tab_labels_and_footer_keys(tui_db: Path) -> None:
    from textual.widgets import Tabs

    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        footer = {b.key for _, b, enabled, _ in app.screen.active_bindings.values() if b.show}
        assert {"o", "c", "d", "space", "f", "l", "t", "n", "s", "question_mark"} <= footer
        await pilot.press("enter")
        tabs = app.screen.query_one(Tabs)
        labels = [str(tab.label) for tab in tabs.query("Tab")]
        assert labels == [
            "1 Overview", "2 Config", "3 Code", "4 Env", "5 Metrics", "6 GPU", "7 Log"
        ]  # fmt: skip

        def shown() -> set[str]:
            screen = app.screen
            return {
                b.key
                for _, b, _, _ in screen.active_bindings.values()
                if b.show and screen.check_action(b.action.split("(")[0], ()) is not False
            }

        assert "L" not in shown() and "left_square_bracket" not in shown()
        assert {"escape", "f", "l", "t"} <= shown()
        await pilot.press("5")
        assert {"L", "left_square_bracket", "right_square_bracket"} <= shown()
        await pilot.press("6")
        assert "L" in shown() and "left_square_bracket" not in shown()


async def test_diverged_run_chart_shows_where(tui_db: Path) -> None:
    """A run that blew up opens its metrics on the broken curve: the x axis to the
    last step, the inf and the NaN marked and named, exact y labels."""
    rid = add_diverged(tui_db)
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        assert app.screen.current_run_id() == rid  # type: ignore[attr-defined]
        await pilot.press("5")
        plot = app.screen.query_one("#metric-plot", CurvePlot)
        assert plot.series[0].label == "train/loss"  # not val/loss: the curve that broke
        lines = plot.render().plain.split("\n")  # type: ignore[union-attr]
        assert lines[0].lstrip().startswith("4.1e13 ┤")
        assert lines[-2].rstrip().endswith("24")  # the last step, NaN as it is
        assert f"▲ inf at {INF_STEP}, × NaN from {NAN_FROM}" in lines[-1]
        assert "▲" in lines[0] and "×" in lines[0]
        options = app.screen.query_one("#metric-tags", OptionList)
        assert "×" in str(options.get_option("train/loss").prompt)
        assert "×" not in str(options.get_option("val/loss").prompt)
        await pilot.press("L")
        lines = plot.render().plain.split("\n")  # type: ignore[union-attr]
        assert "(log scale)" in lines[-1] and f"inf at {INF_STEP}" in lines[-1]
        assert lines[0].lstrip().startswith("4.1e13")


# -- annotations -----------------------------------------------------------------------------


def notes_in(db: Path, run_id: str) -> list[tuple[str, str]]:
    with Store.open(db) as s:
        return [(n["kind"], n["text"]) for n in s.notes_of(run_id)]


@pytest.mark.parametrize(("key", "kind"), [("n", "note"), ("f", "failure"), ("l", "lesson")])
async def test_annotate_from_runs_screen(tui_db: Path, key: str, kind: str) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down")
        rid = table(app).current_run_id()
        assert rid is not None
        await pilot.press(key)
        assert isinstance(app.screen, NoteModal) and app.screen.kind == kind
        await pilot.press(*"lr too high", "enter")
        assert isinstance(app.screen, RunsScreen)
        assert notes_in(tui_db, rid) == [(kind, "lr too high")]


async def test_annotate_cancel_writes_nothing(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        rid = table(app).current_run_id()
        assert rid is not None
        await pilot.press("n", *"oops", "escape")
        assert isinstance(app.screen, RunsScreen)
        assert notes_in(tui_db, rid) == []


async def test_annotate_from_run_screen_refreshes_overview(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter", "f", *"OOM at batch 512", "enter")
        overview = plain(app.screen.query_one("#overview-body", Static))
        assert "OOM at batch 512" in overview


async def test_tags_modal_adds_and_removes(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        rid = table(app).current_run_id()
        assert rid is not None
        await pilot.press("t")
        assert isinstance(app.screen, TagsModal)
        await pilot.press(*"good baseline", "enter")
        with Store.open(tui_db) as s:
            assert s.tags_of([rid])[rid] == ["baseline", "good"]
        await pilot.press("t", *"-good", "enter")
        with Store.open(tui_db) as s:
            assert s.tags_of([rid])[rid] == ["baseline"]
        await pilot.press("slash", *"tag=baseline")
        assert ids_shown(app) == [rid]


async def test_typing_in_filter_does_not_trigger_keys(tui_db: Path) -> None:
    """Letters typed into an input are text, never the n/f/l/t/s/q actions."""
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"nflts q")
        assert isinstance(app.screen, RunsScreen)
        assert app.screen.query_one("#filter", Input).value == "nflts q"


# -- diff -------------------------------------------------------------------------------------


async def test_mark_and_diff_overlays_curves(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("d")  # nothing marked: a hint, no screen
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space")
        assert table(app).marked == ["00000006"]
        assert "1 marked" in status_text(app)
        await pilot.press("down", "space")
        assert table(app).marked == ["00000006", "00000004"]
        await pilot.press("d")
        screen: Any = app.screen
        assert type(screen).__name__ == "DiffScreen"
        plot = screen.query_one("#overlay", CurvePlot)
        assert [s.label.split()[0] for s in plot.series] == ["A", "B"]
        first = plot.series[0].label
        await pilot.press("right_square_bracket")
        assert plot.series[0].label != first
        await pilot.press("L")
        assert plot.log_scale
        body = plain(screen.query_one("#sections-body", Static))
        assert "config" in body and "optimizer.lr" in body
        await pilot.press("n", *"B overfits", "enter")
        assert notes_in(tui_db, "00000004") == [("note", "B overfits")]


async def test_diff_sections_from_engine(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_diff("00000001", "00000002")
        await pilot.pause()
        body = plain(app.screen.query_one("#sections-body", Static))
        assert "optimizer.lr" in body and "0.001 → 0.1" in body
        assert "outcome" in body or "status" in body


async def test_diff_is_the_engines_in_its_order(tui_db: Path) -> None:
    """The TUI's diff is ``labbook diff``'s: diff_store's result (commits, untracked files),
    sections in the engine's order, the code section in the renderer's lines."""
    from labbook.analysis.diff import SECTIONS, diff_store
    from labbook.render.diff import section_text

    app = app_for(tui_db)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_diff("00000002", "00000001")
        await pilot.pause()
        body = plain(app.screen.query_one("#sections-body", Static))
    with Store.open(tui_db) as store:
        result, _, _ = diff_store(store, "00000002", "00000001")
    shown = [s for s in SECTIONS if s in result]
    assert {"config", "code", "outcome"} <= set(shown)
    titles = [line.strip() for line in body.splitlines() if line.strip() in SECTIONS]
    assert titles == shown
    assert "commits" in result["code"] and "untracked" in result["code"]
    for line in section_text("code", result["code"]).splitlines():
        assert line.rstrip() in body
    assert "untracked removed: -notes.py" in body
    assert '{"' not in body  # no section is shown as raw JSON


# -- search, help, palette, theme -----------------------------------------------------------


async def test_search_screen(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "f", *"batch too big", "enter")
        rid = table(app).current_run_id()
        await pilot.press("s")
        assert type(app.screen).__name__ == "SearchScreen"
        app.screen.query_one("#query", Input).value = "batch too big"
        await pilot.press("enter")
        screen: Any = app.screen
        assert screen.hits and screen.hits[0].run_id == rid
        await pilot.press("enter")
        assert type(app.screen).__name__ == "RunScreen"
        assert app.screen.current_run_id() == rid  # type: ignore[attr-defined]


async def test_help_screen(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_command_palette_filters_and_opens_runs(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"failed")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert [r["status"] for r in table(app).records] == ["failed"]
        await pilot.press("ctrl+p", *"run02")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.current_run_id() == "00000003"  # type: ignore[attr-defined]


async def test_theme_toggle(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.current_theme.dark
        await pilot.press("ctrl+t")
        assert not app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark


async def test_quit(tui_db: Path) -> None:
    app = app_for(tui_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


# -- pieces ----------------------------------------------------------------------------------


def test_parse_filter_conveniences() -> None:
    flt = parse_filter("tag=good and resnet and optimizer.lr>=0.01")
    assert flt.tags == ["good"]
    assert [(c.key, c.op, c.value) for c in flt.where] == [
        ("name", "~", "*resnet*"),
        ("optimizer.lr", ">=", 0.01),
    ]
    assert flt.limit is None


def test_plot_axis_labels_are_exact_and_fit() -> None:
    assert fmt_axis(4.1e13) == "4.1e13"
    assert fmt_axis(4.1234e13) == "4.12e13"
    assert fmt_axis(-1.5e-5) == "-1.5e-5"
    assert fmt_axis(0.25) == "0.25" and fmt_axis(1234.0) == "1.23e3" and fmt_axis(0) == "0"
    pts = [(0.0, -4.1234e13), (10.0, 4.1e13)]
    lines = render_plot([Series("loss", pts)], 40, 8).plain.split("\n")
    labels = [line.split("┤")[0].strip() for line in lines[:-2]]
    assert [x for x in labels if x] == ["4.1e13", "-1.17e11", "-4.12e13"]
    assert all(len(line) <= 40 for line in lines)


def test_plot_marks_values_off_the_scale() -> None:
    inf, nan = float("inf"), float("nan")
    pts = [(float(k), 1.0 + k) for k in range(19)] + [(19.0, inf), (20.0, 5.0)]
    pts += [(float(k), nan) for k in range(21, 30)]
    found = breaks(pts)
    assert describe_breaks(found) == "inf at 19, NaN from 21"
    text = render_plot([Series("loss", pts)], 60, 10).plain
    lines = text.split("\n")
    assert lines[-2].rstrip().endswith("29")  # the x axis runs to the last step
    assert "▲ inf at 19, × NaN from 21" in lines[-1]
    assert "▲" in lines[0]  # inf at the top, where it happened
    assert "×" in text
    # -inf, a stretch in the middle, several of them
    more = [(0.0, 1.0), (1.0, -inf), (2.0, nan), (3.0, nan), (4.0, 1.0), (5.0, nan), (6, 2.0)]
    more += [(7.0, inf), (8.0, 1.0)]
    assert describe_breaks(breaks(more)) == "-inf at 1, NaN at 2–3, NaN at 5, … 1 more"
    # log scale: values <= 0 leave the scale too, and are marked at the bottom
    logged = [(0.0, 10.0), (1.0, 0.0), (2.0, -3.0), (3.0, 1000.0), (4.0, nan)]
    text = render_plot([Series("loss", logged)], 40, 8, log=True).plain
    lines = text.split("\n")
    assert lines[0].lstrip().startswith("1e3") and lines[-3].lstrip().startswith("10 ")
    assert "▼ ≤0 at 1–2, × NaN at 4" in lines[-1] and "(log scale)" in lines[-1]
    assert "▼" in lines[-3]
    # two series, one with breaks: a legend line each
    two = render_plot([Series("A", pts), Series("B", [(0, 1.0), (5, 2.0)])], 60, 10).plain
    assert two.split("\n")[-2].startswith("━━ A") and two.split("\n")[-1].startswith("━━ B")
    # nothing on the scale at all: says so, and says where
    none = render_plot([Series("x", [(0, nan), (1, nan)])], 40, 8).plain
    assert "no finite values" in none and "x: NaN from 0" in none


def test_plot_draws_skips_nonfinite_and_logs() -> None:
    pts = [(0.0, 1.0), (10.0, float("nan")), (20.0, 100.0)]
    text = render_plot([Series("loss", pts)], 40, 8).plain
    lines = text.split("\n")
    assert len(lines) == 8 and "loss" in lines[-1]
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)
    logged = render_plot([Series("loss", pts)], 40, 8, log=True).plain
    assert "(log scale)" in logged and "100" in logged
    assert "no finite values" in render_plot([Series("x", [(0, -1.0)])], 40, 8, log=True).plain
    two = render_plot([Series("a", [(0, 0), (1, 1)]), Series("b", [(0, 1), (1, 0)])], 30, 6)
    assert "a" in two.plain.split("\n")[-1] and "b" in two.plain.split("\n")[-1]


def test_count_and_window_queries(store: Store, tmp_path: Path) -> None:
    """The two query helpers the TUI added to labbook.store.query."""
    from labbook.store.query import RunFilter, count_runs, parse_where, select_runs_window

    for i in range(12):
        store.save_run(facts(i, tmp_path))
    flt = RunFilter(limit=None)
    assert count_runs(store, flt) == 12
    page = select_runs_window(store, flt, offset=5, limit=4)
    assert [r["name"] for r in page] == [f"exp/run{i:02d}" for i in (6, 5, 4, 3)]
    failed = RunFilter(limit=None, where=parse_where(["status=failed"]))
    assert count_runs(store, failed) == 2
    by_seed = select_runs_window(store, flt, sort="seed", limit=20)
    seeds = [r["seed_value"] for r in by_seed]
    assert seeds[-2:] == [None, None]  # unseeded runs last
    by_lr = select_runs_window(store, flt, sort="optimizer.lr", descending=True, limit=3)
    assert by_lr[0]["name"] in ("exp/run01", "exp/run07")
    by_dur = select_runs_window(store, flt, sort="duration", descending=True, limit=1)
    assert by_dur[0]["name"] == "exp/run11"
