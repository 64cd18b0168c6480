"""Sampled adjacency rows: the training targets of graph-regularised attention heads.

Pure numpy, no I/O. For one edge type (a CSR as in :mod:`pipeline.graph.csr`: ``indptr`` int64
[n+1], ``indices`` int32 [nnz], columns ascending within a row, no self-loops, undirected
types stored in both directions) and a validity mask ``valid`` (bool [n]; ``False`` for
genes such as heterologous ``added`` ones, which have no edges), a training step ``s``
regularises ``n_rows`` rows of the attention map towards the row-normalised adjacency
``A_tilde[i, :] = A[i, :] / (d_i + eps)`` (loss ``KL(A_tilde[i, :] || attention[i, :])``).

Contract:

- **Rows.** :func:`eligible_rows`: valid genes with out-degree >= 1. Each step draws
  ``n_rows`` distinct eligible rows without replacement, uniformly (``mode="uniform"``)
  or with probability proportional to the out-degree (``mode="degree"``, Efraimidis-Spirakis
  exponential races). They are stored ascending; ``-1`` pads the end of a step when fewer
  than ``n_rows`` rows are eligible.
- **Negatives.** For every sampled row ``i``, ``n_negatives`` distinct columns drawn
  uniformly from the *pool* of ``i``: valid genes other than ``i`` that are not CSR
  neighbours of ``i`` (out-neighbours for a directed type). Stored ascending, then ``-1``
  pads when the pool is smaller than ``n_negatives`` (the whole pool is taken). Pad rows
  have only ``-1`` negatives.
- **Positives** are never sampled: :func:`expand_rows` takes the whole CSR row of each
  sampled row, with target ``A_ij / (d_i + eps)`` (binary: ``A_ij = 1``, ``d_i`` = degree;
  weighted: ``A_ij = w_ij``, ``d_i`` = the row's weight sum), followed by its negatives
  with target 0.
- **Counter-based determinism.** Every random number is splitmix64
  (:mod:`pipeline.core.splitmix`) of a key built from (``seed``, crc32 of ``graph``,
  ``epoch``, step, slot, attempt) -- no generator state is carried between steps. The
  output for step ``s`` is a function of (seed, graph, epoch, s, the CSR, valid, n_rows,
  n_negatives, mode) only: ``steps=range(0, 1000)`` gives the same bytes as the
  concatenation of ``range(0, 250)``, ``range(250, 1000)``, and steps are processed in
  blocks of :data:`BLOCK_STEPS` (memory is bounded; the block size never changes a result).
- **Stored form of the negatives** (:class:`NegativePacking`, :func:`pack_negatives`): each value
  ``gene + 1`` (0 = a ``-1`` pad) in ``neg_bits(n_genes)`` bits, a step's ``R x M`` negatives
  padded to ``M' = ceil(M/8)*8`` per row and stored as ``R*M'*bits/8`` bytes: every low byte,
  then the high bits of each group of 8 values. Packed once here, at precompute time, the
  stored bytes are what the stream ships to the trainer.

A path 0 - 1 - 2 and an added gene 3 (no edges, never sampled):

>>> indptr = np.array([0, 1, 3, 4, 4]); indices = np.array([1, 0, 2, 1], np.int32)
>>> valid = np.array([True, True, True, False])
>>> eligible_rows(indptr, valid).tolist()
[True, True, True, False]
>>> s = sample_adjacency_rows(indptr, indices, valid, n_rows=4, n_negatives=2, steps=[0],
...                           seed=0, graph="toy", epoch=0)
>>> s.rows.tolist()  # 3 eligible rows, one pad
[[0, 1, 2, -1]]
>>> s.negatives.tolist()  # pools: {2}, {}, {0}
[[[2, -1], [-1, -1], [0, -1], [-1, -1]]]
>>> row_ptr, cols, target, positive = expand_rows(indptr, indices, np.ones(4, np.float32), s.rows, s.negatives)
>>> row_ptr.tolist(), cols.tolist(), target.round(3).tolist(), positive.tolist()
([0, 2, 4, 6, 6], [1, 2, 0, 2, 1, 0], [1.0, 0.0, 0.5, 0.5, 1.0, 0.0], [True, False, True, True, True, False])
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.ragged import indptr_from_lengths, owner, segment_sum, take_csr
from pipeline.core.splitmix import splitmix64, splitmix64_

__all__ = ["MODES", "AdjacencyRows", "NegativePacking", "eligible_rows", "expand_rows", "neg_bits", "pack_negatives",
           "sample_adjacency_rows", "unpack_negatives_np"]

#: Row-sampling modes of :func:`sample_adjacency_rows`.
MODES = ("uniform", "degree")
#: Steps generated together (memory ~ BLOCK_STEPS * max(n, n_rows * n_negatives) * 8 bytes);
#: results never depend on it.
BLOCK_STEPS = 64
#: Rejection rounds after which a slot's remaining negatives are drawn from its enumerated pool.
MAX_ROUNDS = 64
#: A row whose pool holds less than 1/EXACT_RATIO of the valid genes (or less than
#: 2 * n_negatives) draws its negatives from the enumerated pool instead of by rejection.
EXACT_RATIO = 16
#: Neighbour tests use a packed bit matrix up to this many bytes (n * ceil(n/8)), else a binary search of the CSR.
BITSET_MAX_BYTES = 256 << 20

_MASK64 = 0xFFFFFFFFFFFFFFFF
_BIG = np.int32(np.iinfo(np.int32).max)  # "no column yet": sorts after every gene index
# salts separating the random streams of one step
_SALT_ROWS, _SALT_NEG, _SALT_EXACT = 1, 2, 3


@dataclass(frozen=True)
class AdjacencyRows:
    """Sampled rows and their negatives for a run of steps (see the module contract)."""

    rows: np.ndarray  #: int32 [steps, n_rows]; ascending per step, then -1 pads
    negatives: np.ndarray  #: int32 [steps, n_rows, n_negatives]; ascending within a row, then -1 pads


# --- hashing -----------------------------------------------------------------------------



def _step_keys(seed: int, graph: str, epoch: int, steps: np.ndarray, salt: int) -> np.ndarray:
    """One uint64 key per step of a stream: chained splitmix64 of (seed, crc32(graph), epoch, step, salt).

    splitmix64 is a bijection of its input for a fixed salt, so distinct epochs (steps)
    under one (seed, graph) give distinct keys."""
    k = splitmix64(np.array([zlib.crc32(graph.encode())], dtype=np.uint64), seed)
    with np.errstate(over="ignore"):
        k = splitmix64(k + np.uint64(int(epoch) & _MASK64), 0)
        return splitmix64(k + steps, salt)


def _below(h: np.ndarray, bound: int) -> np.ndarray:
    """In place: uniform integers in [0, bound) from uint64 hashes (multiply-high; bound < 2**32), as int64."""
    np.right_shift(h, np.uint64(32), out=h)
    np.multiply(h, np.uint64(bound), out=h)
    np.right_shift(h, np.uint64(32), out=h)
    return h.view(np.int64)


# --- graph summaries ---------------------------------------------------------------------

def _check_graph(indptr: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.asarray(indptr, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    if indptr.ndim != 1 or len(indptr) < 1:
        raise ValueError("indptr must be a 1-d array of length n + 1")
    if valid.shape != (len(indptr) - 1,):
        raise ValueError(f"valid has shape {valid.shape}, expected ({len(indptr) - 1},)")
    return indptr, valid


def eligible_rows(indptr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows that can be sampled: ``valid & (out-degree >= 1)`` (bool [n]).

    >>> eligible_rows(np.array([0, 1, 1, 2]), np.array([True, True, False])).tolist()
    [True, False, False]
    """
    indptr, valid = _check_graph(indptr, valid)
    return valid & (np.diff(indptr) >= 1)


