"""Reads across the lab (issue #13): whole-process ``--remote`` commands at lab scale.

A throwaway PostgreSQL cluster (initdb, as tests/pg.py makes it) is filled in SQL,
untimed: N runs (1,000,000; ``--quick``: 100,000) from 64 origins (hosts gpu00…gpu63,
16 users), 8 config keys and 3 metrics each, failures (CUDA OOM, some with Chinese
messages), lessons on 2% of the runs (English and Chinese), and the search
documents a push would carry (name, command, failure, notes, config) — then the
schema's indexes and the bigram table are built and the tables analysed.

Timed, each the whole ``labbook`` process (start-up, connect, query, print), the
median of ``--repeat`` runs, against the goal of < 500 ms:

* ``ls --remote --json`` (the newest 50, with records), ``ls --remote --where``
  (a param and a metric), ``search --remote`` in English and Chinese (a
  two-character term too), ``show --remote``, ``diff --remote`` (seed peers from
  every node), ``check --remote`` (a command like thousands of failed runs);
* the TUI's first paint over the lab's notebook and a sort by a metric (goal < 1 s),
  through Textual's Pilot in one process.

``--mlflow``: the same runs' params and metrics in MLflow's tracking store on the same
server (its own database, MLflow's schema made by MLflow), and ``search_runs`` with a
param + metric filter, timed in a venv of its own (``--mlflow-venv``; never a labbook
dependency). The machine is shared and has 2 cores: figures are noisy.

Before the commands, the floor of the same moment: ``python -c pass``, ``import
psycopg``, and a local ``labbook ls --json`` over a one-run store — what every
``--remote`` figure pays before its first query. Every line carries the 1-minute
load average when it was taken. Byte-code is compiled first (``compileall``), as
``pip install`` does.

    python benchmarks/bench_remote.py [--quick] [--runs N] [--repeat 5] [--mlflow]
    python benchmarks/bench_remote.py --keep ...          # leaves the cluster running
    python benchmarks/bench_remote.py --url postgresql://postgres@127.0.0.1:PORT/lab
                                      # reuse a kept, filled database: no fill
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GOAL_MS = 500.0
TUI_GOAL_MS = 1000.0
ORIGINS = 64

FILL = """
INSERT INTO labbook.origins (origin, host, "user", first_push, last_push, last_gen, pending)
SELECT 'origin' || lpad(o::text, 2, '0'), 'gpu' || lpad(o::text, 2, '0'), 'u' || (o % 16),
       '2026-01-01T00:00:00Z', '2026-06-01T00:00:00Z', 1, 0
FROM generate_series(0, {origins} - 1) AS o;

INSERT INTO labbook.runs (id, origin, local_id, version, source_key, name, path, host, "user",
    framework, status, failure_kind, failure_message, started_at, ended_at, created_at,
    updated_at, command, cwd, seed_value, seed_source, git_root, git_commit, config_sig,
    missing)
