"""CSR build and incidence: invariants and exact results on small and random graphs."""

import numpy as np
import pytest

from pipeline.core.edges import EdgeTable
from pipeline.graph import csr as csr_mod
from pipeline.graph.csr import CSR, build_csr, incidence
from tests.helpers import check_csr


def random_table(rng, n, m, directed):
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    w = rng.integers(1, 1000, m) / 1000
    return EdgeTable("t", src, dst, w, directed)


@pytest.mark.parametrize("directed", [False, True])
def test_invariants_on_random_graphs(directed):
    rng = np.random.default_rng(0)
    for n, m in [(1, 0), (5, 30), (50, 500), (300, 4000)]:
        t = random_table(rng, n, m, directed)
        csr, st = build_csr(t, n)
        assert check_csr(csr) == []
        # oracle: python dict of pairs with max weight
        expect = {}
        for a, b, w in zip(t.src.tolist(), t.dst.tolist(), t.weight.tolist(), strict=True):
            if a == b:
                continue
            key = (a, b) if directed else (min(a, b), max(a, b))
            expect[key] = max(expect.get(key, -1.0), w)
        got = {}
        rows = csr.rows()
        for r, c, w in zip(rows.tolist(), csr.indices.tolist(), csr.weights.tolist(), strict=True):
            key = (r, c) if directed else (min(r, c), max(r, c))
            got.setdefault(key, w)
            assert got[key] == w
        assert {k: np.float32(v) for k, v in expect.items()} == {k: np.float32(v) for k, v in got.items()}
        assert st["pairs"] == len(expect) == csr.n_pairs
        assert csr.nnz == (len(expect) if directed else 2 * len(expect))
        assert st["rows_in"] == (st["dropped_self_loop"] + st["merged_duplicate"] + st.get("merged_mirror", 0)
                                 + st["pairs"])


@pytest.mark.parametrize("directed", [False, True])
def test_incidence_consistent_with_csr(directed):
    rng = np.random.default_rng(1)
    csr, _ = build_csr(random_table(rng, 200, 3000, directed), 200)
    ip, ids = incidence(csr)
    rows, cols = csr.rows(), csr.indices
    for g in range(200):
        got = ids[ip[g]:ip[g + 1]]
        want = np.concatenate([np.flatnonzero(rows == g), np.flatnonzero(cols == g)])
        assert np.array_equal(got, want)
        if not directed:  # the in-edge at offset k mirrors the out-edge at offset k
            d = ip[g + 1] - ip[g]
            out_e, in_e = got[: d // 2], got[d // 2:]
            assert np.array_equal(rows[in_e], cols[out_e]) and np.array_equal(cols[in_e], rows[out_e])
    # without self-loops every edge is listed under exactly its two endpoints
    assert len(ids) == 2 * csr.nnz


def test_check_csr_catches_violations():
    ok = CSR(np.array([0, 1, 2]), np.array([1, 0], np.int32), np.ones(2, np.float32), False)
    assert check_csr(ok) == []
    asym = CSR(np.array([0, 1, 1]), np.array([1], np.int32), np.ones(1, np.float32), False)
    assert any("symmetric" in v for v in check_csr(asym))
    bad_mirror = CSR(ok.indptr, ok.indices, ok.weights, False, mirror=np.array([0, 1], np.int32))
    assert any("mirror" in v for v in check_csr(bad_mirror))
    loop = CSR(np.array([0, 1, 1]), np.array([0], np.int32), np.ones(1, np.float32), True)
    assert any("self-loop" in v for v in check_csr(loop))
    unsorted = CSR(np.array([0, 2, 2, 2]), np.array([2, 1], np.int32), np.ones(2, np.float32), True)
    assert any("increasing" in v for v in check_csr(unsorted))


def test_out_of_range_index_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        build_csr(EdgeTable("t", [0], [5], [1.0], False), 3)


def test_edge_index_matches_rows_and_indices():
    csr, _ = build_csr(EdgeTable("t", [0, 2], [1, 1], [0.5, 0.25], False), 3)
    ei = csr.edge_index()
    assert ei.dtype == np.int64
    assert ei.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]


@pytest.mark.parametrize("directed", [False, True])
def test_sorted_fast_path_equals_general_path(directed, monkeypatch):
    """Rows already in CSR order (as STRING files are) take a fast path; results must not differ."""
    general = []
    sorting = csr_mod._build_csr_sorting
    monkeypatch.setattr(csr_mod, "_build_csr_sorting", lambda *a, **k: general.append(1) or sorting(*a, **k))
    rng = np.random.default_rng(2)
    csr, _ = build_csr(random_table(rng, 400, 6000, directed), 400)
    rows, cols = csr.rows(), csr.indices
    w = rng.integers(1, 1000, csr.nnz).astype(np.float32) / 1000  # mirror rows may disagree
    sorted_rows = EdgeTable("t", rows, cols, w, directed)
    perm = rng.permutation(csr.nnz)
    shuffled = EdgeTable("t", rows[perm], cols[perm], w[perm], directed)
    general.clear()
    fast, st_fast = build_csr(sorted_rows, 400)
    assert general == []  # the fast path was taken ...
    slow, st_slow = build_csr(shuffled, 400)
    assert general == [1]  # ... and this one took the general path
    for a, b in zip((fast.indptr, fast.indices, fast.weights), (slow.indptr, slow.indices, slow.weights), strict=True):
        assert np.array_equal(a, b)
    if not directed:
        assert np.array_equal(fast.mirror, slow.mirror)
        assert np.array_equal(fast.mirror[fast.mirror], np.arange(fast.nnz))
    assert st_fast == st_slow
    assert check_csr(fast) == []
