"""Metrics from what training scripts print: the log grammar over fixtures of the line
shapes popular scripts print (precision and recall), the incremental reader, and
``labbook run`` / ``labbook watch`` recording them through the real CLI and daemon."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from labbook.readers.logs import OutputReader, parse_metric_line, read_log
from labbook.store import Store
from tests.conftest import run_cli

PRINTED = Path(__file__).parent / "fixtures" / "printed"
NAMES = sorted(p.name[: -len(".expected.json")] for p in PRINTED.glob("*.expected.json"))
DEADLINE = 60.0


def _points(metrics: dict[str, list[Any]]) -> set[tuple[str, int, float]]:
    return {(tag, p.step, round(p.value, 6)) for tag, pts in metrics.items() for p in pts}


def _expected(name: str) -> set[tuple[str, int, float]]:
    rows = json.loads((PRINTED / f"{name}.expected.json").read_text())
    return {(t, int(s), round(float(v), 6)) for t, s, v in rows}


def test_fixtures_are_current(tmp_path: Path) -> None:
    """The fixtures are what make_fixtures.py writes (it is deterministic)."""
    import shutil

    shutil.copy(PRINTED / "make_fixtures.py", tmp_path / "make_fixtures.py")
    subprocess.run([sys.executable, str(tmp_path / "make_fixtures.py")], check=True)
    for name in NAMES:
        for suffix in (".txt", ".expected.json"):
            assert (tmp_path / f"{name}{suffix}").read_bytes() == (
                PRINTED / f"{name}{suffix}"
            ).read_bytes(), f"{name}{suffix}: run make_fixtures.py"


def test_precision_and_recall_over_the_fixtures() -> None:
    assert len(NAMES) >= 12
    found = spurious = expected = 0
    rows = []
    for name in NAMES:
        want = _expected(name)
        facts = read_log(PRINTED / f"{name}.txt")
        assert facts is not None
        got = _points(facts.metrics)
        hit = len(got & want)
        found += hit
        spurious += len(got - want)
        expected += len(want)
        rows.append(
            f"{name:22s} expected {len(want):4d} found {hit:4d} spurious {len(got - want):3d}"
        )
    recall = found / expected
    precision = found / (found + spurious) if found + spurious else 1.0
    print("\n".join(rows))
    print(f"recall {recall:.3f} precision {precision:.3f} over {expected} points")
    assert recall >= 0.95
    assert spurious <= 0.01 * (found + spurious)


def test_noise_gives_no_metrics() -> None:
    facts = read_log(PRINTED / "noise.txt")
    assert facts is not None and facts.metrics == {}
    for line in (PRINTED / "noise.txt").read_text().splitlines():
        assert parse_metric_line(line) is None, line


@pytest.mark.parametrize("name", NAMES)
def test_incremental_reader_agrees_with_read_log(name: str) -> None:
    data = (PRINTED / f"{name}.txt").read_bytes()
    rng = random.Random(name)
    reader = OutputReader()
    got: dict[str, list[Any]] = {}
    i = 0
    while i < len(data):  # arbitrary chunks: lines and UTF-8 characters cut anywhere
        n = rng.randint(1, 300)
        reader.feed(data[i : i + n])
        i += n
        reader.parse(0.01)
        for tag, pts in reader.take().items():
            got.setdefault(tag, []).extend(pts)
    reader.parse(None, final=True)
    for tag, pts in reader.take().items():
        got.setdefault(tag, []).extend(pts)
    facts = read_log(PRINTED / f"{name}.txt")
    assert facts is not None
    assert got == facts.metrics


# --------------------------------------------------------------------------- labbook run


def _show(db: Path, ref: str = "@last") -> dict[str, Any]:
    res = run_cli("show", ref, "--json", db=db)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "train.py"
    p.write_text(textwrap.dedent(body))
    return p


def test_run_records_metrics_config_and_seed_from_output(tmp_path: Path, db_path: Path) -> None:
    fixture = PRINTED / "nanogpt.txt"
    _script(
        tmp_path,
        f"""
        import sys
        print("Namespace(lr=0.0006, batch_size=12, seed=1337, dataset='shakespeare')")
        print("Seed set to 1337")
        sys.stdout.write(open({str(fixture)!r}).read())
        """,
    )
    res = run_cli("run", "--no-git", "--", sys.executable, "train.py", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = _show(db_path)
    want = _expected("nanogpt")
    tags = {t for t, _, _ in want}
    assert set(rec["metrics"]) == tags
    for tag in tags:
        pts = sorted((s, v) for t, s, v in want if t == tag)
        m = rec["metrics"][tag]
        assert m["source"] == "output"
        assert m["count"] == len(pts) and m["step"] == pts[-1][0] and m["last"] == pts[-1][1]
    assert rec["config"]["lr"] == 0.0006 and rec["config"]["dataset"] == "shakespeare"
    assert rec["seed"]["value"] == 1337 and rec["seed"]["source"].startswith("output:")


def test_run_shows_progress_while_the_command_runs(tmp_path: Path, db_path: Path) -> None:
    go = tmp_path / "go"
    _script(
        tmp_path,
        f"""
        import os, time
        for step in range(1, 1000):
            print(f"step {{step}}: train loss {{1.0 / step:.4f}}", flush=True)
            if step >= 3 and os.path.exists({str(go)!r}):
                break
            time.sleep(0.05)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db_path), "run", "--no-git", "--",
         sys.executable, "train.py"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE
        seen: list[int] = []
        while time.monotonic() < deadline:
            if db_path.exists():
                res = run_cli("ls", "--json", db=db_path)
                runs = json.loads(res.stdout) if res.returncode == 0 and res.stdout else []
                if runs and runs[0]["status"] == "running":
                    m = runs[0]["metrics"].get("train_loss")
                    if m and m["count"] >= 2:
                        seen.append(m["step"])
                        if len(seen) >= 2 and seen[-1] > seen[0]:
                            break  # points arrive while it runs, and keep arriving
            time.sleep(0.2)
        else:
            raise AssertionError(f"no live progress in ls --json (seen {seen})")
        assert proc.poll() is None  # still running
    finally:
        go.touch()
        proc.wait(timeout=DEADLINE)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    rec = _show(db_path)
    m = rec["metrics"]["train_loss"]
    assert rec["status"] == "finished" and m["source"] == "output"
    assert m["count"] == m["step"]  # every step once: live appends and the end agree


