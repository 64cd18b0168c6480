"""The precompute stage: (graph store, dataset) -> per-sample masks, k-hop sets, adjacency rows.

Stage functions, sequenced by :func:`pipeline.stages.run_build` for the CLI and the
Prefect flow alike:

``plan_precompute`` (parameters, build key, is the published store current?)
-> ``prepare_precompute`` (a staging store beside the final one: the perturbation
CSR, the node-mask flips, the per-gene k-hop sets and every empty array; or the
staging store of an interrupted run with the same key, which is resumed)
-> ``run_precompute_tasks`` (the missing chunk tasks, then a verification task per
chunk, on ``dask.distributed``: a LocalCluster by default, ``dask_address`` for an
existing scheduler) -> ``write_records`` (the LMDB layout, on request; resumable per
chunk) -> ``publish_precompute`` (manifest with every chunk's checksums, atomic rename).

Each chunk task writes whole shards only and then an atomic marker file; a killed
run leaves markers for exactly the chunks that are complete, and the next run with
the same parameters computes only the others. Nothing is visible under the final
name before every chunk is present and verified.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import pipeline
from pipeline.buildkey import build_key, is_current
from pipeline.errors import StoreError
from pipeline.khop import MODES, as_words, gene_khop_bits, n_bytes, sample_bits
from pipeline.masks import (REMOVING_TYPES, both_orientations, dense_from_positions, node_base, node_mask_flips,
                            one_orientation, removed_edges, removed_genes)
from pipeline.ragged import segment_sum
from pipeline.stores.atomic import publish_dir
from pipeline.stores.dataset import open_dataset
from pipeline.stores.graph import open_graph, put_array
from pipeline.stores.precomputed import (BITS_CODEC, FORMAT, FORMAT_VERSION, IDS_CODEC, MASK_CODEC, PROGRESS,
                                         SHARD_BYTES, INNER_BYTES, _pow2_floor, create_chunked_csr, create_rows,
                                         digest, open_precomputed, read_chunked_csr, read_markers, write_chunked_csr,
                                         write_marker, written)

log = logging.getLogger("pipeline.precompute")

ARTIFACTS = ("masks", "khop", "adjacency-rows")


@dataclass
class PrecomputeConfig:
    """What to precompute and how; every field is a CLI option of ``python -m pipeline.build``."""

    artifacts: list[str] = field(default_factory=lambda: list(ARTIFACTS))
    khop: tuple[int, ...] = (1, 2, 3)
    khop_modes: tuple[str, ...] = ("per_type",)
    removing_types: tuple[int, ...] = REMOVING_TYPES
    dense_edge_masks: bool = False
    lmdb: bool = False
    chunk_samples: int = 4096
    adjacency_graphs: list[str] | None = None  # None: every edge type
    adjacency_epochs: int = 1
    adjacency_steps: int | None = None  # None: ceil(train samples / adjacency_batch_size)
    adjacency_batch_size: int = 64
    adjacency_rows: int = 256
    adjacency_negatives: int = 64
    adjacency_sampling: str = "uniform"
    adjacency_seed: int = 0
    dask_address: str | None = None  # None: a LocalCluster of `workers` processes
    workers: int | None = None
    dask_processes: bool = True  # False: a LocalCluster of threads in this process (small runs, tests)

    def __post_init__(self) -> None:
        if isinstance(self.artifacts, str):
            self.artifacts = [a for a in self.artifacts.split(",") if a]
        bad = [a for a in self.artifacts if a not in ARTIFACTS]
        if bad:
            raise ValueError(f"--precompute: unknown artifact(s) {bad}; known: {', '.join(ARTIFACTS)}")
        self.khop = tuple(sorted({int(k) for k in self.khop}))
        if not self.khop or self.khop[0] < 1:
            raise ValueError(f"--khop: hop counts must be >= 1, got {self.khop}")
        self.khop_modes = tuple(dict.fromkeys(self.khop_modes))
        bad = [m for m in self.khop_modes if m not in MODES]
        if bad:
            raise ValueError(f"--khop-mode: unknown {bad}; known: {', '.join(MODES)}")
        c = int(self.chunk_samples)
        if c < 64 or c & (c - 1):
            raise ValueError(f"--chunk-samples must be a power of two >= 64, got {c}")
        if self.adjacency_sampling not in ("uniform", "degree"):
            raise ValueError(f"--adjacency-sampling: expected uniform or degree, got {self.adjacency_sampling!r}")
        for name in ("adjacency_epochs", "adjacency_rows", "adjacency_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.adjacency_negatives < 0 or (self.adjacency_steps is not None and self.adjacency_steps < 1):
            raise ValueError("--adjacency-negatives must be >= 0 and --adjacency-steps >= 1")
        self.removing_types = tuple(int(t) for t in self.removing_types)


@dataclass
class PrecomputePlan:
    config: PrecomputeConfig
    graph_store: Path
    dataset_store: Path
    store: Path
    records: Path | None
    staging: Path
    records_staging: Path | None
    parameters: dict[str, Any]
    key: str
    n_samples: int
    n_chunks: int
    up_to_date: bool


def _staging_path(final: Path, key: str) -> Path:
    # deterministic (unlike pipeline.stores.atomic.staging_dir): a rerun with the same key resumes it
    return final.parent / f".{final.name}.partial-{key[:16]}"


def plan_precompute(cfg: PrecomputeConfig, graph_store: Path, dataset_store: Path,
                    force: bool = False) -> PrecomputePlan:
    """Resolve parameters against the graph and dataset; the store is current if its key matches."""
    graph = open_graph(graph_store)
    ds = open_dataset(dataset_store)
    if ds.fingerprint != graph.fingerprint:
        raise StoreError(f"{dataset_store}: dataset built over another gene index than {graph_store} "
                         f"({ds.fingerprint[:12]} vs {graph.fingerprint[:12]}); rebuild the dataset")
    n = int(ds.manifest["n_samples"])
    types = graph.edge_types
    adj_graphs = list(cfg.adjacency_graphs or types)
    unknown = [t for t in adj_graphs if t not in types]
    if unknown:
        raise ValueError(f"--adjacency-graphs: {unknown} not in the graph; it has {types}")
    steps = cfg.adjacency_steps
    if steps is None:
        n_train = int(ds.manifest.get("counts", {}).get("split_random", {}).get("train", n) or n)
        steps = max(1, math.ceil(n_train / cfg.adjacency_batch_size))
    params: dict[str, Any] = {
        "artifacts": [a for a in ARTIFACTS if a in cfg.artifacts], "chunk_samples": cfg.chunk_samples,
        "removing_types": list(cfg.removing_types), "edge_types": types, "format_version": FORMAT_VERSION}
    if "masks" in cfg.artifacts:
        params["dense_edge_masks"] = cfg.dense_edge_masks
    if "khop" in cfg.artifacts:
        params.update(khop=list(cfg.khop), khop_modes=list(cfg.khop_modes), khop_flow="source_to_target")
    if "adjacency-rows" in cfg.artifacts:
        params["adjacency"] = {"graphs": adj_graphs, "epochs": cfg.adjacency_epochs, "steps": steps,
                               "rows": cfg.adjacency_rows, "negatives": cfg.adjacency_negatives,
                               "sampling": cfg.adjacency_sampling, "seed": cfg.adjacency_seed,
                               "batch_size": cfg.adjacency_batch_size}
    params["lmdb"] = cfg.lmdb
    edge_fps = {t: graph.edge_attrs(t)["fingerprint"] for t in types}
    key = build_key({"params": params, "genes": graph.fingerprint, "edges": edge_fps,
                     "dataset": ds.manifest.get("build_key"), "version": pipeline.__version__})
    store = graph_store.parent / "precomputed.zarr"
    records = graph_store.parent / "records.lmdb" if cfg.lmdb else None
    current = is_current(store, key, lambda p: open_precomputed(p).manifest, force)
    if current and records is not None:
        from pipeline.stores.records import open_records
        try:
            rec = open_records(records)
            current = rec.manifest.get("build_key") == key
            rec.close()  # py-lmdb: a writer cannot open an environment a reader of this process holds
        except StoreError:
            current = False
    return PrecomputePlan(cfg, graph_store, dataset_store, store, records, _staging_path(store, key),
                          _staging_path(records, key) if records else None, params, key, n,
                          max(1, math.ceil(n / cfg.chunk_samples)), current)


# --- prepare -----------------------------------------------------------------------------

def _sample_csr(dataset_store: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = open_dataset(dataset_store).scan().select("sample_id", "gene_idx", "types").collect()
    sid = df["sample_id"].to_numpy()
    if not np.array_equal(sid, np.arange(len(sid))):
        raise StoreError(f"{dataset_store}: sample ids are not 0..n-1 in order; rebuild the dataset")
    lens = df["gene_idx"].list.len().to_numpy().astype(np.int64)
    ptr = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    genes = df["gene_idx"].explode().to_numpy().astype(np.int32) if ptr[-1] else np.zeros(0, np.int32)
    types = df["types"].explode().to_numpy().astype(np.uint8) if ptr[-1] else np.zeros(0, np.uint8)
    return ptr, genes, types


def _chunk_caps(inc_ptr: np.ndarray, r_ptr: np.ndarray, r_genes: np.ndarray, chunk: int) -> int:
    """An upper bound of removed edge ids in any chunk: the sum of the removed genes' incidence lengths."""
    per_sample = segment_sum(np.diff(inc_ptr)[r_genes], r_ptr)
    pad = (-len(per_sample)) % chunk
    return int(np.pad(per_sample, (0, pad)).reshape(-1, chunk).sum(axis=1).max()) if len(per_sample) else 0


