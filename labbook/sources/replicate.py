"""``labbook replicate RUN --seeds N``: rerun a recorded run with new seeds.

Is a gain real? Only if it survives other seeds. This module plans the reruns of
one recorded run (its command, its directory, its code) with N new seeds and
launches them through ``labbook run``, each with ``LABBOOK_SWEEP`` set in its
environment so that the replicas form a sweep of their own; they share the run's
seed group because that group is its config signature without seed-like keys.

Where the seed is changed
    Where labbook found it (the run's ``seed.source``):

    * ``argv:--seed`` (any seed flag as spelled): the flag's value, ``--seed 3`` or
      ``--seed=3`` (the last occurrence, as argparse takes it);
    * ``hydra:overrides``: the override that held it (``seed=3``, ``+seed=3``,
      ``trainer.seed=3``);
    * ``env:PL_GLOBAL_SEED``: that variable, in the replica's environment;
    * ``config:KEY``: for a Hydra run, an override ``KEY=N`` (Hydra composes the
      config, the user's file is not touched); otherwise a config file that the
      command names (``--config cfg.yaml``, ``cfg=…``, a ``*.yaml`` argument) and
      that holds KEY with the run's seed is copied, the copy's KEY changed (only that
      value: comments and layout stay), checked by reading it back, and the command
      is pointed at the copy. The user's file is never edited. Copies live in
      :func:`replicas_dir` (``$XDG_DATA_HOME/labbook/replicas/SWEEP/``).

    ``--seed-arg`` names the place when labbook found none (or to choose another):
    ``--my-seed`` (a flag, replaced or appended), ``KEY=`` (a Hydra-style override,
    replaced or appended) or ``FILE:KEY`` (a config file key, through a copy).

Where the replicas write
    An output location the command sets (``--out DIR``, ``--output_dir=DIR``,
    ``out=DIR``: :func:`labbook.store.configsig.is_identity_key`) gets ``-seedN``
    appended, so that no replica writes into the run's directory; a run whose
    directory its command does not set is refused (:func:`own_outputs`).

New seeds
    Integers not held by any run of the seed group (same repository and config
    signature, whatever its status), counting up from the run's seed + 1.

The same code
    The replicas run in the run's working directory, from the working tree as it is
    now; unless ``here`` is set, :func:`tree_differences` must find it equal to what
    the run recorded (the same commit, the same uncommitted patch, the same small
    untracked files it kept), or the plan is refused with the files that differ.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labbook.errors import LabbookError, UsageError
from labbook.model import RunRecord

if TYPE_CHECKING:
    from labbook.store import Store

#: The variable ``labbook run`` reads the run's sweep from.
SWEEP_VAR = "LABBOOK_SWEEP"
REPLICA_ARGS_VAR = "LABBOOK_REPLICA_ARGS"  # as labbook.sources.launch reads it
#: Variable Lightning's ``seed_everything`` reads (and exports).
PL_SEED_VAR = "PL_GLOBAL_SEED"
#: Extensions of config files a command may name.
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
#: Keys that name a config file (``--config``, ``cfg=``, …).
_CONFIG_FLAG = re.compile(r"^(?:config|config_file|config_path|cfg|cfg_file|configs)$", re.I)
#: A placeholder for the seed in a planned argv (shell scripts put ``${seed}`` there).
SEED_MARK = "\0seed\0"


class ReplicateError(LabbookError):
    """A replicate plan that cannot be made (the reason is the message)."""


@dataclass
class SeedPlace:
    """Where a run's seed is set, and how a replica changes it."""

    #: "flag", "override", "env" or "file"
    kind: str
    #: flag (``--seed``), override key as written (``+trainer.seed``), variable or file key
    name: str
    #: argv index of the token holding it (flag or override), None to append
    index: int | None = None
    #: ``--seed=3`` (the value is in the flag's token)
    inline: bool = False
    #: the config file (absolute) for kind "file"
    file: str | None = None

    def describe(self) -> str:
        if self.kind == "flag":
            return f"the argument {self.name}"
        if self.kind == "override":
            return f"the override {self.name}="
        if self.kind == "env":
            return f"the variable {self.name}"
        return f"the key {self.name} of {self.file} (through a copy per replica)"


