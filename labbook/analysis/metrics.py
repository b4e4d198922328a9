"""Which of a run's metrics matter most (for columns and diffs), and what they mean.

**The metric vocabulary.** Frameworks name the same quantity differently:
``train_loss`` (Lightning, HF Trainer), ``train/loss`` (TensorBoard), ``Loss/train``
(the PyTorch tutorials), ``loss`` (Keras, HF Trainer's log), ``val_loss`` /
``validation/loss`` / ``eval_loss``, ``train_loss_epoch`` / ``train_loss_step``
(Lightning's suffixes). :func:`canonical_metric` maps such a tag to one canonical
name, ``SPLIT_QUANTITY`` (``train_loss``, ``val_acc``, ``test_ppl``; ``lr`` has no
split), so that a listing can show every run's loss in one column. A tag is split
into words at ``_ / . - @``, spaces and camelCase; it maps only when every word is
known: a split (``train``/``training``; ``val``/``valid``/``validation``/``eval``/
``evaluation``/``dev``; ``test``/``testing``), a quantity (``loss``; ``acc``/
``accuracy``/``top1``/``acc@1``; ``acc5``/``top5``/``acc@5``; ``ppl``/``perplexity``;
``f1``, ``auc``/``auroc``, ``bleu``, ``wer``, ``cer``, ``mae``, ``mse``, ``rmse``,
``precision``, ``recall``, ``iou``, ``miou``, ``dice``; ``lr``/``learning_rate``) and
qualifiers (``epoch``, ``avg``, ``mean``, ``average``, ``total``, ``step``, ``batch``,
``iter``), in any order. A tag without a split is training's (``loss`` →
``train_loss``). ``loss_cls``, ``best_acc`` or ``hparam/final_loss`` map to nothing:
they are different quantities. When a run has several tags of one canonical name,
:func:`canonical_metrics` picks one: the tag spelled as the canonical name, then one
that names its split, then the plain over the per-epoch over the per-step one.

The raw tags stay what is stored and shown by ``show`` and ``--json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

_KEY_METRIC_HINTS = ("val", "eval", "test", "loss", "acc")

_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "evaluation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_QUANTITIES = {
    "loss": "loss",
    "acc": "acc",
    "accuracy": "acc",
    "top1": "acc",
    "acc1": "acc",
    "acc5": "acc5",
    "top5": "acc5",
    "ppl": "ppl",
    "perplexity": "ppl",
    "f1": "f1",
    "auc": "auc",
    "auroc": "auc",
    "bleu": "bleu",
    "wer": "wer",
    "cer": "cer",
    "mae": "mae",
    "mse": "mse",
    "rmse": "rmse",
    "precision": "precision",
    "recall": "recall",
    "iou": "iou",
    "miou": "miou",
    "dice": "dice",
    "lr": "lr",
}
#: Words that do not change what a tag measures, with how much they cost when a run
#: has several tags of one canonical name (the cheapest wins).
_QUALIFIERS = {
    "epoch": 1,
    "avg": 1,
    "average": 1,
    "mean": 1,
    "total": 1,
    "step": 2,
    "batch": 2,
    "iter": 2,
}
#: Pairs of words that are one word: ``acc@1``, ``top_5``, ``learning_rate``.
_PAIRS = {
    ("acc", "1"): "acc1",
    ("acc", "5"): "acc5",
    ("top", "1"): "top1",
    ("top", "5"): "top5",
    ("learning", "rate"): "lr",
}
#: Quantities without a split.
_UNSPLIT = {"lr"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_/.\-@:]+")


def _words(tag: str) -> list[str]:
    words = [w for w in _SEPARATORS.split(_CAMEL.sub("_", tag).lower()) if w]
    out: list[str] = []
    for w in words:
        if out and (out[-1], w) in _PAIRS:
            out[-1] = _PAIRS[(out[-1], w)]
        else:
            out.append(w)
    return out


@lru_cache(maxsize=4096)
def _parse(tag: str) -> tuple[str, tuple[int, int]] | None:
    """(canonical name, rank) of ``tag``, or None when it is not in the vocabulary."""
    splits: set[str] = set()
    quantities: set[str] = set()
    cost = 0
    for w in _words(tag):
        if w in _SPLITS:
            splits.add(_SPLITS[w])
        elif w in _QUANTITIES:
            quantities.add(_QUANTITIES[w])
        elif w in _QUALIFIERS:
            cost = max(cost, _QUALIFIERS[w])
        else:
            return None
    if quantities == {"acc", "acc5"}:  # top5_acc
        quantities = {"acc5"}
    if len(quantities) != 1 or len(splits) > 1:
        return None
    quantity = quantities.pop()
    if quantity in _UNSPLIT:
        return quantity, (0 if splits else 1, cost)
    split = splits.pop() if splits else "train"
    return f"{split}_{quantity}", (0 if splits else 1, cost)


def canonical_metric(tag: str) -> str | None:
    """The canonical name of a metric tag (``Loss/train`` → ``train_loss``), or None."""
    parsed = _parse(tag)
    return parsed[0] if parsed else None


def _rank(tag: str, name: str) -> tuple[int, int, int, int, str]:
    parsed = _parse(tag)
    named, cost = parsed[1] if parsed else (1, 9)
    return (0 if tag == name else 1, named, cost, len(tag), tag)


def canonical_tags(tags: Iterable[str], name: str) -> list[str]:
    """The tags among ``tags`` whose canonical name is ``name``, the preferred first."""
    return sorted((t for t in tags if canonical_metric(t) == name), key=lambda t: _rank(t, name))


def canonical_metrics(tags: Iterable[str]) -> dict[str, str]:
    """One run's metrics by canonical name: ``{canonical: the tag it is read from}``.

    Tags outside the vocabulary keep their own name (``{"grad_norm": "grad_norm"}``),
    unless one of the run's tags maps to that very name.
    """
    chosen: dict[str, str] = {}
    rest: list[str] = []
    for tag in tags:
        name = canonical_metric(tag)
        if name is None:
            rest.append(tag)
        elif name not in chosen or _rank(tag, name) < _rank(chosen[name], name):
            chosen[name] = tag
    for tag in rest:
        chosen.setdefault(tag, tag)
    return chosen


def metric_column(metrics: Mapping[str, Any], column: str) -> tuple[str, Any] | None:
    """``(tag, summary)`` of one run's metric for ``column`` (a canonical name or a
    tag), or None when the run has none: what a listing shows in that column."""
    if column in metrics and canonical_metric(column) in (None, column):
        return column, metrics[column]
    tag = canonical_metrics(metrics).get(column)
    if tag is None and column in metrics:
        tag = column
    return (tag, metrics[tag]) if tag is not None else None


def key_metrics(records: Sequence[Mapping[str, Any]], limit: int = 3) -> list[str]:
    """The metric tags most worth a column: common to most runs, validation and loss first."""
    counts: dict[str, int] = {}
    for r in records:
        for tag in r.get("metrics", {}):
            counts[tag] = counts.get(tag, 0) + 1

    def score(tag: str) -> tuple[int, int, str]:
        low = tag.lower()
        hint = next(
            (i for i, h in enumerate(_KEY_METRIC_HINTS) if h in low), len(_KEY_METRIC_HINTS)
        )
        return (-counts[tag], hint, tag)

    return sorted(counts, key=score)[:limit]


#: Among canonical names that as many runs have: loss first, validation first.
_QUANTITY_ORDER = ("loss", "acc", "ppl", "acc5")
_SPLIT_ORDER = ("val", "train", "test")


def key_columns(records: Sequence[Mapping[str, Any]], limit: int = 3) -> list[str]:
    """The metric columns most worth showing, by canonical name (:func:`canonical_metrics`):
    names of the vocabulary before other tags, then those most runs have; among
    equals loss before accuracy before perplexity, validation before training
    before test (``val_loss``, ``train_loss``, ``val_acc``)."""
    counts: dict[str, int] = {}
    for r in records:
        for name in canonical_metrics(r.get("metrics", {})):
            counts[name] = counts.get(name, 0) + 1

    def score(name: str) -> tuple[int, int, int, int, str]:
        parsed = _parse(name)
        if parsed is None or parsed[0] != name or name in _UNSPLIT:
            low = name.lower()
            hint = next(
                (i for i, h in enumerate(_KEY_METRIC_HINTS) if h in low), len(_KEY_METRIC_HINTS)
            )
            return (1, -counts[name], hint, 0, name)
        split, _, quantity = name.partition("_")
        q = _QUANTITY_ORDER.index(quantity) if quantity in _QUANTITY_ORDER else 9
        return (0, -counts[name], q, _SPLIT_ORDER.index(split), name)

    return sorted(counts, key=score)[:limit]


#: Quantities of the vocabulary where lower is better; the others there are higher-better.
_LOWER_BETTER = {"loss", "ppl", "wer", "cer", "mae", "mse", "rmse"}
_HIGHER_BETTER = {
    "acc", "acc5", "f1", "auc", "bleu", "precision", "recall", "iou", "miou", "dice",
}  # fmt: skip
_LOWER_WORDS = re.compile(
    r"(?:^|[^a-z])(?:loss|err|error|errors|ppl|perplexity|nll|mse|mae|rmse|wer|cer|regret)(?:$|[^a-z])"
)
_HIGHER_WORDS = re.compile(
    r"(?:^|[^a-z])(?:acc|accuracy|f1|auc|auroc|bleu|rouge\w*|map|precision|recall|iou|miou|dice|reward|return|score)(?:$|[^a-z])"
)


@lru_cache(maxsize=4096)
def metric_direction(tag: str) -> str | None:
    """Which way a metric is better: ``"min"`` (losses, error rates, perplexity),
    ``"max"`` (accuracy, F1, AUC, BLEU, reward, …) or None (``lr``, ``epoch``, a name
    that does not say). The vocabulary decides first (``Loss/train`` is a loss), then
    a word of the tag (``hparam/final_loss``, ``top1_err``)."""
    name = canonical_metric(tag)
    if name is not None:
        quantity = name.rpartition("_")[2]
        if quantity in _LOWER_BETTER:
            return "min"
        if quantity in _HIGHER_BETTER:
            return "max"
        return None
    low = _CAMEL.sub("_", tag).lower()
    if _LOWER_WORDS.search(low):
        return "min"
    if _HIGHER_WORDS.search(low):
        return "max"
    return None
