"""One connection to the lab's notebook (psycopg 3, imported here only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labbook.errors import StoreError
from labbook.store.remote.config import RemoteConfig, describe_url, scrub

if TYPE_CHECKING:
    import psycopg

#: The PostgreSQL schema that holds labbook's tables.
SCHEMA = "labbook"


class RemoteUnavailable(StoreError):
    """The lab's notebook cannot be reached (or refused us)."""


class RemoteMissing(StoreError):
    """psycopg, the optional extra that talks to PostgreSQL, is not installed."""

    def __init__(self) -> None:
        super().__init__("psycopg is not installed: pip install 'labbook[remote]'")


class RemoteNotConfigured(StoreError):
    """No ``[remote] url`` in config.toml and no ``LABBOOK_REMOTE_URL``."""

    def __init__(self) -> None:
        super().__init__(
            "no lab notebook is configured",
            hint="run 'labbook remote init URL', or set [remote] url in config.toml"
            " or LABBOOK_REMOTE_URL",
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(
    cfg_or_url: RemoteConfig | str, *, timeout: float | None = None
) -> psycopg.Connection[Any]:
    """A connection with autocommit off, ``search_path`` = ``labbook``, application_name
    ``labbook``. Raises :class:`RemoteUnavailable` (one line, never the password) or
    :class:`RemoteMissing`."""
    if isinstance(cfg_or_url, RemoteConfig):
        if not cfg_or_url.url:
            raise RemoteNotConfigured()
        url = cfg_or_url.url
        timeout = cfg_or_url.connect_timeout_s if timeout is None else timeout
    else:
        url = cfg_or_url
    if timeout is None:
        timeout = 3.0
    try:
        import psycopg
    except ImportError:
        raise RemoteMissing() from None
    where = describe_url(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=False,
            connect_timeout=max(1, round(timeout)),
            application_name="labbook",
            options=f"-c search_path={SCHEMA},public",
        )
    except Exception as exc:  # psycopg's errors, a malformed URL and the like
        # libpq quotes parts of a connection string it cannot read: never its password
        raise RemoteUnavailable(
            f"cannot reach the lab's notebook at {where}: {scrub(_first_line(exc), url)}"
        ) from None
    return conn
