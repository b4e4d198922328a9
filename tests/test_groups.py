"""Seed groups made by real short training runs: ``ls --group``, ``compare --group``,
the ``group`` field of ``--json``, ``diff`` between two groups.

Each run is a real child process (``labbook run -- python train.py --seed N …``) of
a tiny pure-Python training loop in a real git repository; the statistics are
checked against a direct computation (``statistics`` and Welch's test by hand, its
p-value by numerical integration of Student's t density, not labbook's).
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.seed_lab import Planned, record_lab

TRAIN = """\
import argparse, random
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--width", type=int, default=8)  # changes nothing the loop computes
p.add_argument("--steps", type=int, default=6)
a = p.parse_args()
rng = random.Random(a.seed)
w = 0.0
for step in range(1, a.steps + 1):
    w += a.lr * (3.0 - w) + rng.gauss(0, 0.02)
    loss = (3.0 - w) ** 2
    print(f"step={step} val_loss={loss:.6f} val_acc={1 / (1 + loss):.6f}", flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A repository with 5 seeds of lr 0.3, 5 of lr 0.05 (a real gap) and 2 + 2 seeds
    of two widths at lr 0.3 that change nothing (no gap)."""
    plan: list[Planned] = [
        *[("fast", ["--lr", "0.3"], s) for s in range(1, 6)],
        *[("slow", ["--lr", "0.05"], s) for s in range(1, 6)],
        *[("w8", ["--lr", "0.3", "--width", "8"], s) for s in (11, 12)],
        *[("w16", ["--lr", "0.3", "--width", "16"], s) for s in (13, 14)],
    ]
    return record_lab(tmp_path_factory.mktemp("lab"), TRAIN, plan)


def _cli(lab: dict[str, object], *args: str) -> str:
    r = run_cli(*args, db=lab["db"], env=lab["env"])  # type: ignore[arg-type]
    assert r.returncode == 0, r.stderr
    return r.stdout


def _records(lab: dict[str, object]) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in json.loads(_cli(lab, "ls", "-n", "0", "--json"))}


def test_json_group_field(lab: dict[str, object]) -> None:
    recs = _records(lab)
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    fast = {recs[i]["group"]["id"] for i in runs["fast"]}  # type: ignore[index]
    assert len(fast) == 1
    gid = next(iter(fast))
    assert gid.startswith("g") and len(gid) == 9
    for i in runs["fast"]:
        assert recs[i]["group"] == {"kind": "seed", "id": gid, "size": 5}
    # w8 and w16 differ in a config value: two groups of 2; slow is a third
    ids = {label: {recs[i]["group"]["id"] for i in runs[label]} for label in runs}  # type: ignore[index]
    assert all(len(v) == 1 for v in ids.values())
    assert len({next(iter(v)) for v in ids.values()}) == 4
    shown = json.loads(_cli(lab, "show", runs["w8"][0], "--json"))
    assert shown["group"] == {"kind": "seed", "id": next(iter(ids["w8"])), "size": 2}
    assert shown["sweep"] is None


def test_ls_group_statistics_match_a_direct_computation(lab: dict[str, object]) -> None:
    recs = _records(lab)
    groups = json.loads(_cli(lab, "ls", "--group", "--json"))
    assert sorted(g["size"] for g in groups) == [2, 2, 5, 5]
    for g in groups:
        members = [recs[i] for i in g["members"]]
        assert {m["group"]["id"] for m in members} == {g["id"]}  # type: ignore[index]
        assert g["statuses"] == {"finished": g["size"]}
        for metric in ("val_loss", "val_acc"):
            values = [m["metrics"][metric]["last"] for m in members]  # type: ignore[index]
            stat = g["metrics"][metric]
            assert stat["n"] == len(values)
            assert stat["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
            assert stat["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
            assert (stat["min"], stat["max"]) == (min(values), max(values))
        # the best member: the lowest val_loss (a loss: lower is better)
        best = min(members, key=lambda m: m["metrics"]["val_loss"]["last"])  # type: ignore[index]
        assert g["primary"] == "val_loss" and g["best"]["id"] == best["id"]


def test_ls_group_table_and_expand(lab: dict[str, object]) -> None:
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    text = _cli(lab, "ls", "--group", "--format", "plain")
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["group", "n", "status", "name"]
    assert len(lines) == 5
    assert any(" 5 finished " in ln for ln in lines)
    assert "±" in text and "seed=" not in text  # group names leave the seed out
    wide = _cli(lab, "ls", "--group", "--wide", "--format", "plain")
    assert "–" in wide  # min–max
    one = _cli(lab, "ls", "--group", runs["slow"][2], "--format", "plain")
    assert all(rid in one for rid in runs["slow"])
    assert not any(rid in one for rid in runs["fast"])
    gid = json.loads(_cli(lab, "show", runs["slow"][0], "--json"))["group"]["id"]
    assert _cli(lab, "ls", "--group", gid, "--format", "plain") == one
    expanded = _cli(lab, "ls", "--group", "--expand", "--format", "plain")
    assert all(rid in expanded for ids in runs.values() for rid in ids)
    assert _cli(lab, "ls", "--group", "-q").split() == [
        g["id"] for g in json.loads(_cli(lab, "ls", "--group", "--json"))
    ]
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(_cli(lab, "ls", "--group", "--format", "csv"))))
    assert sorted(int(r["n"]) for r in rows) == [2, 2, 5, 5]
    assert {"val_loss.mean", "val_loss.std", "val_loss.min", "val_loss.max"} <= set(rows[0])


def _welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(difference, t, df) of Welch's test of b against a."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(b) - statistics.mean(a)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return statistics.mean(b) - statistics.mean(a), t, df


def _t_two_sided_p(t: float, df: float) -> float:
    """2 * P(T > |t|) by Simpson's rule over Student's t density (substituting
    x = |t| + u / (1 - u) to reach infinity)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def f(u: float) -> float:
        if u >= 1.0:
            return 0.0
        x = abs(t) + u / (1 - u)
        return c * (1 + x * x / df) ** (-(df + 1) / 2) / (1 - u) ** 2

    n = 20000
    h = 1.0 / n
    total = f(0) + f(1) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return 2 * total * h / 3


def test_compare_group_real_gap(lab: dict[str, object]) -> None:
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    recs = _records(lab)
    a, b = runs["slow"][0], runs["fast"][0]
    out = json.loads(_cli(lab, "compare", "--group", a, b, "--json"))
    loss = out["metrics"]["val_loss"]
    va = [recs[i]["metrics"]["val_loss"]["last"] for i in runs["slow"]]  # type: ignore[index]
    vb = [recs[i]["metrics"]["val_loss"]["last"] for i in runs["fast"]]  # type: ignore[index]
    diff, t, df = _welch_by_hand(va, vb)
    assert loss["a"]["n"] == loss["b"]["n"] == 5
    assert loss["difference"] == pytest.approx(diff, rel=1e-9)
    assert loss["df"] == pytest.approx(df, rel=1e-9)
    assert loss["p"] == pytest.approx(_t_two_sided_p(t, df), rel=1e-4, abs=1e-12)
    assert loss["direction"] == "min" and loss["verdict"] == "b"  # B's loss is lower
    assert out["metrics"]["val_acc"]["verdict"] == "b"  # and its accuracy higher
    text = _cli(lab, "compare", "--group", a, b, "--format", "plain")
    assert "B is better on val_loss: " in text and "n 5 vs 5" in text
    # the other way round, A is the better one
    back = json.loads(_cli(lab, "compare", "--group", b, a, "--json"))
    assert back["metrics"]["val_loss"]["verdict"] == "a"


def test_compare_group_no_gap_asks_for_seeds(lab: dict[str, object]) -> None:
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    a, b = runs["w8"][0], runs["w16"][0]
    out = json.loads(_cli(lab, "compare", "--group", a, b, "--json"))
    loss = out["metrics"]["val_loss"]
    assert (loss["a"]["n"], loss["b"]["n"]) == (2, 2)
    assert loss["verdict"] == "noise"
    assert loss["hint"] == [f"labbook replicate {a} --seeds 3", f"labbook replicate {b} --seeds 3"]
    text = _cli(lab, "compare", "--group", a, b, "--format", "plain")
    assert "val_loss: not distinguishable from seed noise with n 2 vs 2" in text
    assert f"`labbook replicate {a} --seeds 3`" in text


def test_compare_group_usage(lab: dict[str, object]) -> None:
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    r = run_cli("compare", "--group", runs["w8"][0], db=lab["db"], env=lab["env"])  # type: ignore[arg-type]
    assert r.returncode == 2 and r.stderr.startswith("labbook: error: compare --group takes two")
    r = run_cli("compare", "--group", runs["w8"][0], runs["w8"][1], db=lab["db"], env=lab["env"])  # type: ignore[arg-type]
    assert r.returncode == 2 and "one seed group" in r.stderr


def test_diff_says_the_same(lab: dict[str, object]) -> None:
    runs: dict[str, list[str]] = lab["runs"]  # type: ignore[assignment]
    a, b = runs["slow"][0], runs["fast"][0]
    d = json.loads(_cli(lab, "diff", a, b, "--json"))
    noise = d["metrics"]["val_loss"]["seed_noise"]
    cmp = json.loads(_cli(lab, "compare", "--group", a, b, "--json"))["metrics"]["val_loss"]
    assert noise["test"] == "welch" and noise["verdict"] == cmp["verdict"] == "b"
    assert noise["difference"] == pytest.approx(cmp["difference"])
    assert noise["p"] == pytest.approx(cmp["p"])
    assert "B is better on val_loss" in _cli(lab, "diff", a, b, "--color", "never")
    same = _cli(lab, "diff", runs["w8"][0], runs["w16"][0], "--color", "never")
    assert f"`labbook replicate {runs['w8'][0]} --seeds 3`" in same


def test_replicate_sweep_from_env(lab: dict[str, object], tmp_path: Path) -> None:
    """labbook run records LABBOOK_SWEEP (set by labbook replicate) as the run's sweep."""
    env = {**lab["env"], "LABBOOK_SWEEP": "rep-123"}  # type: ignore[dict-item]
    ids = []
    for seed in (21, 22):
        r = run_cli(
            "run", "--", "python", "train.py", "--seed", str(seed), "--lr", "0.2",
            db=lab["db"], cwd=lab["root"], env=env,  # type: ignore[arg-type]
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(_cli(lab, "show", "@last", "--json"))["id"])
    rec = json.loads(_cli(lab, "show", ids[0], "--json"))
    assert rec["sweep"]["kind"] == "replicate" and rec["sweep"]["size"] == 2
    assert rec["group"]["size"] == 2
    view = json.loads(_cli(lab, "ls", "--sweep", "rep-123", "--json"))
    assert len(view) == 1 and view[0]["id"] == rec["sweep"]["id"]
    assert view[0]["swept"] == [] and [p["size"] for p in view[0]["points"]] == [2]


CFG_TRAIN = """\
import argparse, random, sys
p = argparse.ArgumentParser()
p.add_argument("--config")
a = p.parse_args()
cfg = {}
for line in open(a.config):
    key, _, value = line.partition(":")
    if value.strip():
        cfg[key.strip()] = value.strip()
lr, rng, w = float(cfg["lr"]), random.Random(int(cfg["seed"])), 0.0
for step in range(1, 4):
    w += lr * (3.0 - w) + rng.gauss(0, 0.02)
    print(f"step={step} val_loss={(3.0 - w) ** 2:.6f}", flush=True)
"""


def test_runs_of_one_config_file_with_different_contents_are_not_one_group(
    tmp_path: Path,
) -> None:
    """``--config cfg.yaml`` names a file: its contents, not its name, are the config
    (a seed inside it still groups; a secret inside it is redacted)."""
    from tests.conftest import git
    from tests.seed_lab import lab_env

    env = lab_env(tmp_path / "home")
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "cfgtrain.py").write_text(CFG_TRAIN)
    (root / ".gitignore").write_text("cfg.yaml\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "train")
    db = tmp_path / "labbook.db"
    token = "hf_" + "Q" * 34
    ids: dict[tuple[float, int], str] = {}
    for lr, seed in ((0.1, 1), (0.9, 1), (0.5, 1), (0.1, 2)):
        (root / "cfg.yaml").write_text(
            f"optimizer:\n  lr: {lr}\ntrain:\n  seed: {seed}\nhub_token: {token}\n"
        )
        r = run_cli(
            "run", "--", "python", "cfgtrain.py", "--config", "cfg.yaml", db=db, cwd=root, env=env
        )
        assert r.returncode == 0, r.stderr
        ids[(lr, seed)] = json.loads(run_cli("show", "@last", "--json", db=db, env=env).stdout)[
            "id"
        ]
    groups = json.loads(run_cli("ls", "--group", "--json", db=db, env=env).stdout)
    assert sorted(g["size"] for g in groups) == [1, 1, 2]
    pair = next(g for g in groups if g["size"] == 2)
    assert set(pair["members"]) == {ids[(0.1, 1)], ids[(0.1, 2)]}
    rec = json.loads(run_cli("show", ids[(0.9, 1)], "--json", db=db, env=env).stdout)
    cfg = rec["config"]
    assert cfg["config"] == "cfg.yaml"
    assert (cfg["config.optimizer.lr"], cfg["config.train.seed"]) == (0.9, 1)
    assert cfg["config.hub_token"] == "<redacted>"
    conn = sqlite3.connect(db)
    try:
        stored = "\n".join(str(v) for row in conn.execute("SELECT * FROM runs") for v in row)
    finally:
        conn.close()
    assert token not in stored
    where = run_cli("ls", "--where", "config.optimizer.lr=0.1", "--json", db=db, env=env)
    assert {r["id"] for r in json.loads(where.stdout)} == {ids[(0.1, 1)], ids[(0.1, 2)]}
    # an unreadable file: one warning naming it, the run recorded with the file's name
    (root / "cfg.yaml").write_text("lr: [0.1\n")
    r = run_cli(
        "run", "--", "python", "-c", "pass", "--config", "cfg.yaml", db=db, cwd=root, env=env
    )
    assert r.returncode == 0
    assert [line for line in r.stderr.splitlines() if "cfg.yaml" in line] == [
        next(line for line in r.stderr.splitlines() if "malformed YAML" in line)
    ]
    rec = json.loads(run_cli("show", "@last", "--json", db=db, env=env).stdout)
    assert rec["config"] == {"config": "cfg.yaml"}
