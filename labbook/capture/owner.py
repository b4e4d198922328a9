"""Who a run belongs to: the owner of its run directory.

A run's ``user`` is whoever wrote it, not whoever recorded it: ``labbook import`` of
a shared experiments directory, or a ``labbook watch`` over it, reads runs that other
users wrote. The process that writes a run creates its directory, so the directory's
owner is the writer (when the writing process itself is known, its user wins).
"""

from __future__ import annotations

import functools
import getpass
import os

__all__ = ["current_user", "owner_of", "user_name"]


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The login name of ``uid``, or the uid as a string when it has none (a container)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def owner_of(path: str | os.PathLike[str] | None) -> str | None:
    """The user name of the owner of ``path``, or None when it cannot be looked at.

    A record's path may carry ``#PART`` after the directory (one run of several kept
    in one directory, as MLflow's): then the directory's owner is taken.
    """
    if path is None:
        return None
    text = os.fspath(path)
    for candidate in (text, text.split("#", 1)[0]):
        if not candidate:
            continue
        try:
            return user_name(os.stat(candidate).st_uid)
        except (OSError, ValueError):
            continue
    return None


def current_user() -> str:
    """Who this process runs as: its login name (``getpass.getuser``: ``$LOGNAME``,
    ``$USER``, …, then the password database), or the uid as text when it has none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry (a container), no pwd
        return str(os.getuid())