def test_structured_metrics_win_over_printed_ones(tmp_path: Path, db_path: Path) -> None:
    _script(
        tmp_path,
        """
        import json, os, time
        os.makedirs("out/run1", exist_ok=True)
        with open("out/run1/config.yaml", "w") as f:
            f.write("lr: 0.1\\n")
        with open("out/run1/metrics.jsonl", "w") as f:
            for step in range(1, 6):
                f.write(json.dumps({"step": step, "loss": 10.0 + step}) + "\\n")
                f.flush()
                print(f"step {step}: loss {step / 10:.2f}, acc {step / 100:.2f}", flush=True)
                time.sleep(0.05)
        """,
    )
    res = run_cli("run", "--no-git", "--", sys.executable, "train.py", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = _show(db_path)
    assert rec["metrics"]["loss"]["source"] == "file"
    assert rec["metrics"]["loss"]["last"] == 15.0 and rec["metrics"]["loss"]["count"] == 5
    assert rec["metrics"]["acc"]["source"] == "output"
    assert rec["metrics"]["acc"]["last"] == 0.05 and rec["metrics"]["acc"]["count"] == 5
    assert rec["config"]["lr"] == 0.1
    assert _count_runs(db_path) == 1


def _count_runs(db: Path) -> int:
    res = run_cli("ls", "--json", "-n", "0", db=db)
    assert res.returncode == 0, res.stderr
    return len(json.loads(res.stdout))


# --------------------------------------------------------------------------- labbook watch


def test_watch_reads_a_writers_stdout_file_as_its_log(tmp_path: Path, db_path: Path) -> None:
    """``python train.py > ../logs/train.log`` writing a TensorBoard run under a watched
    root: the daemon finds the writer, sees its stdout is a regular file, and records
    what it printed (tags the event files lack), config and seed included."""
    from tests.test_watch_daemon import start_daemon, wait_for

    root = tmp_path / "work"
    root.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    go = tmp_path / "go"
    run_dir = root / "runs" / "exp1"
    (root / "train.py").write_text(
        textwrap.dedent(
            f"""
            import os, time
            from tensorboardX import SummaryWriter
            print("Namespace(lr=0.3, seed=11)", flush=True)
            w = SummaryWriter({str(run_dir)!r})
            step = 0
            while not os.path.exists({str(go)!r}) or step < 5:
                step += 1
                w.add_scalar("loss", 1.0 / step, step)
                w.flush()
                print(f"step {{step}}: loss {{5.0 / step:.4f}}, val acc {{step / 1000:.4f}}", flush=True)
                time.sleep(0.1)
            w.close()
            """
        )
    )
    daemon, _ = start_daemon(db_path, root, inactivity=30.0, git=False)
    proc = None
    try:
        with open(logs / "train.log", "w") as out:
            proc = subprocess.Popen([sys.executable, "train.py"], cwd=root, stdout=out)

        def printed() -> dict[str, Any] | None:
            if not db_path.exists():
                return None
            with Store.open(db_path) as s:
                rid = s.id_for_source(str(run_dir))
                rec = s.record(rid) if rid else None
            acc = (rec or {}).get("metrics", {}).get("val_acc")
            return rec if acc and acc["count"] >= 2 else None

        rec = wait_for(printed, DEADLINE, "printed metrics from the stdout file")
        assert rec["metrics"]["val_acc"]["source"] == "output"
        go.touch()
        assert proc.wait(timeout=DEADLINE) == 0
        rec = wait_for(
            lambda: (r := printed()) is not None and r["status"] != "running" and r,
            DEADLINE,
            "the run's end",
        )
    finally:
        go.touch()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        daemon.stop()
    assert rec["metrics"]["loss"]["source"] == "file"  # the event file wins its tag
    assert rec["metrics"]["loss"]["min"] < 0.5  # 1/step, not the printed 5/step
    assert rec["metrics"]["val_acc"]["source"] == "output"
    assert rec["config"]["lr"] == 0.3
    assert rec["seed"]["value"] == 11
