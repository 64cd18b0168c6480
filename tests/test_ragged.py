"""Ragged-array helpers and the edge-orientation helpers, against naive per-row loops."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.ragged import indptr_from_lengths, owner, segment_sum, take_csr
from pipeline.precompute.masks import both_orientations, one_orientation, removed_edges


def _random_csr(rng: np.random.Generator, m: int, empty_tail: int) -> np.ndarray:
    lens = rng.integers(0, 5, m)
    lens[m - empty_tail:] = 0  # rows at the end with nothing: the case reduceat gets wrong
    return np.concatenate([[0], np.cumsum(lens)])


@pytest.mark.parametrize("empty_tail", [0, 1, 7])
def test_segment_sum_owner_take_csr_equal_loops(empty_tail):
    rng = np.random.default_rng(empty_tail)
    ptr = _random_csr(rng, 50, empty_tail)
    vals = rng.integers(-5, 100, ptr[-1])
    assert segment_sum(vals, ptr).tolist() == [int(vals[a:b].sum()) for a, b in zip(ptr[:-1], ptr[1:], strict=True)]
    assert owner(ptr).tolist() == [i for i in range(50) for _ in range(ptr[i + 1] - ptr[i])]
    assert owner(ptr, np.int32).dtype == np.int32 and np.array_equal(owner(ptr, np.int32), owner(ptr))
    assert np.array_equal(indptr_from_lengths(np.diff(ptr)), ptr)
    idx = rng.integers(0, 50, 30)
    nptr, nvals = take_csr(ptr, idx, vals)
    assert nvals.tolist() == [int(v) for i in idx for v in vals[ptr[i]:ptr[i + 1]]]
    assert np.diff(nptr).tolist() == [int(ptr[i + 1] - ptr[i]) for i in idx]
    assert segment_sum(np.zeros(0, np.int64), np.zeros(4, np.int64)).tolist() == [0, 0, 0]


def test_one_orientation_then_both_equals_full_removed_edges():
    """Undirected graph with both orientations stored: removed ids of one orientation, mirrored
    back, equal the removed ids over the full incidence, whatever rows end empty."""
    rng = np.random.default_rng(3)
    n = 40
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, n, (120, 2)) if a != b}
    und = sorted(pairs | {(b, a) for a, b in pairs})
    src = np.array([a for a, _ in und])
    dst = np.array([b for _, b in und])
    eid = {e: i for i, e in enumerate(und)}
    mirror = np.array([eid[(b, a)] for a, b in und], dtype=np.int32)
    inc = [sorted(np.flatnonzero((src == g) | (dst == g)).tolist()) for g in range(n)]
    inc_ptr = np.concatenate([[0], np.cumsum([len(x) for x in inc])])
    inc_ids = np.array([e for x in inc for e in x], dtype=np.int32)
    r_ptr = _random_csr(rng, 60, 5)
    r_genes = rng.integers(0, n, r_ptr[-1])
    full = removed_edges(inc_ptr, inc_ids, r_ptr, r_genes)
    for i in range(60):
        g = r_genes[r_ptr[i]:r_ptr[i + 1]]
        want = np.flatnonzero(np.isin(src, g) | np.isin(dst, g))
        assert full[1][full[0][i]:full[0][i + 1]].tolist() == want.tolist()
    op, oi = one_orientation(inc_ptr, inc_ids, mirror)
    assert (oi < mirror[oi]).all() and len(oi) == len(inc_ids) // 2
    half = removed_edges(op, oi, r_ptr, r_genes, n_edges=len(src))
    back = both_orientations(*half, mirror)
    assert np.array_equal(back[0], full[0]) and np.array_equal(back[1], full[1])

