"""The graph stage: raw sources -> one multigraph store; the CLI and the Prefect flow both run it.

:func:`run_graph_build` sequences the graph stage's steps (and is called by
:func:`pipeline.sequence.run_build`). It takes a ``run`` callable that executes one
step (:class:`pipeline.core.runner.LocalRunner` in the CLI; the flow passes a wrapper
that runs it as a Prefect task). Step functions are plain, picklable and free of Prefect.

Stages: ``plan_build`` (resolve selectors to files, hash inputs, decide whether
the store is up to date) -> ``load_genes`` -> [``read_source`` per source,
``compute_gene_features``, ``open_staging`` (a temporary store with the gene
index)] -> [``store_gene_features``, ``store_edge_type`` per edge type (CSR,
incidence, arrays)] -> ``publish_graph`` (manifest, atomic rename). Independent stages (the
sources, the features, the edge types) may run in parallel (threads in the CLI, Prefect task futures in the flow).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import zarr

from pipeline.core.atomic import clean_stale, discard, discard_own, publish_dir, staging_dir
from pipeline.core.buildkey import build_key, is_current
from pipeline.core.digests import file_digests
from pipeline.core.edges import EdgeTable
from pipeline.core.errors import AmbiguousSourceError, SourceFormatError, SourceMissingError
from pipeline.core.genes import GeneIndex, read_gene_list, read_gene_table_tsv
from pipeline.core.inputs import InputFile, code_version, describe_input
from pipeline.core.lock import store_lock
from pipeline.core.paths import SAMPLE_DIR, Workspace
from pipeline.core.runner import LocalRunner, Runner, each
from pipeline.core.version import __version__
from pipeline.graph.config import GraphConfig
from pipeline.graph.csr import build_csr
from pipeline.graph.sources import GENE_RELEASES, SOURCES, find_raw, releases, resolve
from pipeline.graph.store import (
    FORMAT_VERSION,
    GeneFeatures,
    open_graph,
    write_edge_type,
    write_features,
    write_genes,
    write_manifest,
)
from pipeline.sources.download import verify_input

log = logging.getLogger("pipeline.build")

SAMPLE_GENES = SAMPLE_DIR / "genes.tsv"
SAMPLE_CDS = SAMPLE_DIR / "gene_cds.fa.gz"


@dataclass
class BuildPlan:
    config: GraphConfig
    store: Path
    genes: InputFile
    genes_format: str
    sources: dict[str, list[str]]  # source -> edge types
    inputs: dict[str, InputFile | None]  # source -> file (None for derived sources)
    parameters: dict[str, Any]
    build_key: str
    up_to_date: bool
    sequences: InputFile | None = None
    sequences_format: str | None = None
    added_genes: InputFile | None = None
    embeddings: dict[str, InputFile] = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------

def _gene_source(cfg: GraphConfig, raw: Path) -> tuple[Path, str, str]:
    if cfg.genes is not None:
        if not cfg.genes.exists():
            raise SourceMissingError(f"--genes {cfg.genes}: no such file or folder")
        return cfg.genes, _gene_format(cfg.genes), "argument"
    gdir = raw / "genome"
    if gdir.is_dir():
        hits = sorted({p for pat in ("*.gff", "*.gff3", "*.gff.gz", "*.gff3.gz") for p in gdir.glob(pat)
                       if not p.name.startswith(".")})
        if len(hits) > 1:
            raise AmbiguousSourceError(gdir, "SGD GFF3 gene annotation", hits)
        if hits:
            return hits[0], "gff3", "raw"
        if sorted(gdir.glob("chr*.gb*")):
            return gdir, "genbank", "raw"
    log.warning("no gene annotation in %s (SGD's saccharomyces_cerevisiae*.gff[.gz] or chr01.gb..chr16.gb): "
                "using the gene table derived from the R64-2-1 GenBank files, %s", gdir, SAMPLE_GENES)
    return SAMPLE_GENES, "table", "sample"


def _gene_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith((".gb", ".gb.gz", ".gbk")):
        return "genbank"
    if name.endswith((".gff", ".gff3", ".gff.gz", ".gff3.gz")):
        return "gff3"
    if name.endswith(".tsv"):
        return "table"
    if name.endswith(".txt"):
        return "list"
    raise ValueError(f"{path}: unknown gene annotation format (want .gff[3][.gz], .gb / a folder "
                     f"of chr*.gb, a gene table .tsv, or a gene list .txt)")


def _sequence_source(cfg: GraphConfig, raw: Path, gpath: Path, gfmt: str, gorigin: str) -> tuple[Path, str, str] | None:
    """Where the CDS sequences for gene features come from, and in which format."""
    if cfg.sequences is not None:
        if not cfg.sequences.exists():
            raise SourceMissingError(f"--sequences {cfg.sequences}: no such file or folder")
        fmt = _gene_format(cfg.sequences) if not _is_fasta(cfg.sequences) else "fasta"
        return cfg.sequences, fmt, "argument"
    if gfmt in ("genbank", "gff3"):  # the annotation carries the genome (GFF3 after ##FASTA)
        return gpath, gfmt, gorigin
    gdir = raw / "genome"
    fasta = [p for p in sorted(gdir.glob("*")) if _is_fasta(p) and not p.name.startswith(".")] if gdir.is_dir() else []
    if len(fasta) > 1:
        raise AmbiguousSourceError(gdir, "CDS FASTA", fasta)
    if fasta:
        return fasta[0], "fasta", "raw"
    if gorigin == "sample" and SAMPLE_CDS.exists():
        return SAMPLE_CDS, "fasta", "sample"
    log.warning("no gene sequences (pass --sequences, or put a CDS FASTA in %s): sequence features are NaN", gdir)
    return None


def _is_fasta(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz"))


def _source_file(cfg: GraphConfig, raw: Path, name: str, samples: bool = True) -> tuple[Path, str]:
    """The file of source ``name`` and its origin: raw, download, or (``samples``: only for the
    default raw folder) the bundled SYNTHETIC sample; else a SourceMissingError naming the path."""
    src = SOURCES[name]
    found = find_raw(src, raw)
    if found is not None:
        return found, "raw"
    where = raw / src.subdir / (src.file_name or src.patterns[0])
    if cfg.download and src.url:
        from pipeline.sources.download import download_source
        return download_source(src.name, src.url, where, raw, sha256=src.sha256), "download"
    if not samples:
        hint = f" (or pass --download to fetch it from {src.url})" if src.url else ""
        raise SourceMissingError(f"{name}: --raw {raw}: expected {src.description} at {where}{hint}")
    if src.sample and (SAMPLE_DIR / src.sample).exists():
        log.warning("no real %s file in %s: using the SYNTHETIC sample %s (put the real file at %s%s)",
                    name, raw / src.subdir, SAMPLE_DIR / src.sample, where,
                    " or pass --download" if src.url else "")
        return SAMPLE_DIR / src.sample, "sample"
    hint = f", or pass --download to fetch it from {src.url}" if src.url else ""
    raise SourceMissingError(f"{name}: no input found; put {src.description} at {where}{hint}")


# --- stages ----------------------------------------------------------------------------

def plan_build(cfg: GraphConfig, ws: Workspace) -> BuildPlan:
    """Resolve selectors and files, hash the inputs, and decide whether the store is current."""
    sources = resolve(list(cfg.graphs))
    gpath, gfmt, gorigin = _gene_source(cfg, ws.raw)
    if not ws.samples and not cfg.download and not ws.raw.is_dir():  # a typo, not "use the samples"
        raise SourceMissingError(f"--raw {ws.raw}: no such folder")
    genes_in = verify_input(describe_input("genes", gpath, gorigin), ws.raw, GENE_RELEASES)
    inputs: dict[str, InputFile | None] = {}
    for name in sources:
        if SOURCES[name].derived:
            inputs[name] = None
            continue
        path, origin = _source_file(cfg, ws.raw, name, ws.samples)
        inputs[name] = verify_input(describe_input(name, path, origin), ws.raw, releases(SOURCES[name]))
    seq = _sequence_source(cfg, ws.raw, gpath, gfmt, gorigin)
    seq_in = describe_input("sequences", seq[0], seq[2]) if seq else None
    added_in = describe_input("added_genes", cfg.added_genes, "argument") if cfg.added_genes else None
    emb_in = {}
    for e in cfg.embeddings:
        name, path = e.split("=", 1)
        if not Path(path).is_file():
            raise SourceMissingError(f"--embeddings {e}: no such file")
        emb_in[name] = describe_input(f"embedding:{name}", Path(path), "argument")
    params = {"graphs": sorted({t for ts in sources.values() for t in ts}),
              "genes_format": gfmt, "sequences_format": seq[1] if seq else None,
              "format_version": FORMAT_VERSION}
    if "go" in sources:
        params["go_max_term_size"] = cfg.go_max_term_size
    extra = [("sequences", seq_in), ("added_genes", added_in), *((f"embedding:{k}", v) for k, v in emb_in.items())]
    key_src = {"params": params, "genes": genes_in.sha256,
               "inputs": {k: (v.sha256 if v else None) for k, v in [*inputs.items(), *extra]},
               "version": __version__}
    key = build_key(key_src)
    store = ws.graph_store
    up_to_date = is_current(store, key, lambda p: open_graph(p).manifest, ws.force)
    return BuildPlan(cfg, store, genes_in, gfmt, sources, inputs, params, key, up_to_date,
                     seq_in, seq[1] if seq else None, added_in, emb_in)


def load_genes(plan: BuildPlan) -> GeneIndex:
    """Read the gene universe in its format and sort it into the build's index."""
    path, fmt = Path(plan.genes.path), plan.genes_format
    if fmt == "gff3":
        from pipeline.sources.genome.gff3 import read_gff3
        df = read_gff3(path)
    elif fmt == "genbank":
        from pipeline.sources.genome.genbank import read_genbank
        df = read_genbank(path)
    elif fmt == "table":
        df = read_gene_table_tsv(path)
    else:
        df = read_gene_list(path)
    if plan.added_genes is not None:
        from pipeline.graph.features import added_genes, append_added
        extra = added_genes(plan.added_genes.path, genome=df)
        df = append_added(df, extra, source=plan.added_genes.path)
        log.info("added genes: %d from %s (appended after the genome's, no edges)", extra.height,
                 plan.added_genes.path)
    genes = GeneIndex.from_table(df, source=str(path))
    log.info("genes: %d from %s (%s), fingerprint %s", len(genes), path, fmt, genes.fingerprint[:12])
    return genes


