"""The real `labbook` command in child processes: import, ls, show, --json, errors, demo."""

from __future__ import annotations

import json
import os
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
    assert by_name["runs/unseeded"]["seed"] == {"value": None, "source": None, "known": True}
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


def _help_rows(out: str) -> dict[str, str]:
    """``--help``'s Commands section as {name: summary} (wrapped summaries joined)."""
    rows: dict[str, str] = {}
    last = None
    for line in out.split("Commands:\n", 1)[1].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            last, _, summary = line.strip().partition(" ")
            rows[last] = summary.strip()
        elif line.strip() and last is not None:
            rows[last] += " " + line.strip()
    return rows


def test_help_lists_tui_and_every_lazy_command_on_its_own_line():
    """Each command's row carries its own summary; ``tui`` (a plugin) its command's own."""
    from labbook.cli import LAZY_COMMANDS, _load

    r = run_cli("--help", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    rows = _help_rows(r.stdout)
    for name, (_, summary) in LAZY_COMMANDS.items():
        assert rows.get(name) == summary, (name, rows.get(name))
    tui = _load("labbook_tui.cli:tui")
    assert tui is not None and rows.get("tui") == tui.get_short_help_str(200)


def test_plugins_are_what_importlib_metadata_finds(tmp_path: Path):
    """The entry-point scan that --help makes without importlib.metadata finds what
    importlib.metadata finds: here and with more distributions on the path (a shadowed
    one, extras, comments), whose commands --help then lists."""
    site = tmp_path / "site"
    for dist, text in (
        ("extra_cmds-1.0.dist-info", "[console_scripts]\nx = y:z\n\n[labbook.commands]\n"
         "# a comment\nhello = extra_cmds_mod:hello [fancy]\nbroken=no_such_module_here:cmd\n"),
        ("Other.Dist-2.0.egg-info", "[labbook.commands]\nother = other_mod : cmd\n"),
    ):  # fmt: skip
        (site / dist).mkdir(parents=True)
        (site / dist / "entry_points.txt").write_text(text)
    later = tmp_path / "later"  # the same distribution again, later on the path: shadowed
    (later / "extra_cmds-0.9.dist-info").mkdir(parents=True)
    (later / "extra_cmds-0.9.dist-info" / "entry_points.txt").write_text(
        "[labbook.commands]\nshadowed = nope:cmd\n"
    )
    (site / "extra_cmds_mod.py").write_text(
        "import click\n\n@click.command('hello')\ndef hello():\n"
        '    """Say hello from a plugin."""\n    click.echo("hello")\n'
    )
    (site / "other_mod.py").write_text(
        'import click\n\n@click.command("other")\ndef cmd():\n    """Another plugin."""\n'
    )
    code = (
        "import json, importlib.metadata as m\n"
        "from labbook.cli import PLUGIN_GROUP, _plugins\n"
        "eps = {e.name: f'{e.module}:{e.attr}' for e in m.entry_points(group=PLUGIN_GROUP)}\n"
        "print(json.dumps([_plugins(), eps]))\n"
    )
    env = {"PYTHONPATH": f"{site}:{later}", "COLUMNS": "200"}
    for extra in ({}, env):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **extra},
        ).stdout
        ours, theirs = json.loads(out)
        assert ours == theirs and "tui" in ours
    assert set(ours) == {"tui", "hello", "broken", "other"}
    r = run_cli("--help", env=env)
    assert r.returncode == 0, r.stderr
    rows = _help_rows(r.stdout)
    assert rows["hello"] == "Say hello from a plugin."
    assert rows["other"] == "Another plugin."
    assert "cannot load" in rows["broken"] and "no_such_module_here" in rows["broken"]
    assert run_cli("hello", env=env).stdout == "hello\n"
    r = run_cli("broken", env=env)
    assert r.returncode != 0 and "cannot load" in r.stderr and "Traceback" not in r.stderr


def test_help_and_ls_do_not_import_importlib_metadata(db_path: Path):
    """The entry-point scan is read directly: importlib.metadata alone is a quarter of --help."""
    code = (
        "import sys\nfrom labbook.cli import cli\n"
        "try:\n    cli.main(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    for args in (["--help"], ["--db", str(db_path), "ls"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == "False", args


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
