"""How values are written into the store: ids, times, JSON, text, list order.

Small and free of imports from the rest of the store, so that the store, its
queries, search and journal all use one copy of each rule.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from labbook.series import nonfinite_kind

#: 12 hex characters: at 1M runs in a lab's notebook 8 would collide ~100 times.
#: Ids of runs recorded before (8 hex) stay as they are and resolve as before.
ID_BYTES = 6


def new_run_id() -> str:
    """A random run id (``labbook run`` names its run before it can write it)."""
    return secrets.token_hex(ID_BYTES)


def utc_iso(ts: float | None) -> str | None:
    """Unix seconds to ``2026-11-22T10:13:28Z`` (UTC, second precision)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return utc_iso(time.time())  # type: ignore[return-value]


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, allow_nan=True)


def safe_text(text: str | None) -> str | None:
    """Text SQLite can store: undecodable bytes of a file name (surrogate escapes) as \\xNN."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def json_float(value: float | None) -> float | str | None:
    """JSON has no NaN: non-finite values are written as the strings 'nan', 'inf', '-inf'."""
    kind = nonfinite_kind(value)
    return kind if kind else value


#: Listings' order, newest first (``{t}`` is a table prefix such as ``r.``); the
#: ``runs_order`` index (schema step 0002) gives it without a sort.
NEWEST_FIRST = "coalesce({t}started_at, {t}created_at) DESC, {t}created_at DESC, {t}rowid DESC"


def loads_or_text(value: str | None) -> Any:
    """A stored JSON value, or the text itself when it is not JSON (None stays None)."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