def compute_gene_features(plan: BuildPlan, genes: GeneIndex) -> GeneFeatures:
    """Position and sequence features of every gene, plus imported embeddings (NaN where unknown)."""
    from pipeline.graph.features import gene_features, import_embeddings
    from pipeline.sources.genome import sequences as seqs

    source: dict[str, Any] = {"path": None}
    frame = None
    if plan.sequences is not None:
        path, fmt = Path(plan.sequences.path), plan.sequences_format
        reader = {"fasta": seqs.read_fasta, "genbank": seqs.read_genbank_cds, "gff3": seqs.read_gff3_cds}[fmt]
        try:
            frame = reader(path)
            source = {"path": str(path), "format": fmt, "sha256": plan.sequences.sha256}
        except SourceFormatError as e:
            if fmt != "gff3":
                raise
            log.warning("no sequences in %s (%s): sequence features are NaN", path, e)
    if plan.added_genes is not None:  # added genes bring their own sequences
        from pipeline.graph.features import added_genes
        own = added_genes(plan.added_genes.path)
        if "sequence" in own.columns:
            own = own.select("id", pl.col("sequence").cast(pl.String))
            frame = own if frame is None else pl.concat([frame.select("id", "sequence"), own])
    if frame is not None:
        ordered, report = seqs.sequences_for(genes, frame)
        source.update(n_with_sequence=report.n_with_sequence, n_missing=report.n_missing)
        log.info("gene features: %s", report.summary())
    else:
        ordered = [None] * len(genes)
    matrix, names = gene_features(genes.table, ordered)
    embeddings = {}
    for name, inp in plan.embeddings.items():
        mat, rep = import_embeddings(inp.path, genes)
        log.info("embedding %s: %s", name, rep.summary())
        embeddings[name] = (mat, {"columns": rep.columns, "source": inp.path, "sha256": inp.sha256,
                                  "n_missing": rep.n_missing, "n_unknown": rep.n_unknown})
    return GeneFeatures(matrix, names, source, embeddings)


