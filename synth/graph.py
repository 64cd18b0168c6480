"""Synthetic yeast interaction graphs, written in the real source formats.

Contract:

- **Deterministic.** Every output is a pure function of (gene table, sizes, seed):
  same inputs give byte-identical files (gzip members carry no mtime or name).
  Each source draws from its own random stream, keyed by the seed and the source
  name, so ``--only`` subsets give the same bytes as a full run.
- **Vectorised.** Edges are drawn, deduplicated and formatted with numpy and polars;
  no Python loop runs per edge (only per gene, per batch or per channel).
- **Exact sizes.** Each edge type has exactly the requested number of distinct gene
  pairs (unordered for undirected types, ordered for ``tflink`` and ``regulatory``);
  :data:`FULL_SCALE` holds the sizes of the real files, ``scale`` multiplies them.
- **Heavy-tailed.** Pairs are drawn Chung-Lu style: both ends of an edge are picked
  with probability proportional to a power-law node weight (placed on random genes),
  so degrees are heavy-tailed with hubs, as in real interaction data. Directed types
  draw their sources from a small TF set (``~200 * scale`` TFs) shared by TFLink and
  the regulatory table.
- **Gene universe.** :data:`FULL_SCALE_GENES` (6,607) genes at every scale: the real
  genes of ``data/sample/genes.tsv`` (5,989, R64-2-1) plus synthetic filler genes
  ``YSYN0001W``... (ids no real systematic name can take: chromosome letters are
  A-P) flagged ``Note=synthetic filler`` in the GFF3. The universe is not scaled:
  a small ``scale`` is a sparser graph over the same genes, so a quick run exercises
  the same id mapping as a full one.

STRING's six channels overlap like the real v12 file: a base set of
``STRING_UNION_FULL * scale`` (~1.3 M) distinct pairs is drawn once and every
channel takes a subset of it of its required size, each base pair being in at least
one channel. The file lists every pair in both orientations (~2.6 M rows at scale 1)
sorted by ``protein1`` then ``protein2``.

Command line::

    python -m synth.graph --out DIR [--scale 1.0] [--seed 0] [--only string12,physical,...]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.genes import CHROMOSOMES, conform, read_gene_table_tsv
from pipeline.core.paths import SAMPLE_DIR
from pipeline.core.ragged import indptr_from_lengths, owner
from pipeline.sources.interactions.biogrid import TAB3_COLUMNS
from pipeline.sources.interactions.string import CHANNELS, HEADER, TAXON_PREFIX

#: Bumped whenever the same (seed, scale) would give different bytes: caches key on it.
GENERATOR_VERSION = 1

# --- sizes -------------------------------------------------------------------------------

#: Distinct gene pairs per edge type in the real inputs (scale 1).
FULL_SCALE: dict[str, int] = {
    "string12_coexpression": 1_002_538,
    "string12_experimental": 825_101,
    "string12_neighborhood": 147_874,
    "string12_database": 73_818,
    "string12_fusion": 11_810,
    "string12_cooccurence": 11_115,
    "physical": 139_463,
    "regulatory": 9_753,  # directed
    "tflink": 201_898,  # directed
}
#: Genes in the synthetic universe (SGD's gene features); not scaled.
FULL_SCALE_GENES = 6_607
#: Distinct pairs over all six STRING channels (the v12 file has ~2.6 M rows, both orientations).
STRING_UNION_FULL = 1_300_000
#: Transcription factors that source the directed types, at scale 1.
N_TFS_FULL = 200
#: BioGRID genetic pairs per physical pair (no target size; "some genetic rows").
GENETIC_PER_PHYSICAL = 0.2
#: Extra BioGRID evidence rows per distinct pair (real BioGRID repeats pairs across studies).
BIOGRID_EXTRA_ROWS = {"physical": 0.35, "genetic": 0.1}

#: Output layout, as data/raw: which file each source is written to.
OUTPUTS: dict[str, str] = {
    "string12": "string/4932.protein.links.detailed.v12.0.txt.gz",
    "biogrid": "biogrid/BIOGRID-ORGANISM-Saccharomyces_cerevisiae_S288c-synthetic.tab3.txt",
    "tflink": "tflink/TFLink_Saccharomyces_cerevisiae_interactions_All_simpleFormat_v1.0.tsv",
    "regulatory": "regulatory/regulatory_synthetic.tsv",
    "genome": "genome/saccharomyces_cerevisiae_synthetic.gff",
}
#: Edge-type names accepted by ``--only``, mapped to the source that writes them.
_ALIASES = {**{f"string12_{c}": "string12" for c in CHANNELS}, "physical": "biogrid", "genetic": "biogrid",
            "gff": "genome", "gff3": "genome", "genes": "genome"}


def _scaled(n: int, scale: float) -> int:
    return max(1, int(round(n * scale)))


@dataclass(frozen=True)
class SynthSizes:
    """How much to generate: distinct pairs per edge type and the sizes that go with them."""

    pairs: dict[str, int]  #: edge type -> distinct pairs (keys as in :data:`FULL_SCALE`)
    string_union: int  #: distinct pairs over the six STRING channels
    genetic: int  #: distinct BioGRID genetic pairs
    n_tfs: int  #: size of the TF set sourcing tflink and regulatory
    n_genes: int = FULL_SCALE_GENES  #: genes in the universe (real genes + filler)
    extra_rows: dict[str, float] = field(default_factory=lambda: dict(BIOGRID_EXTRA_ROWS))

    @classmethod
    def at(cls, scale: float) -> SynthSizes:
        """Every count of :data:`FULL_SCALE` times ``scale`` (at least 1); genes stay at 6,607."""
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        pairs = {k: _scaled(v, scale) for k, v in FULL_SCALE.items()}
        union = min(_scaled(STRING_UNION_FULL, scale), sum(v for k, v in pairs.items() if k.startswith("string12_")))
        genetic = _scaled(int(FULL_SCALE["physical"] * GENETIC_PER_PHYSICAL), scale)
        return cls(pairs=pairs, string_union=union, genetic=genetic,
                   n_tfs=max(2, int(round(N_TFS_FULL * scale))))

    def string_channels(self) -> dict[str, int]:
        return {c: self.pairs[f"string12_{c}"] for c in CHANNELS}


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per (seed, source): outputs do not depend on what else is generated."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


# --- graphs ------------------------------------------------------------------------------

def power_law_weights(n: int, endpoints: int, exponent: float, max_degree: float) -> np.ndarray:
    """Chung-Lu node weights ``(rank)^(-1/(exponent-1))``, capped so no expected degree exceeds ``max_degree``.

    ``endpoints`` is the number of edge ends drawn with these weights (2 per undirected
    pair, 1 per directed one); node ``i`` expects ``endpoints * w[i] / w.sum()`` of them.
    The cap keeps hubs below saturation (a node cannot have more than ``n-1`` distinct
    neighbours), solved by a fixed point on the capped sum. Sorted descending.
    """
    w = np.arange(1, n + 1, dtype=np.float64) ** (-1.0 / (exponent - 1.0))
    cap = w[0]
    for _ in range(200):
        new_cap = max_degree * np.minimum(w, cap).sum() / endpoints
        if new_cap >= cap * (1 - 1e-9):
            break
        cap = new_cap
    return np.minimum(w, cap)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` for integers via sort + neighbour compare (numpy 2.4's hash-based unique is ~100x slower)."""
    s = np.sort(x)
    keep = np.ones(len(s), dtype=bool)
    keep[1:] = s[1:] != s[:-1]
    return s[keep]


