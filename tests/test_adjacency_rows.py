"""Sampled adjacency rows: positives, negatives, padding, determinism and the degree mode."""

import numpy as np
import pytest

from pipeline.core.edges import EdgeTable
from pipeline.graph.csr import CSR, build_csr
from pipeline.precompute import adjacency as adj
from pipeline.precompute.adjacency import AdjacencyRows, eligible_rows, expand_rows, sample_adjacency_rows


def random_graph(seed: int, n: int, m: int, directed: bool, n_added: int = 5) -> tuple[CSR, np.ndarray]:
    """A random CSR over ``n`` genes whose last ``n_added`` are ``added`` (no edges, invalid), plus ``valid``."""
    rng = np.random.default_rng(seed)
    core = n - n_added
    hub = rng.random(core) ** 3  # heavy-ish tail: a few genes get most edges
    p = hub / hub.sum()
    src, dst = rng.choice(core, m, p=p), rng.choice(core, m, p=p)
    csr, _ = build_csr(EdgeTable("t", src, dst, rng.integers(1, 1000, m) / 1000, directed), n)
    valid = np.ones(n, dtype=bool)
    valid[core:] = False
    return csr, valid


def sample(csr: CSR, valid: np.ndarray, **kw) -> AdjacencyRows:
    args = dict(n_rows=8, n_negatives=6, steps=range(30), seed=0, graph="t", epoch=0)
    args.update(kw)
    return sample_adjacency_rows(csr.indptr, csr.indices, valid, **args)


def neighbours(csr: CSR, i: int) -> np.ndarray:
    return csr.indices[csr.indptr[i]:csr.indptr[i + 1]]


GRAPHS = [(False, "uniform"), (True, "uniform"), (False, "degree"), (True, "degree")]


@pytest.mark.parametrize("directed,mode", GRAPHS)
def test_rows_and_negatives_invariants(directed, mode):
    csr, valid = random_graph(1, 60, 300, directed)
    s = sample(csr, valid, mode=mode)
    assert s.rows.dtype == np.int32 and s.negatives.dtype == np.int32
    assert s.rows.shape == (30, 8) and s.negatives.shape == (30, 8, 6)
    elig = eligible_rows(csr.indptr, valid)
    assert elig.sum() > 8
    assert not elig[-5:].any()
    for t in range(30):
        rows = s.rows[t]
        assert (rows >= 0).all() and np.all(np.diff(rows) > 0)  # distinct, ascending, no pad needed
        assert elig[rows].all() and (csr.degree()[rows] >= 1).all()
        for r, neg in zip(rows.tolist(), s.negatives[t], strict=True):
            assert (neg >= 0).all() and np.all(np.diff(neg) > 0)  # pool is large enough: no pads, distinct
            assert valid[neg].all()
            assert r not in neg
            assert not np.isin(neg, neighbours(csr, r)).any()


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_expand_rows_targets(directed, weighted):
    csr, valid = random_graph(2, 50, 250, directed)
    s = sample(csr, valid, steps=range(5), n_rows=60)  # more rows than eligible: pads included
    assert (s.rows < 0).any() and (s.rows >= 0).any()  # both branches below are taken
    m = s.rows.size
    row_ptr, cols, target, positive = expand_rows(csr.indptr, csr.indices, csr.weights, s.rows, s.negatives,
                                                  weighted=weighted)
    assert row_ptr.dtype == np.int64 and cols.dtype == np.int32 and target.dtype == np.float32
    assert positive.dtype == bool and len(row_ptr) == m + 1 and row_ptr[-1] == len(cols)
    negs = s.negatives.reshape(m, -1)
    for t, r in enumerate(s.rows.reshape(-1).tolist()):
        sl = slice(row_ptr[t], row_ptr[t + 1])
        c, tg, pos = cols[sl], target[sl], positive[sl]
        if r < 0:
            assert len(c) == 0
            continue
        nb = neighbours(csr, r)
        d = len(nb)
        assert np.array_equal(c[:d], nb) and pos[:d].all() and not pos[d:].any()
        assert np.array_equal(c[d:], negs[t][negs[t] >= 0])
        assert (tg[d:] == 0).all() and (tg[:d] > 0).all()
        assert abs(float(tg[:d].astype(np.float64).sum()) - 1.0) < 1e-5
        assert valid[c].all()
        if weighted:
            w = csr.weights[csr.indptr[r]:csr.indptr[r + 1]].astype(np.float64)
            np.testing.assert_allclose(tg[:d], w / (w.sum() + 1e-8), rtol=1e-6)
        else:
            np.testing.assert_allclose(tg[:d], 1.0 / (d + 1e-8), rtol=1e-6)


