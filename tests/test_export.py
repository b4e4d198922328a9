"""``labbook export``: curves of runs recorded by the real CLI, read back through csv,
json and pyarrow.parquet, against the store's series and the files themselves.

Fixtures are real files: a TensorBoard run written by tensorboardX (1,500 steps, more
than the store keeps, and a tag with NaN and infinities) and a metrics.jsonl run
(with NaN and Infinity), recorded with ``labbook import`` in a child process. The
event file is read back independently with TensorBoard's own EventAccumulator.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from labbook.series import MAX_POINTS
from labbook.store import Store
from tests.conftest import run_cli

pytest.importorskip("tensorboardX")
pq = pytest.importorskip("pyarrow.parquet")

STEPS = 1500
Key = tuple[str, str]
Row = tuple[int, Any, Any]  # step, value ("nan"/"inf"/"-inf" or float), wall time


def _tb_run(path: Path) -> None:
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(path))
    for i in range(STEPS):
        w.add_scalar("train/loss", 1.0 / (i + 1) + 0.01 * math.sin(i), i)
        if i % 10 == 0:
            w.add_scalar("val/loss", 2.0 / (i + 1), i)
    for i, v in enumerate([1.0, 2.0, math.nan, math.inf, -math.inf, 3.0]):
        w.add_scalar("train/grad_norm", v, i)
    w.close()


def _jsonl_run(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("lr: 0.1\nseed: 3\n")
    values = [1.0 / (i + 1) for i in range(40)] + [math.nan, math.inf]
    (path / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": i, "loss": v, "acc": i / 100}) + "\n" for i, v in enumerate(values)
        )
    )


@pytest.fixture
def runs(tmp_path: Path, db_path: Path) -> dict[str, Any]:
    root = tmp_path / "runs"
    _tb_run(root / "tb")
    _jsonl_run(root / "plain")
    r = run_cli("import", str(root), db=db_path)
    assert r.returncode == 0, r.stderr
    listed = json.loads(run_cli("ls", "--json", db=db_path).stdout)
    ids = {Path(rec["path"]).name: rec["id"] for rec in listed}
    assert set(ids) == {"tb", "plain"}
    return {"db": db_path, "root": root, "ids": ids}


def norm(value: Any) -> Any:
    """A value comparable with ==: non-finite values as their names."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def stored(db: Path) -> dict[Key, list[Row]]:
    with Store.open(db) as s:
        run_ids = [r for (r,) in s.conn.execute("SELECT id FROM runs")]
        return {
            (rid, tag): [(p.step, norm(p.value), p.wall_time) for p in points]
            for rid in run_ids
            for tag, points in s.series(rid).items()
        }


def group(rows: Iterable[tuple[str, str, int, Any, Any]]) -> dict[Key, list[Row]]:
    out: dict[Key, list[Row]] = {}
    for run, tag, step, value, wall in rows:
        out.setdefault((run, tag), []).append((step, norm(value), wall))
    return out


def read_csv(text: str) -> dict[Key, list[Row]]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == ["run", "tag", "step", "value", "wall_time"]
    return group(
        (run, tag, int(step), float(value), float(wall) if wall else None)
        for run, tag, step, value, wall in reader
    )


def read_jsonl(text: str) -> dict[Key, list[Row]]:
    rows = []
    for line in text.splitlines():
        obj = json.loads(line)  # strict JSON: no NaN tokens
        assert set(obj) <= {"run", "tag", "step", "value", "wall_time", "kind"}
        if obj["value"] is None:
            value = float(obj["kind"])
        else:
            assert "kind" not in obj
            value = obj["value"]
        rows.append((obj["run"], obj["tag"], obj["step"], value, obj["wall_time"]))
    return group(rows)


def _strict_json(text: str) -> None:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON")

    for line in text.splitlines():
        json.loads(line, parse_constant=refuse)


def read_parquet(path: Path) -> dict[Key, list[Row]]:
    table = pq.read_table(path)
    assert table.schema.names == ["run", "tag", "step", "value", "wall_time"]
    assert [str(t) for t in table.schema.types] == ["string", "string", "int64", "double", "double"]
    d = table.to_pydict()
    return group(zip(d["run"], d["tag"], d["step"], d["value"], d["wall_time"], strict=True))


