"""What makes two runs "the same experiment apart from the seed".

Two runs are seed peers when their configs agree on every key except seed-like
keys (``seed``, ``trainer.seed``, ``seed_everything``, …) and keys that only say
where a run writes (``output_dir``, ``run_name``, …). :func:`signature_hash` is
stored with each run (``runs.config_sig``, indexed) so that finding a run's peers
is one index lookup, even for configs with 10,000 keys.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from labbook.capture.seed import SEED_KEYS

SEED_NAMES = frozenset({*SEED_KEYS, "seed_everything"})
#: Keys that name where a run writes, not what it computes.
_IDENTITY_KEY = re.compile(
    r"^(output_dir|out_dir|outdir|out|logging_dir|log_dir|logdir|save_dir|run_name|run_id|"
    r"default_root_dir|dirpath|exp_dir|run_dir)$",
    re.I,
)


@functools.lru_cache(maxsize=65536)
def is_seed_key(key: str) -> bool:
    """Whether a dotted config key holds a seed (its last component is a seed name)."""
    return key.rsplit(".", 1)[-1].strip().lower() in SEED_NAMES


def is_identity_key(key: str) -> bool:
    """Whether a dotted config key only names an output location."""
    return bool(_IDENTITY_KEY.match(key.rsplit(".", 1)[-1]))


@functools.lru_cache(maxsize=65536)
def outside_signature(key: str) -> bool:
    # Cached: runs of one project share their keys, and configs can have 10,000 of them.
    return is_seed_key(key) or is_identity_key(key)


def config_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The config a run's seed peers share: without seed-like and output-like keys."""
    return {k: v for k, v in config.items() if not outside_signature(k)}


def signature_hash(config: dict[str, Any]) -> str | None:
    """A digest of :func:`config_signature`; None for a run without config (no peers)."""
    sig = config_signature(config)
    if not sig:
        return None
    text = json.dumps(sorted(sig.items()), default=str, ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
