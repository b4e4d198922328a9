"""``labbook reproduce RUN``: rebuild a recorded run — code, environment, command.

What is rebuilt, in a directory ``D`` (``--dir``; default
``$XDG_DATA_HOME/labbook/reproduce/RUN``):

``D/tree/``
    a ``git worktree`` of the run's repository at its commit (detached; hooks off),
    with the run's uncommitted patch applied (``git apply``) and the untracked files
    whose contents it kept written back. Files it listed but did not keep (over the
    size budget, binary, secret-looking) are named as not restored.
``D/run.patch``
    the patch as recorded.
``D/requirements.txt``
    ``name==version`` of every package the run's interpreter had.
``D/env.sh``
    ``export`` lines of the variables recorded with the run. A value that was
    redacted (a secret) is never written: a comment says it was set. Variables that
    belong to the machine or the job rather than the run (``SLURM_*``, ``HOSTNAME``)
    are written commented out.
``D/run.sh``
    the exact command, with its seed, in the run's directory below ``tree/``.

Before anything runs, :class:`Reproduction` states what cannot be restored:
data whose fingerprint differs now (recomputed with :mod:`labbook.capture.data`;
for data inside the repository, the worktree's copy is what counts), the CUDA
driver and GPUs against this machine's (NVML; without it, "unknown here"), the
Python version, packages missing here or at other versions (this interpreter's
``importlib.metadata``), parts of the patch or command that were redacted, a patch
that was cut or does not apply.

:func:`execute` runs the command through ``labbook run`` in the worktree, so that
``labbook diff RUN @last`` compares the two: the same code, config and seed.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labbook.errors import LabbookError
from labbook.model import RunRecord

if TYPE_CHECKING:
    from labbook.store import Store

#: Recorded variables that describe the machine or the job, not the run: commented out.
MACHINE_VARS = ("SLURM_", "HOSTNAME")


class ReproduceError(LabbookError):
    """A run that cannot be rebuilt (the reason is the message)."""


@dataclass
class Reproduction:
    """What ``labbook reproduce`` built, and what it could not."""

    run_id: str
    run_name: str | None
    dir: Path
    tree: Path
    #: the directory the command runs in (the run's cwd, below ``tree``)
    workdir: Path
    commit: str
    #: the command as it is run here (None: the run has no recorded command)
    argv: list[str] | None
    #: variables exported for the command (recorded, not redacted, not the machine's)
    env: dict[str, str]
    patch_files: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    #: one line per thing that cannot be restored
    cannot: list[str] = field(default_factory=list)
    #: other things worth saying (a rewritten path, a data link)
    notes: list[str] = field(default_factory=list)
    #: whether the commit and the patch are the run's (False: the patch did not apply)
    code_restored: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "dir": str(self.dir),
            "tree": str(self.tree),
            "workdir": str(self.workdir),
            "commit": self.commit,
            "command": self.argv,
            "env": self.env,
            "patch_files": self.patch_files,
            "untracked_restored": self.restored,
            "code_restored": self.code_restored,
            "cannot_restore": self.cannot,
            "notes": self.notes,
            "files": {
                name: str(self.dir / name)
                for name in ("run.sh", "env.sh", "requirements.txt", "run.patch")
                if (self.dir / name).exists()
            },
        }


def default_dir(run_id: str) -> Path:
    from labbook.paths import data_dir

    return data_dir() / "reproduce" / run_id


def _git(
    cwd: str | os.PathLike[str], *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("git")
    if exe is None:
        raise ReproduceError("git is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1")
    try:
        return subprocess.run(
            [exe, "-C", os.fspath(cwd), "--no-pager", "-c", "core.fsmonitor=false",
             "-c", "core.hooksPath=/dev/null", *args],
            input=input, capture_output=True, env=env, timeout=300, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReproduceError(f"git failed: {exc}") from exc


def _first_line(raw: bytes) -> str:
    lines = [ln.strip() for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[0] if lines else "git failed"


def _inside(base: Path, name: str) -> Path | None:
    """``base/name`` when it stays inside ``base`` (a recorded name cannot climb out)."""
    target = (base / name).resolve()
    try:
        target.relative_to(base.resolve())
    except ValueError:
        return None
    return target


# -- what cannot be restored ---------------------------------------------------------------------


def _fmt_size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def data_checks(rec: RunRecord, root: str | None, tree: Path | None) -> tuple[list[str], list[str]]:
    """``(cannot, notes)`` for the run's data: each fingerprint recomputed now.

    Data inside the repository is judged by the worktree's copy when it has one
    (that is what the rerun reads); data the worktree lacks is linked to the
    original path when that still exists (said in ``notes``).
    """
    from labbook.capture.data import fingerprint_path

    cannot: list[str] = []
    notes: list[str] = []
    for key, then in sorted((rec.get("data") or {}).items()):
        path = str(then.get("path") or "")
        if not path:
            continue
        where = path
        if root and tree is not None and (path + "/").startswith(root.rstrip("/") + "/"):
            rel = os.path.relpath(path, root)
            copy = _inside(tree, rel)
            if copy is not None and (copy.exists() or copy.is_symlink()):
                where = str(copy)
            elif copy is not None and os.path.exists(path):
                copy.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(path, copy)
                notes.append(f"data '{key}': {rel} is not in git; linked to {path}")
        try:
            now = fingerprint_path(where) if os.path.exists(where) else None
        except OSError as exc:
            cannot.append(f"data '{key}': {where} cannot be read ({exc.strerror or exc})")
            continue
        if now is None:
            cannot.append(f"data '{key}': {path} no longer exists")
            continue
        if now.get("fingerprint") != then.get("fingerprint"):
            what = f"{_fmt_size(then.get('size'))} then, {_fmt_size(now.get('size'))} now"
            if then.get("files") != now.get("files"):
                what += f"; {then.get('files')} files then, {now.get('files')} now"
            cannot.append(
                f"data '{key}': {where} changed since the run (content fingerprint differs; {what})"
            )
    return cannot, notes


def gpu_checks(rec: RunRecord) -> list[str]:
    """The run's CUDA driver and GPUs against this machine's (nothing when it had none)."""
    env = rec.get("env") or {}
    gpu = rec.get("gpu") or {}
    cuda = env.get("cuda")
    gpus = list(env.get("gpus") or [])
    if not gpus and isinstance(gpu, dict):
        gpus = [
            str(d.get("name"))
            for d in gpu.get("devices") or []
            if isinstance(d, dict) and d.get("name")
        ]
    if not cuda and not gpus:
        return []
    from labbook.capture.env import nvml_info

    had = f"CUDA driver {cuda or '?'}" + (f" on {_gpu_list(gpus)}" if gpus else "")
    cuda_now, gpus_now = nvml_info()
    if cuda_now is None and not gpus_now:
        from labbook.capture.gpu import open_backend

        backend, reason = open_backend()
        if backend is not None:
            backend.close()
        why = reason.split(": ", 1)[-1] if reason else "NVML unavailable"
        return [f"GPU: the run had {had}; unknown here ({why})"]
    out = []
    if cuda and cuda_now != cuda:
        out.append(f"GPU: the run had CUDA driver {cuda}, here {cuda_now or 'unknown'}")
    if gpus and sorted(gpus) != sorted(gpus_now):
        out.append(f"GPU: the run had {_gpu_list(gpus)}, here {_gpu_list(gpus_now) or 'none'}")
    return out


def _gpu_list(names: list[str]) -> str:
    from collections import Counter

    return ", ".join(f"{n}× {name}" if n > 1 else name for name, n in Counter(names).items())


def installed_packages() -> dict[str, str]:
    """This interpreter's distributions (normalised name -> version)."""
    import importlib.metadata

    from labbook.capture.env import normalize_name

    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and normalize_name(name) not in out:
            out[normalize_name(name)] = dist.version
    return out


