"""What a plain training log tells: config, seed, metrics, outcome.

Many training scripts only print. This module reads such a log (a Hydra job log,
``train.log``, wandb's ``output.log``, a captured stdout, any ``*.log``) and
recovers what it states, and nothing it does not:

* a **config** printed as an argparse ``Namespace(...)``, a Python dict literal
  or a JSON object (parsed with ``ast``/``json``, never ``eval``);
* the **seed** (``Seed set to 1234``, ``seed=42``, ``random seed 42``, …);
* **metrics** from lines that consist of name/value pairs (``epoch=3 step=32
  train_loss=0.067``, ``step 100: train loss 2.31, val loss 2.40``, ``loss:
  0.23``, Keras ``Epoch 2/10 - loss: 0.34 - accuracy: 0.88``, the dicts HF
  Trainer prints). Prose that merely contains numbers gives nothing;
* the **failure** (:func:`classify_failure`), the last **traceback**, a
  framework **end marker**, whether the file ends mid-line, and its **tail**.

Logs can be gigabytes: :func:`read_log` never reads one whole. It reads a head
window and a tail window (config and seed are printed at the start; failure and
final metrics at the end) and parses metrics from both; what lies between is
not read. Bytes that are not UTF-8 are replaced, and ``\\r``-redrawn progress
bars (tqdm) are reduced to what the terminal last showed.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import signal as _signal
import stat
import sysconfig
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labbook.model import Failure, Point, Seed, flatten
from labbook.readers.contain import outside
from labbook.readers.values import NONFINITE_TEXT, NUMBER_TEXT, number_or_text
from labbook.warn import warn

__all__ = [
    "HEAD_BYTES",
    "TAIL_BYTES",
    "LogFacts",
    "OutputReader",
    "classify_failure",
    "clean_lines",
    "find_traceback",
    "parse_metric_line",
    "read_log",
]

#: Bytes read from the start of a log (config, seed, early metrics).
HEAD_BYTES = 8 * 1024 * 1024
#: Bytes read from the end of a log (failure, final metrics).
TAIL_BYTES = 8 * 1024 * 1024
#: ``LogFacts.tail`` keeps at most this many lines …
TAIL_LINES = 200
#: … and at most this many characters.
TAIL_CHARS = 64 * 1024
#: A failure is looked for in this much of the end of the text.
CLASSIFY_CHARS = 256 * 1024
#: Longest traceback kept (the end is kept: it holds the exception).
TRACEBACK_CHARS = 64 * 1024
#: Lines longer than this are not parsed as metric lines (config dicts may be longer).
MAX_METRIC_LINE = 4096
MAX_CONFIG_LINE = 1024 * 1024
#: A bare dict (no "config"/"args" word before it) counts as config only this early.
BARE_CONFIG_LINES = 500
#: Share of control bytes in the first 8 KiB above which a file is binary, not a log.
BINARY_RATIO = 0.10
#: Longest one-line failure message.
MESSAGE_CHARS = 300


@dataclass
class LogFacts:
    """What one log file states. Empty fields mean the log does not say."""

    #: Flattened (dotted keys) config printed in the log.
    config: dict[str, Any] = field(default_factory=dict)
    #: tag -> points in log order. Steps: see :func:`read_log`.
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    seed: Seed | None = None
    failure: Failure | None = None
    #: The last Python traceback block (with its chained parts), if any.
    traceback: str | None = None
    #: A framework printed that training completed.
    finished_marker: bool = False
    #: The file does not end with a newline (its last line is partial).
    truncated: bool = False
    #: The last lines (at most TAIL_LINES lines / TAIL_CHARS characters), cleaned.
    tail: str = ""


# --------------------------------------------------------------------------- #
# Reading the windows
# --------------------------------------------------------------------------- #


def _read_at(fd: int, offset: int, length: int) -> bytes:
    """Read up to ``length`` bytes at ``offset`` (os.read in a loop: short reads happen)."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks: list[bytes] = []
    left = length
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _is_binary(head: bytes) -> bool:
    """Whether a file's first bytes are binary data rather than (non UTF-16) text.

    Long runs of NUL bytes are ignored: they are the zero-filled gaps a crash can
    leave in a log, not a sign of binary content. Scattered NULs, or many other
    control bytes, are.
    """
    sample = _NUL_RUN.sub(b"", head[:8192])
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 11, 12, 13, 8, 27))
    return control / len(sample) > BINARY_RATIO


_NUL_RUN = re.compile(rb"\x00{64,}")


def _utf16_codec(head: bytes) -> str | None:
    if head.startswith(b"\xff\xfe"):
        return "utf-16-le"
    if head.startswith(b"\xfe\xff"):
        return "utf-16-be"
    return None


def _decode(data: bytes, codec: str | None) -> str:
    text = data.decode(codec or "utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\x00", "")


