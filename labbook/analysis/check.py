"""``labbook check``: before a run starts, recall past runs like it that went wrong.

Which past runs
    Runs of the same repository (the git work tree that holds the cwd; without
    one, runs started in the same directory) that failed, diverged or were killed,
    or that carry a ``failure`` or ``lesson`` note — whatever their status.

The entry point (a run is only ever like a run of the same code)
    The script or module a command runs, through the usual launchers: ``python
    [-u] train.py``, ``python -m pkg.train``, ``torchrun … train.py`` (``-m`` too),
    ``python -m torch.distributed.run …``, ``accelerate launch … train.py``,
    ``deepspeed …``, ``srun``/``mpirun``/``sbatch``, ``bash run.sh``, behind
    ``VAR=1``, ``env``, ``nohup``, ``nice``, ``uv run``, ``conda run -n E``. A script
    is named by its path relative to the repository (else to the directory), so
    ``python ../train.py`` from ``src/`` is ``train.py`` and ``src/train.py`` is
    another script; ``-m pkg.train`` is ``pkg/train.py`` from the cwd. When a
    command is given, a past run is compared only when its recorded command ran the
    same entry point (a run without a recorded command is not). Hydra records only
    a job name, so a Hydra run dir's entry point matches by file name. ``python
    -c``, ``labbook run …`` (it checks by itself) and the like: no entry point, no
    warning. ``labbook check --config FILE`` with no command compares configs only.

Which config each run states
    New: keys from ``--config FILE`` (flattened), overridden by the command's own
    arguments: Hydra-style ``key=value`` (``+key=``/``++key=`` too) and ``--key
    value`` / ``--key=value`` / a bare ``--flag`` (true); only arguments after the
    entry point count, so ``torchrun --nproc_per_node 8`` does not. Old: the keys
    its command stated (all of its recorded config when it has no command); their
    values are read from the recorded config (which also holds what the script
    wrote itself, defaults included), else from the command. Keys compare with
    dashes as underscores; a key matches an equal key or one that ends in ``.KEY``
    (``--lr`` matches ``optimizer.lr``, and ``optimizer.lr`` matches ``lr``) when
    exactly one does. Keys that say where a run writes or what it is called
    (``out``, ``output_dir``, ``run_name``, ``hydra.*``, …: :data:`IGNORED_KEYS`) are
    not compared.

Same and close (the definitions)
    For each new key the old run's value is looked up: *agree* or *differ*
    (numbers as numbers: ``5`` = ``5.0`` = ``"5"``); a new key the old run has no
    value for, and a key the old command stated that the new one does not, are
    *one-sided*. Coverage: at least half of the new keys have an old value, and at
    least half of the old command's stated keys are stated by the new one. A single
    shared key is therefore never enough unless it is all that both commands state.

    * **same**: same entry point, coverage, nothing differs (and at least one key
      agrees); or neither command states any config at all;
    * **close**: same entry point, coverage, 1 to :data:`CLOSE_MAX_DIFFS` (2) values
      differ and at least as many keys agree as differ or are one-sided;
    * a config file (``--config``, ``--config-name``, …) that differs, or that only
      one side names, is a different config: neither.

    An exact repeat of a failed config is a *same* match with a run that failed,
    diverged or was killed; ``--strict`` makes that exit 1.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbook.capture.command import EntryPoint, entry_point, parse_command
from labbook.readers.values import parse_value

if TYPE_CHECKING:
    from labbook.store import Store

__all__ = [
    "CLOSE_MAX_DIFFS",
    "IGNORED_KEYS",
    "CheckWarning",
    "Comparison",
    "EntryPoint",
    "check",
    "compare",
    "config_from_argv",
    "entry_point",
    "load_config_file",
    "match_key",
    "parse_command",
]

#: At most this many differing values for a "close" config.
CLOSE_MAX_DIFFS = 2
#: Statuses that count as having gone wrong.
BAD_STATUSES = ("failed", "diverged", "killed")
#: Note kinds that make a run worth recalling whatever its status.
WARNING_NOTES = ("failure", "lesson")


@functools.lru_cache(maxsize=4096)  # thousands of past runs share a few dozen keys
def _norm(key: str) -> str:
    return key.strip().lstrip("+~").replace("-", "_")


# -- the config a command states ---------------------------------------------------------


def config_from_argv(argv: list[str]) -> dict[str, Any]:
    """The config a command line states (see the module docstring), flattened."""
    if not argv:
        return {}
    _, _, start = parse_command(list(argv))
    args = list(argv[start:])
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" or not arg:
            continue
        if arg.startswith("--") and len(arg) > 2:
            name, eq, inline = arg[2:].partition("=")
            if eq:
                out[_norm(name)] = parse_value(inline)
            elif i < len(args) and _is_value(args[i]):
                out[_norm(name)] = parse_value(args[i])
                i += 1
            else:
                out[_norm(name)] = True
        elif arg.startswith("-"):
            continue  # short options are ambiguous (value or not): left out
        elif "=" in arg and not arg.startswith("~"):
            name, _, value = arg.partition("=")
            if name and " " not in name:
                out[_norm(name)] = parse_value(value)
    from labbook.capture.redact import redact_config

    return redact_config(out)  # as stored: a past run's --token is "<redacted>"


_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/@]*=")


def _is_value(arg: str) -> bool:
    """Whether ``arg`` after ``--key`` is its value (not an option or a Hydra override)."""
    if _is_number(arg):
        return True
    return not arg.startswith("-") and not _OVERRIDE.match(arg)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config_file(path: str) -> dict[str, Any]:
    """A config file (.yaml/.yml/.json/.toml) flattened; unreadable: a UsageError."""
    from labbook.errors import UsageError
    from labbook.model import flatten
    from labbook.readers.files import load_config

    if not os.path.isfile(path):
        raise UsageError(f"no config file {path}")
    doc = load_config(path)
    if doc is None:
        raise UsageError(f"cannot read the config file {path}")
    return flatten(doc)


#: Keys that name where a run writes or what it is called, not how it trains: they
#: differ between any two runs and are left out of the comparison. ``name`` and
#: ``output`` only at the top level (``optimizer.name`` is how it trains).
IGNORED_KEYS = re.compile(
    r"^(?:hydra\..*|out|outs|output|outputs|name"
    r"|(?:.*\.)?(?:out_dir|output_dir|outdir|output_path|save_dir|save_path|log_dir|logdir"
    r"|logging_dir|run_name|exp_name|experiment_name|checkpoint_dir|ckpt_dir|resume"
    r"|resume_from_checkpoint))$"
)
#: Keys that name a config file: a different file is a different config.
CONFIG_FILE_KEYS = re.compile(r"^(?:config|config_file|config_name|cfg|configs)$")


def ignored_key(key: str) -> bool:
    """Whether a config key is about output locations or names (see :data:`IGNORED_KEYS`)."""
    return bool(IGNORED_KEYS.match(_norm(key).lower()))


def match_key(key: str, config: dict[str, Any]) -> str | None:
    """The key of ``config`` that ``key`` names: equal, else the one ending in ``.key``."""
    return _match(key, _index(config))


def _index(config: dict[str, Any]) -> dict[str, str]:
    """``config``'s keys by their normal form (for :func:`_match` and :func:`_resolve`)."""
    return {_norm(c).lower(): c for c in config}


