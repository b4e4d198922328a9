"""Checks on single values read from files: steps, metric values, names.

One bad value costs only itself: a step outside SQLite's 64-bit integers (or not
a finite number), a metric value that is no float (a 400-digit integer), a name
that cannot be stored as UTF-8 (a lone surrogate from a ``\\ud800`` escape) is
skipped, counted in a :class:`BadValues`, and reported in one warning per file
that names the file and the first bad field; the rest of the file is read.

**Numbers.** Every reader, the store and analysis take a value as a number through
one of these, each a rule of its own:

* :func:`number`: strictly a number (an int or a float, never a bool, never text);
  :func:`finite_number` also leaves out NaN and the infinities;
* :func:`json_number`: a number, or the text a JSON writer puts where JSON has no
  number (``"nan"``, ``"Infinity"``, ``"-inf"``, any case): metric records;
* :func:`number_or_text`: a number, or any text that is one (``"0.6934"``,
  ``"1e-3"``, ``"nan"``): printed dicts and CSV cells, where everything is text;
* :func:`sql_number`: what a config value compares as in ``--where``: a number, and a
  bool as 1.0 or 0.0;
* :func:`parse_value`: text typed as a value (``0.01``, ``3``, ``true``, ``'a b'``).

None of them raises: an integer too large for a float is no number (None).
"""

from __future__ import annotations

import math
import os
import re
from operator import attrgetter
from typing import Any

from labbook.model import Point
from labbook.warn import warn

#: SQLite stores 64-bit signed integers: steps must fit.
STEP_MIN = -(2**63)
STEP_MAX = 2**63 - 1


class BadValues:
    """Values skipped while reading one file; :meth:`report` gives one warning."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, field: str, reason: str, where: str = "") -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{shown_name(field)}{' ' + where if where else ''}: {reason}"

    def report(self, path: str | os.PathLike[str] | None) -> None:
        """Warn once about what was skipped (nothing if nothing was), then forget it."""
        if self.count:
            plural = "s" if self.count != 1 else ""
            warn(path, f"skipped {self.count} bad value{plural} (the first: field {self.first})")
        self.count, self.first = 0, None


def shown_name(name: object) -> str:
    """A field name for a warning: quoted, undecodable characters escaped."""
    text = str(name)
    if len(text) > 80:
        text = text[:77] + "..."
    return "'" + text.encode("utf-8", "backslashreplace").decode("utf-8") + "'"


def shown_value(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value))) if abs(value) < 10**4300 else 4300
        if digits > 24:
            return f"a {digits}-digit integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def storable_name(name: object) -> bool:
    """Whether ``name`` is a str that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(name, str):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(name: str, bad: BadValues, where: str = "") -> bool:
    if storable_name(name):
        return True
    bad.add(name, "the name is not valid text (a lone surrogate); skipped", where)
    return False


def bad_step(value: Any) -> str | None:
    """Why ``value``, a number given as a step, cannot be one; None if it can (or is no number).

    Non-integral finite floats (an ``epoch`` of 0.5) are not bad: they are just
    not steps, and the reader falls back to its default step.
    """
    if isinstance(value, bool):
        return None
    number = value
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{shown_value(value)} is not a finite step"
        if not value.is_integer():
            return None
        number = int(value)
    if isinstance(number, int) and not STEP_MIN <= number <= STEP_MAX:
        return f"{shown_value(value)} is out of range for a step (64-bit integers)"
    return None


def as_float(value: int | float) -> float | None:
    """A number as a float; None for an integer too large for one."""
    try:
        return float(value)
    except OverflowError:
        return None


#: A finite number as text (``3``, ``-0.5``, ``.5``, ``1e-3``).
NUMBER_TEXT = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: NaN and the infinities as text, matched without regard to case (``NaN``, ``-Infinity``).
NONFINITE_TEXT = r"[-+]?(?:nan|inf|infinity)"
_NONFINITE_RE = re.compile(rf"(?i:{NONFINITE_TEXT})")
_NUMBER_TEXT_RE = re.compile(rf"{NUMBER_TEXT}|(?i:{NONFINITE_TEXT})")


