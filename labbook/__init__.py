"""labbook: a lab notebook for ML experiments.

The public API: :class:`labbook.store.Store` (open a database, read records),
:func:`labbook.sources.importer.import_paths` (record run directories),
:func:`labbook.store.query.resolve` and :func:`labbook.store.query.select_runs` (find runs).
Importing this package is cheap: heavy dependencies load where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