def package_checks(rec: RunRecord, here: Mapping[str, str] | None = None) -> list[str]:
    """Python and packages of the run against this interpreter's."""
    from labbook.capture.env import normalize_name

    env = rec.get("env") or {}
    out: list[str] = []
    if env.get("source") == "importer":
        out.append("packages: recorded from the importing process, not the run's own")
    python = env.get("python")
    if python and python != platform.python_version():
        out.append(f"python: the run had {python}, here {platform.python_version()}")
    packages = env.get("packages") or {}
    if not packages:
        if env.get("source") != "importer":
            out.append("packages: none were recorded")
        return out
    now = installed_packages() if here is None else dict(here)
    missing = [f"{n} {v}" for n, v in sorted(packages.items()) if normalize_name(n) not in now]
    other = [
        f"{n} {v}, here {now[normalize_name(n)]}"
        for n, v in sorted(packages.items())
        if normalize_name(n) in now and now[normalize_name(n)] != v
    ]
    if missing:
        out.append(f"packages: {len(missing)} missing here ({_few(missing)})")
    if other:
        out.append(f"packages: {len(other)} at other versions here ({_few(other)})")
    return out


def _few(items: list[str], n: int = 4) -> str:
    return "; ".join(items[:n]) + (f"; … {len(items) - n} more" if len(items) > n else "")


