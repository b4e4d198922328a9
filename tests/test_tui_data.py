"""Fixed runs for the TUI tests, written through labbook's own API (``Store.save_run``).

Everything shown on screen is fixed here (times, hosts, seeds, curves), so Pilot
assertions and SVG snapshots do not depend on the day or the machine. Imported by
the other ``test_tui*`` modules; it holds no tests itself.
"""

from __future__ import annotations

import math
from datetime import timezone
from pathlib import Path

from labbook.model import EnvInfo, Failure, GitState, Point, RunFacts, Seed
from labbook.store import Store

T0 = 1_793_523_600.0  # 2026-11-01T09:00:00Z
UTC = timezone.utc
#: The fake "now" of the app clock: a day after the first run.
NOW = T0 + 86_400

DIFF = """\
diff --git a/train.py b/train.py
index 3b18e51..a9c2f4d 100644
--- a/train.py
+++ b/train.py
@@ -1,4 +1,4 @@
 import torch
-lr = 0.001
+lr = 0.1
 model = Net()
 train(model, lr)
"""


def _curve(n: int, start: float, end: float, *, nan_from: int | None = None) -> list[Point]:
    pts = []
    for k in range(n):
        frac = k / (n - 1)
        value = start + (end - start) * (1 - math.exp(-4 * frac)) / (1 - math.exp(-4))
        if nan_from is not None and k >= nan_from:
            value = float("nan")
        pts.append(Point(step=k * 10, value=value, wall_time=T0 + k))
    return pts


def facts(i: int, root: Path, **over: object) -> RunFacts:
    """Run number ``i``: a baseline, a diverged high-lr run, an OOM, seeds, an unseeded run."""
    statuses = ["finished", "diverged", "failed", "finished", "finished", "killed"]
    status = statuses[i % len(statuses)]
    lr = [0.001, 0.1, 0.001, 0.001, 0.001, 0.01][i % 6]
    seed = None if i % 6 == 4 else 40 + i
    path = root / f"run{i:02d}"
    f = RunFacts(
        path=str(path),
        framework=["lightning", "hydra", "tensorboard", "generic"][i % 4],
        source_key=str(path),
        name=f"exp/run{i:02d}",
        status=status,
        failure={
            "diverged": Failure("nan", "train/loss is nan at step 60", 60),
            "failed": Failure("cuda_oom", "torch.OutOfMemoryError: CUDA out of memory", 30),
            "killed": Failure("signal", "killed by SIGTERM"),
        }.get(status),
        started_at=T0 + i * 3600,
        ended_at=T0 + i * 3600 + 1200 + 60 * i,
        command=["python", "train.py", "--lr", str(lr)],
        seed=Seed(seed, "config:seed" if seed is not None else None),
        config={
            "optimizer.name": "adam",
            "optimizer.lr": lr,
            "model.depth": 18 if i % 2 else 34,
            "model.dropout": 0.1,
            "data.batch_size": 128,
            "seed": seed,
        },
        metrics={
            "train/loss": _curve(
                20, 2.3, 0.2 + 0.05 * i, nan_from=6 if status == "diverged" else None
            ),
            "val/loss": _curve(10, 2.4, 0.3 + 0.04 * i),
            "val/acc": _curve(10, 0.1, 0.9 - 0.02 * i),
            "gpu/util": _curve(10, 20.0, 95.0),
        },
        git=GitState(
            root=str(root),
            commit=f"{i:02d}" + "a1b2c3d4e5f6" * 3 + "abcd",
            branch="main",
            remote="https://example.invalid/org/repo.git",
            dirty=i % 2 == 1,
            diff=DIFF if i % 2 == 1 else "",
            untracked=["notes.py"] if i % 2 == 1 else [],
            untracked_contents={"notes.py": "print('scratch')\n"} if i % 2 == 1 else {},
        ),
        env=EnvInfo(
            source="process",
            python="3.11.7",
            platform="Linux-6.1-x86_64",
            packages={"torch": "2.13.0", "numpy": "2.4.6", "lightning": "2.6.0"},
            cuda="12.4",
            gpus=["NVIDIA H200"],
            vars={"CUDA_VISIBLE_DEVICES": "0"},
        ),
        log_tail="\n".join(
            f"epoch={k} step={k * 10} train_loss={2.3 - k * 0.1:.3f}" for k in range(12)
        )
        + (
            "\nTraceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory"
            if status == "failed"
            else ""
        ),
        host="gpu1",
        user="ana",
    )
    for key, value in over.items():
        setattr(f, key, value)
    return f


def fill(db: Path, n: int = 6, root: Path | None = None) -> list[str]:
    """Write runs 0..n-1 into the database at ``db``; return their ids, oldest first."""
    root = root or Path("/data/exp")
    with Store.open(db) as store:
        return [store.save_run(facts(i, root))[0] for i in range(n)]


def fixed_ids(monkeypatch: object) -> None:
    """Make run ids deterministic (``00000001``, …) for snapshots: ids are on screen."""
    counter = iter(range(1, 1_000_000))

    def new_id(self: Store) -> str:
        return f"{next(counter):08x}"

    monkeypatch.setattr(Store, "_new_id", new_id)  # type: ignore[attr-defined]


#: The steps where the diverged run's loss is off the scale (see diverged_facts).
INF_STEP, NAN_FROM = 19, 21
#: Three seeds of one config: long names that differ only at their end.
SEED_NAMES = [f"seeds/lightning_resnet50_lr0.001_bs128_wd0.05_seed{k}" for k in (1, 2, 3)]


def diverged_facts(root: Path) -> RunFacts:
    """A run whose loss blew up: it grows to 4.1e13, is inf at step 19, finite once
    more at step 20, NaN from step 21 to its last step, 24."""
    loss = []
    for k in range(25):
        value = 2.3 * 1.9**k if k < 18 else 4.1e13
        if k == INF_STEP:
            value = float("inf")
        elif k >= NAN_FROM:
            value = float("nan")
        loss.append(Point(step=k, value=value, wall_time=T0 + k))
    f = facts(1, root, name="exp/blew-up", started_at=T0 + 7 * 3600, ended_at=T0 + 7 * 3600 + 90)
    f.path = f.source_key = str(root / "blew-up")
    f.failure = Failure("nan", "train/loss is nan at step 21", NAN_FROM)
    f.metrics = {"train/loss": loss, "val/loss": _curve(3, 2.4, 9.0)}
    return f


def add_diverged(db: Path, root: Path | None = None) -> str:
    """Add :func:`diverged_facts`'s run to the database at ``db``; return its id."""
    with Store.open(db) as store:
        return store.save_run(diverged_facts(root or Path("/data/exp")))[0]


def add_seeds(db: Path, root: Path | None = None) -> list[str]:
    """Add three seeds of one config (names from SEED_NAMES); return their ids."""
    root = root or Path("/data/exp")
    ids = []
    with Store.open(db) as store:
        for k, name in enumerate(SEED_NAMES):
            f = facts(3, root, name=name, started_at=T0 + (8 + k) * 3600)
            f.ended_at = f.started_at + 1500
            f.path = f.source_key = str(root / f"seed{k + 1}")
            ids.append(store.save_run(f)[0])
    return ids
