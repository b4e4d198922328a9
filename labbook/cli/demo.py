"""``labbook demo``: a throwaway project, three runs, recorded and shown.

Everything happens in a temporary directory with its own database, whatever
``--db`` or ``LABBOOK_DB`` say, so trying labbook leaves your real notebook untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from labbook.errors import LabbookError

RUNS = (
    ("baseline", ["--lr", "0.05", "--seed", "1"]),
    ("lr-too-high", ["--lr", "5", "--seed", "1"]),
    ("seed-2", ["--lr", "0.05", "--seed", "2"]),
)


def _example_script() -> Path:
    import labbook_examples

    return Path(labbook_examples.__file__).with_name("train.py")


def _git(project: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "labbook demo",
        "GIT_AUTHOR_EMAIL": "demo@labbook.invalid",
        "GIT_COMMITTER_NAME": "labbook demo",
        "GIT_COMMITTER_EMAIL": "demo@labbook.invalid",
    }
    subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True)


def run_demo() -> Path:
    """Create the project, run the example three times, import into a database in
    the same temporary directory, print ls and show."""
    from labbook.cli import cli

    base = Path(tempfile.mkdtemp(prefix="labbook-demo-"))
    project = base / "project"
    project.mkdir()
    shutil.copy(_example_script(), project / "train.py")
    has_git = shutil.which("git") is not None
    if has_git:
        (project / ".gitignore").write_text("runs/\n")  # outputs are not code
        _git(project, "init", "-q")
        _git(project, "add", "train.py", ".gitignore")
        _git(project, "commit", "-q", "-m", "example training script")
        # An uncommitted edit, as in real life: it is recorded with the runs.
        with open(project / "train.py", "a") as f:
            f.write("\n# TODO: try a learning-rate schedule\n")
    else:
        click.echo("git not found: the demo runs without git state", err=True)
    db_path = str(base / "labbook.db")
    click.secho(f"demo project: {project}", bold=True)
    click.secho(f"demo database: {db_path} (your own notebook is not touched)", bold=True)
    for name, args in RUNS:
        cmd = [sys.executable, "train.py", *args, "--out", f"runs/{name}"]
        click.echo(f"$ python train.py {' '.join(args)} --out runs/{name}")
        proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabbookError(f"the example run '{name}' failed:\n{proc.stderr.strip()}")
    click.echo()
    for argv in (
        ["import", str(project / "runs")],
        ["ls"],
        ["show", "runs/lr-too-high"],
    ):
        click.secho(f"$ labbook {' '.join(argv)}", bold=True)
        cli.main(["--db", db_path, *argv], prog_name="labbook", standalone_mode=False)
        click.echo()
    click.echo(f"The demo database is {db_path}; look around with:")
    click.echo(f"  labbook --db {db_path} ls --where 'optimizer.lr>=1'")
    click.echo(f"  labbook --db {db_path} show @last --json")
    click.echo(f"(the demo project and its database stay in {base} until your temp dir is cleaned)")
    return base


@click.command("demo")
@click.option("--keep", is_flag=True, hidden=True, help="Accepted; the demo is always kept.")
@click.pass_context
def demo_cmd(ctx: click.Context, keep: bool) -> None:
    """Try labbook on a throwaway project of three runs.

    Creates a git project in a temporary directory, runs the example training
    script three times (a normal run, one that diverges, one with another seed),
    imports the runs into a demo database beside them (never yours: --db and
    LABBOOK_DB are not used) and prints `labbook ls` and `labbook show`.
    """
    from labbook.cli.demo import run_demo

    run_demo()
