"""The database schema, as ``sqlite_utils.Migrations`` steps.

Each step is applied once, in order, inside a transaction. ``PRAGMA user_version``
mirrors the number of steps so that readers can check that a database is current
without importing sqlite-utils (which costs ~100 ms of start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

#: Bump together with adding a step below.
SCHEMA_VERSION = 14


def migrations() -> Migrations:
    from sqlite_utils.migrations import Migrations

    steps = Migrations("labbook")

    @steps(name="0001_initial")
    def initial(db: Database) -> None:
        db.executescript(
            """
            CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                source_key TEXT NOT NULL UNIQUE,
                name TEXT,
                path TEXT,
                host TEXT,
                user TEXT,
                framework TEXT,
                status TEXT NOT NULL DEFAULT 'unknown',
                failure_kind TEXT,
                failure_message TEXT,
                failure_step INTEGER,
                started_at TEXT,
                ended_at TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                command TEXT,
                pid INTEGER,
                cwd TEXT,
                seed_value TEXT,
                seed_source TEXT,
                git_root TEXT,
                git_commit TEXT,
                git_branch TEXT,
                git_remote TEXT,
                git_dirty INTEGER,
                git_diff TEXT REFERENCES blobs(hash),
                git_untracked TEXT,
                git_extra TEXT REFERENCES blobs(hash),
                env TEXT REFERENCES blobs(hash),
                env_source TEXT,
                gpu TEXT,
                log_tail TEXT REFERENCES blobs(hash),
                missing INTEGER NOT NULL DEFAULT 0,
                deleted_at TEXT
            );
            CREATE INDEX runs_started ON runs(started_at DESC, created_at DESC);
            CREATE INDEX runs_status ON runs(status);
            CREATE INDEX runs_name ON runs(name);
            CREATE INDEX runs_path ON runs(path);
            CREATE INDEX runs_git ON runs(git_root, started_at);

            CREATE TABLE blobs (
                hash TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                data BLOB NOT NULL
            );

            -- Flattened config: one row per dotted key. ``value`` is JSON; ``num`` holds
            -- the number for numeric values so that --where can compare numerically.
            CREATE TABLE params (
                run_id TEXT NOT NULL REFERENCES runs(id),
                key TEXT NOT NULL,
                value TEXT,
                num REAL,
                PRIMARY KEY (run_id, key)
            ) WITHOUT ROWID;
            CREATE INDEX params_key_num ON params(key, num);
            CREATE INDEX params_key_value ON params(key, value);

            -- One summary per run and tag. SQLite stores a float NaN as NULL, so the
            -- kind of a non-finite last value is kept in ``last_kind``.
            CREATE TABLE metrics (
                run_id TEXT NOT NULL REFERENCES runs(id),
                tag TEXT NOT NULL,
                last REAL,
                last_kind TEXT,
                min REAL,
                max REAL,
                step INTEGER,
                count INTEGER NOT NULL,
                nonfinite_step INTEGER,
                first_step INTEGER,
                last_wall_time REAL,
                PRIMARY KEY (run_id, tag)
            ) WITHOUT ROWID;
            CREATE INDEX metrics_tag_last ON metrics(tag, last);

            -- Downsampled curve per run and tag (<= 1,000 points), zlib-compressed JSON.
            CREATE TABLE series (
                run_id TEXT NOT NULL REFERENCES runs(id),
                tag TEXT NOT NULL,
                points BLOB NOT NULL,
                PRIMARY KEY (run_id, tag)
            ) WITHOUT ROWID;

            CREATE TABLE tags (
                run_id TEXT NOT NULL REFERENCES runs(id),
                tag TEXT NOT NULL,
                PRIMARY KEY (run_id, tag)
            ) WITHOUT ROWID;
            CREATE INDEX tags_tag ON tags(tag);

            -- Notes are appended, never edited; deleting one sets deleted_at.
            CREATE TABLE notes (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                at TEXT NOT NULL,
                author TEXT,
                kind TEXT NOT NULL DEFAULT 'note',
                text TEXT NOT NULL,
                deleted_at TEXT
            );
            CREATE INDEX notes_run ON notes(run_id);

            -- Read positions of the files a run is read from (incremental tailing).
            CREATE TABLE files (
                path TEXT PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                offset INTEGER NOT NULL DEFAULT 0,
                fingerprint TEXT,
                size INTEGER,
                mtime REAL
            );
            CREATE INDEX files_run ON files(run_id);
            """
        )

    @steps(name="0002_runs_order")
    def runs_order(db: Database) -> None:
        # Listings sort newest first by this expression (query.NEWEST_FIRST); read
        # backwards, this index gives that order (rowid last) without a sort.
        db.executescript(
            """
            CREATE INDEX runs_order ON runs(coalesce(started_at, created_at), created_at);
            """
        )

    @steps(name="0003_run_data")
    def run_data(db: Database) -> None:
        # Data fingerprints (labbook.capture.data) of config values that are paths,
        # as one JSON blob per run, so that `labbook diff` can say "data/train changed".
        if "data" not in db["runs"].columns_dict:  # idempotent, like the CREATE INDEX steps
            db.execute("ALTER TABLE runs ADD COLUMN data TEXT REFERENCES blobs(hash)")

    @steps(name="0004_search")
    def search(db: Database) -> None:
        # Full-text search (labbook.store.search): one document per searchable item (run
        # name, command, failure, note, tag, config key = value) in search_docs, an
        # FTS5 index over it with the trigram tokenizer (substring matches in any
        # script, Chinese included, without word segmentation), and triggers so that
        # every writer keeps both current without knowing about them.
        from labbook.store.search import create_search_schema

        create_search_schema(db.conn)

    @steps(name="0005_watch")
    def watch(db: Database) -> None:
        # labbook watch: per-file tail state (CSV header, line count) beside the offset,
        # and per-run daemon state (files signature, writer process, last change) so a
        # restarted daemon resumes where the killed one stopped.
        db.executescript(
            """
            ALTER TABLE files ADD COLUMN state TEXT;
            CREATE TABLE watch_runs (
                run_id TEXT PRIMARY KEY REFERENCES runs(id),
                sig TEXT,
                mode TEXT,
                pid INTEGER,
                create_time REAL,
                last_change REAL,
                active INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX watch_runs_active ON watch_runs(active);
            """
        )

    @steps(name="0006_config_sig")
    def config_sig(db: Database) -> None:
        # A digest of each run's config without seed-like and output-like keys
        # (labbook.store.configsig): finding a run's seed peers is one index lookup.
        import json

        from labbook.store.configsig import signature_hash

        if "config_sig" not in db["runs"].columns_dict:
            db.execute("ALTER TABLE runs ADD COLUMN config_sig TEXT")
        db.execute("CREATE INDEX IF NOT EXISTS runs_config_sig ON runs(config_sig)")
        configs: dict[str, dict[str, object]] = {}
        for run_id, key, value in db.execute("SELECT run_id, key, value FROM params"):
            configs.setdefault(run_id, {})[key] = json.loads(value) if value is not None else None
        db.conn.executemany(
            "UPDATE runs SET config_sig = ? WHERE id = ?",
            [(signature_hash(cfg), rid) for rid, cfg in configs.items()],
        )

    @steps(name="0007_runs_status_order")
    def runs_status_order(db: Database) -> None:
        # `--status failed` (and the TUI's status filter) newest first, without a sort.
        db.execute(
            "CREATE INDEX IF NOT EXISTS runs_status_order"
            " ON runs(status, coalesce(started_at, created_at), created_at)"
        )

    @steps(name="0008_import_dirs")
    def import_dirs(db: Database) -> None:
        # labbook import: what each run dir looked like when it was last recorded (a
        # digest of its files' names, sizes and mtimes, and of the files read from
        # outside it), so that re-importing an unchanged tree reads nothing again and
        # an import that was interrupted goes on where it stopped.
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS import_dirs (
                path TEXT NOT NULL,
                framework TEXT NOT NULL,
                sig TEXT NOT NULL,
                outside TEXT,
                run_ids TEXT NOT NULL,
                at TEXT NOT NULL,
                PRIMARY KEY (path, framework)
            );
            """
        )

    @steps(name="0009_runs_cwd")
    def runs_cwd(db: Database) -> None:
        # `labbook check` outside a git work tree looks up the runs started in the same
        # directory: one index lookup, not a scan of every run (the shell hooks' path).
        db.execute("CREATE INDEX IF NOT EXISTS runs_cwd ON runs(cwd, started_at)")

    @steps(name="0010_metric_source")
    def metric_source(db: Database) -> None:
        # Where a metric came from: "file" (a structured metrics file: event files,
        # JSONL/CSV, a framework's history) or "output" (lines the run printed: the
        # output of `labbook run`, a console log). NULL: recorded before this step.
        if "source" not in db["metrics"].columns_dict:
            db.execute("ALTER TABLE metrics ADD COLUMN source TEXT")

    @steps(name="0011_status_reason")
    def status_reason(db: Database) -> None:
        # Why a run has its status ("reached epochs=5", "exit code 1", "no end marker,
        # no process, metrics stop at epoch 2 of 5"). NULL: recorded before this step.
        if "status_reason" not in db["runs"].columns_dict:
            db.execute("ALTER TABLE runs ADD COLUMN status_reason TEXT")

    @steps(name="0012_housekeeping")
    def housekeeping(db: Database) -> None:
        # labbook rm / archive / gc. A removed run keeps its row with deleted_at set (a
        # tombstone, as notes have); an archived one has archived_at and leaves the
        # default listings only. A purged run's rows are gone: its source key stays in
        # removed_sources so that watch and import never record that run dir again
        # unless asked (labbook import --include-removed, labbook rm --undo PATH).
        if "archived_at" not in db["runs"].columns_dict:
            db.execute("ALTER TABLE runs ADD COLUMN archived_at TEXT")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS removed_sources (
                source_key TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                name TEXT,
                path TEXT,
                removed_at TEXT NOT NULL
            );
            """
        )

    @steps(name="0013_groups")
    def groups(db: Database) -> None:
        # Seed groups and sweeps (labbook.store.groups): each run's seed-group key (a
        # digest of repository, entry point and config signature, computed at save),
        # so that folding a listing by group or sizing a page's groups is one index
        # lookup, and the sweep it was launched in (kind and id), if any.
        from labbook.store.groups import backfill

        cols = db["runs"].columns_dict
        for col in ("group_key", "sweep_kind", "sweep_id"):
            if col not in cols:
                db.execute(f"ALTER TABLE runs ADD COLUMN {col} TEXT")
        db.execute("CREATE INDEX IF NOT EXISTS runs_group ON runs(group_key)")
        db.execute("CREATE INDEX IF NOT EXISTS runs_sweep ON runs(sweep_kind, sweep_id)")
        backfill(db.conn)

    @steps(name="0014_remote")
    def remote(db: Database) -> None:
        # The lab's notebook (labbook.store.outbox): this store's origin and generation
        # (meta), the runs' parts not yet pushed (dirty, kept by triggers), and the
        # Slurm columns of runs (labbook.capture.slurm).
        from labbook.store.outbox import create

        create(db.conn)

    return steps
