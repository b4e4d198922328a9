"""Student's t distribution without scipy: what the seed-noise verdicts of ``labbook diff`` need.

:func:`betainc` is the regularised incomplete beta function I_x(a, b), by its
continued fraction (modified Lentz, as in Numerical Recipes' ``betacf``), taken on
the side of ``x`` where it converges fast. The t distribution's tails follow from
it: for ``t >= 0``, ``P(|T| > t) = I_{df / (df + t²)}(df / 2, 1 / 2)``.
:func:`t_ppf` inverts :func:`t_cdf` by Newton's method kept inside a bracket
(bisection where a step would leave it). ``df`` may be any positive real (Welch's
degrees of freedom are not whole numbers).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

#: Continued-fraction convergence: relative size of the last factor's change.
_EPS = 1e-15
#: A tiny number standing in for zero in Lentz's method.
_TINY = 1e-300
#: Beyond this many degrees of freedom the t distribution is the normal one (to 1e-9).
_DF_NORMAL = 1e10


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    # About sqrt(max(a, b)) terms are needed; a generous bound that still ends.
    for m in range(1, 10_000 + int(10 * math.sqrt(max(a, b)))):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def _betainc_both(a: float, b: float, x: float, y: float) -> tuple[float, float]:
    """``(I_x(a, b), 1 - I_x(a, b))``, each without cancellation; ``y`` is ``1 - x``, given exactly."""
    if x == 0.0 or y == 0.0:
        return (0.0, 1.0) if x == 0.0 else (1.0, 0.0)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        low = front * _betacf(a, b, x) / a
        return low, 1.0 - low
    high = front * _betacf(b, a, y) / b
    return 1.0 - high, high


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc({a}, {b}, {x}): needs a, b > 0 and 0 <= x <= 1")
    return _betainc_both(a, b, x, 1.0 - x)[0]


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, not {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    if df > _DF_NORMAL:
        return 2.0 * NormalDist().cdf(-abs(t))
    t2 = t * t
    # I_x(df/2, 1/2) at x = df / (df + t²), with 1 - x = t² / (df + t²) exact.
    return _betainc_both(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))[0]


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * t_sf2(t, df)
    return 1.0 - tail if t >= 0 else tail


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t with ``df`` degrees of freedom at ``t``."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def _start(p: float, df: float) -> float:
    """A first guess at the p-quantile (p > 0.5): the Cornish-Fisher expansion around z."""
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


@lru_cache(maxsize=4096)
def t_ppf(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, not {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, not {df}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df > _DF_NORMAL:
        return NormalDist().inv_cdf(p)
    tail = 2.0 * (1.0 - p)  # the two-sided tail the quantile leaves: t_sf2(q) == tail
    lo, hi = 0.0, max(_start(p, df), 1.0)
    while t_sf2(hi, df) > tail:  # make sure the root is in [lo, hi]
        lo, hi = hi, hi * 2.0
    x = min(max(_start(p, df), lo), hi)
    for _ in range(200):
        f = (1.0 - 0.5 * t_sf2(x, df)) - p
        if f == 0.0:
            return x
        if f < 0:
            lo = x
        else:
            hi = x
        step = f / t_pdf(x, df)
        nxt = x - step
        if not lo < nxt < hi:
            nxt = (lo + hi) / 2.0
        if abs(nxt - x) <= 1e-13 * max(1.0, abs(x)) or hi - lo <= 1e-14 * max(1.0, hi):
            return nxt
        x = nxt
    return x