@dataclass
class Replica:
    """One planned rerun."""

    seed: int
    argv: list[str]
    #: variables set for it besides the inherited environment (``LABBOOK_SWEEP`` …)
    env: dict[str, str]
    #: the name given with ``labbook run --name`` (None: labbook's default)
    name: str | None = None
    #: the config file copy it reads, if any
    copy: str | None = None


@dataclass
class Plan:
    """The replicas of one run."""

    run_id: str
    run_name: str | None
    cwd: str
    sweep: str
    place: SeedPlace
    replicas: list[Replica]
    #: things said before launching (an unchecked tree, a --here run)
    notes: list[str] = field(default_factory=list)
    #: the template argv, with :data:`SEED_MARK` where the seed goes
    template: list[str] = field(default_factory=list)
    #: replicas are named "STEM seed=N" (config file copies: the default name would show the copy)
    name_stem: str | None = None
    #: variables the seed sets, with :data:`SEED_MARK` where it goes
    template_env: dict[str, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.replicas]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "sweep": self.sweep,
            "cwd": self.cwd,
            "seed_place": {
                "kind": self.place.kind,
                "name": self.place.name,
                "file": self.place.file,
            },
            "replicas": [
                {"seed": r.seed, "command": r.argv, "env": r.env, "name": r.name, "copy": r.copy}
                for r in self.replicas
            ],
            "notes": self.notes,
        }


def replicas_dir(sweep: str) -> Path:
    """Where the files of a replicate sweep live (config copies, logs, the sbatch script)."""
    from labbook.paths import data_dir

    return data_dir() / "replicas" / sweep


# -- where the seed is -------------------------------------------------------------------


def _flag_positions(argv: Sequence[str], flag: str) -> tuple[int, bool] | None:
    """The last ``flag VALUE`` / ``flag=VALUE`` in argv: (index of the flag token, inline)."""
    found: tuple[int, bool] | None = None
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == flag and i + 1 < len(argv):
            found = (i, False)
            i += 2
            continue
        if tok.startswith(flag + "="):
            found = (i, True)
        i += 1
    return found


def _override_key(token: str) -> str | None:
    """``+trainer.seed=3`` -> ``trainer.seed``; not an override: None."""
    if token.startswith("-") or "=" not in token:
        return None
    key = token.split("=", 1)[0].strip()
    if not key or key.startswith("~") or " " in key:
        return None
    key = key.lstrip("+")
    return key.split("@", 1)[0] if key else None


def _seed_override_index(argv: Sequence[str]) -> int | None:
    """The override token :func:`labbook.capture.seed.seed_from_overrides` takes the seed from."""
    from labbook.capture.seed import SEED_RANK, parse_seed_value
    from labbook.store.configsig import is_seed_key

    best: tuple[int, float] | None = None
    index: int | None = None
    for i, tok in enumerate(argv):
        key = _override_key(tok)
        if key is None or not is_seed_key(key):
            continue
        if parse_seed_value(tok.split("=", 1)[1]) is None:
            continue
        name = key.rsplit(".", 1)[-1].lower()
        rank = (key.count("."), SEED_RANK.get(name, 99.0))
        if best is None or rank <= best:
            best, index = rank, i
    return index


def config_files_in(argv: Sequence[str], cwd: str) -> list[tuple[int, str]]:
    """Config files a command names: ``(argv index of the path's token, absolute path)``.

    Values of ``--config``-like flags and ``cfg=``-like overrides, and any argument
    ending in .yaml/.yml/.json/.toml, that name an existing file (relative paths
    against ``cwd``).
    """
    out: list[tuple[int, str]] = []

    def add(index: int, value: str) -> None:
        if not value or "\0" in value:
            return
        path = os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
        if os.path.isfile(path) and all(i != index for i, _ in out):
            out.append((index, path))

    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if _CONFIG_FLAG.match(name.replace("-", "_")):
                if eq:
                    add(i, value)
                elif i + 1 < len(argv):
                    add(i + 1, argv[i + 1])
                continue
        key = _override_key(tok)
        if key is not None and _CONFIG_FLAG.match(key):
            add(i, tok.split("=", 1)[1])
            continue
        value = tok.split("=", 1)[-1] if tok.startswith("--") else tok
        if value.lower().endswith(CONFIG_SUFFIXES):
            add(i, value)
    return out


