"""Names that tell runs apart (issue 11.7), through the real CLI.

A path-named run keeps the parts that distinguish it from its siblings (the
scenario folder, ``multirun``) and leaves out what every framework adds
(``lightning_logs``); names are unique within a repository or an import root. A
``labbook run`` without ``--name`` is named from its script and arguments.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.conftest import FIXTURES, git, run_cli

LIGHTNING_RUN = FIXTURES / "lightning" / "lightning_logs" / "version_0"


def _names(db: Path) -> dict[str, str]:
    rows = json.loads(run_cli("ls", "--json", "--limit", "1000", db=db).stdout)
    return {r["path"]: r["name"] for r in rows}


def test_seeds_and_scenarios_of_one_lightning_config_read_apart(repo: Path, db_path: Path):
    for scenario in ("baseline", "wide"):
        for seed in (1, 2, 3):
            dest = repo / "experiments" / scenario / "seeds" / "lightning_logs" / f"version_{seed}"
            shutil.copytree(LIGHTNING_RUN, dest)
    git(repo, "add", "train.py")
    res = run_cli("import", str(repo / "experiments" / "baseline"), db=db_path)
    assert res.returncode == 0, res.stderr
    res = run_cli("import", str(repo / "experiments" / "wide"), db=db_path)
    assert res.returncode == 0, res.stderr
    names = _names(db_path)
    assert sorted(names.values()) == sorted(
        f"experiments/{scenario}/seeds/version_{seed}"
        for scenario in ("baseline", "wide")
        for seed in (1, 2, 3)
    )
    # show finds a run by its name
    shown = json.loads(
        run_cli("show", "experiments/wide/seeds/version_2", "--json", db=db_path).stdout
    )
    assert shown["path"].endswith("wide/seeds/lightning_logs/version_2")


def test_hydra_single_and_multirun_jobs_keep_outputs_and_multirun(tmp_path: Path, db_path: Path):
    copy = tmp_path / "hydra"
    shutil.copytree(FIXTURES / "hydra", copy)
    assert run_cli("import", str(copy), db=db_path).returncode == 0
    names = set(_names(db_path).values())
    assert names == {
        "outputs/2026-11-20/10-00-00",
        "outputs/2026-11-20/10-30-00",
        "multirun/2026-11-20/11-00-00/0",
        "multirun/2026-11-20/11-00-00/1",
        "multirun/2026-11-20/11-00-00/2",
    }


def test_names_are_unique_within_an_import_root(tmp_path: Path, db_path: Path):
    root = tmp_path / "work"
    # the TensorBoard and CSV loggers' copies of one run, and a run dir beside a
    # lightning_logs/ holding a run of the same name
    shutil.copytree(FIXTURES / "lightning" / "lightning_logs" / "version_0",
                    root / "tb" / "lightning_logs" / "version_0")  # fmt: skip
    shutil.copytree(FIXTURES / "lightning" / "csv_logs" / "lightning_logs" / "version_0",
                    root / "tb" / "csv_logs" / "lightning_logs" / "version_0")  # fmt: skip
    shutil.copytree(FIXTURES / "torch_tb" / "runs" / "exp1", root / "x" / "lightning_logs" / "r1")
    shutil.copytree(FIXTURES / "torch_tb" / "runs" / "tbx_exp", root / "x" / "r1")
    assert run_cli("import", str(root), db=db_path).returncode == 0
    names = list(_names(db_path).values())
    assert len(names) == len(set(names)) == 4
    assert set(names) == {
        "tb/version_0",
        "tb/csv_logs/version_0",
        "x/lightning_logs/r1",
        "x/r1",
    }


def test_framework_names_are_kept(tmp_path: Path, db_path: Path):
    copy = tmp_path / "mlflow"
    shutil.copytree(FIXTURES / "mlflow", copy)
    assert run_cli("import", str(copy), db=db_path).returncode == 0
    names = sorted(_names(db_path).values())
    assert names.count("baseline") == 2 and names.count("unstable") == 2  # MLflow's run names


def test_labbook_run_is_named_from_its_script_and_arguments(tmp_path: Path, db_path: Path):
    (tmp_path / "train.py").write_text("import sys; print(sys.argv)\n")
    res = run_cli("run", "--", sys.executable, "train.py", "--lr", "5", "--seed", "1",
                  db=db_path, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = run_cli("run", "--", sys.executable, "train.py", "--api-key", "s3cr3t-value",
                  db=db_path, cwd=tmp_path)  # fmt: skip
    res = run_cli("run", "--", sys.executable, "-c", "pass", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(run_cli("ls", "--json", db=db_path).stdout)
    names = sorted(r["name"] for r in rows)  # one path (the cwd) for all three
    assert "train lr=5 seed=1" in names
    assert not any("s3cr3t" in n for n in names)  # a secret argument is never in a name
    assert all(n.strip() for n in names) and len(names) == 3
    shown = json.loads(run_cli("show", "train lr=5 seed=1", "--json", db=db_path).stdout)
    assert shown["config"]["lr"] == 5
