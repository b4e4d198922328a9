"""The diff engine: what differs between two runs, section by section.

:func:`diff_runs` is a pure function over two ``--json`` records (as
``Store.record(run_id, heavy=True)`` returns them) and, optionally, the records of
their *seed peers*. It returns the ``labbook diff --json`` object: ``a`` and ``b``
(run ids) and one key per section that differs, in :data:`SECTIONS` order:

``config``
    ``changed`` (key -> [a, b]), ``added`` (key -> b), ``removed`` (key -> a).
    Seed-like keys (``seed``, ``trainer.seed``, ``data_seed``, …) belong to ``seed``.
``seed``
    ``a`` and ``b``: ``{"value", "source"}``; ``config``: other seed-like keys that
    differ (key -> [a, b]).
``code``
    ``commit`` [a, b]; ``commits`` (when the commits differ): ``a_to_b`` / ``b_to_a``
    lists of ``{"commit", "subject"}`` read from the repository if it still exists
    (else ``available: false`` and a ``note``); ``patch`` (when the uncommitted
    changes differ): ``files_a_only``, ``files_b_only``, ``files_changed`` and
    ``diff``, a unified diff of the two patches (a diff of diffs); ``untracked``:
    ``added``, ``removed``, ``changed`` (and ``diff`` for changed small text files).
``data``
    ``changed`` (key -> ``{"a", "b", "what"}``), ``added``, ``removed`` of the data
    fingerprints recorded at capture time (:mod:`labbook.capture.data`).
``env``
    ``python``, ``platform``, ``cuda``, ``driver``, ``gpus``, ``host`` as [a, b];
    ``packages``: ``added``, ``removed``, ``changed`` (name -> [a, b]); ``vars``.
``command``
    ``a`` and ``b`` (argv lists). A difference only in the seed's value is ``seed``'s.
``metrics``
    tag -> ``{"a", "b", "delta", "seed_noise"?}``, final values (``delta = b - a``).
``speed``
    ``wall_s``, ``steps_per_s``, ``gpu_util_pct``, ``peak_memory_mib`` as ``{"a", "b"}``.
``outcome``
    ``status`` and ``failure`` as [a, b].

**Seed noise.** The *seed peers* of a run are the runs of the same repository
(any commit) and entry point whose config is the same apart from seed-like and
output-like keys (``output_dir``, ``run_name``, …): its seed group
(:mod:`labbook.store.groups`), less the runs that failed, diverged or were killed
or are still running. When such runs exist besides A and B, each metric with a delta gets
``seed_noise``, a verdict at :data:`NOISE_LEVEL` (95%, two-sided) on final values:

* *one pair* (A and B share a config, or one of them is a single run of its
  config): two draws of a config differ by N(0, 2σ²), σ estimated from the ``n``
  peers besides A and B (``mean``, ``std``: theirs), so ``within`` is
  ``|delta| <= t(n-1) * std * √2`` (``interval``; ``p`` the two-sided p-value of
  ``delta / (std √2)``, ``df`` = n - 1, ``test`` ``"pair"``);
* *two groups* (A's and B's configs differ beyond the seed and each has ≥ 2 runs
  with a value, A and B included): Welch's t-test of B's group mean against A's
  (``difference`` of the means, ``interval`` the half-width of its 95% confidence
  interval, ``p``, ``df`` by Welch–Satterthwaite, ``test`` ``"welch"``; ``groups``
  ``a`` and ``b`` with their ``n``, ``mean``, ``std``; ``n``, ``mean``, ``std``:
  all runs, std pooled). ``within``: ``|difference| <= interval``;
* a metric that does not vary over the seeds (σ = 0: ``epoch``, ``step``, an
  ``lr`` schedule) is ``constant: true`` with ``within`` None (no verdict);
* fewer than 2 peers with a finite value (one pair): ``within`` None and a
  ``reason``.

**Speed** differences below the noise of timing are not differences: wall time
and steps/s are compared only when both runs ran for at least
:data:`SPEED_MIN_WALL_S` seconds, and differ when they differ by at least
:data:`SPEED_REL` (relative); GPU utilisation when by :data:`GPU_UTIL_POINTS` points.

:func:`diff_store` wires the engine to a store (peers, repository lookups);
:func:`nearest_earlier` finds the run ``labbook diff A`` compares A with.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, cast

from labbook.analysis.metrics import metric_direction
from labbook.analysis.stats import t_ppf, t_sf2
from labbook.errors import LabbookError, RunNotFound, UsageError
from labbook.model import RunRecord
from labbook.readers.values import finite_number as _number
from labbook.store.configsig import is_seed_key, signature_hash

if TYPE_CHECKING:
    from labbook.store import Store

#: Sections of a diff, in the order they are shown.
SECTIONS = ("config", "seed", "code", "data", "env", "command", "metrics", "speed", "outcome")

#: Wall times shorter than this (seconds) are dominated by start-up and timer resolution.
SPEED_MIN_WALL_S = 10.0
#: Relative difference in wall time or steps/s that counts as a difference.
SPEED_REL = 0.10
#: Difference in mean GPU utilisation (percentage points) that counts.
GPU_UTIL_POINTS = 10.0
#: Two-sided confidence of the seed-noise interval (see the module docstring).
NOISE_LEVEL = 0.95
#: A metric whose σ over the seeds is at most this fraction of its mean is constant.
CONSTANT_REL = 1e-12
#: At most this many commits are listed each way.
COMMITS_MAX = 50
#: At most this many seed-peer candidates are examined per run.
PEERS_MAX = 200
#: Lines of context in the diff of patches.
CONTEXT = 3

_BAD_STATUSES = ("failed", "diverged", "killed")
#: Peers whose final values do not count: gone wrong, or not final yet.
UNCOUNTED = (*_BAD_STATUSES, "running")
#: Config keys that a ``--where`` condition can name as they are.
_PLAIN_KEY = re.compile(r"[^\s=!<>~]+")


# -- small helpers --------------------------------------------------------------------


def _signature(rec: Mapping[str, Any], cache: dict[str, Any]) -> str | None:
    """The config digest of a record (labbook.store.configsig), computed once per run id.

    Light peer records from :func:`seed_peers` carry it as ``config_sig``.
    """
    if "config_sig" in rec:
        return cast("str | None", rec["config_sig"])
    rid = str(rec.get("id"))
    if rid not in cache:
        cache[rid] = signature_hash(rec.get("config") or {})
    return cast("str | None", cache[rid])


def _ts(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _pair_if_differs(a: Any, b: Any) -> list[Any] | None:
    return None if a == b else [a, b]


# -- config, seed, command --------------------------------------------------------------


def _values_differ(x: Any, y: Any) -> bool:
    """``!=`` that also tells ``True`` from ``1`` (JSON does)."""
    return x != y or isinstance(x, bool) != isinstance(y, bool)


def _diff_config(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    changed = {
        k: [va, b[k]]
        for k, va in a.items()
        if k in b and not is_seed_key(k) and _values_differ(va, b[k])
    }
    added = {k: v for k, v in b.items() if k not in a and not is_seed_key(k)}
    removed = {k: v for k, v in a.items() if k not in b and not is_seed_key(k)}
    out: dict[str, Any] = {}
    if changed:
        out["changed"] = changed
    if added:
        out["added"] = added
    if removed:
        out["removed"] = removed
    return out


def _diff_seed(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    sa = a.get("seed") or {"value": None, "source": None}
    sb = b.get("seed") or {"value": None, "source": None}
    ca, cb = a.get("config") or {}, b.get("config") or {}
    shown = {sa.get("source"), sb.get("source")}  # the seeds' own keys are shown as a and b
    keys = {
        k: [ca.get(k), cb.get(k)]
        for k in sorted({k for k in (*ca, *cb) if is_seed_key(k)})
        if _values_differ(ca.get(k), cb.get(k)) and f"config:{k}" not in shown
    }
    if not _values_differ(sa.get("value"), sb.get("value")) and not keys:
        return {}
    out: dict[str, Any] = {"a": sa, "b": sb}
    if keys:
        out["config"] = keys
    return out


def _mask_seed_args(argv: Sequence[str]) -> list[str]:
    """argv with the values of seed options masked (``--seed 3``, ``--seed=3``, ``seed=3``)."""
    out: list[str] = []
    mask_next = False
    for tok in argv:
        if mask_next:
            out.append("<seed>")
            mask_next = False
            continue
        name, eq, _ = tok.lstrip("-+~").partition("=")
        if is_seed_key(name.replace("-", "_")):
            if eq:
                out.append(tok.split("=", 1)[0] + "=<seed>")
                continue
            if tok.startswith("-"):
                mask_next = True
        out.append(tok)
    return out


def _diff_command(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    ca, cb = a.get("command"), b.get("command")
    if ca == cb:
        return {}
    if ca is not None and cb is not None and _mask_seed_args(ca) == _mask_seed_args(cb):
        return {}  # only the seed's value differs: that is the seed section's news
    return {"a": ca, "b": cb}


# -- code ---------------------------------------------------------------------------------


def _split_patch(patch: str) -> dict[str, str]:
    """A ``git diff`` split per file (at ``diff --git`` headers): file -> its part of the text."""
    files: dict[str, str] = {}
    chunks = patch.split("\ndiff --git ")
    for i, chunk in enumerate(chunks):
        if i == 0 and not chunk.startswith("diff --git "):
            if chunk:
                files[""] = chunk + ("\n" if len(chunks) > 1 else "")
            continue
        body = chunk if i == 0 else "diff --git " + chunk
        if i < len(chunks) - 1:
            body += "\n"
        header = body.split("\n", 1)[0]
        m = re.match(r"diff --git a/(.*?) b/(.*)$", header)
        name = m.group(2) if m else header[len("diff --git ") :].strip()
        files[name] = files.get(name, "") + body
    return files


def unified_diff(a: Sequence[str], b: Sequence[str], label_a: str, label_b: str) -> list[str]:
    """A unified diff of two line lists (lines keep their ends), fast for long similar inputs.

    The common head and tail are stripped before matching, so two 5 MB patches
    that differ in a few lines cost a linear scan, not a quadratic match.
    """
    if list(a) == list(b):
        return []
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    changes = [
        (i1 + head, i2 + head, j1 + head, j2 + head)
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, mid_a, mid_b).get_opcodes()
        if tag != "equal"
    ]
    # Hunks: changes closer than 2 * CONTEXT lines share one.
    hunks: list[list[tuple[int, int, int, int]]] = []
    for ch in changes:
        if hunks and ch[0] - hunks[-1][-1][1] <= 2 * CONTEXT:
            hunks[-1].append(ch)
        else:
            hunks.append([ch])
    out = [f"--- {label_a}\n", f"+++ {label_b}\n"]
    for hunk in hunks:
        i1, _, j1, _ = hunk[0]
        _, i2, _, j2 = hunk[-1]
        lo_a = max(0, i1 - CONTEXT)
        lo_b = j1 - (i1 - lo_a)
        hi_a = min(len(a), i2 + CONTEXT)
        hi_b = j2 + (hi_a - i2)
        out.append(f"@@ -{_range(lo_a, hi_a)} +{_range(lo_b, hi_b)} @@\n")
        pos = lo_a
        for c1, c2, d1, d2 in hunk:
            out += [" " + line for line in a[pos:c1]]
            out += ["-" + line for line in a[c1:c2]]
            out += ["+" + line for line in b[d1:d2]]
            pos = c2
        out += [" " + line for line in a[pos:hi_a]]
    return [line if line.endswith("\n") else line + "\n" for line in out]


def _range(lo: int, hi: int) -> str:
    count = hi - lo
    start = lo + 1 if count else lo
    return f"{start}" if count == 1 else f"{start},{count}"


def _diff_patches(pa: str, pb: str) -> dict[str, Any]:
    if pa == pb:
        return {}
    fa, fb = _split_patch(pa), _split_patch(pb)
    out: dict[str, Any] = {
        "files_a_only": sorted(k for k in fa if k not in fb and k),
        "files_b_only": sorted(k for k in fb if k not in fa and k),
        "files_changed": sorted(k for k in fa if k in fb and k and fa[k] != fb[k]),
    }
    lines: list[str] = []
    for name in sorted(set(fa) | set(fb)):
        ta, tb = fa.get(name, ""), fb.get(name, "")
        if ta != tb:
            shown = name or "(patch header)"
            la, lb = ta.splitlines(keepends=True), tb.splitlines(keepends=True)
            lines += unified_diff(la, lb, f"A: {shown}", f"B: {shown}")
    out["diff"] = "".join(lines)
    return out


def _diff_untracked(
    ga: dict[str, Any], gb: dict[str, Any], ignore: Callable[[str], bool] | None
) -> dict[str, Any]:
    ua, ub = set(ga.get("untracked") or []), set(gb.get("untracked") or [])
    added = sorted(ub - ua)
    removed = sorted(ua - ub)
    if ignore is not None and (added or removed):
        added = [n for n in added if not ignore(n)]
        removed = [n for n in removed if not ignore(n)]
    ca = ga.get("untracked_contents") or {}
    cb = gb.get("untracked_contents") or {}
    changed = sorted(n for n in ua & ub if n in ca and n in cb and ca[n] != cb[n])
    if ignore is not None and changed:
        changed = [n for n in changed if not ignore(n)]
    out: dict[str, Any] = {}
    if added:
        out["added"] = added
    if removed:
        out["removed"] = removed
    if changed:
        out["changed"] = changed
        out["diff"] = "".join(
            line
            for n in changed
            for line in unified_diff(
                ca[n].splitlines(keepends=True),
                cb[n].splitlines(keepends=True),
                f"A: {n}",
                f"B: {n}",
            )
        )
    return out


CommitsLookup = Callable[[str, str, str], dict[str, Any]]


def _same_repo(ga: dict[str, Any], gb: dict[str, Any]) -> bool:
    if ga.get("root") and ga.get("root") == gb.get("root"):
        return True
    return bool(ga.get("remote")) and ga.get("remote") == gb.get("remote")


def _diff_code(
    a: RunRecord,
    b: RunRecord,
    commits: CommitsLookup | None,
    ignore_untracked: Callable[[str], bool] | None,
) -> dict[str, Any]:
    ga, gb = a.get("git"), b.get("git")
    if ga is None and gb is None:
        return {}
    if ga is None or gb is None:
        return {
            "commit": [ga and ga.get("commit"), gb and gb.get("commit")],
            "note": f"only {'B' if ga is None else 'A'} has git state",
        }
    out: dict[str, Any] = {}
    same_repo = _same_repo(ga, gb)
    ca, cb = ga.get("commit"), gb.get("commit")
    if ca != cb:
        info: dict[str, Any]
        if not same_repo:
            info = {"available": False, "note": "the runs are in different repositories"}
        elif ca and cb and commits is not None:
            info = commits(ga.get("root") or gb.get("root") or "", ca, cb)
        else:
            info = {"available": False, "note": "commits between them unknown"}
        out["commits"] = info
    patch = _diff_patches(ga.get("diff") or "", gb.get("diff") or "")
    if patch:
        out["patch"] = patch
    untracked = _diff_untracked(ga, gb, ignore_untracked)
    if untracked:
        out["untracked"] = untracked
    if not out:
        return {}
    out["commit"] = [ca, cb]
    if not same_repo:
        out["root"] = [ga.get("root"), gb.get("root")]
    return out


def git_commits_between(root: str, a: str, b: str) -> dict[str, Any]:
    """Commits in ``a..b`` and ``b..a`` with their subjects, read with the git CLI.

    The repository is the one recorded with the runs; when it no longer exists, or
    git cannot read it (or no longer has one of the commits), the answer says so in
    ``note`` with ``available: false``. Nothing is written to the repository.
    """
    if not root or not os.path.isdir(root):
        return {"available": False, "note": f"the repository {root or '?'} no longer exists"}
    if not os.path.exists(os.path.join(root, ".git")):
        return {"available": False, "note": f"{root} is no longer a git repository"}
    exe = shutil.which("git")
    if exe is None:
        return {"available": False, "note": "git is not installed"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1", GIT_OPTIONAL_LOCKS="0")
    out: dict[str, Any] = {"available": True}
    for name, rng in (("a_to_b", f"{a}..{b}"), ("b_to_a", f"{b}..{a}")):
        try:
            proc = subprocess.run(
                [exe, "-C", root, "--no-pager", "-c", "core.fsmonitor=false", "log",
                 "--no-color", f"--max-count={COMMITS_MAX + 1}", "--format=%H%x1f%s", rng, "--"],
                capture_output=True, text=True, errors="replace", env=env, timeout=20, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            return {"available": False, "note": f"git failed: {exc}"}
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["git failed"])[0]
            return {"available": False, "note": f"cannot read commits in {root}: {why}"}
        entries = [line.split("\x1f", 1) for line in proc.stdout.splitlines() if line]
        out[name] = [{"commit": e[0], "subject": e[1] if len(e) > 1 else ""} for e in entries][
            :COMMITS_MAX
        ]
        if len(entries) > COMMITS_MAX:
            out["truncated"] = True
    return out


# -- data, env ----------------------------------------------------------------------------


def _diff_data(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    da, db = a.get("data") or {}, b.get("data") or {}
    changed: dict[str, Any] = {}
    for key in sorted(set(da) & set(db)):
        fa, fb = da[key], db[key]
        what = [
            label
            for label, field in (
                ("path", "path"),
                ("content", "fingerprint"),
                ("size", "size"),
                ("files", "files"),
                ("mtime", "mtime"),
            )
            if fa.get(field) != fb.get(field)
        ]
        if what:
            changed[key] = {"a": fa, "b": fb, "what": what}
    out: dict[str, Any] = {}
    if changed:
        out["changed"] = changed
    added = {k: db[k] for k in sorted(set(db) - set(da))}
    removed = {k: da[k] for k in sorted(set(da) - set(db))}
    if added:
        out["added"] = added
    if removed:
        out["removed"] = removed
    return out


def _driver(rec: RunRecord) -> Any:
    env = rec.get("env") or {}
    gpu = rec.get("gpu") or {}
    return env.get("driver") or (gpu.get("driver") if isinstance(gpu, dict) else None)


def _diff_env(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    ea, eb = a.get("env"), b.get("env")
    out: dict[str, Any] = {}
    if (ea is None) != (eb is None):
        out["recorded"] = [ea is not None, eb is not None]
    ea, eb = ea or {}, eb or {}
    for key in ("python", "platform", "cuda", "gpus"):
        if ea and eb:
            pair = _pair_if_differs(ea.get(key), eb.get(key))
            if pair is not None:
                out[key] = pair
    pair = _pair_if_differs(_driver(a), _driver(b))
    if pair is not None and None not in pair:
        out["driver"] = pair
    pair = _pair_if_differs(a.get("host"), b.get("host"))
    if pair is not None:
        out["host"] = pair
    pa, pb = ea.get("packages") or {}, eb.get("packages") or {}
    if pa and pb:  # both recorded (a record without packages says nothing about them)
        packages: dict[str, Any] = {}
        added = {n: pb[n] for n in sorted(set(pb) - set(pa))}
        removed = {n: pa[n] for n in sorted(set(pa) - set(pb))}
        changed = {n: [pa[n], pb[n]] for n in sorted(set(pa) & set(pb)) if pa[n] != pb[n]}
        for name, value in (("added", added), ("removed", removed), ("changed", changed)):
            if value:
                packages[name] = value
        if packages:
            out["packages"] = packages
    # Variables of the importing process describe the importer, not the run.
    if "importer" not in (ea.get("source"), eb.get("source")):
        va, vb = ea.get("vars") or {}, eb.get("vars") or {}
        vars_changed = {
            k: [va.get(k), vb.get(k)] for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)
        }
        if vars_changed:
            out["vars"] = vars_changed
    return out


# -- metrics, speed, outcome ----------------------------------------------------------------


def _stats(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var


def _finals(group: Sequence[Mapping[str, Any]], tag: str) -> list[float]:
    """The finite final values of ``tag`` over the runs of ``group``."""
    vals = (_number(((r.get("metrics") or {}).get(tag) or {}).get("last")) for r in group)
    return [v for v in vals if v is not None]


def _constant(mean: float, var: float) -> bool:
    """No spread at all: σ is 0, or only the rounding of the mean's sum (``epoch``, ``lr``)."""
    return var == 0.0 or math.sqrt(var) <= CONSTANT_REL * abs(mean)


