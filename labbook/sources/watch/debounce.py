"""When to ingest: a pure state machine from path events to "ingest this key now".

Training code writes in bursts (a step's scalars, a checkpoint, a log line); the
consumer should read a run once per burst, not once per write, yet a run that
writes without pause must still be read at least every ``max_wait`` seconds, and
a run seen for the first time must be read almost at once (its git state is
captured then, before the user edits the working tree). Time comes from the
caller (``now``), so tests drive it with a fake clock and never sleep.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Pending:
    first: float
    last: float
    quiet: float


class Debouncer:
    """Coalesces events per key.

    A key becomes due when no event came for its quiet period (``quiet``, or
    ``first_quiet`` for a first sighting), or ``max_wait`` after its first pending
    event, whichever comes first.
    """

    def __init__(self, quiet: float = 0.25, max_wait: float = 1.0, first_quiet: float = 0.02):
        self.quiet = quiet
        self.max_wait = max_wait
        self.first_quiet = first_quiet
        self._pending: dict[Hashable, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pending

    def note(self, key: Hashable, now: float, *, first_sight: bool = False) -> None:
        """An event for ``key`` happened at ``now``."""
        quiet = self.first_quiet if first_sight else self.quiet
        p = self._pending.get(key)
        if p is None:
            self._pending[key] = _Pending(now, now, quiet)
        else:
            p.last = now
            p.quiet = min(p.quiet, quiet)

    def _due_at(self, p: _Pending) -> float:
        return min(p.last + p.quiet, p.first + self.max_wait)

    def next_due(self) -> float | None:
        """When the next key becomes due (None if nothing is pending)."""
        if not self._pending:
            return None
        return min(self._due_at(p) for p in self._pending.values())

    def due(self, now: float) -> list[Hashable]:
        """Keys due at ``now`` (removed from pending), oldest first."""
        ready = [(p.first, k) for k, p in self._pending.items() if self._due_at(p) <= now]
        ready.sort(key=lambda item: item[0])
        for _, k in ready:
            del self._pending[k]
        return [k for _, k in ready]

    def drain(self) -> list[Hashable]:
        """Every pending key, now (used when stopping: flush everything)."""
        keys = sorted(self._pending, key=lambda k: self._pending[k].first)
        self._pending.clear()
        return keys
