r"""Search in the lab's notebook: the indexes ``labbook search --remote`` reads.

The documents are the local store's (``search_docs``: names, commands, failures,
notes, tags, configs), pushed with their runs, so no document logic is written
twice. Over them:

``search_docs_trgm``
    A ``pg_trgm`` GIN index on ``text``: what FTS5's trigram tokenizer is locally.
    ``text ILIKE '%term%'`` is answered from it for any term of three characters or
    more, in any script (the database's ctype must be UTF-8 for Chinese to have
    trigrams at all; ``remote init`` refuses one that is not).

``search_bigrams(gram, doc_id)``
    Every pair of adjacent CJK characters (Han, kana, Hangul) of every document,
    kept by a trigger on ``search_docs``. A two-character Chinese term (显存, 发散)
    has no trigram, so without it each such search is a scan of every document
    (6.7 s at 1M runs in the prototype); with it, an index lookup (15–19 ms).
    ``pg_bigm`` and PGroonga would do this, but Debian ships neither.

``runs_seed_group``, ``runs_sweep``
    The seed-group and sweep columns (local schema step 0013) and their indexes:
    every record counts its group's live runs.

``runs_git_newest``, ``runs_cwd_newest``
    A repository's (a directory's) listed runs newest first: ``check`` reads the
    newest 2,000 of them in order instead of sorting every one.

``runs_listed``
    The listings' order (newest first, ties by id) over the runs that listings show
    (not deleted, not superseded): ``ls --remote`` reads the newest 50 of a million
    runs from it without a sort.

:func:`create` is called by ``labbook.store.remote.schema.create_schema`` inside its
transaction; every statement is idempotent.
"""

from __future__ import annotations

from typing import Any

from labbook.store.remote.conn import SCHEMA

#: CJK characters as a regular-expression class body (as ``store.search.CJK``).
CJK_CLASS = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"


def statements() -> list[str]:
    s = SCHEMA
    return [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        f"CREATE INDEX IF NOT EXISTS search_docs_trgm ON {s}.search_docs"
        " USING gin (text gin_trgm_ops)",
        f"""CREATE TABLE IF NOT EXISTS {s}.search_bigrams (
    gram text NOT NULL,
    doc_id bigint NOT NULL REFERENCES {s}.search_docs(id) ON DELETE CASCADE,
    PRIMARY KEY (gram, doc_id)
)""",
        f"CREATE INDEX IF NOT EXISTS search_bigrams_doc ON {s}.search_bigrams (doc_id)",
        f"""CREATE OR REPLACE FUNCTION {s}.cjk_bigrams(t text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT substr(m[1], i, 2)
    FROM regexp_matches(t, '([{CJK_CLASS}]{{2,}})', 'g') AS m,
         generate_series(1, char_length(m[1]) - 1) AS i
$$""",
        f"""CREATE OR REPLACE FUNCTION {s}.search_bigrams_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.text IS NOT DISTINCT FROM OLD.text AND NEW.id = OLD.id THEN
            RETURN NULL;
        END IF;
        DELETE FROM {s}.search_bigrams WHERE doc_id = OLD.id;
    END IF;
    INSERT INTO {s}.search_bigrams (gram, doc_id)
        SELECT g, NEW.id FROM {s}.cjk_bigrams(NEW.text) AS g
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$""",
        f"DROP TRIGGER IF EXISTS search_docs_bigrams ON {s}.search_docs",
        f"CREATE TRIGGER search_docs_bigrams AFTER INSERT OR UPDATE OF text, id"
        f" ON {s}.search_docs FOR EACH ROW EXECUTE FUNCTION {s}.search_bigrams_sync()",
        # documents pushed before this step (idempotent: the primary key)
        f"INSERT INTO {s}.search_bigrams (gram, doc_id)"
        f" SELECT g, d.id FROM {s}.search_docs d, {s}.cjk_bigrams(d.text) AS g"
        f" WHERE d.text ~ '[{CJK_CLASS}]{{2}}' ON CONFLICT DO NOTHING",
        f"CREATE INDEX IF NOT EXISTS runs_listed ON {s}.runs"
        " ((coalesce(started_at, created_at)) DESC, created_at DESC, id DESC)"
        " WHERE deleted_at IS NULL AND superseded_by IS NULL",
        f"CREATE INDEX IF NOT EXISTS notes_kind ON {s}.notes (kind, run_id)"
        " WHERE deleted_at IS NULL",
        # check: a repository's (or directory's) newest listed runs, read in order and
        # cut at 2,000, not every run of it sorted (820 ms -> 4 ms over 20,000 runs)
        f"CREATE INDEX IF NOT EXISTS runs_git_newest ON {s}.runs"
        " (git_root, (coalesce(started_at, created_at)) DESC)"
        " WHERE deleted_at IS NULL AND superseded_by IS NULL",
        f"CREATE INDEX IF NOT EXISTS runs_cwd_newest ON {s}.runs"
        " (cwd, (coalesce(started_at, created_at)) DESC)"
        " WHERE deleted_at IS NULL AND superseded_by IS NULL",
        # seed groups and sweeps (labbook.store.groups): every record says its group's
        # size, one indexed count per page of runs (the columns come with schema 0013)
        f"ALTER TABLE {s}.runs ADD COLUMN IF NOT EXISTS group_key text,"
        " ADD COLUMN IF NOT EXISTS sweep_kind text, ADD COLUMN IF NOT EXISTS sweep_id text",
        f"CREATE INDEX IF NOT EXISTS runs_seed_group ON {s}.runs (group_key)",
        f"CREATE INDEX IF NOT EXISTS runs_sweep ON {s}.runs (sweep_kind, sweep_id)",
    ]


def create(conn: Any) -> None:
    """Create the search indexes, the bigram table and its trigger (idempotent; the
    caller commits)."""
    for stmt in statements():
        conn.execute(stmt)
