"""Per-sample perturbation masks over the graph's genes and edges, in compact form.

Samples are given in CSR form over the dataset: ``s_indptr`` int64 [m+1] and, per
sample, its perturbed genes ``s_genes`` (ascending) with their type codes
``s_types`` (:data:`pipeline.core.perturbations.CODES`).

Semantics (the contract in ``storage_layout.md``):

- **Node mask** (uint8 per gene): 1 where the gene is present in the strain.
  The wild-type mask (``base``) is 1 for genome genes and 0 for ``added``
  (heterologous) genes. A genome gene perturbed with a *removing* type (by
  default every loss-of-function code: deletion, temperature-sensitive, knockdown,
  suppressor, as the reference code masks every perturbed gene) becomes 0; an
  added gene perturbed with an adding type (addition, overexpression) becomes 1.
  The compact form stores, per sample, the genes where the mask differs from ``base`` (:func:`node_mask_flips`).
- **Edge mask** (uint8 per edge of one edge type, edge id = CSR position, both
  orientations of undirected types): 0 where the edge touches a removed gene, 1
  elsewhere. The compact form stores the removed edge ids, ascending
  (:func:`removed_edges`); for an undirected type only those of one orientation
  (``id < mirror[id]``), since both orientations of an edge are removed together
  (:func:`one_orientation` before, :func:`both_orientations` after).

Everything here is vectorised over samples; nothing loops per sample in Python.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.perturbations import CODES
from pipeline.core.ragged import indptr_from_lengths, indptr_from_owner, owner, segment_sum

#: Type codes that remove a gene from the strain (node mask 0) by default.
REMOVING_TYPES: tuple[int, ...] = (CODES["deletion"], CODES["temperature_sensitive"], CODES["knockdown"],
                                   CODES["suppressor"])

#: Type codes that make an added (heterologous) gene present in the strain.
ADDING_TYPES: tuple[int, ...] = (CODES["addition"], CODES["overexpression"])


def node_base(added: np.ndarray) -> np.ndarray:
    """The wild-type node mask: uint8 [n], 1 for genome genes, 0 for added genes."""
    return (~np.asarray(added, dtype=bool)).astype(np.uint8)


def removing(types: np.ndarray, removing_types: tuple[int, ...] = REMOVING_TYPES) -> np.ndarray:
    """Boolean per perturbed gene: is its type code one of ``removing_types``?"""
    return np.isin(types, np.asarray(removing_types, dtype=types.dtype))


def node_mask_flips(s_indptr: np.ndarray, s_genes: np.ndarray, s_types: np.ndarray, added: np.ndarray,
                    removing_types: tuple[int, ...] = REMOVING_TYPES) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the genes whose node mask differs from :func:`node_base`: (indptr int64, genes int32).

    >>> ptr, g = node_mask_flips(np.array([0, 2, 3]), np.array([1, 3, 4]), np.array([1, 4, 5], np.uint8),
    ...                          added=np.array([0, 0, 0, 0, 1], bool))
    >>> ptr.tolist(), g.tolist()          # sample 0 deletes gene 1 (3 is overexpressed); sample 1 adds gene 4
    ([0, 1, 2], [1, 4])
    """
    is_added = np.asarray(added, dtype=bool)[s_genes]
    flip = np.where(is_added, removing(s_types, ADDING_TYPES), removing(s_types, removing_types))
    return indptr_from_owner(owner(s_indptr)[flip], len(s_indptr) - 1), s_genes[flip].astype(np.int32)


