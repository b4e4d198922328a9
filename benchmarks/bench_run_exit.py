"""How much the lab's notebook adds to the end of ``labbook run`` (issue #13).

Whole-process wall time of ``labbook run --no-git --no-check -- true`` (the time a
Slurm job script waits for it) with a lab notebook configured, the server:

* **up**: a throwaway PostgreSQL cluster (initdb, as tests/pg.py makes it);
* **down**: a closed port (nothing listens: connection refused);
* **blackholed**: tests/tcpproxy.py in front of the server, swallowing everything
  (a partition: the connection is accepted, never answered);

against the peers measured in the same run: the bare ``true`` and ``labbook run``
with no lab notebook configured. Prints medians and the ratios to both peers.
``PYTHONPATH=<an older checkout>`` measures that labbook (before/after a change).
Each ``labbook run`` gets a fresh store with one run already in it (so the push has
something to do), its own config.toml, spool dir and log; what it leaves running
in the background (the detached push) is waited for between samples, untimed, so
that samples do not load each other.

    python benchmarks/bench_run_exit.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cluster(base: Path) -> tuple[object, str]:
    from tests.pg import PgServer, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    base.mkdir(parents=True)
    server = PgServer(bindir, base)
    server.init()
    server.start()
    url = server.create_db("bench_run_exit")
    import psycopg

    from labbook.store.remote.schema import create_schema

    with psycopg.connect(url) as conn:
        create_schema(conn)
    return server, url


def _env(work: Path, name: str, url: str | None, i: int, **remote: object) -> dict[str, str]:
    home = work / name / str(i)
    cfg = home / "config" / "labbook"
    cfg.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{k} = {v}\n" for k, v in remote.items())
    (cfg / "config.toml").write_text(f"[remote]\n{body}" if remote else "")
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "LABBOOK_DB": str(home / "labbook.db"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("LABBOOK_REMOTE_URL", None)
    env.pop("LABBOOK_PUSH_FAULT", None)
    if url:
        env["LABBOOK_REMOTE_URL"] = url
    return env


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300
    )
    return time.perf_counter() - t0


def _settle(env: dict[str, str], timeout: float = 90.0) -> None:
    """Until no detached push of this store is left (its log says it ended), untimed."""
    log = Path(env["LABBOOK_DB"] + ".push.log")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not log.exists():
            return  # a synchronous labbook run (before the change) leaves no log
        text = log.read_text(errors="replace").splitlines()
        started = sum(1 for line in text if " pushing in the background " in line)
        ended = sum(1 for line in text if line and " pushing in the background " not in line)
        if ended >= started:
            return
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--repeat", type=int, default=None, help="samples per case")
    args = ap.parse_args()
    n = args.repeat or (3 if args.quick else 7)
    work = Path(tempfile.mkdtemp(prefix="bench_run_exit."))
    os.chmod(work, 0o755)  # the cluster runs as the postgres user when we are root
    server = None
    try:
        from tests.tcpproxy import TcpProxy

        server, url = _cluster(work / "pg")
        db = url.rsplit("/", 1)[1]
        proxy = TcpProxy("127.0.0.1", server.port, mode="blackhole")  # type: ignore[attr-defined]
        blackholed = f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}"
        down = "postgresql://postgres@127.0.0.1:1/nowhere"
        run = [sys.executable, "-m", "labbook", "run", "--no-git", "--no-check", "--", "true"]
        true = shutil.which("true") or "/bin/true"
        print(f"load average at start: {os.getloadavg()[0]:.2f}; {n} samples per case")
        cases: list[tuple[str, list[str], str | None, dict[str, object]]] = [
            ("bare `true`", [true], None, {}),
            ("labbook run, no lab notebook", run, None, {}),
            ("labbook run, server up", run, url, {}),
            ("labbook run, server down (closed port)", run, down, {"connect_timeout": 3}),
            ("labbook run, server blackholed", run, blackholed, {"connect_timeout": 3}),
        ]
        results: list[tuple[str, float]] = []
        for name, argv, target, remote in cases:
            samples = []
            for i in range(n):
                env = _env(work, name.replace(" ", "_"), target, i, **remote)
                cwd = Path(env["XDG_DATA_HOME"]).parent
                # one run already recorded (dirty), untimed, with no remote at all
                if argv is run:
                    pre = {**env}
                    pre.pop("LABBOOK_REMOTE_URL", None)
                    subprocess.run(
                        [*run[:-1], "true"], env=pre, cwd=cwd, capture_output=True, timeout=120
                    )
                samples.append(_time(argv, env, cwd))
                if argv is run:
                    _settle(env)
            results.append((name, statistics.median(samples)))
        proxy.close()
        bare, plain = results[0][1], results[1][1]
        print(f"\n{'case':<42} {'median s':>9} {'× bare true':>12} {'× no notebook':>14}")
        for name, med in results:
            print(f"{name:<42} {med:>9.3f} {med / bare:>12.0f} {med / plain:>14.2f}")
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    finally:
        if server is not None:
            server.stop("immediate")  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
