"""The real `labbook` command in child processes: import, ls, show, --json, errors, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, git, run_cli

EXAMPLE = REPO / "examples" / "train.py"


def train(project: Path, name: str, *args: str) -> Path:
    out = project / "runs" / name
    subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=project,
    )
    return out


@pytest.fixture
def three_runs(repo: Path) -> Path:
    train(repo, "baseline", "--lr", "0.05", "--seed", "1")
    train(repo, "too-high", "--lr", "5", "--seed", "1")
    train(repo, "unseeded", "--lr", "0.05")
    (repo / "train.py").write_text("print('edited')\n")
    return repo


def test_import_ls_show_json(three_runs: Path, db_path: Path):
    r = run_cli("import", str(three_runs / "runs"), db=db_path)
    assert r.returncode == 0, r.stderr
    assert "imported 3 runs (3 new, 0 updated)" in r.stdout

    runs = json.loads(run_cli("ls", "--json", db=db_path).stdout)
    by_name = {r["name"]: r for r in runs}
    assert set(by_name) == {"runs/baseline", "runs/too-high", "runs/unseeded"}
    assert by_name["runs/baseline"]["status"] == "finished"
    assert by_name["runs/too-high"]["status"] == "diverged"
    assert by_name["runs/too-high"]["failure"]["kind"] == "nan"
    assert by_name["runs/unseeded"]["seed"] == {"value": None, "source": None}
    assert by_name["runs/baseline"]["seed"]["value"] == 1
    assert by_name["runs/baseline"]["config"]["optimizer.lr"] == 0.05
    assert "diff" not in by_name["runs/baseline"]["git"]

    show = json.loads(run_cli("show", "runs/too-high", "--json", db=db_path).stdout)
    assert show["git"]["dirty"] is True and "edited" in show["git"]["diff"]
    assert show["git"]["commit"] == git(three_runs, "rev-parse", "HEAD").strip()
    assert show["env"]["source"] == "importer"
    nf = show["metrics"]["train_loss"]["nonfinite_step"]
    assert nf is not None and show["failure"]["step"] == nf

    table = run_cli("ls", db=db_path).stdout
    assert "diverged" in table and "not set" in table

    text = run_cli("show", "runs/too-high", db=db_path)
    assert text.returncode == 0
    out = text.stdout
    # piped: plain aligned text, every section, no colour codes, nothing wrapped
    assert "\x1b[" not in out
    assert out.splitlines()[0].startswith("runs/too-high") and "diverged" in out.splitlines()[0]
    for section in ("config", "metrics", "uncommitted changes"):
        assert f"\n{section}" in out
    assert "optimizer.lr" in out and "non-finite at" in out
    seed_line = next(line for line in out.splitlines() if line.startswith("seed"))
    assert "(config:seed)" in seed_line


def test_reimport_is_idempotent(three_runs: Path, db_path: Path):
    run_cli("import", str(three_runs / "runs"), db=db_path)
    first = json.loads(run_cli("ls", "--json", db=db_path).stdout)
    r = json.loads(run_cli("import", str(three_runs / "runs"), "--json", db=db_path).stdout)
    assert r["created"] == [] and r["updated"] == [] and len(r["unchanged"]) == 3
    r = json.loads(run_cli("import", str(three_runs / "runs"), "--full", "--json", db=db_path).stdout)
    assert r["created"] == [] and len(r["updated"]) == 3 and r["unchanged"] == []
    second = json.loads(run_cli("ls", "--json", db=db_path).stdout)
    assert sorted(x["id"] for x in first) == sorted(x["id"] for x in second)


def test_where_filters_from_cli(three_runs: Path, db_path: Path):
    run_cli("import", str(three_runs / "runs"), db=db_path)
    out = json.loads(run_cli("ls", "--where", "optimizer.lr>=1", "--json", db=db_path).stdout)
    assert [r["name"] for r in out] == ["runs/too-high"]
    out = json.loads(run_cli("ls", "--status", "finished", "--json", db=db_path).stdout)
    assert {r["name"] for r in out} == {"runs/baseline", "runs/unseeded"}


def test_user_errors_are_one_line_and_nonzero(tmp_path: Path, db_path: Path):
    r = run_cli("ls", db=db_path)
    assert r.returncode == 1 and r.stderr.startswith("labbook: error: no labbook database")
    assert "Traceback" not in r.stderr
    r = run_cli("import", str(tmp_path / "does-not-exist"), db=db_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "does-not-exist" in r.stderr
    run_cli("import", str(REPO / "examples"), db=db_path)
    r = run_cli("show", "no-such-run", db=db_path)
    assert r.returncode == 1 and "no run matches 'no-such-run'" in r.stderr
    r = run_cli("ls", "--where", "lr >>> 1", db=db_path)
    assert r.returncode == 2 and "cannot read the condition" in r.stderr


def test_env_var_selects_database(three_runs: Path, tmp_path: Path):
    db = tmp_path / "via-env.db"
    r = run_cli("import", str(three_runs / "runs"), env={"LABBOOK_DB": str(db)})
    assert r.returncode == 0 and db.exists()


def test_every_command_has_help_and_is_documented():
    from labbook.cli import cli

    readme = (REPO / "README.md").read_text()
    for name, cmd in cli.commands.items():
        assert cmd.help, name
        assert f"`labbook {name}" in readme, f"{name} is not in the README's CLI reference"
        r = run_cli(name, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout


def test_demo_runs_as_in_readme(tmp_path: Path):
    r = run_cli("demo", env={"TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "diverged" in r.stdout and "finished" in r.stdout
    assert "imported 3 runs" in r.stdout


def test_help_lists_every_command_with_its_own_summary():
    import click

    from labbook.cli import LAZY_COMMANDS, _load

    out = run_cli("--help").stdout
    for name, (target, summary) in LAZY_COMMANDS.items():
        command = _load(target)
        assert isinstance(command, click.Command) and command.name == name
        assert summary in out
        # the summary says what the command's own help says, in short
        assert summary.split()[0].lower() in (command.help or "").lower()
    for name in ("import", "ls", "show", "demo", "tui"):
        assert f"  {name} " in out


def test_runs_outputs_are_not_untracked_code(repo, db_path):
    """Run dirs inside a repo whose outputs are not git-ignored: only real code is untracked."""
    for name, seed in (("a", 1), ("b", 2)):
        run = repo / "runs" / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"lr: 0.1\nseed: {seed}\n")
        (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (repo / "new_model.py").write_text("class Net: ...\n")
    r = run_cli("import", str(repo / "runs"), db=db_path)
    assert r.returncode == 0, r.stderr
    for rec in json.loads(run_cli("ls", "--json", db=db_path).stdout):
        assert rec["git"]["untracked"] == ["new_model.py"], rec["git"]["untracked"]
