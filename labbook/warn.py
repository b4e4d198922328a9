"""One-line warnings about input that could not be read.

Bad input never stops an import: readers call :func:`warn` with the file and a
short reason, and carry on. The CLI prints these as ``labbook: warning: FILE: reason``
on stderr; tests read them with pytest's ``caplog``.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("labbook")


def warn(path: str | os.PathLike[str] | None, message: str) -> None:
    """Log a one-line warning naming ``path``; newlines in the message are folded."""
    text = " ".join(str(message).split())
    if path is None:
        logger.warning("%s", text)
    else:
        logger.warning("%s: %s", os.fspath(path), text)
