"""k-hop node sets as bit sets: computed once per gene, then OR-ed per sample.

Semantics are PyG's ``k_hop_subgraph(node_idx=S, num_hops=k, edge_index,
relabel_nodes=False)`` with its default ``flow="source_to_target"``: the set holds
S and every gene with a path of at most ``k`` edges *into* a gene of S. Undirected
edge types are stored in both orientations, so for them "into" and "out of" agree
(the reference code stored one orientation and silently got in-neighbours only;
we do not). The k-hop set of S is the union of the k-hop sets of its genes, so
the per-gene sets are computed once (:func:`gene_khop_bits`) and a sample's set
is an OR of a few rows (:func:`sample_bits`).

Modes over several edge types:

- ``per_type`` (the reference): the k-hop set within each edge type separately,
  then the union over types;
- ``union``: the k-hop set over the union graph (paths may mix edge types);
  a superset of ``per_type``.

Bit sets are rows of ``ceil(n/8)`` bytes, little bit order (``np.packbits(...,
bitorder="little")``): gene ``g`` is bit ``g % 8`` of byte ``g // 8``.

>>> from pipeline.graph.csr import CSR
>>> path = CSR(np.array([0, 1, 2, 2]), np.array([1, 2], np.int32), np.ones(2, np.float32), True)  # 0->1->2
>>> bits = gene_khop_bits([path], 3, ks=(1, 2))
>>> unpack(bits[2][2:3], 3).nonzero()[1].tolist()     # 2 and what reaches it in <= 2 edges
[0, 1, 2]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipeline.core.ragged import indptr_from_owner
from pipeline.graph.csr import CSR

MODES = ("per_type", "union")
#: Gathered rows per block when propagating (bounds memory at ~block * n/8 bytes).
_BLOCK_EDGES = 1 << 16


def n_bytes(n_genes: int) -> int:
    return (n_genes + 7) // 8


def _words(n: int) -> int:
    return (n + 63) // 64


def predecessors(csr: CSR) -> tuple[np.ndarray, np.ndarray]:
    """CSR of in-neighbours: (indptr int64 [n+1], sources int32). Undirected types are their own."""
    if not csr.directed:
        return csr.indptr, csr.indices
    n = csr.n_nodes
    order = np.argsort(csr.indices, kind="stable")
    src = csr.rows()[order].astype(np.int32)
    return indptr_from_owner(csr.indices, n), src


def _propagate(prev: np.ndarray, ptr: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """One hop: ``out[g] = prev[g] | OR_{u in nbr(g)} prev[u]`` over uint64 word rows."""
    out = prev.copy()
    n = len(ptr) - 1
    g = 0
    while g < n:
        # a block of whole rows holding about _BLOCK_EDGES neighbours (at least one row)
        stop = int(np.searchsorted(ptr, ptr[g] + _BLOCK_EDGES, side="right")) - 1
        stop = min(max(stop, g + 1), n)
        lo, hi = int(ptr[g]), int(ptr[stop])
        if hi > lo:
            gathered = prev[nbr[lo:hi]]
            seg = ptr[g:stop] - lo
            has = np.diff(ptr[g:stop + 1]) > 0
            red = np.bitwise_or.reduceat(gathered, np.minimum(seg, hi - lo - 1), axis=0)
            rows = np.arange(g, stop)[has]
            out[rows] |= red[has]
        g = stop
    return out


def _khop_words(ptr: np.ndarray, nbr: np.ndarray, n: int, ks: Sequence[int]) -> dict[int, np.ndarray]:
    cur = np.zeros((n, _words(n)), dtype=np.uint64)
    ids = np.arange(n)
    cur[ids, ids >> 6] = np.uint64(1) << (ids & 63).astype(np.uint64)
    out = {}
    for k in range(1, max(ks) + 1):
        cur = _propagate(cur, ptr, nbr)
        if k in ks:
            out[k] = cur
    return out


def _to_bytes(words: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(words.astype("<u8", copy=False).view(np.uint8)[:, :n_bytes(n)])


def union_graph(csrs: Sequence[CSR], n: int) -> CSR:
    """One directed CSR holding every (source, target) pair of ``csrs`` once (weights 1)."""
    keys = [c.rows().astype(np.int64) * n + c.indices for c in csrs]
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    key.sort()
    if len(key):
        key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    rows, cols = key // n, (key % n).astype(np.int32)
    return CSR(indptr_from_owner(rows, n), cols, np.ones(len(cols), np.float32), True)


def gene_khop_bits(csrs: Sequence[CSR], n: int, ks: Sequence[int] = (1, 2, 3),
                   mode: str = "per_type", threads: int | None = None) -> dict[int, np.ndarray]:
    """Per gene ``g`` and ``k`` in ``ks``, the k-hop set of ``{g}``: k -> uint8 [n, ceil(n/8)] bit rows.

    ``csrs`` are the edge types to follow (all of them, typically); ``mode`` is
    ``per_type`` (union of per-type k-hop sets, the reference) or ``union`` (k-hop
    over the union graph).
    """
    if mode not in MODES:
        raise ValueError(f"k-hop mode {mode!r}: expected one of {', '.join(MODES)}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"k-hop: hop counts must be >= 1, got {ks}")
    graphs = [union_graph(csrs, n)] if mode == "union" else list(csrs)
    acc: dict[int, np.ndarray] = {}
    if not graphs:  # no edges: every set is the gene itself
        graphs = [CSR(np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), True)]

    def one(csr: CSR) -> dict[int, np.ndarray]:
        return _khop_words(*predecessors(csr), n, ks)

    # edge types on threads: the gathers and OR-reductions release the GIL
    with ThreadPoolExecutor(max(1, min(len(graphs), threads or os.cpu_count() or 1))) as ex:
        for part in ex.map(one, graphs):
            for k, w in part.items():
                acc[k] = w if k not in acc else acc[k] | w
    return {k: _to_bytes(w, n) for k, w in acc.items()}


def as_words(gene_bits: np.ndarray) -> np.ndarray:
    """Bit rows as uint64 words (zero-padded to a multiple of 8 bytes): :func:`sample_bits`'s
    fast input, worth making once when the same table serves many calls."""
    pad = (-gene_bits.shape[1]) % 8
    return np.ascontiguousarray(np.pad(gene_bits, ((0, 0), (0, pad))) if pad else gene_bits).view(np.uint64)


def sample_bits(gene_bits: np.ndarray, s_indptr: np.ndarray, s_genes: np.ndarray,
                width: int | None = None) -> np.ndarray:
    """The k-hop set of each sample: OR of its genes' rows of ``gene_bits``; uint8 [m, width].

    ``gene_bits`` is uint8 bit rows, or their :func:`as_words` (then ``width`` is the bytes
    per row to return, ``ceil(n/8)``). A sample without genes gets the empty set.
    """
    words = gene_bits if gene_bits.dtype == np.uint64 else as_words(gene_bits)
    width = width if width is not None else (gene_bits.shape[1] if gene_bits.dtype == np.uint8
                                             else 8 * gene_bits.shape[1])
    m = len(s_indptr) - 1
    out = np.zeros((m, width), dtype=np.uint8)
    has = np.diff(s_indptr) > 0
    if not has.any():
        return out
    # OR in 8-byte words (8x fewer operations than bytes)
    red = np.bitwise_or.reduceat(words[s_genes], np.minimum(s_indptr[:-1], len(s_genes) - 1), axis=0)
    out[has] = red[has].view(np.uint8)[:, :width]
    return out


def unpack(bits: np.ndarray, n: int) -> np.ndarray:
    """Bit rows -> bool [m, n]."""
    return np.unpackbits(bits, axis=1, count=n, bitorder="little").astype(bool)