def _match(key: str, by_norm: dict[str, str]) -> str | None:
    k = _norm(key).lower()
    if k in by_norm:
        return by_norm[k]
    ends = [c for n, c in by_norm.items() if n.endswith("." + k)]
    return ends[0] if len(ends) == 1 else None


def _resolve(key: str, by_norm: dict[str, str]) -> str | None:
    """:func:`match_key` both ways: also ``optimizer.lr`` names a recorded ``lr``."""
    k = _norm(key).lower()
    if k in by_norm:
        return by_norm[k]
    ends = [c for n, c in by_norm.items() if n.endswith("." + k)]
    if len(ends) == 1:
        return ends[0]
    if ends:
        return None
    starts = [c for n, c in by_norm.items() if k.endswith("." + n)]
    return starts[0] if len(starts) == 1 else None


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        a = parse_value(a)
    if isinstance(b, str):
        b = parse_value(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b):
        return os.path.normpath(a) == os.path.normpath(b)
    return bool(a == b)


@dataclass
class Comparison:
    """How a new config compares with an old run's (see the module docstring)."""

    #: "same", "close" or None
    kind: str | None
    #: old key -> the value both have
    matched: dict[str, Any] = field(default_factory=dict)
    #: old key -> (value then, value now)
    differed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: keys the old command stated that the new one does not -> the old value
    only_then: dict[str, Any] = field(default_factory=dict)
    #: new keys the old run has no value for -> the new value
    only_now: dict[str, Any] = field(default_factory=dict)
    #: old key -> the new key that named it (``optimizer.lr`` -> ``lr``)
    names: dict[str, str] = field(default_factory=dict)


