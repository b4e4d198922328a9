"""SVG snapshots of each TUI screen at 80×24 and 120×40 (pytest-textual-snapshot's SVG format).

Deterministic: fixed runs (tests/test_tui_data.py) with fixed ids, a fixed clock and
UTC, no blinking cursor, no live polling. The SVGs live in tests/snapshots/;
after a deliberate change to the look, review and accept them with
``python -m pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytest_textual_snapshot")

from labbook_tui.app import LabbookApp, make_app
from pytest_textual_snapshot import SVGImageExtension
from textual.widgets import Input

from tests.test_tui_data import NOW, UTC, add_diverged, add_seeds, fill, fixed_ids

pytestmark = pytest.mark.anyio

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


class TuiSnapshot(SVGImageExtension):
    """SVG snapshots kept in tests/snapshots/, one file per test and size."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(Path(__file__).parent / "snapshots")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tui_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fixed_ids(monkeypatch)
    db = tmp_path / "labbook.db"
    fill(db)
    return db


Steps = Callable[[Any, LabbookApp], Awaitable[None]]


async def shoot(db: Path, size: tuple[int, int], steps: Steps | None = None, **kw: Any) -> str:
    app = make_app(db, clock=lambda: NOW, tz=UTC, poll_interval=None, **kw)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        if steps is not None:
            await steps(pilot, app)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        return app.export_screenshot()


def check(snapshot: Any, svg: str) -> None:
    assert snapshot.use_extension(TuiSnapshot) == svg


@pytest.mark.parametrize("size", SIZES)
async def test_runs(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("down", "space", "down", "down", "space")

    check(snapshot, await shoot(tui_db, size, steps))


@pytest.mark.parametrize("size", SIZES)
async def test_runs_scrolled(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    """Two columns to the right: id and name stay, the metrics and times show."""

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("down", "right", "right")

    check(snapshot, await shoot(tui_db, size, steps))


@pytest.mark.parametrize("size", SIZES)
async def test_runs_long_names(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    """Three seeds of one config and a run that blew up: names cut in the middle."""
    add_seeds(tui_db)
    add_diverged(tui_db)
    check(snapshot, await shoot(tui_db, size))


@pytest.mark.parametrize("size", SIZES)
async def test_runs_sorted(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    """Sorted by a column off screen at 80: the cursor on top, the column in view."""

    async def steps(pilot: Any, app: LabbookApp) -> None:
        screen: Any = app.screen
        await pilot.press("down", "down")
        screen.sort_by("seed", True)

    check(snapshot, await shoot(tui_db, size, steps))


async def test_runs_filter_error(snapshot: Any, tui_db: Path) -> None:
    """An unreadable filter: the message under the bar, the last good rows stale."""

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("slash", *"status=finished")
        app.screen.query_one("#filter", Input).insert_text_at_cursor(" and lr>>")

    check(snapshot, await shoot(tui_db, (80, 24), steps))


@pytest.mark.parametrize("size", SIZES)
async def test_diverged_chart(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    """The metrics tab of a run that blew up: inf and NaN marked, the axis to the end."""
    add_diverged(tui_db)

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("enter", "5")

    check(snapshot, await shoot(tui_db, size, steps))


async def test_diverged_chart_log(snapshot: Any, tui_db: Path) -> None:
    add_diverged(tui_db)

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("enter", "5", "L")

    check(snapshot, await shoot(tui_db, (80, 24), steps))


async def test_runs_light_filtered(snapshot: Any, tui_db: Path) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("slash", *"lr<0.05", "enter")

    check(snapshot, await shoot(tui_db, (80, 24), steps, theme="textual-light"))


async def test_missing_database(snapshot: Any) -> None:
    check(snapshot, await shoot(Path("/nonexistent/labbook.db"), (80, 24)))


#: Every tab at 80x24; the larger size of the overview and metrics tabs only.
TAB_SHOTS = [((80, 24), tab) for tab in "1234567"] + [((120, 40), "1"), ((120, 40), "5")]


@pytest.mark.parametrize(
    ("size", "tab"), TAB_SHOTS, ids=[f"{t}-{w}x{h}" for (w, h), t in TAB_SHOTS]
)
async def test_run_tabs(snapshot: Any, tui_db: Path, size: tuple[int, int], tab: str) -> None:

    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("down", "down", "down", "down", "enter", tab)

    check(snapshot, await shoot(tui_db, size, steps))


@pytest.mark.parametrize("size", SIZES)
async def test_diff(snapshot: Any, tui_db: Path, size: tuple[int, int]) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("down", "down", "down", "down", "space", "d")

    check(snapshot, await shoot(tui_db, size, steps))


async def test_note_modal(snapshot: Any, tui_db: Path) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("f", *"OOM at bs 512")

    check(snapshot, await shoot(tui_db, (80, 24), steps))


async def test_help(snapshot: Any, tui_db: Path) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("question_mark")

    check(snapshot, await shoot(tui_db, (80, 24), steps))


async def test_search(snapshot: Any, tui_db: Path) -> None:
    async def steps(pilot: Any, app: LabbookApp) -> None:
        await pilot.press("s", *"out of memory", "enter")

    check(snapshot, await shoot(tui_db, (80, 24), steps))