def test_expand_rows_eps():
    csr = CSR(np.array([0, 2, 3, 4]), np.array([1, 2, 0, 0], np.int32), np.array([1, 3, 1, 3], np.float32), False)
    rows = np.array([[0]], np.int32)
    negs = np.zeros((1, 1, 0), np.int32)
    _, _, t, _ = expand_rows(csr.indptr, csr.indices, csr.weights, rows, negs, eps=1.0)
    np.testing.assert_allclose(t, [1 / 3, 1 / 3])
    _, _, t, _ = expand_rows(csr.indptr, csr.indices, csr.weights, rows, negs, eps=1.0, weighted=True)
    np.testing.assert_allclose(t, [1 / 5, 3 / 5])


@pytest.mark.parametrize("mode", adj.MODES)
def test_determinism(mode):
    csr, valid = random_graph(3, 80, 400, False)
    kw = dict(n_rows=10, n_negatives=7, seed=5, graph="string12_coexpression", epoch=2, mode=mode)
    a = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=range(40), **kw)
    b = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=range(40), **kw)
    assert a.rows.tobytes() == b.rows.tobytes() and a.negatives.tobytes() == b.negatives.tobytes()
    p1 = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=range(0, 13), **kw)
    p2 = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=np.arange(13, 40), **kw)
    assert np.concatenate([p1.rows, p2.rows]).tobytes() == a.rows.tobytes()
    assert np.concatenate([p1.negatives, p2.negatives]).tobytes() == a.negatives.tobytes()
    one = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=[17], **kw)
    assert np.array_equal(one.rows[0], a.rows[17]) and np.array_equal(one.negatives[0], a.negatives[17])
    for change in (dict(epoch=3), dict(graph="physical"), dict(seed=6)):
        other = sample_adjacency_rows(csr.indptr, csr.indices, valid, steps=range(40), **{**kw, **change})
        assert not np.array_equal(other.rows, a.rows), change
        assert not np.array_equal(other.negatives, a.negatives), change


def test_block_size_and_neighbour_test_do_not_change_results(monkeypatch):
    csr, valid = random_graph(4, 90, 600, True)
    ref = sample(csr, valid, steps=range(50), mode="degree")
    monkeypatch.setattr(adj, "BLOCK_STEPS", 7)
    blocked = sample(csr, valid, steps=range(50), mode="degree")
    monkeypatch.setattr(adj, "BITSET_MAX_BYTES", 0)  # binary search of the CSR instead of the bit matrix
    searched = sample(csr, valid, steps=range(50), mode="degree")
    for s in (blocked, searched):
        assert np.array_equal(s.rows, ref.rows) and np.array_equal(s.negatives, ref.negatives)


def test_degree_mode_prefers_high_degree_rows():
    # 5 hubs linked to every leaf (degree 50); 50 leaves of degree 5
    n_hub, n_leaf = 5, 50
    src = np.repeat(np.arange(n_hub), n_leaf)
    dst = np.tile(np.arange(n_hub, n_hub + n_leaf), n_hub)
    csr, _ = build_csr(EdgeTable("star", src, dst, np.ones(len(src)), False), n_hub + n_leaf)
    valid = np.ones(n_hub + n_leaf, dtype=bool)
    kw = dict(n_rows=5, n_negatives=0, steps=range(2000), seed=0, graph="star", epoch=0)
    freq = {}
    for mode in adj.MODES:
        s = sample_adjacency_rows(csr.indptr, csr.indices, valid, mode=mode, **kw)
        freq[mode] = np.bincount(s.rows.reshape(-1), minlength=n_hub + n_leaf) / 2000
    hub_u, leaf_u = freq["uniform"][:n_hub].mean(), freq["uniform"][n_hub:].mean()
    hub_d, leaf_d = freq["degree"][:n_hub].mean(), freq["degree"][n_hub:].mean()
    assert 0.7 < hub_u / leaf_u < 1.4  # uniform: 5/55 each
    assert hub_d > 3 * leaf_d
    # one row per step: inclusion probability exactly proportional to degree
    kw1 = {**kw, "n_rows": 1, "steps": range(4000)}
    one = sample_adjacency_rows(csr.indptr, csr.indices, valid, mode="degree", **kw1)
    p_hub = np.isin(one.rows, np.arange(n_hub)).mean()
    assert abs(p_hub - 0.5) < 0.05  # hubs hold half of the degree mass