def _noise(
    n: int,
    mean: float | None,
    std: float | None,
    within: bool | None,
    interval: float | None = None,
    p: float | None = None,
    **more: Any,
) -> dict[str, Any]:
    """A ``seed_noise`` object, its keys in the documented order."""
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "within": within,
        "interval": interval,
        "p": p,
        **more,
    }


def _pair_noise(delta: float, sample: list[float]) -> dict[str, Any]:
    """One pair against the seed noise of ``sample`` (the peers, A and B left out).

    Two draws of one config differ by N(0, 2σ²), and σ estimated from n peers has
    n - 1 degrees of freedom, so ``delta / (s √2)`` is Student's t with n - 1.
    """
    n = len(sample)
    if n < 2:
        peers = f"{n} seed peer{'' if n == 1 else 's'}"
        mean = sum(sample) / n if n else None
        return _noise(n, mean, None, None, reason=f"{peers} with a value besides A and B, 2 needed")
    mean, var = _stats(sample)
    if _constant(mean, var):
        return _noise(n, mean, 0.0, None, df=n - 1, constant=True)
    scale = math.sqrt(2.0 * var)
    interval = t_ppf(0.5 + NOISE_LEVEL / 2, n - 1) * scale
    p = t_sf2(delta / scale, n - 1)
    return _noise(
        n, mean, math.sqrt(var), abs(delta) <= interval, interval, p, df=n - 1, test="pair"
    )


