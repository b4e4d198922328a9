"""Shell hooks, the systemd user unit and the tmux snippet, shipped as ``labbook_hooks``.

Not code: ``labbook hooks install`` copies these files into place.
"""
