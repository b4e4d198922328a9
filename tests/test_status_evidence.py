"""Status with evidence (issue 11.3): every status says why, and a run whose metrics
reached its configured length is ``finished``.

Real framework outputs only: the fixtures in tests/fixtures (TensorBoard,
tensorboardX, Lightning incl. CSV, Hydra single and multirun, HF Trainer, wandb,
MLflow, generic), runs written here by the real tensorboardX writer, and copies
of the real Lightning and Hydra outputs with the length their configs would
state; all imported through the real CLI.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli

REACHED_HYDRA = "reached epochs=3 × steps_per_epoch=4 (12 steps)"

#: fixture -> run path suffix -> (status, reason, or a reason's start ending in "…")
FIXTURE_STATUS = {
    "hydra": {
        "outputs/2026-11-20/10-00-00": ("finished", REACHED_HYDRA),
        "outputs/2026-11-20/10-30-00": (
            "unknown",
            "no end marker, no process, metrics stop at step 5 of 12 "
            "(epochs=3 × steps_per_epoch=4)",
        ),
        "multirun/2026-11-20/11-00-00/0": ("finished", REACHED_HYDRA),
        "multirun/2026-11-20/11-00-00/1": ("finished", REACHED_HYDRA),
        "multirun/2026-11-20/11-00-00/2": ("finished", REACHED_HYDRA),
    },
    "torch_tb": {
        "runs/exp1": ("unknown", "no end marker, no process, no length configured"),
        "runs/tbx_exp": ("unknown", "no end marker, no process, no length configured"),
        "runs/diverged": ("diverged", "non-finite loss: …"),
    },
    "lightning": {
        "lightning_logs/version_0": ("finished", "end marker (lightning)"),
        "csv_logs/lightning_logs/version_0": ("finished", "end marker (lightning)"),
        "lightning_logs/version_1": (
            "failed",
            "traceback: RuntimeError: simulated failure in training_step (epoch 1, batch 1)…",
        ),
        "csv_logs/lightning_logs/version_1": ("failed", "traceback: RuntimeError: …"),
    },
    "generic": {
        "runs/yaml_jsonl": ("finished", "end marker (generic)"),
        "runs/json_csv": ("finished", "reached steps=25"),
        "runs/log_only": ("finished", "reached steps=500"),
        "runs/log_only_crash": ("failed", "traceback: RuntimeError: CUDA error: …"),
    },
    "hf_trainer": {
        "out_finished": ("finished", "end marker (hf-trainer)"),
        "out_killed": (
            "killed",
            "killed: last checkpoint at step 2 of max_steps=8, no final trainer state",
        ),
    },
    "wandb": {
        "fo7090ag": ("finished", "end marker (wandb)"),
        "7rjyqhin": ("failed", "traceback: …"),
    },
}


def _import(root: Path, db: Path) -> dict[str, dict]:
    res = run_cli("import", str(root), "--no-git", db=db)
    assert res.returncode == 0, res.stderr
    ls = json.loads(run_cli("ls", "--json", "--limit", "1000", db=db).stdout)
    out = {}
    for row in ls:
        rec = json.loads(run_cli("show", row["id"], "--json", db=db).stdout)
        out[rec["path"]] = rec
    return out


def _by_suffix(records: dict[str, dict], suffix: str, *, wandb: bool = False) -> dict:
    if wandb:  # offline-run-<time>-<id>: by its id
        found = [r for p, r in records.items() if p.endswith(suffix.rsplit("/", 1)[-1])]
    else:
        found = [r for p, r in records.items() if p.endswith(suffix)]
    assert len(found) == 1, (suffix, sorted(records))
    return found[0]


def _check(rec: dict, status: str, reason: str) -> None:
    assert rec["status"] == status, (rec["path"], rec["status"], rec["status_reason"])
    if reason.endswith("…"):
        assert rec["status_reason"].startswith(reason[:-1]), rec["status_reason"]
    else:
        assert rec["status_reason"] == reason, rec["status_reason"]


@pytest.mark.parametrize("fixture", sorted(FIXTURE_STATUS))
def test_fixture_runs_have_status_and_reason(fixture: str, tmp_path: Path) -> None:
    copy = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, copy, symlinks=True)
    records = _import(copy, tmp_path / "lb.db")
    for suffix, (status, reason) in FIXTURE_STATUS[fixture].items():
        _check(
            _by_suffix(records, f"/{fixture}/{suffix}", wandb=fixture == "wandb"), status, reason
        )
    # every run says why, and `show` prints it
    for rec in records.values():
        assert rec["status_reason"], rec["path"]
    shown = run_cli("show", next(iter(records.values()))["id"], db=tmp_path / "lb.db").stdout
    first = next(iter(records.values()))
    assert f"{first['status']} ({first['status_reason']})" in shown


def test_mlflow_statuses_say_who_recorded_them(tmp_path: Path) -> None:
    copy = tmp_path / "mlflow"
    shutil.copytree(FIXTURES / "mlflow", copy, symlinks=True)
    records = _import(copy, tmp_path / "lb.db")
    reasons = {(r["status"], r["status_reason"]) for r in records.values()}
    assert ("failed", "MLflow run ended with status FAILED") in reasons
    assert all(why for _, why in reasons)


# -- tensorboardX runs written here -------------------------------------------------------


def _tbx_run(run_dir: Path, config: str | None, tags: dict[str, list[tuple[int, float]]],
             hparams: dict | None = None) -> None:  # fmt: skip
    from tensorboardX import SummaryWriter

    run_dir.mkdir(parents=True)
    if config is not None:
        (run_dir / "config.yaml").write_text(config)
    w = SummaryWriter(logdir=str(run_dir))
    for tag, points in tags.items():
        for step, value in points:
            w.add_scalar(tag, value, step)
    if hparams:
        w.add_hparams(hparams, {"hparam/final": 0.1})
    w.close()


def test_tensorboardx_runs_that_reached_their_length_are_finished(tmp_path: Path) -> None:
    root = tmp_path / "tbx"
    loss = lambda n, every=1: [(s, 1.0 / (s + 1)) for s in range(0, n, every)]  # noqa: E731
    _tbx_run(root / "per_epoch_done", "training:\n  epochs: 5\n", {"loss": loss(5)})
    _tbx_run(root / "per_epoch_cut", "training:\n  epochs: 5\n", {"loss": loss(3)})
    _tbx_run(root / "max_steps_done", None, {"train/loss": loss(100, 10)}, {"max_steps": 100})
    _tbx_run(root / "max_steps_cut", None, {"train/loss": loss(60, 10)}, {"max_steps": 100})
    epochs = [(s, float(s // 2)) for s in range(6)]  # epoch 0,0,1,1,2,2 (Lightning-style)
    _tbx_run(root / "epoch_tag_done", "trainer:\n  max_epochs: 3\n",
             {"epoch": epochs, "loss": loss(6)})  # fmt: skip
    _tbx_run(root / "epoch_tag_cut", "trainer:\n  max_epochs: 3\n",
             {"epoch": epochs[:5], "loss": loss(5)})  # fmt: skip
    _tbx_run(root / "no_length", "lr: 0.1\n", {"loss": loss(5)})
    records = _import(root, tmp_path / "lb.db")
    expect = {
        "per_epoch_done": ("finished", "reached training.epochs=5 (steps 0..4 read as epochs)"),
        "per_epoch_cut": ("unknown", "no end marker, no process, metrics stop at epoch 2 of 5"),
        "max_steps_done": ("finished", "reached max_steps=100"),
        "max_steps_cut": ("unknown", "no end marker, no process, metrics stop at step 50 of 100"),
        "epoch_tag_done": ("finished", "reached trainer.max_epochs=3"),
        "epoch_tag_cut": ("unknown", "no end marker, no process, metrics stop at epoch 2 of 3"),
        "no_length": ("unknown", "no end marker, no process, no length configured"),
    }
    for name, (status, reason) in expect.items():
        _check(_by_suffix(records, "/" + name), status, reason)


# -- copies of real Lightning CSV and Hydra output with the length stated ---------------------


def test_lightning_csv_runs_compare_their_epoch_column(tmp_path: Path) -> None:
    """CSVLogger's ``epoch`` column is an index, not a metric: it still tells how far it got."""
    root = tmp_path / "proj" / "csv_logs" / "lightning_logs"
    for v in ("version_0", "version_1"):  # without the console logs beside them
        shutil.copytree(FIXTURES / "lightning" / "csv_logs" / "lightning_logs" / v, root / v)
        hp = root / v / "hparams.yaml"
        hp.write_text(hp.read_text() + "max_epochs: 3\n")  # save_hyperparameters(max_epochs=3)
    records = _import(tmp_path / "proj", tmp_path / "lb.db")
    _check(_by_suffix(records, "version_0"), "finished", "reached max_epochs=3")
    assert "epoch" not in _by_suffix(records, "version_0")["metrics"]
    _check(
        _by_suffix(records, "version_1"),
        "unknown",
        "no end marker, no process, metrics stop at epoch 1 of 3",
    )