def read_source(plan: BuildPlan, name: str, genes: GeneIndex) -> dict[str, EdgeTable]:
    """Read one source into edge tables, one per selected edge type."""
    inp = plan.inputs[name]
    path = Path(inp.path) if inp else None
    t0 = time.perf_counter()
    tables = SOURCES[name].reader(path, genes, plan.sources[name], plan.parameters)
    added = genes.added
    if added.any():  # added genes never get edges, whatever a source names
        for k, t in tables.items():
            hit = added[t.src] | added[t.dst]
            keep = ~hit
            tables[k] = EdgeTable(t.name, t.src[keep], t.dst[keep], t.weight[keep], t.directed, t.source,
                                  {**t.stats, "dropped_added_gene": int(hit.sum())})
    for t in tables.values():
        log.info("%s: read %s rows from %s, kept %d, dropped %s (%.2fs)", t.name,
                 t.stats.get("rows_read", len(t)), path or "the gene table", len(t),
                 {k: v for k, v in t.stats.items() if k.startswith("dropped")}, time.perf_counter() - t0)
    return tables


def open_staging(plan: BuildPlan, genes: GeneIndex) -> Path:
    """A temporary store beside the final one, holding the gene index; features and edge types go in next.

    Debris of interrupted builds goes first; a staging store that a live build holds is left alone
    (:func:`pipeline.core.atomic.clean_stale`)."""
    stale = clean_stale(plan.store)
    if stale:
        log.info("removed %d temporary store(s) left by an interrupted build", stale)
    tmp = staging_dir(plan.store)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    write_genes(root, genes)
    root.create_group("edges")
    return tmp


