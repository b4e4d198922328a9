"""Shell completion of run references (click's built-in completion).

``eval "$(_LABBOOK_COMPLETE=bash_source labbook)"`` in ``~/.bashrc`` (``zsh_source``
in ``~/.zshrc``) completes commands and options, and RUN arguments from the store:
run names and ids that start with what was typed (:func:`labbook.store.search.complete_runs`).
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Names and ids of runs that start with ``incomplete`` (``@last`` for ``@``).

    Completion never prints an error: a missing or unreadable database completes nothing.
    """
    items: list[Any] = []
    if "@last".startswith(incomplete) and incomplete:
        items.append(CompletionItem("@last", help="the newest run"))
    if incomplete.startswith("@"):
        return items
    db = ctx.find_root().params.get("db")
    try:
        from labbook.store import Store
        from labbook.store.search import complete_runs

        with Store.open(db, create=False) as store:
            found = complete_runs(store, incomplete)
    except Exception:
        return items
    items += [CompletionItem(value, help=help or None) for value, help in found]
    return items
