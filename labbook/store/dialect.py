"""The two SQL dialects the store's read paths speak: SQLite (a node's own store) and
PostgreSQL (the lab's shared notebook, ``labbook.store.remote``).

The query code (``store.query``, ``store.search``, the read methods of ``Store``)
is written once, in SQLite's SQL with ``?`` placeholders, portable where the two
agree (``"user"`` quoted, every derived table named, no ``IS 'text'``). Where they
differ it asks the store's dialect (``store.dialect``) for the fragment:

============================  ==========================  ==================================
what                          SQLite                      PostgreSQL
============================  ==========================  ==================================
placeholders                  ``?``                       ``%s`` (``%`` doubled)
the listing's last tie-break  ``rowid``                   the run id
a run that is listed          not deleted                 not deleted, not superseded
a JSON value as text          ``json_extract(v, '$')``    ``CAST(v AS jsonb) #>> '{}'``
``name~'res*'``               ``GLOB``                    ``~`` with the glob as a regex
duration                      ``julianday`` difference    ``EXTRACT(EPOCH …)`` / 86400
text to a number              ``CAST(x AS REAL)``         a cast only of what is a number
ASCII-case-insensitive LIKE   ``LIKE``                    ``ILIKE``
text ordering                 bytes                       ``COLLATE "C"`` (bytes too)
full text                     FTS5 trigram (+ LIKE)       pg_trgm GIN (+ a CJK bigram table)
============================  ==========================  ==================================

Nothing here imports psycopg: the translation is plain text, and the PostgreSQL
connection that applies it lives in :mod:`labbook.store.remote.read`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["POSTGRES", "SQLITE", "Dialect", "glob_regex"]


class Dialect:
    """SQLite's fragments; :class:`_Postgres` overrides what PostgreSQL says otherwise."""

    name = "sqlite"
    #: Whether the store is the lab's shared notebook (rows carry an origin, runs can
    #: be superseded by a newer row of the same run dir).
    shared = False

    def sql(self, text: str) -> str:
        """The query ``text`` (SQLite's SQL, ``?`` placeholders) as this dialect runs it."""
        return text

    def newest_first(self, t: str = "") -> str:
        """The listings' order, newest first, for a table prefix ``t`` (``"r."`` or "")."""
        return (
            f"coalesce({t}started_at, {t}created_at) DESC, {t}created_at DESC, {self.rowid(t)} DESC"
        )

    def rowid(self, t: str = "") -> str:
        return f"{t}rowid"

    def live(self, t: str = "") -> str:
        """The condition for a run that listings show (``t``: the table prefix)."""
        return f"{t}deleted_at IS NULL"

    def json_text(self, expr: str) -> str:
        """A stored JSON value (``params.value``) as the text a glob matches."""
        return f"json_extract({expr}, '$')"

    def glob(self, expr: str) -> str:
        """``expr`` matches the glob pattern bound to the next placeholder."""
        return f"{expr} GLOB ?"

    def glob_arg(self, pattern: str) -> str:
        """The value to bind for :meth:`glob`'s placeholder."""
        return pattern

    def days(self, end: str, start: str) -> str:
        """Days from ISO timestamp ``start`` to ``end`` (a REAL; NULL if either is)."""
        return f"(julianday({end}) - julianday({start}))"

    def to_real(self, expr: str) -> str:
        """Text to a number for sorting (``seed`` values)."""
        return f"CAST({expr} AS REAL)"

    def ilike(self) -> str:
        """The ASCII-case-insensitive LIKE operator."""
        return "LIKE"

    def text_arg(self, value: Any) -> Any:
        """A value compared with a text column (SQLite's column affinity converts it)."""
        return value

    def limit_arg(self, limit: int) -> int | None:
        """The value bound to ``LIMIT ?``: a negative ``limit`` is no limit."""
        return int(limit)

    def bytes_order(self, expr: str) -> str:
        """``expr`` ordered by its bytes (SQLite's BINARY collation)."""
        return expr

    def param_order(self, t: str, direction: str) -> tuple[str, str]:
        """(a NULL test, the ORDER BY keys) of a sort by a config key of the params row
        alias ``t``: numbers before text (in SQLite's type order), each by value."""
        expr = f"coalesce({t}.num, {t}.value)"
        return f"({expr}) IS NULL", f"{expr} {direction}"


class _Postgres(Dialect):
    name = "postgresql"
    shared = True

    def sql(self, text: str) -> str:
        return _pg_sql(text)

    def rowid(self, t: str = "") -> str:
        return f"{t}id"

    def live(self, t: str = "") -> str:
        return f"{t}deleted_at IS NULL AND {t}superseded_by IS NULL"

    def json_text(self, expr: str) -> str:
        # Only a JSON string is decoded: every other value's text is itself, and a
        # stored NaN (valid for Python's json, not for jsonb) is never cast.
        return (
            f"(CASE WHEN {expr} LIKE '\"%' THEN CAST({expr} AS jsonb) #>> '{{}}' ELSE {expr} END)"
        )

    def glob(self, expr: str) -> str:
        return f"{expr} ~ ?"

    def glob_arg(self, pattern: str) -> str:
        return glob_regex(pattern)

    def days(self, end: str, start: str) -> str:
        return (
            f"(EXTRACT(EPOCH FROM (CAST({end} AS timestamptz)"
            f" - CAST({start} AS timestamptz))) / 86400.0)"
        )

    def to_real(self, expr: str) -> str:
        number = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
        return f"(CASE WHEN {expr} ~ '{number}' THEN CAST({expr} AS double precision) END)"

    def ilike(self) -> str:
        return "ILIKE"

    def text_arg(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return str(int(value))
        return str(value)

    def bytes_order(self, expr: str) -> str:
        return f'{expr} COLLATE "C"'

    def limit_arg(self, limit: int) -> int | None:
        return None if int(limit) < 0 else int(limit)  # LIMIT NULL: no limit

    def param_order(self, t: str, direction: str) -> tuple[str, str]:
        # coalesce(num, value) mixes types, which PostgreSQL refuses: numbers first
        # (false < true), then text by its bytes, as SQLite orders them.
        return (
            f"({t}.run_id IS NULL)",
            f'({t}.num IS NULL) {direction}, {t}.num {direction}, {t}.value COLLATE "C" {direction}',
        )


SQLITE = Dialect()
POSTGRES = _Postgres()

_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[?%]")


@functools.lru_cache(maxsize=512)
def _pg_sql(text: str) -> str:
    """``?`` outside quotes → ``%s``; every ``%`` doubled (psycopg reads ``%`` everywhere)."""

    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        if s == "?":
            return "%s"
        return s.replace("%", "%%")

    return _QUOTED.sub(sub, text)


def glob_regex(pattern: str) -> str:
    """A GLOB pattern (``*``, ``?``, ``[a-z]``, ``[^x]``; case-sensitive, the whole
    text) as the POSIX regular expression PostgreSQL's ``~`` matches the same way."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '['
                out.append(r"\[")
            else:
                body = pattern[i + 1 : j]
                negate = body.startswith("^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = j
        else:
            out.append(re.escape(c) if not c.isalnum() else c)
        i += 1
    out.append("$")
    return "".join(out)
