"""Readers for the files ML frameworks leave behind (event files, logs, metadata).

Each reader turns one kind of file into labbook's plain model objects, warns about
bad input through :func:`labbook.warn.warn`, and never raises on it.
"""
