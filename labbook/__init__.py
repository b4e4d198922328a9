"""labbook: a lab notebook for ML experiments.

The public API: :func:`labbook.open` (a :class:`labbook.api.Notebook`: query runs,
read curves, add notes and tags; see :mod:`labbook.api`),
:class:`labbook.store.Store` (open a database, read records),
:func:`labbook.sources.importer.import_paths` (record run directories),
:func:`labbook.store.query.resolve` and :func:`labbook.store.query.select_runs` (find runs).
Importing this package is cheap: heavy dependencies load where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Notebook", "__version__", "open"]

if TYPE_CHECKING:
    from labbook.api import Notebook, open


def __getattr__(name: str) -> Any:
    """``labbook.open`` and ``labbook.Notebook``, loaded on first use. (Imported by
    name: the package itself is below every layer, :mod:`labbook.api` at the top.)"""
    if name in ("open", "Notebook"):
        import importlib

        return getattr(importlib.import_module("labbook.api"), name)
    raise AttributeError(f"module 'labbook' has no attribute {name!r}")