def compare(
    new: dict[str, Any],
    old: dict[str, Any],
    *,
    old_stated: Any = None,
    _by_norm: dict[str, str] | None = None,
) -> Comparison:
    """Compare the config a new run states with an old run's recorded config ``old``,
    of which the old command stated the keys ``old_stated`` (None: all of them).
    ``_by_norm``: ``old``'s key index when the caller has it already."""
    new = {k: v for k, v in new.items() if not ignored_key(k)}
    stated = [k for k in (old if old_stated is None else old_stated) if not ignored_key(k)]
    c = Comparison(None)
    if not new:
        return c
    by_norm = _index(old) if _by_norm is None else _by_norm
    for key, value in new.items():
        old_key = _resolve(key, by_norm)
        if old_key is None:
            c.only_now[key] = value
            continue
        c.names[old_key] = key
        if _same_value(old[old_key], value):
            c.matched[old_key] = value
        else:
            c.differed[old_key] = (old[old_key], value)
    for key in stated:
        old_key = _resolve(key, by_norm) or key
        if old_key not in c.names:
            c.only_then[old_key] = old.get(old_key)
    shared = len(c.matched) + len(c.differed)
    covered = len(stated) - len(c.only_then)
    if shared == 0 or shared * 2 < len(new) or covered * 2 < len(stated):
        return c
    files = [k for k in (*c.differed, *c.only_then, *c.only_now) if _is_config_file_key(k)]
    if files:
        return c  # another config file: another config, however the rest compares
    one_sided = len(c.only_then) + len(c.only_now)
    if not c.differed:
        c.kind = "same"
    elif len(c.differed) <= CLOSE_MAX_DIFFS and len(c.matched) >= len(c.differed) + one_sided:
        c.kind = "close"
    return c


def _is_config_file_key(key: str) -> bool:
    return bool(CONFIG_FILE_KEYS.match(_norm(key).lower().rpartition(".")[2]))


_SEED_KEYS = re.compile(r"^(?:.*\.)?(?:seed|random_seed|rng_seed|data_seed|manual_seed)$")


@dataclass
class CheckWarning:
    """A past run like the one about to start, and how it ended."""

    run_id: str
    name: str | None
    status: str
    failure: dict[str, Any] | None
    #: "same" or "close" (see the module docstring).
    match: str
    matched: dict[str, Any] = field(default_factory=dict)
    #: key -> (value then, value now)
    differed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    started_at: str | None = None
    command: list[str] | None = None
    #: what that run ran (``train.py``, ``-m pkg.train``), when known
    entry_point: str | None = None
    #: keys that run's command set that this one leaves to the default -> value then
    only_then: dict[str, Any] = field(default_factory=dict)
    #: keys this command sets that that run has no value for -> value now
    only_now: dict[str, Any] = field(default_factory=dict)
    #: old key -> the key as this command names it
    names: dict[str, str] = field(default_factory=dict)

    @property
    def repeat_of_failure(self) -> bool:
        """An exact repeat of a config that failed, diverged or was killed."""
        return self.match == "same" and self.status in BAD_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "name": self.name,
            "status": self.status,
            "failure": self.failure,
            "match": self.match,
            "entry_point": self.entry_point,
            "matched": self.matched,
            "differed": {k: {"then": a, "now": b} for k, (a, b) in self.differed.items()},
            "only_then": self.only_then,
            "only_now": self.only_now,
            "notes": self.notes,
            "started_at": self.started_at,
            "command": self.command,
            "repeat_of_failure": self.repeat_of_failure,
        }


