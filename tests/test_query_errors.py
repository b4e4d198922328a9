"""Bad --where queries are one-line usage errors, exit 2 (issue 12, item 6).

Through the real CLI, against a real store filled by a real `labbook import` of
plain run dirs (a numeric ``lr``, a text ``optimizer``, metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labbook.analysis.metrics import canonical_tags
from labbook.errors import QueryError
from labbook.store import Store
from labbook.store.query import RunFilter, parse_where, select_runs
from tests.conftest import run_cli


@pytest.fixture
def db(tmp_path: Path, db_path: Path) -> Path:
    runs = tmp_path / "runs"
    for i, (lr, opt) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adamw")]):
        run = runs / f"run{i}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"lr": lr, "optimizer": opt, "seed": i}))
        with open(run / "metrics.jsonl", "w") as f:
            for step in range(3):
                f.write(json.dumps({"step": step, "val/loss": 1.0 - lr - 0.1 * step}) + "\n")
    done = run_cli("import", str(runs), db=db_path)
    assert done.returncode == 0, done.stderr
    return db_path


def error_line(db: Path, *args: str) -> str:
    """The one stderr line of a command that must exit 2."""
    done = run_cli(*args, db=db)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    return lines[0]


CASES = {
    # a value that does not fit the key's type
    "lr>=abc": "labbook: error: 'lr' holds numbers, and 'abc' is not a number (in 'lr>=abc')",
    "optimizer<3": (
        "labbook: error: 'optimizer' holds text, not numbers: 'optimizer<3' cannot compare it with 3"
    ),
    "val/loss<low": (
        "labbook: error: metric 'val/loss' compares by number, and 'low' is not a number"
        " (in 'val/loss<low')"
    ),
    # incomplete expressions
    "lr>0.05 and": (
        "labbook: error: incomplete condition 'lr>0.05 and': 'and' needs a condition on both sides"
    ),
    "and lr>0.05": (
        "labbook: error: incomplete condition 'and lr>0.05': 'and' needs a condition on both sides"
    ),
    "lr>": "labbook: error: incomplete condition 'lr>': no value after '>'",
    "lr >= ": "labbook: error: incomplete condition 'lr >=': no value after '>='",
    ">0.05": "labbook: error: incomplete condition '>0.05': no key before '>'",
    "lr 0.05": (
        "labbook: error: cannot read the condition 'lr 0.05': write KEY OP VALUE, e.g. "
        "optimizer.lr>=0.01, status=failed, name~'resnet*'"
    ),
    "lr>0.05 or lr<0.002": (
        "labbook: error: 'or' is not supported in 'lr>0.05 or lr<0.002': conditions are "
        "joined with 'and' (repeat --where for more)"
    ),
    # unknown keys, with the nearest known ones
    "lrr>0.01": "labbook: error: no run has 'lrr'; did you mean 'lr'?",
    "optimiser=adam": "labbook: error: no run has 'optimiser'; did you mean 'optimizer'?",
    "stauts=failed": "labbook: error: no run has 'stauts'; did you mean 'status' or 'started'?",
    "val/los<1": "labbook: error: no run has 'val/los'; did you mean 'val/loss'?",
    "metrics.val_los<1": (
        "labbook: error: no run has the metric 'val_los'; did you mean 'metrics.val/loss'?"
    ),
    "zzzzzz=1": (
        "labbook: error: no run has 'zzzzzz' (no config key, metric or run field of that name)"
    ),
}


@pytest.mark.parametrize(("expr", "message"), CASES.items())
def test_bad_where_in_ls(db: Path, expr: str, message: str) -> None:
    assert error_line(db, "ls", "--where", expr) == message


@pytest.mark.parametrize("expr", ["lr>=abc", "lr>0.05 and", "lrr>0.01"])
def test_bad_where_in_search_and_ls_json(db: Path, expr: str) -> None:
    assert error_line(db, "search", "run", "--where", expr) == CASES[expr]
    assert error_line(db, "ls", "--json", "--where", expr) == CASES[expr]


def test_good_queries_still_match(db: Path) -> None:
    def names(*where: str) -> list[str]:
        args = [a for w in where for a in ("--where", w)]
        done = run_cli("ls", "--columns", "name", "--sort", "name", *args, db=db)
        assert done.returncode == 0, done.stderr
        return [n.removeprefix("runs/") for n in done.stdout.split()[1:]]

    assert names("lr>0.005") == ["run0", "run1"]
    assert names("lr>0.005 and optimizer~adam*") == ["run0"]
    assert names("lr>='0.005'") == ["run0", "run1"]  # a quoted number is a number
    assert names("optimizer>=b") == ["run1"]  # text against text
    assert names("val/loss<0.75") == ["run0"]
    # a metric's canonical name finds its tags (val/loss is val_loss)
    assert names("val_loss<0.75") == ["run0"]
    assert names("metrics.val_loss<0.75") == ["run0"]
    assert names("status=unknown", "seed>=1") == ["run1", "run2"]


def test_errors_come_before_any_output(db: Path) -> None:
    done = run_cli("ls", "--where", "lr>=abc", "--where", "lr>0.01", db=db)
    assert done.returncode == 2 and done.stdout == ""


def test_the_library_is_lenient_unless_strict(db: Path) -> None:
    """Views that filter as one types (the TUI) keep the old meaning: a key nothing has
    matches nothing; the CLI's filters are strict."""
    with Store.open(db) as store:
        lenient = RunFilter(where=parse_where(["lrr>0.01"]))
        assert select_runs(store, lenient) == []
        strict = RunFilter(where=parse_where(["lrr>0.01"]), strict=True)
        with pytest.raises(QueryError, match="did you mean 'lr'"):
            select_runs(store, strict)
        vocab = RunFilter(where=parse_where(["val_loss<0.75"]), metric_names=canonical_tags)
        assert [r["name"] for r in select_runs(store, vocab)] == ["runs/run0"]
        assert select_runs(store, RunFilter(where=parse_where(["val_loss<0.75"]))) == []


def test_query_error_is_a_usage_error() -> None:
    from labbook.errors import UsageError

    assert issubclass(QueryError, UsageError) and QueryError("x").exit_code == 2