SELECT substr(md5(i::text), 1, 12), 'origin' || lpad((i % {origins})::text, 2, '0'),
       substr(md5(i::text), 1, 12), 1,
       '/home/lab/p' || (i % 50) || '/runs/' || i, 'exp' || (i % 500) || '/run' || i,
       '/home/lab/p' || (i % 50) || '/runs/' || i,
       'gpu' || lpad((i % {origins})::text, 2, '0'), 'u' || (i % 16),
       (ARRAY['lightning','hydra','tensorboard','hf_trainer'])[1 + i % 4],
       CASE WHEN i % 50 = 7 THEN 'failed' WHEN i % 33 = 5 THEN 'diverged'
            WHEN i % 97 = 3 THEN 'killed' ELSE 'finished' END,
       CASE WHEN i % 50 = 7 THEN 'cuda_oom' WHEN i % 33 = 5 THEN 'nan' END,
       CASE WHEN i % 50 = 7 THEN
            CASE WHEN i % 3 = 0 THEN 'torch.OutOfMemoryError: CUDA out of memory. 显存不足'
                 ELSE 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' END
            WHEN i % 33 = 5 THEN 'train/loss is nan at step 300' END,
       to_char(timestamp '2024-01-01' + i * interval '37 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(timestamp '2024-01-01' + i * interval '37 seconds' + (600 + i % 3600) * interval '1 second',
               'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(timestamp '2024-01-01' + i * interval '37 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(timestamp '2024-01-01' + i * interval '37 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       '["python", "train.py", "--lr", "' || (ARRAY['0.1','0.01','0.001','0.0003'])[1 + i % 4]
           || '", "--batch-size", "' || (64 << (i % 3)) || '"]',
       '/home/lab/p' || (i % 50), (i % 5)::text, 'config:seed',
       '/home/lab/p' || (i % 50), md5((i % 7919)::text),
       md5(((i / 5) % 100000)::text), 0
FROM generate_series(1, {runs}) AS i;

UPDATE labbook.runs SET group_key = substr(md5(config_sig || git_root), 1, 16);

INSERT INTO labbook.params (run_id, key, value, num)
SELECT substr(md5(i::text), 1, 12), k.key,
       CASE k.key WHEN 'optimizer.name' THEN '"' || (ARRAY['adam','sgd','adamw'])[1 + i % 3] || '"'
                  WHEN 'model.name' THEN '"resnet' || (ARRAY['18','34','50'])[1 + i % 3] || '"'
                  ELSE (CASE k.key WHEN 'optimizer.lr' THEN (ARRAY[0.1,0.01,0.001,0.0003])[1 + i % 4]
                        WHEN 'data.batch_size' THEN 64 << (i % 3) WHEN 'seed' THEN i % 5
                        WHEN 'model.depth' THEN 18 + 16 * (i % 3) WHEN 'trainer.epochs' THEN 10 + i % 90
                        ELSE (i % 10) / 10.0 END)::text END,
       CASE WHEN k.key IN ('optimizer.name', 'model.name') THEN NULL
            ELSE (CASE k.key WHEN 'optimizer.lr' THEN (ARRAY[0.1,0.01,0.001,0.0003])[1 + i % 4]
                  WHEN 'data.batch_size' THEN 64 << (i % 3) WHEN 'seed' THEN i % 5
                  WHEN 'model.depth' THEN 18 + 16 * (i % 3) WHEN 'trainer.epochs' THEN 10 + i % 90
                  ELSE (i % 10) / 10.0 END) END
FROM generate_series(1, {runs}) AS i,
     (VALUES ('optimizer.name'), ('optimizer.lr'), ('data.batch_size'), ('seed'),
             ('model.name'), ('model.depth'), ('model.dropout'), ('trainer.epochs')) AS k(key);

INSERT INTO labbook.metrics (run_id, tag, last, min, max, step, count, source)
SELECT substr(md5(i::text), 1, 12), t.tag,
       CASE t.tag WHEN 'val/acc' THEN 0.5 + (i % 500) / 1000.0
                  ELSE 0.1 + (i % 997) / 500.0 END,
       0.05, 3.0, 1000, 100, 'file'
FROM generate_series(1, {runs}) AS i,
     (VALUES ('train/loss'), ('val/loss'), ('val/acc')) AS t(tag);

INSERT INTO labbook.notes (origin, id, run_id, at, author, kind, text)
SELECT 'origin' || lpad((i % {origins})::text, 2, '0'), i, substr(md5(i::text), 1, 12),
       '2026-01-01T00:00:00Z', 'u' || (i % 16), 'lesson',
       CASE WHEN (i / 50) % 2 = 0 THEN 'lr ' || (ARRAY['0.1','0.01'])[1 + (i / 100) % 2]
                 || ' diverged after warmup; halve it and use gradient clipping'
            ELSE '学习率太高导致发散，显存也不够，下次 batch 减半' END
FROM generate_series(1, {runs}) AS i WHERE i % 50 = 1;

INSERT INTO labbook.search_docs (run_id, field, ref, text, origin)
SELECT r.id, 'name', '', r.name, r.origin FROM labbook.runs r;
INSERT INTO labbook.search_docs (run_id, field, ref, text, origin)
SELECT r.id, 'command', '', 'python train.py --lr ' || (r.command::jsonb ->> 3)
       || ' --batch-size ' || (r.command::jsonb ->> 5), r.origin FROM labbook.runs r;
INSERT INTO labbook.search_docs (run_id, field, ref, text, origin)
SELECT r.id, 'failure', '', r.failure_kind
       || CASE WHEN r.failure_kind = 'cuda_oom' THEN ' (out of memory)' ELSE '' END
       || ': ' || r.failure_message, r.origin
FROM labbook.runs r WHERE r.failure_kind IS NOT NULL;
INSERT INTO labbook.search_docs (run_id, field, ref, text, origin)
SELECT n.run_id, 'note', n.id::text, n.text, n.origin FROM labbook.notes n;
INSERT INTO labbook.search_docs (run_id, field, ref, text, origin)
SELECT p.run_id, 'config', '', string_agg(p.key || ' = ' || coalesce(p.num::text,
       trim(both '"' from p.value)), '; ' ORDER BY p.key), r.origin
FROM labbook.params p JOIN labbook.runs r ON r.id = p.run_id GROUP BY p.run_id, r.origin;
"""


def _make_cluster(base: Path) -> Any:
    """A throwaway cluster, the way tests/pg.py makes one (initdb, trust, 127.0.0.1)."""
    from tests.pg import PgServer, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    server = PgServer(bindir, base)
    server.init()
    with open(server.datadir / "postgresql.conf", "a") as f:
        f.write("\nshared_buffers = 512MB\nwork_mem = 32MB\nmaintenance_work_mem = 512MB\n")
    server.start()
    return server


def _fill(url: str, runs: int) -> float:
    import psycopg

    from labbook.store.remote import search_schema
    from labbook.store.remote.schema import create_schema

    t0 = time.monotonic()
    with psycopg.connect(url) as conn:
        create_schema(conn)
        # fill without the trigram and bigram upkeep, then build them at once
        conn.execute("DROP INDEX IF EXISTS labbook.search_docs_trgm")
        conn.execute("DROP TRIGGER IF EXISTS search_docs_bigrams ON labbook.search_docs")
        for stmt in FILL.format(runs=runs, origins=ORIGINS).split(";\n\n"):
            if stmt.strip():
                conn.execute(stmt)
        conn.commit()
        search_schema.create(conn)  # the GIN index, the trigger and the bigrams of all docs
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - t0


def _load() -> str:
    return f"load {os.getloadavg()[0]:4.1f}"


def _time_cli(
    args: list[str],
    env: dict[str, str],
    repeat: int,
    cwd: str | None = None,
    argv: list[str] | None = None,
) -> tuple[float, str]:
    times = []
    out = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv or [sys.executable, "-m", "labbook", *args], env=env, capture_output=True,
            text=True, cwd=cwd, timeout=600,
        )  # fmt: skip
        times.append((time.perf_counter() - t0) * 1000)
        if proc.returncode != 0:
            raise SystemExit(f"labbook {' '.join(args)} failed: {proc.stderr.strip()}")
        out = proc.stdout
    return statistics.median(times), out


TUI = textwrap.dedent(
    """
    import asyncio, sys, time
    t0 = time.perf_counter()
    from labbook_tui.app import make_app
    from labbook_tui.run_table import RunTable
    from labbook.store.remote.read import RemoteStore
    from textual.widgets import OptionList

    async def main():
        app = make_app(None, poll_interval=None, opener=lambda: RemoteStore.connect(sys.argv[1]))
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            table = app.screen.query_one(RunTable)
            assert table.records
            first = time.perf_counter() - t0
            await pilot.press("o")
            options = app.screen.query_one(OptionList)
            keys = [options.get_option_at_index(i).id for i in range(options.option_count)]
            options.highlighted = keys.index("metrics.val_loss")
            t1 = time.perf_counter()
            await pilot.press("enter")
            await pilot.pause()
            sort = time.perf_counter() - t1
            print(f"TUI {first * 1000:.0f} {sort * 1000:.0f}")

    asyncio.run(main())
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 runs")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    ap.add_argument("--url", help="an already filled database (from --keep): no cluster, no fill")
    ap.add_argument("--mlflow", action="store_true", help="compare with MLflow's search_runs")
    ap.add_argument("--mlflow-venv", default="/tmp/mlflow-venv")
    ap.add_argument("--mlflow-only", action="store_true", help="only the MLflow comparison")
    args = ap.parse_args()
    runs = args.runs or (100_000 if args.quick else 1_000_000)

    # byte-code as an installed labbook has it (PYTHONDONTWRITEBYTECODE may be set)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "labbook"),
                    str(REPO / "tui")], check=False, capture_output=True)  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    os.chmod(base, 0o755)
    server = None if args.url else _make_cluster(base)
    import psycopg

    try:
        if args.url:
            url = args.url
            with psycopg.connect(url) as conn:
                runs = int(conn.execute("SELECT count(*) FROM labbook.runs").fetchone()[0])  # type: ignore[index]
            print(f"{runs:,} runs in {url} (filled before)")
        else:
            assert server is not None
            url = server.create_db("lab")
            fill_s = _fill(url, runs)
            print(f"{runs:,} runs from {ORIGINS} origins generated in SQL in {fill_s:.0f} s")
        work = base / "node"
        work.mkdir()
        env = dict(os.environ, LABBOOK_REMOTE_URL=url, LABBOOK_DB=str(work / "labbook.db"),
                   HOME=str(work), XDG_CONFIG_HOME=str(work / ".config"))  # fmt: skip
        if args.mlflow_only:
            _mlflow(url, args, runs)
            return
        _floor(env, work, args.repeat)

        with psycopg.connect(url) as conn:
            row: Any = conn.execute(
                "SELECT id FROM labbook.runs ORDER BY coalesce(started_at, created_at) DESC LIMIT 1"
            ).fetchone()
            newest = row[0]
            peer: Any = conn.execute(
                "SELECT a.id, b.id FROM labbook.runs a JOIN labbook.runs b ON b.config_sig ="
                " a.config_sig AND b.id != a.id WHERE a.status = 'finished' LIMIT 1"
            ).fetchone()
        cases = [
            ("ls --remote --json", ["ls", "--remote", "--json"]),
            ("ls --remote --where (param + metric)",
             ["ls", "--remote", "--json", "-w", "optimizer.lr>=0.01", "-w", "val_loss<0.5"]),
            ("ls --remote --status failed", ["ls", "--remote", "--json", "-s", "failed"]),
            ("search --remote (en) out of memory", ["search", "--remote", "--json", "out of memory"]),
            ("search --remote (en) warmup clipping", ["search", "--remote", "--json", "warmup clipping"]),
            ("search --remote (zh) 学习率太高", ["search", "--remote", "--json", "学习率太高"]),
            ("search --remote (zh, 2 chars) 显存", ["search", "--remote", "--json", "显存"]),
            ("show --remote", ["show", "--remote", "--json", newest]),
            ("diff --remote (seed peers)", ["diff", "--remote", "--json", *peer]),
            ("check --remote", ["check", "--remote", "--json", "--", "python", "train.py",
                                "--lr", "0.1", "--batch-size", "128"]),
        ]  # fmt: skip
        print(f"\nwhole process, median of {args.repeat} (goal < {GOAL_MS:.0f} ms); 2 shared cores")
        results = []
        for label, cli in cases:
            cwd = "/home/lab/p7" if cli[0] == "check" else None
            if cwd:
                os.makedirs(cwd, exist_ok=True)
            try:
                ms, out = _time_cli(cli, env, args.repeat, cwd=cwd)
            except SystemExit as exc:  # one case failing (a timeout) is a figure too
                print(f"  {label:<42}  failed: {str(exc)[-160:]}  {_load()}")
                continue
            import json

            n = len(json.loads(out)) if out.strip().startswith("[") else None
            results.append((label, ms))
            what = (
                f"  ({n} hits)" if n is not None and label.startswith(("search", "check")) else ""
            )
            print(f"  {label:<42} {ms:7.0f} ms  {ms / GOAL_MS:4.2f}x goal  {_load()}{what}")
        tui = subprocess.run([sys.executable, "-c", TUI, url], capture_output=True, text=True,
                             env=env, timeout=600)  # fmt: skip
        line = next((x for x in tui.stdout.splitlines() if x.startswith("TUI ")), None)
        if line:
            first, sort = (float(v) for v in line.split()[1:])
            print(f"  {'tui: first paint (process start → rows)':<42} {first:7.0f} ms"
                  f"  {first / TUI_GOAL_MS:4.2f}x goal  {_load()}")  # fmt: skip
            print(f"  {'tui: sort by val_loss':<42} {sort:7.0f} ms"
                  f"  {sort / TUI_GOAL_MS:4.2f}x goal  {_load()}")  # fmt: skip
        else:
            print(f"  tui: failed: {tui.stderr.strip()[-500:]}")
        if args.mlflow:
            _mlflow(url, args, runs)
    finally:
        if server is not None and args.keep:
            print(f"cluster kept at {base}: {server.url('lab')}")
        elif server is not None:
            server.stop("immediate")
        if not args.keep or server is None:
            shutil.rmtree(base, ignore_errors=True)


def _floor(env: dict[str, str], work: Path, repeat: int) -> None:
    """What every --remote command pays before its first query, at this moment."""
    run = work / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("lr: 0.1\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    subprocess.run([sys.executable, "-m", "labbook", "import", str(run.parent)], env=env,
                   capture_output=True, check=True, timeout=600)  # fmt: skip
    print(f"\nfloor, whole process, median of {repeat}:")
    for label, argv in [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import psycopg'", [sys.executable, "-c", "import psycopg"]),
        ("labbook ls --json (local, 1 run)", [sys.executable, "-m", "labbook", "ls", "--json"]),
        ("labbook ls --remote --json -n 1",
         [sys.executable, "-m", "labbook", "ls", "--remote", "--json", "-n", "1"]),
    ]:  # fmt: skip
        ms, _ = _time_cli([], env, repeat, argv=argv)
        print(f"  {label:<42} {ms:7.0f} ms  {_load()}")


def _mlflow(url: str, args: Any, runs: int) -> None:
    """MLflow's tracking store on the same server, filled from the same rows."""
    import psycopg

    py = Path(args.mlflow_venv) / "bin" / "python"
    if not py.exists():
        print(
            f"\nmlflow: no venv at {args.mlflow_venv} (python -m venv it, pip install mlflow psycopg2-binary)"
        )
        return
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "mlflow" WITH (FORCE)')
        conn.execute('CREATE DATABASE "mlflow"')
    mlurl = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + "/mlflow"
    script = textwrap.dedent(
        f"""
        import time, statistics, mlflow, psycopg2
        print(f"MLVERSION {{mlflow.__version__}}")
        from mlflow.tracking import MlflowClient
        uri = {mlurl!r}
        client = MlflowClient(tracking_uri=uri)  # MLflow makes its schema (alembic)
        exp = client.create_experiment("lab")
        conn = psycopg2.connect({url!r}); cur = conn.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        conn.commit()
        ml = psycopg2.connect(uri.replace("postgresql+psycopg2://", "postgresql://")); m = ml.cursor()
        m.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        src = {url!r}.replace("postgresql://", "").split("@")[1]
        host, rest = src.split(":"); port, db = rest.split("/")
        conn_s = f"host={{host}} port={{port}} dbname={{db}} user=postgres"
        t0 = time.time()
        m.execute(f\"\"\"INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,
            user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,
            experiment_id)
            SELECT id, name, 'LOCAL', '', '', "user", 'FINISHED', 0, 0, '', 'active', '', {{exp}}
            FROM dblink('{{conn_s}}', 'SELECT id, name, "user" FROM labbook.runs')
                 AS t(id text, name text, "user" text)\"\"\")
        m.execute(f\"\"\"INSERT INTO params (key, value, run_uuid)
            SELECT key, coalesce(num::text, trim(both '"' from value)), run_id
            FROM dblink('{{conn_s}}', 'SELECT run_id, key, value, num FROM labbook.params')
                 AS t(run_id text, key text, value text, num double precision)\"\"\")
        m.execute(f\"\"\"INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
            SELECT tag, last, 0, 1000, false, run_id
            FROM dblink('{{conn_s}}', 'SELECT run_id, tag, last FROM labbook.metrics')
                 AS t(run_id text, tag text, last double precision)\"\"\")
        m.execute(f\"\"\"INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)
            SELECT key, value, timestamp, step, is_nan, run_uuid FROM latest_metrics\"\"\")
        ml.commit()
        ml.autocommit = True; m.execute("VACUUM ANALYZE")
        print(f"MLFILL {{time.time() - t0:.0f}}")
        times = []
        for _ in range({args.repeat}):
            t1 = time.perf_counter()
            found = client.search_runs([exp], {FILTER!r}, max_results=50)
            times.append((time.perf_counter() - t1) * 1000)
        print(f"MLSEARCH {{statistics.median(times):.0f}} {{len(found)}}")
        """
    )
    proc = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(f"\nmlflow: failed: {proc.stderr.strip()[-800:]}")
        return
    lines = dict(x.split(" ", 1) for x in proc.stdout.splitlines() if x.startswith("ML"))
    ms, found = lines["MLSEARCH"].split()
    # MLflow as a user's script meets it: a fresh process, import, client, one search
    whole = textwrap.dedent(
        f"""
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri={mlurl!r})
        exp = client.get_experiment_by_name("lab").experiment_id
        found = client.search_runs([exp], {FILTER!r}, max_results=50)
        print(len(found))
        """
    )
    ml_whole, _ = _time_cli([], dict(os.environ), args.repeat, argv=[str(py), "-c", whole])
    print(
        f"\nMLflow {lines['MLVERSION']} tracking store on the same PostgreSQL, {runs:,} runs"
        f" (filled in {lines['MLFILL']} s)  {_load()}:"
    )
    print(f"  search_runs param + metric filter, 50 results, in-process: {float(ms):7.0f} ms")
    print(f"  the same, whole process (import, client, search):       {ml_whole:7.0f} ms")
    env = dict(os.environ, LABBOOK_REMOTE_URL=url)
    ours, out = _time_cli(["ls", "--remote", "--json", "-w", "optimizer.lr=0.1", "-w", "val_loss<0.5"],
                          env, args.repeat)  # fmt: skip
    inproc = _labbook_inprocess(url, args.repeat)
    print(f"  labbook, the same filter (ls --where, 50 records), in-process: {inproc:7.0f} ms"
          f"  → MLflow / labbook = {float(ms) / inproc:.1f}x")  # fmt: skip
    print(f"  labbook ls --remote --where, whole process:            {ours:7.0f} ms"
          f"  → MLflow / labbook = {ml_whole / ours:.1f}x  {_load()}")  # fmt: skip
    print(f"  (MLflow found {found} runs, labbook {out.count(chr(10) + '  {')})")


FILTER = "params.`optimizer.lr` = '0.1' and metrics.`val/loss` < 0.5"


def _labbook_inprocess(url: str, repeat: int) -> float:
    """labbook's query for the MLflow filter, in-process: select + records."""
    from labbook.analysis.metrics import canonical_tags
    from labbook.store.query import RunFilter, parse_where, select_runs
    from labbook.store.remote.read import RemoteStore

    store = RemoteStore.connect(url)
    flt = RunFilter(
        where=parse_where(["optimizer.lr=0.1", "val_loss<0.5"]), limit=50,
        metric_names=canonical_tags,
    )  # fmt: skip
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        store.records(select_runs(store, flt))
        times.append((time.perf_counter() - t0) * 1000)
    store.close()
    return statistics.median(times)


if __name__ == "__main__":
    main()