def check(
    store: Store,
    *,
    repo_root: str | None,
    config: dict[str, Any],
    argv: list[str],
    cwd: str | None = None,
    limit: int = 5,
) -> list[CheckWarning]:
    """Past runs of the repository at ``repo_root`` (or of ``cwd`` when None) that went
    wrong or carry failure/lesson notes, that ran the entry point ``argv`` runs and
    whose config is the same as or close to ``config`` overridden by ``argv``'s
    arguments; most alike first, then newest. With no ``argv``, ``config`` alone is
    compared (with every such run). The command's paths are relative to ``cwd``
    (None: ``repo_root``, else the current directory)."""
    work = os.path.abspath(cwd or repo_root or os.getcwd())
    root = repo_root or work
    new_cfg = dict(config)
    for key, value in config_from_argv(argv).items():
        existing = match_key(key, new_cfg)
        new_cfg[existing or key] = value
    new_stated = {k: v for k, v in new_cfg.items() if not ignored_key(k)}
    entry = entry_point(argv, work, root) if argv else None
    if (argv and entry is None) or (not argv and not new_stated):
        return []
    bad = ",".join("?" for _ in BAD_STATUSES)
    kinds = ",".join("?" for _ in WARNING_NOTES)
    where = "r.git_root = ?" if repo_root else "r.cwd = ?"
    rows = store.conn.execute(
        "SELECT r.id, r.name, r.status, r.failure_kind, r.failure_message, r.started_at,"
        f" r.command, r.cwd, r.framework FROM runs r WHERE {store.dialect.live('r.')} AND {where}"
        f" AND (r.status IN ({bad}) OR r.id IN (SELECT run_id FROM notes"
        f" WHERE deleted_at IS NULL AND kind IN ({kinds})))"
        " ORDER BY coalesce(r.started_at, r.created_at) DESC LIMIT 2000",
        (root, *BAD_STATUSES, *WARNING_NOTES),
    ).fetchall()
    candidates: list[tuple[Any, ...]] = []
    for rid, name, status, fkind, fmsg, started, command_json, old_cwd, framework in rows:
        try:
            old_cmd = json.loads(command_json) if command_json else None
        except ValueError:
            old_cmd = None
        if not isinstance(old_cmd, list) or not all(isinstance(a, str) for a in old_cmd):
            old_cmd = None
        old_entry = entry_point(old_cmd, old_cwd or root, root) if old_cmd else None
        if entry is not None and (
            old_entry is None or not entry.same_as(old_entry, by_name=framework == "hydra")
        ):
            continue
        old_args = config_from_argv(old_cmd) if old_cmd else {}
        if not new_stated and any(not ignored_key(k) for k in old_args):
            continue  # it said a config, this one says none: not the same
        candidates.append((rid, name, status, fkind, fmsg, started, old_cmd, old_entry, old_args))
    configs = store.configs([c[0] for c in candidates]) if new_stated else {}
    out: list[CheckWarning] = []
    for rid, name, status, fkind, fmsg, started, old_cmd, old_entry, old_args in candidates:
        if not new_stated:
            c = Comparison("same")  # the same script, and neither says any config
        else:
            old_cfg = configs.get(rid, {})
            by_norm = _index(old_cfg)
            for key, value in old_args.items():
                if _match(key, by_norm) is None:
                    old_cfg[key] = value
                    by_norm[_norm(key).lower()] = key
            old_stated = list(old_args) if old_cmd else None
            c = compare(new_cfg, old_cfg, old_stated=old_stated, _by_norm=by_norm)
        if c.kind is None:
            continue
        out.append(
            CheckWarning(
                run_id=rid,
                name=name,
                status=status,
                failure={"kind": fkind, "message": fmsg} if fkind else None,
                match=c.kind,
                matched=c.matched,
                differed=c.differed,
                notes=[],
                started_at=started,
                command=old_cmd,
                entry_point=old_entry.shown if old_entry else None,
                only_then=c.only_then,
                only_now=c.only_now,
                names=c.names,
            )
        )
    out.sort(key=lambda w: (w.match != "same", len(w.differed)))  # stable: newest first
    out = out[:limit] if limit else out
    # the notes of the warnings shown only, in one batch (not a query per run: the
    # lab's notebook is a round trip away, and thousands of runs may match)
    notes_by_run = store.notes_by_run([w.run_id for w in out])
    for w in out:
        w.notes = notes_by_run.get(w.run_id, [])
        w.notes.sort(key=lambda n: (n["kind"] not in WARNING_NOTES, n["id"]))
    return out


