"""One-line warnings about input that could not be read.

Bad input never stops an import: readers call :func:`warn` with the file and a
short reason, and carry on. The CLI prints these as ``labbook: warning: FILE: reason``
on stderr; tests read them with pytest's ``caplog``.

Two refinements serve the importer:

* :func:`held` holds the warnings raised while a run dir is read, so that the
  importer can replay them, or, if the directory vanished meanwhile, replace the
  per-file complaints (config missing, metrics missing, …) by one line naming the
  directory;
* :func:`warn_on_import` is for what a live run shows on every read (a partial
  last record, an empty metrics file, a log too large to read whole, a capped
  list of untracked files). A one-shot ``labbook import`` says so; the watch
  daemon, which re-reads live runs every time they grow, would repeat it on every
  write, so it is silent unless the caller asked for these warnings with
  :func:`import_warnings`.

A handler that catches an unexpected exception (a reader or recogniser bug, a
broken capture) calls :func:`warn_exception`: the same one line, and the
traceback kept at debug level, which ``labbook --debug`` or ``LABBOOK_DEBUG=1``
show. With ``LABBOOK_STRICT=1`` (the test suite sets it) it re-raises instead,
so that a bug fails a test rather than becoming a warning; it is off unless that
variable is set, so a user's command or the watch daemon never stops for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar

from labbook.textsafe import printable

logger = logging.getLogger("labbook")

Held = list[tuple[str | None, str]]

_held: ContextVar[Held | None] = ContextVar("labbook_held_warnings", default=None)
_on_import: ContextVar[bool] = ContextVar("labbook_import_warnings", default=False)


def warn(path: str | os.PathLike[str] | None, message: str) -> None:
    """Log a one-line warning naming ``path``.

    Whitespace runs in the message are folded to a space; control characters, bidi
    overrides and undecodable bytes in the message and the path are shown escaped
    (:func:`labbook.textsafe.printable`), so a file name cannot split the line or
    reach the reader's terminal as an escape sequence.
    """
    text = printable(" ".join(str(message).split()))
    where = None if path is None else printable(os.fspath(path))
    holder = _held.get()
    if holder is not None:
        holder.append((where, text))
    elif where is None:
        logger.warning("%s", text)
    else:
        logger.warning("%s: %s", where, text)


#: Set (to anything but "" or "0") by the test suite: :func:`warn_exception` re-raises.
STRICT_ENV = "LABBOOK_STRICT"
#: Set like :data:`STRICT_ENV`: the CLI shows debug messages and their tracebacks.
DEBUG_ENV = "LABBOOK_DEBUG"


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to anything but "" or "0"."""
    return os.environ.get(name, "").strip() not in ("", "0")


def strict() -> bool:
    """Whether unexpected exceptions re-raise (:data:`STRICT_ENV`; tests only)."""
    return env_flag(STRICT_ENV)


def _environmental(exc: BaseException, expected: tuple[type[BaseException], ...]) -> bool:
    """An error of the machine, not of labbook: a file-system or database error, or one
    the caller names in ``expected``."""
    if isinstance(exc, (OSError, *expected)):
        return True
    sqlite3 = sys.modules.get("sqlite3")  # not imported: not a database error either
    return sqlite3 is not None and isinstance(exc, sqlite3.Error)


def warn_exception(
    path: str | os.PathLike[str] | None,
    what: str,
    exc: BaseException,
    *,
    expected: tuple[type[BaseException], ...] = (),
    quiet: bool = False,
) -> None:
    """What an ``except Exception`` handler that goes on says: ``what (Type: message)``.

    One warning naming ``path`` (none with ``quiet``: the caller falls back to a
    default that is no news), and the traceback at debug level (``labbook --debug``).
    In strict mode (:data:`STRICT_ENV`, the test suite) ``exc`` is re-raised instead,
    unless it is an error of the environment: :class:`OSError`, :mod:`sqlite3`'s
    errors, or a class in ``expected``.
    """
    if strict() and not _environmental(exc, expected):
        raise exc
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    if not quiet:
        warn(path, f"{what} ({reason})")
    where = "" if path is None else f"{printable(os.fspath(path))}: "
    logger.debug("%s%s (%s)", where, printable(what), printable(reason), exc_info=exc)


def warn_on_import(path: str | os.PathLike[str], message: str) -> None:
    """Warn about what a live run shows on every read, inside :func:`import_warnings` only."""
    if _on_import.get():
        warn(path, message)


@contextlib.contextmanager
def import_warnings() -> Iterator[None]:
    """Within this block, :func:`warn_on_import` warns (a one-shot import)."""
    token = _on_import.set(True)
    try:
        yield
    finally:
        _on_import.reset(token)


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """Collect the warnings of this block (this thread) instead of logging them.

    Give the list to :func:`replay` to log them after all, or drop it.
    """
    items: Held = []
    token = _held.set(items)
    try:
        yield items
    finally:
        _held.reset(token)


def replay(items: Held) -> None:
    """Log warnings collected by :func:`held`, in their order."""
    for where, text in items:
        warn(where, text)
