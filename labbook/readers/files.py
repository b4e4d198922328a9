"""Safe loaders for the small structured files runs leave behind.

Config files (YAML, JSON, TOML) and metric files (JSONL, CSV, JSON) come from
many writers, and some of them are half-written (the run is still going or died
mid-write), hand-edited, huge, or not what their name says. Every function here
therefore follows the same contract:

* it never raises on bad input and never prints a traceback: it calls
  :func:`labbook.warn.warn` once, naming the file, and returns what it could read
  (``None`` for a document that could not be parsed);
* it never opens anything but a regular file (a FIFO would block forever) and
  never loads more than :data:`MAX_STRUCTURED_BYTES` of a document it must parse
  whole. Line-oriented metric files (JSONL, CSV) are streamed line by line
  instead, whatever their size;
* it never constructs arbitrary objects: YAML is read with a ``SafeLoader``
  subclass that turns framework-specific tags (``!!python/object:…``,
  ``!!python/tuple``, …) into plain dicts, lists and strings;
* it returns plain, JSON-friendly data: dates and times become ISO strings.

Metric readers return ``dict[tag, list[Point]]``. Numeric values (``int`` and
``float``, never ``bool``) become points; ``NaN`` and infinities are kept (they
are how divergence is detected). Keys that index the record (``step``,
``global_step``, ``iter``, ``iteration``, ``epoch``) are used for the step and
are not metrics; a wall-clock column (``time``, ``timestamp``, ``wall_time``,
``walltime``, ``_timestamp``) holding a plausible Unix time becomes
``Point.wall_time`` rather than a metric.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labbook.model import Point
from labbook.readers.contain import outside
from labbook.readers.values import (
    STEP_MAX,
    STEP_MIN,
    BadValues,
    bad_step,
    check_name,
    json_number,
    number_or_text,
    shown_value,
    without_surrogates,
)
from labbook.warn import warn, warn_exception

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the tomli backport (a declared dependency there)
    import tomli as tomllib

__all__ = [
    "FINAL_STEP",
    "MAX_LINE_BYTES",
    "MAX_STRUCTURED_BYTES",
    "MAX_YAML_VALUES",
    "STEP_KEYS",
    "WALL_TIME_KEYS",
    "MetricLines",
    "load_config",
    "load_json",
    "load_toml",
    "load_yaml",
    "read_csv_metrics",
    "read_json_metrics",
    "read_jsonl_metrics",
    "read_text",
]

PathLike = str | os.PathLike[str]

#: Config/metrics documents larger than this are not parsed whole: warn and skip.
MAX_STRUCTURED_BYTES = 64 * 1024 * 1024
#: A single JSONL/CSV line longer than this is skipped as malformed (not held in memory).
MAX_LINE_BYTES = 16 * 1024 * 1024
#: How much of a file's start is checked for NUL bytes to tell binary from text.
SNIFF_BYTES = 8192
#: Step given to a final value that came without a step (``metrics.json`` as
#: ``{"loss": 0.1}``): -1 means "final value, step unknown", and sorts before any
#: real step, so it never pretends to be the first or the last logged step.
FINAL_STEP = -1
#: Record fields that say where in training a record is, in order of preference.
STEP_KEYS = ("step", "global_step", "iter", "iteration", "epoch")
#: Record fields that may hold the wall-clock time of a record.
WALL_TIME_KEYS = ("time", "timestamp", "wall_time", "walltime", "_timestamp")

# --------------------------------------------------------------------------- #
# Opening and reading
# --------------------------------------------------------------------------- #


def _open_regular(path: PathLike) -> Any:
    """Open ``path`` for binary reading if it is a regular file; warn and return None if not.

    Opening is non-blocking so that a FIFO named like a config file cannot hang us;
    the type check is on the opened descriptor, so there is no race with a rename.
    """
    if outside(path):
        return None
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except OSError as exc:
        warn(path, f"cannot read: {exc.strerror or exc}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            warn(path, "cannot read: not a regular file")
            return None
        return os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        warn(path, f"cannot read: {exc.strerror or exc}")
        return None


def _looks_binary(head: bytes) -> bool:
    """True if the first bytes of a (non UTF-16) file contain NUL bytes."""
    return b"\x00" in head[:SNIFF_BYTES]


def _decode(data: bytes) -> str:
    """Decode bytes as UTF-8 (or BOM-marked UTF-16), replacing undecodable bytes."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    text = data.decode("utf-8", errors="replace")
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: PathLike, *, max_bytes: int | None = None) -> str | None:
    """The text of a small file, or None (with one warning) if it cannot be had.

    Returns None if the file is unreadable, not a regular file, larger than
    ``max_bytes`` (default :data:`MAX_STRUCTURED_BYTES`), or binary (NUL bytes in
    its first 8 KiB; UTF-16 files with a byte-order mark are decoded, not refused).
    Undecodable bytes are replaced (U+FFFD), never fatal; a UTF-8 BOM is dropped.
    """
    cap = MAX_STRUCTURED_BYTES if max_bytes is None else max_bytes
    f = _open_regular(path)
    if f is None:
        return None
    try:
        with f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                warn(path, f"too large to parse ({size} bytes > {cap}); skipped")
                return None
            data = f.read(cap + 1)  # the file may have grown since fstat
    except OSError as exc:
        warn(path, f"cannot read: {exc.strerror or exc}")
        return None
    if len(data) > cap:
        warn(path, f"too large to parse (> {cap} bytes); skipped")
        return None
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")) and _looks_binary(data):
        warn(path, "binary data (NUL bytes), not text; skipped")
        return None
    return _decode(data)


