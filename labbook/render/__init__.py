"""Text for people: run lists and records (:mod:`.runs`), diffs (:mod:`.diff`)."""