def welch_noise(ga: list[float], gb: list[float]) -> dict[str, Any]:
    """A's seed group against B's (each ≥ 2 runs): Welch's t-test, Welch–Satterthwaite df."""
    na, nb = len(ga), len(gb)
    ma, va = _stats(ga)
    mb, vb = _stats(gb)
    n, mean = na + nb, (sum(ga) + sum(gb)) / (na + nb)
    std = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    groups = {
        "a": {"n": na, "mean": ma, "std": math.sqrt(va)},
        "b": {"n": nb, "mean": mb, "std": math.sqrt(vb)},
    }
    if _constant(ma, va) and _constant(mb, vb):
        return _noise(n, mean, std, None, constant=True, difference=mb - ma, groups=groups)
    sa, sb = va / na, vb / nb
    se = math.sqrt(sa + sb)
    df = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    interval = t_ppf(0.5 + NOISE_LEVEL / 2, df) * se
    p = t_sf2((mb - ma) / se, df)
    within = abs(mb - ma) <= interval
    return _noise(
        n, mean, std, within, interval, p, df=df, test="welch", difference=mb - ma, groups=groups
    )


def verdict(noise: Mapping[str, Any], direction: str | None) -> str:
    """What a Welch comparison of two seed groups says (``noise``: :func:`welch_noise`
    of B's values against A's): ``"b"`` or ``"a"`` (that group is better: the 95%
    interval of B - A leaves out 0, in the metric's ``direction``, ``"min"`` or
    ``"max"``), ``"higher"``/``"lower"`` (B's mean is, for a metric without a
    direction), ``"noise"`` (not distinguishable from seed noise), ``"constant"``
    (no spread at all) or ``"too_few"``."""
    if noise.get("constant"):
        return "constant"
    if noise.get("within") is None:
        return "too_few"
    if noise["within"]:
        return "noise"
    up = noise["difference"] > 0
    if direction is None:
        return "higher" if up else "lower"
    return "b" if up == (direction == "max") else "a"