def heavy_tailed_pairs(n_nodes: int, n_pairs: int, rng: np.random.Generator, exponent: float = 2.0, *,
                       sources: np.ndarray | None = None, target_exponent: float = 3.0,
                       max_degree_frac: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n_pairs`` distinct node pairs with heavy-tailed degrees, as int32 arrays ``(a, b)``.

    Undirected (``sources=None``): unordered pairs, ``a < b``, no self-loops, sorted by
    ``(a, b)``. Both ends follow power-law weights with degree exponent ``exponent``
    placed on a random permutation of the nodes.

    Directed (``sources`` = node ids of the TF set): ordered pairs ``a -> b`` with
    ``a`` in ``sources`` (power-law over the TFs, ``exponent``) and ``b`` any other node
    (a milder power law, ``target_exponent``: some genes are targets of many TFs),
    sorted by ``(a, b)``.

    Pairs are drawn in batches with replacement and deduplicated until there are
    enough, then a uniform random subset of exactly ``n_pairs`` is kept.
    """
    n = int(n_nodes)
    if sources is None:
        capacity = n * (n - 1) // 2
        if n_pairs > 0.3 * capacity:
            raise ValueError(f"{n_pairs:,} pairs is too dense for {n:,} nodes (at most 30% of {capacity:,})")
        p = power_law_weights(n, 2 * n_pairs, exponent, max_degree_frac * (n - 1))[rng.permutation(n)]
        p_src = p_dst = p / p.sum()
        src_nodes = None
    else:
        src_nodes = np.asarray(sources, dtype=np.int64)
        k = len(src_nodes)
        capacity = k * (n - 1)
        if k == 0 or n_pairs > 0.5 * capacity:
            raise ValueError(f"{n_pairs:,} directed pairs is too dense for {k} sources x {n:,} nodes")
        ps = power_law_weights(k, n_pairs, exponent, max_degree_frac * (n - 1))[rng.permutation(k)]
        pt = power_law_weights(n, n_pairs, target_exponent, max_degree_frac * k)[rng.permutation(n)]
        p_src, p_dst = ps / ps.sum(), pt / pt.sum()
    keys = np.empty(0, dtype=np.int64)
    accept = 1.0
    for _ in range(1000):
        need = n_pairs - len(keys)
        if need <= 0:
            break
        size = int(need / accept * 1.1) + 256
        if src_nodes is None:
            a = rng.choice(n, size, p=p_src)
            b = rng.choice(n, size, p=p_dst)
            a, b = np.minimum(a, b), np.maximum(a, b)
        else:
            a = src_nodes[rng.choice(len(src_nodes), size, p=p_src)]
            b = rng.choice(n, size, p=p_dst)
        ok = a != b
        merged = sorted_unique(np.concatenate([keys, a[ok].astype(np.int64) * n + b[ok]]))
        accept = max((len(merged) - len(keys)) / size, 1e-3)  # hub pairs saturate: adapt the batch
        keys = merged
    else:
        raise RuntimeError(f"could not draw {n_pairs:,} distinct pairs over {n:,} nodes")
    keys = keys[np.sort(rng.choice(len(keys), n_pairs, replace=False))]
    return (keys // n).astype(np.int32), (keys % n).astype(np.int32)


#: STRING score shape per channel: (lowest non-zero score, skew). A score is
#: ``low + floor((1000 - low) * u**skew)`` for uniform u: in [low, 999], most of the
#: mass low, a long tail up to 999 (skew 1 is uniform; larger skews lower the median).
SCORE_SHAPE: dict[str, tuple[int, float]] = {
    "neighborhood": (42, 3.0), "fusion": (40, 2.0), "cooccurence": (41, 2.5),
    "coexpression": (42, 3.0), "experimental": (45, 2.5), "database": (45, 1.5), "textmining": (42, 2.5),
}
#: Share of STRING pairs with a textmining score (not an edge type; written for format fidelity).
TEXTMINING_SHARE = 0.55
#: STRING's prior probability of an interaction, used to combine channel scores.
_STRING_PRIOR = 0.041


def skewed_scores(channel: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer scores in [low, 999] for a STRING channel (see :data:`SCORE_SHAPE`)."""
    low, skew = SCORE_SHAPE[channel]
    return (low + np.floor((1000 - low) * rng.random(n) ** skew)).astype(np.int16)


def combined_score(scores: Sequence[np.ndarray]) -> np.ndarray:
    """STRING's combined score: prior-corrected channel probabilities combined as independent evidence."""
    miss = np.ones(len(scores[0]), dtype=np.float64)
    for s in scores:
        p = np.clip((s / 1000.0 - _STRING_PRIOR) / (1 - _STRING_PRIOR), 0.0, 1.0)
        miss *= 1.0 - p
    total = (1.0 - miss) + _STRING_PRIOR * miss
    return np.clip(np.round(total * 1000), 0, 999).astype(np.int16)


def assign_channels(n_union: int, sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Split ``n_union`` base pairs into overlapping channel subsets of exactly ``sizes[c]`` pairs.

    Every base pair lands in at least one channel: each pair gets a *primary* channel
    (channels cover the base set in proportion to their sizes), then every channel
    adds random non-primary pairs up to its size. Returns sorted indices into the base set.
    """
    names = list(sizes)
    n = np.array([sizes[c] for c in names], dtype=np.int64)
    if n.max() > n_union or n.sum() < n_union:
        raise ValueError(f"channel sizes {dict(sizes)} cannot cover exactly {n_union:,} pairs")
    share = n_union * n / n.sum()
    cover = np.floor(share).astype(np.int64)
    cover[np.argsort(cover - share)[: n_union - cover.sum()]] += 1  # largest remainders
    primary = np.empty(n_union, dtype=np.int8)
    primary[rng.permutation(n_union)] = owner(indptr_from_lengths(cover), np.int8)
    out = {}
    for k, c in enumerate(names):
        mine = primary == k
        others = np.flatnonzero(~mine)
        extra = rng.choice(others, int(n[k] - cover[k]), replace=False)
        out[c] = np.sort(np.concatenate([np.flatnonzero(mine), extra]))
    return out


def string_table(n_nodes: int, channels: Mapping[str, int], n_union: int, rng: np.random.Generator,
                 exponent: float = 2.0) -> pl.DataFrame:
    """One row per distinct pair: ``a < b`` (node indices) and every score column of :data:`HEADER`.

    Channel scores are 0 where the pair is not in that channel; every pair has at least
    one non-zero channel among :data:`CHANNELS`.
    """
    a, b = heavy_tailed_pairs(n_nodes, n_union, rng, exponent)
    members = assign_channels(n_union, channels, rng)
    cols: dict[str, np.ndarray] = {"a": a, "b": b}
    for c in HEADER[2:-1]:
        s = np.zeros(n_union, dtype=np.int16)
        idx = members[c] if c in members else np.flatnonzero(rng.random(n_union) < TEXTMINING_SHARE)
        s[idx] = skewed_scores(c, len(idx), rng)
        cols[c] = s
    cols["combined_score"] = combined_score([cols[c] for c in HEADER[2:-1]])
    return pl.DataFrame(cols)


# --- the gene universe -------------------------------------------------------------------

def gene_universe(real: pl.DataFrame, n_genes: int, rng: np.random.Generator) -> pl.DataFrame:
    """The real genes plus ``n_genes - len(real)`` filler genes, sorted by id; column ``filler`` flags them.

    Fillers get ids ``YSYN0001W`` / ``YSYN0002C`` ... (W/C from the strand), a nuclear
    chromosome in proportion to the real gene counts, a position inside the span of
    that chromosome's real genes, a real gene's length and 0-3 GO terms drawn from the
    real annotations by frequency. No standard names or aliases.
    """
    real = conform(real).with_columns(pl.lit(False).alias("filler"))
    k = n_genes - real.height
    if k <= 0:
        return real.sort("id")
    per_chrom = (real.group_by("chromosome").agg(pl.len().alias("n"), pl.col("end").max().alias("span"))
                 .sort("chromosome"))
    per_chrom = per_chrom.filter(pl.col("chromosome").is_in(CHROMOSOMES[:-1]))
    chrom = rng.choice(per_chrom["chromosome"].to_numpy(), k, p=(per_chrom["n"] / per_chrom["n"].sum()).to_numpy())
    span = dict(zip(per_chrom["chromosome"].to_list(), per_chrom["span"].to_list()))
    length = rng.choice(real["length"].drop_nulls().to_numpy(), k)
    room = np.array([span[c] for c in chrom], dtype=np.int64) - length
    start = rng.integers(1, np.maximum(2, room)).astype(np.int64)
    strand = np.where(rng.random(k) < 0.5, "+", "-")
    width = max(4, len(str(k)))
    ids = [f"YSYN{i + 1:0{width}d}{'W' if s == '+' else 'C'}" for i, s in enumerate(strand)]
    go = real.select(pl.col("go_terms").explode()).drop_nulls()["go_terms"].value_counts(sort=True, name="n")
    pool, freq = go["go_terms"].to_numpy(), (go["n"] / go["n"].sum()).to_numpy()
    terms = [sorted(set(rng.choice(pool, int(m), p=freq).tolist())) for m in rng.integers(0, 4, k)]
    filler = pl.DataFrame({
        "id": ids, "name": [None] * k, "chromosome": chrom.tolist(), "start": start, "end": start + length - 1,
        "strand": strand.tolist(), "length": length, "go_terms": terms, "aliases": [[] for _ in range(k)],
    })
    filler = conform(filler).with_columns(pl.lit(True).alias("filler"))
    return pl.concat([real, filler]).sort("id")


def load_universe(genes_tsv: Path, n_genes: int, seed: int) -> pl.DataFrame:
    """:func:`gene_universe` over a gene table TSV (default: the bundled R64-2-1 table)."""
    return gene_universe(read_gene_table_tsv(genes_tsv), n_genes, rng_for(seed, "genome"))


# --- writers -----------------------------------------------------------------------------

def gzip_bytes(data: bytes, level: int = 4, member_bytes: int = 32 << 20) -> bytes:
    """Gzip ``data`` as concatenated members of ~``member_bytes`` (split at line ends), in parallel.

    Members carry no file name or mtime, so output depends only on ``data`` and the
    two parameters (not on the thread count). Readers of multi-member gzip (zlib,
    Python's gzip, pandas, this project's readers) see one stream.
    """
    cuts = [0]
    while cuts[-1] + member_bytes < len(data):
        nl = data.find(b"\n", cuts[-1] + member_bytes)
        if nl < 0:
            break
        cuts.append(nl + 1)
    cuts.append(len(data))
    parts = [data[s:e] for s, e in zip(cuts, cuts[1:])]
    if len(parts) == 1:
        return zlib.compress(parts[0], level, wbits=31)
    with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as ex:  # zlib frees the GIL
        return b"".join(ex.map(lambda p: zlib.compress(p, level, wbits=31), parts))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _csv_bytes(df: pl.DataFrame, separator: str) -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf, separator=separator, quote_style="never", null_value="-")
    return buf.getvalue()


def write_string_detailed(path: Path, ids: Sequence[str], table: pl.DataFrame, level: int = 4) -> int:
    """Write a STRING v12 ``protein.links.detailed`` file (gzip); returns the number of rows.

    ``table`` is :func:`string_table`'s output over nodes ``ids`` (sorted systematic
    names). Each pair is written in both orientations with identical scores, rows sorted
    by protein1 then protein2 (index order = string order, as ``ids`` is sorted).
    """
    if list(ids) != sorted(ids):
        raise ValueError("ids must be sorted so that rows sort like STRING's file")
    scores = list(HEADER[2:])
    both = pl.concat([table.select("a", "b", *scores),
                      table.select(pl.col("b").alias("a"), pl.col("a").alias("b"), *scores)]).sort("a", "b")
    names = pl.Series([TAXON_PREFIX + i for i in ids], dtype=pl.String)
    out = pl.DataFrame([names.gather(both["a"]).alias("protein1"), names.gather(both["b"]).alias("protein2"),
                        *[both[c] for c in scores]])
    _write(path, gzip_bytes(_csv_bytes(out, " "), level))
    return out.height



#: BioGRID experimental systems per type, with their approximate shares in the yeast file.
BIOGRID_SYSTEMS = {
    "physical": {"Affinity Capture-MS": 0.45, "Two-hybrid": 0.18, "Affinity Capture-Western": 0.12,
                 "Reconstituted Complex": 0.08, "Co-purification": 0.05, "Biochemical Activity": 0.05,
                 "PCA": 0.05, "Co-crystal Structure": 0.02},
    "genetic": {"Negative Genetic": 0.45, "Positive Genetic": 0.2, "Synthetic Lethality": 0.15,
                "Synthetic Growth Defect": 0.1, "Dosage Rescue": 0.05, "Phenotypic Suppression": 0.05},
}
_HIGH_THROUGHPUT = {"Affinity Capture-MS", "PCA", "Negative Genetic", "Positive Genetic"}
YEAST_TAXON = 559292


def biogrid_table(n_nodes: int, sizes: Mapping[str, int], extra_rows: Mapping[str, float],
                  rng: np.random.Generator) -> pl.DataFrame:
    """BioGRID rows: ``a``, ``b`` (node indices, either orientation), ``type``, ``system``, ``throughput``.

    Each type has exactly ``sizes[type]`` distinct unordered pairs; ``extra_rows[type]``
    times as many extra rows repeat random pairs of that type (another study, often the
    other orientation). Rows are shuffled.
    """
    parts = []
    for typ, n_pairs in sizes.items():
        a, b = heavy_tailed_pairs(n_nodes, n_pairs, rng)
        rep = rng.integers(0, n_pairs, int(round(n_pairs * extra_rows.get(typ, 0.0))))
        a, b = np.concatenate([a, a[rep]]), np.concatenate([b, b[rep]])
        swap = rng.random(len(a)) < 0.5
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        sys_names = list(BIOGRID_SYSTEMS[typ])
        share = np.array(list(BIOGRID_SYSTEMS[typ].values()))
        system = np.array(sys_names)[rng.choice(len(sys_names), len(a), p=share / share.sum())]
        parts.append(pl.DataFrame({"a": a, "b": b, "type": typ, "system": system}))
    df = pl.concat(parts)
    df = df[rng.permutation(df.height)]
    return df.with_columns(pl.when(pl.col("system").is_in(list(_HIGH_THROUGHPUT)))
                           .then(pl.lit("High Throughput")).otherwise(pl.lit("Low Throughput")).alias("throughput"))


def _gene_columns(genes: pl.DataFrame) -> pl.DataFrame:
    """Per gene: systematic name, symbol (standard name, else systematic) and fake numeric ids."""
    return genes.select(
        "id", pl.coalesce("name", "id").alias("symbol"),
        pl.when(pl.col("aliases").list.len() > 0).then(pl.col("aliases").list.join("|"))
        .otherwise(pl.lit("-")).alias("synonyms"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 900_000_001).cast(pl.String).alias("entrez"),  # no real Entrez id
        (pl.int_range(pl.len(), dtype=pl.Int64) + 9_000_001).cast(pl.String).alias("biogrid_id"),
        (pl.lit("SYN") + (pl.int_range(pl.len()) + 1).cast(pl.String).str.zfill(6)).alias("uniprot"),
    )


def write_biogrid(path: Path, genes: pl.DataFrame, rows: pl.DataFrame) -> int:
    """Write BioGRID TAB3 (37 columns, ``-`` for missing) for :func:`biogrid_table` rows; returns rows."""
    g = _gene_columns(genes)
    ga, gb = g[rows["a"].to_numpy()], g[rows["b"].to_numpy()]
    n = rows.height
    dash = pl.repeat("-", n, eager=True, dtype=pl.String)
    cols = {
        "#BioGRID Interaction ID": pl.int_range(n, eager=True, dtype=pl.Int64) + 100_000_001,
        "Entrez Gene Interactor A": ga["entrez"], "Entrez Gene Interactor B": gb["entrez"],
        "BioGRID ID Interactor A": ga["biogrid_id"], "BioGRID ID Interactor B": gb["biogrid_id"],
        "Systematic Name Interactor A": ga["id"], "Systematic Name Interactor B": gb["id"],
        "Official Symbol Interactor A": ga["symbol"], "Official Symbol Interactor B": gb["symbol"],
        "Synonyms Interactor A": ga["synonyms"], "Synonyms Interactor B": gb["synonyms"],
        "Experimental System": rows["system"], "Experimental System Type": rows["type"],
        "Author": pl.repeat("Synthetic S (2024)", n, eager=True),
        # the label the committed samples were generated with (kept: they regenerate byte-identically)
        "Publication Source": pl.repeat("SYNTHETIC:pipeline.synth", n, eager=True),
        "Organism ID Interactor A": pl.repeat(YEAST_TAXON, n, eager=True),
        "Organism ID Interactor B": pl.repeat(YEAST_TAXON, n, eager=True),
        "Throughput": rows["throughput"], "Source Database": pl.repeat("BIOGRID", n, eager=True),
        "Organism Name Interactor A": pl.repeat("Saccharomyces cerevisiae (S288c)", n, eager=True),
        "Organism Name Interactor B": pl.repeat("Saccharomyces cerevisiae (S288c)", n, eager=True),
    }
    out = pl.DataFrame([cols[c].alias(c) if c in cols else dash.alias(c) for c in TAB3_COLUMNS])
    _write(path, _csv_bytes(out, "\t"))
    return n


_TFLINK_METHODS = {"chromatin immunoprecipitation assay": 0.5, "inferred by curator": 0.25,
                   "electrophoretic mobility shift assay;inferred by curator": 0.15,
                   "chromatin immunoprecipitation assay;beta galactosidase assay": 0.1}


def write_tflink(path: Path, genes: pl.DataFrame, src: np.ndarray, dst: np.ndarray, rng: np.random.Generator) -> int:
    """Write TFLink simple format for directed pairs ``src -> dst``; Name.* = standard name, else systematic."""
    g = _gene_columns(genes)
    ga, gb = g[src.astype(np.int64)], g[dst.astype(np.int64)]
    methods = list(_TFLINK_METHODS)
    share = np.array(list(_TFLINK_METHODS.values()))
    method = pl.Series(np.array(methods)[rng.choice(len(methods), len(src), p=share / share.sum())])
    n = len(src)
    out = pl.DataFrame([
        ga["uniprot"].alias("UniprotID.TF"), gb["uniprot"].alias("UniprotID.Target"),
        ga["entrez"].alias("NCBI.GeneID.TF"), gb["entrez"].alias("NCBI.GeneID.Target"),
        ga["symbol"].alias("Name.TF"), gb["symbol"].alias("Name.Target"),
        method.alias("Detection.method"), pl.repeat("-", n, eager=True).alias("PubmedID"),
        pl.repeat("Saccharomyces cerevisiae", n, eager=True).alias("Organism"),
        pl.repeat("synthetic", n, eager=True).alias("Source.database"),
        pl.Series("Small-scale.evidence",
                  np.where(method.str.contains("inferred|shift|galactosidase").to_numpy(), "Yes", "No")),
    ])
    _write(path, _csv_bytes(out, "\t"))
    return n


def write_regulatory(path: Path, genes: pl.DataFrame, src: np.ndarray, dst: np.ndarray,
                     rng: np.random.Generator) -> int:
    """Write ``regulator<TAB>target<TAB>weight`` (systematic names); 60% weigh 1.0, the rest in (0, 1]."""
    ids = genes["id"]
    w = np.where(rng.random(len(src)) < 0.6, 1.0, np.round(rng.uniform(0.05, 1.0, len(src)), 3))
    out = pl.DataFrame([ids.gather(src).alias("regulator"), ids.gather(dst).alias("target"), pl.Series("weight", w)])
    _write(path, _csv_bytes(out, "\t"))
    return out.height


def _gff_escape(e: pl.Expr | str) -> pl.Expr:
    """Percent-encode the characters GFF3 reserves in attribute values (``% ; = & ,``)."""
    e = pl.col(e) if isinstance(e, str) else e
    for ch, code in (("%", "%25"), (";", "%3B"), ("=", "%3D"), ("&", "%26"), (",", "%2C"), ("\t", "%09")):
        e = e.str.replace_all(ch, code, literal=True)
    return e


def write_gff3(path: Path, genes: pl.DataFrame, note: str = "") -> int:
    """Write one SGD-style ``gene`` line per gene (genome order), fillers flagged ``Note=synthetic filler``."""
    order = {c: i for i, c in enumerate(CHROMOSOMES)}
    seqid = {c: ("chrmt" if c == "Mito" else f"chr{c}") for c in CHROMOSOMES}
    g = (genes.with_columns(pl.col("chromosome").replace_strict(order, return_dtype=pl.Int32).alias("_ord"))
         .sort("_ord", "start", "id"))
    alias_str = pl.col("aliases").list.eval(_gff_escape(pl.element())).list.join(",")
    attrs = pl.concat_str([
        pl.lit("ID=") + _gff_escape("id"), pl.lit(";Name=") + _gff_escape("id"),
        pl.when(pl.col("name").is_not_null()).then(pl.lit(";gene=") + _gff_escape("name")).otherwise(pl.lit("")),
        pl.when(pl.col("aliases").list.len() > 0).then(pl.lit(";Alias=") + alias_str).otherwise(pl.lit("")),
        pl.when(pl.col("go_terms").list.len() > 0).then(pl.lit(";Ontology_term=") + pl.col("go_terms").list.join(","))
        .otherwise(pl.lit("")),
        pl.when(pl.col("filler")).then(pl.lit(";Note=synthetic filler")).otherwise(pl.lit("")),
    ])
    lines = g.select(pl.concat_str([
        pl.col("chromosome").replace_strict(seqid, return_dtype=pl.String), pl.lit("SGD"), pl.lit("gene"),
        pl.col("start").cast(pl.String), pl.col("end").cast(pl.String), pl.lit("."),
        pl.col("strand").fill_null("."), pl.lit("."), attrs], separator="\t").alias("line"))["line"]
    head = "##gff-version 3\n" + "".join(f"# {ln}\n" for ln in note.splitlines())
    _write(path, (head + "\n".join(lines.to_list()) + "\n").encode())
    return g.height


# --- whole runs --------------------------------------------------------------------------

def select_sources(only: Iterable[str] | None) -> list[str]:
    """``--only`` names (sources or edge types) -> the sources to write, always with ``genome``."""
    if not only:
        return list(OUTPUTS)
    chosen = {"genome"}
    for part in (p.strip() for s in only for p in s.split(",")):
        if not part:
            continue
        name = _ALIASES.get(part, part)
        if name not in OUTPUTS:
            raise ValueError(f"unknown output {part!r}; known: {', '.join(sorted(set(OUTPUTS) | set(_ALIASES)))}")
        chosen.add(name)
    return [s for s in OUTPUTS if s in chosen]


def synthetic_note(generator: str, seed: int, scale: float | None, sizes: SynthSizes, extra: str = "") -> str:
    """The text of ``SYNTHETIC.txt``: what these files are and how to regenerate them."""
    lines = [
        "SYNTHETIC DATA: these files are generated, not measured. Do not use them for biology.",
        f"generator: {generator} (synth.graph version {GENERATOR_VERSION})",
        f"seed: {seed}" + (f"  scale: {scale:g}" if scale is not None else ""),
        f"genes: {sizes.n_genes:,} (real R64-2-1 genes from data/sample/genes.tsv + synthetic filler YSYN*)",
        f"STRING distinct pairs (union of channels): {sizes.string_union:,}",
        "distinct pairs per edge type: " + ", ".join(f"{k} {v:,}" for k, v in sizes.pairs.items()),
        f"BioGRID genetic pairs: {sizes.genetic:,}; TF set: {sizes.n_tfs}",
    ]
    return "\n".join(lines) + ("\n" + extra if extra else "") + "\n"


def write_sources(out: Path, genes: pl.DataFrame, sizes: SynthSizes, seed: int,
                  paths: Mapping[str, str] = OUTPUTS, sources: Iterable[str] | None = None,
                  gzip_level: int = 4, gff_note: str = "") -> dict[str, dict[str, int | str]]:
    """Generate and write each requested source under ``out`` at ``paths[source]``.

    ``genes`` is the universe (:func:`gene_universe`; its order defines node indices and
    must be sorted by id). Returns per source the path and counts written.
    """
    if genes["id"].to_list() != sorted(genes["id"].to_list()):
        raise ValueError("the gene universe must be sorted by id")
    n = genes.height
    todo = list(sources) if sources is not None else list(paths)
    report: dict[str, dict[str, int | str]] = {}
    tfs = np.sort(rng_for(seed, "tfs").choice(n, sizes.n_tfs, replace=False))
    for src in todo:
        t0 = time.perf_counter()
        path = out / paths[src]
        rng = rng_for(seed, src)
        if src == "string12":
            table = string_table(n, sizes.string_channels(), sizes.string_union, rng)
            rows = write_string_detailed(path, genes["id"].to_list(), table, level=gzip_level)
            info: dict[str, int | str] = {"pairs": table.height, "rows": rows}
        elif src == "biogrid":
            tab = biogrid_table(n, {"physical": sizes.pairs["physical"], "genetic": sizes.genetic},
                                sizes.extra_rows, rng)
            info = {"rows": write_biogrid(path, genes, tab)}
        elif src in ("tflink", "regulatory"):
            a, b = heavy_tailed_pairs(n, sizes.pairs[src], rng, sources=tfs)
            writer = write_tflink if src == "tflink" else write_regulatory
            info = {"rows": writer(path, genes, a, b, rng)}
        elif src == "genome":
            info = {"rows": write_gff3(path, genes, gff_note)}
        else:
            raise ValueError(f"unknown source {src!r}")
        info["path"] = str(path)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        report[src] = info
    return report


def generate(out: Path, scale: float = 1.0, seed: int = 0, only: Iterable[str] | None = None,
             genes_tsv: Path = SAMPLE_DIR / "genes.tsv", gzip_level: int = 4) -> dict[str, dict[str, int | str]]:
    """Write a full synthetic data/raw-like folder at ``out`` (see the module docstring); returns the report."""
    out = Path(out)
    sizes = SynthSizes.at(scale)
    genes = load_universe(genes_tsv, sizes.n_genes, seed)
    note = synthetic_note(f"python -m synth.graph --scale {scale:g} --seed {seed}", seed, scale, sizes)
    report = write_sources(out, genes, sizes, seed, sources=select_sources(only), gzip_level=gzip_level,
                           gff_note=note)
    out.mkdir(parents=True, exist_ok=True)
    (out / "SYNTHETIC.txt").write_text(note + "files:\n" + "".join(
        f"  {Path(r['path']).relative_to(out)}: {r['rows']:,} rows\n" for r in report.values()))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synth.graph", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write (laid out like data/raw)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every pair count (default 1: real sizes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", metavar="NAME[,NAME]",
                   help=f"sources or edge types to write (default all): {', '.join(OUTPUTS)}, physical, ...; "
                        "the GFF3 gene universe is always written")
    p.add_argument("--genes", type=Path, default=SAMPLE_DIR / "genes.tsv",
                   help="real gene table (default: %(default)s)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        report = generate(args.out, args.scale, args.seed, args.only, args.genes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in report.items():
        print(f"{name:11s} {r['rows']:>10,} rows  {r['seconds']:6.2f}s  {r['path']}")
    print(f"done in {time.perf_counter() - t0:.1f}s (SYNTHETIC; see {args.out / 'SYNTHETIC.txt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
