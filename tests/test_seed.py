"""Seeds from configs, command lines, Hydra overrides and the environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from labbook.capture.seed import (
    SEED_KEYS,
    parse_seed_value,
    pick_seed,
    seed_from_argv,
    seed_from_config,
    seed_from_env,
    seed_from_overrides,
    seed_unreadable,
)
from labbook.model import Seed, flatten
from tests.conftest import FIXTURES, run_cli


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (42, 42),
        ("42", 42),
        (" -7 ", -7),
        (42.0, 42),
        ("42.0", 42),
        ('"13"', 13),
        ("abc", "abc"),
        ("1,2,3", "1,2,3"),
        (0.5, 0.5),
        (None, None),
        ("null", None),
        ("None", None),
        ("~", None),
        ("", None),
        (True, None),
        ("true", None),
        ([1, 2], None),
        ({}, None),
        (float("nan"), None),
    ],
)
def test_parse_seed_value(raw: Any, expected: Any) -> None:
    assert parse_seed_value(raw) == expected


def test_config_top_level_seed_wins() -> None:
    config = flatten({"seed": 1, "data_seed": 2, "trainer": {"seed": 3}})
    assert seed_from_config(config) == Seed(1, "config:seed")


def test_config_shortest_path() -> None:
    config = flatten({"model": {"init": {"seed": 5}}, "trainer": {"seed": "7"}, "lr": 0.1})
    assert seed_from_config(config) == Seed(7, "config:trainer.seed")


def test_config_same_depth_prefers_seed_key_order() -> None:
    config = {"data_seed": 2, "random_state": 3, "rng_seed": 4}
    assert seed_from_config(config) == Seed(4, "config:rng_seed")
    assert seed_from_config({"data_seed": 9, "seed": None}) == Seed(9, "config:data_seed")


@pytest.mark.parametrize("key", SEED_KEYS)
def test_config_every_seed_key(key: str) -> None:
    assert seed_from_config({f"training.{key}": 11}) == Seed(11, f"config:training.{key}")


def test_config_null_seed_is_not_a_seed() -> None:
    assert seed_from_config({"seed": None}) is None
    assert seed_from_config({"seed": "null", "other": 1}) is None
    assert seed_from_config({"seed": "null", "trainer.seed": 4}) == Seed(4, "config:trainer.seed")
    assert seed_from_config({}) is None
    assert seed_from_config({"seedling": 3, "reseed_every": 2}) is None
    assert seed_from_config("nonsense") is None  # type: ignore[arg-type]


def test_config_lightning_seed_everything() -> None:
    assert seed_from_config({"seed_everything": 1234, "trainer.max_epochs": 3}) == Seed(
        1234, "config:seed_everything"
    )
    assert seed_from_config({"seed_everything": True}) is None
    assert seed_from_config({"seed_everything": False}) is None
    assert seed_from_config({"seed_everything": "123"}) == Seed(123, "config:seed_everything")
    assert seed_from_config({"seed_everything": 5, "seed": 6}) == Seed(6, "config:seed")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train.py", "--seed", "42"], Seed(42, "argv:--seed")),
        (["train.py", "--seed=42"], Seed(42, "argv:--seed")),
        (
            ["python", "train.py", "--lr", "0.1", "--random-seed", "7"],
            Seed(7, "argv:--random-seed"),
        ),
        (["train.py", "--random_seed=8"], Seed(8, "argv:--random_seed")),
        (["train.py", "--data-seed", "3"], Seed(3, "argv:--data-seed")),
        (["train.py", "--seed", "-1"], Seed(-1, "argv:--seed")),
        (["train.py", "--seed", "1", "--seed", "2"], Seed(2, "argv:--seed")),
        (["train.py", "--seed", "abc"], Seed("abc", "argv:--seed")),
        (["main.py", "fit", "--seed_everything", "99"], Seed(99, "argv:--seed_everything")),
        (["train.py", "seed=42", "optimizer.lr=0.1"], Seed(42, "hydra:overrides")),
        (["train.py", "+seed=42"], Seed(42, "hydra:overrides")),
        (["train.py", "++trainer.seed=5"], Seed(5, "hydra:overrides")),
        (["train.py", "--multirun", "seed=1,2,3"], Seed("1,2,3", "hydra:overrides")),
        (["train.py", "--seed", "3", "seed=4"], Seed(3, "argv:--seed")),
    ],
)
def test_seed_from_argv(argv: list[str], expected: Seed) -> None:
    assert seed_from_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["train.py"],
        ["train.py", "--seed"],
        ["train.py", "--seed", "--lr", "0.1"],
        ["train.py", "--seed=null"],
        ["train.py", "--seeds", "3"],
        ["train.py", "-s", "3"],
        ["train.py", "~seed"],
        ["train.py", "seed=null"],
        ["main.py", "--seed_everything", "true"],
    ],
)
def test_seed_from_argv_none(argv: list[str]) -> None:
    assert seed_from_argv(argv) is None


def test_seed_from_overrides() -> None:
    assert seed_from_overrides(["seed=3", "optimizer.lr=0.1"]) == Seed(3, "hydra:overrides")
    assert seed_from_overrides(["model.seed=1", "seed=2"]) == Seed(2, "hydra:overrides")
    assert seed_from_overrides(["seed=2", "model.seed=1"]) == Seed(2, "hydra:overrides")
    assert seed_from_overrides(["seed=1", "seed=2"]) == Seed(2, "hydra:overrides")
    assert seed_from_overrides(["+experiment=big", "trainer.seed=7"]) == Seed(7, "hydra:overrides")
    assert seed_from_overrides(["db@backup=mysql", "seed@cfg=4"]) == Seed(4, "hydra:overrides")
    assert seed_from_overrides(["optimizer.lr=0.1"]) is None
    assert seed_from_overrides(["~seed", 3]) is None  # type: ignore[list-item]
    assert seed_from_overrides("seed=3") is None  # type: ignore[arg-type]


def test_seed_from_env() -> None:
    assert seed_from_env({"PL_GLOBAL_SEED": "1234"}) == Seed(1234, "env:PL_GLOBAL_SEED")
    assert seed_from_env({"PL_GLOBAL_SEED": ""}) is None
    assert seed_from_env({}) is None


def test_pick_seed() -> None:
    assert pick_seed() == Seed(None, None)
    assert pick_seed(None, Seed(None, "config:seed"), None) == Seed(None, None)
    first = Seed(1, "argv:--seed")
    assert pick_seed(None, first, Seed(2, "config:seed")) is first
    assert pick_seed(seed_from_config({}), seed_from_env({"PL_GLOBAL_SEED": "5"})) == Seed(
        5, "env:PL_GLOBAL_SEED"
    )


# --------------------------------------------------------------------------- unknown vs not set


def test_pick_seed_keeps_unknown() -> None:
    unknown = Seed.unknown()
    assert not unknown.known and unknown.value is None and unknown.source is None
    assert pick_seed(None, unknown) == Seed.unknown()
    assert pick_seed(Seed(), unknown, None) == Seed.unknown()
    assert pick_seed(unknown, Seed(3, "argv:--seed")) == Seed(3, "argv:--seed")
    assert pick_seed(Seed(), None).known  # nothing unreadable: not set


def test_seed_unreadable(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    assert seed_unreadable(cfg, None) is None  # absent: holds nothing
    cfg.write_text("")
    assert seed_unreadable(cfg, None) is None  # empty: read, and holds nothing
    cfg.write_text("seed: [1, 2\n")
    assert seed_unreadable(cfg, None) == Seed.unknown()  # there, but not read
    assert seed_unreadable(cfg, {"lr": 1}) is None
    assert seed_unreadable(tmp_path / "file" / "below", None) is None
    cfg.unlink()
    cfg.mkdir()
    assert seed_unreadable(cfg, None) == Seed.unknown()  # a directory where a file should be


def _wandb_run(root: Path, name: str, data: bytes) -> None:
    src = next((FIXTURES / "wandb" / "wandb").glob("offline-run-*-fo7090ag"))
    run = root / "wandb" / f"offline-run-20261122_1918{name}-{name}zz"
    shutil.copytree(src, run, symlinks=True)
    (run / "run-fo7090ag.wandb").unlink()
    (run / f"run-{name}zz.wandb").write_bytes(data)


def test_unknown_and_not_set_through_the_cli(tmp_path: Path) -> None:
    """A seed whose file could not be read is unknown in ls, show and --json, and
    ``--where seed=unknown`` finds it; ``seed=null`` finds only seeds not set."""
    root = tmp_path / "runs"
    log = next((FIXTURES / "wandb" / "wandb").glob("offline-run-*/run-fo7090ag.wandb"))
    data = log.read_bytes()
    _wandb_run(root, "01", data[:80])  # torn before the run record (the init config)
    _wandb_run(root, "02", b"\x00not a wandb log" * 20)  # unreadable
    _wandb_run(root, "03", data)  # whole: seed 5
    for name, cfg in (("corrupt", "lr: [0.1\nseed: 3\n"), ("plain", "lr: 0.1\n")):
        (root / name).mkdir(parents=True)
        (root / name / "config.yaml").write_text(cfg)
        (root / name / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    argv = root / "argv"  # corrupt config, but the command line says it
    argv.mkdir()
    (argv / "config.yaml").write_text("{{{")
    (argv / "labbook.json").write_text(
        json.dumps({"command": ["python", "train.py", "--seed", "8"], "config": {}})
    )
    (argv / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    hydra = root / "outputs" / "2026-11-22" / "12-00-00"
    (hydra / ".hydra").mkdir(parents=True)
    (hydra / ".hydra" / "config.yaml").write_text("model: {layers: [1\n")
    (hydra / ".hydra" / "overrides.yaml").write_text("- lr=0.1\n")
    light = root / "lightning_logs" / "version_0"
    light.mkdir(parents=True)
    (light / "hparams.yaml").write_text("seed: !!python/object:os.system [x]\n: :\n")
    (light / "metrics.csv").write_text("step,loss\n0,1.0\n")
    db = tmp_path / "db.sqlite"
    assert run_cli("import", str(root), db=db).returncode == 0
    listed = json.loads(run_cli("ls", "--json", db=db).stdout)
    seeds = {Path(r["path"]).name: r["seed"] for r in listed}
    unknown = {"value": None, "source": None, "known": False}
    assert seeds == {
        "offline-run-20261122_191801-01zz": unknown,
        "offline-run-20261122_191802-02zz": unknown,
        "offline-run-20261122_191803-03zz": {"value": 5, "source": "config:seed", "known": True},
        "corrupt": unknown,
        "plain": {"value": None, "source": None, "known": True},
        "argv": {"value": 8, "source": "argv:--seed", "known": True},
        "12-00-00": unknown,
        "version_0": unknown,
    }

    def where(expr: str) -> set[str]:
        out = run_cli("ls", "--json", "--where", expr, db=db)
        assert out.returncode == 0, out.stderr
        return {Path(r["path"]).name for r in json.loads(out.stdout)}

    unknown_names = {k for k, v in seeds.items() if not v["known"]}
    assert where("seed=unknown") == unknown_names
    assert where("seed=null") == {"plain"}
    assert where("seed!=unknown") == set(seeds) - unknown_names
    assert where("seed!=null") == set(seeds) - {"plain"}
    assert where("seed=5") == {"offline-run-20261122_191803-03zz"}
    table = run_cli("ls", db=db).stdout
    assert "unknown" in table and "not set" in table
    by_name = {Path(r["path"]).name: r["id"] for r in listed}
    shown = run_cli("show", by_name["corrupt"], db=db).stdout
    assert "unknown (a file that could hold it could not be read)" in shown
    assert "not set" in run_cli("show", by_name["plain"], db=db).stdout
    # re-reading keeps it: the store's representation round-trips
    assert run_cli("import", "--full", str(root), db=db).returncode == 0
    again = json.loads(run_cli("ls", "--json", db=db).stdout)
    assert {Path(r["path"]).name: r["seed"] for r in again} == seeds
