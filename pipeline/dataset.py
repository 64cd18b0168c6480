"""From phenotype observations to samples: gene indices, replicate policy, splits.

Readers (:mod:`pipeline.sources.kuzmin`, :mod:`pipeline.sources.costanzo`) yield
observations in :data:`pipeline.perturbations.OBSERVATION_SCHEMA` (systematic
names, perturbation type codes, phenotypes) as polars LazyFrames. This module
turns them into the dataset's samples, lazily, so that tens of millions of rows
stream through in bounded memory:

1. :func:`encode` maps names to the build's gene index; observations naming a gene
   outside it are dropped and counted.
2. :func:`aggregate` merges replicate observations of the same strain (same gene
   set, same type codes): mean, count and spread per phenotype.
3. :func:`assign_ids_and_splits` numbers samples in a canonical order and labels
   them with every split of :data:`pipeline.splits.SPLITS`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.genes import GeneIndex
from pipeline.splits import SPLITS

#: Phenotype value columns of an observation, each aggregated over replicates.
VALUES = ["fitness", "interaction", "interaction_raw", "smf_query", "smf_array"]
MAX_GENES = 3


def encode(obs: pl.LazyFrame, genes: GeneIndex) -> pl.LazyFrame:
    """Add ``gene_idx`` (list[int32], -1 = not in the index) and ``known`` (bool)."""
    ids = genes.table["id"]
    idx = pl.Series(np.arange(len(ids), dtype=np.int32))
    return obs.with_columns(
        pl.col("genes").list.eval(pl.element().replace_strict(ids, idx, default=-1, return_dtype=pl.Int32))
        .alias("gene_idx")
    ).with_columns((pl.col("gene_idx").list.min() >= 0).alias("known"))


def aggregate(enc: pl.LazyFrame, policy: str = "mean") -> pl.LazyFrame:
    """One row per strain (``gene_idx``, ``types``) from its replicate observations.

    ``policy="mean"``: each value column ``v`` becomes its mean over replicates,
    ``v_n`` the number of replicates that measured it and ``v_rep_sd`` their
    standard deviation (null below 2). The measurement errors combine as
    ``fitness_std`` = root mean square of the replicates' standard deviations and
    ``interaction_p`` = the largest p-value (conservative). ``policy="first"``
    keeps the first observation (lowest source row) of each strain.
    """
    key = ["gene_idx", "types"]
    if policy == "first":
        first = pl.all().sort_by(["source", "source_row"]).first()
        return enc.drop("genes").group_by(key).agg(first, pl.len().cast(pl.UInt32).alias("n_rows"))
    if policy != "mean":
        raise ValueError(f"replicate policy must be 'mean' or 'first', got {policy!r}")
    # order-free aggregates only: the result must not depend on the order rows arrive in
    aggs: list[pl.Expr] = [pl.col("n_perturbed").first(),
                           pl.col("source").unique().sort().str.join(",").alias("source"),
                           pl.col("source_row").min(), pl.col("screen").min()]
    for v in VALUES:
        # float32: published values carry ~4 significant digits; halves memory at 20M rows
        aggs += [pl.col(v).mean().cast(pl.Float32).alias(v), pl.col(v).count().cast(pl.UInt16).alias(f"{v}_n"),
                 pl.col(v).std().cast(pl.Float32).alias(f"{v}_rep_sd")]
    aggs += [pl.col("fitness_std").pow(2).mean().sqrt().cast(pl.Float32).alias("fitness_std"),
             pl.col("interaction_p").max().cast(pl.Float32).alias("interaction_p"),
             pl.len().cast(pl.UInt32).alias("n_rows")]
    return enc.group_by(key).agg(aggs)


def _columns(df: pl.DataFrame, col: str, fill: int) -> list[np.ndarray]:
    """The k-th element of a list column as arrays, k < MAX_GENES, ``fill`` where absent."""
    return [df[col].list.get(i, null_on_oob=True).fill_null(fill).to_numpy().astype(np.int64)
            for i in range(MAX_GENES)]


def sample_key(gene_cols: list[np.ndarray], type_cols: list[np.ndarray]) -> np.ndarray:
    """A uint64 per strain from its gene indices and type codes (wrapping mix).

    It seeds the split hashes; two strains sharing a key would only share a draw.
    """
    k = np.zeros(len(gene_cols[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for g, t in zip(gene_cols, type_cols):
            k = (k * np.uint64(1 << 21) + (g + 1).astype(np.uint64)) * np.uint64(8) + t.astype(np.uint64)
    return k


def assign_ids_and_splits(samples: pl.DataFrame, n_genes: int, seed: int,
                          fractions: tuple[float, float, float]) -> pl.DataFrame:
    """Sort samples canonically, number them, and add ``split_<name>`` per split algorithm.

    Canonical order: by number of perturbed genes, then gene indices, then type codes,
    so sample ids do not depend on input order or on the aggregation's hash order.
    """
    sort_cols = [pl.col("gene_idx").list.get(i, null_on_oob=True).fill_null(-1) for i in range(MAX_GENES)]
    sort_cols += [pl.col("types").list.get(i, null_on_oob=True).fill_null(0) for i in range(MAX_GENES)]
    df = samples.sort([pl.col("gene_idx").list.len(), *sort_cols])
    gcols = _columns(df, "gene_idx", -1)
    key = sample_key(gcols, _columns(df, "types", 0))
    labels = {}
    for name, fn in SPLITS.items():
        kwargs = {"n_genes": n_genes} if name == "gene_holdout" else {}
        labels[f"split_{name}"] = fn(key, gcols, seed, fractions, **kwargs)
    return df.with_columns(pl.Series("sample_id", np.arange(df.height, dtype=np.int64)),
                           *[pl.Series(k, v, dtype=pl.UInt8) for k, v in labels.items()])
