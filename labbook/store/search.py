"""``labbook search``: full text over what people and runs said.

What is searchable
    run names, commands, failure kinds and messages, notes (all kinds), tags, and
    config keys with their values (``optimizer.lr = 0.1; seed = 1``). Each is one
    row of ``search_docs`` (``field`` says which; a run's whole config is one row),
    indexed by the FTS5 table ``search_fts``.

Why the trigram tokenizer
    FTS5's default ``unicode61`` tokenizer splits on spaces and punctuation, so a
    Chinese sentence (no spaces) becomes one huge token and "发散" never matches
    "学习率太高导致发散". The ``trigram`` tokenizer indexes every 3-character window
    of any script, so a query term is a case-insensitive *substring* match: it works
    for Chinese and Japanese without a segmenter, and for config keys, paths and
    error names (``OutOfMemoryError`` is found by ``memory``). Its limit is that
    terms shorter than three characters cannot use the index; those (``lr``, "发散",
    "of") are matched with ``LIKE`` on the documents instead, which is a scan of
    ``search_docs`` but stays fast at notebook sizes (tens of thousands of rows).
    One index instead of two (unicode61 + trigram) keeps the triggers simple.

Why triggers
    The schema step (:data:`SCHEMA_0004_SQL`) installs triggers on ``runs``,
    ``notes``, ``tags`` and ``params``, so every writer — the importer, the daemon,
    ``labbook run``, a future tool — keeps the index current without calling
    anything. Config is the exception that keeps imports fast: a save replaces all
    of a run's params, and an FTS write per key made saving ~4× slower, so the
    params triggers only mark the run in ``search_dirty``. ``Store.save_run``
    rebuilds that run's one document in its own transaction
    (:func:`refresh_run_config_doc`), so the index is current at write time; for
    other writers (older labbook versions) :func:`search` rebuilds one document per
    still-marked run before it queries. They use only SQLite built-ins (json1), never a Python function, so a
    connection that did not register one can still write.

Matching
    The query is split into terms (whitespace; ``"double quotes"`` keep a phrase).
    A run matches when *every* term occurs in some searchable item of that run
    (not necessarily the same one). The score is the sum of each term's best
    score, 1 + bm25 relevance (higher is better; terms matched by ``LIKE`` score
    1), weighted by field (notes and failures count most) and doubled where the
    term is a whole word there (:data:`WORD_BOOST`: ``oom`` ranks "CUDA OOM" above
    "boom"; the trigram index itself only knows substrings). The snippet comes from the
    item that holds the most terms, with every match wrapped in
    :data:`MARK_START`/:data:`MARK_END`.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labbook.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from labbook.store import Store
    from labbook.store.query import RunFilter

__all__ = [
    "MARK_END",
    "MARK_START",
    "SCHEMA_0004_SQL",
    "SearchHit",
    "complete_runs",
    "create_search_schema",
    "refresh_config_docs",
    "refresh_run_config_doc",
    "search",
    "search_counted",
    "split_query",
]

#: Markers around each match in :attr:`SearchHit.snippet`.
MARK_START = "«"
MARK_END = "»"
#: Characters of context kept on each side of the first match in a snippet.
SNIPPET_CONTEXT = 40
#: At most this many matching items are read per term (the best by bm25 first).
MAX_ROWS_PER_TERM = 20000
#: A term found as a whole word counts this much more than one found inside a word
#: (``oom``: "CUDA OOM" before "boom").
WORD_BOOST = 2.0
#: Terms shorter than this cannot use the trigram index.
TRIGRAM = 3

#: How much a match in each field counts (bm25 is multiplied by this).
FIELD_WEIGHT = {
    "note": 1.5,
    "failure": 1.5,
    "name": 1.2,
    "tag": 1.2,
    "command": 1.0,
    "config": 0.8,
}

# The runs' failure text says "out of memory" for both OOM kinds, so that a search
# for it finds them whatever the framework printed.
_FAILURE_TEXT = (
    "new.failure_kind || CASE WHEN new.failure_kind IN ('cuda_oom', 'oom_killed')"
    " THEN ' (out of memory)' ELSE '' END || ': ' || coalesce(new.failure_message, '')"
)
_COMMAND_TEXT = (
    "CASE WHEN json_valid(new.command) AND json_type(new.command) = 'array'"
    " THEN (SELECT group_concat(value, ' ') FROM json_each(new.command))"
    " ELSE new.command END"
)
_PARAM_TEXT = (
    "p.key || ' = ' || CASE WHEN p.value IS NULL THEN 'null'"
    " WHEN json_valid(p.value) THEN (CASE json_type(p.value) WHEN 'text'"
    " THEN json_extract(p.value, '$') ELSE p.value END) ELSE p.value END"
)
#: One config document per run: "key = value; key = value; …" in key order.
_CONFIG_DOCS = (
    "INSERT OR IGNORE INTO search_docs(run_id, field, ref, text)"
    f" SELECT run_id, 'config', '', group_concat(kv, '; ') FROM (SELECT p.run_id, {_PARAM_TEXT} AS kv"
    " FROM params AS p {where} ORDER BY p.run_id, p.key) GROUP BY run_id"
)


#: Schema step 0004 (applied once by :mod:`labbook.store.schema`; never edit, add a step).
SCHEMA_0004_SQL = f"""
CREATE TABLE IF NOT EXISTS search_docs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    field TEXT NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS search_docs_key ON search_docs(run_id, field, ref);
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
    text, content='search_docs', content_rowid='id', tokenize='trigram'
);

