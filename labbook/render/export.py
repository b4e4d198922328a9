"""``labbook export``: metric curves in long form, and the run table, as data files.

Curves
------
One row per recorded point: ``run, tag, step, value, wall_time`` (:data:`CURVE_FIELDS`),
runs in the order asked, each run's tags sorted, points in step order.

* **stored** (the default): the series labbook keeps, at most
  :data:`labbook.series.MAX_POINTS` points a tag (first, last, min, max, the first
  non-finite point and each bucket's extremes: the curve's shape, not every step);
* **full** (:func:`run_curves` with ``full=True``): read again from the run's files
  by the recogniser that recorded them, every point; a run whose files are gone
  (or no longer hold it) says so in one warning and gives its stored curves.

:func:`run_curves` is what :meth:`labbook.api.Notebook.curves` returns too.

Formats
-------
* ``csv``: a header, then a row per point; a value that is not finite is ``nan``,
  ``inf`` or ``-inf``; a missing wall time is empty; floats are written exactly
  (Python's shortest repr, which reads back to the same float).
* ``jsonl``: one object a point, ``{"run", "tag", "step", "value", "wall_time"}``; a
  value that is not finite is ``null`` and the line has ``"kind": "nan"|"inf"|"-inf"``
  (JSON has no NaN; the key is absent on finite lines); a missing wall time is null.
* ``parquet`` (pyarrow): columns run (string), tag (string), step (int64), value
  (float64, NaN and infinities as IEEE values), wall_time (float64, null when missing),
  in row groups of :data:`PARQUET_ROWS`.

All three are written as they are read, one run at a time: an export never holds
more than one run's curves (and one parquet row group).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from labbook.errors import LabbookError
from labbook.model import Point
from labbook.series import MAX_POINTS
from labbook.textsafe import json_text
from labbook.warn import warn

if TYPE_CHECKING:
    from labbook.store import Store

#: The columns of a curves export, in order.
CURVE_FIELDS = ("run", "tag", "step", "value", "wall_time")
#: What ``--format`` takes.
EXPORT_FORMATS = ("csv", "jsonl", "parquet")
#: Rows per parquet row group.
PARQUET_ROWS = 65_536

#: One curve: (run id, tag, its points).
Curve = tuple[str, str, Sequence[Point]]

PYARROW_MISSING = "parquet needs pyarrow: pip install 'labbook[parquet]'"


# -- which curves ------------------------------------------------------------------------


def select_tags(available: Iterable[str], wanted: Sequence[str] | None) -> list[str]:
    """The tags of ``available`` asked for by ``wanted`` (None: all, sorted): a tag as
    recorded (``val/loss``), or a metric name that gathers each framework's spelling
    (``val_loss``: ``val/loss``, ``eval_loss``, …, the preferred first)."""
    from labbook.analysis.metrics import canonical_tags

    names = sorted(available)
    if wanted is None:
        return names
    have = set(names)
    chosen: dict[str, None] = {}
    for name in wanted:
        for tag in [name] if name in have else canonical_tags(names, name):
            chosen[tag] = None
    return list(chosen)


def run_curves(
    store: Store, run_id: str, tags: Sequence[str] | None = None, *, full: bool = False
) -> dict[str, list[Point]]:
    """The curves of one run, ``{tag: points}``: the stored ones (at most
    :data:`~labbook.series.MAX_POINTS` points a tag), or with ``full`` every point,
    read again from the run's files (tags only the store has, such as those read
    from the run's printed output, stay as stored). ``tags``: see :func:`select_tags`."""
    series = store.series(run_id)
    if full:
        read = file_curves(store, run_id)
        if read is not None:
            series.update(read)
    return {t: series[t] for t in select_tags(series, tags)}


def iter_curves(
    store: Store, run_ids: Iterable[str], tags: Sequence[str] | None = None, *, full: bool = False
) -> Iterator[Curve]:
    """Every curve of ``run_ids``, a run at a time (see :func:`run_curves`)."""
    for run_id in run_ids:
        for tag, points in run_curves(store, run_id, tags, full=full).items():
            yield run_id, tag, points


