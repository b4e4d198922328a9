"""labbook's errors: one base class, rendered in one place (the CLI's group).

Library code raises these; it never prints. Warnings about bad input files are
not errors: they go to the ``labbook`` logger through :func:`labbook.warn.warn`.
"""

from __future__ import annotations


class LabbookError(Exception):
    """An error a user can act on: a one-line message and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(LabbookError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class RunNotFound(LabbookError):
    """A run reference matched no run."""


class RunRemoved(RunNotFound):
    """A run reference names a run removed by ``labbook rm`` (a tombstone)."""


class AmbiguousRun(LabbookError):
    """A run reference matched several runs."""

    def __init__(self, ref: str, candidates: list[str]) -> None:
        shown = "\n".join(f"  {c}" for c in candidates[:20])
        more = f"\n  … and {len(candidates) - 20} more" if len(candidates) > 20 else ""
        super().__init__(
            f"'{ref}' matches {len(candidates)} runs:\n{shown}{more}",
            hint="use a longer id prefix",
        )
        self.candidates = candidates


class StoreError(LabbookError):
    """The database cannot be opened or used."""


class StoreBusy(StoreError):
    """Another connection held the database's write lock for longer than we wait."""


class QueryError(UsageError):
    """A ``--where`` expression or other query cannot be parsed."""


class NothingReadable(LabbookError):
    """An import found nothing it could read."""


class DaemonRunning(LabbookError):
    """Another ``labbook watch`` already holds the database's lock."""


class DatabaseOnNetworkFS(LabbookError):
    """The database is on a network file system, where SQLite's locking is unsafe."""
