"""``labbook check``: before a run starts, recall past runs like it that went wrong.

Which past runs
    Runs of the same repository (the git work tree that holds the cwd; without
    one, runs started in the same directory) that failed, diverged or were killed,
    or that carry a ``failure`` or ``lesson`` note — whatever their status.

Which config the new run has
    Keys from ``--config FILE`` (flattened), overridden by the command's own
    arguments: Hydra-style ``key=value`` (``+key=``/``++key=`` too) and
    ``--key value`` / ``--key=value`` / a bare ``--flag`` (true). Only arguments
    after the script (``train.py``, ``-m pkg.train``) count, so ``torchrun
    --nproc_per_node 8`` does not. Keys are compared with dashes as underscores.

Which key is which
    A new key matches an old key that is equal or that ends with ``.KEY`` (so
    ``--lr`` matches ``optimizer.lr``) when exactly one old key does. A past run's
    config is its recorded config plus, for keys it lacks, its own command's args.

Same and close (the definitions)
    *shared* = the new keys that the old run has; *differing* = shared keys whose
    values differ (numbers compare as numbers: ``5`` = ``5.0`` = ``"5"``).

    * **same**: at least one shared key, no differing one, and the old run has
      at least half of the new keys;
    * **close**: the old run has at least half of the new keys, at most
      :data:`CLOSE_MAX_DIFFS` (2) values differ and at most half of the shared
      keys differ (``lr`` and ``seed`` given, only ``seed`` changed: close);
    * a new run with no config at all is *same* as a past run of the same script
      whose command had no config either.

    Keys that say where a run writes or what it is called (``out``, ``output_dir``,
    ``run_name``, ``hydra.*``, … :data:`IGNORED_KEYS`) are not compared. When both
    commands name a script, it must be the same script (by file name).
    An exact repeat of a failed config is a *same* match with a run that failed,
    diverged or was killed; ``--strict`` makes that exit 1.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbook.readers.values import parse_value

if TYPE_CHECKING:
    from labbook.store import Store

__all__ = [
    "CLOSE_MAX_DIFFS",
    "IGNORED_KEYS",
    "CheckWarning",
    "check",
    "compare",
    "config_from_argv",
    "load_config_file",
    "match_key",
    "script_of",
]

#: At most this many differing values for a "close" config.
CLOSE_MAX_DIFFS = 2
#: Statuses that count as having gone wrong.
BAD_STATUSES = ("failed", "diverged", "killed")
#: Note kinds that make a run worth recalling whatever its status.
WARNING_NOTES = ("failure", "lesson")
#: Arguments of launchers that take a value (so that value is not taken as the script).
_PY_OPTS_WITH_VALUE = {"-W", "-X", "-c"}


def _norm(key: str) -> str:
    return key.strip().lstrip("+~").replace("-", "_")


def script_of(argv: list[str]) -> tuple[str | None, int]:
    """The script a command runs (``train.py`` or ``-m pkg.train``) and the index of
    its first own argument; ``(None, 1)`` when there is none."""
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1], i + 2
        if arg.startswith("-m") and len(arg) > 2 and i > 0 and "python" in argv[0]:
            return arg[2:], i + 1
        if arg.endswith(".py") and not arg.startswith("-"):
            return os.path.basename(arg), i + 1
    return None, 1


def config_from_argv(argv: list[str]) -> dict[str, Any]:
    """The config a command line states (see the module docstring), flattened."""
    if not argv:
        return {}
    _, start = script_of(list(argv))
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
#: differ between any two runs and are left out of the comparison.
IGNORED_KEYS = re.compile(
    r"^(?:hydra\..*|(?:.*\.)?(?:out|outs|output|outputs|out_dir|output_dir|outdir|save_dir"
    r"|save_path|log_dir|logdir|logging_dir|run_name|name|exp_name|experiment_name"
    r"|checkpoint_dir|ckpt_dir|resume|resume_from_checkpoint|config|config_name|config_path))$"
)


def ignored_key(key: str) -> bool:
    """Whether a config key is about output locations or names (see :data:`IGNORED_KEYS`)."""
    return bool(IGNORED_KEYS.match(_norm(key).lower()))


def match_key(key: str, config: dict[str, Any]) -> str | None:
    """The key of ``config`` that ``key`` names: equal, else the one ending in ``.key``."""
    k = _norm(key).lower()
    by_norm = {_norm(c).lower(): c for c in config}
    if k in by_norm:
        return by_norm[k]
    ends = [c for n, c in by_norm.items() if n.endswith("." + k)]
    return ends[0] if len(ends) == 1 else None


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
    return bool(a == b)


def compare(
    new: dict[str, Any], old: dict[str, Any]
) -> tuple[str | None, dict[str, Any], dict[str, tuple[Any, Any]]]:
    """``("same"|"close"|None, matched {key: value}, differed {key: (old, new)})``."""
    matched: dict[str, Any] = {}
    differed: dict[str, tuple[Any, Any]] = {}
    new = {k: v for k, v in new.items() if not ignored_key(k)}
    for key, value in new.items():
        old_key = match_key(key, old)
        if old_key is None:
            continue
        if _same_value(old[old_key], value):
            matched[old_key] = value
        else:
            differed[old_key] = (old[old_key], value)
    shared = len(matched) + len(differed)
    if not new or shared == 0 or shared * 2 < len(new):
        return None, matched, differed
    if not differed:
        return "same", matched, differed
    if len(differed) <= CLOSE_MAX_DIFFS and len(differed) * 2 <= shared:
        return "close", matched, differed
    return None, matched, differed


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
            "matched": self.matched,
            "differed": {k: {"then": a, "now": b} for k, (a, b) in self.differed.items()},
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
    wrong or carry failure/lesson notes and whose config is the same as or close to
    ``config`` overridden by ``argv``'s arguments; most alike first, then newest."""
    new_cfg = dict(config)
    for key, value in config_from_argv(argv).items():
        existing = match_key(key, new_cfg)
        new_cfg[existing or key] = value
    script, _ = script_of(argv)
    bad = ",".join("?" for _ in BAD_STATUSES)
    kinds = ",".join("?" for _ in WARNING_NOTES)
    where = "r.git_root = ?" if repo_root else "r.cwd = ?"
    place = repo_root or os.path.abspath(cwd or os.getcwd())
    rows = store.conn.execute(
        f"SELECT r.id, r.name, r.status, r.failure_kind, r.failure_message, r.started_at,"
        f" r.command FROM runs r WHERE r.deleted_at IS NULL AND {where} AND (r.status IN ({bad})"
        f" OR r.id IN (SELECT run_id FROM notes WHERE deleted_at IS NULL AND kind IN ({kinds})))"
        " ORDER BY coalesce(r.started_at, r.created_at) DESC LIMIT 2000",
        (place, *BAD_STATUSES, *WARNING_NOTES),
    ).fetchall()
    out: list[CheckWarning] = []
    for rid, name, status, fkind, fmsg, started, command_json in rows:
        try:
            old_cmd = json.loads(command_json) if command_json else None
        except ValueError:
            old_cmd = None
        old_script = script_of(old_cmd)[0] if old_cmd else None
        if script and old_script and os.path.basename(script) != os.path.basename(old_script):
            continue
        old_cfg = store.config(rid)
        for key, value in config_from_argv(old_cmd or []).items():
            if match_key(key, old_cfg) is None:
                old_cfg[key] = value
        if new_cfg:
            kind, matched, differed = compare(new_cfg, old_cfg)
        elif script and old_script and not config_from_argv(old_cmd or []):
            kind, matched, differed = "same", {}, {}
        else:
            kind = None
        if kind is None:
            continue
        notes = store.notes_of(rid)
        notes.sort(key=lambda n: (n["kind"] not in WARNING_NOTES, n["id"]))
        out.append(
            CheckWarning(
                run_id=rid,
                name=name,
                status=status,
                failure={"kind": fkind, "message": fmsg} if fkind else None,
                match=kind,
                matched=matched,
                differed=differed,
                notes=notes,
                started_at=started,
                command=old_cmd,
            )
        )
    out.sort(key=lambda w: (w.match != "same", len(w.differed)))  # stable: newest first
    return out[:limit] if limit else out


