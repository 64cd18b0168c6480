"""SYNTHETIC inputs with a planted, graph-dependent phenotype: proof that a trainer learns.

Writes a small raw folder that ``python -m pipeline.build --raw DIR`` reads as it is:

- ``genes.txt``: ``n_genes`` real systematic ids of ``data/sample/genes.tsv`` (sorted, HO excluded);
- ``string/4932.protein.links.detailed.v12.0.txt.gz``: a STRING v12 detailed file over them
  (:func:`synth.graph.string_table`: heavy-tailed, the six channels overlapping as in v12);
- ``kuzmin2018/aao1729_data_s1.tsv``: a Kuzmin-2018 Data S1 table (the real columns, strain ids
  and allele names: ``<ID>+YDL227C_tm<n>`` single queries with the HO marker, ``<ID1>+<ID2>_tm<n>``
  double queries, ``<ID>_dma<n>`` deletion arrays) of distinct digenic and trigenic gene sets;
- ``SYNTHETIC.txt``: the marker, the formula and the parameters.

The planted signal (every perturbation is a deletion). Let ``A`` be the undirected adjacency of
the STRING channel ``channel`` (default ``experimental``: edge type ``string12_experimental``)
over the genes, ``N(i)`` the neighbours of gene ``i`` and ``d_i = |N(i)|``. For a perturbed set
``S`` (2 or 3 genes)::

    shared(S) = |{ g not in S : g is a neighbour of at least two genes of S }|   (shared neighbourhood)
    linked(S) = number of pairs {i, j} of S with A_ij = 1
    raw(S)    = shared(S) + linked(S)
    interaction(S) = -0.1 * (raw(S) - mean(raw)) / std(raw) + noise * 0.1 * e_S,   e_S ~ N(0, 1)
    smf_i          = 1 - 0.05 * (d_i - mean(d)) / std(d)            (single mutant fitness, clipped to [0.05, 1.25])
    fitness(S)     = prod_{i in S} smf_i + interaction(S)           (clipped to [0, 1.4])

mean / std run over the table's gene sets. So ``interaction`` depends on the perturbed genes'
shared neighbourhood in ONE edge type (no single-gene term), and ``fitness`` adds a per-gene
term from the degrees. ``noise`` (default 0.5) is the noise-to-signal ratio of ``interaction``:
an ideal predictor reaches Pearson ``1 / sqrt(1 + noise**2)`` (0.89 at 0.5).

SYNTHETIC: nothing here is biology. Deterministic in (n_genes, sizes, seed).

Command line::

    python -m synth.planted --out DIR [--n-genes 400] [--pairs 3000] [--digenic 2000] [--trigenic 1000]
    python -m pipeline.build --raw DIR --genes DIR/genes.txt --graphs string12 --dataset kuzmin2018 \\
        --precompute masks,khop,adjacency-rows --out data/processed --name planted
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.genes import read_gene_table_tsv
from pipeline.core.paths import SAMPLE_DIR
from pipeline.sources.interactions.string import CHANNELS
from synth.graph import rng_for, string_table, write_string_detailed
from synth.phenotypes import HO, KUZMIN_FILE, KUZMIN_HEADER, _fixed, _scientific

STRING_FILE = "string/4932.protein.links.detailed.v12.0.txt.gz"
GENES_FILE = "genes.txt"


@dataclass(frozen=True)
class Planted:
    """What to plant (see the module docstring for the formula)."""

    n_genes: int = 400  #: genes of the universe
    pairs: int = 3000  #: distinct pairs of the planted channel
    digenic: int = 2000  #: distinct digenic gene sets
    trigenic: int = 1000  #: distinct trigenic gene sets
    channel: str = "experimental"  #: the STRING channel the signal lives in
    noise: float = 0.5  #: noise / signal standard deviation of ``interaction``
    seed: int = 0

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r}: expected one of {', '.join(CHANNELS)}")
        if self.n_genes < 10 or self.digenic < 1 or self.trigenic < 0 or self.noise < 0:
            raise ValueError(f"planted sizes out of range: {self}")


def _gene_ids(n: int) -> list[str]:
    ids = sorted(i for i in read_gene_table_tsv(SAMPLE_DIR / "genes.tsv")["id"].to_list() if i != HO)
    if n > len(ids):
        raise ValueError(f"n_genes {n} > the {len(ids)} genes of {SAMPLE_DIR / 'genes.tsv'}")
    return ids[:n]


def _distinct_sets(rng: np.random.Generator, n_genes: int, n: int, k: int) -> np.ndarray:
    """``n`` distinct sorted ``k``-subsets of range(n_genes), int64 [n, k]."""
    out = np.empty((0, k), np.int64)
    while len(out) < n:
        s = np.sort(np.stack([rng.permutation(n_genes)[:k] for _ in range(2 * (n - len(out)) + 16)]), axis=1)
        out = np.unique(np.concatenate([out, s]), axis=0)
    return out[np.sort(rng.choice(len(out), n, replace=False))]


def planted_scores(adj: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """``raw(S) = shared(S) + linked(S)`` of each row of ``sets`` (int [n, k], k >= 2) over dense
    bool ``adj`` [N, N] (symmetric, no self-loops).

    >>> a = np.zeros((4, 4), bool); a[0, 2] = a[2, 0] = a[1, 2] = a[2, 1] = a[0, 1] = a[1, 0] = True
    >>> planted_scores(a, np.array([[0, 1], [0, 3]])).tolist()   # {0,1} share 2 and are linked
    [2, 0]
    """
    hits = adj[sets].sum(axis=1)  # [n, N]: members of S each gene is adjacent to
    inside = np.zeros_like(hits, dtype=bool)
    np.put_along_axis(inside, sets, True, axis=1)
    shared = ((hits >= 2) & ~inside).sum(axis=1)
    k = sets.shape[1]
    linked = sum(adj[sets[:, i], sets[:, j]].astype(np.int64) for i in range(k) for j in range(i + 1, k))
    return (shared + linked).astype(np.int64)


def _z(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def kuzmin_rows(ids: list[str], sets: list[np.ndarray], interaction: list[np.ndarray], smf: np.ndarray,
                rng: np.random.Generator) -> pl.DataFrame:
    """The Kuzmin Data S1 rows (values as text) of digenic sets ``sets[0]`` and trigenic ``sets[1]``."""
    names = np.array(ids)
    stems = np.char.add(np.char.lower(names), "\u0394")
    frames = []
    tm = len(ids) + 1  # double-query tm numbers after the single ones (tm<gene index + 1>)
    for s, eps in zip(sets, interaction, strict=True):
        if len(s) == 0:
            continue
        q, a = s[:, :-1], s[:, -1]
        if q.shape[1] == 1:
            qid = np.char.add(np.char.add(names[q[:, 0]], f"+{HO}_tm"), (q[:, 0] + 1).astype(str))
            qal = np.char.add(stems[q[:, 0]], "+ho\u0394")
            smf_q = smf[q[:, 0]]
        else:
            num = np.arange(tm, tm + len(q)).astype(str)
            tm += len(q)
            qid = np.char.add(np.char.add(np.char.add(np.char.add(names[q[:, 0]], "+"), names[q[:, 1]]), "_tm"), num)
            qal = np.char.add(np.char.add(stems[q[:, 0]], "+"), stems[q[:, 1]])
            smf_q = smf[q[:, 0]] * smf[q[:, 1]]
        n = len(s)
        sd = rng.gamma(2.0, 0.02, n)
        fit = np.clip(np.prod(smf[s], axis=1) + eps, 0.0, 1.4)
        frames.append(pl.DataFrame({
            KUZMIN_HEADER[0]: qid, KUZMIN_HEADER[1]: qal,
            KUZMIN_HEADER[2]: np.char.add(np.char.add(names[a], "_dma"), (a + 1).astype(str)),
            KUZMIN_HEADER[3]: stems[a], KUZMIN_HEADER[4]: np.full(n, "digenic" if q.shape[1] == 1 else "trigenic"),
            "raw": eps, "adj": eps, "p": np.clip(np.exp(-np.abs(eps) / 0.05), 1e-8, 1.0),
            "smf_q": smf_q, "smf_a": smf[a], "fit": fit, "sd": sd}))
    return pl.concat(frames).select(
        *KUZMIN_HEADER[:5], _fixed("raw", 6).alias(KUZMIN_HEADER[5]), _fixed("adj", 6).alias(KUZMIN_HEADER[6]),
        _scientific("p").alias(KUZMIN_HEADER[7]), _fixed("smf_q", 3).alias(KUZMIN_HEADER[8]),
        _fixed("smf_a", 3).alias(KUZMIN_HEADER[9]), _fixed("fit", 4).alias(KUZMIN_HEADER[10]),
        _fixed("sd", 4).alias(KUZMIN_HEADER[11]))


def write_planted(out: Path, p: Planted = Planted()) -> dict[str, object]:
    """Write the raw folder (see the module docstring); returns counts and the planted channel's edge type."""
    out = Path(out)
    ids = _gene_ids(p.n_genes)
    n = len(ids)
    channels = {c: max(1, p.pairs // 4) for c in CHANNELS}
    channels[p.channel] = p.pairs
    union = min(int(0.3 * n * (n - 1) / 2), int(sum(channels.values()) * 0.8))
    union = max(union, p.pairs)
    table = string_table(n, channels, union, rng_for(p.seed, "planted:string"))
    write_string_detailed(out / STRING_FILE, ids, table)
    (out / GENES_FILE).write_text("\n".join(ids) + "\n")

    edges = table.filter(pl.col(p.channel) > 0)
    adj = np.zeros((n, n), bool)
    a, b = edges["a"].to_numpy(), edges["b"].to_numpy()
    adj[a, b] = adj[b, a] = True
    deg = adj.sum(1)
    smf = np.clip(1 - 0.05 * _z(deg), 0.05, 1.25)
    rng = rng_for(p.seed, "planted:kuzmin")
    sets = [_distinct_sets(rng, n, p.digenic, 2), _distinct_sets(rng, n, p.trigenic, 3)]
    raw = [planted_scores(adj, s) for s in sets]
    allraw = np.concatenate(raw)
    mu, sd = float(allraw.mean()), max(float(allraw.std()), 1e-12)
    eps = [-0.1 * (r - mu) / sd + p.noise * 0.1 * rng.standard_normal(len(r)) for r in raw]
    df = kuzmin_rows(ids, sets, eps, smf, rng)
    path = out / KUZMIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path, separator="\t", null_value="", quote_style="never", line_terminator="\n")
    info = {**asdict(p), "edge_type": f"string12_{p.channel}", "edges": int(len(edges)), "rows": df.height,
            "raw_mean": mu, "raw_std": sd, "ideal_pearson": 1 / float(np.sqrt(1 + p.noise ** 2))}
    (out / "SYNTHETIC.txt").write_text(
        "SYNTHETIC DATA with a planted signal (python -m synth.planted): not measured, not biology.\n"
        f"interaction(S) = -0.1 * z(shared(S) + linked(S)) + {p.noise:g} * 0.1 * N(0, 1) over edge type "
        f"{info['edge_type']}; fitness(S) = prod smf_i + interaction(S), smf_i = 1 - 0.05 z(degree_i)\n"
        f"{info}\n")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synth.planted", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="raw folder to write")
    d = Planted()
    for name in ("n_genes", "pairs", "digenic", "trigenic", "seed"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    ap.add_argument("--noise", type=float, default=d.noise)
    ap.add_argument("--channel", default=d.channel, choices=CHANNELS)
    args = ap.parse_args(argv)
    info = write_planted(args.out, Planted(**{k: getattr(args, k) for k in asdict(d)}))
    print(f"wrote {args.out} (SYNTHETIC, planted in {info['edge_type']}: {info['edges']} edges, "
          f"{info['rows']} Kuzmin rows; ideal interaction Pearson {info['ideal_pearson']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def build_planted(raw: Path, out: Path, planted: Planted = Planted(), name: str = "planted",
                  khop: tuple[int, ...] = (1, 2),
                  added_genes: Path | None = None, **precompute: object) -> Path:
    """Write the planted raw folder at ``raw`` and build it (graph ``string12``, dataset ``kuzmin2018``,
    precompute masks + k-hop sets + adjacency rows) into ``out/name``; returns the build folder.
    ``precompute``: more :class:`~pipeline.precompute.config.PrecomputeConfig` fields."""
    from pipeline.config import BuildConfig
    from pipeline.precompute.config import PrecomputeConfig
    from pipeline.sequence import run_build

    write_planted(raw, planted)
    pre = dict(artifacts=["masks", "khop", "adjacency-rows"], khop=khop, chunk_samples=256, adjacency_steps=8,
               adjacency_rows=16, adjacency_negatives=8, dask_processes=False, workers=1, **precompute)
    cfg = BuildConfig.create(graphs=["string12"], raw=raw, genes=raw / GENES_FILE, out=out, name=name,
                             datasets=["kuzmin2018"], added_genes=added_genes, precompute=PrecomputeConfig(**pre))
    return Path(run_build(cfg).graph).parent
