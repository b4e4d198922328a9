#!/usr/bin/env python
"""Benchmark: the packages of an interpreter, and finding the process behind a run dir.

What it does
------------
1. Packages of ``--python`` (default: this interpreter), three ways, each repeated
   ``--repeat`` times, medians printed with the ratio to labbook:

   * ``pip freeze`` (``PYTHON -m pip freeze``), the usual way, in a child process;
   * ``importlib.metadata.distributions()`` in a child process of that interpreter
     (what asking the interpreter itself costs);
   * labbook's :func:`labbook.capture.process.packages_of`: site-packages found from
     the files next to the executable, ``*.dist-info/METADATA`` headers read
     directly -- cold (caches cleared before each call; the OS page cache is warm,
     as it is for the peers) and warm (its (directory, mtime) cache hit).

   The three must agree on names and versions (differences are printed).

2. :func:`labbook.capture.process.find_writer` on a run dir written by one child
   process while ``--processes`` other idle processes of the same user run (default
   300, "a machine with hundreds of processes"), median and p99 over ``--repeat``
   calls, without the (cached) package read and with it.  The daemon's budget for
   capturing a new run is one second.

Run:  python benchmarks/bench_packages.py [--python PATH] [--repeat 15] [--processes 300]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from labbook.capture import process as capproc

_IMPORTLIB = (
    "import importlib.metadata as m\n"
    "for d in m.distributions():\n"
    "    print(d.metadata['Name'], d.version, sep='==')\n"
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(lines: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines.splitlines():
        name, sep, version = line.partition("==")
        if sep and name and not line.startswith("#"):
            out.setdefault(_norm(name), version.strip())
    return out


def _time(fn: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    times: list[float] = []
    result: object = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:9.2f} ms"


def _p99(times: list[float]) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def bench_packages(python: str, repeat: int) -> None:
    print(f"packages of {python}")

    def pip_freeze() -> dict[str, str]:
        out = subprocess.run(
            [python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
        )
        return _parse(out.stdout)

    def importlib_child() -> dict[str, str]:
        out = subprocess.run([python, "-c", _IMPORTLIB], capture_output=True, text=True, check=True)
        return _parse(out.stdout)

    def cold() -> dict[str, str]:
        capproc._PACKAGES_CACHE.clear()
        capproc._SITE_CACHE.clear()
        return capproc.packages_of(python)

    def warm() -> dict[str, str]:
        return capproc.packages_of(python)

    t_pip, pip_pkgs = _time(pip_freeze, repeat)
    t_imp, imp_pkgs = _time(importlib_child, repeat)
    t_cold, ours = _time(cold, repeat)
    t_warm, _ = _time(warm, repeat)
    assert isinstance(ours, dict) and isinstance(pip_pkgs, dict) and isinstance(imp_pkgs, dict)
    base = statistics.median(t_cold)
    print(
        f"  distributions: labbook {len(ours)}, pip freeze {len(pip_pkgs)}, importlib {len(imp_pkgs)}"
    )
    print(
        f"  pip freeze (child process)         {_ms(t_pip)}   {statistics.median(t_pip) / base:7.1f}x labbook cold"
    )
    print(
        f"  importlib.metadata (child process) {_ms(t_imp)}   {statistics.median(t_imp) / base:7.1f}x labbook cold"
    )
    print(f"  labbook packages_of, cold          {_ms(t_cold)}")
    print(
        f"  labbook packages_of, warm (cache)  {_ms(t_warm)}   {statistics.median(t_pip) / statistics.median(t_warm):7.0f}x faster than pip freeze"
    )
    for label, other in (("pip freeze", pip_pkgs), ("importlib", imp_pkgs)):
        missing = sorted(set(other) - set(ours))
        extra = sorted(set(ours) - set(other))
        differ = sorted(k for k in set(ours) & set(other) if ours[k] != other[k])
        if missing or extra or differ:
            print(
                f"  vs {label}: only there {missing[:8]}, only labbook {extra[:8]}, versions differ {differ[:8]}"
            )
        else:
            print(f"  vs {label}: identical")


def bench_find_writer(processes: int, repeat: int) -> None:
    idle: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "runs" / "exp"
        run_dir.mkdir(parents=True)
        try:
            for _ in range(processes):
                idle.append(subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL))
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"import sys; fh = open({str(run_dir / 'log')!r}, 'a'); "
                    "print('ready', flush=True); sys.stdin.read()",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            idle.append(writer)
            assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
            total = len(os.listdir("/proc")) if os.path.isdir("/proc") else -1
            print(f"find_writer with {processes} extra idle processes ({total} /proc entries)")
            capproc.find_writer(str(run_dir))  # warm the package cache
            t_plain, info = _time(
                lambda: capproc.find_writer(str(run_dir), with_packages=False), repeat
            )
            assert info is not None and getattr(info, "pid", None) == writer.pid
            t_full, _ = _time(lambda: capproc.find_writer(str(run_dir)), repeat)
            for label, times in (("without packages", t_plain), ("with packages (cached)", t_full)):
                print(
                    f"  {label:24s} median {_ms(times)}  p99 {_p99(times) * 1000:8.2f} ms"
                    f"  ({statistics.median(times) * 1000 / (total or 1):.3f} ms/process)"
                )
        finally:
            for proc in idle:
                proc.kill()
            for proc in idle:
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
                if proc.stdin is not None:
                    proc.stdin.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--processes", type=int, default=300)
    args = ap.parse_args()
    bench_packages(args.python, args.repeat)
    print()
    bench_find_writer(args.processes, args.repeat)


if __name__ == "__main__":
    main()
