"""Every recogniser against real framework output (tests/fixtures/*/expected.json).

Each fixture directory was produced by running the framework itself (the script
that made it is beside it). ``expected.json`` lists, per run directory, what a
correct reader recovers; and ``not_runs`` lists directories that must not be
reported as runs (hparams sub-directories, checkpoints, sweep dirs, …).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from labbook.sources.importer import import_paths
from tests.conftest import FIXTURES

FIXTURE_DIRS = sorted(p.parent for p in FIXTURES.glob("*/expected.json"))

#: Which recorded seed sources satisfy an expected source kind.
SEED_SOURCES = {
    "config": ("config:", "hf-args:", "labbook.json:"),
    "log": ("log:",),
    "argv": ("argv:",),
    "hydra": ("hydra:", "config:"),
    "env": ("env:",),
}


@pytest.fixture(scope="module", params=[p.name for p in FIXTURE_DIRS])
def imported(request, tmp_path_factory):
    from labbook.store import Store

    name = request.param
    work = tmp_path_factory.mktemp(f"fx-{name}")
    copy = work / name
    shutil.copytree(FIXTURES / name, copy, symlinks=True)
    expected = json.loads((copy / "expected.json").read_text())
    store = Store.open(work / "labbook.db")
    import_paths(store, [copy], git=False)
    records = {}
    for rec in store.records(_rows(store), heavy=True):
        path = rec["path"]
        rel = (
            Path(path.split("#", 1)[0]).relative_to(copy).as_posix()
            if path.startswith(str(copy))
            else path
        )
        key = rel + ("#" + path.split("#", 1)[1] if "#" in path else "")
        records[key] = rec
    yield name, expected, records
    store.close()


def _rows(store):
    cur = store.conn.execute("SELECT * FROM runs")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]


def _close(actual, expected) -> bool:
    if isinstance(expected, str):
        return str(actual) == expected
    if expected is None:
        return actual is None
    if isinstance(expected, float) and math.isnan(expected):
        return actual == "nan"
    if isinstance(actual, str) or actual is None:
        return False
    return math.isclose(actual, expected, rel_tol=2e-3, abs_tol=1e-4)


def _find(records, rel):
    if rel in records:
        return records[rel]
    matches = [r for k, r in records.items() if k.endswith(rel) or rel in k]
    assert len(matches) == 1, f"expected one run for {rel}, found {sorted(records)}"
    return matches[0]


def test_runs_are_recognised(imported):
    _name, expected, records = imported
    for rel, exp in expected["runs"].items():
        rec = _find(records, rel)
        assert rec["framework"] == exp["framework"], rel
        assert rec["status"] == exp["status"], f"{rel}: {rec['status']} ({rec['failure']})"


def test_not_runs_are_not_runs(imported):
    _name, expected, records = imported
    for rel in expected.get("not_runs", []):
        assert rel not in records, f"{rel} must not be a run of its own"
    assert len(records) == len(expected["runs"]), sorted(records)


def test_config_seed_metrics(imported):
    _name, expected, records = imported
    for rel, exp in expected["runs"].items():
        rec = _find(records, rel)
        for key, value in (exp.get("config") or {}).items():
            assert key in rec["config"], (
                f"{rel}: config key {key} missing; have {sorted(rec['config'])[:40]}"
            )
            got = rec["config"][key]
            if isinstance(value, float):
                assert _close(got, value), f"{rel}: {key}={got!r}, expected {value!r}"
            elif isinstance(value, str) and isinstance(got, (int, float)):
                # MLflow stores params as strings; labbook records numeric ones as numbers.
                assert str(got) == value, f"{rel}: {key}={got!r}, expected {value!r}"
            else:
                assert got == value, f"{rel}: {key}={got!r}, expected {value!r}"
        seed = exp.get("seed")
        if seed is not None:
            assert rec["seed"]["value"] == seed.get("value"), f"{rel}: seed {rec['seed']}"
            if seed.get("value") is not None and seed.get("source") in SEED_SOURCES:
                assert rec["seed"]["source"].startswith(SEED_SOURCES[seed["source"]]), rec["seed"]
        for tag, m in (exp.get("metrics") or {}).items():
            assert tag in rec["metrics"], (
                f"{rel}: metric {tag} missing; have {sorted(rec['metrics'])}"
            )
            got = rec["metrics"][tag]
            if "last" in m:
                assert _close(got["last"], m["last"]), (
                    f"{rel}: {tag} last {got['last']} != {m['last']}"
                )
            if "step" in m:
                assert got["step"] == m["step"], f"{rel}: {tag} step {got['step']} != {m['step']}"
            if "count" in m:
                assert got["count"] == m["count"], (
                    f"{rel}: {tag} count {got['count']} != {m['count']}"
                )
            if "nonfinite_step" in m:
                assert got["nonfinite_step"] == m["nonfinite_step"], f"{rel}: {tag} {got}"
