"""The watchdog side: filter file system events and enqueue paths, nothing more.

watchdog calls :meth:`EventEnqueuer.dispatch` on its observer thread; any work
done there delays every later event (and with inotify, overflows its queue), so
the handler drops what is ignored and puts a small :class:`PathEvent` on the
consumer's queue. Directory "modified" events are not even delivered: the
observer is scheduled with :data:`EVENT_FILTER` (see DESIGN.md's figures: the
default mask made the observer thread spin at 100% over 10,000 directories).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from watchdog.events import FileSystemEventHandler

from labbook.sources.watch.config import PathFilter


@dataclass(frozen=True)
class PathEvent:
    """Something happened at ``path``: ``created``, ``modified``, ``deleted``."""

    kind: str
    path: str
    is_dir: bool = False


def event_filter() -> list[Any]:
    """The watchdog event classes the daemon needs (created/modified/moved/deleted/closed)."""
    from watchdog.events import (
        DirCreatedEvent,
        DirDeletedEvent,
        DirMovedEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileModifiedEvent,
        FileMovedEvent,
    )

    return [
        FileCreatedEvent,
        FileModifiedEvent,
        FileMovedEvent,
        FileDeletedEvent,
        FileClosedEvent,
        DirCreatedEvent,
        DirMovedEvent,
        DirDeletedEvent,
    ]


_KINDS = {
    "created": "created",
    "modified": "modified",
    "closed": "modified",
    "deleted": "deleted",
}


def _text(path: Any) -> str:
    return os.fsdecode(path) if isinstance(path, bytes) else str(path)


class EventEnqueuer(FileSystemEventHandler):
    """A watchdog event handler: ``dispatch`` filters and enqueues, nothing else.

    ``put`` receives each :class:`PathEvent` that passes the filter. Paths in
    ``exclude`` (the database and its side files) are never enqueued, so the
    daemon's own writes do not wake it.
    """

    def __init__(
        self,
        put: Callable[[PathEvent], None],
        path_filter: PathFilter | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.put = put
        self.filter = path_filter or PathFilter()
        self.exclude = {os.path.abspath(p) for p in exclude}

    def _offer(self, kind: str, path: str, is_dir: bool) -> None:
        if path in self.exclude or self.filter.ignored(path):
            return
        self.put(PathEvent(kind, path, is_dir))

    def dispatch(self, event: Any) -> None:
        etype = getattr(event, "event_type", "")
        is_dir = bool(getattr(event, "is_directory", False))
        src = _text(getattr(event, "src_path", ""))
        if etype == "moved":
            dest = _text(getattr(event, "dest_path", ""))
            self._offer("deleted", src, is_dir)
            if dest:
                self._offer("created", dest, is_dir)
            return
        kind = _KINDS.get(etype)
        if kind is None or (is_dir and kind == "modified"):
            return  # opened, closed_no_write, attrib; a directory's mtime
        self._offer(kind, src, is_dir)