def _file_value(path: str, key: str) -> Any:
    from labbook.capture.seed import parse_seed_value
    from labbook.model import flatten
    from labbook.readers.files import load_config

    doc = load_config(path)
    if doc is None:
        return None
    return parse_seed_value(flatten(doc).get(key))


def _is_hydra(rec: RunRecord) -> bool:
    return rec.get("framework") == "hydra" or any(
        str(k).startswith("hydra.") for k in (rec.get("config") or {})
    )


def locate_seed(rec: RunRecord, argv: Sequence[str], cwd: str, seed_arg: str | None) -> SeedPlace:
    """Where ``rec``'s seed is set in its command (see the module docstring); or a
    :class:`ReplicateError` saying why it cannot be found."""
    if seed_arg:
        return _place_from_arg(seed_arg, argv, cwd)
    seed = rec.get("seed") or {}
    value, source = seed.get("value"), seed.get("source") or ""
    hint = (
        "name where the seed goes: --seed-arg --seed, --seed-arg seed= or --seed-arg cfg.yaml:seed"
    )
    if value is None:
        why = (
            "is unknown (a file that holds it could not be read)"
            if seed.get("known") is False
            else "was not found"
        )
        raise ReplicateError(f"the seed of run {rec.get('id')} {why}", hint=hint)
    from labbook.capture.seed import parse_seed_value, seed_from_argv

    on_line = seed_from_argv(list(argv))
    if on_line is not None and parse_seed_value(on_line.value) == parse_seed_value(value):
        # The command line holds it (a config the script wrote may hold it too): change it there.
        source = on_line.source or ""
    if source.startswith("argv:"):
        flag = source[len("argv:") :]
        pos = _flag_positions(argv, flag)
        if pos is not None:
            return SeedPlace("flag", flag, index=pos[0], inline=pos[1])
    elif source == "hydra:overrides":
        index = _seed_override_index(argv)
        if index is not None:
            key = argv[index].split("=", 1)[0]
            return SeedPlace("override", key, index=index)
    elif source == f"env:{PL_SEED_VAR}":
        return SeedPlace("env", PL_SEED_VAR)
    elif source.startswith("config:"):
        key = source[len("config:") :]
        if _is_hydra(rec):
            # Hydra composes the config: an override changes the key, no file is touched.
            return SeedPlace("override", key, index=None)
        for _, path in config_files_in(argv, cwd):
            if _file_value(path, key) == value:
                return SeedPlace("file", key, file=path)
        raise ReplicateError(
            f"the seed of run {rec.get('id')} is the config key {key}, but no config file"
            " that its command names holds it",
            hint=hint,
        )
    raise ReplicateError(
        f"the seed of run {rec.get('id')} came from {source or 'an unknown place'},"
        " which its command does not show",
        hint=hint,
    )


def _place_from_arg(arg: str, argv: Sequence[str], cwd: str) -> SeedPlace:
    """``--seed-arg``: ``--flag``, ``KEY=`` or ``FILE:KEY``."""
    if arg.startswith("-"):
        flag = arg.split("=", 1)[0]
        pos = _flag_positions(argv, flag)
        if pos is None:
            return SeedPlace("flag", flag)
        return SeedPlace("flag", flag, index=pos[0], inline=pos[1])
    if arg.endswith("="):
        key = arg[:-1]
        bare = key.lstrip("+")
        for i in range(len(argv) - 1, -1, -1):
            if _override_key(argv[i]) == bare:
                return SeedPlace("override", argv[i].split("=", 1)[0], index=i)
        return SeedPlace("override", key)
    file, sep, key = arg.rpartition(":")
    if sep and file and key:
        path = os.path.normpath(os.path.join(cwd, os.path.expanduser(file)))
        if not any(p == path for _, p in config_files_in(argv, cwd)):
            raise ReplicateError(f"--seed-arg {arg}: the command does not name {file}")
        return SeedPlace("file", key, file=path)
    raise UsageError(
        f"--seed-arg {arg}: expected --FLAG, KEY= or FILE:KEY",
        hint="--seed-arg --seed, --seed-arg trainer.seed=, --seed-arg cfg.yaml:seed",
    )


# -- changing it ---------------------------------------------------------------------------