@pytest.mark.parametrize("force_exact", [False, True])
def test_negatives_uniform_over_pool(monkeypatch, force_exact):
    if force_exact:
        monkeypatch.setattr(adj, "EXACT_RATIO", 10**9)  # every row drawn from its enumerated pool
    csr, valid = random_graph(5, 40, 120, False)
    r = int(np.flatnonzero(eligible_rows(csr.indptr, valid))[0])
    pool = np.setdiff1d(np.flatnonzero(valid), np.append(neighbours(csr, r), r))
    s = sample(csr, valid, n_rows=100, n_negatives=3, steps=range(1500))  # all rows, every step
    slot = int(np.flatnonzero(s.rows[0] == r)[0])
    negs = s.negatives[:, slot]
    assert np.isin(negs, pool).all()
    counts = np.bincount(negs.reshape(-1), minlength=40)[pool]
    expect = 1500 * 3 / len(pool)
    assert counts.min() > 0.6 * expect and counts.max() < 1.4 * expect


def test_round_cap_falls_back_to_the_pool(monkeypatch):
    monkeypatch.setattr(adj, "MAX_ROUNDS", 1)
    csr, valid = random_graph(6, 30, 200, False)
    s = sample(csr, valid, n_rows=30, n_negatives=10, steps=range(20))
    assert (s.rows < 0).any() and (s.rows >= 0).any()  # both branches below are taken
    for t in range(20):
        for r, neg in zip(s.rows[t].tolist(), s.negatives[t], strict=True):
            if r < 0:
                assert (neg == -1).all()
                continue
            pool = np.setdiff1d(np.flatnonzero(valid), np.append(neighbours(csr, r), r))
            got = neg[neg >= 0]
            assert len(got) == min(10, len(pool)) and np.isin(got, pool).all() and np.all(np.diff(got) > 0)


def test_padding_on_a_tiny_graph():
    # 0 - 1, 1 - 2 (undirected), gene 3 isolated but valid, gene 4 added (invalid, no edges)
    csr, _ = build_csr(EdgeTable("tiny", [0, 1], [1, 2], [1.0, 1.0], False), 5)
    valid = np.array([True, True, True, True, False])
    s = sample(csr, valid, n_rows=5, n_negatives=3, steps=range(4), mode="degree")
    assert s.rows.tolist() == [[0, 1, 2, -1, -1]] * 4
    # pools: 0 -> {2, 3}; 1 -> {3}; 2 -> {0, 3}; pad rows have no negatives
    want = [[2, 3, -1], [3, -1, -1], [0, 3, -1], [-1, -1, -1], [-1, -1, -1]]
    assert s.negatives.tolist() == [want] * 4


def test_empty_and_degenerate_inputs():
    csr, valid = random_graph(7, 20, 0, False)  # no edges: no eligible row
    s = sample(csr, valid)
    assert (s.rows == -1).all() and (s.negatives == -1).all() and s.negatives.shape == (30, 8, 6)
    csr, valid = random_graph(7, 20, 60, False)
    assert sample(csr, valid, n_rows=0).rows.shape == (30, 0)
    z = sample(csr, valid, n_negatives=0)
    assert z.negatives.shape == (30, 8, 0) and (z.rows >= 0).all()
    row_ptr, cols, _, positive = expand_rows(csr.indptr, csr.indices, csr.weights, z.rows, z.negatives)
    assert row_ptr[-1] == csr.degree()[z.rows].sum() and positive.all()
    e = sample(csr, valid, steps=[])
    assert e.rows.shape == (0, 8) and e.negatives.shape == (0, 8, 6)
    row_ptr, cols, _, _ = expand_rows(csr.indptr, csr.indices, csr.weights, e.rows, e.negatives)
    assert row_ptr.tolist() == [0] and len(cols) == 0


def test_bad_arguments():
    csr, valid = random_graph(8, 20, 60, False)
    with pytest.raises(ValueError, match="uniform, degree"):
        sample(csr, valid, mode="pagerank")
    with pytest.raises(ValueError, match=">= 0"):
        sample(csr, valid, n_rows=-1)
    with pytest.raises(ValueError, match=">= 0"):
        sample(csr, valid, n_negatives=-2)
    with pytest.raises(ValueError, match="valid"):
        sample(csr, valid[:-1])


