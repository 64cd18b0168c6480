"""Gene-held-out split (as DANGO evaluates): every sample with a held-out gene is test.

A fraction of genes is held out by a hash of (gene index, seed). Samples touching
none of them are split train/val by a hash of their key.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.splitmix import uniform01


def held_out_genes(n_genes: int, seed: int, fraction: float) -> np.ndarray:
    """Boolean [n_genes]: which genes are held out."""
    return uniform01(np.arange(n_genes, dtype=np.uint64), seed ^ 0x5EED) < fraction


def gene_holdout_split(sample_key: np.ndarray, gene_idx: list[np.ndarray], seed: int,
                       fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                       n_genes: int | None = None) -> np.ndarray:
    """Labels 0 = train, 1 = val, 2 = test (uint8).

    ``gene_idx`` is a list of equal-length int arrays, the k-th perturbed gene of
    every sample (-1 where a sample has fewer genes). The held-out gene fraction is
    ``fractions[2]``; among the other samples val gets
    ``fractions[1] / (fractions[0] + fractions[1])``.

    >>> held_out_genes(6, seed=1, fraction=0.5).nonzero()[0].tolist()
    [3, 4, 5]
    >>> k = np.arange(6, dtype=np.uint64)
    >>> g = [np.array([0, 1, 2, 0, 1, 2]), np.array([1, 2, 3, 4, 5, -1])]  # pairs, the last a single
    >>> gene_holdout_split(k, g, seed=1, fractions=(0.5, 0.0, 0.5), n_genes=6).tolist()
    [0, 0, 2, 2, 2, 0]
    """
    n = n_genes if n_genes is not None else int(max(int(g.max()) for g in gene_idx)) + 1
    held = np.append(held_out_genes(n, seed, fractions[2]), False)  # index -1 -> not held
    test = np.zeros(len(sample_key), dtype=bool)
    for g in gene_idx:
        test |= held[g]
    tr, va, _ = fractions
    u = uniform01(sample_key, seed)
    labels = (u < (va / (tr + va) if tr + va > 0 else 0.0)).view(np.uint8)  # 1 = val
    labels[test] = 2
    return labels
