"""The store: one SQLite file (:mod:`.sqlite`), its schema and migrations
(:mod:`.schema`), queries (:mod:`.query`), full-text search (:mod:`.search`), the
journal of writes kept while it was busy (:mod:`.journal`), config signatures
(:mod:`.configsig`) and how values are encoded (:mod:`.codec`)."""

from labbook.store.codec import dump_json, new_run_id, now_iso, safe_text, utc_iso
from labbook.store.sqlite import Store

__all__ = ["Store", "dump_json", "new_run_id", "now_iso", "safe_text", "utc_iso"]