#: A seed group with fewer runs than this is worth replicating before it is believed.
ENOUGH_SEEDS = 5


def replicate_hint(ref: str, n: int) -> str:
    """The ``labbook replicate`` command that would make a group of ``n`` runs (``ref``
    one of them) tell more: up to :data:`ENOUGH_SEEDS` seeds, past them twice as many."""
    more = ENOUGH_SEEDS - n if n < ENOUGH_SEEDS else n
    return f"labbook replicate {ref} --seeds {more}"


def _seed_noise(
    tag: str,
    delta: float,
    a: RunRecord,
    b: RunRecord,
    peers_a: list[dict[str, Any]],
    peers_b: list[dict[str, Any]] | None,
) -> dict[str, Any] | None:
    """``tag``'s seed noise for a diff (see the module docstring); None without peers."""
    if peers_b is None:  # one config: A and B are two draws of it
        return _pair_noise(delta, _finals(peers_a, tag)) if peers_a else None
    if not peers_a and not peers_b:
        return None
    fa, fb = _finals(peers_a, tag), _finals(peers_b, tag)
    ga, gb = _finals([a], tag) + fa, _finals([b], tag) + fb
    if len(ga) >= 2 and len(gb) >= 2:
        return welch_noise(ga, gb)
    # One side is a single run: does it differ from the other side's runs by more
    # than two runs of that config differ?
    return _pair_noise(delta, fa if len(fa) >= len(fb) else fb)


