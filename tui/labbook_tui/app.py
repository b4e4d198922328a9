"""The labbook Textual app: screens, app-wide keys (annotate, search, help, theme), polling.

Built by :func:`make_app` from its notebook path, clock and time zone (no global
settings read inside widgets), so tests and benchmarks build it with fixed data and
a fixed clock. ``labbook tui`` calls :func:`run_app`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from labbook_tui.commands import LabbookCommands
from labbook_tui.modals import HelpScreen, NoteModal, TagsModal
from labbook_tui.notebook import Notebook
from labbook_tui.runs_screen import RunsScreen

#: The footer entry of n (note), f (failure reason) and l (lesson).
ANNOTATE = Binding.Group("Notes", compact=True)

#: How often the app asks SQLite whether another process wrote (``PRAGMA data_version``).
POLL_INTERVAL_S = 1.0


class LabbookApp(App[None]):
    """Browse, filter, inspect, diff, annotate and search a labbook database."""

    CSS_PATH = "labbook.tcss"
    TITLE = "labbook"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {LabbookCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        # n f l share one footer entry: the three kinds of note
        Binding("n", "annotate('note')", "Note", group=ANNOTATE),
        Binding("f", "annotate('failure')", "Failure", group=ANNOTATE),
        Binding("l", "annotate('lesson')", "Lesson", group=ANNOTATE),
        Binding("t", "tags", "Tags"),
        Binding("s", "search", "Search"),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_dark", "Theme", show=False),
    ]

    def __init__(
        self,
        notebook: Notebook,
        *,
        clock: Callable[[], float] | None = None,
        tz: tzinfo | None = None,
        poll_interval: float | None = POLL_INTERVAL_S,
        theme: str = "textual-dark",
    ) -> None:
        super().__init__()
        self.notebook = notebook
        self.clock = clock
        self.tz = tz
        self.poll_interval = poll_interval
        self.theme = theme

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.poll_interval:
            self.set_interval(self.poll_interval, self.poll)

    def on_unmount(self) -> None:
        self.notebook.close()

    # -- live updates -----------------------------------------------------------------

    def poll(self) -> bool:
        """Refresh what is shown when another process committed; True if it did."""
        was_open = self.notebook.store is not None
        changed = self.notebook.poll()
        if changed or (self.notebook.store is not None and not was_open):
            self.refresh_screens()
            return True
        return False

    def refresh_screens(self) -> None:
        """Re-read the data of every screen in the stack (a handful; each read is one run or window)."""
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_data", None)
            if refresh is not None:
                refresh()

    # -- navigation ---------------------------------------------------------------------

    def runs_screen(self) -> RunsScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                return screen
        return None

    def open_run(self, run_id: str) -> None:
        from labbook_tui.run_screen import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_diff(self, a: str, b: str) -> None:
        from labbook_tui.diff_screen import DiffScreen

        self.push_screen(DiffScreen(a, b))

    def set_filter(self, text: str) -> None:
        """Show the runs list filtered by ``text`` (command palette)."""
        from textual.widgets import Input

        runs = self.runs_screen()
        if runs is None:
            return
        while self.screen is not runs:
            self.pop_screen()
        runs.query_one("#filter", Input).value = text
        runs.apply_filter(text)

    def current_run_id(self) -> str | None:
        """The run the top screen is about (cursor row, open run, diff's B, search hit)."""
        for screen in reversed(self.screen_stack):
            get = getattr(screen, "current_run_id", None)
            if get is not None:
                return get()
        return None

    # -- app-wide actions --------------------------------------------------------------------

    def action_annotate(self, kind: str) -> None:
        run_id = self.current_run_id()
        if run_id is None:
            self.notify("No run here to annotate.", severity="warning")
            return

        def save(text: str | None) -> None:
            if text:
                self.notebook.add_note(run_id, text, kind)
                self.notify(f"{kind} saved on {run_id}")
                self.refresh_screens()

        self.push_screen(NoteModal(kind, run_id), save)

    def action_tags(self) -> None:
        run_id = self.current_run_id()
        if run_id is None:
            self.notify("No run here to tag.", severity="warning")
            return
        rec = self.notebook.record(run_id)

        def save(change: tuple[list[str], list[str]] | None) -> None:
            if change:
                self.notebook.set_tags(run_id, *change)
                self.notify(f"tags saved on {run_id}")
                self.refresh_screens()

        self.push_screen(TagsModal(run_id, list(rec["tags"] if rec else [])), save)

    def action_search(self) -> None:
        from labbook_tui.search_screen import SearchScreen

        self.push_screen(SearchScreen())

    def action_diff_marked(self) -> None:
        runs = self.runs_screen()
        if runs is not None:
            runs.action_diff()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"
        self.refresh_screens()


def make_app(
    db: str | Path | None,
    *,
    clock: Callable[[], float] | None = None,
    tz: tzinfo | None = None,
    poll_interval: float | None = POLL_INTERVAL_S,
    theme: str = "textual-dark",
    opener: Callable[[], Any] | None = None,
) -> LabbookApp:
    """The app over the database at ``db`` (default path when None; it may not exist yet),
    or over the store ``opener`` opens (the lab's notebook: ``labbook tui --remote``)."""
    import time

    return LabbookApp(
        Notebook(db, opener=opener),
        clock=clock or time.time,
        tz=tz,
        poll_interval=poll_interval,
        theme=theme,
    )


def run_app(db: str | None, *, opener: Callable[[], Any] | None = None) -> None:
    """``labbook tui``: run the app in this terminal until the user quits."""
    make_app(db, opener=opener).run()
