"""Ragged arrays in CSR form (``indptr`` int64 [m+1] + aligned values): the few vectorised
operations every stage needs, with no Python loop per row."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike


def indptr_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """The int64 indptr of rows of these lengths.

    >>> indptr_from_lengths(np.array([2, 0, 3])).tolist()
    [0, 2, 2, 5]
    """
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr


def owner(indptr: np.ndarray, dtype: DTypeLike = np.int64) -> np.ndarray:
    """Row number of every value, as ``dtype`` (int64; int32 halves the memory of an edge list).

    >>> owner(np.array([0, 2, 2, 3])).tolist()
    [0, 0, 2]
    """
    return np.repeat(np.arange(len(indptr) - 1, dtype=dtype), np.diff(indptr))


def indptr_from_owner(rows: np.ndarray, m: int) -> np.ndarray:
    """The indptr of ``m`` rows whose values belong, in order, to the (ascending) ``rows``.

    >>> indptr_from_owner(np.array([0, 0, 2]), 4).tolist()
    [0, 2, 2, 3, 3]
    """
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=ptr[1:])  # a row >= m: shape error, not a longer ptr
    return ptr


def segment_sum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum of ``values`` per row (0 for empty rows), int64 or float as ``values``.

    >>> segment_sum(np.array([1, 2, 3]), np.array([0, 2, 2, 3])).tolist()
    [3, 0, 3]
    >>> segment_sum(np.array([1, 2, 3, 4]), np.array([0, 1, 4, 4])).tolist()   # empty rows at the end
    [1, 9, 0]
    """
    # differences of a running sum: reduceat cannot express a non-empty row followed by
    # empty ones at the end (it would stop the row one value short)
    run = np.zeros(len(values) + 1, dtype=np.result_type(values.dtype, np.int64))
    np.cumsum(values, out=run[1:])
    return run[indptr[1:]] - run[indptr[:-1]]


def take_csr(ptr: np.ndarray, idx: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows ``idx`` of a CSR (``ptr`` + aligned value arrays): (new ptr, values...).

    >>> take_csr(np.array([0, 2, 3, 5]), np.array([2, 0]), np.arange(5))
    (array([0, 2, 4]), array([3, 4, 0, 1]))
    """
    a, lens = ptr[idx], ptr[idx + 1] - ptr[idx]
    out = indptr_from_lengths(lens)
    pos = np.arange(out[-1], dtype=np.int64)
    pos += np.repeat(a - out[:-1], lens)
    return (out, *(v[pos] for v in values))
