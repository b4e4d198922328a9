"""Capture what a run ran with: its code (git), its environment, and its seed.

The modules here read state that exists outside a run's own log files: the git
work tree that encloses the run directory, the interpreter and environment
variables of the training process, and the seed found in configs, command lines
and the environment. They never raise on bad input: they warn once through
:func:`labbook.warn.warn` and return what could be had.
"""
