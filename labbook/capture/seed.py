"""The seed a run used, and where it was found.

A seed can hide in several places: the run's config (``seed``, ``trainer.seed``,
Lightning CLI's ``seed_everything``), its command line (``--seed 42``, Hydra's
``seed=42``), Hydra's ``overrides.yaml``, or ``PL_GLOBAL_SEED`` which Lightning's
``seed_everything`` exports.  Each finder returns a :class:`~labbook.model.Seed`
with a ``source`` naming the place (``"config:trainer.seed"``, ``"argv:--seed"``,
``"hydra:overrides"``, ``"env:PL_GLOBAL_SEED"``) or None; :func:`pick_seed` takes the
first one found, in the caller's order of trust.

A seed no place held is *not set*; a seed that a place which could hold it
failed to give (an unreadable or corrupt config, a wandb log torn before its
config) is *unknown* (``Seed.known`` False, :func:`seed_unreadable`), and
:func:`pick_seed` keeps it unknown unless another place has the value.

Values become ints when they are integers (``"42"``, ``42.0``) and are otherwise
kept as given (``"1,2,3"`` from a Hydra sweep); ``None``, ``"null"``, ``"none"``,
``"~"``, ``""`` and booleans mean "no seed here".
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from labbook.model import Seed
from labbook.warn import warn_exception

#: Names (the last component of a dotted config key) that hold a seed.
SEED_KEYS = (
    "seed",
    "random_seed",
    "rng_seed",
    "global_seed",
    "manual_seed",
    "data_seed",
    "torch_seed",
    "np_seed",
    "numpy_seed",
    "random_state",
)

#: Lightning CLI's top-level key; an int there is the seed (``true`` means random).
_LIGHTNING_KEY = "seed_everything"
#: Preference among keys at the same depth: the order of SEED_KEYS, with
#: ``seed_everything`` right after ``seed``.
SEED_RANK = {
    "seed": 0.0,
    _LIGHTNING_KEY: 0.5,
    **{k: float(i) for i, k in enumerate(SEED_KEYS) if i},
}
_NULLS = ("", "null", "none", "~", "nil")


def parse_seed_value(value: Any) -> Any:
    """A seed value as recorded: int when integral, None when "not set", else as given."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return None if math.isnan(value) else value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1].strip()
        if text.lower() in _NULLS or text.lower() in ("true", "false"):
            return None
        try:
            return int(text, 10)
        except ValueError:
            pass
        try:
            as_float = float(text)
        except ValueError:
            return text
        if math.isfinite(as_float) and as_float.is_integer() and "." in text:
            return int(as_float)
        return text
    if isinstance(value, (dict, list, tuple, set)):
        return None  # a container is not a seed
    return value


def _seed_name(key: str) -> str | None:
    """The seed name a config/override key ends with, or None."""
    last = key.rsplit(".", 1)[-1].strip().lower()
    if last in SEED_KEYS or last == _LIGHTNING_KEY:
        return last
    return None


def seed_from_config(config_flat: Mapping[str, Any]) -> Seed | None:
    """The seed in a flattened (dotted-key) config, or None.

    Any key whose last component is one of :data:`SEED_KEYS` counts, at any depth,
    as does ``seed_everything`` when it holds an int.  A top-level ``seed`` wins;
    otherwise the shortest path, then the order of :data:`SEED_KEYS`, then the
    key's spelling.  Source: ``"config:<dotted.key>"``.
    """
    if not isinstance(config_flat, Mapping):
        return None
    best: tuple[int, float, str] | None = None
    found: Seed | None = None
    try:
        items = list(config_flat.items())
    except Exception as exc:  # a broken mapping: no seed rather than a failure
        warn_exception(None, "config not searched for a seed", exc, quiet=True)
        return None
    for key, raw in items:
        if not isinstance(key, str):
            continue
        name = _seed_name(key)
        if name is None:
            continue
        value = parse_seed_value(raw)
        if value is None or (name == _LIGHTNING_KEY and not isinstance(value, int)):
            continue
        depth = 0 if key == "seed" else key.count(".") + 1
        rank = (depth, SEED_RANK.get(name, 99.0), key)
        if best is None or rank < best:
            best = rank
            found = Seed(value=value, source=f"config:{key}")
    return found


def _override_parts(item: str) -> tuple[str, str] | None:
    """``+trainer.seed=3`` -> ("trainer.seed", "3"); deletions (``~seed``) -> None."""
    if "=" not in item:
        return None
    key, value = item.split("=", 1)
    key = key.strip()
    if key.startswith("~"):
        return None
    key = key.lstrip("+")
    if "@" in key:  # hydra package syntax: key@pkg=value
        key = key.split("@", 1)[0]
    return key, value