def store_gene_features(staging: Path, features: GeneFeatures) -> None:
    """Write the gene feature matrix and embeddings into the staging store."""
    write_features(zarr.open_group(str(staging), mode="r+"), features)


def store_edge_type(staging: Path, table: EdgeTable, n_genes: int, gene_fingerprint: str) -> dict[str, Any]:
    """CSR of one edge type (dedup with max weight, no self-loops, both directions if
    undirected) and its incidence, written into the staging store; returns its attributes."""
    csr, st = build_csr(table, n_genes)
    log.info("%s: %d pairs, %d CSR entries; dropped %d self-loops, merged %d mirrored and %d duplicate "
             "rows (%d with conflicting weights, max kept)", table.name, st["pairs"], st["nnz"],
             st["dropped_self_loop"], st.get("merged_mirror", 0), st["merged_duplicate"],
             st["conflicting_duplicate"])
    root = zarr.open_group(str(staging), mode="r+")
    return write_edge_type(root, table.name, csr, gene_fingerprint,
                           {"source": table.source, "stats": {**table.stats, **st}})


def _all_inputs(plan: BuildPlan) -> list[InputFile]:
    return [v for v in [plan.genes, *plan.inputs.values(), plan.sequences, plan.added_genes,
                        *plan.embeddings.values()] if v is not None]