def removed_genes(s_indptr: np.ndarray, s_genes: np.ndarray, s_types: np.ndarray, added: np.ndarray,
                  removing_types: tuple[int, ...] = REMOVING_TYPES) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the genome genes it removes (node mask 1 -> 0): (indptr int64, genes int32)."""
    keep = removing(s_types, removing_types) & ~np.asarray(added, dtype=bool)[s_genes]
    return indptr_from_owner(owner(s_indptr)[keep], len(s_indptr) - 1), s_genes[keep].astype(np.int32)


#: Entries (incidence ids) handled per block by :func:`removed_edges`: the block's keys
#: (256 KB of int32) stay in cache; measured fastest among 2**16..2**20 at full scale.
_BLOCK_ENTRIES = 1 << 16


def removed_edges(inc_indptr: np.ndarray, inc_edges: np.ndarray, r_indptr: np.ndarray,
                  r_genes: np.ndarray, n_edges: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the ids of the edges touching any of its removed genes, ascending and distinct.

    ``inc_indptr``/``inc_edges`` is the edge type's gene -> incident edge index
    (:func:`pipeline.graph.csr.incidence`); ``r_indptr``/``r_genes`` the removed genes per
    sample (:func:`removed_genes`); ``n_edges`` the edge count of the type (an upper
    bound of the ids; read from ``inc_edges`` when omitted). Returns (indptr int64
    [m+1], edge ids int32).

    >>> inc_ptr, inc = np.array([0, 2, 4, 4]), np.array([0, 1, 1, 0])   # one undirected edge 0-1
    >>> removed_edges(inc_ptr, inc, np.array([0, 1, 3, 3]), np.array([0, 0, 1]))
    (array([0, 2, 4, 4]), array([0, 1, 0, 1], dtype=int32))
    """
    m = len(r_indptr) - 1
    r_genes = np.asarray(r_genes, dtype=np.int64)
    starts = inc_indptr[r_genes]
    lens = inc_indptr[r_genes + 1] - starts
    cum = indptr_from_lengths(segment_sum(lens, r_indptr))
    if cum[-1] == 0:
        return np.zeros(m + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    if n_edges is None:
        n_edges = int(inc_edges.max()) + 1
    id_bits = max(1, int(n_edges - 1).bit_length())
    # one sort of (sample within block, edge) keys both orders each sample's ids and exposes
    # the duplicates (edges between two removed genes of one sample); int32 keys when the
    # block's sample number fits beside the id (half the bytes to sort), else int64
    key_dtype = np.int32 if id_bits <= 24 else np.int64
    max_block = 1 << ((31 if key_dtype is np.int32 else 63) - id_bits)
    # blocks of whole samples: about _BLOCK_ENTRIES entries, at most max_block samples
    cuts = np.searchsorted(cum, np.arange(0, cum[-1], _BLOCK_ENTRIES), side="right") - 1
    cuts = np.unique(np.concatenate([cuts, np.arange(0, m, max_block), [m]]))
    starts_l, ends_l = starts.tolist(), (starts + lens).tolist()
    own = (owner(r_indptr)).astype(key_dtype)
    low = key_dtype((1 << id_bits) - 1)
    counts = np.zeros(m, dtype=np.int64)
    parts = []
    for s0, s1 in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        g0, g1 = int(r_indptr[s0]), int(r_indptr[s1])
        if cum[s1] == cum[s0]:
            continue
        # slices of contiguous incidence rows: cheaper than a fancy-index gather
        key = np.repeat((own[g0:g1] - key_dtype(s0)) << key_dtype(id_bits), lens[g0:g1])
        key |= np.concatenate([inc_edges[a:b] for a, b in zip(starts_l[g0:g1], ends_l[g0:g1])])
        key.sort()
        keep = np.empty(len(key), dtype=bool)
        keep[0] = True
        np.not_equal(key[1:], key[:-1], out=keep[1:])
        key = key[keep]
        bounds = np.searchsorted(key, np.arange(1, s1 - s0 + 1, dtype=key_dtype) << key_dtype(id_bits))
        counts[s0:s1] = np.diff(bounds, prepend=0)
        key &= low
        parts.append(key.astype(np.int32, copy=False))
    return indptr_from_lengths(counts), np.concatenate(parts)


def one_orientation(inc_indptr: np.ndarray, inc_edges: np.ndarray,
                    mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The incidence of an undirected type restricted to one orientation per edge: ids with ``id < mirror[id]``.

    Every edge still appears under both its endpoints, so :func:`removed_edges` over it
    yields the removed edges of that orientation: half the ids (and the work) of the
    full incidence; :func:`both_orientations` restores the others.

    >>> ip, inc = np.array([0, 2, 4]), np.array([0, 1, 1, 0])   # edge 0 = (0, 1), its mirror 1 = (1, 0)
    >>> one_orientation(ip, inc, mirror=np.array([1, 0]))
    (array([0, 1, 2]), array([0, 0]))
    """
    keep = inc_edges < mirror[inc_edges]
    return indptr_from_lengths(segment_sum(keep, inc_indptr)), inc_edges[keep]


def both_orientations(indptr: np.ndarray, ids: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, ``ids`` and their mirrors, ascending: one-orientation removed edges -> all of them.

    >>> both_orientations(np.array([0, 1, 1]), np.array([0]), mirror=np.array([2, 3, 0, 1]))
    (array([0, 2, 2]), array([0, 2], dtype=int32))
    """
    key = np.concatenate([ids, mirror[ids]]).astype(np.int64)
    rows = np.tile(owner(indptr), 2)
    key |= rows << 32
    key.sort()
    return indptr_from_lengths(2 * np.diff(indptr)), (key & 0xFFFFFFFF).astype(np.int32)


def dense_from_positions(base: np.ndarray | int, width: int, indptr: np.ndarray,
                         positions: np.ndarray) -> np.ndarray:
    """Dense uint8 [m, width] masks: ``base`` (a row, or 1) with ``positions`` of each sample flipped.

    >>> dense_from_positions(1, 3, np.array([0, 1, 1]), np.array([2])).tolist()
    [[1, 1, 0], [1, 1, 1]]
    """
    m = len(indptr) - 1
    out = np.empty((m, width), dtype=np.uint8)
    out[:] = np.asarray(base, dtype=np.uint8)
    out[owner(indptr), positions] ^= 1
    return out
