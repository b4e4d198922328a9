"""Chart axis labels, shared by the TUI's curves and ``labbook report``'s SVG charts."""

from __future__ import annotations

import math


def fmt_axis(v: float) -> str:
    """A y-axis label exact to 3 significant digits, short: ``4.11e13``, ``1e-5``, ``0.25``."""
    if v == 0:
        return "0"
    text = f"{v:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def fmt_step(x: float) -> str:
    """A step: an integer as itself (``1200000``), anything else as :func:`fmt_axis`."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e12:
        return str(int(x))
    return fmt_axis(x)
