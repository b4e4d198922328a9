"""The environment a run ran in: interpreter, packages, GPUs and a few variables.

Three sources, in order of trust (``EnvInfo.source`` says which one was used):

* ``framework:wandb-metadata`` -- what wandb wrote in ``wandb-metadata.json``
  (:func:`env_from_wandb_metadata`);
* ``process`` -- read from the live training process (:func:`process_env`);
* ``importer`` -- the interpreter that runs labbook (:func:`importer_env`), a guess
  used when nothing better is known.

Packages are read from ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO`` headers
(:func:`read_packages`), never by running pip: that is ~100x faster and cannot run
anything a user installed.

Environment variables are recorded only when they affect training or placement
(:data:`KEPT_VARS`), and anything that looks like a secret is replaced by
``"<redacted>"`` (:func:`select_env_vars`, :func:`redact_text`): a lab notebook is
shared, and tokens must not end up in it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

# The rules live in labbook.capture.redact (one redaction for every path into the store);
# these names are kept here for the code and tests that import them from here.
from labbook.capture.redact import (  # noqa: F401
    HIGH_ENTROPY,
    REDACTED,
    SECRET_PATTERN,
    TOKEN_VALUE_PATTERN,
    redact_env_vars,
    redact_text,
)
from labbook.model import EnvInfo
from labbook.warn import warn, warn_exception


def psutil_errors() -> tuple[type[BaseException], ...]:
    """psutil's errors (a process that ended or is not ours), once psutil is loaded."""
    cls = getattr(sys.modules.get("psutil"), "Error", None)
    return (cls,) if isinstance(cls, type) else ()


#: Variables recorded by :func:`select_env_vars`: exact names, or prefixes written
#: ``PREFIX_*``.  They are the ones that change what a training run does or where it
#: runs (devices, threads, determinism, distributed setup, framework settings).
KEPT_VARS: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "SLURM_*",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TORCH_*",
    "NCCL_*",
    "HF_*",
    "TRANSFORMERS_*",
    "WANDB_*",
    "MLFLOW_*",
    "CUDA_*",
    "PYTORCH_*",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "HOSTNAME",
)

_KEPT_EXACT = frozenset(v for v in KEPT_VARS if not v.endswith("*"))
_KEPT_PREFIXES = tuple(v[:-1] for v in KEPT_VARS if v.endswith("*"))


def is_kept_var(name: str) -> bool:
    """Whether ``name`` is one of :data:`KEPT_VARS` (exactly or by prefix)."""
    return name in _KEPT_EXACT or name.startswith(_KEPT_PREFIXES)


