"""Failure classification on real output of real child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from labbook.analysis.status import classify, exception_info, exit_status, kernel_oom_evidence
from labbook.readers.files import read_jsonl_metrics
from tests.conftest import REPO

# The message torch 2.x raises (torch/csrc/CUDACachingAllocator.cpp), verbatim.
REAL_CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.15 GiB "
    "of which 3.56 MiB is free. Including non-PyTorch memory, this process has 79.14 GiB memory "
    "in use. Of the allocated memory 78.41 GiB is allocated by PyTorch, and 230.21 MiB is "
    "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
    "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)
REAL_CUBLAS = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
# Real kernel lines (mm/oom_kill.c) as dmesg prints them.
KERNEL_LOG = """\
[1234.567890] python invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
[1234.568000] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=python,pid={pid},uid=1000
[1234.568100] Out of memory: Killed process {pid} (python) total-vm:41943040kB, anon-rss:33554432kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:65536kB oom_score_adj:0
"""


def _child(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def test_cuda_oom_from_a_real_traceback(tmp_path: Path) -> None:
    source = (
        "class OutOfMemoryError(RuntimeError):\n"
        "    pass\n"
        "OutOfMemoryError.__module__ = 'torch'\n"
        "def step():\n"
        f"    raise OutOfMemoryError({REAL_CUDA_OOM!r})\n"
        "print('epoch=0 step=10 loss=2.3', flush=True)\n"
        "step()\n"
    )
    proc = _child(tmp_path, source)
    assert proc.returncode == 1
    failure = classify(exit_code=proc.returncode, log_text=proc.stdout + proc.stderr)
    assert failure is not None and failure.kind == "cuda_oom"
    assert "Tried to allocate 20.00 MiB" in failure.message


def test_cublas_alloc_failure(tmp_path: Path) -> None:
    proc = _child(tmp_path, f"raise RuntimeError({REAL_CUBLAS!r})\n")
    failure = classify(exit_code=proc.returncode, log_text=proc.stderr)
    assert failure is not None and failure.kind == "cuda_oom"
    assert "CUBLAS_STATUS_ALLOC_FAILED" in failure.message


def test_exception_names_the_innermost_user_frame(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "fakelib.py").write_text(
        "def forward(x):\n    raise ValueError(f'shapes {x} and (3, 4) do not match')\n"
    )
    source = (
        "import sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import fakelib\n"
        "def build_model():\n"
        "    return fakelib.forward((2, 3))\n"
        "build_model()\n"
    )
    proc = _child(tmp_path, source)
    info = exception_info(proc.stderr)
    assert info is not None
    assert info.type == "ValueError"
    assert info.message == "shapes (2, 3) and (3, 4) do not match"
    assert info.file is not None and info.file.endswith("train.py")
    assert info.func == "build_model" and info.line == 5
    failure = classify(exit_code=proc.returncode, log_text=proc.stderr)
    assert failure is not None and failure.kind == "exception"
    assert failure.message.startswith("ValueError: shapes (2, 3)")
    assert "train.py:5 in build_model" in failure.message
    assert "fakelib" not in failure.message


def test_a_real_diverging_run_is_nan(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--lr", "5", "--seed", "1",
         "--epochs", "15", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    metrics, _ = read_jsonl_metrics(out / "metrics.jsonl")
    failure = classify(exit_code=0, metrics=metrics)
    assert failure is not None and failure.kind == "nan"
    assert failure.step is not None and failure.step > 0
    # The printed log alone says so too ("train_loss=inf").
    from_log = classify(exit_code=0, log_text=proc.stdout)
    assert from_log is not None and from_log.kind == "nan"
    # A healthy run of the same script: no failure.
    ok = tmp_path / "ok"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--epochs", "2", "--out", str(ok)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    metrics, _ = read_jsonl_metrics(ok / "metrics.jsonl")
    assert classify(exit_code=0, metrics=metrics, log_text=(ok / "train.log").read_text()) is None


def test_signals_from_real_children() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        proc = subprocess.run(
            [sys.executable, "-c", f"import os, signal; os.kill(os.getpid(), {int(sig)})"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        code, name = exit_status(proc.returncode)
        assert (code, name) == (128 + int(sig), sig.name)
        failure = classify(
            exit_code=code, signal_name=name, log_text=proc.stderr, pid=1, kernel_log=""
        )
        assert failure is not None and failure.kind == "signal"
        assert failure.message.startswith(sig.name)


def test_sigkill_with_kernel_oom_evidence() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    proc.wait(timeout=60)
    code, name = exit_status(proc.returncode)
    log = KERNEL_LOG.format(pid=proc.pid)
    failure = classify(exit_code=code, signal_name=name, pid=proc.pid, kernel_log=log)
    assert failure is not None and failure.kind == "oom_killed"
    assert f"Killed process {proc.pid}" in failure.message
    # Another process's OOM kill is not evidence about this one.
    other = KERNEL_LOG.format(pid=proc.pid + 100000)
    failure = classify(exit_code=code, signal_name=name, pid=proc.pid, kernel_log=other)
    assert failure is not None and failure.kind == "signal"
    assert kernel_oom_evidence(proc.pid, kernel_log=other) is None
    # Reading the real kernel log never fails, whether or not it is readable here.
    assert kernel_oom_evidence(proc.pid) is None or "Kill" in str(kernel_oom_evidence(proc.pid))


def test_slurm_time_limit_is_timeout() -> None:
    text = (
        "epoch=3 step=3000 loss=0.41\n"
        "slurmstepd: error: *** JOB 4242 ON gpu-node-7 CANCELLED AT 2026-11-22T10:13:28 "
        "DUE TO TIME LIMIT ***\n"
    )
    failure = classify(exit_code=128 + 15, log_text=text)
    assert failure is not None and failure.kind == "timeout"
    assert "JOB 4242" in failure.message


def test_exit_zero_is_success_even_with_a_printed_traceback(tmp_path: Path) -> None:
    source = (
        "import traceback\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
        "print('done')\n"
    )
    proc = _child(tmp_path, source)
    assert proc.returncode == 0
    assert classify(exit_code=0, log_text=proc.stdout + proc.stderr) is None
    failure = classify(exit_code=3, log_text="")
    assert failure is not None and failure.message == "exited with code 3"
