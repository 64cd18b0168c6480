"""GO co-annotation edges derived from a gene table's ``go_terms`` column.

Contract: :func:`go_coannotation` returns one undirected :class:`~pipeline.core.edges.EdgeTable`
with exactly one row per unordered gene pair ``(a, b)``, ``a < b`` (indices into the
:class:`~pipeline.core.genes.GeneIndex`), that shares at least one *qualifying* GO term;
a term qualifies when it is annotated to between ``min_term_size`` and
``max_term_size`` genes (inclusive). The bound keeps huge generic terms (the root
GO:0005575 "cellular_component" has thousands of genes) from turning into cliques.
The weight is the number of qualifying terms the pair shares (float32, >= 1).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.core.edges import EdgeTable
from pipeline.core.genes import GeneIndex
from pipeline.core.ragged import indptr_from_lengths, owner


def go_coannotation(genes: GeneIndex, max_term_size: int = 300, min_term_size: int = 2,
                    name: str = "go_coannotation") -> EdgeTable:
    """Undirected edges between genes sharing a GO term of bounded size; weight = shared-term count.

    Stats: ``rows_read`` (distinct gene-term annotations), ``terms_total``,
    ``terms_used``, ``terms_too_large``, ``terms_too_small``.

    >>> import polars as pl
    >>> from pipeline.core.genes import GeneIndex, conform
    >>> gi = GeneIndex.from_table(conform(pl.DataFrame({
    ...     "id": ["YA", "YB", "YC", "YD"],
    ...     "go_terms": [["GO:1", "GO:2"], ["GO:1", "GO:2", "GO:9"], ["GO:9"], ["GO:9"]]})))
    >>> e = go_coannotation(gi, max_term_size=2)  # GO:9 (3 genes) is too large
    >>> list(zip(e.src.tolist(), e.dst.tolist(), e.weight.tolist())), e.stats["terms_too_large"]
    ([(0, 1, 2.0)], 1)
    """
    if min_term_size < 2 or max_term_size < min_term_size:
        raise ValueError(f"need 2 <= min_term_size <= max_term_size, got {min_term_size}, {max_term_size}")
    n = len(genes)
    ann = (genes.table.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("g"), pl.col("go_terms").alias("t"))
           .explode("t").drop_nulls("t").unique().sort("t", "g"))
    sizes = ann.group_by("t", maintain_order=True).len()  # same term order as ann
    k = sizes["len"].to_numpy().astype(np.int64)
    used = (k >= min_term_size) & (k <= max_term_size)
    stats = {"rows_read": ann.height, "terms_total": len(k), "terms_used": int(used.sum()),
             "terms_too_large": int((k > max_term_size).sum()), "terms_too_small": int((k < min_term_size).sum())}

    # Members of qualifying terms, contiguous per term and sorted by gene within it.
    g = ann["g"].to_numpy()[np.repeat(used, k)]
    k = k[used]
    if len(k) == 0:
        empty = np.zeros(0, np.int32)
        return EdgeTable(name, empty, empty, np.zeros(0, np.float32), False, "gene table go_terms", stats)
    # Member at local rank r of a term of size k pairs with the k-r-1 members after it:
    # repeat each member that many times, and step through its followers by position.
    term_ptr = indptr_from_lengths(k)
    term = owner(term_ptr)
    c = k[term] - (np.arange(len(g), dtype=np.int64) - term_ptr[term]) - 1
    pair_ptr = indptr_from_lengths(c)
    member = owner(pair_ptr)  # position of the first member of each pair
    partner = member + 1 + (np.arange(pair_ptr[-1], dtype=np.int64) - pair_ptr[member])
    key = g[member] * n + g[partner]  # a < b, so the key names the unordered pair
    key.sort()  # np.unique is ~30x slower than a sort + run boundaries on numpy 2.4
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    pairs, count = key[starts], np.diff(np.append(starts, len(key)))
    return EdgeTable(name, pairs // n, pairs % n, count.astype(np.float32), False,
                     "gene table go_terms", stats)
