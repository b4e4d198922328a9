"""Environment capture: redaction, packages, interpreters, live processes, wandb."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import types
import venv
from pathlib import Path

import pytest

from labbook.capture import env as capenv
from labbook.capture.env import (
    REDACTED,
    env_from_wandb_metadata,
    importer_env,
    process_env,
    python_version_of,
    read_packages,
    redact_text,
    select_env_vars,
    site_packages_of,
)

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
GH = "ghp_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"

REALISTIC_ENV = {
    "HOME": "/home/alice",
    "PATH": "/usr/bin:/bin",
    "SHELL": "/bin/bash",
    "HF_TOKEN": HF,
    "HF_HOME": "/data/hf",
    "HUGGING_FACE_HUB_TOKEN": HF,
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "WANDB_PROJECT": "llm-sweeps",
    "WANDB_BASE_URL": "https://alice:s3cret@wandb.example.com",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "MY_PASSWORD": "hunter2",
    "GITHUB_TOKEN": GH,
    "MLFLOW_TRACKING_URI": "https://bob:pa55@mlflow.example.com/",
    "MLFLOW_TRACKING_TOKEN": "abc",
    "MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NAME": "train",
    "PYTHONHASHSEED": "0",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "OMP_NUM_THREADS": "8",
    "TORCH_HOME": "/data/torch",
    "NCCL_DEBUG": "INFO",
    "TRANSFORMERS_CACHE": "/data/tf",
    "TOKENIZERS_PARALLELISM": "false",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29500",
    "RANK": "0",
    "LOCAL_RANK": "0",
    "WORLD_SIZE": "2",
    "HOSTNAME": "gpu-node-7",
    "TORCH_SECRET_THING": "whatever",
    "HF_HUB_EXTRA": "sk-" + "A" * 10 + "b" * 10 + "1234",
    "SSH_AUTH_SOCK": "/tmp/ssh-xyz/agent.1",
}


def test_select_env_vars_realistic() -> None:
    out = select_env_vars(REALISTIC_ENV)
    # secret names among kept prefixes: present but redacted
    assert out["HF_TOKEN"] == REDACTED
    assert out["WANDB_API_KEY"] == REDACTED
    assert out["MLFLOW_TRACKING_TOKEN"] == REDACTED
    assert out["TORCH_SECRET_THING"] == REDACTED
    # secret-looking value under a harmless kept name
    assert out["HF_HUB_EXTRA"] == REDACTED
    # URLs lose user:password
    assert out["WANDB_BASE_URL"] == "https://<redacted>@wandb.example.com"
    assert out["MLFLOW_TRACKING_URI"] == "https://<redacted>@mlflow.example.com/"
    # not kept at all
    for name in (
        "HOME",
        "PATH",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "MY_PASSWORD",
        "GITHUB_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "SSH_AUTH_SOCK",
        "TOKENIZERS_PARALLELISM",
    ):
        assert name not in out
    # kept and readable
    for name in (
        "HF_HOME",
        "WANDB_PROJECT",
        "CUDA_VISIBLE_DEVICES",
        "SLURM_JOB_ID",
        "SLURM_JOB_NAME",
        "PYTHONHASHSEED",
        "CUBLAS_WORKSPACE_CONFIG",
        "OMP_NUM_THREADS",
        "TORCH_HOME",
        "NCCL_DEBUG",
        "TRANSFORMERS_CACHE",
        "LD_LIBRARY_PATH",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "HOSTNAME",
        "MLFLOW_RUN_ID",
    ):
        assert out[name] == REALISTIC_ENV[name], name
    blob = repr(out)
    for secret in (HF, GH, "hunter2", "s3cret", "pa55", "wJalrXUtnFEMI", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in blob
    assert list(out) == sorted(out)


def test_select_env_vars_tolerates_odd_input() -> None:
    assert select_env_vars({}) == {}
    assert select_env_vars({"CUDA_VISIBLE_DEVICES": ""}) == {"CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python train.py --api-key XYZ --lr 0.1", "python train.py --api-key <redacted> --lr 0.1"),
        ("python train.py --api_key=XYZ --seed 3", "python train.py --api_key=<redacted> --seed 3"),
        ("train --use-auth --lr 0.1", "train --use-auth --lr 0.1"),
        (
            "train --token abc --max-tokens 100 --tokenizer gpt2",
            "train --token <redacted> --max-tokens 100 --tokenizer gpt2",
        ),
        ("token=abc123 lr=0.1", "token=<redacted> lr=0.1"),
        ('{"api_key": "xyz", "n": 1}', '{"api_key": "<redacted>", "n": 1}'),
        ("password: hunter2", "password: <redacted>"),
        ("git clone https://user:pass@github.com/o/r", "git clone https://<redacted>@github.com/o/r"),
        ("curl https://h/x?access_token=zzz&a=1", "curl https://h/x?access_token=<redacted>&a=1"),
        (
            'curl -H "Authorization: Bearer abcdefghijkl"',
            'curl -H "Authorization: Bearer <redacted>"',
        ),
        (f"export X={HF}", f"export X={REDACTED}"),
        (f"push with {GH} now", f"push with {REDACTED} now"),
        ("key AKIAIOSFODNN7EXAMPLE", f"key {REDACTED}"),
        ("pre-training data with seed=3", "pre-training data with seed=3"),
        ("", ""),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_text_is_idempotent() -> None:
    once = redact_text(f"--token {HF} https://a:b@h/ password=x")
    assert redact_text(once) == once


# --- packages ------------------------------------------------------------------------


def _write_dist_info(site: Path, dirname: str, metadata: str | None) -> None:
    d = site / dirname
    d.mkdir()
    if metadata is not None:
        (d / "METADATA").write_text(metadata)


@pytest.fixture(scope="module")
def fake_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv without pip (fast), plus a few hand-written distributions."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    sites = list(root.glob("lib/python*/site-packages"))
    assert len(sites) == 1
    site = sites[0]
    long_description = "Version: 9.9.9\n" * 2000
    _write_dist_info(
        site,
        "Foo_Bar-1.2.3.dist-info",
        f"Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.2.3\nSummary: x\n\n{long_description}",
    )
    _write_dist_info(
        site,
        "torch-2.3.1+cu121.dist-info",
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.3.1+cu121\n",
    )
    _write_dist_info(site, "no_meta_pkg-0.4.dist-info", None)
    egg_dir = site / "Old.Pkg-0.9-py3.11.egg-info"
    egg_dir.mkdir()
    (egg_dir / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: Old.Pkg\nVersion: 0.9\n\nbody\n"
    )
    (site / "flat_egg-1.1-py3.11.egg-info").write_text(
        "Metadata-Version: 1.0\nName: flat-egg\nVersion: 1.1\n"
    )
    (site / "not_a_dist").mkdir()
    return root


def test_read_packages_fake_venv(fake_venv: Path) -> None:
    site = next(fake_venv.glob("lib/python*/site-packages"))
    pkgs = read_packages([str(site), str(fake_venv / "does-not-exist")])
    assert pkgs == {
        "foo-bar": "1.2.3",
        "torch": "2.3.1+cu121",
        "no-meta-pkg": "0.4",
        "old-pkg": "0.9",
        "flat-egg": "1.1",
    }


def test_read_packages_first_directory_wins(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write_dist_info(a, "numpy-2.0.0.dist-info", "Name: numpy\nVersion: 2.0.0\n")
    _write_dist_info(b, "numpy-1.26.4.dist-info", "Name: numpy\nVersion: 1.26.4\n")
    assert read_packages([str(a), str(b)]) == {"numpy": "2.0.0"}


def _importlib_packages() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            out.setdefault(capenv.normalize_name(name), dist.version)
    return out


def test_read_packages_matches_importlib_metadata() -> None:
    dirs = [p for p in sys.path if p and os.path.isdir(p)]
    start = time.perf_counter()
    pkgs = read_packages(dirs)
    elapsed = time.perf_counter() - start
    expected = _importlib_packages()
    assert pkgs == expected
    assert "pytest" in pkgs
    assert elapsed < 1.0, elapsed


def test_site_packages_of_venv_without_running_it(
    fake_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the interpreter must not be run for a venv")

    monkeypatch.setattr(subprocess, "run", no_run)
    exe = fake_venv / "bin" / "python"
    dirs = site_packages_of(str(exe))
    assert dirs == [str(next(fake_venv.glob("lib/python*/site-packages")))]
    assert python_version_of(str(exe)) == platform.python_version()


def test_site_packages_of_current_interpreter() -> None:
    import site

    dirs = site_packages_of(sys.executable)
    expected = {os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)}
    assert dirs
    assert {os.path.realpath(d) for d in dirs} & expected
    assert "pytest" in read_packages(dirs)


def test_site_packages_of_nonsense(tmp_path: Path) -> None:
    not_python = tmp_path / "bin" / "bash"
    not_python.parent.mkdir()
    not_python.write_text("#!/bin/sh\necho should not run\n")
    not_python.chmod(0o755)
    assert site_packages_of(str(not_python)) == []
    assert site_packages_of(str(tmp_path / "nope" / "python3")) == []
    assert site_packages_of("") == []


# --- importer / process --------------------------------------------------------------


def test_importer_env_without_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(capenv, "_NVML_CACHE", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as on a CPU box
    monkeypatch.setenv("HF_TOKEN", HF)
    with caplog.at_level(logging.WARNING, logger="labbook"):
        info = importer_env()
    assert info.source == "importer"
    assert info.python == platform.python_version()
    assert info.platform == platform.platform()
    assert info.gpus == [] and info.cuda is None
    assert "pytest" in info.packages
    assert info.vars["HF_TOKEN"] == REDACTED
    assert not caplog.records


def test_importer_env_with_whatever_nvml_there_is() -> None:
    info = importer_env()
    assert isinstance(info.gpus, list)
    assert info.cuda is None or info.cuda[0].isdigit()
    # cached: a second call is cheap and equal
    start = time.perf_counter()
    again = importer_env()
    assert time.perf_counter() - start < 0.5
    assert again.packages == info.packages and again.gpus == info.gpus


def test_nvml_path_with_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NVML code path (no GPU here): bytes names, CUDA version, visible devices."""
    calls: list[str] = []
    fake = types.SimpleNamespace(
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: [b"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"][h],
    )
    monkeypatch.setattr(capenv, "_NVML_CACHE", None)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    info = importer_env()
    assert info.cuda == "12.4"
    assert info.gpus == ["NVIDIA A100-SXM4-40GB"]
    assert calls == ["init", "shutdown"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert importer_env().gpus == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"]
    assert calls == ["init", "shutdown"], "NVML is queried once per process"


def test_nvml_init_failure_is_silent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setattr(capenv, "_NVML_CACHE", None)
    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=fail))
    with caplog.at_level(logging.WARNING, logger="labbook"):
        info = importer_env()
    assert info.gpus == [] and info.cuda is None
    assert not caplog.records


