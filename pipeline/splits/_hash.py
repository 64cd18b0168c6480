"""A stable 64-bit mix (splitmix64), so split labels never depend on a library's hash."""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``x + seed * golden`` (uint64, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform01(x: np.ndarray, seed: int) -> np.ndarray:
    """A uniform float64 in [0, 1) per value of ``x``, fixed by (value, seed).

    >>> uniform01(np.array([1, 2, 1]), seed=0).round(3).tolist()
    [0.338, 0.859, 0.338]
    """
    return (splitmix64(x, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
