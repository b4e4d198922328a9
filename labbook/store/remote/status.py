"""``labbook remote status``: each origin (node store) of the lab's notebook."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from labbook.store.remote.config import RemoteConfig
from labbook.store.remote.conn import SCHEMA, connect
from labbook.store.remote.schema import RemoteSchemaError, schema_exists


def _age(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return max(0.0, time.time() - then.timestamp())


def remote_status(cfg: RemoteConfig, *, conn: Any = None) -> list[dict[str, Any]]:
    """One dict per origin, most recent push first: host, user, first/last push,
    ``lag_s`` (seconds since its last push), ``pending`` (runs it had not pushed then),
    ``runs`` (on the server), ``superseded`` (its rows another origin's newer row
    stands for), ``conflicts`` and its labbook version."""
    own = conn is None
    if conn is None:
        conn = connect(cfg)
    try:
        if not schema_exists(conn):
            raise RemoteSchemaError(
                "the lab's notebook has no labbook schema yet",
                hint="run 'labbook remote init URL' once",
            )
        rows = conn.execute(
            f"""
            SELECT o.origin, o.host, o."user", o.first_push, o.last_push, o.last_gen,
                   o.pending, o.conflicts, o.labbook_version,
                   coalesce(c.runs, 0), coalesce(c.superseded, 0)
            FROM {SCHEMA}.origins o
            LEFT JOIN (
                SELECT origin, count(*) AS runs,
                       count(*) FILTER (WHERE superseded_by IS NOT NULL) AS superseded
                FROM {SCHEMA}.runs GROUP BY origin
            ) c ON c.origin = o.origin
            ORDER BY o.last_push DESC NULLS LAST, o.origin
            """
        ).fetchall()
        conn.rollback()
    finally:
        if own:
            conn.close()
    out = []
    for r in rows:
        lag = _age(r[4])
        out.append(
            {
                "origin": r[0],
                "host": r[1],
                "user": r[2],
                "first_push": r[3],
                "last_push": r[4],
                "lag_s": round(lag, 1) if lag is not None else None,
                "last_gen": r[5],
                "pending": r[6],
                "conflicts": int(r[7] or 0),
                "labbook_version": r[8],
                "runs": int(r[9]),
                "superseded": int(r[10]),
            }
        )
    return out