class _Neighbours:
    """Vectorised test ``cols[k, j] in N(rows[k])``: a packed bit matrix of the CSR
    (``n * ceil(n/8)`` bytes), or a binary search of the sorted ``row * n + col`` keys
    for graphs too large for it."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray):
        n = len(indptr) - 1
        self.n = n
        self.nbytes = (n + 7) // 8
        if n * self.nbytes <= BITSET_MAX_BYTES:
            bits = np.empty((n, self.nbytes), dtype=np.uint8)
            chunk = max(1, (1 << 24) // max(n, 1))  # dense bool rows per chunk: ~16 MB
            for r0 in range(0, n, chunk):
                r1 = min(n, r0 + chunk)
                dense = np.zeros((r1 - r0, n), dtype=bool)
                lo, hi = indptr[r0], indptr[r1]
                local = owner(indptr[r0:r1 + 1])
                dense[local, indices[lo:hi]] = True
                bits[r0:r1] = np.packbits(dense, axis=1, bitorder="little")
            self.bits = bits.reshape(-1)
            self.keys = None
        else:
            self.bits = None
            rows = owner(indptr)
            self.keys = rows * n + indices  # ascending: rows ascending, columns ascending within a row

    def test(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``rows`` int64 [k], ``cols`` int [k, m] -> bool [k, m]."""
        if self.bits is not None:
            byte = self.bits[rows[:, None] * self.nbytes + (cols >> 3)]
            return ((byte >> (cols & 7).astype(np.uint8)) & 1).astype(bool)
        if len(self.keys) == 0:
            return np.zeros(cols.shape, dtype=bool)
        q = rows[:, None] * self.n + cols
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q