def _fallback(where: str, run_id: str, why: str) -> None:
    warn(
        where,
        f"run {run_id}: {why}; exporting its stored curves (at most {MAX_POINTS:,} points a tag)",
    )


def file_curves(store: Store, run_id: str) -> dict[str, list[Point]] | None:
    """Every point of the run's metrics, read again from its files as ``labbook import``
    reads them (the recogniser of its framework first); None, with one warning, when
    its files are gone or no longer hold it."""
    from labbook.recognisers import RECOGNISERS
    from labbook.recognisers.base import cannot_read, claims, list_dir, try_read
    from labbook.store import safe_text

    row = store.run_row(run_id)
    if row is None:
        return None
    path, key = row.get("path") or "", row.get("source_key") or ""
    if key.startswith("command:"):
        _fallback(path or run_id, run_id, "its metrics were read from its output, not from files")
        return None
    try:
        is_dir = bool(path) and Path(path).is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        _fallback(path or run_id, run_id, "its files are gone")
        return None
    d = list_dir(Path(path))
    if d is None:
        _fallback(path, run_id, "its directory cannot be read")
        return None
    framework = row.get("framework")
    ordered = sorted(RECOGNISERS, key=lambda r: r.framework != framework)
    for rec, _weak in claims(d, ordered):
        runs, exc = try_read(rec, d)
        if exc is not None:
            cannot_read(rec, d, exc)
            continue
        for facts in runs:
            if (safe_text(facts.source_key) or facts.source_key) == key:
                return facts.metrics
    _fallback(path, run_id, "its directory no longer holds its files")
    return None


# -- writing -----------------------------------------------------------------------------


def _csv(curves: Iterable[Curve], out: IO[str]) -> int:
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CURVE_FIELDS)
    n = 0
    for run, tag, points in curves:
        # str() of a float is its shortest exact repr, and nan, inf, -inf when not finite
        writer.writerows((run, tag, p.step, p.value, p.wall_time) for p in points)
        n += len(points)
    return n


def _jsonl(curves: Iterable[Curve], out: IO[str]) -> int:
    n = 0
    for run, tag, points in curves:
        head = json_text(json.dumps({"run": run, "tag": tag}, ensure_ascii=False))[:-1]
        head += ', "step": '
        lines = []
        for p in points:
            v, w = p.value, p.wall_time
            wall = "null" if w is None else repr(w)
            if v - v == 0:  # finite (NaN and the infinities give NaN)
                lines.append(f'{head}{p.step}, "value": {v!r}, "wall_time": {wall}}}\n')
            else:
                kind = "nan" if v != v else ("inf" if v > 0 else "-inf")
                lines.append(
                    f'{head}{p.step}, "value": null, "wall_time": {wall}, "kind": "{kind}"}}\n'
                )
        out.write("".join(lines))
        n += len(points)
    return n


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise LabbookError(PYARROW_MISSING) from None
    return pyarrow


def _parquet(curves: Iterable[Curve], path: str) -> int:
    pa = _pyarrow()
    schema = pa.schema(
        [
            ("run", pa.string()),
            ("tag", pa.string()),
            ("step", pa.int64()),
            ("value", pa.float64()),
            ("wall_time", pa.float64()),
        ]
    )
    cols: tuple[list[Any], ...] = ([], [], [], [], [])
    n = 0
    with open(path, "wb") as sink, pa.parquet.ParquetWriter(sink, schema) as writer:

        def flush() -> None:
            if cols[0]:
                writer.write_table(pa.table(list(cols), schema=schema))
                for c in cols:
                    c.clear()

        for run, tag, points in curves:
            k = len(points)
            cols[0].extend([run] * k)
            cols[1].extend([tag] * k)
            cols[2].extend(p.step for p in points)
            cols[3].extend(p.value for p in points)
            cols[4].extend(p.wall_time for p in points)
            n += k
            if len(cols[0]) >= PARQUET_ROWS:
                flush()
        flush()
    return n


