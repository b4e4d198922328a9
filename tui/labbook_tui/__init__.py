"""labbook's Textual app (``labbook tui``). Uses only labbook's public API."""