# --------------------------------------------------------------------------- #
# Whole documents: JSON, YAML, TOML
# --------------------------------------------------------------------------- #


def _text_or_none(path: PathLike, what: str) -> str | None:
    text = read_text(path)
    if text is None:
        return None
    if not text.strip():
        warn(path, f"empty {what} file")
        return None
    return text


def _plain(obj: Any) -> Any:
    """Dates/times → ISO strings, tuples/sets → lists, bytes → text: JSON-friendly data."""
    if isinstance(obj, dict):
        return {
            (k if isinstance(k, str | int | float | bool) or k is None else str(k)): _plain(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8", errors="replace")
    return obj


def load_json(path: PathLike) -> Any | None:
    """Parse a JSON document; None (with one warning) if unreadable, empty or malformed.

    Bare ``NaN``/``Infinity`` tokens (which Python's and many trackers' writers
    emit) are accepted as floats. A key that is not valid text (a lone surrogate,
    from a ``\\ud800`` escape) is dropped with one warning; lone surrogates in
    string values are replaced by U+FFFD, like undecodable bytes.
    """
    text = _text_or_none(path, "JSON")
    if text is None:
        return None
    try:
        doc = json.loads(text)
        if "\\u" in text:  # \ud800 escapes decode to lone surrogates, which UTF-8 cannot store
            bad = BadValues()
            doc = without_surrogates(doc, bad)
            bad.report(path)
        return doc
    except json.JSONDecodeError as exc:
        warn(path, f"malformed JSON: {exc.msg} (line {exc.lineno} column {exc.colno})")
    except (ValueError, RecursionError) as exc:
        warn(path, f"malformed JSON: {type(exc).__name__}: {exc}")
    return None


_SafeBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present


class _TolerantLoader(_SafeBase):
    """A SafeLoader that reads framework-specific tags as plain data.

    Lightning's ``hparams.yaml``, OmegaConf and wandb dumps may contain tags such
    as ``!!python/tuple`` or ``!!python/object:argparse.Namespace``. The standard
    ``safe_load`` refuses them; ``unsafe_load`` would import and construct
    arbitrary objects. This loader does neither: any tag without a safe
    constructor becomes a dict (mapping), list (sequence) or string (scalar).
    Timestamps are kept as the strings written, so configs stay JSON-friendly.
    """


def _construct_unknown(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    if value == "" and ":" in node.tag:
        # ``!!python/name:torch.nn.ReLU ''``: the name is the information.
        return node.tag.rsplit(":", 1)[1]
    return value


def _construct_timestamp_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TolerantLoader.add_constructor(None, _construct_unknown)
_TolerantLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_text)


def load_yaml(path: PathLike) -> Any | None:
    """Parse a YAML document safely; None (with one warning) if unreadable, empty or malformed.

    Unknown tags (``!!python/object:…``, ``!!python/tuple``, ``!omegaconf…``) are
    read as plain data, never constructed. A file with several documents yields
    the first one (with a warning).
    """
    text = _text_or_none(path, "YAML")
    if text is None:
        return None
    several = False
    try:
        doc = yaml.load(text, Loader=_TolerantLoader)  # a SafeLoader subclass
    except yaml.composer.ComposerError as exc:
        if "single document" not in str(exc):
            warn(path, f"malformed YAML: {_yaml_reason(exc)}")
            return None
        several = True
    except _BAD_YAML as exc:
        warn(path, f"malformed YAML: {_yaml_reason(exc)}")
        return None
    except Exception as exc:  # not bad input: a bug (strict mode raises it)
        warn_exception(path, "cannot read YAML", exc)
        return None
    if several:
        try:
            doc = next(iter(yaml.load_all(text, Loader=_TolerantLoader)))
        except _BAD_YAML as exc:
            warn(path, f"malformed YAML: {_yaml_reason(exc)}")
            return None
        except Exception as exc:
            warn_exception(path, "cannot read YAML", exc)
            return None
        warn(path, "several YAML documents; only the first was read")
    elif doc is None:
        warn(path, "empty YAML document")
        return None
    return _checked_plain(path, doc)


#: What PyYAML raises on a malformed document: its own errors, a constructor's
#: ValueError/TypeError/OverflowError on an odd scalar or key, RecursionError on
#: absurd nesting. Anything else is a bug.
#: What PyYAML raises on malformed input: its own errors, and the plain ones its
#: constructors let out on odd scalars (``!!float`` with no value is an IndexError).
_BAD_YAML = (
    yaml.YAMLError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    UnicodeError,
    IndexError,
    KeyError,
)


#: Most values a YAML document may expand to once its aliases are followed.
MAX_YAML_VALUES = 1_000_000


def _expanded_size(obj: Any, memo: dict[int, int], active: set[int]) -> int:
    """How many values ``obj`` holds with aliases expanded (linear in the unique nodes).

    Raises ValueError for a recursive document (``a: &a [*a]``).
    """
    if not isinstance(obj, dict | list):
        return 1
    key = id(obj)
    if key in memo:
        return memo[key]
    if key in active:
        raise ValueError("recursive YAML document (an alias refers to itself)")
    active.add(key)
    children = obj.values() if isinstance(obj, dict) else obj
    total = 1
    for child in children:
        total += _expanded_size(child, memo, active)
        if total > MAX_YAML_VALUES:
            break
    active.discard(key)
    memo[key] = total
    return total


def _checked_plain(path: PathLike, doc: Any) -> Any | None:
    """Refuse documents that aliases blow up ("billion laughs") or make recursive."""
    try:
        size = _expanded_size(doc, {}, set())
    except (ValueError, RecursionError) as exc:
        warn(path, f"malformed YAML: {exc}")
        return None
    if size > MAX_YAML_VALUES:
        warn(path, f"YAML aliases expand to more than {MAX_YAML_VALUES} values; skipped")
        return None
    try:
        return _plain(doc)
    except RecursionError:
        warn(path, "malformed YAML: nested too deeply")
        return None


def _yaml_reason(exc: BaseException) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1} column {mark.column + 1})"
    return f"{type(exc).__name__}: {exc}"


