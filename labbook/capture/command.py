"""What a command runs: its entry point (a script, a module or a program) through the
usual launchers, wrappers and runners (see :mod:`labbook.analysis.check`, which
compares runs of one entry point, and the seed groups of :mod:`labbook.analysis.groups`).

Pure functions over an argv list; nothing here reads files.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

__all__ = ["EntryPoint", "entry_point", "parse_command"]


_PYTHON = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?[a-z]?(?:\.exe)?$")
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: ``python -m X`` where X launches the script that follows.
_LAUNCHER_MODULES = {
    "torch.distributed.run",
    "torch.distributed.launch",
    "accelerate.commands.launch",
    "deepspeed",
    "deepspeed.launcher.runner",
}
#: Launcher options that take no value (so the next word is not skipped as one).
_LAUNCHER_FLAGS = {
    "--standalone", "--use_env", "--use-env", "--multi_gpu", "--multi-gpu", "--cpu",
    "--tpu", "--use_deepspeed", "--use_fsdp", "--use_megatron_lm", "--quiet", "-q",
    "--debug", "--no_local_rank", "--no-local-rank", "--force_multi", "--autotuning",
    "--pty", "--exclusive", "-l", "--label", "--unbuffered", "-u", "--wait",
    "--parsable", "-v", "--verbose",
}  # fmt: skip
#: Commands that run the command after them.
_WRAPPERS = {"env", "nohup", "exec", "time", "command", "nice", "ionice", "stdbuf"}
#: Their options that take a value (env -u NAME, nice -n 5, stdbuf -o L, ionice -c 2).
_WRAPPER_VALUE_OPTS = {"-u", "--unset", "-C", "--chdir", "-n", "-c", "-o", "-e", "-i", "-S"}
#: ``X run …``: the command after ``run`` (and X's options).
_RUNNERS = {"uv", "poetry", "pipenv", "pdm", "hatch", "rye", "conda", "mamba", "micromamba"}
#: Launchers whose first word after their options is another command.
_PROGRAM_LAUNCHERS = {"srun", "mpirun", "mpiexec", "horovodrun", "numactl", "taskset"}
#: Interpreters and batch systems whose first word after their options is a script.
_SCRIPT_RUNNERS = {"bash", "sh", "zsh", "sbatch"}


@dataclass(frozen=True)
class EntryPoint:
    """What a command runs: ``key`` compares (a path relative to the repository, or
    ``program:NAME``), ``shown`` is what the command said (``-m pkg.train``)."""

    key: str
    shown: str

    def same_as(self, other: EntryPoint, *, by_name: bool = False) -> bool:
        if self.key == other.key:
            return True
        return by_name and os.path.basename(self.key) == os.path.basename(other.key)


def _command_like(word: str) -> bool:
    b = os.path.basename(word)
    return bool(_PYTHON.match(b)) or b in ("torchrun", "accelerate", "deepspeed")


def _skip_options(argv: list[str], j: int, *, module_flag: bool = False) -> tuple[int, bool, bool]:
    """The index of the first word after a launcher's options, whether ``-m``/``--module``
    was among them and whether ``--no-python`` was. An option takes the next word as
    its value unless that is an option, a script (``*.py``) or an interpreter."""
    module = no_python = False
    while j < len(argv):
        a = argv[j]
        if a == "--":
            return j + 1, module, no_python
        if module_flag and a in ("-m", "--module"):
            module, j = True, j + 1
            continue
        if a in ("--no-python", "--no_python"):
            no_python, j = True, j + 1
            continue
        if not a.startswith("-") or a == "-":
            break
        j += 1
        if "=" in a or a in _LAUNCHER_FLAGS or j >= len(argv):
            continue
        nxt = argv[j]
        if not nxt.startswith("-") and not nxt.endswith(".py") and not _command_like(nxt):
            j += 1
    return j, module, no_python


def parse_command(
    argv: list[str], i: int = 0, _depth: int = 0
) -> tuple[str | None, str | None, int]:
    """``(kind, name, start)``: what ``argv`` runs — ``"script"`` (a path as given),
    ``"module"`` (``-m`` NAME) or ``"program"`` (a command name), None when it cannot
    tell (``python -c``, ``labbook …``) — and the index of its first own argument."""
    n = len(argv)
    while i < n:  # wrappers: VAR=1, env, nohup, nice -n 5, uv run, conda run -n env
        a, b = argv[i], os.path.basename(argv[i])
        if _ENV_ASSIGN.match(a):
            i += 1
        elif b in _WRAPPERS:
            i += 1
            while i < n and (
                argv[i].startswith("-") or (b == "env" and _ENV_ASSIGN.match(argv[i]))
            ):
                i += 2 if argv[i] in _WRAPPER_VALUE_OPTS else 1
        elif b in _RUNNERS and i + 1 < n and argv[i + 1] == "run":
            i = _skip_options(argv, i + 2)[0]
        else:
            break
    if i >= n or _depth > 4:
        return None, None, min(i + 1, n) if n else 1
    a, b = argv[i], os.path.basename(argv[i])
    if _PYTHON.match(b):
        return _parse_python(argv, i + 1, _depth)
    if b == "torchrun" or b == "deepspeed":
        return _parse_launcher(argv, i + 1, _depth)
    if b == "accelerate":
        if i + 1 < n and argv[i + 1] == "launch":
            return _parse_launcher(argv, i + 2, _depth)
        return None, None, i + 1
    if b in _PROGRAM_LAUNCHERS:
        return parse_command(argv, _skip_options(argv, i + 1)[0], _depth + 1)
    if b in _SCRIPT_RUNNERS:
        j = _skip_options(argv, i + 1)[0]
        if j >= n or argv[j].startswith("-"):
            return None, None, j
        return "script", argv[j], j + 1
    if b == "labbook":
        return None, None, i + 1  # `labbook run -- CMD` checks CMD by itself
    if a.endswith(".py") or "/" in a:
        return "script", a, i + 1
    return "program", b, i + 1


def _parse_python(argv: list[str], j: int, depth: int) -> tuple[str | None, str | None, int]:
    n = len(argv)
    while j < n:
        a = argv[j]
        if a == "-m" or (a.startswith("-m") and len(a) > 2):
            name, nxt = (argv[j + 1], j + 2) if a == "-m" and j + 1 < n else (a[2:], j + 1)
            if a == "-m" and j + 1 >= n:
                return None, None, n
            if name in _LAUNCHER_MODULES:
                return _parse_launcher(argv, nxt, depth)
            return "module", name, nxt
        if a == "-c" or a == "-":
            return None, None, j + 2 if a == "-c" else j + 1  # code, not a file: no entry point
        if a in ("-W", "-X", "--check-hash-based-pycs"):
            j += 2
            continue
        if a.startswith("-"):
            j += 1
            continue
        return "script", a, j + 1
    return None, None, n


def _parse_launcher(argv: list[str], j: int, depth: int) -> tuple[str | None, str | None, int]:
    j, module, no_python = _skip_options(argv, j, module_flag=True)
    if j >= len(argv):
        return None, None, j
    if module:
        return "module", argv[j], j + 1
    if no_python or _command_like(argv[j]):
        return parse_command(argv, j, depth + 1)
    return "script", argv[j], j + 1


def entry_point(argv: list[str], cwd: str | None, root: str | None) -> EntryPoint | None:
    """The entry point ``argv`` runs when started in ``cwd``, its path relative to
    ``root`` (the repository, else the directory) when inside it; None: none known."""
    kind, name, _ = parse_command(list(argv))
    if kind is None or not name:
        return None
    return _locate(kind, name, cwd or root or "", root)


@functools.lru_cache(maxsize=4096)
def _locate(kind: str, name: str, base: str, root: str | None) -> EntryPoint:
    if kind == "program":
        return EntryPoint("program:" + name, name)
    path, shown = (
        (name.replace(".", "/") + ".py", f"-m {name}") if kind == "module" else (name, name)
    )
    full = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    if root and os.path.isabs(full):
        rel = os.path.relpath(full, root)
        if not rel.startswith(".." + os.sep) and rel != "..":
            return EntryPoint(rel, shown)
    return EntryPoint(full, shown)