def set_seed(argv: Sequence[str], place: SeedPlace, seed: str) -> tuple[list[str], dict[str, str]]:
    """argv and extra variables with the seed ``seed`` put at ``place`` (kind "file": the
    argv is unchanged here, see :func:`copy_with_seed`)."""
    out = list(argv)
    if place.kind == "flag":
        if place.index is None:
            out += [place.name, seed]
        elif place.inline:
            out[place.index] = f"{place.name}={seed}"
        else:
            out[place.index + 1] = seed
    elif place.kind == "override":
        if place.index is None:
            out.append(f"{place.name}={seed}")
        else:
            out[place.index] = f"{out[place.index].split('=', 1)[0]}={seed}"
    elif place.kind == "env":
        return out, {place.name: seed}
    return out, {}


_YAML_KEY = re.compile(
    r"^(?P<indent>[ ]*)(?P<key>[A-Za-z_][\w\-.]*|\"[^\"]+\"|'[^']+')\s*:(?P<rest>.*)$"
)
_TOML_TABLE = re.compile(r"^\s*\[(?P<name>[^\[\]]+)\]\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_\-.\"']+)\s*=(?P<rest>.*)$")
_SCALAR = re.compile(r"^(?P<pre>\s*)(?P<value>[\"']?-?\d+[\"']?)(?P<post>\s*(?:#.*)?)$")


def _replace_scalar(rest: str, old: Any, new: int) -> str | None:
    """The text after ``key:`` / ``key =`` with the integer ``old`` replaced by ``new``."""
    m = _SCALAR.match(rest)
    if m is None:
        return None
    from labbook.capture.seed import parse_seed_value

    if parse_seed_value(m.group("value")) != old:
        return None
    return f"{m.group('pre') or ' '}{new}{m.group('post')}"


def _rewrite_yaml(text: str, key: str, old: Any, new: int) -> str | None:
    lines = text.splitlines(keepends=True)
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        m = _YAML_KEY.match(body)
        if m is None:
            continue
        indent = len(m.group("indent"))
        name = m.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), name])
        if path == key:
            rest = _replace_scalar(m.group("rest"), old, new)
            if rest is not None:
                lines[i] = f"{m.group('indent')}{m.group('key')}:{rest}{line[len(body) :]}"
                return "".join(lines)
        stack.append((indent, name))
    return None


def _rewrite_toml(text: str, key: str, old: Any, new: int) -> str | None:
    lines = text.splitlines(keepends=True)
    table = ""
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        t = _TOML_TABLE.match(body)
        if t is not None:
            table = t.group("name").strip().replace('"', "").replace("'", "")
            continue
        m = _TOML_KEY.match(body)
        if m is None:
            continue
        name = m.group("key").replace('"', "").replace("'", "")
        if (f"{table}.{name}" if table else name) == key:
            rest = _replace_scalar(m.group("rest"), old, new)
            if rest is not None:
                lines[i] = f"{m.group('indent')}{m.group('key')} ={rest}{line[len(body) :]}"
                return "".join(lines)
    return None