def test_visible_gpus() -> None:
    gpus = ["A100", "H100", "L4"]
    assert capenv.visible_gpus(gpus, None) == gpus
    assert capenv.visible_gpus(gpus, "") == []
    assert capenv.visible_gpus(gpus, "2,0") == ["L4", "A100"]
    assert capenv.visible_gpus(gpus, "0,7,1") == ["A100"]
    assert capenv.visible_gpus(gpus, "GPU-1234") == gpus


def _sleeper(exe: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child that waits on its stdin, once it is really running.

    Right after ``Popen`` returns the child may still be inside ``execve`` (its
    ``/proc/PID/cmdline`` can read empty under load), so wait for its first line.
    """
    proc = subprocess.Popen(
        [exe, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a sleeper: closing its stdin lets it exit; kill it if it does not."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    proc.stdout.close()


def test_process_env_of_child() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HF_TOKEN": HF,
        "MY_PASSWORD": "hunter2",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "3",
        "SLURM_JOB_ID": "42",
        "WANDB_BASE_URL": "https://u:p@wandb.example.com",
    }
    proc = _sleeper(sys.executable, env)
    try:
        info = process_env(proc.pid)
    finally:
        _stop(proc)
    assert info is not None
    assert info.source == "process"
    assert info.vars == {
        "CUDA_VISIBLE_DEVICES": "",
        "HF_TOKEN": REDACTED,
        "OMP_NUM_THREADS": "3",
        "SLURM_JOB_ID": "42",
        "WANDB_BASE_URL": "https://<redacted>@wandb.example.com",
    }
    assert info.gpus == []  # CUDA_VISIBLE_DEVICES="" hides every GPU
    assert "pytest" in info.packages
    assert info.python is not None and platform.python_version().startswith(info.python)


@pytest.mark.parametrize("invoked_as", ["absolute", "on PATH"])
def test_process_env_of_venv_child(fake_venv: Path, invoked_as: str) -> None:
    if invoked_as == "absolute":
        proc = _sleeper(str(fake_venv / "bin" / "python"), {"OMP_NUM_THREADS": "1"})
    else:
        env = {"OMP_NUM_THREADS": "1", "PATH": str(fake_venv / "bin")}
        proc = _sleeper("python", env)
    try:
        info = process_env(proc.pid)
    finally:
        _stop(proc)
    assert info is not None
    assert info.packages["foo-bar"] == "1.2.3"
    assert "pytest" not in info.packages
    assert info.python == platform.python_version()
    assert info.vars == {"OMP_NUM_THREADS": "1"}
    assert process_env(proc.pid) is None  # gone now


def test_process_env_of_non_python_child() -> None:
    cat = shutil.which("cat")
    if cat is None:
        pytest.skip("needs cat")
    proc = subprocess.Popen(
        [cat], env={"OMP_NUM_THREADS": "2"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"ready\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"ready\n"  # running, not still in execve
    try:
        info = process_env(proc.pid)
    finally:
        _stop(proc)
    assert info is not None
    assert info.packages == {} and info.python is None
    assert info.vars == {"OMP_NUM_THREADS": "2"}


def test_process_env_gone_or_invalid() -> None:
    proc = _sleeper(sys.executable, {})
    _stop(proc)
    assert process_env(proc.pid) is None
    assert process_env(-5) is None
    assert process_env(2**40) is None


# --- wandb ---------------------------------------------------------------------------


def test_env_from_wandb_metadata_new_style() -> None:
    meta = {
        "os": "Linux-5.15.0-105-generic-x86_64-with-glibc2.35",
        "python": "CPython 3.10.12",
        "host": "gpu-node-7",
        "gpu": "NVIDIA A100-SXM4-80GB",
        "gpu_count": 2,
        "gpu_nvidia": [
            {"name": "NVIDIA A100-SXM4-80GB", "memoryTotal": "85899345920"},
            {"name": "NVIDIA A100-SXM4-80GB", "memoryTotal": "85899345920"},
        ],
        "cudaVersion": "12.4",
    }
    info = env_from_wandb_metadata(meta)
    assert info.source == "framework:wandb-metadata"
    assert info.python == "3.10.12"
    assert info.platform == meta["os"]
    assert info.cuda == "12.4"
    assert info.gpus == ["NVIDIA A100-SXM4-80GB"] * 2
    assert info.packages == {} and info.vars == {}


def test_env_from_wandb_metadata_old_style_and_junk() -> None:
    info = env_from_wandb_metadata(
        {"python": "3.8.10", "cuda": "11.3", "gpu": "Tesla V100", "gpu_count": 4}
    )
    assert info.python == "3.8.10" and info.cuda == "11.3"
    assert info.gpus == ["Tesla V100"] * 4
    devices = env_from_wandb_metadata({"gpu_devices": [{"name": "RTX 3090", "memory_total": 1}]})
    assert devices.gpus == ["RTX 3090"]
    apple = env_from_wandb_metadata({"gpu_apple": {"name": "Apple M2", "vendor": "Apple"}})
    assert apple.gpus == ["Apple M2"]
    junk = env_from_wandb_metadata(
        {"python": None, "gpu_nvidia": "oops", "gpu_count": "x", "gpu": 3}
    )
    assert junk.gpus == [] and junk.python is None
    assert env_from_wandb_metadata("not a dict").source == "framework:wandb-metadata"  # type: ignore[arg-type]
