"""A training-like writer for the daemon's tests and benchmark (run as a subprocess).

usage: python watch_writer.py MODE RUN_DIR N RATE [START]
MODE: tb (tensorboardX scalars), jsonl, nan (jsonl whose loss turns NaN), fail
(jsonl + a traceback in train.log and exit 1). Writes N points at RATE per second,
steps START.. START+N-1, then exits. Prints "ready" once its first point is on disk.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time


def main() -> int:
    mode, run_dir, n, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    start = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    os.makedirs(run_dir, exist_ok=True)
    period = 1.0 / rate if rate > 0 else 0.0
    t0 = time.monotonic()
    if mode == "tb":
        from tensorboardX import SummaryWriter

        w = SummaryWriter(run_dir, flush_secs=1)
        for i in range(start, start + n):
            w.add_scalar("train/loss", 1.0 / (i + 1), i)
            if i == start or i % 10 == 0:
                w.flush()
            if i == start:
                print("ready", flush=True)
            _pace(t0, i - start + 1, period)
        w.close()
        return 0
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write("lr: 0.1\nseed: 7\n")
    log = open(os.path.join(run_dir, "train.log"), "a")  # noqa: SIM115
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as out:
        for i in range(start, start + n):
            loss = 1.0 / (i + 1)
            if mode == "nan" and i >= start + n // 2:
                loss = math.nan
            out.write(json.dumps({"step": i, "loss": loss}) + "\n")
            out.flush()
            if i == start:
                print("ready", flush=True)
            _pace(t0, i - start + 1, period)
    if mode == "fail":
        log.write(
            "Traceback (most recent call last):\n"
            '  File "train.py", line 3, in <module>\n'
            "    main()\n"
            "ValueError: bad batch\n"
        )
        log.close()
        return 1
    log.write("done\n")
    log.close()
    return 0


def _pace(t0: float, done: int, period: float) -> None:
    if period:
        delay = t0 + done * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    sys.exit(main())
