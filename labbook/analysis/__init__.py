"""What labbook concludes from records: diffs and seed noise, checks before a run, a run's status and failure."""