def _windows(
    path: str | os.PathLike[str], head_bytes: int, tail_bytes: int
) -> tuple[str, str | None, bool] | None:
    """``(head_text, tail_text or None, ends_with_newline)``; None (warned) if unreadable.

    For a file no bigger than ``head_bytes + tail_bytes`` the whole file is read
    once and returned as the head. Otherwise the head is cut after its last
    newline and the tail starts at its first whole line, so both hold whole lines
    (text after a run of NUL bytes — the zero-filled gap a crash can leave — counts
    as a line start).
    """
    if outside(path):
        return None
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except OSError as exc:
        warn(path, f"cannot read log: {exc.strerror or exc}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            warn(path, "cannot read log: not a regular file")
            return None
        size = st.st_size
        tail: bytes | None = None
        if size <= head_bytes + tail_bytes:
            head = _read_at(fd, 0, size)
        else:
            head = _read_at(fd, 0, head_bytes)
            start = size - tail_bytes
            if _utf16_codec(head):
                start -= start % 2
            else:
                start -= 1  # one byte more, to see whether the window starts a line
            tail = _read_at(fd, start, size - start)
    except OSError as exc:
        warn(path, f"cannot read log: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)
    codec = _utf16_codec(head)
    if codec is None and _is_binary(head):
        warn(path, "binary data, not a text log; skipped")
        return None
    last = tail if tail is not None else head
    if codec:
        ends_nl = last.endswith(b"\n\x00" if codec == "utf-16-le" else b"\x00\n")
    else:
        ends_nl = last.endswith(b"\n")
    if tail is None:
        return _decode(head, codec), None, ends_nl or not head
    if codec:
        head_text = _decode(head, codec)
        tail_text = _decode(tail, codec)
        nl = tail_text.find("\n")
        tail_text = tail_text[nl + 1 :] if nl >= 0 else tail_text
    else:
        cut = head.rfind(b"\n")
        head_text = _decode(head[: cut + 1] if cut >= 0 else head, None)
        nl = tail.find(b"\n")
        if nl >= 0:
            first = tail[:nl]
            zero = first.rfind(b"\x00")
            # tail[0] is the byte before the window: a newline there means a whole line.
            tail = tail[1:] if nl == 0 else tail[zero + 1 :] if zero >= 0 else tail[nl + 1 :]
        tail_text = _decode(tail, None)
    return head_text, tail_text, ends_nl


# --------------------------------------------------------------------------- #
# Line cleaning
# --------------------------------------------------------------------------- #

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _clean(line: str) -> str:
    """What a terminal would show of one physical line: ANSI codes removed, and of
    ``\\r``-separated redraws (progress bars) only the last non-blank one."""
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if "\r" in line:
        segments = [s for s in line.split("\r") if s.strip()]
        line = segments[-1] if segments else ""
    if "\x08" in line:
        line = line.replace("\x08", "")
    return line.rstrip()


def clean_lines(text: str) -> list[str]:
    """Split text into cleaned lines (see :func:`_clean`); a final newline adds no line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [_clean(line) for line in lines]


_HEADER = re.compile(
    r"""(?:
        \[rank\d+\]:\s*                                                  # torchrun
      | \(\w[\w.]*\s+pid=\d+(?:,\s*ip=[\d.]+)?\)\s*                       # ray workers
      | \d{4}[-/]\d{2}[-/]\d{2}[ T_]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\s*
      | \d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s+
      | [IWEF]\d{4}\s\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\S+:\d+\]\s*          # glog / absl
      | (?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL):[\w.<>-]*:\s*  # logging.basicConfig
      | (?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b\s*(?:[-:|]\s*)?(?:[\w<>]+(?:\.[\w<>]+)+:\s+)?
      | [\w.<>]+\s+-\s+(?=(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b)   # name - LEVEL -
      | \[(?!\s*(?i:epoch|step|iter|iteration)\b)[^\]\n]{0,80}\]\s*     # [time][name][LEVEL]
      | [-|:*>]\s+
    )""",
    re.VERBOSE,
)


def _strip_header(line: str) -> str:
    """The message of a log line: timestamps, levels, logger names and rank prefixes removed."""
    s = line.lstrip()
    for _ in range(8):
        m = _HEADER.match(s)
        if not m or not m.end():
            break
        s = s[m.end() :]
    return s


# --------------------------------------------------------------------------- #
# Metric lines
# --------------------------------------------------------------------------- #

#: Names that say where in training a line is; used for the step, never metrics.
_INDEX_NAMES = {
    "step": "step",
    "global_step": "step",
    "iter": "step",
    "iteration": "step",
    "epoch": "epoch",
}
#: Names that are counters/ids, not metrics, and not steps either.
_NOT_METRICS = frozenset(
    {
        "batch",
        "batch_idx",
        "v_num",
        "seed",
        "pid",
        "rank",
        "local_rank",
        "world_size",
        "num_workers",
        "batch_size",
        "gpu",
        "gpus",
        "device",
        "port",
        "version",
    }
)
_METRIC_PART = re.compile(
    r"(?:\w*loss(?:es)?|acc|accuracy|top\d+|ppl|perplexity|f1|auc|auroc|auprc|bleu\d*|rouge\w*"
    r"|score|err|error|mse|mae|rmse|nll|bpd|bpc|reward|rewards|gnorm|precision|recall|iou|miou"
    r"|map\d*|dice|wer|cer|kl|psnr|ssim|fid|metric)"
)
#: Cheap pre-filter (on the lower-cased message): a metric line names one of these.
_METRIC_HINT = re.compile(
    r"loss|acc|top\d|ppl|perplex|f1|auc|bleu|rouge|score|err|mse|mae|nll|bpd|bpc|reward|norm"
    r"|precision|recall|iou|map|dice|wer|cer|kl|psnr|ssim|fid|metric|step|epoch|iter"
)
_NUM = NUMBER_TEXT
_NONFINITE = NONFINITE_TEXT
_NUM_RE = re.compile(rf"(?:{_NUM}|(?i:{_NONFINITE}))(?:/\d+)?")
_WORD_RE = re.compile(r"[A-Za-z_][\w.\-/@]*")
_KV_RE = re.compile(r"([A-Za-z_][\w.\-/@]*)[=:](.+)")
_SEP_CHUNK = re.compile(r"[,;|/•·–—-]+")  # dashes and bullets as loggers write them
_INDEX_IN_TEXT = re.compile(
    r"(?i)\b(epoch|step|iter|iteration|global_step)\b\s*[:=#]?\s*\[?(\d+)(?![\d.])"
)
_BRACKETED_INDEX = re.compile(
    r"(?i)\[\s*((?:epoch|step|iter|iteration)\s*[:=]?\s*\d+(?:\s*/\s*\d+)?)\s*\]"
)
_BRACKET_INDEX = re.compile(
    r"(?i)\b(epoch|step|iter|iteration|batch)\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]"
)

#: Units a printed value may carry (``12.3ms``, ``1.5s``, ``98%``, ``5ms/step``, ``3000M``):
#: the number is kept as printed, without the unit (no conversion).
_UNIT = (
    r"(?:%|(?:ns|us|µs|ms|s|sec|secs|min|h|hr|x|it|its|samples|tok|toks|tokens|img|imgs"
    r"|K|M|G|T|B|k|KB|MB|GB|TB|KiB|MiB|GiB|TiB)(?:/(?:s|sec|it|step|batch|iter|iteration|ex))?"
    r"|/s|/sec)"
)
_UNIT_NUM_RE = re.compile(rf"({_NUM})({_UNIT})")
_KV_ITEM = rf"[A-Za-z_][\w.\-/@]*=(?:{_NUM}|(?i:{_NONFINITE}))(?:/\d+)?"
_KV_LINE = re.compile(rf"(?:{_KV_ITEM}[,;]?\s+)*{_KV_ITEM}[,;]?")
_KV_PAIR = re.compile(rf"([A-Za-z_][\w.\-/@]*)=((?:{_NUM}|(?i:{_NONFINITE}))(?:/\d+)?)")

#: Words that make a "name value" pair prose rather than a metric name.
_PROSE_WORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "from",
        "in",
        "into",
        "at",
        "on",
        "for",
        "by",
        "with",
        "over",
        "than",
        "per",
        "after",
        "before",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "did",
        "not",
        "so",
        "far",
        "took",
        "takes",
        "improved",
        "saving",
        "became",
        "becomes",
        "become",
    }
)

# token kinds
_SEP, _COLON, _EQ, _NUMK, _WORDK, _KVK, _OTHER = range(7)


def _tokens(msg: str) -> list[tuple[int, str, str]]:
    """Tokens ``(kind, text, extra)`` of a message; WORD's extra is ':' when it ends with one."""
    out: list[tuple[int, str, str]] = []
    for chunk in msg.split():
        trailing: list[str] = []
        while chunk and chunk[-1] in ",;|":
            trailing.append(chunk[-1])
            chunk = chunk[:-1]
        if not chunk:
            out.append((_SEP, ",", ""))
            continue
        if _SEP_CHUNK.fullmatch(chunk):
            out.append((_SEP, chunk, ""))
        elif chunk == ":":
            out.append((_COLON, ":", ""))
        elif chunk == "=":
            out.append((_EQ, "=", ""))
        elif _NUM_RE.fullmatch(chunk):
            out.append((_NUMK, chunk, ""))
        elif chunk.endswith(":") and _NUM_RE.fullmatch(chunk[:-1]):
            out.append((_NUMK, chunk[:-1], ""))
            out.append((_COLON, ":", ""))
        elif (u := _UNIT_NUM_RE.fullmatch(chunk)) is not None:
            out.append((_NUMK, u.group(1), ""))
        elif _WORD_RE.fullmatch(chunk):
            out.append((_WORDK, chunk, ""))
        elif chunk.endswith(":") and _WORD_RE.fullmatch(chunk[:-1]):
            out.append((_WORDK, chunk[:-1], ":"))
        else:
            m = _KV_RE.fullmatch(chunk)
            if m and _NUM_RE.fullmatch(m.group(2)):
                out.append((_KVK, m.group(1), m.group(2)))
            elif m and (u := _UNIT_NUM_RE.fullmatch(m.group(2))) is not None:
                out.append((_KVK, m.group(1), u.group(1)))
            else:
                out.append((_OTHER, chunk, ""))
        if trailing:
            out.append((_SEP, ",", ""))
    return out


def _value(text: str) -> tuple[float, int | None] | None:
    """A numeric token as (value, total) — total is N in 'k/N' (only for index names)."""
    total = None
    if "/" in text:
        text, _, tot = text.partition("/")
        total = int(tot)
    try:
        return float(text), total
    except (ValueError, OverflowError):
        return None


def _pairs_suffix(
    toks: Sequence[tuple[int, str, str]],
) -> tuple[int, list[tuple[str, str, bool]]] | None:
    """Parse name/value pairs right to left; the longest suffix that parses and starts at
    a boundary (line start, separator, or a word ending in ':').

    Returns ``(start, pairs)`` with pairs ``(name, value_text, explicit_sep)`` in line order.
    """
    i = len(toks) - 1
    pairs: list[tuple[str, str, bool]] = []
    best: tuple[int, list[tuple[str, str, bool]]] | None = None

    def boundary(j: int) -> bool:
        return j < 0 or toks[j][0] in (_SEP, _COLON) or (toks[j][0] == _WORDK and toks[j][2] == ":")

    while i >= 0:
        while i >= 0 and toks[i][0] in (_SEP, _COLON):
            i -= 1
        if i < 0:
            best = (0, list(reversed(pairs)))
            break
        kind, text, extra = toks[i]
        if kind == _KVK:
            pairs.append((text, extra, True))
            i -= 1
        elif kind == _NUMK:
            value = text
            i -= 1
            explicit = False
            if i >= 0 and toks[i][0] in (_COLON, _EQ):
                explicit = True
                i -= 1
            words: list[str] = []
            while i >= 0 and toks[i][0] == _WORDK and len(words) < 3:
                if words and toks[i][2] == ":":
                    break  # 'Results: train loss 0.3' — the colon ends an earlier segment
                if toks[i][2] == ":":
                    if explicit:
                        break
                    explicit = True
                words.append(toks[i][1])
                i -= 1
            if not words or any(w.lower() in _PROSE_WORDS for w in words):
                break  # no name, or prose ('improved from 0.5 to 0.4')
            if i >= 0 and toks[i][0] == _WORDK and toks[i][2] != ":":
                break  # a name of more than three words: prose
            pairs.append(("_".join(reversed(words)), value, explicit))
        else:
            break
        if boundary(i):
            best = (i + 1, list(reversed(pairs)))
    return best


def _is_metric_name(name: str) -> bool:
    low = name.lower()
    if "loss" in low or "grad_norm" in low or "gradnorm" in low:
        return True
    return any(_METRIC_PART.fullmatch(p) for p in re.split(r"[_\s./\-@]+", low) if p)


@dataclass
class _Record:
    values: dict[str, float]
    step: int | None = None
    epoch: float | None = None
    finished: bool = False


def parse_metric_line(line: str) -> tuple[dict[str, float], int | None, float | None] | None:
    """Metrics stated by one log line: ``(values, step, epoch)``, or None if it states none.

    Conservative by design: the line's message must consist of name/value pairs
    (optionally after a prefix that ends in ':', '-' or '|'), names are kept as
    written with spaces turned into '_' (``train loss`` → ``train_loss``), and at
    least one name must look like a metric (loss, acc, f1, …) unless the whole line
    is pairs with an explicit step/epoch. ``nan``/``inf`` values are kept.
    """
    rec = _parse_message(_strip_header(_clean(line)))
    if rec is None or not rec.values:
        return None
    return rec.values, rec.step, rec.epoch


def _parse_message(msg: str) -> _Record | None:
    """The metric record a log message states (see :func:`parse_metric_line`), or None.

    A record with no values but a step/epoch (``Epoch 2/10`` on its own line) is
    returned too: it gives the step to the lines below it.
    """
    if not msg or len(msg) > MAX_CONFIG_LINE:
        return None
    if msg[0] == "{" and msg[-1] == "}":
        d = _parse_dict(msg)
        return _dict_record(d) if d is not None else None
    if len(msg) > MAX_METRIC_LINE or not _METRIC_HINT.search(msg.lower()):
        return None
    if _KV_LINE.fullmatch(msg):
        pairs = [(k, v, True) for k, v in _KV_PAIR.findall(msg)]
        return _pairs_record(pairs, [], 0)
    if "|" in msg and "[" in msg:
        tq = _tqdm_record(msg)
        if tq is not None:
            return tq
    progress = _progress_prefix(msg) if "[" in msg else None
    if progress is not None:
        msg = progress.rest
    if "(" in msg:
        msg = _PAREN_NUMS.sub(" ", msg)
    if "[" in msg:
        msg = _BRACKET_INDEX.sub(r"\1 \2/\3 |", msg)
        msg = _BRACKETED_INDEX.sub(r" \1 | ", msg).strip()
    toks = _tokens(msg)
    parsed = _pairs_suffix(toks)
    rec = _pairs_record(parsed[1], toks, parsed[0]) if parsed is not None else None
    if rec is None and progress is not None:
        rec = _fields_record(msg, min_fields=1) or _segments_record(toks)
    if rec is None and _STARTS_WITH_INDEX.match(msg):
        rec = _segments_record(toks)
    if rec is None:
        rec = _fields_record(msg)
    if rec is not None and progress is not None:
        rec = progress.apply(rec)
    return rec


#: Parenthesised numbers after a value: running averages (``Loss: 2.30 (2.41)``),
#: percentages (``[640/60000 (1%)]``), rates (``(0.210s,  609.5/s)``). Dropped.
_PAREN_NUMS = re.compile(
    rf"\(\s*(?:(?:{_NUM})(?:{_UNIT})?|[-+]?(?i:nan|inf))(?:[\s,]+(?:{_NUM})(?:{_UNIT})?)*\s*\)"
)

#: A tqdm bar: ``desc: 100%|████| 600/600 [00:12<00:00, 48.1it/s, loss=0.21, acc=0.93]``.
_TQDM = re.compile(
    r"^(?P<desc>.*?)\s*\d{1,3}%\|[^|]*\|\s*[\d.]+[kMGT]?/[\d.?]+[kMGT]?\s*\[(?P<inner>[^\]]*)\]\s*$"
)
_TQDM_ITEM = re.compile(rf"\s*([A-Za-z_][\w.\-/@]*)=((?:{_NUM}|(?i:{_NONFINITE})))(?:{_UNIT})?\s*")


def _tqdm_record(msg: str) -> _Record | None:
    """A finished tqdm bar's postfix (``loss=0.21, acc=0.93``) as a record; its
    description gives the epoch/step (``Epoch 3: 100%|…``). Bars without a postfix
    (downloads) give nothing."""
    m = _TQDM.match(msg)
    if m is None:
        return None
    values: dict[str, float] = {}
    for item in m.group("inner").split(",")[1:]:
        kv = _TQDM_ITEM.fullmatch(item)
        if kv is None:
            continue
        name = kv.group(1)
        if name.lower() in _NOT_METRICS or name.lower() in _INDEX_NAMES:
            continue
        try:
            values[name] = float(kv.group(2))
        except (ValueError, OverflowError):
            continue
    if not values:
        return None
    rec = _Record(values)
    for im in _INDEX_IN_TEXT.finditer(m.group("desc")):
        kind = _INDEX_NAMES[im.group(1).lower()]
        if kind == "step" and rec.step is None:
            rec.step = int(im.group(2))
        elif kind == "epoch" and rec.epoch is None:
            rec.epoch = float(im.group(2))
    return rec


_PHASES = {
    "train": "",
    "training": "",
    "test": "test",
    "testing": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validate": "val",
    "eval": "eval",
    "evaluation": "eval",
    "evaluate": "eval",
}
_PHASE = (
    r"(?P<phase>train|training|test|testing|val|valid|validation|validate|eval|evaluation|evaluate)"
)
_POS = r"\[\s*(?P<k>\d+)\s*/\s*(?P<n>\d+)\s*(?:\(\s*[\d.]+\s*%\s*\))?\s*\]"
#: Progress prefixes that state the epoch and the position within it:
#: ``Epoch(train) [1][100/500]`` (mmengine), ``Epoch: [0][ 10/500]`` (pytorch
#: imagenet), ``Train Epoch: 1 [640/60000 (1%)]`` (pytorch mnist), ``Train: 0 [ 100/500
#: ( 20%)]`` and ``Test: [ 10/100]`` (timm).
_PROGRESS = (
    re.compile(rf"(?i)^epoch\s*\(\s*{_PHASE}\s*\)\s*\[\s*(?P<e>\d+)\s*\]\s*{_POS}"),
    re.compile(rf"(?i)^epoch\s*:?\s*\[\s*(?P<e>\d+)\s*\]\s*{_POS}"),
    re.compile(rf"(?i)^(?:{_PHASE}\s+)?epoch\s*:?\s*(?P<e>\d+)\s*{_POS}"),
    re.compile(rf"(?i)^{_PHASE}\s*:\s*(?:(?P<e>\d+)\s*)?{_POS}"),
)


@dataclass
class _Progress:
    rest: str
    phase: str
    epoch: int | None
    k: int
    n: int

    def apply(self, rec: _Record) -> _Record:
        """Give ``rec`` this prefix's step and phase.

        In training the step is epoch × N + k (the position counted across epochs, so
        steps keep growing); an evaluation line (``Test: [10/100]``) takes no step of
        its own (it is recorded at the last training step) and its metric names get
        the phase (``test/Loss``), since train and test lines print the same names.
        """
        if self.phase:
            rec.values = {
                (k if k.lower().startswith(self.phase) else f"{self.phase}/{k}"): v
                for k, v in rec.values.items()
            }
            rec.step = None
            rec.epoch = None
        elif rec.step is None:
            if self.epoch is not None and self.n > 0:
                rec.step = self.epoch * self.n + self.k
                rec.epoch = float(self.epoch)
            else:
                rec.step = self.k
        return rec


def _progress_prefix(msg: str) -> _Progress | None:
    for rx in _PROGRESS:
        m = rx.match(msg)
        if m is None:
            continue
        groups = m.groupdict()
        phase = _PHASES.get((groups.get("phase") or "train").lower(), "")
        e = groups.get("e")
        rest = msg[m.end() :].lstrip(" \t:,-|")
        return _Progress(rest, phase, int(e) if e is not None else None, int(m["k"]), int(m["n"]))
    return None


#: Where fields of a line part: a '|', a tab, or two spaces after a value and before a name.
_FIELD_SPLIT = re.compile(r"\s*\|\s*|\t+|(?<=[\d%s,)\]])\s{2,}(?=[A-Za-z_*])")


def _fields_record(msg: str, *, min_fields: int = 2) -> _Record | None:
    """A line of fields (``| epoch 001 | loss 2.3 | ppl 4.9``, ``iter: 19  total_loss:
    1.2  lr: 0.01``, tab-separated meters): each field that is wholly name/value
    pairs counts, others (``eta: 0:10:00``, ``640.0/s``) are skipped; a field naming
    an index in words (``end of epoch 1``) gives the step/epoch. At least two fields
    and a metric-looking name are required."""
    fields = [f for f in _FIELD_SPLIT.split(msg) if f.strip()]
    if len(fields) < min_fields:
        return None
    pairs: list[tuple[str, str, bool]] = []
    step: int | None = None
    epoch: float | None = None
    for f in fields:
        toks = _tokens(f)
        parsed = _pairs_suffix(toks)
        if parsed is not None and parsed[0] == 0 and parsed[1]:
            pairs += parsed[1]
            continue
        im = _INDEX_IN_TEXT.search(f)
        if im is not None and len(toks) <= 6:
            kind = _INDEX_NAMES[im.group(1).lower()]
            if kind == "step" and step is None:
                step = int(im.group(2))
            elif kind == "epoch" and epoch is None:
                epoch = float(im.group(2))
    rec = _pairs_record(pairs, [], 0)
    if rec is None or not rec.values or not any(_is_metric_name(k) for k in rec.values):
        return None
    rec.step = rec.step if rec.step is not None else step
    rec.epoch = rec.epoch if rec.epoch is not None else epoch
    return rec


#: A progress line: starts with the step/epoch it reports.
_STARTS_WITH_INDEX = re.compile(r"(?i)(?:step|iter|iteration|epoch|global_step)\b\s*[:=#]?\s*\d")


def _segments_record(toks: Sequence[tuple[int, str, str]]) -> _Record | None:
    """A progress line read segment by segment (``iter 500/1000 | loss 2.31 | 120.5 ms/iter``).

    Only for lines that start with their step/epoch: each separator-delimited
    segment that is wholly name/value pairs counts, others (``120.5 ms/iter``) are
    skipped. A metric-looking name is still required.
    """
    pairs: list[tuple[str, str, bool]] = []
    segment: list[tuple[int, str, str]] = []
    for tok in [*toks, (_SEP, "", "")]:
        if tok[0] == _SEP or (tok[0] == _COLON and segment and segment[-1][0] == _NUMK):
            if segment:
                parsed = _pairs_suffix(segment)
                if parsed is not None and parsed[0] == 0:
                    pairs += parsed[1]
            segment = []
        else:
            segment.append(tok)
    rec = _pairs_record(pairs, [], 0)
    if rec is None or not rec.values or not any(_is_metric_name(k) for k in rec.values):
        return None
    return rec


def _pairs_record(
    pairs: list[tuple[str, str, bool]], toks: Sequence[tuple[int, str, str]], start: int
) -> _Record | None:
    """Decide whether parsed pairs make a metric record (see :func:`parse_metric_line`)."""
    values: dict[str, float] = {}
    step: int | None = None
    epoch: float | None = None
    metric_like = False
    explicit = False
    for name, text, sep in pairs:
        v = _value(text)
        if v is None:
            return None
        value, total = v
        low = name.lower()
        index = _INDEX_NAMES.get(low)
        if index is None and total is not None and low not in _NOT_METRICS:
            if not (sep and total > 0 and _is_metric_name(name)):
                return None  # 'acc 45/100': not a plain value
            value = value / total  # 'Accuracy: 9837/10000': a count, kept as its ratio
        if index == "step":
            if math.isfinite(value) and value.is_integer():
                step = int(value)
        elif index == "epoch":
            if math.isfinite(value):
                epoch = value
        elif low not in _NOT_METRICS:
            values[name] = value
            metric_like = metric_like or _is_metric_name(name)
            explicit = explicit or sep
    has_index = step is not None or epoch is not None
    if start > 0:
        # A prefix that is not pairs ('1875/1875 [====] - 3s -'): only explicit
        # 'name: value' pairs with a metric-looking name count after it.
        if not (metric_like and explicit):
            return None
        for m in _INDEX_IN_TEXT.finditer(" ".join(t[1] for t in toks[:start])):
            kind = _INDEX_NAMES[m.group(1).lower()]
            if kind == "step" and step is None:
                step = int(m.group(2))
            elif kind == "epoch" and epoch is None:
                epoch = float(m.group(2))
    elif not metric_like and not (has_index and values):
        if has_index and not values:
            return _Record({}, step, epoch)  # 'Epoch 2/10': context for the lines below
        return None
    return _Record(values, step, epoch)


_BARE_NONFINITE = re.compile(r"(?<![\w'\"])(-?)(nan|inf)(?![\w'\"])")
_FLAT_ITEM = re.compile(
    r"""\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*:\s*"""
    r"""(?:'([^'\\]*)'|"([^"\\]*)"|([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf|-?Infinity|NaN"""
    r"""|True|False|None|true|false|null))\s*(?:,|$)"""
)
_FLAT_WORDS: dict[str, Any] = {
    "True": True,
    "true": True,
    "False": False,
    "false": False,
    "None": None,
    "null": None,
}


def _flat_dict(text: str) -> dict[str, Any] | None:
    """Fast path for the common flat one-line dict (``{'loss': 0.5, 'epoch': 1}``);
    None means "not that simple" and the caller falls back to a full parser."""
    body = text[1:-1]
    out: dict[str, Any] = {}
    pos = 0
    end = len(body)
    if not body.strip():
        return None
    while pos < end:
        m = _FLAT_ITEM.match(body, pos)
        if m is None or m.end() == pos:
            return None
        key = m.group(1) if m.group(1) is not None else m.group(2)
        if m.group(5) is not None:
            raw = m.group(5)
            value: Any = (
                _FLAT_WORDS[raw]
                if raw in _FLAT_WORDS
                else float(raw)
                if ("." in raw or "e" in raw or "E" in raw or "n" in raw.lower())
                else int(raw)
            )
        else:
            value = m.group(3) if m.group(3) is not None else m.group(4)
        out[key] = value
        pos = m.end()
    return out


def _parse_dict(text: str) -> dict[str, Any] | None:
    """A dict from a JSON object or a Python dict literal (``ast.literal_eval``; bare
    ``nan``/``inf`` — how Python prints them — are read as floats)."""
    if len(text) < 4096:
        flat = _flat_dict(text)
        if flat:
            return flat
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
        try:
            obj = _quietly(ast.literal_eval, _BARE_NONFINITE.sub(r"'\1\2'", text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return None
    return obj


def _dict_record(d: dict[str, Any]) -> _Record | None:
    """A printed dict as a metric record, if it is one: flat, at least half numeric,
    with a metric-looking numeric key (``{'loss': 0.5, 'epoch': 0.5}``). Otherwise None."""
    if any(isinstance(v, dict | list | tuple) for v in d.values()):
        return None
    # numbers and numeric strings (new HF prints '0.6934')
    nums = {k: number_or_text(v) for k, v in d.items()}
    numeric = {k: v for k, v in nums.items() if v is not None}
    if len(numeric) * 2 < len(d):
        return None
    if not any(_is_metric_name(k) or k.startswith(("train_", "eval_")) for k in numeric):
        return None
    rec = _Record({}, finished="train_runtime" in d)
    for k, v in numeric.items():
        index = _INDEX_NAMES.get(k.lower())
        if index == "step":
            if math.isfinite(v) and v.is_integer():
                rec.step = int(v)
        elif index == "epoch":
            rec.epoch = v if math.isfinite(v) else None
        elif k.lower() not in _NOT_METRICS:
            rec.values[k] = v
    return rec if rec.values else None


# --------------------------------------------------------------------------- #
# Config and seed
# --------------------------------------------------------------------------- #

_CONFIG_WORD = re.compile(
    r"(?i)\b(?:config|cfg|conf|args|arguments|hparams|hyper[-_ ]?param(?:eter)?s|params"
    r"|parameters|settings|options|kwargs)\b[^{}]{0,40}?(\{.*\})\s*$"
)


def _namespace(text: str) -> dict[str, Any] | None:
    """Keyword arguments of ``Namespace(a=1, b='x')`` as a dict, read with ``ast`` only.

    Literal values are evaluated with ``ast.literal_eval``; a nested Namespace
    becomes a dict; anything else (``device(type='cuda')``) is kept as its source text.
    """
    try:
        tree = _quietly(ast.parse, text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return _namespace_call(tree.body)


def _quietly(parse: Any, *args: Any, **kwargs: Any) -> Any:
    """``parse(*args, **kwargs)`` without the compiler's warnings reaching stderr.

    Parsing a printed config warns about what is fine in a log and odd in source
    (``SyntaxWarning: invalid decimal literal`` for ``1if``, invalid escapes such as
    ``'C:\\data'``); those lines would leak to stderr as Python warnings.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse(*args, **kwargs)


def _namespace_call(node: ast.AST) -> dict[str, Any] | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else ""
    )
    if name != "Namespace":
        return None
    out: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            continue
        try:
            out[kw.arg] = _quietly(ast.literal_eval, kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            nested = _namespace_call(kw.value)
            out[kw.arg] = nested if nested is not None else ast.unparse(kw.value)
    return out


def _config_from(msg: str, line_no: int) -> tuple[dict[str, Any], bool] | None:
    """``(config, explicit)`` if the message prints a config; explicit = named as one."""
    if len(msg) > MAX_CONFIG_LINE:
        return None
    idx = msg.find("Namespace(")
    if idx >= 0 and msg.endswith(")"):
        ns = _namespace(msg[idx:])
        if ns:
            return ns, True
    if "{" not in msg or not msg.endswith("}"):
        return None
    m = _CONFIG_WORD.search(msg)
    if m and not msg.startswith("{"):
        d = _parse_dict(m.group(1))
        if d:
            return d, True
    if msg.startswith("{") and line_no < BARE_CONFIG_LINES:
        d = _parse_dict(msg)
        if d and len(d) >= 2 and _dict_record(d) is None and _config_like(d):
            return d, False
    return None


_LOG_RECORD_KEYS = frozenset({"level", "levelname", "severity", "lvl", "msg", "message", "event"})


def _config_like(d: dict[str, Any]) -> bool:
    """A bare printed dict that could be a config: not a structured-log record (JSON
    logs carry level/msg keys) and holding at least one number somewhere."""
    if _LOG_RECORD_KEYS & {k.lower() for k in d}:
        return False
    return any(isinstance(v, int | float) and not isinstance(v, bool) for v in flatten(d).values())


_SEED_SET = re.compile(r"(?i)\b(?:global\s+)?seed\s+set\s+to\s+(-?\d+)\b")
_SEED_ANY = re.compile(
    r"(?i)(?<![\w.])(?:(?:random|global|manual)[ _])?seed(?:[ _]value)?['\"]?"
    r"(?:\s*[:=]\s*|\s+(?:is\s+|to\s+|set\s+to\s+)?)['\"]?(-?\d+)(?![\w.])"
)


def _seed_from(msg: str) -> tuple[int, int, str] | None:
    """``(priority, value, matched text)``: 'Seed set to N' (0) beats 'seed=N' (1)."""
    if "seed" not in msg.lower():
        return None
    m = _SEED_SET.search(msg)
    if m:
        return 0, int(m.group(1)), m.group(0)
    m = _SEED_ANY.search(msg)
    if m:
        return 1, int(m.group(1)), m.group(0).replace("'", "").replace('"', "").strip()
    return None


_FINISHED = re.compile(r"Training completed\b|`Trainer\.fit` stopped: `max_\w+=[^`]*` reached")


# --------------------------------------------------------------------------- #
# Tracebacks and failures
# --------------------------------------------------------------------------- #

_TB_START = "Traceback (most recent call last):"
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+)(?:, in (?P<func>.+?))?\s*$')
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_STDLIB_DIR = re.compile(r"/lib(?:64)?/python\d+(?:\.\d+)?t?/|/Lib/")
try:
    _LOCAL_STDLIB = sysconfig.get_paths()["stdlib"].replace("\\", "/").rstrip("/") + "/"
except (KeyError, AttributeError):  # pragma: no cover
    _LOCAL_STDLIB = "\0"


@dataclass
class _Traceback:
    start: int
    end: int  # exclusive
    exc_type: str | None
    exc_msg: str
    frames: list[tuple[str, int, str]]  # of the last exception: (file, line, func)


def _parse_block(lines: Sequence[str], s: int) -> _Traceback:
    """One traceback starting at line ``s`` (up to its exception line and message)."""
    head = lines[s]
    prefix = head[: head.index(_TB_START)]
    n = len(lines)

    def unprefixed(k: int) -> str:
        text = lines[k]
        return text[len(prefix) :] if prefix and text.startswith(prefix) else text

    frames: list[tuple[str, int, str]] = []
    i = s + 1
    skipped = 0
    exc_type: str | None = None
    exc_msg = ""
    while i < n:
        text = unprefixed(i)
        if _TB_START in text:
            break
        if not text.strip():
            nxt = unprefixed(i + 1) if i + 1 < n else ""
            if nxt[:1] in (" ", "\t"):
                i += 1
                continue
            break
        if text[:1] in (" ", "\t"):
            m = _FRAME.match(text)
            if m:
                frames.append((m.group("file"), int(m.group("line")), m.group("func") or ""))
            i += 1
            continue
        m = _EXC_LINE.match(text.strip())
        if m:
            exc_type, exc_msg = m.group("type"), (m.group("msg") or "").strip()
            i += 1
            # continuation lines of a multi-line message, up to a blank line
            more = 0
            while i < n and more < 10:
                t = unprefixed(i)
                if not t.strip() or _TB_START in t or t.startswith(_CHAIN):
                    break
                i += 1
                more += 1
            break
        skipped += 1  # interleaved output (progress bars, other ranks)
        i += 1
        if skipped > 5:
            break
    return _Traceback(s, i, exc_type, exc_msg, frames)


def last_traceback(lines: Sequence[str]) -> _Traceback | None:
    """The last traceback, extended backwards over chained ones ("During handling…")."""
    starts = [i for i, line in enumerate(lines) if _TB_START in line]
    if not starts:
        return None
    blocks = [_parse_block(lines, s) for s in starts]
    last = blocks[-1]
    first_start = last.start
    k = len(blocks) - 1
    while k > 0:
        prev = blocks[k - 1]
        gap = [t.strip() for t in lines[prev.end : blocks[k].start]]
        if (
            not any(g.startswith(_CHAIN) or any(c in g for c in _CHAIN) for g in gap)
            or len(gap) > 6
        ):
            break
        first_start = prev.start
        k -= 1
    return _Traceback(first_start, last.end, last.exc_type, last.exc_msg, last.frames)


def find_traceback(text: str) -> str | None:
    """The last Python traceback in ``text`` (with chained parts), cleaned; None if none."""
    lines = clean_lines(text)
    tb = last_traceback(lines)
    if tb is None:
        return None
    return "\n".join(lines[tb.start : tb.end]).rstrip()[-TRACEBACK_CHARS:]


def is_user_file(filename: str) -> bool:
    """Whether a traceback frame is the user's code (not site-packages, stdlib, <frozen …>)."""
    f = filename.replace("\\", "/")
    if f.startswith("<"):
        return f in ("<string>", "<stdin>") or f.startswith("<ipython-input")
    if "/site-packages/" in f or "/dist-packages/" in f:
        return False
    return not (_STDLIB_DIR.search(f) or f.startswith(_LOCAL_STDLIB))


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _exception_failure(tb: _Traceback) -> Failure:
    if tb.exc_type is None:
        return Failure("exception", "traceback without an exception line (log cut off?)")
    base = tb.exc_type.rsplit(".", 1)[-1]
    if base == "KeyboardInterrupt":
        return Failure("signal", "SIGINT (KeyboardInterrupt)")
    head = f"{tb.exc_type}: {tb.exc_msg}" if tb.exc_msg else tb.exc_type
    where = ""
    for file, line, func in reversed(tb.frames):
        if is_user_file(file):
            name = file.replace("\\", "/").rsplit("/", 1)[-1]
            where = f" (at {name}:{line} in {func})" if func else f" (at {name}:{line})"
            break
    return Failure("exception", one_line(head, MESSAGE_CHARS - len(where)) + where)


_CUDA_OOM = re.compile(
    r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"
    r"|cudaErrorMemoryAllocation|CUDA error: out of memory|HIP out of memory"
    r"|RESOURCE_EXHAUSTED: Out of memory"
)
_TIME_LIMIT = re.compile(r"DUE TO TIME LIMIT")
_OOM_KILLED = re.compile(r"Out of memory: Kill(?:ed)? process|oom[-_]kill event", re.IGNORECASE)
_KILLED_LINE = re.compile(r"^(?:.*\bline \d+:\s+\d+\s+)?Killed(?:\s+.*)?$")
_TERMINATED_LINE = re.compile(r"^(?:.*\bline \d+:\s+\d+\s+)?Terminated(?:\s+.*)?$")
_CANCELLED = re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT")
_NAN_LOSS = re.compile(
    r"(?i)\b[\w/.]*loss[\w/.]*['\"]?\s*(?:[:=]|\bis\b|\bbecame\b|\bbecomes\b|\bwas\b|\bhas become\b)"
    r"\s*['\"]?[-+]?(?:nan|inf(?:inity|inite)?)\b"
    r"|returned nan values|\bdetected (?:a )?(?:nan|inf)\b|\bnon-?finite loss\b|\bloss is not finite\b"
)
_RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s*")
_RANK_ONLY = re.compile(r"^\[rank\d+\]: ?")
_NAN_HINT = re.compile(r"(?i)(?<![a-z])(?:nan|inf(?:inity|inite)?)(?![a-z])")


def _signal_name(exit_code: int | None, signal_name: str | None) -> str | None:
    if signal_name:
        return signal_name
    if exit_code is None:
        return None
    number = -exit_code if exit_code < 0 else exit_code - 128 if 128 < exit_code <= 128 + 64 else 0
    if number <= 0:
        return None
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _classify(
    lines: Sequence[str], exit_code: int | None, signal_name: str | None
) -> tuple[Failure | None, int]:
    """Failure and the index of the line that shows it (len(lines) for exit-status-only)."""
    n = len(lines)
    last_idx = next((i for i in range(n - 1, -1, -1) if lines[i].strip()), -1)
    last_line = _RANK_PREFIX.sub("", lines[last_idx].strip()) if last_idx >= 0 else ""
    for i in range(n - 1, -1, -1):
        if _CUDA_OOM.search(lines[i]):
            return Failure("cuda_oom", one_line(_RANK_PREFIX.sub("", lines[i].strip()))), i
    for i in range(n - 1, -1, -1):
        if _TIME_LIMIT.search(lines[i]):
            return Failure("timeout", one_line(lines[i].strip())), i
    for i in range(n - 1, -1, -1):
        if _OOM_KILLED.search(lines[i]):
            return Failure("oom_killed", one_line(lines[i].strip())), i
    sig = _signal_name(exit_code, signal_name)
    if _KILLED_LINE.match(last_line) and sig in (None, "SIGKILL"):
        return Failure(
            "oom_killed", "Killed (SIGKILL, most likely the out-of-memory killer)"
        ), last_idx
    for i, line in enumerate(lines):
        if _NAN_HINT.search(line) and _nan_line(line):
            rec = _parse_message(_strip_header(line))
            step = rec.step if rec is not None else None
            if step is None:
                m = _INDEX_IN_TEXT.search(line)
                step = int(m.group(2)) if m and _INDEX_NAMES[m.group(1).lower()] == "step" else None
            if step is not None and not -(2**63) <= step < 2**63:
                step = None  # no step a store can hold
            return Failure("nan", one_line(_RANK_PREFIX.sub("", line.strip())), step), i
    tb = last_traceback(lines)
    if tb is not None:
        return _exception_failure(tb), tb.start
    if _CANCELLED.search(last_line):
        return Failure("signal", one_line(last_line)), last_idx
    if _TERMINATED_LINE.match(last_line) and sig in (None, "SIGTERM"):
        return Failure("signal", "SIGTERM (Terminated)"), last_idx
    if sig:
        return Failure("signal", sig), n
    if exit_code:
        return Failure("exception", f"exited with code {exit_code}"), n
    return None, n


def _nan_line(line: str) -> bool:
    if _NAN_LOSS.search(line):
        return True
    rec = _parse_message(_strip_header(line))
    return rec is not None and any(
        "loss" in k.lower() and not math.isfinite(v) for k, v in rec.values.items()
    )


def classify_failure(
    text: str, *, exit_code: int | None = None, signal_name: str | None = None
) -> Failure | None:
    """Why a run failed, from the end of its output and, if known, its exit status.

    Only the last :data:`CLASSIFY_CHARS` of ``text`` are examined. Rules, first
    match wins:

    1. ``cuda_oom``: "CUDA out of memory", ``torch.OutOfMemoryError``,
       ``CUBLAS_STATUS_ALLOC_FAILED``, ``cudaErrorMemoryAllocation`` (and the
       HIP/XLA equivalents); the message is that line, shortened to one line.
    2. ``timeout``: SLURM's "… CANCELLED AT … DUE TO TIME LIMIT ***".
    3. ``oom_killed``: "Out of memory: Killed process", SLURM's "oom-kill event",
       or "Killed" as the last line (the shell's report of a SIGKILL) unless the
       exit status names another signal.
    4. ``nan``: a non-finite loss ("loss: nan", "loss=nan", "Loss is NaN", "loss
       became inf", a metric line with a non-finite loss, torch's "returned nan
       values"); the step is taken from that line when it has one.
    5. ``exception``: the last Python traceback (chained tracebacks: the last
       exception), as "ExcType: message (at file.py:42 in func)" naming the
       innermost frame in user code. ``KeyboardInterrupt`` gives ``signal``
       "SIGINT (KeyboardInterrupt)".
    6. ``signal``: SLURM cancellation, a "Terminated" last line, ``signal_name``,
       or an exit status that means a signal (negative, or 129–192).
    7. ``exception`` "exited with code N" for any other non-zero ``exit_code``.
    """
    if exit_code == 0 and signal_name is None and not text:
        return None
    lines = clean_lines(text[-CLASSIFY_CHARS:])
    return _classify(lines, exit_code, signal_name)[0]


# --------------------------------------------------------------------------- #
# read_log
# --------------------------------------------------------------------------- #


class _LogState:
    """What the lines of a log said so far: config, seed, end marker and metric points.

    One line at a time (:meth:`add`), so that a whole file (:func:`read_log`) and a
    stream read while it is written (:class:`OutputReader`) give the same answers.
    Steps are given as records arrive: a record's own step, else its epoch while
    every epoch seen so far was a whole number, else the step of the last record that
    had one, else a running counter (0-based index among metric records).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = path
        self.line_no = 0
        self.explicit_cfg: dict[str, Any] | None = None
        self.bare_cfg: dict[str, Any] | None = None
        self._seed: tuple[int, int, str] | None = None
        self.finished_at = -1
        self.ctx_step: int | None = None
        self.ctx_epoch: float | None = None
        self.in_tb = False
        self.metrics: dict[str, list[Point]] = {}
        self.count = 0  # metric points
        self._records = 0
        self._last: int | None = None
        self._frac_epoch = False
        self._out_of_range: list[int] = []

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.explicit_cfg if self.explicit_cfg is not None else self.bare_cfg
        return flatten(cfg) if cfg else {}

    @property
    def seed(self) -> Seed | None:
        return Seed(self._seed[1], f"log:{self._seed[2]}") if self._seed is not None else None

    def gap(self) -> None:
        self.in_tb = False

    def add(self, line: str) -> None:
        """One cleaned line (see :func:`clean_lines`)."""
        line_no = self.line_no
        self.line_no += 1
        if not line:
            return
        if _TB_START in line:
            self.in_tb = True
            return
        if self.in_tb:
            body = _RANK_ONLY.sub("", line)
            if body[:1] in (" ", "\t"):
                return
            self.in_tb = False
            return  # the exception line
        msg = _strip_header(line)
        if not msg:
            return
        if ("reached" in msg or "Training completed" in msg) and _FINISHED.search(msg):
            self.finished_at = line_no
        s = _seed_from(msg)
        if s is not None and (self._seed is None or s[0] < self._seed[0]):
            self._seed = s
        if self.explicit_cfg is None and ("Namespace(" in msg or msg.endswith("}")):
            cfg = _config_from(msg, line_no)
            if cfg is not None:
                if cfg[1]:
                    self.explicit_cfg = cfg[0]
                    return
                if self.bare_cfg is None:
                    self.bare_cfg = cfg[0]
                    return
        rec = _parse_message(msg)
        if rec is None:
            return
        if not rec.values:
            self.ctx_step, self.ctx_epoch = rec.step, rec.epoch
            return
        if rec.step is None and rec.epoch is None:
            rec.step, rec.epoch = self.ctx_step, self.ctx_epoch
        if rec.finished:
            self.finished_at = line_no
        self._record(rec)

    def _record(self, r: _Record) -> None:
        counter = self._records
        self._records += 1
        if r.step is None and r.epoch is not None and not r.epoch.is_integer():
            self._frac_epoch = True
        by_epoch = r.step is None and r.epoch is not None and not self._frac_epoch
        if r.step is not None:
            step = r.step
        elif by_epoch:
            assert r.epoch is not None
            step = int(r.epoch)
        elif self._last is not None:
            step = self._last
        else:
            step = counter
        if not -(2**63) <= step < 2**63:
            self._out_of_range.append(step)
            return
        if r.step is not None or by_epoch:
            self._last = step
        for name, value in r.values.items():
            self.metrics.setdefault(name, []).append(Point(step, value))
            self.count += 1

    def close(self) -> None:
        """The end of the text: one warning for records that had no step a store can hold."""
        if self._out_of_range:
            warn(
                self.path,
                f"skipped {len(self._out_of_range)} metric line(s) whose step does not fit in"
                f" 64 bits (the first: {str(self._out_of_range[0])[:30]})",
            )
            self._out_of_range = []


#: A partial line longer than this keeps only what follows its last carriage return.
PENDING_LINE = 64 * 1024
#: Bytes not yet parsed beyond this are dropped (oldest lines first; counted).
BACKLOG_BYTES = 8 * 1024 * 1024


class OutputReader:
    """The log reader of :func:`read_log`, fed a stream as it is written.

    :meth:`feed` only buffers (cheap: a command's output pump calls it); :meth:`parse`
    reads complete lines for at most a time budget; :meth:`take` hands over the
    metric points read since the last take. Config and seed are read as in a file
    (first found wins). The unparsed backlog is bounded (:data:`BACKLOG_BYTES`):
    a flood of output beyond it costs the oldest unparsed lines, counted in
    :attr:`dropped`, never memory or the command's time.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        import codecs

        self.state = _LogState(path)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = bytearray()
        self._partial = ""
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > BACKLOG_BYTES:
            cut = self._buf.find(b"\n", len(self._buf) - BACKLOG_BYTES)
            cut = cut + 1 if cut >= 0 else len(self._buf) - BACKLOG_BYTES
            self.dropped += cut
            del self._buf[:cut]
            self._partial = ""

    @property
    def backlog(self) -> int:
        return len(self._buf)

    def parse(self, budget_s: float | None = None, *, final: bool = False) -> None:
        """Read the complete lines buffered (all of them when ``final``, the last partial
        line too), for at most ``budget_s`` seconds."""
        import time

        deadline = None if budget_s is None else time.monotonic() + budget_s
        while self._buf:
            chunk = bytes(self._buf[: 256 * 1024])
            del self._buf[: len(chunk)]
            text = self._partial + self._decoder.decode(chunk)
            lines = text.split("\n")
            self._partial = lines.pop()
            if len(self._partial) > PENDING_LINE:
                self._partial = self._partial[self._partial.rfind("\r") + 1 :][-MAX_CONFIG_LINE:]
            for line in lines:
                self.state.add(_clean(line.replace("\x00", "")))
            if deadline is not None and time.monotonic() >= deadline and not final:
                return
        if final:
            rest = self._partial + self._decoder.decode(b"", final=True)
            self._partial = ""
            if rest:
                self.state.add(_clean(rest.replace("\x00", "")))
            self.state.close()

    def take(self) -> dict[str, list[Point]]:
        """Points read since the last take, per tag (in order); they are not kept here
        (a long run prints millions of lines)."""
        out = {tag: points for tag, points in self.state.metrics.items() if points}
        self.state.metrics = {}
        return out

    @property
    def config(self) -> dict[str, Any]:
        return self.state.config

    @property
    def seed(self) -> Seed | None:
        return self.state.seed


def read_log(
    path: str | os.PathLike[str], *, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES
) -> LogFacts | None:
    """What the log at ``path`` states (see :class:`LogFacts`); None if it cannot be read.

    Only two windows are read: the first ``head_bytes`` and the last
    ``tail_bytes`` (a file no bigger than both together is read once, whole).
    Config and seed come from either window (first found wins; "Seed set to N"
    beats other seed lines). Metrics come from both windows, in file order; what
    lies between the windows is not read, so for a huge log the metrics have a gap
    and a running-counter step (used for lines that state neither step nor epoch)
    does not count the lines in the gap. The failure, traceback and end marker
    come from the end of the text read. Unreadable or binary files give None with
    one warning; undecodable bytes are replaced; an empty file gives empty facts.
    """
    windows = _windows(path, head_bytes, tail_bytes)
    if windows is None:
        return None
    head_text, tail_text, ends_nl = windows
    facts = LogFacts(truncated=not ends_nl)
    head_lines = clean_lines(head_text)
    tail_lines = clean_lines(tail_text) if tail_text is not None else []
    all_lines: list[str] = head_lines + tail_lines

    state = _LogState(path)
    for line_no, line in enumerate(all_lines):
        if line_no == len(head_lines):
            state.gap()  # the gap between the windows
        state.add(line)
    state.close()
    if state.config:
        facts.config = state.config
    facts.seed = state.seed
    facts.metrics = state.metrics
    finished_at = state.finished_at
    facts.finished_marker = finished_at >= 0

    # Failure and traceback from the end of what was read.
    end_lines, offset = _end_lines(all_lines)
    failure, where = _classify(end_lines, None, None)
    if failure is not None and finished_at >= 0 and finished_at > offset + where:
        failure = None  # e.g. an OOM caught and retried, then training finished
    if failure is not None and failure.kind == "nan" and failure.step is None:
        failure.step = _first_nonfinite_step(facts.metrics)
    facts.failure = failure
    tb = last_traceback(end_lines)
    if tb is not None:
        facts.traceback = "\n".join(end_lines[tb.start : tb.end]).rstrip()[-TRACEBACK_CHARS:]
    facts.tail = _tail(all_lines)
    return facts


def _end_lines(lines: list[str]) -> tuple[list[str], int]:
    """The last lines holding at most CLASSIFY_CHARS characters, and their start index."""
    total = 0
    k = len(lines)
    while k > 0 and total + len(lines[k - 1]) + 1 <= CLASSIFY_CHARS:
        k -= 1
        total += len(lines[k]) + 1
    if k == len(lines) and lines:  # one enormous last line: keep its end
        return [lines[-1][-CLASSIFY_CHARS:]], k - 1
    return lines[k:], k


def _tail(lines: Iterable[str]) -> str:
    text = "\n".join(list(lines)[-TAIL_LINES:])
    if len(text) > TAIL_CHARS:
        text = text[-TAIL_CHARS:]
        nl = text.find("\n")
        text = text[nl + 1 :] if 0 <= nl < len(text) - 1 else text
    return text


def _first_nonfinite_step(metrics: dict[str, list[Point]]) -> int | None:
    best: int | None = None
    for name, points in metrics.items():
        if "loss" not in name.lower():
            continue
        for p in points:
            if not math.isfinite(p.value):
                best = p.step if best is None else min(best, p.step)
                break
    return best