def load_toml(path: PathLike) -> Any | None:
    """Parse a TOML document; None (with one warning) if unreadable, empty or malformed."""
    text = _text_or_none(path, "TOML")
    if text is None:
        return None
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, or absurd nesting
        warn(path, f"malformed TOML: {exc}")
        return None
    except Exception as exc:  # not bad input: a bug (strict mode raises it)
        warn_exception(path, "cannot read TOML", exc)
        return None
    try:
        return _plain(doc)
    except RecursionError:
        warn(path, "malformed TOML: nested too deeply")
        return None


_CONFIG_LOADERS = {
    ".yaml": load_yaml,
    ".yml": load_yaml,
    ".json": load_json,
    ".toml": load_toml,
}


def load_config(path: PathLike) -> dict[str, Any] | None:
    """A config file by extension (.yaml/.yml/.json/.toml) as a dict, or None.

    A config must be a mapping at the top level: a list or scalar document is
    refused with a warning (None), as are unknown extensions.
    """
    loader = _CONFIG_LOADERS.get(Path(os.fspath(path)).suffix.lower())
    if loader is None:
        warn(path, "unknown config format (expected .yaml, .yml, .json or .toml)")
        return None
    doc = loader(path)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        warn(path, f"config top level is a {type(doc).__name__}, not a mapping; ignored")
        return None
    return doc


# --------------------------------------------------------------------------- #
# Metric records
# --------------------------------------------------------------------------- #