def select_env_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` worth recording, with secrets redacted.

    Only :data:`KEPT_VARS` are kept.  A kept variable whose name looks secret
    (``HF_TOKEN``, ``WANDB_API_KEY``) is recorded as ``"<redacted>"`` so one can
    still see that it was set; secret-looking values under other names are
    redacted too, and URLs lose their ``user:password@``.
    """
    try:
        items = list(environ.items())
    except Exception as exc:  # a broken mapping: record nothing rather than fail
        warn_exception(None, "environment variables not recorded", exc, quiet=True)
        return {}
    kept = {
        name: value if isinstance(value, str) else str(value)
        for name, value in items
        if isinstance(name, str) and is_kept_var(name)
    }
    return dict(sorted(redact_env_vars(kept).items()))


# --- packages -----------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name: lowercase, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_headers(path: str) -> tuple[str | None, str | None]:
    """Name and Version from the RFC 822 header block of METADATA/PKG-INFO.

    Reads line by line and stops at the first blank line (where the long
    description starts) or as soon as both are known, so a 1 MB README costs
    nothing.
    """
    name = version = None
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    break
                if raw[:5] == b"Name:" and name is None:
                    name = raw[5:].strip().decode("utf-8", "replace")
                elif raw[:8] == b"Version:" and version is None:
                    version = raw[8:].strip().decode("utf-8", "replace")
                if name is not None and version is not None:
                    break
    except OSError:
        return None, None
    return name or None, version or None


def _name_version_from_dirname(entry: str, suffix: str) -> tuple[str | None, str | None]:
    """``foo_bar-1.2.dist-info`` -> ("foo_bar", "1.2"); egg names may add ``-py3.11``."""
    stem = entry[: -len(suffix)]
    parts = stem.split("-")
    if len(parts) < 2 or not parts[0]:
        return (parts[0] or None) if parts else None, None
    return parts[0], parts[1] or None


def read_packages(site_dirs: Iterable[str]) -> dict[str, str]:
    """Installed distributions in ``site_dirs``: normalised name -> version.

    Reads ``*.dist-info/METADATA``, ``*.egg-info/PKG-INFO`` (directory or file form)
    and ``*.egg/EGG-INFO/PKG-INFO`` headers only; when METADATA is missing the
    version comes from the directory name.  The first directory that has a
    distribution wins, as on ``sys.path``.  Missing directories are skipped
    silently; unreadable ones are warned about.
    """
    packages: dict[str, str] = {}
    seen_dirs: set[str] = set()
    for site in site_dirs:
        try:
            site = os.fspath(site)
        except TypeError:
            continue
        if not site or site in seen_dirs:
            continue
        seen_dirs.add(site)
        try:
            entries = sorted(os.listdir(site))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            warn(site, f"cannot list installed packages: {exc.strerror or exc}")
            continue
        for entry in entries:
            if entry.endswith(".dist-info"):
                suffix, meta = ".dist-info", os.path.join(site, entry, "METADATA")
            elif entry.endswith(".egg-info"):
                suffix = ".egg-info"
                meta = os.path.join(site, entry)
                if os.path.isdir(meta):
                    meta = os.path.join(meta, "PKG-INFO")
            elif entry.endswith(".egg"):
                suffix, meta = ".egg", os.path.join(site, entry, "EGG-INFO", "PKG-INFO")
            else:
                continue
            name, version = _read_headers(meta)
            if name is None or version is None:
                dir_name, dir_version = _name_version_from_dirname(entry, suffix)
                name = name or dir_name
                version = version or dir_version
            if not name or not version:
                continue
            key = normalize_name(name)
            packages.setdefault(key, version)
    return packages


# --- interpreters --------------------------------------------------------------------

_PY_NAME = re.compile(r"^(?:python|pypy)(?P<ver>\d+(?:\.\d+)?)?(?:t|m|d|u)*(?:\.exe)?$", re.I)


def _read_pyvenv_cfg(path: str) -> dict[str, str]:
    conf: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition("=")
                if sep:
                    conf[key.strip().lower()] = value.strip()
    except OSError:
        pass
    return conf


def _find_pyvenv_cfg(exe: str) -> str | None:
    bindir = os.path.dirname(os.path.abspath(exe))
    for cand in (os.path.dirname(bindir), bindir):
        cfg = os.path.join(cand, "pyvenv.cfg")
        if os.path.isfile(cfg):
            return cfg
    return None


def _short_version(version: str | None) -> str | None:
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _prefix_site_dirs(prefix: str, short: str | None) -> list[str]:
    """``site-packages`` directories under an installation prefix.

    ``short`` is ``"3.11"`` when known; without it exactly one ``lib/python3.*``
    must exist (several would be a guess).
    """
    found: list[str] = []
    for lib in ("lib", "lib64"):
        if short:
            pattern = os.path.join(prefix, lib, f"python{short}*", "site-packages")
            cands = sorted(glob.glob(pattern))
            if not cands:
                cands = sorted(
                    glob.glob(os.path.join(prefix, lib, f"pypy{short}*", "site-packages"))
                )
        else:
            cands = sorted(glob.glob(os.path.join(prefix, lib, "python3*", "site-packages")))
            cands += sorted(glob.glob(os.path.join(prefix, lib, "pypy3*", "site-packages")))
            if len(cands) > 1:
                return []
        found.extend(c for c in cands if os.path.isdir(c))
    win = os.path.join(prefix, "Lib", "site-packages")
    if not found and os.path.isdir(win):
        found.append(win)
    unique: list[str] = []
    real_seen: set[str] = set()
    for d in found:
        real = os.path.realpath(d)
        if real not in real_seen:
            real_seen.add(real)
            unique.append(d)
    return unique


def _infer_site_packages(exe: str) -> list[str]:
    name_match = _PY_NAME.match(os.path.basename(exe))
    name_short = _short_version(name_match.group("ver")) if name_match else None
    cfg = _find_pyvenv_cfg(exe)
    if cfg is not None:
        conf = _read_pyvenv_cfg(cfg)
        short = _short_version(conf.get("version") or conf.get("version_info")) or name_short
        dirs = _prefix_site_dirs(os.path.dirname(cfg), short)
        if dirs and conf.get("include-system-site-packages", "").lower() == "true":
            home = conf.get("home", "")
            if home:
                base = (
                    os.path.dirname(home) if os.path.basename(home) in ("bin", "Scripts") else home
                )
                dirs += [d for d in _prefix_site_dirs(base, short) if d not in dirs]
        return dirs
    for candidate in (os.path.realpath(exe), os.path.abspath(exe)):
        bindir = os.path.dirname(candidate)
        prefix = (
            os.path.dirname(bindir) if os.path.basename(bindir) in ("bin", "Scripts") else bindir
        )
        real_match = _PY_NAME.match(os.path.basename(candidate))
        short = name_short or (_short_version(real_match.group("ver")) if real_match else None)
        dirs = _prefix_site_dirs(prefix, short)
        if dirs:
            return dirs
    return []


def looks_like_python(exe: str) -> bool:
    return bool(
        _PY_NAME.match(os.path.basename(exe))
        or _PY_NAME.match(os.path.basename(os.path.realpath(exe)))
    )


def _site_packages_by_running(exe: str) -> list[str]:
    """Ask the interpreter for its ``sys.path`` (only when inference failed)."""
    if not looks_like_python(exe) or not os.access(exe, os.X_OK):
        return []
    import subprocess  # lazy: only this fallback runs anything

    code = "import sys,json;print(json.dumps(sys.path))"
    try:
        proc = subprocess.run(
            [exe, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
        paths = json.loads(proc.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []
    if not isinstance(paths, list):
        return []
    return [
        p
        for p in paths
        if isinstance(p, str)
        and os.path.basename(p.rstrip("/\\")) in ("site-packages", "dist-packages")
        and os.path.isdir(p)
    ]


def site_packages_of(python_executable: str) -> list[str]:
    """The ``site-packages`` directories of an interpreter, ideally without running it.

    Inferred from the executable's path: a venv (``pyvenv.cfg`` next to ``bin/``,
    plus the base interpreter's directories when it includes system
    site-packages), a conda env, pyenv or any ``PREFIX/bin/pythonX.Y`` layout with
    ``PREFIX/lib/pythonX.Y/site-packages``.  Only when that finds nothing (Debian's
    ``dist-packages`` layout, a pyenv shim, an unusual install) is the interpreter
    run, with ``-c 'import sys,json;print(json.dumps(sys.path))'``, a 10 s timeout,
    and only if its name looks like ``python``/``pypy``.  Returns [] when nothing is
    found.
    """
    try:
        exe = os.fspath(python_executable)
    except TypeError:
        return []
    if not exe:
        return []
    try:
        dirs = _infer_site_packages(exe)
    except (OSError, ValueError):
        dirs = []
    return dirs or _site_packages_by_running(exe)


_PATCHLEVEL = re.compile(rb'#define\s+PY_VERSION\s+"([^"]+)"')


def python_version_of(python_executable: str) -> str | None:
    """The version of an interpreter, from files next to it, without running it.

    Tries ``pyvenv.cfg`` (``version``/``version_info``), ``conda-meta/python-*.json``,
    ``include/pythonX.Y/patchlevel.h``, then ``X.Y`` from ``lib/pythonX.Y`` or the
    executable's name.  None when nothing says.
    """
    exe = os.path.abspath(python_executable)
    cfg = _find_pyvenv_cfg(exe)
    prefixes: list[str] = []
    if cfg is not None:
        conf = _read_pyvenv_cfg(cfg)
        version = conf.get("version") or conf.get("version_info")
        if version:
            return ".".join(version.split(".")[:3])
        home = conf.get("home")
        if home:
            prefixes.append(os.path.dirname(home) if os.path.basename(home) == "bin" else home)
    real = os.path.realpath(exe)
    for candidate in (real, exe):
        bindir = os.path.dirname(candidate)
        prefixes.append(os.path.dirname(bindir) if os.path.basename(bindir) == "bin" else bindir)
    for prefix in dict.fromkeys(prefixes):
        for meta in sorted(glob.glob(os.path.join(prefix, "conda-meta", "python-[0-9]*.json"))):
            m = re.match(r"python-(\d+\.\d+(?:\.\d+)?)", os.path.basename(meta))
            if m:
                return m.group(1)
        for header in sorted(
            glob.glob(os.path.join(prefix, "include", "python3*", "patchlevel.h"))
        ):
            try:
                with open(header, "rb") as fh:
                    m2 = _PATCHLEVEL.search(fh.read())
            except OSError:
                continue
            if m2:
                return m2.group(1).decode("ascii", "replace")
    for candidate in (exe, real):
        m3 = _PY_NAME.match(os.path.basename(candidate))
        if m3 and m3.group("ver") and "." in m3.group("ver"):
            return m3.group("ver")
    for prefix in dict.fromkeys(prefixes):
        libs = glob.glob(os.path.join(prefix, "lib", "python3.*"))
        if len(libs) == 1:
            return _short_version(os.path.basename(libs[0])[len("python") :])
    return None


# --- GPUs --------------------------------------------------------------------------

_NVML_CACHE: tuple[str | None, list[str]] | None = None


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_said(what: str, exc: Exception) -> None:
    """No warning (a machine without a GPU is no news); the traceback at debug level.
    Only pynvml ran, so what it raised is the machine's, not labbook's, even in strict mode."""
    warn_exception(None, what, exc, expected=(Exception,), quiet=True)


def nvml_info() -> tuple[str | None, list[str]]:
    """(CUDA driver version "12.4", GPU names) from NVML; (None, []) when unavailable.

    Cached per process: NVML initialisation can take a noticeable time and the
    GPUs of a machine do not change under a running importer.
    """
    global _NVML_CACHE
    if _NVML_CACHE is not None:
        return _NVML_CACHE[0], list(_NVML_CACHE[1])
    cuda: str | None = None
    gpus: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynvml  # lazy: a C library load
    except Exception as exc:  # not installed, or its C library cannot load
        _nvml_said("cannot import pynvml", exc)
        _NVML_CACHE = (None, [])
        return None, []
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no GPU, container without NVML: not an error
        _nvml_said("nvmlInit failed", exc)
        _NVML_CACHE = (None, [])
        return None, []
    try:
        try:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception as exc:
            _nvml_said("NVML cannot give the CUDA driver version", exc)
            cuda = None
        try:
            for i in range(int(pynvml.nvmlDeviceGetCount())):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                gpus.append(_as_str(pynvml.nvmlDeviceGetName(handle)))
        except Exception as exc:
            _nvml_said("NVML cannot list the GPUs", exc)
            gpus = []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    _NVML_CACHE = (cuda, gpus)
    return cuda, list(gpus)


def visible_gpus(gpus: list[str], visible: str | None) -> list[str]:
    """GPU names restricted by a ``CUDA_VISIBLE_DEVICES`` of integer indices."""
    if visible is None:
        return gpus
    visible = visible.strip()
    if visible == "":
        return []
    parts = [p.strip() for p in visible.split(",")]
    if not all(re.fullmatch(r"-?\d+", p) for p in parts):
        return gpus  # UUIDs or MIG ids: cannot map without more NVML calls
    chosen: list[str] = []
    for p in parts:
        i = int(p)
        if i < 0 or i >= len(gpus):
            break  # CUDA stops at the first invalid index
        chosen.append(gpus[i])
    return chosen


# --- the three sources ---------------------------------------------------------------

_OWN_PACKAGES: dict[str, str] | None = None


def _own_packages() -> dict[str, str]:
    global _OWN_PACKAGES
    if _OWN_PACKAGES is None:
        _OWN_PACKAGES = read_packages(p for p in sys.path if p and os.path.isdir(p))
    return dict(_OWN_PACKAGES)


def importer_env() -> EnvInfo:
    """The environment of the interpreter running labbook (``source="importer"``).

    Packages come from the directories on this interpreter's ``sys.path`` (read
    once per process); CUDA and GPU names from NVML when it can be initialised
    (otherwise ``cuda=None, gpus=[]`` without a warning: CPU machines are normal).
    """
    cuda, gpus = nvml_info()
    return EnvInfo(
        source="importer",
        python=platform.python_version(),
        platform=platform.platform(),
        packages=_own_packages(),
        cuda=cuda,
        gpus=visible_gpus(gpus, os.environ.get("CUDA_VISIBLE_DEVICES")),
        vars=select_env_vars(os.environ),
    )


def invoked_path(proc: Any, exe: str, environ: Mapping[str, str]) -> str:
    """The interpreter path as the process invoked it, when it is the same binary.

    ``/proc/PID/exe`` has symlinks resolved, which loses a venv's ``bin/python``
    (a symlink to the base interpreter); Python itself finds its prefix from
    ``argv[0]``, so do the same: relative to the process's cwd when it has a
    slash, else searched on the process's ``PATH``.
    """
    if not exe:
        return exe
    try:
        argv0 = proc.cmdline()[0]
    except Exception as exc:  # it ended, is not ours, or has no argv
        what = "cannot read the process's argv[0]"
        warn_exception(None, what, exc, expected=(IndexError, *psutil_errors()), quiet=True)
        return exe
    candidates: list[str] = []
    if os.sep in argv0:
        if os.path.isabs(argv0):
            candidates.append(argv0)
        else:
            with contextlib.suppress(Exception):
                candidates.append(os.path.join(proc.cwd(), argv0))
    elif argv0:
        for d in environ.get("PATH", "").split(os.pathsep):
            if d:
                candidates.append(os.path.join(d, argv0))
    try:
        real_exe = os.path.realpath(exe)
        for cand in candidates:
            if os.path.isfile(cand) and os.path.realpath(cand) == real_exe:
                return cand
    except (OSError, ValueError):
        pass
    return exe


def process_env(pid: int) -> EnvInfo | None:
    """The environment of a live process of the same user (``source="process"``).

    Variables come from ``/proc/PID/environ`` via psutil (the environment the
    process started with: changes it made to ``os.environ`` later are not
    visible); packages from the site-packages of its executable
    (:func:`site_packages_of`), when that executable is a Python interpreter --
    the path it was invoked as, so that a venv's symlinked ``bin/python`` counts.
    GPUs are this machine's, restricted by the process's integer
    ``CUDA_VISIBLE_DEVICES``.  None when the process is gone or not readable.
    """
    try:
        import psutil  # lazy
    except ImportError:
        return None
    try:
        proc = psutil.Process(int(pid))
        environ = proc.environ()
        exe = proc.exe()
    except (psutil.Error, OSError, ValueError, TypeError, OverflowError):
        return None
    exe = invoked_path(proc, exe, environ)
    return interpreter_env(exe if exe and looks_like_python(exe) else None, environ)


def interpreter_env(exe: str | None, environ: Mapping[str, str]) -> EnvInfo:
    """The environment of a process (``source="process"``) started as ``exe`` with
    ``environ``: selected, redacted variables; the interpreter's version and packages
    when ``exe`` is a Python interpreter (None: not one, or not known)."""
    packages: dict[str, str] = {}
    python: str | None = None
    if exe is not None:
        try:
            packages = read_packages(site_packages_of(exe))
            python = python_version_of(exe)
        except Exception as exc:  # never let a capture problem stop the work
            warn_exception(exe, "packages not recorded", exc)
    cuda, gpus = nvml_info()
    return EnvInfo(
        source="process",
        python=python,
        platform=platform.platform(),
        packages=packages,
        cuda=cuda,
        gpus=visible_gpus(gpus, environ.get("CUDA_VISIBLE_DEVICES")),
        vars=select_env_vars(environ),
    )


def _version_in(text: Any) -> str | None:
    if text is None:
        return None
    s = str(text).strip()
    m = re.search(r"\d+\.\d+(?:\.\d+)?(?:(?:a|b|rc)\d+)?", s)
    return m.group(0) if m else (s or None)


def _gpu_names(items: Any) -> list[str]:
    names: list[str] = []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return names
    for item in items:
        if isinstance(item, dict):
            name = item.get("name") or item.get("gpu") or item.get("model")
            if name:
                names.append(str(name))
        elif isinstance(item, str) and item:
            names.append(item)
    return names


def env_from_wandb_metadata(meta: dict[str, Any]) -> EnvInfo:
    """An EnvInfo from the dict in wandb's ``wandb-metadata.json``.

    Understands the keys wandb has written over the years: ``python``
    (``"3.10.12"`` or ``"CPython 3.10.12"``), ``os``/``platform``, ``cuda`` or
    ``cudaVersion``, and GPUs from ``gpu_nvidia`` (list of ``{"name": …}``),
    ``gpu_devices``/``gpuDevices``, ``gpu_apple`` or ``gpu`` × ``gpu_count``.
    Unknown shapes are ignored; a non-dict gives an empty EnvInfo.  wandb does not
    record packages or environment variables here, so those stay empty.
    """
    env = EnvInfo(source="framework:wandb-metadata")
    if not isinstance(meta, dict):
        return env
    env.python = _version_in(meta.get("python"))
    plat = meta.get("os") or meta.get("platform")
    env.platform = str(plat) if plat else None
    cuda = meta.get("cuda") or meta.get("cudaVersion") or meta.get("cuda_version")
    env.cuda = _version_in(cuda) if cuda else None
    gpus: list[str] = []
    for key in ("gpu_nvidia", "gpu_devices", "gpuDevices", "gpu_amd"):
        gpus = _gpu_names(meta.get(key))
        if gpus:
            break
    if not gpus:
        gpu = meta.get("gpu")
        count = meta.get("gpu_count", meta.get("gpuCount"))
        if isinstance(gpu, str) and gpu:
            n = (
                count
                if isinstance(count, int) and not isinstance(count, bool) and 0 < count <= 1024
                else 1
            )
            gpus = [gpu] * n
        elif isinstance(gpu, list):
            gpus = _gpu_names(gpu)
    if not gpus:
        gpus = _gpu_names(meta.get("gpu_apple"))
    env.gpus = gpus
    return env