def write_curves(curves: Iterable[Curve], fmt: str, output: str | None = None) -> int:
    """Write ``curves`` as ``fmt`` to the file ``output`` (None or ``-``: stdout; parquet
    needs a file); returns the number of rows. A file appears only once complete."""
    if fmt == "parquet":
        _pyarrow()  # before anything is read
        if output in (None, "-"):
            from labbook.errors import UsageError

            raise UsageError("parquet is binary: write it to a file", hint="-o FILE.parquet")
        assert output is not None
        return _to_file(output, lambda tmp: _parquet(curves, tmp))
    writers: dict[str, Callable[[Iterable[Curve], IO[str]], int]] = {"csv": _csv, "jsonl": _jsonl}
    if fmt not in writers:
        raise ValueError(fmt)
    write = writers[fmt]
    if output in (None, "-"):
        n = write(curves, sys.stdout)
        sys.stdout.flush()
        return n

    def to(tmp: str) -> int:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            return write(curves, f)

    assert output is not None
    return _to_file(output, to)


def _to_file(output: str, write: Callable[[str], int]) -> int:
    """``write(tmp)`` to a file beside ``output``, then renamed to it (an export that
    fails halfway leaves no half-written file, and an earlier one stays as it was)."""
    target = Path(output)
    if target.is_dir():
        from labbook.errors import UsageError

        raise UsageError(f"{output} is a directory", hint="-o FILE")
    tmp = str(target.with_name(f".{target.name}.{os.getpid()}.partial"))
    try:
        n = write(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise LabbookError(f"cannot write {output}: {exc.strerror or exc}") from exc
        raise
    return n


# -- the run table -------------------------------------------------------------------------


def write_table(records: Sequence[Mapping[str, Any]], fmt: str, output: str | None = None) -> int:
    """The run table as ``labbook ls --format csv`` has it (one row per run,
    :func:`labbook.render.formats.run_row`), as ``fmt``; jsonl: the ``--json`` records,
    one a line; parquet: the same columns as csv, each typed where its values agree
    (numbers, text, booleans, lists of tags), else as JSON text. Returns the rows."""
    from labbook.render import formats

    rows = [formats.run_row(r) for r in records]
    if fmt == "parquet":
        pa = _pyarrow()
        if output in (None, "-"):
            from labbook.errors import UsageError

            raise UsageError("parquet is binary: write it to a file", hint="-o FILE.parquet")
        assert output is not None

        def to(tmp: str) -> int:
            cols = formats.columns(rows)
            table = pa.table({c: _arrow_column(pa, [r.get(c) for r in rows]) for c in cols})
            with open(tmp, "wb") as sink:
                pa.parquet.write_table(table, sink)
            return len(rows)

        return _to_file(output, to)
    if fmt == "csv":
        text = formats.delimited(rows)
    elif fmt == "jsonl":
        text = formats.jsonl(records, escape=json_text)
    else:
        raise ValueError(fmt)
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return len(rows)

    def write(tmp: str) -> int:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return len(rows)

    assert output is not None
    return _to_file(output, write)


_NONFINITE = frozenset({"nan", "inf", "-inf"})


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    """``values`` as one typed pyarrow array, else (mixed types) as JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.array(values, type=pa.string())
    json_safe_floats = str in kinds and kinds - {str} <= {int, float}  # "inf" for inf
    if json_safe_floats and all(v in _NONFINITE for v in values if isinstance(v, str)):
        values = [float(v) if isinstance(v, str) else v for v in values]
        kinds = {float}
    if kinds <= {int, float}:
        try:
            return pa.array(values, type=pa.int64() if kinds == {int} else pa.float64())
        except (pa.ArrowInvalid, OverflowError):  # an int beyond int64: as text
            pass
    elif kinds in ({str}, {bool}):
        return pa.array(values)
    elif kinds == {list} and all(isinstance(x, str) for v in values if v for x in v):
        return pa.array(values, type=pa.list_(pa.string()))
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values],
        type=pa.string(),
    )