# -- the files ---------------------------------------------------------------------------------


def env_lines(variables: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The lines of ``env.sh`` and the variables they export."""
    from labbook.capture.redact import REDACTED

    lines = [
        "# The variables recorded with the run. Secrets were never recorded: a variable",
        "# that held one is named in a comment; set it yourself.",
    ]
    exported: dict[str, str] = {}
    for name, value in sorted(variables.items()):
        if not name.replace("_", "a").isalnum() or name[:1].isdigit():
            continue  # not a name a shell can export
        if REDACTED in value:
            lines.append(f"# {name} was set; its value was a secret and was not recorded")
        elif name.startswith(MACHINE_VARS):
            lines.append(f"# export {name}={shlex.quote(value)}  # the machine's or the job's own")
        else:
            lines.append(f"export {name}={shlex.quote(value)}")
            exported[name] = value
    return lines, exported


def run_script(rep: Reproduction, rec: RunRecord, rel_workdir: str) -> str:
    """The text of ``run.sh``."""
    lines = [
        "#!/usr/bin/env bash",
        f"# Reproduce run {rep.run_id}" + (f" ({rep.run_name})" if rep.run_name else ""),
        f"# recorded {rec.get('started_at') or '?'} on {rec.get('host') or '?'}; commit {rep.commit}.",
        "# To record the rerun as a run, run the command below through `labbook run --`",
        "# in the same directory (labbook reproduce RUN --exec does that).",
        "set -euo pipefail",
        'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        '. "$here/env.sh"',
    ]
    seed = rec.get("seed") or {}
    if seed.get("source") == "env:PL_GLOBAL_SEED" and seed.get("value") is not None:
        lines.append(f"export PL_GLOBAL_SEED={shlex.quote(str(seed['value']))}")
    lines.append(
        'cd "$here/tree/' + rel_workdir.replace('"', '\\"') + '"'
        if rel_workdir != "."
        else 'cd "$here/tree"'
    )
    if rep.argv:
        lines.append("exec " + " ".join(shlex.quote(a) for a in rep.argv))
    else:
        lines += ["echo 'labbook: the run has no recorded command' >&2", "exit 1"]
    return "\n".join(lines) + "\n"


# -- building -------------------------------------------------------------------------------------


def reproduce(
    store: Store,
    run_id: str,
    *,
    dest: str | os.PathLike[str] | None = None,
    repo: str | None = None,
) -> Reproduction:
    """Rebuild run ``run_id`` in ``dest`` (see the module docstring)."""
    from labbook.capture.redact import REDACTED

    rec = store.record(run_id, heavy=True)
    row = store.run_row(run_id) or {}
    git = rec.get("git") or {}
    commit = git.get("commit")
    if not git:
        raise ReproduceError(f"run {run_id} has no recorded git state: there is no code to rebuild")
    if not commit:
        raise ReproduceError(
            f"run {run_id} ran in a repository without commits: nothing to check out"
        )
    root = repo or git.get("root")
    if not root or not os.path.isdir(root):
        raise ReproduceError(
            f"the repository of run {run_id} ({root or '?'}) no longer exists",
            hint="pass --repo PATH of a clone that has commit " + commit[:12],
        )
    if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReproduceError(
            f"{root} does not have commit {commit[:12]} of run {run_id}",
            hint="fetch it, or pass --repo PATH of a clone that has it",
        )
    out = Path(dest) if dest is not None else default_dir(run_id)
    out = out.expanduser().absolute()
    if out.exists() and any(out.iterdir()):
        raise ReproduceError(
            f"{out} exists and is not empty", hint="pass --dir to an empty or new directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "tree"
    added = _git(root, "worktree", "add", "--detach", str(tree), commit)
    if added.returncode != 0:
        raise ReproduceError(f"git worktree add failed: {_first_line(added.stderr)}")
    cwd = row.get("cwd") or git.get("root") or ""
    rel = os.path.relpath(cwd, git.get("root") or cwd) if cwd else "."
    if rel.startswith(".."):
        rel = "."
    rep = Reproduction(
        run_id=run_id,
        run_name=rec.get("name"),
        dir=out,
        tree=tree,
        workdir=tree / rel if rel != "." else tree,
        commit=commit,
        argv=None,
        env={},
    )
    # the uncommitted patch
    patch = git.get("diff") or ""
    if patch:
        (out / "run.patch").write_text(patch, encoding="utf-8")
        from labbook.sources.replicate import files_of_patch

        rep.patch_files = list(files_of_patch(patch))
        if git.get("diff_truncated"):
            rep.cannot.append("code: the patch was longer than labbook keeps and was cut")
        if REDACTED in patch:
            rep.cannot.append(f"code: lines of the patch held secrets and read {REDACTED} here")
        applied = _git(tree, "apply", "--binary", "--whitespace=nowarn", str(out / "run.patch"))
        if applied.returncode != 0:
            rep.code_restored = False
            rep.cannot.append(
                f"code: the recorded patch does not apply ({_first_line(applied.stderr)})"
            )
    # untracked files
    contents = git.get("untracked_contents") or {}
    not_kept: list[str] = []
    for name in git.get("untracked") or []:
        text = contents.get(name)
        target = _inside(tree, name)
        if text is None or text == REDACTED or target is None:
            if target is not None and target.exists():
                continue  # the patch or the commit has it after all
            not_kept.append(name + (" (secret)" if text == REDACTED else ""))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        rep.restored.append(name)
    if not_kept:
        rep.cannot.append(
            f"untracked files not kept (over the size budget, binary or secret): {_few(not_kept, 6)}"
        )
    if git.get("untracked_truncated"):
        rep.cannot.append(
            "untracked files: more were there than labbook lists; only the first were recorded"
        )
    # the command
    argv = rec.get("command")
    if argv:
        hidden = [a for a in argv if REDACTED in a]
        if hidden:
            rep.cannot.append(
                f"command: arguments held secrets and read {REDACTED} ({_few(hidden, 2)})"
            )
        rep.argv = _into_tree(list(argv), str(git.get("root") or ""), str(tree), rep.notes)
    else:
        rep.cannot.append("command: none was recorded (the run was imported, not launched)")
    # data, GPU, packages
    cannot, notes = data_checks(rec, git.get("root"), tree)
    rep.cannot += cannot
    rep.notes += notes
    rep.cannot += gpu_checks(rec)
    rep.cannot += package_checks(rec)
    # the files
    env = rec.get("env") or {}
    variables = (env.get("vars") or {}) if env.get("source") != "importer" else {}
    lines, rep.env = env_lines(variables)
    (out / "env.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    packages = env.get("packages") or {}
    req = [f"# The packages of run {run_id}'s interpreter (python {env.get('python') or '?'})"]
    req += [f"{name}=={version}" for name, version in sorted(packages.items())]
    (out / "requirements.txt").write_text("\n".join(req) + "\n", encoding="utf-8")
    script = out / "run.sh"
    script.write_text(run_script(rep, rec, rel), encoding="utf-8")
    script.chmod(0o755)
    return rep


def _into_tree(argv: list[str], root: str, tree: str, notes: list[str]) -> list[str]:
    """argv with absolute paths into the original repository pointing into the worktree."""
    if not root:
        return argv
    prefix = root.rstrip("/") + "/"
    out = []
    changed = False

    def moved(path: str) -> str | None:
        return tree + path[len(root.rstrip("/")) :] if path.startswith(prefix) else None

    for a in argv:
        if a.startswith("-") and "=" in a:
            head, _, value = a.partition("=")
            new = moved(value)
            new = f"{head}={new}" if new is not None else None
        else:
            new = moved(a)
        changed = changed or new is not None
        out.append(a if new is None else new)
    if changed:
        notes.append(f"command: paths into {root} point into the worktree instead")
    return out


def execute(
    rep: Reproduction, rec: RunRecord, *, db: str | None, environ: Mapping[str, str] | None = None
) -> int:
    """Run the rebuilt command through ``labbook run`` in the worktree; its exit code."""
    if not rep.argv:
        raise ReproduceError(f"run {rep.run_id} has no recorded command to run")
    if not rep.code_restored:
        raise ReproduceError(
            f"the code of run {rep.run_id} could not be restored exactly; not running it",
            hint=f"look at {rep.tree}, then run {rep.dir / 'run.sh'} yourself",
        )
    env = {**(os.environ if environ is None else environ), **rep.env}
    seed = rec.get("seed") or {}
    if seed.get("source") == "env:PL_GLOBAL_SEED" and seed.get("value") is not None:
        env["PL_GLOBAL_SEED"] = str(seed["value"])
    argv = [sys.executable, "-m", "labbook", *(["--db", db] if db else []), "run", "--", *rep.argv]
    for stream in (sys.stdout, sys.stderr):  # what was said comes before the run's output
        stream.flush()
    return subprocess.run(argv, cwd=rep.workdir, env=env, check=False).returncode