CREATE TRIGGER IF NOT EXISTS search_docs_ai AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS search_docs_ad AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts(search_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS search_docs_au AFTER UPDATE ON search_docs BEGIN
    INSERT INTO search_fts(search_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO search_fts(rowid, text) VALUES (new.id, new.text);
END;

-- runs: name, command, failure
CREATE TRIGGER IF NOT EXISTS search_runs_ai AFTER INSERT ON runs BEGIN
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'name', new.name WHERE new.name IS NOT NULL AND new.name != '';
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'command', {_COMMAND_TEXT} WHERE new.command IS NOT NULL;
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'failure', {_FAILURE_TEXT} WHERE new.failure_kind IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS search_runs_name AFTER UPDATE OF name ON runs
WHEN old.name IS NOT new.name BEGIN
    DELETE FROM search_docs WHERE run_id = new.id AND field = 'name';
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'name', new.name WHERE new.name IS NOT NULL AND new.name != '';
END;
CREATE TRIGGER IF NOT EXISTS search_runs_command AFTER UPDATE OF command ON runs
WHEN old.command IS NOT new.command BEGIN
    DELETE FROM search_docs WHERE run_id = new.id AND field = 'command';
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'command', {_COMMAND_TEXT} WHERE new.command IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS search_runs_failure AFTER UPDATE OF failure_kind, failure_message ON runs
WHEN old.failure_kind IS NOT new.failure_kind
  OR old.failure_message IS NOT new.failure_message BEGIN
    DELETE FROM search_docs WHERE run_id = new.id AND field = 'failure';
    INSERT INTO search_docs(run_id, field, text)
        SELECT new.id, 'failure', {_FAILURE_TEXT} WHERE new.failure_kind IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS search_runs_id AFTER UPDATE OF id ON runs
WHEN old.id IS NOT new.id BEGIN
    UPDATE search_docs SET run_id = new.id WHERE run_id = old.id;
END;
CREATE TRIGGER IF NOT EXISTS search_runs_ad AFTER DELETE ON runs BEGIN
    DELETE FROM search_docs WHERE run_id = old.id;
    DELETE FROM search_dirty WHERE run_id = old.id;
END;

-- notes: appended; a tombstone (deleted_at) takes the note out of the index
CREATE TRIGGER IF NOT EXISTS search_notes_ai AFTER INSERT ON notes WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO search_docs(run_id, field, ref, text)
        VALUES (new.run_id, 'note', CAST(new.id AS TEXT), new.text);
END;
CREATE TRIGGER IF NOT EXISTS search_notes_au AFTER UPDATE ON notes BEGIN
    DELETE FROM search_docs WHERE run_id = old.run_id AND field = 'note'
        AND ref = CAST(old.id AS TEXT);
    INSERT INTO search_docs(run_id, field, ref, text)
        SELECT new.run_id, 'note', CAST(new.id AS TEXT), new.text WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER IF NOT EXISTS search_notes_ad AFTER DELETE ON notes BEGIN
    DELETE FROM search_docs WHERE run_id = old.run_id AND field = 'note'
        AND ref = CAST(old.id AS TEXT);
END;

-- tags
CREATE TRIGGER IF NOT EXISTS search_tags_ai AFTER INSERT ON tags BEGIN
    INSERT OR IGNORE INTO search_docs(run_id, field, ref, text)
        VALUES (new.run_id, 'tag', new.tag, new.tag);
END;
CREATE TRIGGER IF NOT EXISTS search_tags_ad AFTER DELETE ON tags BEGIN
    DELETE FROM search_docs WHERE run_id = old.run_id AND field = 'tag' AND ref = old.tag;
END;
CREATE TRIGGER IF NOT EXISTS search_tags_au AFTER UPDATE ON tags BEGIN
    DELETE FROM search_docs WHERE run_id = old.run_id AND field = 'tag' AND ref = old.tag;
    INSERT OR IGNORE INTO search_docs(run_id, field, ref, text)
        VALUES (new.run_id, 'tag', new.tag, new.tag);
END;

-- config (params): a run's config is saved as a whole (all rows deleted, then
-- inserted), so a per-row document would cost an FTS write per key and save. The
-- triggers only mark the run; search() rebuilds one document per marked run.
CREATE TABLE IF NOT EXISTS search_dirty (run_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS search_params_ai AFTER INSERT ON params BEGIN
    INSERT OR IGNORE INTO search_dirty(run_id) VALUES (new.run_id);
END;
CREATE TRIGGER IF NOT EXISTS search_params_ad AFTER DELETE ON params BEGIN
    INSERT OR IGNORE INTO search_dirty(run_id) VALUES (old.run_id);
END;
CREATE TRIGGER IF NOT EXISTS search_params_au AFTER UPDATE ON params BEGIN
    INSERT OR IGNORE INTO search_dirty(run_id) VALUES (old.run_id);
    INSERT OR IGNORE INTO search_dirty(run_id) VALUES (new.run_id);
END;

-- what is already there
INSERT OR IGNORE INTO search_docs(run_id, field, text)
    SELECT new.id, 'name', new.name FROM runs AS new WHERE new.name IS NOT NULL AND new.name != '';
INSERT OR IGNORE INTO search_docs(run_id, field, text)
    SELECT new.id, 'command', {_COMMAND_TEXT} FROM runs AS new WHERE new.command IS NOT NULL;
INSERT OR IGNORE INTO search_docs(run_id, field, text)
    SELECT new.id, 'failure', {_FAILURE_TEXT} FROM runs AS new WHERE new.failure_kind IS NOT NULL;
INSERT OR IGNORE INTO search_docs(run_id, field, ref, text)
    SELECT new.run_id, 'note', CAST(new.id AS TEXT), new.text FROM notes AS new
    WHERE new.deleted_at IS NULL;
INSERT OR IGNORE INTO search_docs(run_id, field, ref, text)
    SELECT new.run_id, 'tag', new.tag, new.tag FROM tags AS new;
{_CONFIG_DOCS.format(where="")};
"""


def create_search_schema(conn: sqlite3.Connection) -> None:
    """Apply :data:`SCHEMA_0004_SQL` statement by statement, inside the caller's transaction.

    (``executescript`` would commit the migration's transaction first, so a failure
    halfway would leave a half-made index; every statement is also idempotent.)
    """
    statement = ""
    for line in SCHEMA_0004_SQL.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        conn.execute(statement)


@dataclass
class SearchHit:
    """One matching run: its id, score (higher is better), the field and a snippet."""

    run_id: str
    score: float
    field: str
    snippet: str


_TERM = re.compile(r'"([^"]*)"|(\S+)')


def split_query(query: str) -> list[str]:
    """Terms of a query: whitespace-separated, ``"double quotes"`` keep a phrase.

    >>> split_query('out of memory "loss: nan"')
    ['out', 'of', 'memory', 'loss: nan']
    """
    terms: list[str] = []
    seen: set[str] = set()
    for m in _TERM.finditer(query):
        term = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    return terms


@dataclass(slots=True)
class _Doc:
    run_id: str
    field: str
    text: str


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _term_matches(
    store: Store, term: str, runs: list[str] | None = None
) -> dict[int, tuple[_Doc, float]]:
    """Documents holding ``term`` (doc id -> (doc, score ≥ 1, higher is better)).

    The score is 1 + bm25 relevance (FTS5's bm25 is negative, better is lower): a
    match counts even where bm25 says little (a term found in most documents has an
    inverse document frequency near zero), and field weights then decide.
    ``runs``: only documents of these runs (the lab's notebook's planner; locally
    every term is looked up whole).
    """
    out: dict[int, tuple[_Doc, float]] = {}
    if store.dialect.shared:
        return _shared_term_matches(store, term, runs)
    if len(term) >= TRIGRAM:
        phrase = '"' + term.replace('"', '""') + '"'
        rows = store.conn.execute(
            "SELECT d.id, d.run_id, d.field, d.text, bm25(search_fts) AS rank"
            " FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid"
            " WHERE search_fts MATCH ? ORDER BY rank LIMIT ?",
            (phrase, MAX_ROWS_PER_TERM),
        )
        for doc_id, run_id, field, text, rank in rows:
            out[doc_id] = (_Doc(run_id, field, text), 1.0 - float(rank))
    else:
        # LIKE is case-insensitive for ASCII only; casefolded text would need a
        # function, and short non-ASCII terms (CJK) have no case anyway.
        rows = store.conn.execute(
            "SELECT id, run_id, field, text FROM search_docs WHERE text LIKE ? ESCAPE '\\' LIMIT ?",
            (_like_pattern(term), MAX_ROWS_PER_TERM),
        )
        for doc_id, run_id, field, text in rows:
            out[doc_id] = (_Doc(run_id, field, text), 1.0)
    return out


#: CJK characters (Han, kana, Hangul): a two-character term of these is found through
#: the lab notebook's bigram table (``labbook.store.remote.search_schema``).
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_PAIR = re.compile(f"^[{CJK}]{{2}}$")


def _shared_term_matches(
    store: Store, term: str, runs: list[str] | None = None
) -> dict[int, tuple[_Doc, float]]:
    """:func:`_term_matches` in the lab's notebook (PostgreSQL): ``ILIKE`` over the
    documents, which the pg_trgm GIN index serves for terms of three characters or
    more; a two-character CJK term (显存) is looked up in the bigram table first. Every
    match scores 1 (there is no bm25); field weights and whole words then rank.
    ``runs``: only the documents of these runs (a few per run, through the
    ``(run_id, …)`` key), so a term with no trigram (``of``) is never a scan of
    every document once another term has found the candidates."""
    pattern = _like_pattern(term)
    if runs is not None:
        # run by run through the key (``text || ''``: never the trigram index, which
        # for a term without trigrams would read every document)
        sql = (
            "SELECT d.id, d.run_id, d.field, d.text FROM unnest(CAST(? AS text[])) AS c(run_id)"
            " JOIN search_docs d ON d.run_id = c.run_id"
            " WHERE (d.text || '') ILIKE ? ESCAPE '\\' LIMIT ?"
        )
        return {
            doc_id: (_Doc(run_id, field, text), 1.0)
            for doc_id, run_id, field, text in store.conn.execute(
                sql, (runs, pattern, MAX_ROWS_PER_TERM)
            ).fetchall()
        }
    if _CJK_PAIR.match(term):
        sql = (
            "SELECT d.id, d.run_id, d.field, d.text FROM search_docs d WHERE d.id IN"
            " (SELECT doc_id FROM search_bigrams WHERE gram = ?)"
            " AND d.text LIKE ? ESCAPE '\\' LIMIT ?"
        )
        args: tuple[object, ...] = (term, pattern, MAX_ROWS_PER_TERM)
    else:
        sql = (
            "SELECT d.id, d.run_id, d.field, d.text FROM search_docs d"
            " WHERE d.text ILIKE ? ESCAPE '\\' LIMIT ?"
        )
        args = (pattern, MAX_ROWS_PER_TERM)
    return {
        doc_id: (_Doc(run_id, field, text), 1.0)
        for doc_id, run_id, field, text in store.conn.execute(sql, args).fetchall()
    }


def _word_pattern(term: str) -> re.Pattern[str] | None:
    """``term`` as a whole word: not inside a longer run of letters and digits
    (``oom`` in "CUDA OOM" and ``cuda_oom``, not in "boom"; ``lr`` in ``optimizer.lr``).
    CJK text has no spaces, so a Chinese term is a whole word only at an end or
    beside punctuation. None for an empty term."""
    words = term.split()
    if not words:
        return None
    body = r"\s+".join(re.escape(w) for w in words)
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def _allowed_runs(store: Store, flt: RunFilter | None, candidates: set[str]) -> list[str]:
    """Candidates that exist, are not deleted and pass ``flt``, newest first."""
    from dataclasses import replace

    from labbook.store.query import RunFilter, select_runs

    base = replace(flt, limit=None) if flt is not None else RunFilter(limit=None)
    if not candidates:
        return []
    if store.dialect.shared:  # a million runs: read only the candidates
        from labbook.store.query import filter_sql

        where, args = filter_sql(store, base)
        where += (" AND " if where else " WHERE ") + "r.id = ANY(?)"
        sql = f"SELECT r.id FROM runs r{where} ORDER BY {store.dialect.newest_first('r.')}"
        return [row[0] for row in store.conn.execute(sql, [*args, sorted(candidates)])]
    ids = [r["id"] for r in select_runs(store, base) if r["id"] in candidates]
    return ids


def _allowed_best(
    store: Store, flt: RunFilter | None, scored: dict[str, float], limit: int
) -> list[str]:
    """The best ``limit`` of the scored candidates that exist, are listed and pass
    ``flt`` (the lab's notebook): best score first, newest first among equals — as
    :func:`_allowed_runs` and the sort in :func:`search` give, without ordering all
    20,000 candidates of a common term. Candidates are read a score at a time
    (whole scores, so order within a batch is exact), the best first, until the
    page is full; a batch of one score is cut at the page by the server."""
    from dataclasses import replace

    from labbook.store.query import RunFilter, filter_sql

    base = replace(flt, limit=None) if flt is not None else RunFilter(limit=None)
    where, args = filter_sql(store, base)
    where += (" AND " if where else " WHERE ") + "r.id = ANY(CAST(? AS text[]))"
    sql = f"SELECT r.id FROM runs r{where} ORDER BY {store.dialect.newest_first('r.')}"
    tiers: dict[float, list[str]] = {}
    for rid, score in scored.items():
        tiers.setdefault(score, []).append(rid)
    out: list[str] = []
    batch: list[str] = []
    scores = sorted(tiers, reverse=True)
    for k, score in enumerate(scores):
        batch += tiers[score]
        need = limit - len(out)
        if len(batch) < need and k + 1 < len(scores):
            continue
        one_score = len(batch) == len(tiers[score])
        rows = store.conn.execute(
            sql + (" LIMIT ?" if one_score else ""),
            [*args, _id_list(batch), *([need] if one_score else [])],
        )
        found = [row[0] for row in rows]
        found.sort(key=lambda rid: -scored[rid])  # stable: newest first within a score
        out += found[:need]
        batch = []
        if len(out) >= limit:
            break
    return out


def refresh_run_config_doc(conn: sqlite3.Connection, run_id: str) -> None:
    """Make ``run_id``'s config document match its params, inside the caller's
    transaction (:meth:`Store.save_run` calls it, so the index is current when the
    save commits and the first search has nothing to rebuild).

    One FTS write when the config changed, none when it did not (a re-import).
    """
    new = conn.execute(
        f"SELECT group_concat(kv, '; ') FROM (SELECT {_PARAM_TEXT} AS kv FROM params AS p"
        " WHERE p.run_id = ? ORDER BY p.key)",
        (run_id,),
    ).fetchone()[0]
    old = conn.execute(
        "SELECT id, text FROM search_docs WHERE run_id = ? AND field = 'config' AND ref = ''",
        (run_id,),
    ).fetchone()
    if old is None and new is not None:
        conn.execute(
            "INSERT INTO search_docs(run_id, field, ref, text) VALUES (?, 'config', '', ?)",
            (run_id, new),
        )
    elif old is not None and new is None:
        conn.execute("DELETE FROM search_docs WHERE id = ?", (old[0],))
    elif old is not None and old[1] != new:
        conn.execute("UPDATE search_docs SET text = ? WHERE id = ?", (new, old[0]))
    conn.execute("DELETE FROM search_dirty WHERE run_id = ?", (run_id,))


def refresh_config_docs(store: Store) -> int:
    """Rebuild the config document of every run whose params changed; return how many.

    Called by :func:`search` first. Saves keep the index current themselves
    (:func:`refresh_run_config_doc`); what is left here is what other writers marked:
    databases written by older labbook versions, params written outside ``save_run``.
    A read-only database is searched as it is.
    """
    conn = store.conn
    if store.dialect.shared:  # the lab's notebook: its documents come with each push
        return 0
    try:
        dirty = [r[0] for r in conn.execute("SELECT run_id FROM search_dirty")]
    except sqlite3.OperationalError:
        return 0
    if not dirty:
        return 0
    try:
        with store.transaction():
            for i in range(0, len(dirty), 500):
                chunk = dirty[i : i + 500]
                marks = ",".join("?" for _ in chunk)
                conn.execute(
                    f"DELETE FROM search_docs WHERE field = 'config' AND run_id IN ({marks})", chunk
                )
                conn.execute(_CONFIG_DOCS.format(where=f"WHERE p.run_id IN ({marks})"), chunk)
                conn.execute(f"DELETE FROM search_dirty WHERE run_id IN ({marks})", chunk)
    except (sqlite3.OperationalError, StoreError):  # read-only or busy: search what is indexed
        return 0
    return len(dirty)


def search(
    store: Store, query: str, flt: RunFilter | None = None, limit: int = 50
) -> list[SearchHit]:
    """Runs matching every term of ``query``, best first (see the module docstring).

    ``flt`` restricts the runs as ``labbook ls`` does (its own ``limit`` is ignored;
    ``limit`` here bounds the hits, 0 or None for all). An empty query finds nothing.
    """
    return search_counted(store, query, flt, limit, count=False)[0]


def search_counted(
    store: Store,
    query: str,
    flt: RunFilter | None = None,
    limit: int = 50,
    *,
    count: bool = True,
) -> tuple[list[SearchHit], int]:
    """:func:`search`, and how many runs match in all (``showing 50 of 20,000``);
    with ``count=False`` the count is only the hits'. Only the hits returned get a
    snippet, and in the lab's notebook only the best are ordered, so a page of a
    common term's 20,000 runs costs little more than the count."""
    terms = split_query(query)
    if not terms:
        return [], 0
    refresh_config_docs(store)
    # run_id -> term index -> list of (doc_id, doc, weighted score)
    per_run: dict[str, dict[int, list[tuple[int, _Doc, float]]]] = {}
    lowered: dict[str, str] = {}  # a text -> lower-cased (the notebook's planner)
    plan = _plan(store, terms)
    # the lab's notebook: runs whose one document in hand settles every later term
    # (its one document's id, the document, that document's score by term (shared))
    ahead: dict[str, tuple[int, _Doc, _Settled]] = {}
    for n, (i, term) in enumerate(plan):
        if n == 1 and store.dialect.shared:
            ahead = _settle_ahead(per_run, plan[1:])
            for rid in ahead:
                del per_run[rid]
            if not per_run:
                break
        # the lab's notebook: each term after the first is looked up among the runs
        # that matched every term before it
        whole = _word_pattern(term)
        runs_here: dict[str, list[tuple[int, _Doc, float]]] = {}
        if n and store.dialect.shared:
            runs_here, rest = _settled(per_run, term, whole, lowered)
            matches = _term_matches(store, term, sorted(rest)) if rest else {}
        else:
            matches = _term_matches(store, term)
        words: dict[str, bool] = {}  # text -> holds the term as a word (texts repeat)
        for doc_id, (doc, score) in matches.items():
            weighted = score * FIELD_WEIGHT.get(doc.field, 1.0)
            if whole is not None:
                word = words.get(doc.text)
                if word is None:
                    word = words[doc.text] = whole.search(doc.text) is not None
                if word:
                    weighted *= WORD_BOOST
            runs_here.setdefault(doc.run_id, []).append((doc_id, doc, weighted))
        if n == 0:
            for rid, docs in runs_here.items():
                per_run[rid] = {i: docs}
        else:
            for rid in list(per_run):
                if rid in runs_here:
                    per_run[rid][i] = runs_here[rid]
                else:
                    del per_run[rid]
        if not per_run and not ahead:
            return [], 0
    scored: dict[str, float] = {rid: got[2].score for rid, got in ahead.items()}
    for rid, by_term in per_run.items():
        summed = 0.0
        for docs in by_term.values():
            summed += docs[0][2] if len(docs) == 1 else max(s for _, _, s in docs)
        scored[rid] = round(summed, 6)
    total: int | None = None
    if store.dialect.shared and limit:
        allowed = _allowed_best(store, flt, scored, limit)
        if count:
            total = _count_allowed(store, flt, scored) if len(allowed) >= limit else len(allowed)
    else:
        allowed = _allowed_runs(store, flt, set(scored))
        total = len(allowed)
    order = {rid: k for k, rid in enumerate(allowed)}  # newest first breaks ties
    ranked = sorted(allowed, key=lambda rid: (-scored[rid], order[rid]))
    if limit:
        ranked = ranked[:limit]
    # snippets only for the hits returned (20,000 candidates need not be cut and marked)
    hits = []
    for rid in ranked:
        if rid in ahead:
            doc_id, doc, got = ahead[rid]
            by_term = {i: [(doc_id, doc, w)] for i, w in got.weights}
        else:
            by_term = per_run[rid]
        # The snippet: the document holding the most terms, then the best scored.
        tally: dict[int, tuple[_Doc, int, float]] = {}
        for t in sorted(by_term):  # the query's order, whatever order looked them up
            for doc_id, doc, s in by_term[t]:
                _, k, best = tally.get(doc_id, (doc, 0, 0.0))
                tally[doc_id] = (doc, k + 1, max(best, s))
        doc, _, _ = max(tally.values(), key=lambda t: (t[1], t[2]))
        hits.append(SearchHit(rid, scored[rid], doc.field, highlight(doc.text, terms)))
    return hits, len(hits) if total is None else total


def _count_allowed(store: Store, flt: RunFilter | None, scored: dict[str, float]) -> int:
    """How many of the candidates exist, are listed and pass ``flt`` (one count)."""
    from dataclasses import replace

    from labbook.store.query import RunFilter, filter_sql

    base = replace(flt, limit=None) if flt is not None else RunFilter(limit=None)
    where, args = filter_sql(store, base)
    where += (" AND " if where else " WHERE ") + "r.id = ANY(CAST(? AS text[]))"
    row = store.conn.execute(f"SELECT count(*) FROM runs r{where}", [*args, _id_list(scored)])
    return int(row.fetchone()[0])


def _id_list(ids: Iterable[str]) -> str:
    """Run ids as one array literal for ``CAST(? AS text[])``: binding 20,000 ids as
    an array, element by element, costs more than the query."""
    return (
        "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in ids) + "}"
    )


#: The best a document can score for a term in the lab's notebook (every match
#: scores 1 there): the heaviest field, the term a whole word.
_TOP = max(FIELD_WEIGHT.values()) * WORD_BOOST


def _settled(
    per_run: dict[str, dict[int, list[tuple[int, _Doc, float]]]],
    term: str,
    whole: re.Pattern[str] | None,
    lowered: dict[str, str],
) -> tuple[dict[str, list[tuple[int, _Doc, float]]], set[str]]:
    """A later term of a search in the lab's notebook, settled from the documents in
    hand where that gives the same answer as the server would: (run -> its documents
    in hand that hold ``term``, for the runs settled; the runs left to look up).

    A run is settled when one document in hand holds every term so far and this one
    at the best score there is (a note or failure, as a whole word): no other
    document of the run can score more for ``term``, and none can hold more terms
    (the others do not hold the first term), so score and snippet come out as if
    every document had been read. ``out of memory`` over 20,000 failed runs is then
    one query, not three. Only terms whose case ``ILIKE`` and Python fold alike (ASCII,
    or without case: CJK) are matched here. ``lowered``: texts already lower-cased."""
    settled: dict[str, list[tuple[int, _Doc, float]]] = {}
    if not (term.isascii() or term.lower() == term.upper()):
        return settled, set(per_run)
    rest: set[str] = set()
    needle = term.lower()
    # a text -> (holds the term, as a word): texts repeat (one error message, many runs)
    seen: dict[str, tuple[bool, bool]] = {}
    fields = FIELD_WEIGHT
    for rid, by_term in per_run.items():
        lists = list(by_term.values())
        if len(lists) == 1 and len(lists[0]) == 1:  # the common case, made quick
            doc_id, doc, _ = lists[0][0]
            hit = seen.get(doc.text)
            if hit is None:
                low = lowered.get(doc.text)
                if low is None:
                    low = lowered[doc.text] = doc.text.lower()
                holds = needle in low
                word = holds and whole is not None and whole.search(doc.text) is not None
                hit = seen[doc.text] = (holds, word)
            if hit[0]:
                weighted = fields.get(doc.field, 1.0) * (WORD_BOOST if hit[1] else 1.0)
                if weighted >= _TOP:
                    settled[rid] = [(doc_id, doc, weighted)]
                    continue
            rest.add(rid)
            continue
        if len(lists) == 1:
            held = [(doc_id, doc, 1) for doc_id, doc, _ in lists[0]]
        else:
            counts: dict[int, tuple[_Doc, int]] = {}
            for docs in lists:
                for doc_id, doc, _ in docs:
                    counts[doc_id] = (doc, counts[doc_id][1] + 1 if doc_id in counts else 1)
            held = [(doc_id, doc, k) for doc_id, (doc, k) in counts.items()]
        mine: list[tuple[int, _Doc, float]] = []
        best = False
        for doc_id, doc, k in held:
            hit = seen.get(doc.text)
            if hit is None:
                low = lowered.get(doc.text)
                if low is None:
                    low = lowered[doc.text] = doc.text.lower()
                holds = needle in low
                word = holds and whole is not None and whole.search(doc.text) is not None
                hit = seen[doc.text] = (holds, word)
            if not hit[0]:
                continue
            weighted = FIELD_WEIGHT.get(doc.field, 1.0) * (WORD_BOOST if hit[1] else 1.0)
            mine.append((doc_id, doc, weighted))
            best = best or (k == len(lists) and weighted >= _TOP)
        if best:
            settled[rid] = mine
        else:
            rest.add(rid)
    return settled, rest


@dataclass(slots=True)
class _Settled:
    """A document that settles every term of a search by itself: its score for each
    term (the query's index, the weighted score, in the order looked up) and their
    sum, as :func:`search` adds them."""

    weights: list[tuple[int, float]]
    score: float


def _settle_ahead(
    per_run: dict[str, dict[int, list[tuple[int, _Doc, float]]]], later: list[tuple[int, str]]
) -> dict[str, tuple[int, _Doc, _Settled]]:
    """:func:`_settled` for every later term at once, for the runs found by the first
    term through one document that settles them all (a failure message that says
    "out of memory" settles ``out`` and ``of``): run -> (that document's id, the
    document, its scores). One pass over 20,000 candidates, each distinct text read
    once and its scores shared by every run that has it."""
    if not all(t.isascii() or t.lower() == t.upper() for _, t in later):
        return {}
    checks = [(i, t.lower(), _word_pattern(t)) for i, t in later]
    verdicts: dict[tuple[str, str], _Settled | None] = {}
    out: dict[str, tuple[int, _Doc, _Settled]] = {}
    for rid, by_term in per_run.items():
        if len(by_term) != 1:
            continue
        ((first, docs),) = by_term.items()
        if len(docs) != 1:
            continue
        doc_id, doc, w0 = docs[0]
        key = (doc.field, doc.text)
        if key in verdicts:
            got = verdicts[key]
        else:
            weights = [(first, w0)]
            low = doc.text.lower()
            base = FIELD_WEIGHT.get(doc.field, 1.0)
            for i, needle, whole in checks:
                word = whole is not None and whole.search(doc.text) is not None
                weighted = base * (WORD_BOOST if word else 1.0)
                if needle not in low or weighted < _TOP:
                    break
                weights.append((i, weighted))
            if len(weights) == len(checks) + 1:
                summed = 0.0
                for _, weighted in weights:  # as search() sums them: the same float
                    summed += weighted
                got = _Settled(weights, round(summed, 6))
            else:
                got = None
            verdicts[key] = got
        if got is not None:
            out[rid] = (doc_id, doc, got)
    return out


def _plan(store: Store, terms: list[str]) -> list[tuple[int, str]]:
    """The order to look ``terms`` up in, with each one's index in the query.

    Locally, the query's order (each term is read from FTS5 whole). In the lab's
    notebook, the terms an index serves first (three characters or more: the
    trigram GIN; a CJK pair: the bigram table), the longest — most often the
    rarest — first; the others (``of``, ``lr``) last, among the candidates only."""
    indexed = list(enumerate(terms))
    if not store.dialect.shared:
        return indexed

    def key(it: tuple[int, str]) -> tuple[int, int, int]:
        i, term = it
        served = len(term) >= TRIGRAM or _CJK_PAIR.match(term) is not None
        return (0 if served else 1, -len(term), i)

    return sorted(indexed, key=key)


def highlight(text: str, terms: list[str], context: int = SNIPPET_CONTEXT) -> str:
    """``text`` cut around its first match, every match of ``terms`` marked.

    Matching is case-insensitive, as the index is; the snippet is on one line.
    """
    flat = " ".join(text.split())
    spans: list[tuple[int, int]] = []
    for term in terms:
        words = term.split()
        if not words:
            continue
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)
        spans += [(m.start(), m.end()) for m in pattern.finditer(flat) if m.end() > m.start()]
    if not spans:
        return flat[: 2 * context] + ("…" if len(flat) > 2 * context else "")
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        # overlapping matches, or matches only a space apart ("out of memory"), join
        if merged and (s <= merged[-1][1] or flat[merged[-1][1] : s].isspace()):
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    lo = max(0, merged[0][0] - context)
    hi = min(len(flat), max(merged[0][1] + context, lo + 2 * context))
    out = ["…" if lo > 0 else ""]
    pos = lo
    for s, e in merged:
        if s >= hi:
            break
        out.append(flat[pos:s])
        out.append(MARK_START + flat[s:e] + MARK_END)
        pos = e
    if pos < hi:
        out.append(flat[pos:hi])
    out.append("…" if hi < len(flat) else "")
    return "".join(out)


#: At most this many run references are offered for one completion.
MAX_COMPLETIONS = 200


def complete_runs(
    store: Store, incomplete: str, limit: int = MAX_COMPLETIONS
) -> list[tuple[str, str]]:
    """Run references starting with ``incomplete`` for shell completion, as
    ``(value, help)``: names (help: id and status), then ids (help: the name), the
    newest first. Range scans of the id and name indexes: a Tab reads only the runs
    that match (all runs for an empty word, of which the newest ``limit``)."""
    order = store.dialect.newest_first()
    live = store.dialect.live()
    if incomplete:
        bound = (incomplete, incomplete + "\U0010ffff")
        names = store.conn.execute(
            "SELECT name, id, status FROM runs WHERE name >= ? AND name < ?"
            f" AND {live} ORDER BY {order} LIMIT ?",
            (*bound, limit),
        ).fetchall()
        ids = store.conn.execute(
            "SELECT id, name FROM runs WHERE id >= ? AND id < ?"
            f" AND {live} ORDER BY {order} LIMIT ?",
            (*bound, limit),
        ).fetchall()
    else:
        rows = store.conn.execute(
            f"SELECT name, id, status FROM runs WHERE {live} ORDER BY {order} LIMIT ?",
            (limit,),
        ).fetchall()
        names = [r for r in rows if r[0]]
        ids = [(rid, name) for name, rid, _ in rows]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, rid, status in names:
        if name and name not in seen:
            seen.add(name)
            out.append((name, f"{rid} {status}"))
    for rid, name in ids:
        if rid not in seen:
            seen.add(rid)
            out.append((rid, name or ""))
    return out[:limit]