def _adjacency_layout(steps: int, rows: int, negatives: int) -> tuple[int, int]:
    """(steps per inner chunk, steps per shard) of the negatives array; shards never span epochs."""
    per_step = max(1, rows * max(negatives, 1) * 4)
    inner = max(1, min(_pow2_floor(max(1, INNER_BYTES // per_step)), _pow2_floor(steps)))
    shard = inner * max(1, min(math.ceil(steps / inner), SHARD_BYTES // (inner * per_step)))
    return inner, shard


def prepare_precompute(plan: PrecomputePlan) -> Path:
    """Create the staging store (or find the one an interrupted run left with the same key)."""
    st = plan.staging
    if (st / PROGRESS / "prepared.json").is_file():
        done = len(read_markers(st, "samples-")) + len(read_markers(st, "adjacency-"))
        log.info("resuming %s: %d task(s) already complete", st, done)
        return st
    for p in plan.store.parent.glob(f".{plan.store.name}.partial-*"):  # other keys, or an unprepared one
        shutil.rmtree(p, ignore_errors=True)
    for p in plan.store.parent.glob(f".{plan.store.name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    cfg, params = plan.config, plan.parameters
    graph = open_graph(plan.graph_store)
    n_genes = graph.n_genes
    added = graph.added
    ptr, genes, types = _sample_csr(plan.dataset_store)
    root = zarr.open_group(str(st), mode="w", zarr_format=3)
    root.attrs.update({"format": FORMAT + ".partial", "key": plan.key})
    pg = root.create_group("perturbation")
    put_array(pg, "indptr", ptr, IDS_CODEC)
    put_array(pg, "genes", genes, IDS_CODEC)
    put_array(pg, "types", types, IDS_CODEC)
    n, C = plan.n_samples, cfg.chunk_samples
    if "masks" in cfg.artifacts:
        ng = root.create_group("node_mask")
        put_array(ng, "base", node_base(added), IDS_CODEC)
        fptr, fgenes = node_mask_flips(ptr, genes, types, added, cfg.removing_types)
        put_array(ng, "indptr", fptr, IDS_CODEC)
        put_array(ng, "genes", fgenes, IDS_CODEC)
        create_rows(ng, "dense", n, n_genes, np.uint8, C, MASK_CODEC)
        rptr, rgenes = removed_genes(ptr, genes, types, added, cfg.removing_types)
        eg = root.create_group("edge_mask")
        for t in graph.edge_types:
            inc_ptr, _ = stored_incidence(graph, t)
            g = create_chunked_csr(eg, t, plan.n_chunks, C, _chunk_caps(inc_ptr, rptr, rgenes, C))
            nnz = int(graph.edge_attrs(t)["nnz"])
            g.attrs.update({"nnz": nnz, "orientation": "both" if graph.mirror(t) is None else "one"})
            if cfg.dense_edge_masks:
                create_rows(g, "dense", n, nnz, np.uint8, C, MASK_CODEC)
    if "khop" in cfg.artifacts:
        csrs = [graph.csr(t) for t in graph.edge_types]
        kg, sg = root.create_group("khop_genes"), root.create_group("khop")
        for mode in cfg.khop_modes:
            bits = gene_khop_bits(csrs, n_genes, cfg.khop, mode)
            kgm, sgm = kg.create_group(mode), sg.create_group(mode)
            for k, b in bits.items():
                put_array(kgm, f"k{k}", b, BITS_CODEC)
                create_rows(sgm, f"k{k}", n, n_bytes(n_genes), np.uint8, C, BITS_CODEC)
            log.info("k-hop (%s): per-gene sets for k=%s; mean size %s", mode, list(bits),
                     [round(float(np.unpackbits(b, axis=1).sum(axis=1).mean()), 1) for b in bits.values()])
    if "adjacency-rows" in cfg.artifacts:
        a = params["adjacency"]
        ag = root.create_group("adjacency")
        put_array(ag, "valid", (~added).astype(np.uint8), IDS_CODEC)
        inner, shard = _adjacency_layout(a["steps"], a["rows"], a["negatives"])
        for t in a["graphs"]:
            g = ag.create_group(t)
            g.create_array("rows", shape=(a["epochs"], a["steps"], a["rows"]), dtype=np.int32,
                           chunks=(1, shard, a["rows"]), compressors=IDS_CODEC, fill_value=-1)
            g.create_array("negatives", shape=(a["epochs"], a["steps"], a["rows"], a["negatives"]), dtype=np.int32,
                           chunks=(1, inner, a["rows"], max(a["negatives"], 1)),
                           shards=(1, shard, a["rows"], max(a["negatives"], 1)), compressors=IDS_CODEC,
                           fill_value=-1)
        root["adjacency"].attrs.update({"steps_per_shard": shard})
    write_marker(st, "prepared", {"key": plan.key, "seconds": round(time.perf_counter() - t0, 3)})
    log.info("prepared %s: %d samples in %d chunk(s) of %d (%.2fs)", st, n, plan.n_chunks, C,
             time.perf_counter() - t0)
    return st


# --- tasks (run on dask workers) -------------------------------------------------------------

def stored_incidence(graph: Any, edge_type: str) -> tuple[np.ndarray, np.ndarray]:
    """The incidence whose removed ids are stored: one orientation of an undirected type
    (:func:`pipeline.masks.one_orientation`; the mirrors follow from the graph, and storing
    them too would double the dominant artifact and its compute time: measured 28% of a
    chunk task), every edge of a directed one."""
    ip, ids = graph.incidence(edge_type)
    mirror = graph.mirror(edge_type)
    return (ip, ids) if mirror is None else one_orientation(ip, ids, mirror)


@dataclass
class _Context:
    """What every chunk task of one store needs; loaded once per worker process."""

    n_genes: int
    added: np.ndarray
    base: np.ndarray
    incidence: dict[str, tuple[np.ndarray, np.ndarray]]  # as stored: one orientation of undirected types
    mirror: dict[str, np.ndarray | None]
    nnz: dict[str, int]
    gene_bits: dict[tuple[str, int], np.ndarray]  # uint64 words (khop.as_words), padded once


def tune_malloc() -> None:
    """Keep freed memory in the process (glibc): chunk tasks allocate and free ~100 MB arrays, and
    returning them to the OS each time (dask's nannies set MALLOC_TRIM_THRESHOLD_=64k) made
    every task pay its page faults again; measured 2x slower per chunk."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 1 << 30)


@lru_cache(maxsize=2)
def _context(staging: str, graph_store: str, key: str) -> _Context:
    tune_malloc()
    graph = open_graph(graph_store)
    root = zarr.open_group(staging, mode="r")
    inc, mirror, nnz = {}, {}, {}
    if "edge_mask" in root:
        for t in graph.edge_types:
            inc[t] = stored_incidence(graph, t)
            mirror[t] = graph.mirror(t)
            nnz[t] = int(graph.edge_attrs(t)["nnz"])
    bits = {}
    if "khop_genes" in root:
        for mode, g in root["khop_genes"].groups():
            for name, arr in g.arrays():
                bits[(mode, int(name[1:]))] = as_words(arr[:])
    return _Context(graph.n_genes, graph.added, node_base(graph.added), inc, mirror, nnz, bits)


def _chunk_bounds(params: dict[str, Any], n: int, chunk: int) -> tuple[int, int]:
    c = params["chunk_samples"]
    first = chunk * c
    return first, min(c, n - first)


def _write_dense_edges(arr: zarr.Array, first: int, nnz: int, eptr: np.ndarray, eids: np.ndarray) -> None:
    # shard by shard: a whole chunk of dense edge rows would not fit in memory
    step = arr.shards[0] if arr.shards else arr.chunks[0]
    count = len(eptr) - 1
    for a in range(0, count, step):
        b = min(count, a + step)
        sub_ptr = eptr[a:b + 1] - eptr[a]
        arr[first + a:first + b] = dense_from_positions(1, nnz, sub_ptr, eids[eptr[a]:eptr[b]])


class _Readback:
    """Write-then-read-back of one chunk's arrays: each array is decoded from the store right
    after it is written (its bytes still in the page cache) and compared with what was
    computed, so a chunk's marker stands for data known to read back exactly. A separate
    pass over the store at the end would decode every chunk a second time (measured: a
    fifth of the stage's time at full scale)."""

    def __init__(self, chunk: int, first: int, count: int) -> None:
        self.chunk, self.first, self.count = chunk, first, count
        self.sums: dict[str, str] = {}

    def rows(self, name: str, arr: zarr.Array, data: np.ndarray) -> None:
        sel = slice(self.first, self.first + self.count)
        written(arr)[sel] = data
        self._check(name, np.array_equal(arr[sel], data))
        self.sums[name] = digest(data)

    def csr(self, name: str, g: zarr.Group, indptr: np.ndarray, values: np.ndarray) -> None:
        write_chunked_csr(g, self.chunk, indptr, values)
        have_ptr, have_values = read_chunked_csr(g, self.chunk, self.count)
        self._check(name, np.array_equal(have_ptr, indptr) and np.array_equal(have_values, values))
        self.sums[name] = digest(indptr, values)

    def _check(self, name: str, same: bool) -> None:
        if not same:
            raise StoreError(f"{name}: samples {self.first}..{self.first + self.count - 1} read back differently "
                             "from what was written")


def compute_sample_chunk(staging: str, graph_store: str, key: str, chunk: int, params: dict[str, Any],
                         n: int) -> dict[str, Any]:
    """Compute, write and read back every per-sample artifact of one chunk, then write its marker
    (which it returns)."""
    ctx = _context(staging, graph_store, key)
    root = zarr.open_group(staging, mode="r+")
    first, count = _chunk_bounds(params, n, chunk)
    ptr = root["perturbation/indptr"][first:first + count + 1]
    genes = root["perturbation/genes"][int(ptr[0]):int(ptr[-1])]
    types = root["perturbation/types"][int(ptr[0]):int(ptr[-1])]
    sip = ptr - ptr[0]
    rem = tuple(params["removing_types"])
    out = _Readback(chunk, first, count)
    if "masks" in params["artifacts"]:
        fptr, fgenes = node_mask_flips(sip, genes, types, ctx.added, rem)
        out.rows("node_mask/dense", root["node_mask/dense"], dense_from_positions(ctx.base, ctx.n_genes, fptr, fgenes))
        rptr, rgenes = removed_genes(sip, genes, types, ctx.added, rem)
        for t, (inc_ptr, inc_ids) in ctx.incidence.items():
            eptr, eids = removed_edges(inc_ptr, inc_ids, rptr, rgenes, ctx.nnz[t])
            g = root[f"edge_mask/{t}"]
            out.csr(f"edge_mask/{t}", g, eptr, eids)
            if params.get("dense_edge_masks"):
                if ctx.mirror[t] is not None:
                    eptr, eids = both_orientations(eptr, eids, ctx.mirror[t])
                _write_dense_edges(written(g["dense"]), first, ctx.nnz[t], eptr, eids)
    for (mode, k), gb in sorted(ctx.gene_bits.items()):
        out.rows(f"khop/{mode}/k{k}", root[f"khop/{mode}/k{k}"],
                 sample_bits(gb, sip, genes, width=n_bytes(ctx.n_genes)))
    body = {"chunk": chunk, "first": first, "count": count, "crc32": out.sums}
    write_marker(Path(staging), f"samples-{chunk:06d}", body)
    return body


def compute_adjacency(staging: str, graph_store: str, edge_type: str, epoch: int,
                      params: dict[str, Any]) -> dict[str, Any]:
    """Sample the adjacency rows of one graph and epoch, write and read them back, then the marker."""
    from pipeline.adjacency import sample_adjacency_rows

    a = params["adjacency"]
    graph = open_graph(graph_store)
    csr = graph.csr(edge_type)
    valid = ~graph.added
    root = zarr.open_group(staging, mode="r+")
    g = root[f"adjacency/{edge_type}"]
    shard = int(root["adjacency"].attrs["steps_per_shard"])
    parts = []
    for s0 in range(0, a["steps"], shard):
        s1 = min(a["steps"], s0 + shard)
        res = sample_adjacency_rows(csr.indptr, csr.indices, valid, n_rows=a["rows"], n_negatives=a["negatives"],
                                    steps=range(s0, s1), seed=a["seed"], graph=edge_type, epoch=epoch,
                                    mode=a["sampling"])
        written(g["rows"])[epoch, s0:s1] = res.rows
        same = np.array_equal(g["rows"][epoch, s0:s1], res.rows)
        if a["negatives"]:
            written(g["negatives"])[epoch, s0:s1] = res.negatives
            same &= np.array_equal(g["negatives"][epoch, s0:s1], res.negatives)
        if not same:
            raise StoreError(f"adjacency/{edge_type} epoch {epoch} steps {s0}..{s1 - 1}: read back differently "
                             "from what was written")
        parts += [res.rows, res.negatives]
    body = {"edge_type": edge_type, "epoch": epoch, "crc32": digest(*parts)}
    write_marker(Path(staging), f"adjacency-{edge_type}-e{epoch:04d}", body)
    return body


def verify_sample_chunk(staging: str, marker: dict[str, Any]) -> list[str]:
    """Re-read one chunk's arrays and compare them with its marker's checksums; returns problems."""
    root = zarr.open_group(staging, mode="r")
    first, count, chunk = marker["first"], marker["count"], marker["chunk"]
    problems = []
    for name, want in marker["crc32"].items():
        if name.startswith("edge_mask/"):
            have = digest(*read_chunked_csr(root[name], chunk, count))
        else:
            have = digest(root[name][first:first + count])
        if have != want:
            problems.append(f"{name}: samples {first}..{first + count - 1} differ from their checksum")
    return problems


def verify_adjacency(staging: str, marker: dict[str, Any], params: dict[str, Any]) -> list[str]:
    root = zarr.open_group(staging, mode="r")
    g = root[f"adjacency/{marker['edge_type']}"]
    e = marker["epoch"]
    shard = int(root["adjacency"].attrs["steps_per_shard"])
    parts = []
    steps = params["adjacency"]["steps"]
    for s0 in range(0, steps, shard):
        s1 = min(steps, s0 + shard)
        parts += [g["rows"][e, s0:s1], g["negatives"][e, s0:s1]]
    return [] if digest(*parts) == marker["crc32"] else \
        [f"adjacency/{marker['edge_type']} epoch {e}: differs from its checksum"]


# --- running the tasks on dask ---------------------------------------------------------------

@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None, processes: bool = True) -> Iterator[Any]:
    """A dask.distributed client: to ``address`` if given, else to a new LocalCluster."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    from pipeline.stages import default_workers
    n = max(1, workers or default_workers())
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
                      silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        yield client


def _gather(client: Any, futures: list[Any], what: str) -> list[Any]:
    from distributed import as_completed
    from tqdm import tqdm

    out = []
    with tqdm(total=len(futures), desc=what, unit="task", disable=None, leave=False) as bar:
        for fut in as_completed(futures):
            out.append(fut.result())  # raises the task's exception here
            bar.update(1)
    return out


def _reverify(staging: str, marker: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A task: decode an earlier run's chunk or epoch again; its marker, and the problems found."""
    problems = (verify_sample_chunk(staging, marker) if "chunk" in marker
                else verify_adjacency(staging, marker, params))
    return {"reverified": marker, "problems": problems}


def _marker_name(m: dict[str, Any]) -> str:
    return f"samples-{m['chunk']:06d}" if "chunk" in m else f"adjacency-{m['edge_type']}-e{m['epoch']:04d}"


def run_precompute_tasks(plan: PrecomputePlan, staging: Path) -> dict[str, Any]:
    """Compute the chunks and adjacency epochs that have no marker yet; re-verify those that have.

    A task of this run reads every array back before it writes its marker
    (:class:`_Readback`). The chunks and epochs completed by an earlier, interrupted run
    have lain on disk in between: they are decoded again and compared with their
    markers' checksums, and any that differ lose their marker and are computed afresh
    (a warning says which).
    """
    params, n = plan.parameters, plan.n_samples
    st, gs = str(staging), str(plan.graph_store)
    done_s = {m["chunk"]: m for m in read_markers(staging, "samples-").values()}
    done_a = {(m["edge_type"], m["epoch"]): m for m in read_markers(staging, "adjacency-").values()}
    earlier = [*done_s.values(), *done_a.values()]
    per_sample = bool({"masks", "khop"} & set(params["artifacts"]))
    todo_s = [c for c in range(plan.n_chunks) if c not in done_s] if per_sample else []
    adj = params.get("adjacency")
    todo_a = [(t, e) for t in adj["graphs"] for e in range(adj["epochs"]) if (t, e) not in done_a] if adj else []
    cfg = plan.config
    redone: list[str] = []
    with dask_client(cfg.dask_address, cfg.workers, cfg.dask_processes) as client:
        t0 = time.perf_counter()  # the cluster's start and stop are not the stage's work
        log.info("precompute on %s: %d sample chunk(s) to compute (%d done), %d adjacency epoch(s) (%d done)",
                 client.scheduler.address if hasattr(client.scheduler, "address") else "dask", len(todo_s),
                 len(done_s), len(todo_a), len(done_a))

        def submit(chunks: list[int], epochs: list[tuple[str, int]]) -> list[Any]:
            return ([client.submit(compute_adjacency, st, gs, t, e, params, pure=False) for t, e in epochs]
                    + [client.submit(compute_sample_chunk, st, gs, plan.key, c, params, n, pure=False)
                       for c in chunks])

        futs = [client.submit(_reverify, st, m, params, pure=False) for m in earlier] + submit(todo_s, todo_a)
        while futs:
            again_s, again_a = [], []
            for m in _gather(client, futs, "precompute"):
                if "reverified" in m:
                    if m["problems"]:  # damaged since its marker was written: compute it again
                        old = m["reverified"]
                        redone += m["problems"]
                        (staging / PROGRESS / f"{_marker_name(old)}.json").unlink(missing_ok=True)
                        if "chunk" in old:
                            done_s.pop(old["chunk"], None)
                            again_s.append(old["chunk"])
                        else:
                            done_a.pop((old["edge_type"], old["epoch"]), None)
                            again_a.append((old["edge_type"], old["epoch"]))
                elif "chunk" in m:
                    done_s[m["chunk"]] = m
                else:
                    done_a[(m["edge_type"], m["epoch"])] = m
            futs = submit(again_s, again_a)
        t1 = time.perf_counter()
    if redone:
        log.warning("%d task(s) of an earlier run failed re-verification and were computed again: %s",
                    len(redone), "; ".join(redone[:5]))
    missing = [c for c in range(plan.n_chunks) if c not in done_s] if per_sample else []
    if missing:
        raise StoreError(f"{staging}: chunks {missing[:10]} missing after the run")
    log.info("computed and read back %d task(s), re-verified %d of an earlier run (%d recomputed), in %.2fs",
             len(todo_s) + len(todo_a), len(earlier), len(redone), t1 - t0)
    return {"chunks": [done_s[c] for c in sorted(done_s)],
            "adjacency": [done_a[k] for k in sorted(done_a)],
            "compute_seconds": round(t1 - t0, 3), "resumed_tasks": len(earlier) - len(redone),
            "recomputed_tasks": len(redone)}


# --- LMDB records ----------------------------------------------------------------------------

def record_sections(staging: Path) -> list[tuple[str, np.dtype]]:
    """The sections of an LMDB record, in order (the schema stored in the LMDB)."""
    root = zarr.open_group(str(staging), mode="r")
    out: list[tuple[str, np.dtype]] = [("genes", np.dtype("<i4")), ("types", np.dtype("|u1"))]
    if "node_mask" in root:
        out.append(("node_flips", np.dtype("<i4")))
        out += [(f"edges:{t}", np.dtype("<i4")) for t in sorted(root["edge_mask"].group_keys())]
    if "khop" in root:
        for mode in sorted(root["khop"].group_keys()):
            out += [(f"khop:{mode}:{k}", np.dtype("|u1")) for k in sorted(root[f"khop/{mode}"].array_keys())]
    return out


def _bits_csr(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, w = bits.shape
    return np.arange(m + 1, dtype=np.int64) * w, bits.reshape(-1)


def write_records(plan: PrecomputePlan, staging: Path) -> Path | None:
    """Per-sample records in LMDB (key = sample id), chunk by chunk from the staging store; resumable."""
    if plan.records is None or plan.records_staging is None:
        return None
    from pipeline.stores.records import RecordSchema, RecordWriter

    root = zarr.open_group(str(staging), mode="r")
    schema = RecordSchema(tuple(record_sections(staging)))
    rs = plan.records_staging
    for p in plan.records.parent.glob(f".{plan.records.name}.partial-*"):
        if p != rs:
            shutil.rmtree(p, ignore_errors=True)
    writer = RecordWriter(rs, schema)
    done = writer.done_chunks()
    ptr_all = root["perturbation/indptr"][:]
    fptr_all = root["node_mask/indptr"][:] if "node_mask" in root else None
    t0 = time.perf_counter()
    todo = [c for c in range(plan.n_chunks) if c not in done]
    from tqdm import tqdm
    for c in tqdm(todo, desc="records", unit="chunk", disable=None, leave=False):
        first, count = _chunk_bounds(plan.parameters, plan.n_samples, c)
        p = ptr_all[first:first + count + 1]
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "genes": (p - p[0], root["perturbation/genes"][int(p[0]):int(p[-1])]),
            "types": (p - p[0], root["perturbation/types"][int(p[0]):int(p[-1])])}
        if fptr_all is not None:
            fp = fptr_all[first:first + count + 1]
            cols["node_flips"] = (fp - fp[0], root["node_mask/genes"][int(fp[0]):int(fp[-1])])
        for name, _ in schema.sections:
            if name.startswith("edges:"):
                cols[name] = read_chunked_csr(root[f"edge_mask/{name[6:]}"], c, count)
            elif name.startswith("khop:"):
                _, mode, k = name.split(":")
                cols[name] = _bits_csr(root[f"khop/{mode}/{k}"][first:first + count])
        writer.put_chunk(c, first, cols)
    writer.finish({"build_key": plan.key, "n_samples": plan.n_samples, "parameters": plan.parameters,
                   **_graph_identity(plan)})
    log.info("records: %d chunk(s) written to %s (%d resumed) in %.2fs", len(todo), rs, len(done),
             time.perf_counter() - t0)
    return rs


# --- publish ---------------------------------------------------------------------------------

def _graph_identity(plan: PrecomputePlan) -> dict[str, Any]:
    graph = open_graph(plan.graph_store)
    return {"graph": {"path": str(plan.graph_store), "build_key": graph.manifest.get("build_key"),
                      "n_genes": graph.n_genes, "gene_fingerprint": graph.fingerprint,
                      "edge_types": {t: graph.edge_attrs(t)["fingerprint"] for t in graph.edge_types},
                      "edge_counts": {t: int(graph.edge_attrs(t)["nnz"]) for t in graph.edge_types}}}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def stored_sizes(store: Path) -> dict[str, int]:
    """Bytes on disk per stored array/group of interest (for the manifest and the benchmark)."""
    out = {}
    for rel in ("perturbation", "node_mask/indptr", "node_mask/genes", "node_mask/dense", "khop_genes"):
        if (store / rel).exists():
            out[rel] = _dir_bytes(store / rel)
    for group in ("edge_mask", "khop", "adjacency"):
        base = store / group
        if not base.is_dir():
            continue
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if group == "edge_mask":
                out[f"{group}/{sub.name}"] = _dir_bytes(sub) - _dir_bytes(sub / "dense")
                if (sub / "dense").exists():
                    out[f"{group}/{sub.name}/dense"] = _dir_bytes(sub / "dense")
            elif group == "khop":
                for k in sorted(p for p in sub.iterdir() if p.is_dir()):
                    out[f"khop/{sub.name}/{k.name}"] = _dir_bytes(k)
            else:
                out[f"{group}/{sub.name}"] = _dir_bytes(sub)
    return out


def publish_precompute(plan: PrecomputePlan, staging: Path, results: dict[str, Any],
                       records_staging: Path | None) -> Path:
    """Write the manifest (last), drop the progress markers and rename the store (and records) into place."""
    from pipeline.stages import _code_version

    root = zarr.open_group(str(staging), mode="r+")
    sizes = stored_sizes(staging)
    manifest = {
        "build_key": plan.key, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": _code_version(), "parameters": plan.parameters, "n_samples": plan.n_samples,
        "chunk_samples": plan.config.chunk_samples, "n_chunks": plan.n_chunks,
        "dataset": {"path": str(plan.dataset_store), "build_key": open_dataset(plan.dataset_store).manifest.get(
            "build_key")},
        **_graph_identity(plan), "chunks": results["chunks"], "adjacency": results["adjacency"],
        "stored_bytes": sizes, "seconds": {"compute_seconds": results["compute_seconds"]},
        "resumed_tasks": results["resumed_tasks"], "recomputed_tasks": results["recomputed_tasks"],
    }
    root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest})
    shutil.rmtree(staging / PROGRESS, ignore_errors=True)
    publish_dir(staging, plan.store)
    if records_staging is not None and plan.records is not None:
        publish_dir(records_staging, plan.records)
        log.info("published %s", plan.records)
    total = sum(sizes.values())
    log.info("published %s: %d samples, %.1f MB (%.0f bytes/sample)", plan.store, plan.n_samples, total / 1e6,
             total / max(plan.n_samples, 1))
    return plan.store


def run_precompute(plan: PrecomputePlan, run: Any) -> Path:
    """The precompute stages in order (``run`` executes one stage: directly, or as a Prefect task)."""
    staging = run(prepare_precompute, plan)
    results = run(run_precompute_tasks, plan, staging)
    records = run(write_records, plan, staging)
    return run(publish_precompute, plan, staging, results, records)


def summarize_precompute(store: Path) -> str:
    s = open_precomputed(store)
    m = s.manifest
    n = max(1, m["n_samples"])
    lines = [f"{store}  samples: {m['n_samples']:,}  chunks: {m['n_chunks']} x {m['chunk_samples']}  "
             f"artifacts: {', '.join(m['parameters']['artifacts'])}",
             f"{'array':40s} {'MB':>10s} {'bytes/sample':>13s}"]
    for k, v in m["stored_bytes"].items():
        fixed = k.startswith(("khop_genes", "adjacency"))  # per gene / per step, not per sample
        lines.append(f"{k:40s} {v / 1e6:10.2f} {'(fixed)' if fixed else f'{v / n:.1f}':>13s}")
    return "\n".join(lines)