def _noise_groups(
    a: RunRecord,
    b: RunRecord,
    peers: Sequence[dict[str, Any]],
    sigs: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """A's seed peers and B's, A and B left out; B's is None when A and B share a config."""
    sig_a, sig_b = _signature(a, sigs), _signature(b, sigs)
    by_id: dict[str, dict[str, Any]] = {}
    for p in peers:
        if p.get("id") not in (a.get("id"), b.get("id")):
            by_id.setdefault(p["id"], p)
    peers_a = [p for p in by_id.values() if _signature(p, sigs) == sig_a]
    if sig_a == sig_b:
        return peers_a, None
    return peers_a, [p for p in by_id.values() if _signature(p, sigs) == sig_b]


def _diff_metrics(
    a: RunRecord,
    b: RunRecord,
    peers: Sequence[dict[str, Any]],
    include_same: bool,
    sigs: dict[str, Any],
) -> dict[str, Any]:
    ma: Mapping[str, Any] = a.get("metrics") or {}
    mb: Mapping[str, Any] = b.get("metrics") or {}
    peers_a, peers_b = _noise_groups(a, b, peers, sigs) if peers else ([], None)
    out: dict[str, Any] = {}
    for tag in sorted(set(ma) | set(mb)):
        la = (ma.get(tag) or {}).get("last")
        lb = (mb.get(tag) or {}).get("last")
        if la == lb and not include_same and tag in ma and tag in mb:
            continue
        na, nb = _number(la), _number(lb)
        delta = nb - na if na is not None and nb is not None else None
        entry: dict[str, Any] = {"a": la, "b": lb, "delta": delta}
        if delta is not None:
            noise = _seed_noise(tag, delta, a, b, peers_a, peers_b)
            if noise is not None and noise.get("groups"):  # two seed groups: who is better
                noise["direction"] = metric_direction(tag)
                noise["verdict"] = verdict(noise, noise["direction"])
                if noise["verdict"] == "noise":
                    g = noise["groups"]
                    noise["hint"] = [
                        replicate_hint(str(a["id"]), g["a"]["n"]),
                        replicate_hint(str(b["id"]), g["b"]["n"]),
                    ]
            if noise is not None:
                entry["seed_noise"] = noise
        out[tag] = entry
    return out


def speed_of(rec: RunRecord) -> dict[str, float | None]:
    """Wall time (s), steps/s (largest metric step / wall time), GPU use of one run."""
    start, end = _ts(rec.get("started_at")), _ts(rec.get("ended_at"))
    wall = end - start if start is not None and end is not None and end >= start else None
    steps = [m.get("step") for m in (rec.get("metrics") or {}).values()]
    top = max((s for s in steps if isinstance(s, int)), default=None)
    gpu = rec.get("gpu") if isinstance(rec.get("gpu"), dict) else {}
    return {
        "wall_s": wall,
        "steps_per_s": top / wall if wall and top else None,
        "gpu_util_pct": _number((gpu or {}).get("mean_util_pct")),
        "peak_memory_mib": _number((gpu or {}).get("peak_memory_mib")),
    }


def _rel_differs(x: float | None, y: float | None, rel: float) -> bool:
    if x is None or y is None:
        return False
    return abs(y - x) > rel * max(abs(x), abs(y), 1e-12)


def _diff_speed(a: RunRecord, b: RunRecord, include_same: bool) -> dict[str, Any]:
    sa, sb = speed_of(a), speed_of(b)
    long_enough = (sa["wall_s"] or 0) >= SPEED_MIN_WALL_S and (
        sb["wall_s"] or 0
    ) >= SPEED_MIN_WALL_S
    out: dict[str, Any] = {}
    for key in ("wall_s", "steps_per_s"):
        known = sa[key] is not None or sb[key] is not None
        if known and (include_same or (long_enough and _rel_differs(sa[key], sb[key], SPEED_REL))):
            out[key] = {"a": sa[key], "b": sb[key]}
    ua, ub = sa["gpu_util_pct"], sb["gpu_util_pct"]
    if (ua is not None or ub is not None) and (
        include_same or (ua is not None and ub is not None and abs(ua - ub) >= GPU_UTIL_POINTS)
    ):
        out["gpu_util_pct"] = {"a": ua, "b": ub}
    pa, pb = sa["peak_memory_mib"], sb["peak_memory_mib"]
    if (pa is not None or pb is not None) and (include_same or _rel_differs(pa, pb, SPEED_REL)):
        out["peak_memory_mib"] = {"a": pa, "b": pb}
    return out


def _diff_outcome(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pair = _pair_if_differs(a.get("status"), b.get("status"))
    if pair is not None:
        out["status"] = pair
    pair = _pair_if_differs(a.get("failure"), b.get("failure"))
    if pair is not None:
        out["failure"] = pair
    return out


def _same_summary(section: str, a: RunRecord) -> dict[str, Any]:
    """What an unchanged section holds, for ``--all``."""
    git = a.get("git") or {}
    env = a.get("env") or {}
    summaries: dict[str, dict[str, Any]] = {
        "config": {"keys": len(a.get("config") or {})},
        "seed": {"value": (a.get("seed") or {}).get("value")},
        "code": {"commit": git.get("commit"), "dirty": git.get("dirty")},
        "data": {"paths": sorted(a.get("data") or {})},
        "env": {
            "python": env.get("python"),
            "packages": len(env.get("packages") or {}),
            "host": a.get("host"),
        },
        "command": {"argv": a.get("command")},
        "metrics": {},
        "speed": {},
        "outcome": {"status": a.get("status")},
    }
    summary = summaries[section]
    return {"same": True, **summary}


# -- the engine ---------------------------------------------------------------------------------


def diff_runs(
    a: RunRecord,
    b: RunRecord,
    *,
    peers: list[dict[str, Any]] | None = None,
    sections: Iterable[str] | None = None,
    include_same: bool = False,
    commits: CommitsLookup | None = None,
    ignore_untracked: Callable[[str], bool] | None = None,
    signatures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The difference between runs ``a`` and ``b`` (``--json`` records, heavy).

    ``peers``: records of runs that differ from A or B only in the seed (see
    :func:`seed_peers`); they give metrics their ``seed_noise``. ``sections``:
    only these (default: all). ``include_same``: also sections without a
    difference, as ``{"same": true, …}`` (``labbook diff --all``). ``commits``:
    how to list the commits between two (default: none are listed; the CLI passes
    :func:`git_commits_between`). ``ignore_untracked``: untracked file names that
    are not code (files of other runs inside the repository). ``signatures``: a
    cache of config signatures by run id, shared with :func:`seed_peers`. Pure: no
    I/O of its own.
    """
    sigs = {} if signatures is None else signatures
    wanted = list(SECTIONS) if sections is None else [s for s in SECTIONS if s in set(sections)]
    out: dict[str, Any] = {"a": a.get("id"), "b": b.get("id")}
    for section in wanted:
        if section == "config":
            result = _diff_config(a.get("config") or {}, b.get("config") or {})
        elif section == "seed":
            result = _diff_seed(a, b)
        elif section == "code":
            result = _diff_code(a, b, commits, ignore_untracked)
        elif section == "data":
            result = _diff_data(a, b)
        elif section == "env":
            result = _diff_env(a, b)
        elif section == "command":
            result = _diff_command(a, b)
        elif section == "metrics":
            result = _diff_metrics(a, b, peers or [], include_same, sigs)
        elif section == "speed":
            result = _diff_speed(a, b, include_same)
        else:
            result = _diff_outcome(a, b)
        if result:
            out[section] = result
        elif include_same:
            out[section] = _same_summary(section, a)
    return out


def compare_runs(
    records: Sequence[RunRecord], metrics: Sequence[str] | None = None
) -> dict[str, Any]:
    """``labbook compare``: the params that differ across runs, with their key metrics.

    Returns ``{"runs": [{"id", "name"}], "params": {key: [value per run]},
    "metrics": {tag: [final value per run]}}``; a param a run lacks is None there;
    the seed counts as the param ``seed`` when it differs. ``metrics`` default:
    the most common tags, validation and loss first (as ``labbook ls`` picks them).
    """
    from labbook.analysis.metrics import key_metrics

    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r.get("config") or {}))
    params: dict[str, list[Any]] = {}
    seeds = [(r.get("seed") or {}).get("value") for r in records]
    if any(_values_differ(seeds[0], s) for s in seeds[1:]):
        params["seed"] = seeds
    for key in sorted(keys):
        if key == "seed" and "seed" in params:
            continue
        missing = object()
        values = [(r.get("config") or {}).get(key, missing) for r in records]
        if any(v is missing for v in values) or any(
            _values_differ(values[0], v) for v in values[1:]
        ):
            params[key] = [None if v is missing else v for v in values]
    tags = list(metrics) if metrics else key_metrics(records, limit=5)
    return {
        "runs": [{"id": r.get("id"), "name": r.get("name")} for r in records],
        "params": params,
        "metrics": {
            t: [m.get("last") if (m := r["metrics"].get(t)) else None for r in records]
            for t in tags
        },
    }


def parse_sections(text: str | None) -> list[str] | None:
    """``--only config,code`` -> ["config", "code"]; raises UsageError on unknown names."""
    if not text:
        return None
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise UsageError(
            f"unknown section '{unknown[0]}'", hint=f"sections are: {', '.join(SECTIONS)}"
        )
    return names


# -- the store side: peers, nearest earlier run, untracked files of other runs ---------------------


def _repo_condition(rec: RunRecord) -> tuple[str | None, str | None]:
    git = rec.get("git") or {}
    return git.get("root"), git.get("remote")


def seed_peers(
    store: Store,
    rec: RunRecord,
    *,
    limit: int = PEERS_MAX,
    seen: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Records of runs that differ from ``rec`` only in the seed (see the module docstring).

    The runs of ``rec``'s seed group (labbook.store.groups: same repository —
    git remote, else root; any commit —, entry point and config apart from
    seed-like and output-like keys), status not failed/diverged/killed/running,
    ``rec`` itself left out. At most ``limit`` candidates (newest first) are examined.
    ``seen`` (run id -> record) holds records already loaded, e.g. by the call
    for the other run of a diff; new ones are added to it; ``signatures`` likewise
    caches config signatures by run id.
    """
    cache = {} if seen is None else seen
    sigs = {} if signatures is None else signatures
    digest = _signature(rec, sigs)
    if digest is None:
        return []  # runs without a config cannot be told apart from unrelated ones
    root, remote = _repo_condition(rec)
    own = store.run_row(str(rec.get("id")))
    key = (own or {}).get("group_key")  # its seed group (labbook.store.groups)
    rows = [
        r
        for r in store.runs_with_config_sig(digest, limit=limit)
        if r["id"] != rec.get("id")
        and r["status"] not in UNCOUNTED
        and (
            r.get("group_key") == key
            if key and r.get("group_key")
            else (r["git_root"] == root or (remote and r["git_remote"] == remote))
        )
    ]
    # Peers only lend their final metric values: light records, no 10,000-key configs.
    missing = [r["id"] for r in rows if r["id"] not in cache]
    metrics = store.metric_summaries(missing) if missing else {}
    for r in rows:
        if r["id"] in missing:
            cache[r["id"]] = {
                "id": r["id"],
                "name": r["name"],
                "status": r["status"],
                "config_sig": r["config_sig"],
                "metrics": metrics.get(r["id"], {}),
            }
    return [cache[r["id"]] for r in rows]


def _glob_literal(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def nearest_earlier(store: Store, run_id: str) -> str:
    """The run ``labbook diff A`` compares A with: the nearest earlier run of its repository.

    "Earlier" is the listing order (start time, else record time); "its repository"
    is the same git work tree, or, for a run without git state, the same parent
    directory. Raises RunNotFound when there is none.
    """
    from labbook.store.query import Condition, RunFilter, select_runs

    row = store.run_row(run_id)
    if row is None:
        raise RunNotFound(f"no run with id {run_id}")
    conds: list[Any] = []
    if row["git_root"]:
        conds.append(Condition("git.root", "=", row["git_root"]))
        where = f"repository {row['git_root']}"
    elif row["path"]:
        parent = os.path.dirname(row["path"].split("#", 1)[0])
        conds.append(Condition("path", "~", _glob_literal(parent) + "/*"))
        where = f"directory {parent}"
    else:
        where = "notebook"
    if row["started_at"]:
        conds.append(Condition("started_at", "<=", row["started_at"]))
    rows = select_runs(store, RunFilter(where=conds, limit=PEERS_MAX))
    ids = [r["id"] for r in rows]
    if run_id in ids:
        later = ids[ids.index(run_id) + 1 :]
        if later:
            return str(later[0])
    else:
        key = row["started_at"] or row["created_at"]
        for r in rows:
            if (r["started_at"] or r["created_at"]) <= key:
                return str(r["id"])
    raise RunNotFound(
        f"no run earlier than {run_id} in the same {where}",
        hint="name the run to compare with: labbook diff A B",
    )


def other_runs_files(store: Store, recs: Sequence[RunRecord]) -> Callable[[str], bool]:
    """A predicate: is this untracked file (relative to the repository) inside a run directory?

    Run directories inside a repository are untracked too unless ignored, and a
    later run's import sees the earlier runs' files: they are output, not code.
    """
    from labbook.store.query import resolve

    dirs = {r["path"].split("#", 1)[0] for r in recs if r["path"]}
    roots = {(r.get("git") or {}).get("root") for r in recs} - {None}
    cache: dict[str, bool] = {}

    def inside(run_dir: str, path: str) -> bool:
        return path.startswith(run_dir.rstrip("/") + "/")

    def check(name: str) -> bool:
        if name in cache:
            return cache[name]
        found = False
        for root in roots:
            path = os.path.normpath(os.path.join(str(root), name))
            if any(inside(d, path) for d in dirs):
                found = True
                break
            try:
                row = store.run_row(resolve(store, path))
            except LabbookError:
                continue
            run_dir = (row or {}).get("path") or ""
            if run_dir and run_dir != str(root) and inside(run_dir, path):
                dirs.add(run_dir)
                found = True
                break
        cache[name] = found
        return found

    return check


def diff_store(
    store: Store,
    a_id: str,
    b_id: str,
    *,
    sections: Iterable[str] | None = None,
    include_same: bool = False,
    git: bool = True,
) -> tuple[dict[str, Any], RunRecord, RunRecord]:
    """Diff two runs of a store: ``(diff, record_a, record_b)``.

    Loads both records, their seed peers (when metrics are wanted), reads commits
    between them from the repository (``git=False``: not) and leaves the files of
    other runs out of the untracked files.
    """
    a = store.record(a_id, heavy=True)
    b = store.record(b_id, heavy=True)
    wanted = set(SECTIONS if sections is None else sections)
    sigs: dict[str, dict[str, Any]] = {}
    peers: list[dict[str, Any]] = []
    if "metrics" in wanted:
        seen = {a["id"]: a, b["id"]: b}
        peers = seed_peers(store, a, seen=seen, signatures=sigs)
        if _signature(a, sigs) != _signature(b, sigs):
            peers += seed_peers(store, b, seen=seen, signatures=sigs)
    result = diff_runs(
        a,
        b,
        peers=peers,
        sections=sections,
        include_same=include_same,
        commits=git_commits_between if git else None,
        ignore_untracked=other_runs_files(store, [a, b]),
        signatures=sigs,
    )
    return result, a, b