# --- the stored form of the negatives ----------------------------------------------------

@pytest.mark.parametrize("bits", range(8, 17))
@pytest.mark.parametrize("m", [0, 1, 5, 8, 13, 64])
def test_negative_packing_round_trips(bits, m):
    """NegativePacking.pack/unpack over leading axes [2, 3] of steps of R = 4 rows: the largest
    value that fits, pads among the values and the M' - M padding slots come back exactly."""
    from pipeline.precompute.adjacency import NegativePacking, neg_bits

    rng = np.random.default_rng(bits * 100 + m)
    top = (1 << bits) - 2  # the largest gene id of `bits` bits (value gene + 1 = 2**bits - 1)
    p = NegativePacking.for_genes(top + 1, m)
    assert p.bits == bits == neg_bits(top + 1) and p.padded == -(-m // 8) * 8 and p.padded % 8 == 0
    neg = rng.integers(-1, top + 1, size=(2, 3, 4, m)).astype(np.int32)
    if m:
        neg[0, 0, 0, 0], neg[1, 2, 3, -1] = top, -1
    packed = p.pack(neg)
    assert packed.dtype == np.uint8 and packed.shape == (2, 3, p.step_bytes(4))
    assert p.step_bytes(4) == 4 * p.padded * bits // 8 == 4 * (p.lo_row_bytes + p.hi_row_bytes)
    back = p.unpack(packed, rows=4)
    assert back.dtype == np.int32 and back.shape == neg.shape and np.array_equal(back, neg)
    for i, j in np.ndindex(2, 3):  # vectorised = step by step
        assert np.array_equal(p.pack(neg[i, j]), packed[i, j])
        assert np.array_equal(p.unpack(packed[i, j], rows=4), neg[i, j])


def test_negative_packing_layout_is_what_the_stream_ships():
    """A stored step is lo (R*M' low bytes, row-major) then hi: the stream's torch decoder reads the
    two parts as they are, and the pads are stored as value 0."""
    import torch

    from pipeline.precompute.adjacency import NegativePacking, pack_negatives, unpack_negatives_np
    from pipeline.stream.batches import unpack_negatives

    p = NegativePacking.for_genes(6607, 5)
    assert p.to_dict() == {"bits": 13, "n_negatives": 5, "padded": 8}
    assert NegativePacking.from_dict(p.to_dict()) == p
    neg = np.array([[0, 1, 299, 6605, 6606], [7, -1, -1, -1, -1], [-1] * 5])
    packed = p.pack(neg)
    full = np.concatenate([neg, np.full((3, 3), -1)], axis=1).reshape(-1)  # M' = 8: three pad slots a row
    lo, hi = pack_negatives(full, 13)
    assert packed.tolist() == lo.tolist() + hi.tolist() and len(lo) == 24 and len(hi) == 15
    assert lo[:8].tolist() == [1, 2, 44, 206, 207, 0, 0, 0] and (lo[13:] == 0).all()
    assert np.array_equal(unpack_negatives_np(lo, hi, 13), full)
    split = 3 * p.lo_row_bytes
    got = unpack_negatives(torch.from_numpy(packed[:split]), torch.from_numpy(packed[split:]), 13)
    assert got.view(3, 8)[:, :5].tolist() == neg.tolist()


def test_negative_packing_refuses_what_does_not_fit():
    from pipeline.precompute.adjacency import NegativePacking, pack_negatives

    p = NegativePacking.for_genes(300, 8)  # 9 bits: genes 0..510
    p.pack(np.full((2, 8), 510))
    with pytest.raises(ValueError, match="do not fit in 9 bits"):
        p.pack(np.full((2, 8), 511))
    with pytest.raises(ValueError, match="do not fit"):
        p.pack(np.full((2, 8), -2))
    with pytest.raises(ValueError, match="expected"):
        p.pack(np.zeros((2, 7), int))
    with pytest.raises(ValueError, match="expected"):
        p.unpack(np.zeros(3 * 9, np.uint8), rows=2)
    with pytest.raises(ValueError, match="groups of 8"):
        pack_negatives(np.zeros(12, int), 9)
    with pytest.raises(ValueError, match="padded"):
        NegativePacking(13, 5, 5)
    with pytest.raises(ValueError, match="8..16"):
        NegativePacking(17, 8, 8)
