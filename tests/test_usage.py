"""``labbook usage`` over GPU samples recorded by a real ``labbook watch`` daemon.

The daemon runs in-process with a :class:`ReplayBackend` at the NVML boundary (the
only fake: this machine has no GPU); the runs are real writer processes, the store a
real SQLite file, and ``labbook usage`` the real CLI in a child process. Its figures
are checked against a computation of our own from ``labbook show --json``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from labbook.analysis.usage import Group, run_usage, usage, weighted_median
from tests.conftest import run_cli
from tests.test_watch_daemon import DEADLINE, record_of, start_daemon, wait_for, writer

H200_MIB = 143771.0
A100_MIB = 81920.0


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs: A finished on an H200 at 90%, B failed on an A100 at 4% (idle), C
    (imported) without GPU samples."""
    from labbook.capture.gpu import GpuProcess, GpuReading, ReplayBackend

    tmp = tmp_path_factory.mktemp("usage")
    db = tmp / "labbook.db"
    root = tmp / "runs"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:  # conftest's isolation, for the whole module
        mp.setenv("HOME", str(tmp / "home"))
        mp.setenv("XDG_DATA_HOME", str(tmp / "home" / "share"))
        mp.setenv("XDG_CONFIG_HOME", str(tmp / "home" / "config"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("LABBOOK_STRICT", "1")
        mp.delenv("LABBOOK_DB", raising=False)
        mp.delenv("LABBOOK_DEBUG", raising=False)
        return _record(tmp, db, root, GpuProcess, GpuReading, ReplayBackend())


def _record(
    tmp: Path, db: Path, root: Path, GpuProcess: Any, GpuReading: Any, backend: Any
) -> dict[str, Any]:
    d, out = start_daemon(db, root, gpu=True, gpu_backend=backend)
    try:
        a = writer("jsonl", root / "a", 180, 30)
        b = writer("fail", root / "b", 90, 30)
        wait_for(lambda: (r := record_of(db, root / "a")) and r["pid"] == a.pid)
        wait_for(lambda: (r := record_of(db, root / "b")) and r["pid"] == b.pid)
        h200 = GpuReading(0, "GPU-aaa", "Fake H200", 90.0, 40000.0, H200_MIB, 400.0, 60.0)
        a100 = GpuReading(1, "GPU-bbb", "Fake A100", 4.0, 3000.0, A100_MIB, 60.0, 40.0)
        backend.push(
            [h200, a100], [GpuProcess(a.pid, 0, 31.0 * 1024), GpuProcess(b.pid, 1, 2048.0)]
        )
        assert a.wait(timeout=DEADLINE) == 0
        assert b.wait(timeout=DEADLINE) == 1
        for name in ("a", "b"):

            def ended(n: str = name) -> Any:
                r = record_of(db, root / n)
                return r and r["ended_at"] and r["gpu"]

            wait_for(ended)
    finally:
        d.stop()
    other = tmp / "imported" / "c"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("lr: 0.1\n")
    (other / "metrics.jsonl").write_text("".join(f'{{"step": {i}, "loss": 1}}\n' for i in range(5)))
    imported = run_cli("import", str(other), db=db)
    assert imported.returncode == 0 and "1 new" in imported.stdout, imported.stderr
    records = {
        Path(r["path"]).name: json.loads(run_cli("show", r["id"], "--json", db=db).stdout)
        for r in json.loads(run_cli("ls", "--json", db=db).stdout)
    }
    return {"db": db, "records": records, "log": out.getvalue()}


def _mine(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures, computed here from the records' own fields."""
    gpu_h = lost = energy = 0.0
    peak: float | None = None
    cap: float | None = None
    idle, without = [], 0
    util: list[tuple[float, float]] = []
    for r in records:
        gpu = r["gpu"]
        if not gpu or not gpu["devices"]:
            without += 1
            continue
        wall_h = (_iso(r["ended_at"]) - _iso(r["started_at"])) / 3600
        for dev in gpu["devices"]:
            gpu_h += wall_h
            if r["status"] in ("failed", "diverged", "killed"):
                lost += wall_h
            energy += dev["mean_power_w"] * wall_h / 1000
            if peak is None or dev["peak_memory_mib"] > peak:
                peak, cap = dev["peak_memory_mib"], dev["memory_total_mib"]
            util.append((dev["mean_util_pct"], wall_h))  # constant readings: mean = samples
            if dev["mean_util_pct"] < 10:
                idle.append(r["id"])
    # the median GPU time's utilisation: the value of the run with the most GPU-hours
    # here (two runs, each at one constant utilisation)
    median = max(util, key=lambda u: u[1])[0] if util else None
    return {
        "gpu_hours": gpu_h,
        "lost_gpu_hours": lost,
        "energy_kwh": energy if without < len(records) else None,
        "peak_memory_mib": peak,
        "memory_total_mib": cap,
        "median_util_pct": median,
        "idle_run_ids": idle,
        "runs": len(records) - without,
        "runs_without_gpu_samples": without,
    }


def _check(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert got[key] == value, key


def test_runs_are_recorded_with_gpu_samples(recorded: dict[str, Any]) -> None:
    recs = recorded["records"]
    assert recs["a"]["status"] == "finished", recorded["log"]
    assert recs["b"]["status"] == "failed", recorded["log"]
    assert recs["a"]["gpu"]["devices"][0]["name"] == "Fake H200"
    assert recs["b"]["gpu"]["devices"][0]["name"] == "Fake A100"
    assert recs["c"]["gpu"] is None
    series = recs["a"]["gpu"]["series"]["gpu0/util_pct"]
    assert len(series) >= 2 and {p[1] for p in series} == {90.0}


def test_total_matches_a_direct_computation(recorded: dict[str, Any]) -> None:
    r = run_cli("usage", "--since", "all", "--json", db=recorded["db"])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["by"] is None and got["groups"] == []
    want = _mine(list(recorded["records"].values()))
    assert want["gpu_hours"] > 0 and want["lost_gpu_hours"] > 0
    _check(got["total"], want)
    assert got["total"]["idle_runs"] == 1
    assert got["total"]["idle_run_ids"] == [recorded["records"]["b"]["id"]]


@pytest.mark.parametrize("by", ["status", "gpu", "user", "host", "repo"])
def test_groups_match_a_direct_computation(recorded: dict[str, Any], by: str) -> None:
    r = run_cli("usage", "--since", "all", "--by", by, "--json", db=recorded["db"])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    recs = recorded["records"]
    expect: dict[str, list[dict[str, Any]]] = {}
    if by == "gpu":
        expect = {"Fake H200": [recs["a"]], "Fake A100": [recs["b"]]}
    else:
        for rec in recs.values():
            key = rec["status"] if by == "status" else (rec[by] if by != "repo" else None)
            expect.setdefault(key or "(none)", []).append(rec)
    groups = {g["key"]: g for g in got["groups"]}
    assert set(groups) == set(expect)
    for key, members in expect.items():
        want = _mine(members)
        if by == "gpu":
            want["runs_without_gpu_samples"] = 0
        _check(groups[key], want)
    # most GPU-hours first, and the total is of all runs
    hours = [g["gpu_hours"] for g in got["groups"]]
    assert hours == sorted(hours, reverse=True)
    _check(got["total"], _mine(list(recs.values())))


def test_csv_reads_back(recorded: dict[str, Any]) -> None:
    r = run_cli("usage", "--since", "all", "--by", "gpu", "--format", "csv", db=recorded["db"])
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["gpu"] for row in rows] == ["Fake H200", "Fake A100", "(total)"]
    js = json.loads(
        run_cli("usage", "--since", "all", "--by", "gpu", "--json", db=recorded["db"]).stdout
    )
    for row, g in zip(rows, [*js["groups"], js["total"]], strict=True):
        assert float(row["gpu_hours"]) == g["gpu_hours"]
        assert float(row["energy_kwh"]) == g["energy_kwh"]
        assert json.loads(row["idle_run_ids"]) == g["idle_run_ids"]


def test_table_says_it_and_fits_the_terminal(recorded: dict[str, Any]) -> None:
    db = recorded["db"]
    b = recorded["records"]["b"]["id"]
    wide = run_cli(
        "usage", "--since", "all", "--by", "gpu", "--format", "table", db=db, env={"COLUMNS": "120"}
    )
    assert wide.returncode == 0, wide.stderr
    lines = wide.stdout.splitlines()
    assert lines[0].split()[:4] == ["gpu", "GPU", "runs", "GPU-h"]
    h200 = next(line for line in lines if line.startswith("Fake H200"))
    assert "31 of 140 GiB" in h200 and "90%" in h200
    assert any(line.startswith("total") for line in lines)
    assert "1 run without GPU samples" in lines
    assert any(line.startswith("1 run held a GPU under 10% utilisation: " + b) for line in lines)
    for cols in (80, 60, 40):
        narrow = run_cli(
            "usage",
            "--since",
            "all",
            "--by",
            "gpu",
            "--format",
            "table",
            db=db,
            env={"COLUMNS": str(cols)},
        )
        assert narrow.returncode == 0
        assert all(len(line) <= cols for line in narrow.stdout.splitlines()), narrow.stdout


def test_since_leaves_out_older_runs(recorded: dict[str, Any]) -> None:
    r = run_cli("usage", "--since", "2999-01-01", "--json", db=recorded["db"])
    assert r.returncode == 0, r.stderr
    total = json.loads(r.stdout)["total"]
    assert total["runs"] == 0 and total["runs_without_gpu_samples"] == 0
    bad = run_cli("usage", "--since", "yesterday", db=recorded["db"])
    assert bad.returncode == 2 and bad.stderr.startswith("labbook: error:")


# -- the computation alone -------------------------------------------------------------


def test_weighted_median() -> None:
    assert weighted_median([]) is None
    assert weighted_median([(5.0, 1.0)]) == 5.0
    assert weighted_median([(90.0, 3.0), (4.0, 1.0)]) == 90.0
    assert weighted_median([(90.0, 1.0), (4.0, 3.0)]) == 4.0
    assert weighted_median([(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]) == 2.0


def test_samples_stand_for_equal_shares_of_time() -> None:
    """A GPU's samples split its hours: 3 samples of 10% and one of 80% over 4 hours,
    against another run's 2 hours at 50%: half the 6 GPU-hours lie at or below 10%."""
    rows = [
        {
            "id": "r1",
            "status": "finished",
            "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T04:00:00Z",
            "gpu": {
                "mean_util_pct": 27.5,
                "devices": [
                    {"index": 0, "name": "G", "mean_util_pct": 27.5, "mean_power_w": 250.0}
                ],
                "series": {
                    "gpu0/util_pct": [[0, 10.0, 1], [1, 10.0, 2], [2, 10.0, 3], [3, 80.0, 4]]
                },
            },
        },
        {
            "id": "r2",
            "status": "killed",
            "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T02:00:00Z",
            "gpu": {"devices": [{"index": 0, "name": "G", "mean_util_pct": 50.0}]},
        },
    ]
    u = usage(rows)
    assert u.total.gpu_hours == 6.0 and u.total.lost_gpu_hours == 2.0
    assert u.total.median_util_pct == 10.0
    assert u.total.energy_kwh == 1.0  # 250 W for 4 h; r2's GPU gave no power
    assert run_usage(rows[1]).wall_hours == 2.0
    assert isinstance(u.total, Group) and not u.total.idle


def test_runs_without_an_end_count_until_their_last_sample() -> None:
    gpu = {"devices": [{"index": 0, "name": "G"}], "first_at": 1000.0, "last_at": 4600.0}
    running = {"id": "x", "status": "running", "started_at": None, "ended_at": None, "gpu": gpu}
    gone = {**running, "status": "unknown"}
    assert run_usage(gone, now=8200.0).wall_hours == 1.0
    # a run left "running" after its node died: its last sample ends it, whenever asked
    assert run_usage(running, now=8200.0).wall_hours == 1.0
    assert run_usage(running, now=1_000_000.0).wall_hours == 1.0
    # a running run with no sample time known counts until now
    unsampled = {**running, "started_at": 1000.0, "gpu": {**gpu, "last_at": None}}
    assert run_usage(unsampled, now=8200.0).wall_hours == 2.0