def _as_step(value: Any) -> int | None:
    """An integral step from a record field (an int, or a float with no fraction).

    None also for steps no store can hold (see :func:`values.bad_step`).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if STEP_MIN <= value <= STEP_MAX else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _as_step(int(value))
    return None


def _as_wall_time(value: Any) -> float | None:
    """A plausible Unix time in seconds (or milliseconds, converted); else None."""
    v = json_number(value)
    if v is None or not math.isfinite(v):
        return None
    if 1e9 <= v < 1e11:
        return v
    if 1e12 <= v < 1e14:
        return v / 1000.0
    return None


def _flat_numbers(
    obj: dict[Any, Any], prefix: str, out: dict[str, float], bad: BadValues, where: str
) -> None:
    """Numeric leaves of a (nested) record; nested keys are joined with '/' like TB tags.

    A key that is not valid text, or an integer too large for a float, is counted
    in ``bad`` and skipped.
    """
    for key, value in obj.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if not check_name(name, bad, where):
            continue
        if isinstance(value, dict):
            _flat_numbers(value, name, out, bad, where)
            continue
        num = json_number(value)
        if num is not None:
            out[name] = num
        elif isinstance(value, int) and not isinstance(value, bool):
            bad.add(name, f"{shown_value(value)} is too large for a float; skipped", where)


def _record_points(
    record: dict[Any, Any],
    default_step: int,
    into: dict[str, list[Point]],
    bad: BadValues | None = None,
    where: str = "",
) -> None:
    """Add one record's metrics to ``into``: index keys give the step, time keys the wall time.

    A step field holding a number that cannot be a step (infinite, beyond 64 bits)
    makes the whole record bad: it is counted in ``bad`` and skipped.
    """
    if bad is None:
        bad = BadValues()
    step: int | None = None
    for key in STEP_KEYS:
        if key in record:
            why = bad_step(record[key])
            if why is not None:
                bad.add(key, f"{why}; record skipped", where)
                return
            step = _as_step(record[key])
            if step is not None:
                break
    if step is None:
        step = default_step
    wall: float | None = None
    wall_key = None
    for key in WALL_TIME_KEYS:
        if key in record:
            wall = _as_wall_time(record[key])
            if wall is not None:
                wall_key = key
                break
    values: dict[str, float] = {}
    _flat_numbers(record, "", values, bad, where)
    for name, value in values.items():
        if name in STEP_KEYS or name == wall_key:
            continue
        into.setdefault(name, []).append(Point(step, value, wall))


def _lines(f: Any) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, overlong)`` from a binary file, streaming, never holding a huge line.

    A line longer than :data:`MAX_LINE_BYTES` is consumed in chunks and yielded as
    ``(b"", True)``. Lines keep their trailing newline (if any).
    """
    while True:
        line = f.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = f.readline(MAX_LINE_BYTES)
            yield b"", True
            continue
        yield line, False


def _has_surrogate_escape(raw: bytes) -> bool:
    """Whether a JSON text may decode to lone surrogates (``\\udXXX`` escapes, CESU bytes)."""
    return b"\\u" in raw or b"\xed" in raw