def number(value: Any) -> float | None:
    """Strictly a number: an int or a float (not a bool, not text) as a float.

    None for anything else and for an integer too large for a float; NaN and the
    infinities are kept (see :func:`finite_number`).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return as_float(value)


def finite_number(value: Any) -> float | None:
    """:func:`number`, and None for NaN and the infinities too."""
    f = number(value)
    return f if f is not None and math.isfinite(f) else None


def json_number(value: Any) -> float | None:
    """A metric value read from JSON: a number (:func:`number`), or the text JSON
    writers put for what JSON cannot hold: ``"nan"``, ``"inf"``, ``"-Infinity"``, …
    (any case, surrounding blanks ignored). Other text is no number."""
    if isinstance(value, str):
        text = value.strip()
        return float(text) if _NONFINITE_RE.fullmatch(text) else None
    return number(value)


def number_or_text(value: Any) -> float | None:
    """A number (:func:`number`), or text that is one: ``"0.6934"``, ``" 1e-3 "``,
    ``"nan"``. Not ``"true"``, not ``"3/10"``, not ``""``: where every value is text
    (a CSV cell, a value in a printed dict)."""
    if isinstance(value, str):
        text = value.strip()
        return float(text) if _NUMBER_TEXT_RE.fullmatch(text) else None
    return number(value)


def sql_number(value: Any) -> float | None:
    """What a config value compares as in ``--where`` (the ``params.num`` column): a
    number, and a bool as 1.0 or 0.0 (``--where use_amp=true``); None for the rest."""
    if isinstance(value, bool):
        return float(value)
    return number(value)


def checked_points(
    tag: str, points: list[Point], bad: BadValues, where: str = ""
) -> list[Point] | None:
    """``points`` without the ones no store can hold; None if the tag itself is bad.

    The common case (every step an int in range, every value a float) is checked
    with C-level passes and returns ``points`` itself.
    """
    if not check_name(tag, bad, where):
        return None
    if not points:
        return points
    steps = list(map(attrgetter("step"), points))
    values = map(attrgetter("value"), points)
    if (
        set(map(type, steps)) <= {int}
        and min(steps) >= STEP_MIN
        and max(steps) <= STEP_MAX
        and set(map(type, values)) <= {float}
    ):
        return points
    kept: list[Point] = []
    for p in points:
        step, value = p.step, p.value
        if isinstance(step, bool) or not isinstance(step, int) or not STEP_MIN <= step <= STEP_MAX:
            bad.add(tag, f"step {shown_value(step)} cannot be stored; point skipped", where)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            bad.add(tag, f"value {shown_value(value)} is not a number; point skipped", where)
            continue
        number = as_float(value)
        if number is None:
            bad.add(tag, f"value {shown_value(value)} is too large for a float; skipped", where)
            continue
        kept.append(p if type(value) is float else Point(step, number, p.wall_time))
    return kept


def without_surrogates(doc: Any, bad: BadValues, prefix: str = "", where: str = "") -> Any:
    """``doc`` (parsed JSON/YAML) with keys that are not valid text dropped (counted in ``bad``)
    and lone surrogates in string values replaced by U+FFFD, as undecodable bytes are."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str) and not storable_name(key):
                bad.add(name, "the key is not valid text (a lone surrogate); skipped", where)
                continue
            out[key] = without_surrogates(value, bad, name, where)
        return out
    if isinstance(doc, list):
        return [without_surrogates(v, bad, f"{prefix}[{i}]", where) for i, v in enumerate(doc)]
    if isinstance(doc, str) and not storable_name(doc):
        return doc.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return doc


def parse_value(text: str) -> Any:
    """A value typed as text (a ``--where`` value, an MLflow param): ``0.01`` → float,
    ``3`` → int, ``true`` → True, ``null`` → None, ``'a b'`` → str."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t