def split_line(line: str) -> list[str]:
    """A shell command line as argv (for the shell hooks); unbalanced quotes: whitespace."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def format_warning(w: CheckWarning) -> list[str]:
    """A warning as a few lines of text for a terminal (no colour codes)."""
    what = "the same config as" if w.match == "same" else "a config close to"
    title = f"{w.run_id}" + (f" ({w.name})" if w.name else "")
    ended = w.status
    if w.failure:
        ended += f": {w.failure['kind']} — {w.failure['message']}"
    lines = [f"labbook: {what} run {title}, which ended {ended}"]
    if w.started_at:
        lines[0] += f" [{w.started_at}]"
    if w.differed:
        diffs = ", ".join(f"{k}: {_show(a)} → {_show(b)}" for k, (a, b) in w.differed.items())
        lines.append(f"  differs: {diffs}")
    if w.matched:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in list(w.matched.items())[:8])
        more = f" (+{len(w.matched) - 8} more)" if len(w.matched) > 8 else ""
        lines.append(f"  same: {shown}{more}")
    for n in w.notes:
        text = " ".join(str(n["text"]).split())
        lines.append(f"  {n['kind']} ({n.get('author') or '?'}, {n['at']}): {text}")
    from labbook.textsafe import printable

    return [printable(line) for line in lines]  # names and notes: no raw control characters


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


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

        with Store.open(db, create=False) as store:
            warnings = check(
                store,
                repo_root=find_repo_root(os.getcwd()),
                config={},
                argv=split_line(line),
                cwd=os.getcwd(),
            )
        for w in warnings:
            print("\n".join(format_warning(w)))
    except Exception:  # a shell hook never complains
        return 0
    return 0