class MetricLines:
    """The complete lines of a ``metrics.jsonl`` or ``metrics.csv`` file, parsed in order.

    One parser for the full read (:func:`read_jsonl_metrics`, :func:`read_csv_metrics`)
    and the live tail (:mod:`labbook.sources.watch.tail`), so that both read the same points
    from the same bytes. :meth:`state` is what a later call needs to go on (the
    physical line number, the CSV header and data row number), JSON-safe.

    A line that cannot be parsed is malformed: bad JSON or not an object, a CSV row
    with the wrong number of fields, and any line holding NUL bytes (a file
    preallocated or zero-filled after a crash). Malformed lines and bad values
    (see :mod:`labbook.readers.values`) are counted and reported by :meth:`report`,
    one warning each for the file.
    """

    def __init__(self, path: PathLike, *, csv: bool, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.path = path
        self.csv = csv
        self.line_no = int(state.get("lines", 0))
        header = state.get("header")
        self.columns: CsvColumns | None = CsvColumns.of(header) if header else None
        self.rows = int(state.get("rows", 0))
        self.malformed = 0
        self.first_malformed: int | None = None
        self.nul = 0
        self.bad = BadValues()

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lines": self.line_no}
        if self.csv:
            out["header"] = self.columns.header if self.columns else None
            out["rows"] = self.rows
        return out

    def overlong(self) -> None:
        """A line longer than MAX_LINE_BYTES was skipped unread."""
        self._malformed(self.line_no)
        self.line_no += 1

    def line(self, raw: bytes, into: dict[str, list[Point]], *, partial: bool = False) -> bool:
        """Parse one physical line; False if it is malformed and ``partial`` (not counted).

        ``partial``: the line is the file's last and has no newline (the writer may
        be in the middle of it); if it does not parse, the caller calls the file
        truncated instead of counting a malformed line.
        """
        index = self.line_no
        self.line_no += 1
        if not raw.strip():
            return True
        if b"\x00" in raw:  # never a record being written: zeros or binary data
            self.nul += 1
            self._malformed(index)
            return True
        if self.csv:
            return self._csv_line(raw, index, into, partial)
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            if partial and record is None:
                return False
            self._malformed(index)
            return True
        if _has_surrogate_escape(raw):
            record = without_surrogates(record, self.bad, where=f"on line {index + 1}")
        _record_points(record, index, into, self.bad, f"on line {index + 1}")
        return True

    def _csv_line(
        self, raw: bytes, index: int, into: dict[str, list[Point]], partial: bool
    ) -> bool:
        row = _csv_row(raw)
        if self.columns is None:
            if not row:
                if partial:
                    return False
                self._malformed(index)
                return True
            self.columns = CsvColumns.of(row)
            return True
        if row is None or len(row) != len(self.columns.header):
            if partial:
                return False
            self._malformed(index)
            return True
        self.columns.add_row(row, self.rows, into)
        self.rows += 1
        return True

    def _malformed(self, index: int) -> None:
        self.malformed += 1
        if self.first_malformed is None:
            self.first_malformed = index + 1

    def report(self) -> None:
        """Warn about malformed lines and bad values seen since the last report."""
        if self.malformed:
            what = "CSV" if self.csv else "JSON"
            plural = "s" if self.malformed != 1 else ""
            nul = (
                f"; {self.nul} of them hold NUL bytes (binary data)"
                if self.nul and self.nul != self.malformed
                else "; they hold NUL bytes (binary data)"
                if self.nul
                else ""
            )
            warn(
                self.path,
                f"{self.malformed} malformed {what} line{plural} skipped "
                f"(first at line {self.first_malformed}){nul}",
            )
        self.malformed, self.first_malformed, self.nul = 0, None, 0
        self.bad.report(self.path)


def _read_lines(path: PathLike, *, csv: bool) -> tuple[dict[str, list[Point]], bool]:
    metrics: dict[str, list[Point]] = {}
    truncated = False
    f = _open_regular(path)
    if f is None:
        return metrics, False
    lines = MetricLines(path, csv=csv)
    try:
        with f:
            for raw, overlong in _lines(f):
                if overlong:
                    lines.overlong()
                elif not lines.line(raw, metrics, partial=not raw.endswith(b"\n")):
                    truncated = True
    except OSError as exc:
        warn(path, f"read error: {exc.strerror or exc}")
    lines.report()
    return metrics, truncated


def read_jsonl_metrics(path: PathLike) -> tuple[dict[str, list[Point]], bool]:
    """Metrics from a JSON-lines file (one object per line), streamed line by line.

    Numeric fields become metrics (nested objects give ``a/b`` tags). The step is
    the first integral one of ``step``/``global_step``/``iter``/``iteration``/
    ``epoch``, else the 0-based physical line number. Returns ``(metrics,
    truncated)``: ``truncated`` is True when the last line has no trailing newline
    and does not parse (the writer died mid-record). Malformed lines elsewhere
    (bad JSON, not an object, NUL bytes, overlong) are skipped with one warning for
    the file counting them; bad values (see :class:`MetricLines`) likewise. Blank
    lines are ignored; an empty file gives ``({}, False)``.
    """
    return _read_lines(path, csv=False)


def _csv_row(raw: bytes) -> list[str] | None:
    text = _decode(raw).rstrip("\r\n")
    try:
        return next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return None


def read_csv_metrics(path: PathLike) -> tuple[dict[str, list[Point]], bool]:
    """Metrics from a CSV file with a header row (e.g. Lightning's ``metrics.csv``), streamed.

    Columns ``step``/``global_step``/``iter``/``iteration``/``epoch`` give the step
    (the first present with an integral value in the row), else the 0-based data
    row number; a wall-time column (``time``, ``timestamp``, …) holding Unix times
    gives ``Point.wall_time``. Every other column is a metric: rows are sparse, so
    an empty cell means "not logged in this row", ``nan``/``inf`` parse as floats,
    and non-numeric cells are ignored. A row with the wrong number of fields or
    with NUL bytes is malformed (one warning for the file), or, as the last line
    without a trailing newline, a sign of truncation (``truncated`` True).
    """
    return _read_lines(path, csv=True)


@dataclass
class CsvColumns:
    """What each column of a metrics CSV is, from its header (shared with the live tail)."""

    header: list[str]
    step_cols: list[int]
    time_cols: list[int]
    metric_cols: list[tuple[int, str]]

    @classmethod
    def of(cls, header_row: list[str]) -> CsvColumns:
        header = [c.strip() for c in header_row]
        lowered = [h.lower() for h in header]
        step_cols = [lowered.index(k) for k in STEP_KEYS if k in lowered]
        time_cols = [lowered.index(k) for k in WALL_TIME_KEYS if k in lowered]
        skip = set(step_cols) | set(time_cols)
        metric_cols = [(i, h) for i, h in enumerate(header) if i not in skip and h]
        return cls(header, step_cols, time_cols, metric_cols)

    def add_row(self, row: list[str], row_no: int, into: dict[str, list[Point]]) -> None:
        """Add one data row's points; the step is its step column's, else ``row_no``."""
        step: int | None = None
        for i in self.step_cols:
            step = _as_step(number_or_text(row[i]))
            if step is not None:
                break
        if step is None:
            step = row_no
        wall: float | None = None
        wall_col = None
        for i in self.time_cols:
            wall = _as_wall_time(number_or_text(row[i]))
            if wall is not None:
                wall_col = i
                break
        if self.time_cols and wall_col is None:
            # A 'time' column that is not a Unix time (e.g. seconds per step): a metric.
            for i in self.time_cols:
                v = number_or_text(row[i])
                if v is not None:
                    into.setdefault(self.header[i], []).append(Point(step, v, None))
        for i, name in self.metric_cols:
            v = number_or_text(row[i])
            if v is not None:
                into.setdefault(name, []).append(Point(step, v, wall))


def read_json_metrics(path: PathLike) -> dict[str, list[Point]]:
    """Metrics from a whole-JSON metrics file, in any of its common shapes.

    * ``{"loss": 0.1, "acc": 0.9}``: final values. The step is the record's own
      ``step``/``global_step``/… field if it has one, else :data:`FINAL_STEP` (-1,
      "final value, step unknown").
    * ``{"loss": [0.5, 0.4, …]}``: a series per key, steps 0, 1, …; items may also
      be ``{"step": s, "value": v}`` objects.
    * ``[{"step": 1, "loss": 0.5}, …]``: a list of records, like JSONL.

    Nested objects give ``a/b`` tags. Non-numeric values and booleans are ignored.
    Returns ``{}`` (after one warning from the loader) if the file cannot be read.
    """
    doc = load_json(path)
    metrics: dict[str, list[Point]] = {}
    bad = BadValues()
    if isinstance(doc, list):
        for index, record in enumerate(doc):
            if isinstance(record, dict):
                _record_points(record, index, metrics, bad, f"in item {index}")
        bad.report(path)
        return metrics
    if not isinstance(doc, dict):
        if doc is not None:
            warn(path, f"metrics JSON is a {type(doc).__name__}, not an object or list; ignored")
        return metrics
    scalars = {k: v for k, v in doc.items() if not isinstance(v, list)}
    _record_points(scalars, FINAL_STEP, metrics, bad)
    for key, value in doc.items():
        if isinstance(value, list):
            points = _series(str(key), value, bad)
            if points:
                metrics[str(key)] = points
    bad.report(path)
    return metrics


def _series(key: str, items: list[Any], bad: BadValues) -> list[Point]:
    points: list[Point] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            v = json_number(item.get("value"))
            if v is None:
                continue
            why = bad_step(item.get("step"))
            if why is not None:
                bad.add(key, f"{why}; item skipped", f"item {index}")
                continue
            step = _as_step(item.get("step"))
            wall = next(
                (w for k in WALL_TIME_KEYS if (w := _as_wall_time(item.get(k))) is not None), None
            )
            points.append(Point(index if step is None else step, v, wall))
        else:
            v = json_number(item)
            if v is not None:
                points.append(Point(index, v, None))
    return points