def test_hydra_job_with_lightning_csv_below_uses_nested_max_epochs(tmp_path: Path) -> None:
    job = tmp_path / "outputs" / "2026-11-20" / "10-00-00"
    shutil.copytree(FIXTURES / "hydra" / "outputs" / "2026-11-20" / "10-00-00", job)
    (job / "train.log").unlink()  # the metrics come from the Lightning CSV below the job
    cfg = job / ".hydra" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("epochs: 3", "trainer:\n  max_epochs: 3"))
    shutil.copytree(
        FIXTURES / "lightning" / "csv_logs" / "lightning_logs" / "version_0",
        job / "lightning_logs" / "version_0",
    )
    records = _import(tmp_path / "outputs", tmp_path / "lb.db")
    _check(_by_suffix(records, "10-00-00"), "finished", "reached trainer.max_epochs=3")


# -- the daemon's verdict and labbook run ------------------------------------------------------


def test_daemon_verdicts_say_why(tmp_path: Path) -> None:
    from labbook.recognisers import RECOGNISERS
    from labbook.recognisers.base import list_dir
    from labbook.sources.discover import Completer
    from labbook.sources.watch.lifecycle import EXITED, INACTIVE, end_verdict

    _tbx_run(tmp_path / "cut", "epochs: 5\n", {"loss": [(0, 1.0), (1, 0.5), (2, 0.4)]})

    def facts():
        d = list_dir(tmp_path / "cut")
        rec = next(r for r in RECOGNISERS if r.match(d))
        return Completer(git=False).complete(next(iter(rec.read(d))))

    v = end_verdict(facts(), None, reason=INACTIVE)
    assert (v.status, v.reason) == (
        "unknown",
        "no end marker, no process, went quiet; metrics stop at epoch 2 of 5",
    )
    v = end_verdict(facts(), None, reason=EXITED, exit_code=0)
    assert (v.status, v.reason) == ("finished", "daemon: process exited 0")
    v = end_verdict(facts(), None, reason=EXITED, exit_code=2)
    assert (v.status, v.reason) == ("failed", "daemon: process exited 2")
    v = end_verdict(facts(), None, reason=EXITED)
    assert (v.status, v.reason) == ("finished", "daemon: process exited, no failure in its files")


def test_labbook_run_records_the_exit_code_as_the_reason(tmp_path: Path) -> None:
    db = tmp_path / "lb.db"
    (tmp_path / "ok.py").write_text("print('done')\n")
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    assert run_cli("run", "--", sys.executable, "ok.py", db=db, cwd=tmp_path).returncode == 0
    assert run_cli("run", "--", sys.executable, "boom.py", db=db, cwd=tmp_path).returncode == 1
    ok = json.loads(run_cli("show", "ok", "--json", db=db).stdout)
    assert (ok["status"], ok["status_reason"]) == ("finished", "labbook run: exit code 0")
    boom = json.loads(run_cli("show", "boom", "--json", db=db).stdout)
    assert boom["status"] == "failed"
    assert boom["status_reason"].startswith(
        "labbook run: exit code 1; traceback: RuntimeError: boom"
    )