def publish_graph(plan: BuildPlan, staging: Path, genes: GeneIndex, edge_meta: dict[str, dict[str, Any]]) -> Path:
    """Write the manifest (last: it marks the store complete) and rename the store into place."""
    manifest = {
        "build": plan.store.parent.name,
        "build_key": plan.build_key,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "parameters": plan.parameters,
        "inputs": [asdict(v) for v in _all_inputs(plan)],
        "synthetic_inputs": any(v.synthetic for v in _all_inputs(plan)),
        "genes": {"n": len(genes), "fingerprint": genes.fingerprint, "source": plan.genes.path},
        "edge_types": edge_meta,
        "files": file_digests(staging),  # every stored byte: checked by pipeline.verify and up-to-date checks
    }
    write_manifest(zarr.open_group(str(staging), mode="r+"), manifest)
    publish_dir(staging, plan.store)
    log.info("published %s", plan.store)
    return plan.store


def summarize(store: Path) -> str:
    """A table of genes and edges per type, for the end of a build."""
    g = open_graph(store)
    m = g.manifest
    # an edge type read from a synthetic sample says so on its own line
    synthetic = {i["path"] for i in m["inputs"] if i.get("synthetic")}  # an edge type's "source": its file
    rows = [("edge type", "directed", "pairs", "CSR entries", "rows read", "dropped", "merged", "input")]
    for name in g.edge_types:
        a = m["edge_types"][name]
        st = a["stats"]
        dropped = sum(v for k, v in st.items() if k.startswith("dropped"))
        merged = st.get("merged_duplicate", 0) + st.get("merged_mirror", 0)
        rows.append((name, "yes" if a["directed"] else "no", f"{a['pairs']:,}", f"{a['nnz']:,}",
                     f"{st.get('rows_read', st.get('rows_in', 0)):,}", f"{dropped:,}", f"{merged:,}",
                     "SYNTHETIC" if a.get("source") in synthetic else "real"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    lines = [f"{store}  genes: {m['genes']['n']:,}  edge types: {len(g.edge_types)}"
             + ("  (SYNTHETIC inputs)" if m.get("synthetic_inputs") else ""), fmt(rows[0]),
             "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    total = sum(m["edge_types"][n]["pairs"] for n in g.edge_types)
    lines.append(f"total pairs: {total:,}")
    return "\n".join(lines)


# --- the graph stage's own sequence ------------------------------------------------------

def run_graph_build(cfg: GraphConfig, ws: Workspace, run: Runner | None = None) -> tuple[Path, bool]:
    """Run every stage of a graph build; returns (store path, whether anything was built).

    The store's lock (:func:`pipeline.core.lock.store_lock`) is held from the plan to the publish:
    a second build of the same store fails at once (or waits, with ``ws.wait``, and then
    finds the store up to date)."""
    run = run or LocalRunner()
    with store_lock(ws.graph_store, wait=ws.wait):
        return _graph_build_locked(cfg, ws, run)


def _graph_build_locked(cfg: GraphConfig, ws: Workspace, run: Runner) -> tuple[Path, bool]:
    plan = run(plan_build, cfg, ws)
    if plan.up_to_date:
        log.info("%s is up to date (same inputs and parameters, build key %s): nothing to do",
                 plan.store, plan.build_key[:12])
        return plan.store, False
    genes = run(load_genes, plan)
    # Independent of each other: sources, gene features and the staging store's gene index.
    try:
        staging, features, *reads = each(run, [(open_staging, (plan, genes)), (compute_gene_features, (plan, genes)),
                                               *((read_source, (plan, name, genes)) for name in plan.sources)])
    except BaseException:
        discard_own(plan.store)  # the staging store may exist already
        raise
    tables: dict[str, EdgeTable] = {k: v for read in reads for k, v in read.items()}
    try:
        # largest edge types first, so that parallel workers finish together
        order = sorted(tables, key=lambda k: -len(tables[k]))
        _, *metas = each(run, [(store_gene_features, (staging, features)),
                                *((store_edge_type, (staging, tables[k], len(genes), genes.fingerprint))
                                  for k in order)])
        by_name = dict(zip(order, metas))
        store = run(publish_graph, plan, staging, genes, {k: by_name[k] for k in tables})
    except BaseException:
        discard(staging)  # a failed or killed build publishes nothing
        raise
    return store, True