def _rewrite_json(text: str, key: str, new: int) -> str | None:
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        return None
    node = doc
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return None
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        return None
    node[parts[-1]] = new
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def copy_with_seed(source: str, key: str, old: Any, new: int, dest_dir: Path) -> str:
    """A copy of the config file ``source`` in ``dest_dir`` (same file name) with ``key``
    set to ``new``; the copy is read back to check that only that key changed.
    ``source`` itself is only read."""
    from labbook.model import flatten
    from labbook.readers.files import load_config

    with open(source, encoding="utf-8") as f:
        text = f.read()
    suffix = Path(source).suffix.lower()
    if suffix in (".yaml", ".yml"):
        changed = _rewrite_yaml(text, key, old, new)
    elif suffix == ".toml":
        changed = _rewrite_toml(text, key, old, new)
    else:
        changed = _rewrite_json(text, key, new)
    if changed is None:
        raise ReplicateError(
            f"cannot change {key} in a copy of {source}: it is not written as a plain"
            f" '{key.rsplit('.', 1)[-1]}: {old}'",
            hint="name another place: --seed-arg --seed or --seed-arg seed=",
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(source).name
    dest.write_text(changed, encoding="utf-8")
    before, after = load_config(source), load_config(dest)
    if before is None or after is None:
        raise ReplicateError(f"cannot read back the copy {dest} of {source}")
    want = flatten(before)
    want[key] = new
    if flatten(after) != want:
        raise ReplicateError(f"the copy {dest} of {source} differs in more than {key}")
    return str(dest)


# -- the same code? ---------------------------------------------------------------------------


def files_of_patch(patch: str) -> dict[str, str]:
    """A ``git diff`` by file: the text of each file's part (file: its new path)."""
    files: dict[str, str] = {}
    current: str | None = None
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git "):
            m = re.match(r"diff --git a/(.*?) b/(.*)$", line.rstrip("\n"))
            current = m.group(2) if m else line[len("diff --git ") :].strip()
            files[current] = ""
        if current is not None:
            files[current] += line
    return files


def tree_differences(store: Store, rec: RunRecord, cwd: str) -> tuple[str | None, list[str]]:
    """How the working tree at ``cwd`` now differs from the code ``rec`` recorded:
    ``(commit line or None, files that differ)``; ``(None, [])``: the same.

    Compared: the commit, the uncommitted patch file by file, and the untracked files
    whose contents the run kept (changed or gone; files of other runs' directories
    are outputs and left out). Untracked files the run did not have are not code it
    ran, and are not compared.
    """
    from labbook.analysis.diff import other_runs_files
    from labbook.capture.git import capture_git
    from labbook.capture.redact import REDACTED

    then = rec.get("git") or {}
    now = capture_git(cwd)
    if now is None:
        return "git state cannot be read now", []
    commit_line = None
    if then.get("commit") != now.commit:
        a, b = (then.get("commit") or "none")[:8], (now.commit or "none")[:8]
        commit_line = f"HEAD is {b}, the run was at {a}"
    files: dict[str, None] = {}
    if commit_line is not None and then.get("commit") and now.commit:
        for name in _git_lines(now.root, "diff", "--name-only", then["commit"], now.commit, "--"):
            files[name] = None
    pa, pb = files_of_patch(then.get("diff") or ""), files_of_patch(now.diff or "")
    for name in sorted(set(pa) | set(pb)):
        if pa.get(name) != pb.get(name):
            files[name] = None
    kept = then.get("untracked_contents") or {}
    outputs = other_runs_files(store, [rec])
    for name, text in sorted(kept.items()):
        if text == REDACTED or outputs(name):
            continue
        try:
            with open(os.path.join(now.root, name), encoding="utf-8") as f:
                current: str | None = f.read()
        except (OSError, UnicodeDecodeError, ValueError):
            current = None
        if current != text:
            files[name] = None
    return commit_line, list(files)


def _git_lines(root: str, *args: str) -> list[str]:
    exe = shutil.which("git")
    if exe is None:
        return []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1", GIT_OPTIONAL_LOCKS="0")
    try:
        proc = subprocess.run(
            [exe, "-C", root, "--no-pager", "-c", "core.fsmonitor=false", *args],
            capture_output=True, text=True, errors="replace", env=env, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in proc.stdout.splitlines() if line] if proc.returncode == 0 else []


def differs_message(run_id: str, commit_line: str | None, files: Sequence[str]) -> str:
    """The one line that refuses a replicate from a changed working tree."""
    parts = []
    if commit_line:
        parts.append(commit_line)
    if files:
        shown = ", ".join(files[:5]) + (f", … {len(files) - 5} more" if len(files) > 5 else "")
        parts.append(f"{len(files)} file{'s' if len(files) != 1 else ''} changed ({shown})")
    return f"the working tree differs from {run_id}: {'; '.join(parts)}"


# -- seeds -----------------------------------------------------------------------------------


def group_seeds(store: Store, rec: RunRecord) -> set[Any]:
    """The seeds that the runs of ``rec``'s seed group (any status) have."""
    import json

    from labbook.capture.seed import parse_seed_value
    from labbook.store.configsig import signature_hash

    seeds = {parse_seed_value((rec.get("seed") or {}).get("value"))}
    digest = signature_hash(rec.get("config") or {})
    if digest is not None:
        git = rec.get("git") or {}
        for row in store.runs_with_config_sig(digest, limit=100_000):
            same_repo = row["git_root"] == git.get("root") or (
                git.get("remote") and row["git_remote"] == git.get("remote")
            )
            if same_repo and row["seed_value"] is not None:
                try:
                    seeds.add(parse_seed_value(json.loads(row["seed_value"])))
                except (ValueError, TypeError):
                    continue
    seeds.discard(None)
    return seeds


def new_seeds(taken: set[Any], start: Any, n: int) -> list[int]:
    """``n`` integers not in ``taken``, counting up from ``start`` + 1 (from 1 when
    ``start`` is not an integer)."""
    k = start + 1 if isinstance(start, int) and not isinstance(start, bool) else 1
    out: list[int] = []
    while len(out) < n:
        if k not in taken:
            out.append(k)
        k += 1
    return out


# -- the plan ----------------------------------------------------------------------------------


def _redacted_args(argv: Sequence[str]) -> list[str]:
    from labbook.capture.redact import REDACTED

    return [a for a in argv if REDACTED in a]


def plan_replicas(
    store: Store,
    run_id: str,
    n: int,
    *,
    here: bool = False,
    seed_arg: str | None = None,
    sweep: str | None = None,
    copies: bool = True,
) -> Plan:
    """The replicas of run ``run_id`` (see the module docstring); raises
    :class:`ReplicateError` with the reason when there can be none. ``copies``: make
    the config file copies (False: plan only, the copies' paths are where they would be).
    """
    from labbook.capture.seed import parse_seed_value

    if n < 1:
        raise UsageError("--seeds must be at least 1")
    rec = store.record(run_id, heavy=True)
    row = store.run_row(run_id) or {}
    argv = rec.get("command")
    if not argv:
        raise ReplicateError(
            f"run {run_id} has no recorded command (it was imported, not launched)",
            hint="`labbook run -- CMD` records the command; replicate runs that",
        )
    hidden = _redacted_args(argv)
    if hidden:
        raise ReplicateError(
            f"the command of run {run_id} had secrets redacted ({hidden[0]});"
            " it cannot be rerun as recorded"
        )
    cwd = row.get("cwd") or (rec.get("git") or {}).get("root") or rec.get("path") or ""
    if not cwd or not os.path.isdir(cwd):
        raise ReplicateError(f"the directory run {run_id} ran in ({cwd or '?'}) no longer exists")
    place = locate_seed(rec, argv, cwd, seed_arg)
    notes: list[str] = []
    if rec.get("git"):
        commit_line, files = tree_differences(store, rec, cwd)
        if commit_line or files:
            message = differs_message(run_id, commit_line, files)
            if not here:
                raise ReplicateError(f"{message}; commit, or pass --here to use it as it is")
            notes.append(f"{message}; running it as it is (--here)")
    else:
        notes.append(f"run {run_id} has no recorded git state: its code cannot be checked")
    seed_value = parse_seed_value((rec.get("seed") or {}).get("value"))
    seeds = new_seeds(group_seeds(store, rec), seed_value, n)
    sweep = sweep or f"rep-{run_id[:8]}-{uuid.uuid4().hex[:6]}"
    template, template_env = set_seed(argv, place, SEED_MARK)
    template = own_outputs(template, rec, cwd, run_id)
    if place.kind == "file":
        # The replica's recorded config names the file as the run did (launch.py's
        # REPLICA_ARGS_VAR), so that the copy's path keeps it in the run's seed group.
        assert place.file is not None
        marked_copy = str(replicas_dir(sweep) / f"seed-{SEED_MARK}" / Path(place.file).name)
        pointed = _point_at(template, cwd, place.file, marked_copy)
        pairs = [[new, old] for new, old in zip(pointed, template, strict=True) if new != old]
        # (JSON escapes the seed placeholder's NULs: put the placeholder back)
        as_json = json.dumps(pairs).replace(json.dumps(SEED_MARK)[1:-1], SEED_MARK)
        template_env = {**template_env, REPLICA_ARGS_VAR: as_json}
    replicas: list[Replica] = []
    from labbook.sources.names import command_name

    stem = command_name(argv) if place.kind == "file" else None
    for seed in seeds:
        text = str(seed)
        r_argv = [a.replace(SEED_MARK, text) for a in template]
        env = {SWEEP_VAR: sweep, **{k: v.replace(SEED_MARK, text) for k, v in template_env.items()}}
        name = copy = None
        if place.kind == "file":
            assert place.file is not None
            dest = replicas_dir(sweep) / f"seed-{seed}"
            if copies:
                copy = copy_with_seed(place.file, place.name, seed_value, seed, dest)
            else:
                copy = str(dest / Path(place.file).name)
            r_argv = _point_at(r_argv, cwd, place.file, copy)
            name = f"{stem} seed={seed}"
        replicas.append(Replica(seed, r_argv, env, name=name, copy=copy))
    if place.kind == "file":
        assert place.file is not None
        marked = str(replicas_dir(sweep) / f"seed-{SEED_MARK}" / Path(place.file).name)
        template = _point_at(template, cwd, place.file, marked)
    return Plan(
        run_id, rec.get("name"), cwd, sweep, place, replicas, notes, template, stem, template_env
    )


def _output_tokens(argv: Sequence[str]) -> list[tuple[int, str, str]]:
    """Output locations a command line sets (``--out DIR``, ``--output_dir=DIR``,
    ``out=DIR``): ``(argv index of the value's token, prefix kept, the value)``."""
    from labbook.store.configsig import is_identity_key

    found: list[tuple[int, str, str]] = []
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if not is_identity_key(name.replace("-", "_")):
                continue
            if eq:
                found.append((i, tok[: len(tok) - len(value)], value))
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                found.append((i + 1, "", argv[i + 1]))
            continue
        key = _override_key(tok)
        if key is not None and is_identity_key(key):
            value = tok.split("=", 1)[1]
            found.append((i, tok[: len(tok) - len(value)], value))
    return [f for f in found if f[2] and SEED_MARK not in f[2]]


def own_outputs(argv: Sequence[str], rec: RunRecord, cwd: str, run_id: str) -> list[str]:
    """``argv`` with each output location it sets made the replica's own (``-seedN``
    appended, :data:`SEED_MARK` where N goes): replicas writing into the run's
    directory would overwrite it. Output keys are outside the seed group's signature.
    Raises :class:`ReplicateError` when the run's directory is an output location the
    command line does not set (a config file's or the script's default)."""
    out = list(argv)
    tokens = _output_tokens(argv)
    for index, prefix, value in tokens:
        stem = value.rstrip("/") or value
        out[index] = f"{prefix}{stem}-seed{SEED_MARK}"
    from labbook.store.configsig import is_identity_key

    run_dir = rec.get("path")
    if not run_dir:
        return out
    here = os.path.realpath(run_dir)
    on_line = {os.path.realpath(os.path.join(cwd, v)) for _, _, v in tokens}
    for key, value in (rec.get("config") or {}).items():
        if not isinstance(value, str) or not value or not is_identity_key(str(key)):
            continue
        where = os.path.realpath(os.path.join(cwd, os.path.expanduser(value)))
        if where == here and where not in on_line:
            raise ReplicateError(
                f"run {run_id} wrote into {value} (its config's {key}), which its command"
                " does not set: every replica would write into that run's directory",
                hint=f"rerun it with the output on the command line (--{key.rsplit('.', 1)[-1]}"
                " DIR), then replicate that run",
            )
    return out


def _point_at(argv: Sequence[str], cwd: str, original: str, copy: str) -> list[str]:
    """argv with the token that names ``original`` naming ``copy`` instead."""
    out = list(argv)
    for index, path in config_files_in(argv, cwd):
        if path == original:
            tok = out[index]
            if "=" in tok and not os.path.isfile(os.path.join(cwd, tok)):
                out[index] = f"{tok.split('=', 1)[0]}={copy}"
            else:
                out[index] = copy
    return out


# -- commands, scripts, launching ----------------------------------------------------------------


def labbook_prefix(db: str | None) -> list[str]:
    """``labbook [--db DB]`` as a person types it."""
    return ["labbook", *(["--db", db] if db else [])]


def command_line(plan: Plan, replica: Replica, db: str | None) -> str:
    """One replica as one shell line (``cd`` when it runs elsewhere than here)."""
    words = [f"{k}={shlex.quote(v)}" for k, v in replica.env.items()]
    words += [shlex.quote(w) for w in labbook_prefix(db)]
    words.append("run")
    if replica.name:
        words += ["--name", shlex.quote(replica.name)]
    words.append("--")
    words += [shlex.quote(a) for a in replica.argv]
    line = " ".join(words)
    if os.path.realpath(plan.cwd) != os.path.realpath(os.getcwd()):
        line = f"cd {shlex.quote(plan.cwd)} && {line}"
    return line


def _quote_marked(word: str) -> str:
    """A shell word with the seed placeholder as ``"${seed}"``."""
    if SEED_MARK not in word:
        return shlex.quote(word)
    return '"${seed}"'.join(shlex.quote(p) if p else "" for p in word.split(SEED_MARK))


def sbatch_script(plan: Plan, db: str | None, log_dir: Path) -> str:
    """A Slurm array job: one task per seed, ``labbook run --`` wrapping the command."""
    n = len(plan.replicas)
    env = plan.template_env
    seeds = " ".join(str(s) for s in plan.seeds)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=replicate-{plan.run_id[:8]}",
        f"#SBATCH --array=0-{n - 1}",
        f"#SBATCH --output={log_dir}/slurm-%A_%a.out",
        f"# {n} replica{'s' if n != 1 else ''} of run {plan.run_id}"
        + (f" ({plan.run_name})" if plan.run_name else "")
        + f", sweep {plan.sweep}; written by labbook replicate.",
        f"# The seed is set through {plan.place.describe()}.",
        "# Add #SBATCH lines (partition, GPUs, time) as your cluster needs; submit with sbatch.",
        "set -euo pipefail",
        f"seeds=({seeds})",
        'seed="${seeds[${SLURM_ARRAY_TASK_ID:?not a Slurm array task}]}"',
        f"cd {shlex.quote(plan.cwd)}",
        f"export {SWEEP_VAR}={shlex.quote(plan.sweep)}",
    ]
    for k, v in env.items():
        lines.append(f"export {k}={_quote_marked(v)}")
    words = [shlex.quote(w) for w in labbook_prefix(db)] + ["run"]
    if plan.name_stem:
        words += ["--name", _quote_marked(f"{plan.name_stem} seed={SEED_MARK}")]
    words += ["--", *(_quote_marked(a) for a in plan.template)]
    lines.append("exec " + " ".join(words))
    return "\n".join(lines) + "\n"