def export(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = run_cli("export", *args, db=db)
    assert r.returncode == 0, r.stderr
    return r


# -- stored curves, three formats ----------------------------------------------------------


def test_csv_is_the_stored_series(runs: dict[str, Any]) -> None:
    out = export(runs["db"], "--curves")
    got = read_csv(out.stdout)
    assert got == stored(runs["db"])
    tb = runs["ids"]["tb"]
    assert len(got[(tb, "train/loss")]) <= MAX_POINTS < STEPS
    assert [v for _, v, _ in got[(tb, "train/grad_norm")]] == [1.0, 2.0, "nan", "inf", "-inf", 3.0]
    assert ",nan," in out.stdout and ",-inf," in out.stdout
    assert out.stderr == ""


def test_jsonl_is_the_stored_series_and_strict_json(runs: dict[str, Any]) -> None:
    out = export(runs["db"], "--curves", "--format", "jsonl")
    _strict_json(out.stdout)
    assert read_jsonl(out.stdout) == stored(runs["db"])
    plain = runs["ids"]["plain"]
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    last = [x for x in lines if x["run"] == plain and x["tag"] == "loss"][-2:]
    assert last == [
        {"run": plain, "tag": "loss", "step": 40, "value": None, "wall_time": None, "kind": "nan"},
        {"run": plain, "tag": "loss", "step": 41, "value": None, "wall_time": None, "kind": "inf"},
    ]


def test_parquet_is_the_stored_series(runs: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "curves.parquet"
    export(runs["db"], "--curves", "--format", "parquet", "-o", str(target))
    assert read_parquet(target) == stored(runs["db"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_csv_to_a_file_equals_stdout(runs: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    export(runs["db"], "--curves", "-o", str(target))
    assert target.read_text() == export(runs["db"], "--curves").stdout


# -- --full: every point, from the files -----------------------------------------------------


def _event_file_scalars(run_dir: Path) -> dict[str, list[Row]]:
    """The event file as TensorBoard itself reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: [(e.step, norm(e.value), e.wall_time) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def test_full_reads_every_point_from_the_files(runs: dict[str, Any]) -> None:
    db, ids = runs["db"], runs["ids"]
    got = read_csv(export(db, "--curves", "--full").stdout)
    tb = ids["tb"]
    files = _event_file_scalars(runs["root"] / "tb")
    assert {tag for (run, tag) in got if run == tb} == set(files)
    for tag, rows in files.items():
        assert got[(tb, tag)] == rows, tag
    assert len(got[(tb, "train/loss")]) == STEPS > len(stored(db)[(tb, "train/loss")])
    # the stored curve is a subset of the full one
    assert set(stored(db)[(tb, "train/loss")]) <= set(got[(tb, "train/loss")])
    plain = ids["plain"]
    lines = (runs["root"] / "plain" / "metrics.jsonl").read_text().splitlines()
    want = [(i, norm(json.loads(x)["loss"]), None) for i, x in enumerate(lines)]
    assert got[(plain, "loss")] == want
    # jsonl and parquet carry the same rows
    assert read_jsonl(export(db, "--curves", "--full", "--format", "jsonl").stdout) == got


def test_full_of_a_run_whose_files_are_gone_warns_once_and_gives_the_stored(
    runs: dict[str, Any],
) -> None:
    db, ids = runs["db"], runs["ids"]
    shutil.rmtree(runs["root"] / "tb")
    r = run_cli("export", "--curves", "--full", db=db)
    assert r.returncode == 0, r.stderr
    warnings = r.stderr.splitlines()
    assert len(warnings) == 1, r.stderr
    assert warnings[0].startswith("labbook: warning: ")
    assert str(runs["root"] / "tb") in warnings[0] and ids["tb"] in warnings[0]
    assert "files are gone" in warnings[0]
    got = read_csv(r.stdout)
    want = stored(db)
    tb = ids["tb"]
    assert {k: v for k, v in got.items() if k[0] == tb} == {
        k: v for k, v in want.items() if k[0] == tb
    }
    assert len(got[(ids["plain"], "loss")]) == 42  # still read from its file


def test_the_api_shares_the_export(runs: dict[str, Any]) -> None:
    import labbook

    db, ids = runs["db"], runs["ids"]
    with labbook.open(db) as nb:
        curves = nb.curves([ids["tb"], ids["plain"]], full=True)
        stored_only = nb.curves(ids["tb"], "val_loss")
    exported = read_csv(export(db, "--curves", "--full", ids["tb"], ids["plain"]).stdout)
    assert {
        (rid, tag): [(p.step, norm(p.value), p.wall_time) for p in pts]
        for rid, tags in curves.items()
        for tag, pts in tags.items()
    } == exported
    assert list(stored_only[ids["tb"]]) == ["val/loss"]


# -- choosing runs and curves ----------------------------------------------------------------


def test_runs_metrics_and_filters(runs: dict[str, Any]) -> None:
    db, ids = runs["db"], runs["ids"]
    named = read_csv(export(db, "--curves", ids["plain"]).stdout)
    assert {run for run, _ in named} == {ids["plain"]}
    metric = read_csv(export(db, "--curves", "-m", "val_loss", "-m", "acc").stdout)
    assert set(metric) == {(ids["tb"], "val/loss"), (ids["plain"], "acc")}
    assert run_cli("tag", ids["tb"], "baseline", db=db).returncode == 0
    tagged = read_csv(export(db, "--curves", "--tag", "baseline").stdout)
    assert {run for run, _ in tagged} == {ids["tb"]}
    where = read_csv(export(db, "--curves", "-w", "lr=0.1").stdout)
    assert {run for run, _ in where} == {ids["plain"]}
    assert read_csv(export(db, "--curves", "-w", "lr=5").stdout) == {}


def test_without_curves_it_is_the_run_table_of_ls(runs: dict[str, Any], tmp_path: Path) -> None:
    db = runs["db"]
    ls = run_cli("ls", "--format", "csv", "-n", "0", db=db).stdout
    assert export(db).stdout == ls
    assert [json.loads(x)["id"] for x in export(db, "--format", "jsonl").stdout.splitlines()] == [
        row["id"] for row in csv.DictReader(io.StringIO(ls))
    ]
    target = tmp_path / "runs.parquet"
    export(db, "--format", "parquet", "-o", str(target))
    table = pq.read_table(target).to_pydict()
    assert table["id"] == [row["id"] for row in csv.DictReader(io.StringIO(ls))]
    assert table["config.lr"].count(0.1) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--curves", "--format", "parquet"], "parquet is binary"),
        (["--full"], "--full is for curves"),
        (["-m", "loss"], "--metric is for curves"),
        (["--curves", "--format", "xlsx"], "xlsx"),
    ],
)
def test_usage_errors_are_one_line(runs: dict[str, Any], args: list[str], message: str) -> None:
    r = run_cli("export", *args, db=runs["db"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("labbook: error: ") and message in r.stderr.splitlines()[0]


def test_an_unknown_run_is_an_error(runs: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "never.csv"
    r = run_cli("export", "--curves", "nosuchrun", "-o", str(target), db=runs["db"])
    assert r.returncode == 1 and r.stderr.startswith("labbook: error: ")
    assert not target.exists()


# -- parquet without pyarrow ----------------------------------------------------------------

#: labbook's CLI with every ``pyarrow`` import refused by a meta-path finder.
_NO_PYARROW = """
import runpy, sys
class NoPyarrow:
    def find_spec(self, name, path=None, target=None):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, NoPyarrow())
for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
    del sys.modules[name]
sys.argv = ["labbook", *sys.argv[1:]]
runpy.run_module("labbook", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("curves", [["--curves"], []])
def test_parquet_without_pyarrow_says_how_to_get_it(
    runs: dict[str, Any], tmp_path: Path, curves: list[str]
) -> None:
    target = tmp_path / "x.parquet"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            _NO_PYARROW,
            "--db",
            str(runs["db"]),
            "export",
            *curves,
            "--format",
            "parquet",
            "-o",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr == "labbook: error: parquet needs pyarrow: pip install 'labbook[parquet]'\n"
    assert not target.exists() and list(tmp_path.glob(".x.parquet*")) == []
    # csv needs nothing of it
    ok = subprocess.run(
        [sys.executable, "-c", _NO_PYARROW, "--db", str(runs["db"]), "export", "--curves"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and read_csv(ok.stdout) == stored(runs["db"])


def test_blocked_pyarrow_cannot_be_imported() -> None:
    probe = _NO_PYARROW.split("sys.argv")[0] + "import pyarrow.parquet\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "blocked by the test" in r.stderr


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_unwritable_output_is_one_line_naming_it(
    runs: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / "no" / "such" / f"x.{fmt}"
    r = run_cli("export", "--curves", "--format", fmt, "-o", str(target), db=runs["db"])
    assert r.returncode == 1
    assert r.stderr == f"labbook: error: cannot write {target}: No such file or directory\n"
