"""``--format table|plain|json|jsonl|csv|tsv|md`` and ``ls -q``, through the real CLI.

Runs come from small run dirs written here (one with a hostile name: a comma, a
newline, quotes and a pipe; NaN and inf metrics) and from ``examples/train.py``.
CSV and TSV are read back with the ``csv`` module and must give the --json values.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli

HOSTILE = 'we,ird\n"x|y"'


def _cell(value: Any) -> str:
    """What a CSV cell of a --json value must read back as."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    weird = runs / HOSTILE
    weird.mkdir(parents=True)
    (weird / "config.json").write_text(
        json.dumps({"lr": 0.1, "note": 'a,b\n"q"\tz|w\r', "layers": [1, 2], "flag": True})
    )
    (weird / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 1.5, "acc": 0.1}\n{"step": 1, "loss": NaN, "acc": Infinity}\n'
    )
    for name, lr, seed in (("base", "0.05", "1"), ("high", "0.2", "2")):
        subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "train.py"),
                "--lr",
                lr,
                "--seed",
                seed,
                "--epochs",
                "3",
                "--out",
                str(runs / name),
            ],
            check=True,
            capture_output=True,
        )
    path = tmp_path / "lab.db"
    proc = run_cli("import", "--no-git", str(runs), db=path)
    assert proc.returncode == 0, proc.stderr
    return path