def write_sbatch(plan: Plan, db: str | None) -> Path:
    """Write the array job script of ``plan`` (in :func:`replicas_dir`); its path."""
    folder = replicas_dir(plan.sweep)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "replicate.sbatch"
    path.write_text(sbatch_script(plan, db, folder), encoding="utf-8")
    path.chmod(0o755)
    return path


def _child_argv(replica: Replica, db: str | None) -> list[str]:
    argv = [sys.executable, "-m", "labbook", *(["--db", db] if db else []), "run"]
    if replica.name:
        argv += ["--name", replica.name]
    return [*argv, "--", *replica.argv]


def launch_replicas(
    plan: Plan,
    *,
    db: str | None,
    parallel: int = 1,
    environ: Mapping[str, str] | None = None,
    say: Any = None,
) -> list[tuple[int, int, str | None]]:
    """Run the replicas through ``labbook run`` as child processes: one after another
    (their output passed through), or ``parallel`` at a time (each one's output in a
    log file in :func:`replicas_dir`). ``[(seed, exit code, log file or None)]``."""
    base = dict(os.environ if environ is None else environ)
    results: list[tuple[int, int, str | None]] = []
    if parallel <= 1:
        for r in plan.replicas:
            if say:
                say(f"labbook: replica seed={r.seed} ({len(results) + 1} of {len(plan.replicas)})")
            done_proc = subprocess.run(
                _child_argv(r, db), cwd=plan.cwd, env={**base, **r.env}, check=False
            )
            results.append((r.seed, done_proc.returncode, None))
        return results
    folder = replicas_dir(plan.sweep)
    folder.mkdir(parents=True, exist_ok=True)
    running: list[tuple[Replica, subprocess.Popen[bytes], str, Any]] = []
    pending = list(plan.replicas)
    done: dict[int, tuple[int, int, str | None]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            r = pending.pop(0)
            log = str(folder / f"seed-{r.seed}.log")
            fh = open(log, "wb")  # noqa: SIM115 - closed when the child ends
            proc = subprocess.Popen(
                _child_argv(r, db), cwd=plan.cwd, env={**base, **r.env},
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
            if say:
                say(f"labbook: replica seed={r.seed} started (output: {log})")
            running.append((r, proc, log, fh))
        still = []
        for r, proc, log, fh in running:
            try:
                rc = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                still.append((r, proc, log, fh))
                continue
            fh.close()
            done[r.seed] = (r.seed, rc, log)
            if say:
                say(f"labbook: replica seed={r.seed} ended (exit {rc})")
        running = still
    return [done[r.seed] for r in plan.replicas]
