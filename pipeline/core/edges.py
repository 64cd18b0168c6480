"""Edge lists as sources yield them, and the counts of what was dropped on the way.

A reader returns one :class:`EdgeTable` per edge type: gene indices into the
build's :class:`~pipeline.core.genes.GeneIndex`, a weight per row, and the counts of
rows it read and skipped. Duplicates and self-loops are left in; the CSR build
(:mod:`pipeline.graph.csr`) removes them and counts them, one rule for every source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EdgeTable:
    """Raw edges of one type: ``src[i] -> dst[i]`` with ``weight[i]`` (int32/int32/float32).

    ``directed=False`` means the row (a, b) stands for the unordered pair {a, b};
    a source may list it once or in both orientations.
    ``stats`` holds reader-side counts (``rows_read``, ``dropped_unknown_gene``,
    ``dropped_zero_score``, ...), all ints, carried into the log and the manifest.
    """

    name: str
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    directed: bool
    source: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.src = np.ascontiguousarray(self.src, dtype=np.int32)
        self.dst = np.ascontiguousarray(self.dst, dtype=np.int32)
        self.weight = np.ascontiguousarray(self.weight, dtype=np.float32)
        if not (len(self.src) == len(self.dst) == len(self.weight)):
            raise ValueError(f"{self.name}: src, dst and weight differ in length")

    def __len__(self) -> int:
        return len(self.src)


def keep_known(name: str, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
               directed: bool, source: str, stats: dict[str, int]) -> EdgeTable:
    """Drop rows whose endpoints are -1 (not in the gene index), counting them."""
    known = (src >= 0) & (dst >= 0)
    stats = dict(stats)
    stats["dropped_unknown_gene"] = stats.get("dropped_unknown_gene", 0) + int((~known).sum())
    return EdgeTable(name, src[known], dst[known], weight[known], directed, source, stats)