# --- rows --------------------------------------------------------------------------------

def _sample_rows(elig: np.ndarray, weight: np.ndarray | None, keys: np.ndarray, n_rows: int) -> np.ndarray:
    """``n_rows`` distinct rows of ``elig`` per step key, ascending, -1 pads (int32 [b, n_rows])."""
    b, e = len(keys), len(elig)
    out = np.full((b, n_rows), -1, dtype=np.int32)
    if e == 0 or n_rows == 0:
        return out
    if n_rows >= e:
        out[:, :e] = elig
        return out
    h = splitmix64_(keys[:, None] + elig.astype(np.uint64)[None, :])
    if weight is None:
        race = h  # uniform: the n_rows smallest hashes
    else:
        # Efraimidis-Spirakis as exponential races: the n_rows smallest Exp(1)/w_i are a
        # weighted sample without replacement (equivalently the largest u ** (1/w_i)).
        u = ((h >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * (1.0 / (1 << 53))  # (0, 1]
        race = -np.log(u) / weight
    pick = np.argpartition(race, n_rows - 1, axis=1)[:, :n_rows]
    out[:] = elig[pick]
    out.sort(axis=1)
    return out


# --- negatives ---------------------------------------------------------------------------

class _NegativeSampler:
    """Negatives of many (row, slot key) pairs at once; a slot's result depends only on its row and key."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, valid: np.ndarray, n_negatives: int):
        self.indptr, self.indices, self.valid = indptr, indices, valid
        self.n = len(indptr) - 1
        self.k = n_negatives
        self.valid_cols = np.flatnonzero(valid).astype(np.int32)
        self.n_valid = len(self.valid_cols)
        if self.n_valid >= 1 << 32:
            raise ValueError("more than 2**32 valid genes")
        deg_valid = segment_sum(valid[indices], indptr)
        #: negatives pool of every (valid) row: valid genes that are neither the row nor a neighbour
        self.pool = self.n_valid - 1 - deg_valid
        self.nb = _Neighbours(indptr, indices)

    def sample(self, rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``rows`` int64 [S] (valid rows), ``keys`` uint64 [S] -> int32 [S, k], ascending then -1 pads."""
        s, k = len(rows), self.k
        vals = np.full((s, k), _BIG, dtype=np.int32)
        if s == 0 or k == 0:
            return np.where(vals == _BIG, np.int32(-1), vals)
        count = np.zeros(s, dtype=np.int64)
        pool = self.pool[rows]
        exact = (pool < 2 * k) | (pool * EXACT_RATIO < self.n_valid)
        active = np.flatnonzero(~exact)
        for attempt in range(MAX_ROUNDS):
            if len(active) == 0:
                break
            self._reject_round(rows, keys, vals, count, active, attempt)
            active = active[count[active] < k]
        rest = np.flatnonzero(exact)
        if len(active):
            rest = np.sort(np.concatenate([rest, active]))
        if len(rest):
            self._exact_fill(rows, keys, vals, count, rest)
        vals[vals == _BIG] = -1
        return vals

    def _reject_round(self, rows: np.ndarray, keys: np.ndarray, vals: np.ndarray, count: np.ndarray,
                      active: np.ndarray, attempt: int) -> None:
        """Redraw the missing positions of the ``active`` slots (counter ``attempt * k + j``), reject
        self, neighbours and repeats, keep each slot's accepted columns sorted with ``_BIG`` last."""
        k = self.k
        whole = len(active) == len(rows)
        sub = vals if whole else vals[active]
        r = rows if whole else rows[active]
        j = np.arange(k, dtype=np.uint64)
        h = splitmix64_(keys[active][:, None] + (np.uint64(attempt * k) + j)[None, :])
        cand = self.valid_cols[_below(h, self.n_valid)]
        fresh = np.arange(k)[None, :] >= count[active][:, None]
        ok = fresh & (cand != r[:, None])
        ok &= ~self.nb.test(r, cand)
        new = np.where(ok, cand, sub)  # non-fresh positions keep their accepted value; rejected ones stay _BIG
        new.sort(axis=1)
        dup = (new[:, 1:] == new[:, :-1]) & (new[:, 1:] != _BIG)
        if dup.any():
            redo = np.flatnonzero(dup.any(axis=1))
            new[:, 1:][dup] = _BIG
            new[redo] = np.sort(new[redo], axis=1)
        vals[active] = new
        count[active] = np.count_nonzero(new != _BIG, axis=1)

    def _exact_fill(self, rows: np.ndarray, keys: np.ndarray, vals: np.ndarray, count: np.ndarray,
                    slots: np.ndarray) -> None:
        """Complete the given slots from their enumerated pools (minus what they hold): the
        pool members with the smallest hash ``splitmix64(key + col)`` -- a uniform subset."""
        n, k = self.n, self.k
        chunk = max(1, (1 << 22) // max(n, 1))
        col = np.arange(n, dtype=np.uint64)
        for c0 in range(0, len(slots), chunk):
            sl = slots[c0:c0 + chunk]
            m, r = len(sl), rows[sl]
            ar = np.arange(m)
            pool = np.broadcast_to(self.valid, (m, n)).copy()
            pool[ar, r] = False
            r_ptr, r_nbrs = take_csr(self.indptr, r, self.indices)
            pool[owner(r_ptr), r_nbrs] = False
            held = vals[sl]
            hmask = held != _BIG
            pool[np.broadcast_to(ar[:, None], held.shape)[hmask], held[hmask]] = False
            race = splitmix64_(keys[sl][:, None] + col[None, :], _SALT_EXACT)
            race[~pool] = np.uint64(_MASK64)
            kk = min(k, n)
            pick = np.argpartition(race, kk - 1, axis=1)[:, :kk] if kk < n else np.argsort(race, axis=1)[:, :kk]
            pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(race, pick, axis=1), axis=1), axis=1)
            need = k - count[sl]
            take = (np.arange(kk)[None, :] < need[:, None]) & np.take_along_axis(pool, pick, axis=1)
            dest = count[sl][:, None] + np.arange(kk)[None, :]
            held[np.broadcast_to(ar[:, None], take.shape)[take], dest[take]] = pick[take]
            held.sort(axis=1)
            vals[sl] = held
            count[sl] = np.count_nonzero(held != _BIG, axis=1)


# --- public API --------------------------------------------------------------------------

def sample_adjacency_rows(indptr: np.ndarray, indices: np.ndarray, valid: np.ndarray, *, n_rows: int,
                          n_negatives: int, steps: Sequence[int] | np.ndarray, seed: int, graph: str,
                          epoch: int, mode: str = "uniform") -> AdjacencyRows:
    """Rows and negatives for each step of ``steps`` (see the module contract).

    ``graph`` is the edge-type name (its crc32 keys the random streams); ``steps`` are
    step numbers (any order; output row ``t`` is step ``steps[t]``). Raises ``ValueError``
    for a negative ``n_rows``/``n_negatives`` or an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if n_rows < 0 or n_negatives < 0:
        raise ValueError(f"n_rows and n_negatives must be >= 0, got {n_rows} and {n_negatives}")
    indptr, valid = _check_graph(indptr, valid)
    indices = np.asarray(indices, dtype=np.int32)
    if len(indices) != indptr[-1]:
        raise ValueError(f"indices has {len(indices)} entries, indptr ends at {indptr[-1]}")
    n_rows, n_negatives = int(n_rows), int(n_negatives)
    steps_u = np.asarray(steps, dtype=np.int64).reshape(-1).astype(np.uint64)
    n_steps = len(steps_u)
    rows_out = np.full((n_steps, n_rows), -1, dtype=np.int32)
    neg_out = np.full((n_steps, n_rows, n_negatives), -1, dtype=np.int32)
    elig_mask = eligible_rows(indptr, valid)
    elig = np.flatnonzero(elig_mask).astype(np.int32)
    if len(elig) == 0 or n_rows == 0 or n_steps == 0:
        return AdjacencyRows(rows_out, neg_out)
    weight = np.diff(indptr)[elig].astype(np.float64) if mode == "degree" else None
    sampler = _NegativeSampler(indptr, indices, valid, n_negatives) if n_negatives else None
    slot = np.arange(n_rows, dtype=np.uint64)
    for b0 in range(0, n_steps, BLOCK_STEPS):
        blk = steps_u[b0:b0 + BLOCK_STEPS]
        rows = _sample_rows(elig, weight, _step_keys(seed, graph, epoch, blk, _SALT_ROWS), n_rows)
        rows_out[b0:b0 + len(blk)] = rows
        if sampler is None:
            continue
        neg_keys = _step_keys(seed, graph, epoch, blk, _SALT_NEG)
        slot_keys = splitmix64_(neg_keys[:, None] + slot[None, :])  # one key per (step, slot)
        real = rows >= 0
        negs = sampler.sample(rows[real].astype(np.int64), slot_keys[real])
        neg_out[b0:b0 + len(blk)][real] = negs
    return AdjacencyRows(rows_out, neg_out)


def expand_rows(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, rows: np.ndarray,
                negatives: np.ndarray, *, eps: float = 1e-8,
                weighted: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (row_ptr int64 [m+1], cols int32, target float32, positive bool) over the m = rows.size flattened row slots
    (pads included, as empty rows): per row all positive columns (exactly the CSR row, ascending) with target
    A_ij/(d_i+eps), then its negatives (pads dropped) with target 0. Binary: A_ij=1, d_i=degree. Weighted: A_ij=w_ij,
    d_i = sum of the row's weights."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices)
    r = np.asarray(rows).reshape(-1).astype(np.int64)
    m = len(r)
    neg = np.asarray(negatives)
    neg = neg.reshape(m, neg.shape[-1] if neg.ndim else 0)
    real = r >= 0
    rr = np.where(real, r, 0)
    deg = np.where(real, indptr[rr + 1] - indptr[rr], 0) if len(indptr) > 1 else np.zeros(m, np.int64)
    neg_ok = (neg >= 0) & real[:, None]
    n_neg = np.count_nonzero(neg_ok, axis=1)
    row_ptr = indptr_from_lengths(deg + n_neg)
    total = int(row_ptr[-1])
    cols = np.empty(total, dtype=np.int32)
    target = np.zeros(total, dtype=np.float32)
    positive = np.zeros(total, dtype=bool)
    # positives: slot t's CSR row lands at row_ptr[t] .. row_ptr[t] + deg[t]
    pos_ptr = indptr_from_lengths(deg)
    slot = owner(pos_ptr)
    off = np.arange(pos_ptr[-1]) - pos_ptr[slot]
    edge = indptr[rr][slot] + off
    dest = row_ptr[:-1][slot] + off
    cols[dest] = indices[edge]
    positive[dest] = True
    if weighted:
        w = np.asarray(weights, dtype=np.float64)
        d = segment_sum(w, indptr)[rr]
        target[dest] = w[edge] / (d[slot] + eps)
    else:
        target[dest] = 1.0 / (deg[slot].astype(np.float64) + eps)
    # negatives follow, in their stored order, pads dropped
    k = np.cumsum(neg_ok, axis=1) - 1
    ndest = (row_ptr[:-1] + deg)[:, None] + k
    cols[ndest[neg_ok]] = neg[neg_ok]
    return row_ptr, cols, target, positive


# --- the stored form of the negatives ----------------------------------------------------

#: Most bits per packed value: the high bits of a group of 8 values fill one 64-bit word.
MAX_BITS = 16


def neg_bits(n_genes: int) -> int:
    """Bits per packed negative: values ``gene + 1`` in 0..n_genes (0 = the -1 pad).

    >>> neg_bits(6607), neg_bits(255), neg_bits(256)
    (13, 8, 9)

    At most 16 bits (the high bits of 8 values fill one 64-bit word): ValueError from 65,536 genes on.
    """
    bits = max(8, int(n_genes).bit_length())
    if bits > MAX_BITS:
        raise ValueError(f"{n_genes} genes: compact adjacency rows pack gene ids in at most {MAX_BITS} bits")
    return bits


def _check_bits(bits: int) -> int:
    if not 8 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 8..{MAX_BITS}, got {bits}")
    return bits


def _groups(k: int) -> int:
    if k % 8:
        raise ValueError(f"packed negatives come in groups of 8 values; the last axis has {k}")
    return k // 8


def pack_negatives(neg: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Negatives [..., K] (int, -1 pads) -> (low bytes uint8 [..., K], high bits uint8 [..., K // 8 * (bits-8)]).

    ``v = gene + 1``; the low byte of each value, then the ``bits - 8`` high bits of each group of 8
    values packed little-endian into ``bits - 8`` bytes (value ``j`` of a group at bit ``j * (bits-8)``
    of the group's word). ``K`` must be a multiple of 8 (pad with -1). Vectorised over every leading
    axis. Values must fit: ``-1 <= gene < 2**bits - 1`` (not checked here; :meth:`NegativePacking.pack`
    checks).

    >>> lo, hi = pack_negatives(np.array([[-1, 0, 299, 6606, 5, 6, 7, 8]]), 13)
    >>> lo.tolist(), hi.tolist()
    ([[0, 1, 44, 207, 6, 7, 8, 9]], [[0, 132, 12, 0, 0]])
    """
    v = np.asarray(neg).astype(np.int32) + 1
    lead, k = v.shape[:-1], v.shape[-1]
    n_groups, h = _groups(k), _check_bits(bits) - 8
    lo = v.astype(np.uint8)  # the low byte (astype truncates)
    if h == 0:
        return lo, np.zeros((*lead, 0), np.uint8)
    g = (v >> 8).astype(np.uint32).reshape(*lead, n_groups, 8)
    # one 64-bit word per group of 8 values, built as two 32-bit halves of 4 values (4 * h <= 32 bits):
    # whole-array shifts, not a loop over values, and no 8-byte temporary per value
    half = [g[..., q] | (g[..., q + 1] << h) | (g[..., q + 2] << 2 * h) | (g[..., q + 3] << 3 * h) for q in (0, 4)]
    word = half[0].astype(np.uint64) | (half[1].astype(np.uint64) << np.uint64(4 * h))
    hi = word[..., None].astype("<u8", copy=False).view(np.uint8)[..., :h]  # little-endian: the low h bytes
    return lo, hi.reshape(*lead, n_groups * h)


def unpack_negatives_np(lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of :func:`pack_negatives`: int32 genes [..., K], -1 pads; vectorised over leading axes.

    >>> v = np.array([[-1, 0, 299, 6606, 5, 6, 7, 8], [8191 - 2] * 8])
    >>> unpack_negatives_np(*pack_negatives(v, 13), 13).tolist() == v.tolist()
    True
    """
    lo = np.asarray(lo, dtype=np.uint8)
    lead, k = lo.shape[:-1], lo.shape[-1]
    n_groups, h = _groups(k), _check_bits(bits) - 8
    out = lo.astype(np.int32)
    if h:
        hi = np.asarray(hi, dtype=np.uint8)
        if hi.shape != (*lead, n_groups * h):
            raise ValueError(f"high bits of shape {hi.shape}, expected {(*lead, n_groups * h)} for {k} values")
        raw = np.zeros((*lead, n_groups, 8), np.uint8)
        raw[..., :h] = hi.reshape(*lead, n_groups, h)
        word = raw.view("<u8")[..., 0]  # [..., n_groups]
        mask = np.uint64((1 << h) - 1)
        for j in range(8):
            out[..., j::8] |= ((word >> np.uint64(h * j)) & mask).astype(np.int32) << 8
    out -= 1
    return out


@dataclass(frozen=True)
class NegativePacking:
    """How one store packs its negatives: ``adjacency/negatives`` holds ``P`` bytes per graph and step.

    ``bits``: bits per value (:func:`neg_bits` of the gene count); ``n_negatives``: ``M`` per row;
    ``padded``: ``M' = ceil(M/8)*8`` (the slots past ``M`` are ``-1`` pads, stored as 0). For a step
    of ``R`` rows the ``P = R*M'*bits/8`` bytes are ``lo`` (``R*M'`` bytes: the low byte of
    ``gene + 1`` of each value, row-major) followed by ``hi`` (``R*M'/8*(bits-8)`` bytes: the high
    bits of each group of 8 consecutive values, as :func:`pack_negatives` of the step's flattened
    ``[R*M']`` values).

    >>> p = NegativePacking.for_genes(6607, 6)
    >>> p, p.lo_row_bytes, p.hi_row_bytes, p.step_bytes(rows=2)
    (NegativePacking(bits=13, n_negatives=6, padded=8), 8, 5, 26)
    >>> neg = np.array([[0, 5, 6606, -1, -1, -1], [-1] * 6])
    >>> packed = p.pack(neg)
    >>> packed.shape, packed[:16].tolist()
    ((26,), [1, 6, 207, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    >>> p.unpack(packed, rows=2).tolist() == neg.tolist()
    True
    >>> NegativePacking.from_dict(p.to_dict()) == p
    True
    """

    bits: int
    n_negatives: int
    padded: int

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        if self.n_negatives < 0 or self.padded != -(-self.n_negatives // 8) * 8:
            raise ValueError(f"padded must be ceil(n_negatives / 8) * 8, got {self.n_negatives} and {self.padded}")

    @classmethod
    def for_genes(cls, n_genes: int, n_negatives: int) -> NegativePacking:
        """The packing of ``n_negatives`` negatives a row among ``n_genes`` genes."""
        return cls(neg_bits(n_genes), int(n_negatives), -(-int(n_negatives) // 8) * 8)

    @property
    def lo_row_bytes(self) -> int:
        """Bytes of ``lo`` per row: one per value, pads included (``M'``)."""
        return self.padded

    @property
    def hi_row_bytes(self) -> int:
        """Bytes of ``hi`` per row: ``bits - 8`` per group of 8 values."""
        return self.padded // 8 * (self.bits - 8)

    def step_bytes(self, rows: int) -> int:
        """``P``: the stored bytes of one step of ``rows`` rows."""
        return rows * (self.lo_row_bytes + self.hi_row_bytes)

    def to_dict(self) -> dict[str, int]:
        return {"bits": self.bits, "n_negatives": self.n_negatives, "padded": self.padded}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NegativePacking:
        return cls(int(d["bits"]), int(d["n_negatives"]), int(d["padded"]))

    def pack(self, neg: np.ndarray) -> np.ndarray:
        """int negatives ``[..., R, M]`` (-1 pads) -> uint8 ``[..., P]``, vectorised over the leading axes.

        ValueError for another ``M`` or a value outside ``-1 .. 2**bits - 2``."""
        neg = np.asarray(neg)
        if neg.ndim < 2 or neg.shape[-1] != self.n_negatives:
            raise ValueError(f"negatives of shape {neg.shape}, expected [..., rows, {self.n_negatives}]")
        if neg.size and (int(neg.min()) < -1 or int(neg.max()) > (1 << self.bits) - 2):
            raise ValueError(f"negatives outside -1..{(1 << self.bits) - 2} do not fit in {self.bits} bits")
        *lead, r, m = neg.shape
        full = np.full((*lead, r, self.padded), -1, dtype=np.int32)
        full[..., :m] = neg
        lo, hi = pack_negatives(full.reshape(*lead, r * self.padded), self.bits)
        return np.concatenate([lo, hi], axis=-1)

    def unpack(self, packed: np.ndarray, rows: int) -> np.ndarray:
        """uint8 ``[..., P]`` of steps of ``rows`` rows -> int32 negatives ``[..., R, M]`` (-1 pads)."""
        packed = np.asarray(packed, dtype=np.uint8)
        if packed.ndim < 1 or packed.shape[-1] != self.step_bytes(rows):
            raise ValueError(f"packed steps of shape {packed.shape}, expected [..., {self.step_bytes(rows)}] "
                             f"for {rows} rows")
        lead, split = packed.shape[:-1], rows * self.lo_row_bytes
        v = unpack_negatives_np(packed[..., :split], packed[..., split:], self.bits)
        v = v.reshape(*lead, rows, self.padded)
        return v if self.padded == self.n_negatives else np.ascontiguousarray(v[..., :self.n_negatives])
