"""Synthetic genetic-interaction tables in the real published formats.

Writes a Kuzmin-2018-style Data S1 TSV (digenic and trigenic rows) and the four
Costanzo-2016-style SGA files, and small single-strain and pair tables (Costanzo 2016
single mutant fitness ``.xlsx``, Baryshnikova 2010 SMF text export, SynLethDB
``Yeast_SL.csv`` / ``Yeast_SR.csv``, Costanzo 2021 Data File S1 ``.xlsx``: the
``write_*`` functions below, used by ``scripts/make_sample_phenotypes.py``), over given
systematic gene ids (the real ids of
``data/sample/genes.tsv`` by default). The files exercise every path of the readers
(:mod:`pipeline.sources.phenotypes.kuzmin`, :mod:`pipeline.sources.phenotypes.costanzo`); they carry no
biology.

Contract:

- **Deterministic.** Output bytes are a pure function of (gene table, sizes, seed);
  each table draws from its own random stream (:func:`synth.graph.rng_for`).
- **Vectorised.** Strains, crosses and values are drawn with numpy and formatted with
  polars in batches of about a million rows; no Python loop runs per row.
- **Sizes.** :class:`KuzminSizes`: exactly ``triples`` distinct trigenic gene sets
  (332,313 at scale 1, the Kuzmin 2018 + 2020 trigenic set) and ``digenic`` digenic
  rows (410,399 at scale 1, as Kuzmin 2018); replicate rows come on top.
  :class:`CostanzoSizes`: exactly the rows of each SGA file (20,705,612 in all at
  scale 1, split as in the real files).
- **Structure as published.** Kuzmin: single-mutant queries carry the HO marker
  (``YAL015C+YDL227C_tm461`` / ``ntg1Δ+hoΔ``, about a third written marker first;
  ts queries ``..._tsq<n>`` / ``cdc28-4+hoΔ``), double-mutant queries
  ``GENE1+GENE2_tm<n>`` (allele ``a1Δ+a2-4``) crossed with a ~1,200-strain array
  (``_dma<n>`` with ``Δ`` alleles, ~5% ``_tsa<n>``); about 5% of perturbed alleles
  are not deletions. Costanzo: NxN (``_sn`` x ``_dma``, DMA30), ExN_NxE (``_tsq`` /
  ``_damp`` x ``_dma`` at DMA26, ``_sn`` x ``_tsa`` at TSA30), ExE (``_tsq`` x ``_tsa``,
  TSA26 with ~15% of queries re-screened at TSA30), DAmP (``_damp`` x ``_dma``), a
  few ``_S<n>`` suppressor queries; deletion alleles are written without ``Δ`` as
  in the real files. So ~20% of Costanzo perturbations are not deletions (ts, DAmP),
  as in the real composition.
- **Replicates.** The same gene set measured twice: re-screened Kuzmin double
  queries (another ``tm`` number), Costanzo reciprocal pairs (A query x B array and
  B query x A array), ExE queries at two temperatures, second ts alleles of a gene.
- **Values.** Single mutant fitness per strain (mostly near 1, a tail of sick
  strains), interaction scores from a narrow normal plus a negative tail, fitness =
  product of single fitnesses + interaction, standard deviations from a gamma,
  p-values from |score| / sd. Unmeasured values: empty fields (Kuzmin; ~20% of
  digenic query fitness is empty as in Kuzmin 2020) or ``NaN`` (Costanzo), ~1%.
  Number formats as published (``4.50E-01`` Kuzmin p-values, 6-decimal Costanzo ones).

Command line::

    python -m synth.phenotypes --out DIR [--scale 1.0] [--seed 0] [--only kuzmin2018,costanzo2016]

writes ``DIR/kuzmin2018/aao1729_data_s1.tsv`` and ``DIR/costanzo2016/SGA_*.txt`` (the
layout of ``data/raw``) and ``DIR/SYNTHETIC.txt``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.genes import read_gene_table_tsv
from pipeline.core.paths import SAMPLE_DIR
from synth.graph import rng_for

#: Bumped whenever the same (seed, sizes) would give different bytes.
GENERATOR_VERSION = 1
HO = "YDL227C"

KUZMIN_HEADER = [
    "Query strain ID", "Query allele name", "Array strain ID", "Array allele name", "Combined mutant type",
    "Raw genetic interaction score (epsilon)", "Adjusted genetic interaction score (epsilon or tau)", "P-value",
    "Query single/double mutant fitness", "Array single mutant fitness", "Combined mutant fitness",
    "Combined mutant fitness standard deviation",
]
COSTANZO_HEADER = [
    "Query Strain ID", "Query allele name", "Array Strain ID", "Array allele name", "Arraytype/Temp",
    "Genetic interaction score (ε)", "P-value", "Query single mutant fitness (SMF)", "Array SMF",
    "Double mutant fitness", "Double mutant fitness standard deviation",
]
KUZMIN_FILE = "kuzmin2018/aao1729_data_s1.tsv"
COSTANZO_FILES = {k: f"costanzo2016/SGA_{k}.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")}
#: Rows of the real SGA files (20,705,612 in all).
COSTANZO_ROWS_FULL = {"NxN": 12_698_939, "ExN_NxE": 5_796_145, "DAmP": 1_391_958, "ExE": 818_570}
#: Array strains per file at scale 1 (deletion array ~3,800, ts array ~800).
COSTANZO_ARRAYS_FULL = {"NxN": 3_800, "ExN_NxE": 3_800, "DAmP": 3_800, "ExE": 800}
KUZMIN_TRIPLES_FULL = 332_313
KUZMIN_DIGENIC_FULL = 410_399
KUZMIN_ARRAYS_FULL = 1_182
ESSENTIAL_FRACTION = 0.18  # ~1,100 of ~6,000 yeast genes
_BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class KuzminSizes:
    triples: int = KUZMIN_TRIPLES_FULL  #: distinct trigenic gene sets
    digenic: int = KUZMIN_DIGENIC_FULL  #: digenic rows
    arrays: int = KUZMIN_ARRAYS_FULL  #: array strains
    rescreened: float = 0.03  #: fraction of double queries screened twice (replicate rows)

    @classmethod
    def at(cls, scale: float) -> KuzminSizes:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return cls(max(1, round(KUZMIN_TRIPLES_FULL * scale)), max(1, round(KUZMIN_DIGENIC_FULL * scale)),
                   max(12, min(KUZMIN_ARRAYS_FULL, round(KUZMIN_ARRAYS_FULL * math.sqrt(scale)))))


@dataclass(frozen=True)
class CostanzoSizes:
    rows: dict[str, int]  #: file key (NxN, ExN_NxE, DAmP, ExE) -> rows
    arrays: dict[str, int]  #: file key -> array strains

    @classmethod
    def at(cls, scale: float) -> CostanzoSizes:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        rows = {k: max(1, round(v * scale)) for k, v in COSTANZO_ROWS_FULL.items()}
        arrays = {k: max(8, min(COSTANZO_ARRAYS_FULL[k], round(COSTANZO_ARRAYS_FULL[k] * math.sqrt(scale))))
                  for k in rows}
        return cls(rows, arrays)

    @classmethod
    def rows_each(cls, n: int, arrays: int = 30) -> CostanzoSizes:
        """``n`` rows in every file over ``arrays`` array strains (the committed samples)."""
        return cls({k: n for k in COSTANZO_ROWS_FULL}, {k: arrays for k in COSTANZO_ROWS_FULL})


# --- genes and strains --------------------------------------------------------------------

@dataclass(frozen=True)
class GenePool:
    """Systematic ids, lower-case allele stems (standard name, else the id) and an essential flag."""

    ids: np.ndarray
    stems: np.ndarray
    essential: np.ndarray

    @classmethod
    def from_table(cls, genes: pl.DataFrame, seed: int) -> GenePool:
        g = genes.filter(pl.col("id") != HO).sort("id")  # HO is the marker, never a perturbation here
        ids = g["id"].to_numpy().astype(str)
        stems = g.select(pl.coalesce(pl.col("name"), pl.col("id")).str.to_lowercase())["name"].to_numpy().astype(str)
        essential = rng_for(seed, "essential").random(len(ids)) < ESSENTIAL_FRACTION
        return cls(ids, stems, essential)

    def pick(self, rng: np.random.Generator, n: int, essential: bool, replace: bool = False) -> np.ndarray:
        pool = np.flatnonzero(self.essential == essential)
        return rng.choice(pool, n, replace=replace or n > len(pool))


@dataclass(frozen=True)
class Strains:
    """A strain collection: one row per strain (numpy arrays of equal length)."""

    sid: np.ndarray  # strain id
    allele: np.ndarray  # allele name
    genes: np.ndarray  # int64 [n, 2] perturbed gene indices (-1 = none), to skip self-crosses
    smf: np.ndarray  # float64 single (or double) mutant fitness

    def take(self, idx: np.ndarray) -> Strains:
        return Strains(self.sid[idx], self.allele[idx], self.genes[idx], self.smf[idx])

    def __len__(self) -> int:
        return len(self.sid)


def _smf(rng: np.random.Generator, n: int, sick: float = 0.15) -> np.ndarray:
    """Single mutant fitness: mostly ~1, a tail of sick strains."""
    f = rng.normal(1.0, 0.04, n) - rng.gamma(1.2, sick, n) * (rng.random(n) < 0.35)
    return np.clip(f, 0.05, 1.25)


def _single_strains(pool: GenePool, genes: np.ndarray, kind: str, rng: np.random.Generator, first_number: int,
                    delta: bool = False) -> Strains:
    """One strain per gene index: ``<id>_<kind><n>`` with an allele name of the kind."""
    n = len(genes)
    num = np.arange(first_number, first_number + n).astype(str)
    sid = np.char.add(np.char.add(pool.ids[genes], f"_{kind}"), num)
    stem = pool.stems[genes]
    if kind in ("tsq", "tsa"):
        allele = np.char.add(np.char.add(stem, "-"), rng.integers(1, 6000, n).astype(str))
    elif kind == "damp":
        allele = np.char.add(stem, "-damp")
    elif kind == "S":
        allele = np.char.add(stem, "-supp1")
    else:
        allele = np.char.add(stem, "\u0394") if delta else stem
    g2 = np.stack([genes, np.full(n, -1)], axis=1).astype(np.int64)
    return Strains(sid, allele, g2, _smf(rng, n))


def _concat(*s: Strains) -> Strains:
    return Strains(*(np.concatenate([getattr(x, f) for x in s]) for f in ("sid", "allele", "genes", "smf")))


# --- value columns ------------------------------------------------------------------------

def _scores(rng: np.random.Generator, n: int, scale: float = 0.04) -> np.ndarray:
    """Interaction scores: a narrow normal, 10% negative tail, 3% positive tail."""
    e = rng.normal(0, scale, n)
    u = rng.random(n)
    e -= np.where(u < 0.10, rng.exponential(0.15, n), 0.0)
    e += np.where(u > 0.97, rng.exponential(0.08, n), 0.0)
    return e


def _p_values(rng: np.random.Generator, score: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = np.abs(score) / np.maximum(sd, 1e-3) * rng.uniform(0.5, 1.5, len(score))
    return np.clip(np.exp(-0.717 * z - 0.416 * z * z), 1e-8, 1.0)  # ~ two-sided normal tail


def _missing(rng: np.random.Generator, x: np.ndarray, frac: float) -> np.ndarray:
    out = x.astype(np.float64).copy()
    out[rng.random(len(x)) < frac] = np.nan
    return out


def _fixed(col: str, d: int) -> pl.Expr:
    """A float column as text with exactly ``d`` decimals (null for NaN), e.g. ``0.005042``."""
    x = pl.col(col)
    scaled = (x.abs() * 10 ** d).round(0).cast(pl.Int64)
    ip, fp = scaled // 10 ** d, (scaled % 10 ** d).cast(pl.String).str.zfill(d)
    sign = pl.when(x < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(x.is_nan()).then(None).otherwise(pl.concat_str(sign, ip.cast(pl.String), pl.lit("."), fp)).alias(col)


def _scientific(col: str, d: int = 2) -> pl.Expr:
    """A positive float as ``4.50E-01`` (Kuzmin's p-value format)."""
    x = pl.col(col)
    e = x.log10().floor().cast(pl.Int64)
    m = (x / pl.lit(10.0).pow(e) * 10 ** d).round(0).cast(pl.Int64)
    e = pl.when(m >= 10 ** (d + 1)).then(e + 1).otherwise(e)
    m = pl.when(m >= 10 ** (d + 1)).then(m // 10).otherwise(m)
    mant = pl.concat_str((m // 10 ** d).cast(pl.String), pl.lit("."), (m % 10 ** d).cast(pl.String).str.zfill(d))
    exp = pl.concat_str(pl.when(e < 0).then(pl.lit("-")).otherwise(pl.lit("+")),
                        e.abs().cast(pl.String).str.zfill(2))
    return pl.when(x.is_nan()).then(None).otherwise(pl.concat_str(mant, pl.lit("E"), exp)).alias(col)


# --- Kuzmin 2018 ---------------------------------------------------------------------------

def kuzmin_table(pool: GenePool, sizes: KuzminSizes, seed: int) -> pl.DataFrame:
    """The Kuzmin-style table (all rows, values formatted as text), digenic rows first."""
    rng = rng_for(seed, "kuzmin2018")
    n_arr = sizes.arrays
    n_ts_arr = max(1, round(0.05 * n_arr))
    arr = _concat(_single_strains(pool, pool.pick(rng, n_arr - n_ts_arr, False), "dma", rng, 1, delta=True),
                  _single_strains(pool, pool.pick(rng, n_ts_arr, True), "tsa", rng, 1))
    # double-mutant queries: enough that the crosses give the triples asked for (some arrays drop out)
    n_dq = max(1, math.ceil(sizes.triples / (0.95 * n_arr)) + 2)
    n_qgenes = max(4, round(n_dq * 1.6))
    qgenes = np.concatenate([pool.pick(rng, n_qgenes - max(1, n_qgenes // 20), False),
                             pool.pick(rng, max(1, n_qgenes // 20), True)])
    qgenes = np.unique(qgenes)
    ts = pool.essential[qgenes]
    pairs = np.sort(rng.choice(len(qgenes), (n_dq * 2, 2)), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(pairs, axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:n_dq]]
    # single queries (HO marker); allele numbers shared with the double queries' tm series
    s_gene = qgenes
    s_smf = _smf(rng, len(s_gene))
    s_num = np.arange(1, len(s_gene) + 1)
    first = rng.random(len(s_gene)) < 1 / 3  # marker written first
    ids, hoid = pool.ids[s_gene], np.full(len(s_gene), HO)
    body = np.where(first, np.char.add(np.char.add(hoid, "+"), ids), np.char.add(np.char.add(ids, "+"), hoid))
    allele_g = np.where(ts, np.char.add(np.char.add(pool.stems[s_gene], "-"), (s_num % 97 + 1).astype(str)),
                        np.char.add(pool.stems[s_gene], "\u0394"))
    allele = np.where(first, np.char.add("ho\u0394+", allele_g), np.char.add(allele_g, "+ho\u0394"))
    kind = np.where(ts, "_tsq", "_tm")
    s_sid = np.char.add(np.char.add(body, kind), s_num.astype(str))
    singles = Strains(s_sid, allele, np.stack([s_gene, np.full(len(s_gene), -1)], axis=1), s_smf)

    # double queries, some screened twice under another tm number
    g1, g2 = qgenes[pairs[:, 0]], qgenes[pairs[:, 1]]
    reps = np.flatnonzero(rng.random(len(pairs)) < sizes.rescreened)
    d_idx = np.concatenate([np.arange(len(pairs)), reps])
    d_num = np.arange(len(s_gene) + 1, len(s_gene) + 1 + len(d_idx))
    d_sid = np.char.add(np.char.add(np.char.add(np.char.add(pool.ids[g1[d_idx]], "+"), pool.ids[g2[d_idx]]), "_tm"),
                        d_num.astype(str))
    d_allele = np.char.add(np.char.add(allele_g[pairs[d_idx, 0]], "+"), allele_g[pairs[d_idx, 1]])
    d_smf = np.clip(s_smf[pairs[d_idx, 0]] * s_smf[pairs[d_idx, 1]] + _scores(rng, len(d_idx)), 0.02, 1.25)
    doubles = Strains(d_sid, d_allele, np.stack([g1[d_idx], g2[d_idx]], axis=1), d_smf)

    # trigenic crosses: every double query x every array (5% dropped), then exactly `triples` distinct sets
    qi = np.repeat(np.arange(len(doubles)), len(arr))
    ai = np.tile(np.arange(len(arr)), len(doubles))
    agene = arr.genes[ai, 0]
    keep = (rng.random(len(qi)) >= 0.05) & (agene != doubles.genes[qi, 0]) & (agene != doubles.genes[qi, 1])
    qi, ai = qi[keep], ai[keep]
    tri = np.sort(np.stack([doubles.genes[qi, 0], doubles.genes[qi, 1], arr.genes[ai, 0]], axis=1), axis=1)
    # a gene's type is fixed here (essential -> ts, else deletion): the gene set is the strain
    n_genes = len(pool.ids) + 1
    key = (tri[:, 0] * n_genes + tri[:, 1]) * n_genes + tri[:, 2]
    _, first_pos = np.unique(key, return_index=True)
    if len(first_pos) < sizes.triples:
        raise RuntimeError(f"only {len(first_pos)} distinct triples drawn, {sizes.triples} wanted")
    wanted = np.sort(first_pos)[:sizes.triples]
    keep = np.isin(key, key[wanted])
    tri_q, tri_a = qi[keep], ai[keep]

    # digenic crosses: single queries x arrays, in query order (cycled if too few), until `digenic` rows
    per = len(arr)
    need_q = math.ceil(sizes.digenic / (0.9 * per)) + 1
    sq = np.repeat(np.arange(need_q) % len(singles), per)
    sa = np.tile(np.arange(per), need_q)
    ok = (rng.random(len(sq)) >= 0.05) & (arr.genes[sa, 0] != singles.genes[sq, 0])
    sq, sa = sq[ok][:sizes.digenic], sa[ok][:sizes.digenic]

    def block(q: Strains, qi: np.ndarray, ai: np.ndarray, mtype: str) -> pl.DataFrame:
        n = len(qi)
        sd = rng.gamma(2.0, 0.02, n)
        adj = _scores(rng, n)
        raw = adj + (_scores(rng, n, 0.03) if mtype == "trigenic" else 0.0)
        fit = np.clip(q.smf[qi] * arr.smf[ai] + raw, 0.0, 1.4)
        smf_q = _missing(rng, q.smf[qi], 0.2 if mtype == "digenic" else 0.01)
        return pl.DataFrame({
            KUZMIN_HEADER[0]: q.sid[qi], KUZMIN_HEADER[1]: q.allele[qi], KUZMIN_HEADER[2]: arr.sid[ai],
            KUZMIN_HEADER[3]: arr.allele[ai], KUZMIN_HEADER[4]: np.full(n, mtype),
            "raw": raw, "adj": adj, "p": _p_values(rng, adj, sd), "smf_q": smf_q, "smf_a": arr.smf[ai],
            "fit": fit, "sd": _missing(rng, sd, 0.01)})

    df = pl.concat([block(singles, sq, sa, "digenic"), block(doubles, tri_q, tri_a, "trigenic")])
    return df.select(
        *KUZMIN_HEADER[:5],
        _fixed("raw", 6).alias(KUZMIN_HEADER[5]), _fixed("adj", 6).alias(KUZMIN_HEADER[6]),
        _scientific("p").alias(KUZMIN_HEADER[7]), _fixed("smf_q", 3).alias(KUZMIN_HEADER[8]),
        _fixed("smf_a", 3).alias(KUZMIN_HEADER[9]), _fixed("fit", 4).alias(KUZMIN_HEADER[10]),
        _fixed("sd", 4).alias(KUZMIN_HEADER[11]))


def write_kuzmin2018(path: Path, pool: GenePool, sizes: KuzminSizes, seed: int) -> dict[str, int]:
    """Write the Kuzmin-style TSV; returns counts (rows, digenic, trigenic)."""
    df = kuzmin_table(pool, sizes, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path, separator="\t", null_value="", quote_style="never", line_terminator="\n")
    tri = int((df[KUZMIN_HEADER[4]] == "trigenic").sum())
    return {"rows": df.height, "digenic": df.height - tri, "trigenic": tri, "distinct_triples": sizes.triples}


# --- Costanzo 2016 -------------------------------------------------------------------------

Block = tuple[Strains, Strains, np.ndarray, int]  # query strains, array strains, screen per query, rows


def _costanzo_plan(pool: GenePool, sizes: CostanzoSizes, seed: int) -> dict[str, list[Block]]:
    """Per file: blocks of (query strains, array strains, screen label per query, rows)."""
    rng = rng_for(seed, "costanzo2016:strains")
    n_non = int((~pool.essential).sum())
    n_ess = int(pool.essential.sum())
    num = iter(range(1, 10**9))

    def strains(n: int, essential: bool, kind: str) -> Strains:
        n = max(1, n)
        second = n // 10 if kind in ("tsq", "tsa") else 0  # second alleles of a gene: replicate gene sets
        genes = pool.pick(rng, n - second, essential)
        genes = np.concatenate([genes, rng.choice(genes, second)])
        return _single_strains(pool, genes, kind, rng, next(num) * 10_000)

    plan: dict[str, list[Block]] = {}
    for key in ("NxN", "ExN_NxE", "ExE", "DAmP"):
        rows, n_arr = sizes.rows[key], sizes.arrays[key]
        if key == "NxN":
            arr = strains(min(n_arr, n_non), False, "dma")
            nq = math.ceil(rows / (0.97 * len(arr))) + 1
            nsup = max(1, nq // 200)
            q = _concat(strains(min(nq - nsup, n_non), False, "sn"), strains(nsup, False, "S"))
            # suppressor queries spread evenly through the file (the first one first)
            order = np.argsort(np.concatenate([np.arange(len(q) - nsup) + 0.5,
                                               np.arange(nsup) * (len(q) / nsup)]), kind="stable")
            q = q.take(order)
            plan[key] = [(q, arr, np.full(len(q), "DMA30"), rows)]
        elif key == "ExN_NxE":
            half = rows // 2
            arr1 = strains(min(n_arr, n_non), False, "dma")
            nq1 = math.ceil(half / (0.97 * len(arr1))) + 1
            q1 = _concat(strains(max(1, nq1 * 4 // 5), True, "tsq"), strains(max(1, nq1 - nq1 * 4 // 5), True, "damp"))
            arr2 = strains(min(max(8, n_arr // 4), n_ess), True, "tsa")
            nq2 = math.ceil((rows - half) / (0.97 * len(arr2))) + 1
            q2 = strains(min(nq2, n_non), False, "sn")
            plan[key] = [(q1, arr1, np.full(len(q1), "DMA26"), half),
                         (q2, arr2, np.full(len(q2), "TSA30"), rows - half)]
        elif key == "ExE":
            arr = strains(min(n_arr, n_ess), True, "tsa")
            nq = math.ceil(rows / (0.97 * len(arr))) + 1
            q = strains(max(1, round(nq / 1.15)), True, "tsq")
            again = np.flatnonzero(rng.random(len(q)) < 0.15)  # re-screened at 30 degrees: replicates
            idx = np.concatenate([np.arange(len(q)), again])
            q = q.take(idx)
            screens = np.where(np.arange(len(idx)) < len(idx) - len(again), "TSA26", "TSA30")
            plan[key] = [(q, arr, screens, rows)]
        else:
            arr = strains(min(n_arr, n_non), False, "dma")
            nq = math.ceil(rows / (0.97 * len(arr))) + 1
            q = strains(min(nq, n_ess), True, "damp")
            plan[key] = [(q, arr, np.full(len(q), "DMA30"), rows)]
    return plan


def _cross_batches(rng: np.random.Generator, q: Strains, arr: Strains, screens: np.ndarray,
                   rows: int) -> Iterator[pl.DataFrame]:
    """Query-major crosses (3% of pairs and self-crosses dropped), exactly ``rows`` rows in batches.

    Queries are cycled if they run out (small gene pools at large scale)."""
    per_batch = max(1, _BATCH_ROWS // len(arr))
    text = {k: pl.Series(v) for k, v in (("qs", q.sid), ("qa", q.allele), ("as", arr.sid), ("aa", arr.allele),
                                         ("scr", screens))}
    done, start = 0, 0
    while done < rows:
        qs = (np.arange(start, start + per_batch) % len(q))
        start += per_batch
        qi = np.repeat(qs, len(arr))
        ai = np.tile(np.arange(len(arr)), len(qs))
        keep = (rng.random(len(qi)) >= 0.03) & (q.genes[qi, 0] != arr.genes[ai, 0])
        qi, ai = qi[keep][:rows - done], ai[keep][:rows - done]
        n = len(qi)
        if n == 0:
            continue
        done += n
        eps = _scores(rng, n)
        sd = rng.gamma(2.0, 0.02, n)
        df = pl.DataFrame({
            COSTANZO_HEADER[0]: text["qs"].gather(qi), COSTANZO_HEADER[1]: text["qa"].gather(qi),
            COSTANZO_HEADER[2]: text["as"].gather(ai), COSTANZO_HEADER[3]: text["aa"].gather(ai),
            COSTANZO_HEADER[4]: text["scr"].gather(qi),
            "eps": eps, "p": _p_values(rng, eps, sd), "smf_q": _missing(rng, q.smf[qi], 0.01),
            "smf_a": _missing(rng, arr.smf[ai], 0.01),
            "dmf": np.clip(q.smf[qi] * arr.smf[ai] + eps, 0.0, 1.4), "sd": _missing(rng, sd, 0.01)})
        yield df.select(*COSTANZO_HEADER[:5], _fixed("eps", 4).alias(COSTANZO_HEADER[5]),
                        _fixed("p", 6).alias(COSTANZO_HEADER[6]), _fixed("smf_q", 4).alias(COSTANZO_HEADER[7]),
                        _fixed("smf_a", 4).alias(COSTANZO_HEADER[8]), _fixed("dmf", 4).alias(COSTANZO_HEADER[9]),
                        _fixed("sd", 4).alias(COSTANZO_HEADER[10]))


def write_costanzo2016(out: Path, pool: GenePool, sizes: CostanzoSizes, seed: int,
                       names: dict[str, str] | None = None) -> dict[str, int]:
    """Write the four SGA files under ``out`` (at ``names[key]``, default :data:`COSTANZO_FILES`); rows per file."""
    names = names or COSTANZO_FILES
    plan = _costanzo_plan(pool, sizes, seed)
    report = {}
    for key, blocks in plan.items():
        path = out / names[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = rng_for(seed, f"costanzo2016:{key}")
        n = 0
        with open(path, "wb") as fh:
            fh.write(("\t".join(COSTANZO_HEADER) + "\n").encode())
            for q, arr, screens, rows in blocks:
                for df in _cross_batches(rng, q, arr, screens, rows):
                    df.write_csv(fh, separator="\t", include_header=False, null_value="NaN", quote_style="never",
                                 line_terminator="\n")
                    n += df.height
        report[names[key]] = n
    return report


# --- command line --------------------------------------------------------------------------

# --- single-strain and pair tables (SMF, SynLethDB, Costanzo 2021) ------------------------

#: A fixed creation date: the same bytes on every run (xlsx files embed it).
_XLSX_DATE = (2026, 1, 1)


def _write_xlsx(path: Path, sheet: str, header: list[str], rows: list[list]) -> None:
    """One worksheet (header row, then rows; None = empty cell), deterministic bytes."""
    import datetime

    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": False})
    wb.set_properties({"created": datetime.datetime(*_XLSX_DATE)})
    ws = wb.add_worksheet(sheet)
    ws.write_row(0, 0, header)
    for i, r in enumerate(rows, start=1):
        for j, v in enumerate(r):
            if v is not None:
                ws.write(i, j, v)
    wb.close()


def _mixed_singles(pool: GenePool, n: int, rng: np.random.Generator) -> Strains:
    """``n`` single-gene strains as the SGA collections name them: deletions (``_dma`` / ``_sn``)
    of nonessential genes, ts (``_tsq`` / ``_tsa``) and DAmP alleles of essential ones."""
    n_ts, n_damp = n // 6, n // 12
    n_del = n - n_ts - n_damp
    dele = pool.pick(rng, n_del, essential=False)
    ess = pool.pick(rng, n_ts + n_damp, essential=True)
    return _concat(_single_strains(pool, dele[: n_del // 2], "dma", rng, 1),
                   _single_strains(pool, dele[n_del // 2:], "sn", rng, 1),
                   _single_strains(pool, ess[:n_ts], "tsq", rng, 100),
                   _single_strains(pool, ess[n_ts:], "damp", rng, 1))


def write_costanzo2016_smf(path: Path, pool: GenePool, n: int, seed: int) -> int:
    """A Costanzo-2016-style ``strain_ids_and_single_mutant_fitness.xlsx``: ``n`` strains, fitness
    and stddev at 26 and 30 °C (equal for non-ts strains, as released), ~2% empty cells."""
    rng = rng_for(seed, "costanzo2016_smf")
    st = _mixed_singles(pool, n, rng)
    f26 = st.smf
    ts = np.char.find(st.sid.astype(str), "_ts") >= 0
    f30 = np.where(ts, np.clip(f26 - rng.gamma(1.5, 0.1, n), 0.02, 1.2), f26)
    sd26, sd30 = rng.gamma(2.0, 0.01, n), rng.gamma(2.0, 0.01, n)
    sd30 = np.where(ts, sd30, sd26)
    gap = rng.random((n, 4)) < 0.02
    rows = [[str(st.sid[i]), str(pool.ids[st.genes[i, 0]]), str(st.allele[i]),
             *[None if gap[i, j] else round(float(v), 4) for j, v in enumerate((f26[i], sd26[i], f30[i], sd30[i]))]]
            for i in range(n)]
    _write_xlsx(path, "Sheet1", ["Strain ID", "Systematic gene name", "Allele/Gene name",
                                 "Single mutant fitness (26°)", "Single mutant fitness (26°) stddev",
                                 "Single mutant fitness (30°)", "Single mutant fitness (30°) stddev"], rows)
    return n


def write_baryshnikova2010(path: Path, pool: GenePool, n: int, seed: int) -> int:
    """A Baryshnikova-2010-style ``S1_SMF_standard_100209.txt`` (three tab-separated columns, no
    header): bare ORFs (deletions), ``<ORF>_damp`` and ``<ORF>_tsq<n>`` ids, fitness, SE."""
    rng = rng_for(seed, "baryshnikova2010")
    st = _mixed_singles(pool, n, rng)
    sid = st.sid.astype(str)
    deletion = (np.char.find(sid, "_dma") >= 0) | (np.char.find(sid, "_sn") >= 0)
    sid = np.where(deletion, pool.ids[st.genes[:, 0]], sid)  # deletions are bare ORFs
    se = rng.gamma(2.0, 0.004, n)
    df = pl.DataFrame({"id": sid, "f": np.round(st.smf, 6), "se": np.round(se, 6)})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path, separator="\t", include_header=False)
    return n


def write_synlethdb(path: Path, pool: GenePool, n: int, seed: int, kind: str) -> int:
    """A SynLethDB-style ``Yeast_SL.csv`` / ``Yeast_SR.csv``: ``n`` distinct gene pairs by standard
    name (systematic where the gene has none), Entrez-like ids, PubMed ids, sources and scores."""
    rng = rng_for(seed, f"synlethdb_{kind}")
    a = rng.integers(0, len(pool.ids), 3 * n)
    b = rng.integers(0, len(pool.ids), 3 * n)
    keep = a != b
    pairs = np.unique(np.sort(np.stack([a[keep], b[keep]], 1), axis=1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:n]]
    names = np.char.upper(pool.stems)
    src = rng.choice(np.array(["BioGRID", "Text Mining", "GenomeRNAi", "High Throughput"]), len(pairs))
    score = np.where(kind == "sl", np.round(rng.uniform(0.1, 1.0, len(pairs)), 3), np.nan)
    df = pl.DataFrame({
        "n1.name": names[pairs[:, 0]], "n1.identifier": 850000 + pairs[:, 0],
        "n2.name": names[pairs[:, 1]], "n2.identifier": 850000 + pairs[:, 1],
        "r.cell_line": [""] * len(pairs),
        "r.pubmed_id": (10000000 + rng.integers(0, 9000000, len(pairs))).astype(str),
        "r.source": src, "r.statistic_score": score})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path, null_value="", float_precision=3)
    return len(pairs)


def write_costanzo2021(path: Path, pool: GenePool, n: int, seed: int) -> int:
    """A Costanzo-2021-style Data File S1 sheet ``Diff. Mutant fitness_Conditions``: ``n`` array
    strains (``dma<n>`` deletions, ``tsa<n>`` ts alleles) x 14 conditions, ~0.6% empty cells."""
    from pipeline.sources.phenotypes.costanzo2021 import CONDITIONS, SHEET

    rng = rng_for(seed, "costanzo2021")
    n_ts = n // 5
    genes = np.concatenate([pool.pick(rng, n - n_ts, essential=False), pool.pick(rng, n_ts, essential=True)])
    kind = np.array(["dma"] * (n - n_ts) + ["tsa"] * n_ts)
    diff = rng.normal(0, 0.05, (n, len(CONDITIONS))) - rng.gamma(1.0, 0.15, (n, len(CONDITIONS))) * (
        rng.random((n, len(CONDITIONS))) < 0.08)
    gap = rng.random(diff.shape) < 0.006
    rows = [[str(pool.ids[g]), str(pool.stems[g]).upper(), f"{pool.stems[g]}-{100 + i}" if kind[i] == "tsa" else None,
             f"{kind[i]}{1000 + i}", *[None if gap[i, j] else round(float(diff[i, j]), 4)
                                        for j in range(len(CONDITIONS))]]
            for i, g in enumerate(genes)]
    header = ["Systematic Name", "Gene Name", "Allele (Essential genes only)", "Strain ID",
              *[v[0] for v in CONDITIONS.values()]]
    _write_xlsx(path, SHEET, header, rows)
    return n


def gene_pool(genes_tsv: Path = SAMPLE_DIR / "genes.tsv", seed: int = 0) -> GenePool:
    return GenePool.from_table(read_gene_table_tsv(genes_tsv), seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synth.phenotypes", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write (laid out like data/raw)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplies the row counts (default 1: 332,313 triples, 20.7 M Costanzo rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="kuzmin2018,costanzo2016", help="tables to write (comma-separated)")
    p.add_argument("--genes", type=Path, default=SAMPLE_DIR / "genes.tsv", help="gene table (.tsv) whose ids to use")
    args = p.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {"kuzmin2018", "costanzo2016"}
    if unknown:
        p.error(f"unknown tables {sorted(unknown)}")
    t0 = time.perf_counter()
    pool = gene_pool(args.genes, args.seed)
    lines = ["SYNTHETIC DATA: these files are generated, not measured. Do not use them for biology.",
             f"generator: python -m synth.phenotypes --scale {args.scale:g} --seed {args.seed} "
             f"(version {GENERATOR_VERSION}); genes: {len(pool.ids):,} ids of {args.genes}", "files:"]
    if "kuzmin2018" in only:
        sizes = KuzminSizes.at(args.scale)
        r = write_kuzmin2018(args.out / KUZMIN_FILE, pool, sizes, args.seed)
        lines.append(f"  {KUZMIN_FILE}: {r['rows']:,} rows ({r['digenic']:,} digenic, {r['trigenic']:,} trigenic "
                     f"over {r['distinct_triples']:,} distinct triples)")
        print(lines[-1].strip(), flush=True)
    if "costanzo2016" in only:
        r = write_costanzo2016(args.out, pool, CostanzoSizes.at(args.scale), args.seed)
        for name, n in r.items():
            lines.append(f"  {name}: {n:,} rows")
            print(lines[-1].strip(), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    note = args.out / "SYNTHETIC.txt"
    if note.exists():  # keep the lines of tables an earlier --only run wrote and this one did not
        written = {ln.split(":")[0].strip() for ln in lines if ln.startswith("  ")}
        lines += [ln for ln in note.read_text().splitlines()
                  if ln.startswith("  ") and ln.split(":")[0].strip() not in written]
    note.write_text("\n".join(lines) + "\n")
    print(f"done in {time.perf_counter() - t0:.1f}s (SYNTHETIC; see {args.out / 'SYNTHETIC.txt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