def seed_from_overrides(overrides: list[str]) -> Seed | None:
    """The seed in a Hydra overrides list (``.hydra/overrides.yaml``), or None.

    ``seed=3``, ``+seed=3``, ``++seed=3`` and nested ``trainer.seed=3`` count; the
    shortest key wins, and for the same key the last override.  Source:
    ``"hydra:overrides"``.
    """
    if not isinstance(overrides, (list, tuple)):
        return None
    best: tuple[int, float] | None = None
    found: Seed | None = None
    for item in overrides:
        if not isinstance(item, str):
            continue
        parts = _override_parts(item)
        if parts is None:
            continue
        key, raw = parts
        name = _seed_name(key)
        if name is None:
            continue
        value = parse_seed_value(raw)
        if value is None or (name == _LIGHTNING_KEY and not isinstance(value, int)):
            continue
        rank = (key.count("."), SEED_RANK.get(name, 99.0))
        if best is None or rank <= best:
            best = rank
            found = Seed(value=value, source="hydra:overrides")
    return found


def _flag_name(flag: str) -> str | None:
    """``--random-seed`` -> "random_seed" when it names a seed."""
    if not flag.startswith("--"):
        return None
    name = flag[2:].replace("-", "_").lower()
    if name in SEED_KEYS or name == _LIGHTNING_KEY:
        return name
    return None


def _is_int(text: str) -> bool:
    try:
        int(text, 10)
    except ValueError:
        return False
    return True


def seed_from_argv(argv: list[str]) -> Seed | None:
    """The seed on a command line, or None.

    Flags ``--seed 42``, ``--seed=42``, ``--random-seed``/``--random_seed`` and the
    other :data:`SEED_KEYS` (the last occurrence wins, as with argparse; source
    ``"argv:--seed"`` as spelled) come first; then Hydra overrides among the
    arguments (``seed=42``, ``+seed=42``; source ``"hydra:overrides"``).  A value
    that starts with ``-`` is taken only if it is a negative integer.
    """
    if not isinstance(argv, (list, tuple)):
        return None
    args = [a for a in argv if isinstance(a, str)]
    flag_seed: Seed | None = None
    overrides: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            continue
        if arg.startswith("--"):
            flag, eq, inline = arg.partition("=")
            name = _flag_name(flag)
            if name is None:
                continue
            if eq:
                raw: str | None = inline
            elif i < len(args) and (not args[i].startswith("-") or _is_int(args[i])):
                raw = args[i]
                i += 1
            else:
                raw = None
            value = parse_seed_value(raw)
            if value is not None and (name != _LIGHTNING_KEY or isinstance(value, int)):
                flag_seed = Seed(value=value, source=f"argv:{flag}")
        elif not arg.startswith("-") and "=" in arg:
            overrides.append(arg)
    if flag_seed is not None:
        return flag_seed
    return seed_from_overrides(overrides)


def seed_from_env(environ: Mapping[str, str]) -> Seed | None:
    """``PL_GLOBAL_SEED`` (exported by Lightning's ``seed_everything``), or None."""
    try:
        raw = environ.get("PL_GLOBAL_SEED")
    except Exception as exc:  # a broken mapping: no seed rather than a failure
        warn_exception(None, "environment not searched for a seed", exc, quiet=True)
        return None
    value = parse_seed_value(raw)
    if value is None:
        return None
    return Seed(value=value, source="env:PL_GLOBAL_SEED")


def pick_seed(*candidates: Seed | None) -> Seed:
    """The first candidate that has a value; else *unknown* when one of them is
    (:meth:`Seed.unknown`: a place that could hold the seed could not be read);
    else ``Seed(None, None)``, *not set*."""
    unknown = False
    for cand in candidates:
        if cand is None:
            continue
        if cand.value is not None:
            return cand
        unknown = unknown or not cand.known
    return Seed.unknown() if unknown else Seed(value=None, source=None)


def seed_unreadable(path: str | os.PathLike[str], loaded: Any) -> Seed | None:
    """:meth:`Seed.unknown` when the file at ``path`` could hold a seed but was not read.

    ``loaded`` is what its reader returned (``load_yaml``, ``load_json``, …, which
    warn and return None for a file they cannot read or parse). A file that is
    there, not empty, and read as None is unreadable or corrupt: its seed is
    unknown. A missing or empty file, or one that was read, gives None (no claim).
    """
    if loaded is not None:
        return None
    try:
        size = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return None  # not there: it holds nothing
    except OSError:
        return Seed.unknown()  # there, perhaps, but not even its size can be read
    except ValueError:  # a path no file system takes (NUL byte)
        return None
    return Seed.unknown() if size > 0 else None
