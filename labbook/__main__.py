"""``python -m labbook``: the CLI; ``python -m labbook check --hook …`` is the shell hooks'
fast path (:func:`labbook.analysis.check.main`: no click, about half the start-up)."""

import sys

if sys.argv[1:2] == ["check"] and "--hook" in sys.argv[2:]:
    from labbook.analysis.check import main as hook_main

    raise SystemExit(hook_main(sys.argv[1:]))

from labbook.cli import main

main()
