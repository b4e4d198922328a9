"""The command palette (ctrl+p): open a run by id or name, filters, screens, theme."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp


class LabbookCommands(Provider):
    """labbook's commands, plus one "open run" hit per run whose id or name matches."""

    @property
    def _app(self) -> LabbookApp:
        return self.app  # type: ignore[return-value]

    def _static(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self._app
        return [
            ("Filter: failed runs", partial(app.set_filter, "status=failed"), "status=failed"),
            (
                "Filter: diverged runs",
                partial(app.set_filter, "status=diverged"),
                "status=diverged",
            ),
            ("Filter: running runs", partial(app.set_filter, "status=running"), "status=running"),
            ("Filter: clear", partial(app.set_filter, ""), "show all runs"),
            ("Search notes and failures", app.action_search, "past mistakes"),
            ("Diff marked runs", app.action_diff_marked, "mark two runs with space first"),
            ("Toggle light/dark theme", app.action_toggle_dark, "ctrl+t"),
            ("Keys help", app.action_help, "?"),
        ]

    async def discover(self) -> Hits:
        for name, command, help_text in self._static():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self._static():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)
        text = query.strip()
        if not text:
            return
        for rec in self._app.notebook.find_runs(text, limit=10):
            label = f"Open run {rec['id']} {rec.get('name') or ''}"
            yield Hit(
                max(matcher.match(label), 0.5),
                matcher.highlight(label),
                partial(self._app.open_run, rec["id"]),
                help=f"{rec.get('status')} · {rec.get('framework') or ''}",
            )
