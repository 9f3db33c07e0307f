"""Significance stars, as figures and tables mark one-sided tests."""

from __future__ import annotations


def significance_stars(p: float) -> str:
    """``***`` for p < 0.001, ``**`` for p < 0.01, ``*`` for p < 0.05, else ``""`` (also for NaN).

    Examples
    --------
    >>> [significance_stars(p) for p in (0.0004, 0.003, 0.04, 0.2, float("nan"))]
    ['***', '**', '*', '', '']
    """
    return next((stars for stars, bound in (("***", 0.001), ("**", 0.01), ("*", 0.05)) if p < bound), "")