#: The file descriptor of a redirection (``2>`` in ``2>&1``).
_FD_REDIRECT = re.compile(r"(?<=\s)\d+(?=[<>])")


def split_line(line: str) -> list[str]:
    """The command a shell line runs, as argv (for the shell hooks): of the simple
    commands it holds (``cd x && python train.py … | tee log``), the first that runs a
    script or module, else the last; redirections are left out. Unbalanced quotes:
    split at whitespace."""
    try:
        lex = shlex.shlex(_FD_REDIRECT.sub("", line), posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        tokens = list(lex)
    except ValueError:
        return line.split()
    commands: list[list[str]] = [[]]
    skip = False
    for tok in tokens:
        if skip:
            skip = False
        elif tok and all(ch in "();<>|&" for ch in tok):
            if "<" in tok or ">" in tok:
                skip = True  # `> file`, `2>&1`: the word after is no argument
            elif commands[-1]:
                commands.append([])
        else:
            commands[-1].append(tok)
    commands = [c for c in commands if c]
    for argv in commands:
        if parse_command(argv)[0] in ("script", "module"):
            return argv
    return commands[-1] if commands else []


_DID = {"failed": "failed", "diverged": "diverged", "killed": "was killed"}


def format_warning(w: CheckWarning) -> list[str]:
    """A warning as a few lines of text for a terminal (no colour codes)::

    labbook: a config close to run 3f2a (lr-sweep) of train.py, which ended diverged: nan — …
      that run diverged with lr 0.2; yours is 0.05
      same: seed=1, epochs=15
    """
    what = "the same config as" if w.match == "same" else "a config close to"
    title = f"{w.run_id}" + (f" ({w.name})" if w.name else "")
    if w.entry_point:
        title += f" of {w.entry_point}"
    ended = w.status
    if w.failure:
        ended += f": {w.failure['kind']} — {w.failure['message']}"
    lines = [f"labbook: {what} run {title}, which ended {ended}"]
    if w.started_at:
        lines[0] += f" [{w.started_at}]"
    did = _DID.get(w.status)
    if w.differed:
        keys = [w.names.get(k, k) for k in w.differed]
        then = " and ".join(
            f"{k} {_show(a)}" for k, (a, _) in zip(keys, w.differed.values(), strict=True)
        )
        now = " and ".join(_show(b) for _, b in w.differed.values())
        lead = f"that run {did} with" if did else "that run had"
        line = f"  {lead} {then}; yours {'is' if len(keys) == 1 else 'are'} {now}"
        if all(_SEED_KEYS.match(_norm(k).lower()) for k in w.differed):
            line += " (only the seed differs)"
        lines.append(line)
    if w.matched:
        items = [(w.names.get(k, k), v) for k, v in w.matched.items()]
        shown = ", ".join(f"{k}={_show(v)}" for k, v in items[:8])
        more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
        lines.append(f"  same: {shown}{more}")
    if w.only_then:
        shown = ", ".join(f"{k} {_show(v)}" for k, v in w.only_then.items())
        lines.append(
            f"  that run also set {shown}; yours leaves {'it' if len(w.only_then) == 1 else 'them'} to the default"
        )
    if w.only_now:
        shown = ", ".join(f"{k} {_show(v)}" for k, v in w.only_now.items())
        lines.append(
            f"  yours also sets {shown}; that run has no record of {'it' if len(w.only_now) == 1 else 'them'}"
        )
    for n in w.notes:
        text = " ".join(str(n["text"]).split())
        lines.append(f"  {n['kind']} ({n.get('author') or '?'}, {n['at']}): {text}")
    from labbook.textsafe import printable

    return [printable(line) for line in lines]  # names and notes: no raw control characters


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


#: How long the shell hook waits for the lab's notebook before it checks this node's
#: runs only: the hook has ~300 ms in all, start-up included
#: (``LABBOOK_REMOTE_BUDGET_MS`` sets another budget, for the CLI's ``check`` too).
HOOK_REMOTE_BUDGET_S = 0.15


def remote_budget(default_s: float) -> float:
    """``default_s``, or ``LABBOOK_REMOTE_BUDGET_MS`` when it is set to a number."""
    text = os.environ.get("LABBOOK_REMOTE_BUDGET_MS", "").strip()
    try:
        return max(0.01, float(text) / 1000) if text else default_s
    except ValueError:
        return default_s


def _hook_remote() -> Any:
    """The lab's notebook for the hook when the user reads it (``LABBOOK_REMOTE=1`` or
    ``read = "remote"``) and it answers within :data:`HOOK_REMOTE_BUDGET_S`; else None,
    said in one line on stderr when it was wanted."""
    import sys

    flag = os.environ.get("LABBOOK_REMOTE")
    if flag is not None and flag.strip().lower() in ("", "0", "false", "no", "off", "local"):
        return None
    if flag is None:
        from labbook.config import config_file

        try:
            if not config_file().exists():
                return None
        except OSError:
            return None
    try:
        from labbook.store.remote.config import RemoteConfig
        from labbook.store.remote.read import open_remote_within

        cfg = RemoteConfig.load()
        if cfg.read != "remote":
            return None
        return open_remote_within(remote_budget(HOOK_REMOTE_BUDGET_S), cfg)
    except Exception as exc:  # the hook never fails; it says why, once
        from labbook.textsafe import printable

        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        print(f"labbook: checking this node's runs only: {printable(message)}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m labbook check --hook --line LINE``: the shell hooks' fast path.

    The same as ``labbook check --hook --line LINE`` without loading click and the
    CLI (about half of the start-up time), since the hooks have only 300 ms. Never
    fails: no database, a bad line or any error print nothing and exit 0.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"]:
        args = args[1:]
    line: str | None = None
    db = os.environ.get("LABBOOK_DB")
    i = 0
    while i < len(args):
        if args[i] in ("--line", "--db") and i + 1 < len(args):
            if args[i] == "--line":
                line = args[i + 1]
            else:
                db = args[i + 1]
            i += 2
            continue
        i += 1
    if not line:
        return 0
    try:
        from labbook.capture.git import find_repo_root
        from labbook.store import Store

        with _hook_remote() or Store.open(db, create=False) as store:
            warnings = check(
                store,
                repo_root=find_repo_root(os.getcwd()),
                config={},
                argv=split_line(line),
                cwd=os.getcwd(),
            )
        for w in warnings:
            print("\n".join(format_warning(w)))
    except Exception as exc:  # a shell hook never complains
        from labbook.errors import LabbookError
        from labbook.warn import warn_exception

        warn_exception(None, "check --hook failed", exc, expected=(LabbookError,), quiet=True)
        return 0
    return 0
