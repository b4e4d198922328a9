"""Push throughput into the lab's notebook (issue #13): N node processes × R runs.

A throwaway PostgreSQL cluster (initdb, as tests/pg.py makes it) and N local stores
of R runs each (a config of 40 keys, 4 metrics of 500 points, a log tail, two notes,
a tag; one env blob shared by all nodes) are made first, untimed. Then:

* **first push**: the N nodes push at once, each a separate process
  (``push_round``); wall time until the last is done, runs/s over all;
* **unchanged re-push**: each node pushes again with nothing dirty (connect, check,
  heartbeat: what ``labbook remote push`` does), median and p90 of repeated rounds;
  and the same round as ``labbook watch`` runs it (``lazy``: nothing dirty, no
  spool file, a heartbeat under a minute old: no connection at all);
* **one changed run**: a note added, then a push (the steady state of a watch).

The peer is the prototype's figure from ../shared/TEAM.md (8 × 500 in 4.5 s;
unchanged re-push 8 ms), printed as a ratio. ``--quick``: 4 nodes × 100 runs.

    python benchmarks/bench_remote_push.py [--quick] [--nodes 8] [--runs 500]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROTO_FIRST_S = 4.5  # 8 nodes × 500 runs (TEAM.md)
PROTO_REPUSH_MS = 8.0

MAKE = textwrap.dedent(
    """
    import sys, random
    from labbook.model import EnvInfo, Point, RunFacts
    from labbook.store import Store
    db, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rnd = random.Random(root)
    env = EnvInfo(source="process", python="3.11.7", packages={"torch": "2.4.0"})
    with Store.open(db) as st:
        for i in range(n):
            f = RunFacts(path=f"{root}/r{i}", framework="generic", source_key=f"{root}/r{i}",
                         name=f"run-{i}", status="completed", started_at=1.79e9 + i,
                         ended_at=1.79e9 + i + 600, command=["python", "train.py", f"--lr={i}"],
                         config={**{f"model.layer{k}.width": k * i for k in range(36)},
                                 "lr": 0.001 * i, "seed": i, "optimizer": "adam", "data": "/d"},
                         metrics={t: [Point(s, rnd.random()) for s in range(500)]
                                  for t in ("train/loss", "val/loss", "val/acc", "lr")},
                         log_tail=f"epoch {i} done\\n" * 40, env=env, tags=["sweep-a"])
            rid, _ = st.save_run(f)
            st.add_note(rid, f"run {i}: lr {0.001 * i} looked fine")
            st.add_note(rid, "CUDA out of memory at step 300 学习率太高")
    """
)

PUSH = textwrap.dedent(
    """
    import sys, time, json
    from labbook.store import Store
    from labbook.store.remote.config import RemoteConfig
    from labbook.store.remote.push import push_round
    db, url, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = RemoteConfig(url=url)
    with Store.open(db) as st:
        while time.time() < go:
            time.sleep(0.001)
        t0 = time.perf_counter()
        res = push_round(st, cfg)
        first = time.perf_counter() - t0
        re = []
        for _ in range(int(sys.argv[4])):
            t0 = time.perf_counter()
            r2 = push_round(st, cfg)
            re.append(time.perf_counter() - t0)
            assert r2.pushed == 0
        lazy = []
        for _ in range(int(sys.argv[4])):
            t0 = time.perf_counter()
            push_round(st, cfg, lazy=True)
            lazy.append(time.perf_counter() - t0)
        rid = st.conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
        one = []
        for k in range(5):
            st.add_note(rid, f"one more {k}")
            t0 = time.perf_counter()
            r3 = push_round(st, cfg)
            one.append(time.perf_counter() - t0)
            assert r3.pushed == 1
    print(json.dumps({"first": first, "pushed": res.pushed, "blobs": res.blobs,
                      "end": time.time(), "repush": re, "lazy": lazy, "one": one}))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    nodes = args.nodes or (4 if args.quick else 8)
    runs = args.runs or (100 if args.quick else 500)
    import json

    from tests.pg import PgServer, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-push-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}")
    pgdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    os.chmod(pgdir, 0o755)
    server = PgServer(bindir, pgdir)
    server.init()
    server.start()
    try:
        url = server.create_db("bench")
        r = subprocess.run(
            [sys.executable, "-m", "labbook", "remote", "init", url],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(work)},
        )
        if r.returncode:
            sys.exit(r.stderr)
        make = work / "make.py"
        make.write_text(MAKE)
        push = work / "push.py"
        push.write_text(PUSH)
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(work)}
        t0 = time.perf_counter()
        makers = [
            subprocess.Popen(
                [sys.executable, str(make), str(work / f"n{i}.db"), f"/nfs/n{i}", str(runs)],
                env=env,
            )
            for i in range(nodes)
        ]
        for p in makers:
            if p.wait():
                sys.exit("making the stores failed")
        print(f"made {nodes} stores × {runs} runs in {time.perf_counter() - t0:.1f} s (untimed)")
        go = time.time() + 1.5
        pushers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(push),
                    str(work / f"n{i}.db"),
                    url,
                    str(go),
                    str(args.repeats),
                ],
                env={**env, "HOSTNAME": f"gpu{i:02d}"},
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(nodes)
        ]
        results = []
        for p in pushers:
            out, _ = p.communicate()
            if p.returncode:
                sys.exit("a push failed")
            results.append(json.loads(out))
        first_wall = max(r["first"] for r in results)
        total = sum(r["pushed"] for r in results)
        repush = sorted(x * 1000 for r in results for x in r["repush"])
        one = sorted(x * 1000 for r in results for x in r["one"])
        med = statistics.median(repush)
        p90 = repush[int(0.9 * (len(repush) - 1))]
        with server.admin() as c:
            size = c.execute("SELECT pg_database_size('bench')").fetchone()[0]
        print()
        print(f"| {nodes} nodes × {runs} runs | labbook | prototype | ratio |")
        print("|---|---|---|---|")
        scale = (nodes * runs) / (8 * 500)
        print(
            f"| first push, wall (all nodes at once) | {first_wall:.2f} s ({total / first_wall:.0f}"
            f" runs/s) | {PROTO_FIRST_S * scale:.2f} s (scaled) | {first_wall / (PROTO_FIRST_S * scale):.2f} |"
        )
        print(
            f"| unchanged re-push (labbook remote push), median (p90) | {med:.1f} ms ({p90:.1f}) | {PROTO_REPUSH_MS:.0f} ms"
            f" | {med / PROTO_REPUSH_MS:.2f} |"
        )
        lazy = sorted(x * 1000 for r in results for x in r["lazy"])
        print(
            f"| unchanged round of labbook watch (no connection), median | "
            f"{statistics.median(lazy):.2f} ms | {PROTO_REPUSH_MS:.0f} ms |"
            f" {statistics.median(lazy) / PROTO_REPUSH_MS:.3f} |"
        )
        print(f"| one changed run, median | {statistics.median(one):.1f} ms | — | — |")
        print(f"server database after the push: {size / 1e6:.1f} MB; runs pushed: {total}")
    finally:
        server.stop("fast")
        shutil.rmtree(pgdir, ignore_errors=True)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
