"""Command line: ``python -m pipeline.build --graphs string12 [--graphs physical ...]``.

Runs the stages of :mod:`pipeline.stages` in this process and prints a summary
table. The Prefect flow in ``flows/build.py`` runs the same stages.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.dataset_stages import summarize_dataset
from pipeline.registry import SOURCES
from pipeline.stages import BuildConfig, run_build, summarize


def parser() -> argparse.ArgumentParser:
    known = ", ".join(f"{s.name} ({', '.join(s.edge_types)})" for s in SOURCES.values())
    p = argparse.ArgumentParser(
        prog="python -m pipeline.build",
        description="Build a versioned multigraph store (Zarr v3) from raw source files.",
        epilog=f"Graphs: a source name selects all its edge types; an edge type selects one. Known: {known}.",
    )
    p.add_argument("--graphs", action="append", required=True, metavar="NAME[,NAME]",
                   help="source or edge type to include; repeatable (e.g. string12, string12_fusion, physical)")
    p.add_argument("--raw", type=Path, default=Path("data/raw"), help="folder of raw inputs (default: data/raw)")
    p.add_argument("--out", type=Path, default=Path("data/processed"),
                   help="folder of built stores (default: data/processed)")
    p.add_argument("--name", help="build name: the store goes to OUT/NAME/graph.zarr (default: the sources)")
    p.add_argument("--genes", type=Path,
                   help="gene universe: SGD GFF3, GenBank file/folder, gene table .tsv or gene list .txt "
                        "(default: RAW/genome/, else the bundled R64-2-1 gene table)")
    p.add_argument("--sequences", type=Path,
                   help="coding sequences for gene features: FASTA, GenBank file/folder, or GFF3 with ##FASTA "
                        "(default: the gene annotation itself, RAW/genome/*.fa[.gz], or the bundled CDS)")
    p.add_argument("--added-genes", type=Path, metavar="TSV",
                   help="heterologous genes to append to the gene index (columns id[, name, sequence])")
    p.add_argument("--embeddings", action="append", default=[], metavar="NAME=PATH",
                   help="an external gene embedding table (CSV/TSV/Parquet keyed by systematic name); repeatable")
    p.add_argument("--download", action="store_true", help="fetch missing sources from their public URLs")
    p.add_argument("--force", action="store_true", help="rebuild even if the store is up to date")
    p.add_argument("--go-max-term-size", type=int, default=300,
                   help="go_coannotation: ignore GO terms annotated to more genes than this (default: 300)")
    p.add_argument("--dataset", action="append", default=[], metavar="NAME",
                   help="phenotype table to build the perturbation dataset from; repeatable "
                        "(kuzmin2018, kuzmin2020, costanzo2016)")
    p.add_argument("--replicates", choices=["mean", "first"], default="mean",
                   help="how replicate measurements of one strain are merged (default: mean)")
    p.add_argument("--on-unknown-allele", choices=["skip", "error"], default="skip",
                   help="a strain id or allele that does not parse: skip its rows (counted) or stop (default: skip)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split assignment (default: 0)")
    p.add_argument("--split-fractions", type=float, nargs=3, default=[0.8, 0.1, 0.1],
                   metavar=("TRAIN", "VAL", "TEST"), help="expected split fractions (default: 0.8 0.1 0.1)")
    g = p.add_argument_group("precompute (needs --dataset)")
    g.add_argument("--precompute", metavar="ART[,ART]",
                   help="precompute per-sample artifacts: masks, khop, adjacency-rows (comma-separated)")
    g.add_argument("--khop", default="1,2,3", metavar="K[,K]", help="hop counts of the k-hop sets (default: 1,2,3)")
    g.add_argument("--khop-mode", default="per_type", metavar="MODE[,MODE]",
                   help="per_type (union of per-edge-type k-hop sets, the reference) and/or union "
                        "(k-hop over the union graph) (default: per_type)")
    g.add_argument("--mask-types", default="deletion,temperature_sensitive,knockdown,suppressor",
                   metavar="TYPE[,TYPE]", help="perturbation types that remove a gene (node mask 0)")
    g.add_argument("--dense-edge-masks", action="store_true",
                   help="also write dense uint8 [samples, edges] edge masks per edge type (large)")
    g.add_argument("--lmdb", action="store_true", help="also write per-sample records to OUT/NAME/records.lmdb")
    g.add_argument("--chunk-samples", type=int, default=4096,
                   help="samples per chunk task and shard (a power of two, default 4096)")
    g.add_argument("--adjacency-graphs", metavar="TYPE[,TYPE]", help="edge types to sample rows of (default: all)")
    g.add_argument("--adjacency-epochs", type=int, default=1, help="epochs of sampled rows (default: 1)")
    g.add_argument("--adjacency-steps", type=int,
                   help="training steps per epoch (default: train samples / --adjacency-batch-size)")
    g.add_argument("--adjacency-batch-size", type=int, default=64, help="batch size that sets the default steps")
    g.add_argument("--adjacency-rows", type=int, default=256, help="rows sampled per graph and step (default: 256)")
    g.add_argument("--adjacency-negatives", type=int, default=64, help="negative columns per row (default: 64)")
    g.add_argument("--adjacency-sampling", choices=["uniform", "degree"], default="uniform",
                   help="row sampling: uniform or proportional to degree (default: uniform)")
    g.add_argument("--adjacency-seed", type=int, default=0, help="seed of the row and negative sampling")
    g.add_argument("--dask-address", help="scheduler of an existing dask cluster (default: a new LocalCluster)")
    g.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def precompute_config(args: argparse.Namespace) -> Any:
    """The PrecomputeConfig of the CLI options, or None without --precompute."""
    if not args.precompute:
        return None
    from pipeline.perturbations import CODES
    from pipeline.precompute import PrecomputeConfig

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    unknown = [t for t in split(args.mask_types) if t not in CODES]
    if unknown:
        raise ValueError(f"--mask-types: unknown {unknown}; known: {', '.join(CODES)}")
    return PrecomputeConfig(
        artifacts=split(args.precompute), khop=tuple(int(k) for k in split(args.khop)),
        khop_modes=tuple(split(args.khop_mode)), removing_types=tuple(CODES[t] for t in split(args.mask_types)),
        dense_edge_masks=args.dense_edge_masks, lmdb=args.lmdb, chunk_samples=args.chunk_samples,
        adjacency_graphs=split(args.adjacency_graphs) if args.adjacency_graphs else None,
        adjacency_epochs=args.adjacency_epochs, adjacency_steps=args.adjacency_steps,
        adjacency_batch_size=args.adjacency_batch_size, adjacency_rows=args.adjacency_rows,
        adjacency_negatives=args.adjacency_negatives, adjacency_sampling=args.adjacency_sampling,
        adjacency_seed=args.adjacency_seed, dask_address=args.dask_address, workers=args.workers)


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.quiet)
    t0 = time.perf_counter()
    try:
        cfg = BuildConfig(graphs=args.graphs, raw=args.raw, out=args.out, name=args.name, genes=args.genes,
                          download=args.download, force=args.force, go_max_term_size=args.go_max_term_size,
                          sequences=args.sequences, added_genes=args.added_genes, embeddings=args.embeddings,
                          datasets=args.dataset, replicates=args.replicates,
                          on_unknown_allele=args.on_unknown_allele, split_seed=args.split_seed,
                          split_fractions=tuple(args.split_fractions), precompute=precompute_config(args))
        res = run_build(cfg)
    except (PipelineError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(res.graph))
    print(f"{'built' if res.graph_built else 'up to date'}: {res.graph}")
    if res.dataset is not None:
        print(summarize_dataset(res.dataset))
        print(f"{'built' if res.dataset_built else 'up to date'}: {res.dataset}")
    if res.precomputed is not None:
        from pipeline.precompute import summarize_precompute
        print(summarize_precompute(res.precomputed))
        print(f"{'built' if res.precomputed_built else 'up to date'}: {res.precomputed}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