def _ok(*args: str, db: Path) -> str:
    """stdout as written (run_cli's text mode would turn a "\\r" into a newline)."""
    proc = subprocess.run(
        [sys.executable, "-m", "labbook", "--db", str(db), *args], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8")


def _records(db: Path) -> list[dict[str, Any]]:
    return json.loads(_ok("ls", "--json", db=db))


def _expected_columns(records: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> list[str]:
    config = sorted({k for r in records for k in r["config"]})
    tags = sorted({t for r in records for t in r["metrics"]})
    return [
        "id", "name", "status", "framework", "seed", "git.commit", "started_at", "ended_at",
        "duration_s", "host", "user", "path", "tags", *extra,
        *[f"config.{k}" for k in config],
        *[f"metrics.{t}.{s}" for t in tags for s in ("last", "min", "max")],
    ]  # fmt: skip


def _check_rows(rows: list[dict[str, str]], records: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    for row, rec in zip(rows, records, strict=True):
        assert row["name"] == rec["name"]
        assert row["path"] == rec["path"]
        assert row["status"] == rec["status"]
        assert row["seed"] == _cell(rec["seed"]["value"])
        assert row["started_at"] == rec["started_at"]
        for key in rec["config"]:
            assert row[f"config.{key}"] == _cell(rec["config"][key]), key
            value = rec["config"][key]
            if isinstance(value, float):  # numbers round-trip exactly
                assert float(row[f"config.{key}"]) == value
        for tag, m in rec["metrics"].items():
            for stat in ("last", "min", "max"):
                assert row[f"metrics.{tag}.{stat}"] == _cell(m[stat]), (tag, stat)


@pytest.mark.parametrize("fmt,delimiter", [("csv", ","), ("tsv", "\t")])
def test_ls_csv_tsv_round_trip(db: Path, fmt: str, delimiter: str) -> None:
    records = _records(db)
    text = _ok("ls", "--format", fmt, db=db)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, *body = list(reader)
    assert header == _expected_columns(records)
    rows = [dict(zip(header, line, strict=True)) for line in body]
    _check_rows(rows, records)
    weird = next(r for r in rows if r["name"].endswith(HOSTILE))
    assert weird["config.note"] == 'a,b\n"q"\tz|w\r'  # quoted, not escaped
    assert weird["metrics.loss.last"] == "nan"
    assert weird["metrics.acc.last"] == "inf"
    assert weird["config.layers"] == "[1, 2]"
    assert weird["config.flag"] == "true"
    assert "\\n" not in text  # no terminal escaping: the data as it is


def test_jsonl_is_the_json_records(db: Path) -> None:
    records = _records(db)
    lines = _ok("ls", "--format", "jsonl", db=db).splitlines()
    assert [json.loads(line) for line in lines] == records
    assert json.loads(_ok("show", "@last", "--format", "jsonl", db=db)) == json.loads(
        _ok("show", "@last", "--json", db=db)
    )


def test_json_alias(db: Path) -> None:
    assert _ok("ls", "--format", "json", db=db) == _ok("ls", "--json", db=db)
    assert _ok("show", "@last", "--format", "json", db=db) == _ok("show", "@last", "--json", db=db)
    proc = run_cli("ls", "--json", "--format", "csv", db=db)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) <= 2 and "disagree" in proc.stderr


def _md_cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |")
    cells, cur, i, body = [], "", 0, line[2:-2]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cur += body[i : i + 2]
            i += 2
        elif body.startswith(" | ", i):
            cells.append(cur)
            cur, i = "", i + 3
        else:
            cur += body[i]
            i += 1
    return [*cells, cur]


def test_markdown_table(db: Path) -> None:
    records = _records(db)
    lines = _ok("ls", "--format", "md", db=db).splitlines()
    assert len(lines) == 2 + len(records)  # header, rule, a line per run: no raw newline
    header = _md_cells(lines[0])
    assert header == _expected_columns(records)
    assert set(lines[1].replace("|", "").split()) == {"---"}
    for line in lines[2:]:
        assert len(_md_cells(line)) == len(header)
    weird = next(line for line in lines if "we,ird" in line)
    cells = dict(zip(header, _md_cells(weird), strict=True))
    assert cells["name"].endswith('we,ird\\\\n"x\\|y"')  # the newline shown, the pipe escaped
    assert "\\|w" in cells["config.note"]


def test_ls_quiet_ids_and_compare_them(db: Path) -> None:
    records = _records(db)
    ids = _ok("ls", "-q", db=db).split("\n")
    assert ids == [r["id"] for r in records] + [""]
    chosen = _ok("ls", "-q", "-w", "optimizer.lr>0", db=db).split()
    assert len(chosen) == 2
    table = json.loads(_ok("compare", *chosen, "--json", db=db))
    assert [r["id"] for r in table["runs"]] == chosen
    proc = run_cli("ls", "-q", "--format", "csv", db=db)
    assert proc.returncode == 2 and proc.stdout == ""


def test_compare_with_filters(db: Path) -> None:
    by_where = json.loads(_ok("compare", "--where", "optimizer.lr>0", "--json", db=db))
    ids = _ok("ls", "-q", "-w", "optimizer.lr>0", db=db).split()
    assert [r["id"] for r in by_where["runs"]] == ids
    assert by_where["params"]["optimizer.lr"] == [0.2, 0.05]
    # a named run and the filtered ones, the named first, none twice
    weird = next(r["id"] for r in _records(db) if r["name"].endswith(HOSTILE))
    both = json.loads(_ok("compare", weird, "-w", "optimizer.lr>0", "--json", db=db))
    assert [r["id"] for r in both["runs"]] == [weird, *ids]
    one = run_cli("compare", "-w", "optimizer.lr>0.1", db=db)
    assert one.returncode == 2 and "at least two runs" in one.stderr
    # csv: a row per run, only the params that differ and the compared metrics
    text = _ok("compare", "-w", "optimizer.lr>0", "--format", "csv", "-m", "val_loss", db=db)
    header, *body = list(csv.reader(io.StringIO(text, newline="")))
    assert [h for h in header if h.startswith(("config.", "metrics."))] == [
        "config.optimizer.lr",  # the seed differs too: it is the run field "seed"
        "metrics.val_loss.last",
        "metrics.val_loss.min",
        "metrics.val_loss.max",
    ]
    rows = [dict(zip(header, line, strict=True)) for line in body]
    assert [float(r["config.optimizer.lr"]) for r in rows] == [0.2, 0.05]
    assert [r["seed"] for r in rows] == ["2", "1"]
    vals = json.loads(_ok("compare", *ids, "-m", "val_loss", "--json", db=db))["metrics"]
    assert [r["metrics.val_loss.last"] for r in rows] == [_cell(v) for v in vals["val_loss"]]
    assert all(r["metrics.val_loss.last"] for r in rows)
    lines = _ok("compare", *ids, "--format", "jsonl", db=db).splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["id"] for o in objs] == ids
    assert [o["params"]["optimizer.lr"] for o in objs] == [0.2, 0.05]


def test_show_and_search_formats(db: Path) -> None:
    rec = json.loads(_ok("show", "@last", "--json", db=db))
    header, row = list(csv.reader(io.StringIO(_ok("show", "@last", "--format", "csv", db=db))))
    _check_rows([dict(zip(header, row, strict=True))], [rec])
    text = _ok("search", "sgd", "--format", "tsv", db=db)
    header, *body = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    hits = json.loads(_ok("search", "sgd", "--json", db=db))
    assert header == _expected_columns(hits, ("search.score", "search.field", "search.snippet"))
    rows = [dict(zip(header, line, strict=True)) for line in body]
    assert [r["search.field"] for r in rows] == [h["search"]["field"] for h in hits]
    _check_rows(rows, hits)
    lines = _ok("search", "sgd", "--format", "jsonl", db=db).splitlines()
    assert [json.loads(line) for line in lines] == hits


def test_table_and_plain(db: Path) -> None:
    # piped, the default is plain; --format table gives the terminal's layout
    assert _ok("ls", "--format", "plain", db=db) == _ok("ls", db=db)
    assert _ok("show", "@last", "--format", "plain", db=db) == _ok("show", "@last", db=db)
    table = _ok("show", "@last", "--format", "table", db=db)
    assert table != _ok("show", "@last", db=db) and "\x1b[" not in table
    assert _ok("compare", "-w", "optimizer.lr>0", "--format", "plain", db=db) == _ok(
        "compare", "-w", "optimizer.lr>0", db=db
    )
    plain = _ok("search", "sgd", "--format", "plain", "--color", "always", db=db)
    assert "\x1b[" not in plain
