"""A tiny training script that knows nothing about labbook (runs as it is).

It fits y = 3x + 1 with SGD in plain Python and writes what many real scripts
write: ``config.yaml``, one JSON line of metrics per step (``metrics.jsonl``), a
console log (``train.log``) and, once training ends, ``metrics.json``. A learning
rate that is too large makes the loss overflow to inf and then NaN: a diverged run.

    python examples/train.py --lr 0.05 --seed 1 --out runs/baseline
    python examples/train.py --lr 5 --seed 1 --out runs/too-high-lr
    python examples/train.py --lr 0.05 --seed 2 --step-time 0.05 --out runs/slow   # ~12 s: watch it live
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import TextIO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=None, help="random seed (unseeded if omitted)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="runs/example")
    parser.add_argument(
        "--step-time",
        type=float,
        default=0.0,
        help="seconds each step takes, to watch a run live (labbook watch); default 0",
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        "model:\n  kind: linear\n  init: zeros\n"
        f"optimizer:\n  name: sgd\n  lr: {args.lr}\n"
        f"epochs: {args.epochs}\nbatch_size: {args.batch_size}\n"
        f"seed: {'null' if args.seed is None else args.seed}\n"
    )
    with open(out / "train.log", "w", buffering=1) as log:
        return _train(args, out, log)


def _train(args: argparse.Namespace, out: Path, log: TextIO) -> int:
    def say(line: str) -> None:
        print(line)
        log.write(line + "\n")

    say(
        f"Namespace(lr={args.lr}, seed={args.seed}, epochs={args.epochs}, batch_size={args.batch_size})"
    )
    rng = random.Random(args.seed)
    data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(256))]
    val = data[:64]
    train = data[64:]
    w = b = 0.0
    step = 0
    with open(out / "metrics.jsonl", "w", buffering=1) as metrics:
        for epoch in range(args.epochs):
            rng.shuffle(train)
            for i in range(0, len(train), args.batch_size):
                batch = train[i : i + args.batch_size]
                gw = sum(2 * (w * x + b - y) * x for x, y in batch) / len(batch)
                gb = sum(2 * (w * x + b - y) for x, y in batch) / len(batch)
                w, b = w - args.lr * gw, b - args.lr * gb
                step += 1
                if args.step_time:
                    time.sleep(args.step_time)
            train_loss = _mse(train, w, b)
            val_loss = _mse(val, w, b)
            metrics.write(
                json.dumps(
                    {"step": step, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
                )
                + "\n"
            )
            say(f"epoch={epoch} step={step} train_loss={train_loss:.6g} val_loss={val_loss:.6g}")
    (out / "metrics.json").write_text(
        json.dumps({"step": step, "train_loss": train_loss, "val_loss": val_loss})
    )
    say("done")
    return 0


def _mse(data: list[tuple[float, float]], w: float, b: float) -> float:
    # Floats overflow to inf and then become NaN, as a diverging loss does on a GPU.
    errors = [w * x + b - y for x, y in data]
    return sum(e * e for e in errors) / len(data)


if __name__ == "__main__":
    sys.exit(main())
