"""Random split: each sample independently, by a hash of its key."""

from __future__ import annotations

import numpy as np

from pipeline.core.splitmix import uniform01


def random_split(sample_key: np.ndarray, gene_idx: list[np.ndarray] | None, seed: int,
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Labels 0 = train, 1 = val, 2 = test (uint8) with the given expected fractions.

    >>> labels = random_split(np.arange(10_000, dtype=np.uint64), None, seed=1)
    >>> [round(float((labels == k).mean()), 2) for k in (0, 1, 2)]
    [0.8, 0.1, 0.1]
    """
    u = uniform01(sample_key, seed)
    tr, va, _ = fractions
    labels = (u >= tr).view(np.uint8)  # 0 train, then +1 past train, +1 past val
    labels += u >= tr + va
    return labels
