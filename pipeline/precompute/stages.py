"""The precompute stage: (graph store, dataset) -> per-sample masks, k-hop sets, adjacency rows.

The stage's steps, in the order :func:`run_precompute` runs them (itself called by
:func:`pipeline.sequence.run_build`, the one stage sequence graph -> dataset -> precompute,
for the CLI and the Prefect flow alike):

``plan_precompute`` (parameters, build key, is the published store current?)
-> ``prepare_precompute`` (a staging store beside the final one: the perturbation
CSR, the node-mask flips, the per-gene k-hop sets and every empty array; or the
staging store of an interrupted run with the same key, which is resumed)
-> ``run_precompute_tasks`` (the missing chunk tasks of :mod:`pipeline.precompute.tasks`,
and a re-verification of an earlier run's, on ``dask.distributed``
(:mod:`pipeline.precompute.cluster`): a LocalCluster by default, ``dask_address`` for an
existing scheduler; a :class:`TaskResults`) -> ``write_records`` (the LMDB layout, on
request; resumable per chunk) -> ``publish_precompute`` (manifest with every chunk's
checksums, atomic rename). ``summarize_precompute`` describes a published store.

Each chunk task writes whole shards only and then an atomic marker file; a killed
run leaves markers for exactly the chunks that are complete, and the next run with
the same parameters computes only the others. Nothing is visible under the final
name before every chunk is present and verified. Paths inside the store are known to
:mod:`pipeline.precompute.store` alone.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import is_live, own, publish_dir, release
from pipeline.core.buildkey import build_key, is_current
from pipeline.core.digests import damaged_files, file_crc32, file_digests
from pipeline.core.errors import StoreError
from pipeline.core.progress import Progress
from pipeline.core.ragged import indptr_from_lengths, segment_sum
from pipeline.core.version import __version__
from pipeline.dataset.store import open_dataset
from pipeline.graph.store import open_graph
from pipeline.precompute.cluster import BatchJobs, dask_client, gather
from pipeline.precompute.config import ARTIFACTS, PrecomputeConfig
from pipeline.precompute.khop import gene_khop_bits, n_bytes
from pipeline.precompute.masks import node_base, node_mask_flips, removed_genes
from pipeline.precompute.store import (
    ADJACENCY,
    FORMAT_VERSION,
    KHOP_GENES,
    PROGRESS,
    StagingStore,
    has_marker,
    open_precomputed,
    read_markers,
    remove_marker,
    remove_markers,
    stored_sizes,
    write_marker,
)
from pipeline.precompute.tasks import (
    AdjacencyShardDone,
    Reverified,
    SampleChunkDone,
    chunk_bounds,
    compute_adjacency,
    compute_sample_chunk,
    drop_task_output,
    reverify,
    stored_incidence,
)

ROOT_META = "zarr.json"
log = logging.getLogger("pipeline.precompute")


@dataclass
class PrecomputePlan:
    """What one precompute run writes and from what: resolved by :func:`plan_precompute`."""

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
    force: bool = False  # start clean: discard an interrupted run's staging of the same key


def _staging_path(final: Path, key: str) -> Path:
    # deterministic (unlike pipeline.core.atomic.staging_dir): a rerun with the same key resumes it
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
                     "dataset": ds.manifest.get("build_key"), "version": __version__})
    store = graph_store.parent / "precomputed.zarr"
    records = graph_store.parent / "records.lmdb" if cfg.lmdb else None
    current = is_current(store, key, lambda p: open_precomputed(p).manifest, force)
    if current and records is not None:
        from pipeline.precompute.records import open_records
        try:
            rec = open_records(records)
            current = rec.manifest.get("build_key") == key
            rec.close()  # py-lmdb: a writer cannot open an environment a reader of this process holds
        except StoreError:
            current = False
    return PrecomputePlan(cfg, graph_store, dataset_store, store, records, _staging_path(store, key),
                          _staging_path(records, key) if records else None, params, key, n,
                          max(1, math.ceil(n / cfg.chunk_samples)), current, force)


# --- prepare -----------------------------------------------------------------------------

def _sample_csr(dataset_store: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = open_dataset(dataset_store).scan().select("sample_id", "gene_idx", "types").collect()
    sid = df["sample_id"].to_numpy()
    if not np.array_equal(sid, np.arange(len(sid))):
        raise StoreError(f"{dataset_store}: sample ids are not 0..n-1 in order; rebuild the dataset")
    ptr = indptr_from_lengths(df["gene_idx"].list.len().to_numpy().astype(np.int64))
    genes = df["gene_idx"].explode().to_numpy().astype(np.int32) if ptr[-1] else np.zeros(0, np.int32)
    types = df["types"].explode().to_numpy().astype(np.uint8) if ptr[-1] else np.zeros(0, np.uint8)
    return ptr, genes, types


def _chunk_caps(inc_ptr: np.ndarray, r_ptr: np.ndarray, r_genes: np.ndarray, chunk: int) -> int:
    """An upper bound of removed edge ids in any chunk: the sum of the removed genes' incidence lengths."""
    per_sample = segment_sum(np.diff(inc_ptr)[r_genes], r_ptr)
    pad = (-len(per_sample)) % chunk
    return int(np.pad(per_sample, (0, pad)).reshape(-1, chunk).sum(axis=1).max()) if len(per_sample) else 0


def _discard_debris(final: Path, keep: Path | None) -> None:
    """Remove the staging folders of ``final`` other than ``keep`` (other keys, unprepared ones,
    published-store temporaries) that no live writer holds. The caller holds the store's lock,
    so only an older build without the lock could still be writing one: it is left alone."""
    for pattern in (f".{final.name}.partial-*", f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for p in final.parent.glob(pattern):
            if p != keep and not is_live(p):
                shutil.rmtree(p, ignore_errors=True)


def prepare_precompute(plan: PrecomputePlan) -> Path:
    """Create the staging store (or find the one an interrupted run left with the same key).

    With ``plan.force`` an interrupted run's staging (and records) of the same key is
    discarded: ``--force`` always starts clean. The staging folder is held
    (:func:`pipeline.core.atomic.own`) by this process until it is published.
    """
    st = plan.staging
    if plan.force:
        for p in (st, plan.records_staging):
            if p is not None and p.exists():
                log.info("--force: discarding the staging %s of an earlier run", p)
                shutil.rmtree(p)
    if has_marker(st, "prepared") and (damage := _prepared_damage(st)):
        log.warning("staging %s: %s since it was prepared; starting it over", st, "; ".join(damage[:5]))
        shutil.rmtree(st)
    if has_marker(st, "prepared"):
        _discard_debris(plan.store, keep=st)
        own(st)
        done = len(read_markers(st, SampleChunkDone.PREFIX)) + len(read_markers(st, AdjacencyShardDone.PREFIX))
        log.info("resuming %s: %d task(s) already complete", st, done)
        return st
    _discard_debris(plan.store, keep=None)  # other keys, or an unprepared one of this key
    t0 = time.perf_counter()
    cfg, params = plan.config, plan.parameters
    graph = open_graph(plan.graph_store)
    n_genes = graph.n_genes
    added = graph.added
    ptr, genes, types = _sample_csr(plan.dataset_store)
    store = StagingStore.create(st, plan.key)
    own(st)
    store.write_perturbations(ptr, genes, types)
    n, C = plan.n_samples, cfg.chunk_samples
    if "masks" in cfg.artifacts:
        fptr, fgenes = node_mask_flips(ptr, genes, types, added, cfg.removing_types)
        store.create_masks(node_base(added), fptr, fgenes, n, n_genes, C)
        rptr, rgenes = removed_genes(ptr, genes, types, added, cfg.removing_types)
        for t in graph.edge_types:
            inc_ptr, _ = stored_incidence(graph, t)
            store.create_edge_mask(t, n, plan.n_chunks, C, _chunk_caps(inc_ptr, rptr, rgenes, C),
                                   int(graph.edge_attrs(t)["nnz"]), "both" if graph.mirror(t) is None else "one",
                                   dense=cfg.dense_edge_masks)
    if "khop" in cfg.artifacts:
        csrs = [graph.csr(t) for t in graph.edge_types]
        store.create_khop()
        for mode in cfg.khop_modes:
            bits = gene_khop_bits(csrs, n_genes, cfg.khop, mode)
            store.write_khop_mode(mode, bits, n, n_bytes(n_genes), C)
            log.info("k-hop (%s): per-gene sets for k=%s; mean size %s", mode, list(bits),
                     [round(float(np.unpackbits(b, axis=1).sum(axis=1).mean()), 1) for b in bits.values()])
    if "adjacency-rows" in cfg.artifacts:
        a = params["adjacency"]
        store.create_adjacency((~added).astype(np.uint8), a["graphs"], a["epochs"], a["steps"], a["rows"],
                               a["negatives"])
    write_marker(st, "prepared", {"key": plan.key, "seconds": round(time.perf_counter() - t0, 3),
                                  "files": _prepared_files(st)})
    log.info("prepared %s: %d samples in %d chunk(s) of %d (%.2fs)", st, n, plan.n_chunks, C,
             time.perf_counter() - t0)
    return st


def _prepared_files(st: Path) -> dict[str, str]:
    """CRC-32 of every file a prepared staging holds (metadata and the arrays written whole at
    prepare), the root group's metadata included: what a resumed run checks before trusting it."""
    return {**file_digests(st, skip=(PROGRESS,)), ROOT_META: file_crc32(st / ROOT_META)}


def _prepared_damage(st: Path) -> list[str]:
    """What changed in a prepared staging since its ``prepared`` marker (empty: intact); the
    files the tasks wrote since are not compared here (each task's re-verification covers them)."""
    marker = read_markers(st, "prepared").get("prepared")
    if marker is None or "files" not in marker:
        return ["its prepared marker does not parse or predates file checksums"]
    want = dict(marker["files"])
    root = want.pop(ROOT_META, None)
    problems = [p for p in damaged_files(st, want, skip=(PROGRESS,))
                if not p.endswith("not part of the published store")]
    if not (st / ROOT_META).is_file():
        problems.append(f"{ROOT_META}: missing")
    elif file_crc32(st / ROOT_META) != root:
        problems.append(f"{ROOT_META}: checksum differs")
    return problems


# --- the chunk tasks, on dask --------------------------------------------------------------

@dataclass(frozen=True)
class TaskResults:
    """What ``run_precompute_tasks`` leaves for ``publish_precompute``: every chunk's and adjacency shard's
    checksums (sorted), the compute time, and how many tasks an earlier run had completed."""

    chunks: tuple[SampleChunkDone, ...]
    adjacency: tuple[AdjacencyShardDone, ...]
    compute_seconds: float
    resumed_tasks: int
    recomputed_tasks: int


def run_precompute_tasks(plan: PrecomputePlan, staging: Path) -> TaskResults:
    """Compute the chunks and adjacency shards that have no marker yet; re-verify those that have.

    A task of this run reads every array back before it writes its marker
    (:class:`pipeline.precompute.tasks._Readback`). The chunks and shards completed by an
    earlier, interrupted run have lain on disk in between: they are decoded again and
    compared with their markers' checksums, and any that differ lose their marker and are
    computed afresh (a warning says which).
    """
    params, n = plan.parameters, plan.n_samples
    # absolute: the workers of an external cluster resolve relative paths against their own cwd
    st, gs = str(staging.resolve()), str(plan.graph_store.resolve())
    done_s = {m.chunk: m for m in map(SampleChunkDone.from_dict,
                                      read_markers(staging, SampleChunkDone.PREFIX).values())}
    done_a = {m.key: m for m in map(AdjacencyShardDone.from_dict,
                                    read_markers(staging, AdjacencyShardDone.PREFIX).values())}
    earlier: list[SampleChunkDone | AdjacencyShardDone] = [*done_s.values(), *done_a.values()]
    per_sample = bool({"masks", "khop"} & set(params["artifacts"]))
    todo_s = [c for c in range(plan.n_chunks) if c not in done_s] if per_sample else []
    adj = params.get("adjacency")
    shards = StagingStore.open(staging).adjacency_shards() if adj else []
    todo_a = [k for k in shards if k not in done_a]
    cfg = plan.config
    redone: list[str] = []
    with dask_client(cfg.dask_address, cfg.workers, cfg.dask_processes, BatchJobs.from_config(cfg)) as client:
        t0 = time.perf_counter()  # the cluster's start and stop are not the stage's work
        log.info("precompute on %s: %d sample chunk(s) to compute (%d done), %d adjacency shard(s) (%d done)",
                 client.scheduler.address if hasattr(client.scheduler, "address") else "dask", len(todo_s),
                 len(done_s), len(todo_a), len(done_a))

        def submit(chunks: list[int], shards: list[tuple[int, int]]) -> list[Any]:
            return ([client.submit(compute_adjacency, st, gs, e, k, params, pure=False) for e, k in shards]
                    + [client.submit(compute_sample_chunk, st, gs, plan.key, c, params, n, pure=False)
                       for c in chunks])

        futs = [client.submit(reverify, st, m, pure=False) for m in earlier] + submit(todo_s, todo_a)
        while futs:
            again_s: list[int] = []
            again_a: list[tuple[int, int]] = []
            for r in gather(client, futs, "precompute"):
                match r:
                    case Reverified(marker=old, problems=problems) if problems:
                        # damaged since its marker was written: compute it again, into fresh shards
                        redone += problems
                        remove_marker(staging, old.marker_name)
                        drop_task_output(st, old)
                        if isinstance(old, SampleChunkDone):
                            done_s.pop(old.chunk, None)
                            again_s.append(old.chunk)
                        else:
                            done_a.pop(old.key, None)
                            again_a.append(old.key)
                    case Reverified():
                        pass
                    case SampleChunkDone():
                        done_s[r.chunk] = r
                    case AdjacencyShardDone():
                        done_a[r.key] = r
                    case _:
                        raise TypeError(f"unexpected task result {r!r}")
            futs = submit(again_s, again_a)
        t1 = time.perf_counter()
    if redone:
        log.warning("%d task(s) of an earlier run failed re-verification and were computed again: %s",
                    len(redone), "; ".join(redone[:5]))
    missing = [c for c in range(plan.n_chunks) if c not in done_s] if per_sample else []
    if missing:
        raise StoreError(f"{staging}: chunks {missing[:10]} missing after the run")
    missing_a = [k for k in shards if k not in done_a]
    if missing_a:
        raise StoreError(f"{staging}: adjacency (epoch, shard) {missing_a[:10]} missing after the run")
    log.info("computed and read back %d task(s), re-verified %d of an earlier run (%d recomputed), in %.2fs",
             len(todo_s) + len(todo_a), len(earlier), len(redone), t1 - t0)
    return TaskResults(chunks=tuple(done_s[c] for c in sorted(done_s)),
                       adjacency=tuple(done_a[k] for k in sorted(done_a)),
                       compute_seconds=round(t1 - t0, 3), resumed_tasks=len(earlier) - len(redone),
                       recomputed_tasks=len(redone))


# --- LMDB records ----------------------------------------------------------------------------

def record_sections(staging: Path) -> list[tuple[str, np.dtype]]:
    """The sections of an LMDB record, in order (the schema stored in the LMDB)."""
    store = StagingStore.open(staging)
    out: list[tuple[str, np.dtype]] = [("genes", np.dtype("<i4")), ("types", np.dtype("|u1"))]
    if store.has_masks:
        out.append(("node_flips", np.dtype("<i4")))
        out += [(f"edges:{t}", np.dtype("<i4")) for t in store.stored_edge_types()]
    if store.has_khop:
        out += [(f"khop:{mode}:k{k}", np.dtype("|u1")) for mode, k in store.khop_sets()]
    return out


def _bits_csr(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, w = bits.shape
    return np.arange(m + 1, dtype=np.int64) * w, bits.reshape(-1)


def write_records(plan: PrecomputePlan, staging: Path) -> Path | None:
    """Per-sample records in LMDB (key = sample id), chunk by chunk from the staging store; resumable."""
    if plan.records is None or plan.records_staging is None:
        return None
    from pipeline.precompute.records import RecordSchema, RecordWriter

    store = StagingStore.open(staging)
    schema = RecordSchema(tuple(record_sections(staging)))
    rs = plan.records_staging
    _discard_debris(plan.records, keep=rs)
    writer = RecordWriter(rs, schema)
    done = writer.done_chunks()
    t0 = time.perf_counter()
    todo = [c for c in range(plan.n_chunks) if c not in done]
    bar = Progress(len(todo), "records", "chunk")
    for c in todo:
        first, count = chunk_bounds(plan.parameters, plan.n_samples, c)
        p, genes, types = store.perturbation_chunk(first, count)
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {"genes": (p, genes), "types": (p, types)}
        if store.has_masks:
            cols["node_flips"] = store.node_flips_chunk(first, count)
        for name, _ in schema.sections:
            if name.startswith("edges:"):
                cols[name] = store.chunk_edges(name[6:], c, count)
            elif name.startswith("khop:"):
                _, mode, k = name.split(":")
                cols[name] = _bits_csr(store.khop_bits(int(k[1:]), mode, slice(first, first + count)))
        writer.put_chunk(c, first, cols)
        bar.update()
    bar.close()
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


def publish_precompute(plan: PrecomputePlan, staging: Path, results: TaskResults,
                       records_staging: Path | None) -> Path:
    """Write the manifest (last), drop the progress markers and rename the store (and records) into place."""
    from pipeline.core.inputs import code_version

    sizes = stored_sizes(staging)
    manifest = {
        "build_key": plan.key, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(), "parameters": plan.parameters, "n_samples": plan.n_samples,
        "chunk_samples": plan.config.chunk_samples, "n_chunks": plan.n_chunks,
        "dataset": {"path": str(plan.dataset_store), "build_key": open_dataset(plan.dataset_store).manifest.get(
            "build_key")},
        **_graph_identity(plan), "chunks": [c.to_dict() for c in results.chunks],
        "adjacency": [a.to_dict() for a in results.adjacency],
        "stored_bytes": sizes, "seconds": {"compute_seconds": results.compute_seconds},
        "resumed_tasks": results.resumed_tasks, "recomputed_tasks": results.recomputed_tasks,
        "files": file_digests(staging, skip=(PROGRESS,)),  # every stored byte (the markers go next)
    }
    StagingStore.open(staging, mode="r+").write_manifest(manifest)
    remove_markers(staging)
    publish_dir(staging, plan.store)  # also lets go of the staging folder
    if records_staging is not None and plan.records is not None:
        publish_dir(records_staging, plan.records)
        log.info("published %s", plan.records)
    total = sum(sizes.values())
    log.info("published %s: %d samples, %.1f MB (%.0f bytes/sample)", plan.store, plan.n_samples, total / 1e6,
             total / max(plan.n_samples, 1))
    return plan.store


def run_precompute(plan: PrecomputePlan, run: Any) -> Path:
    """The precompute stage's steps in order: prepare -> tasks -> records -> publish (``run``
    executes one step: directly, or as a Prefect task)."""
    staging = run(prepare_precompute, plan)
    try:
        results = run(run_precompute_tasks, plan, staging)
        records = run(write_records, plan, staging)
        return run(publish_precompute, plan, staging, results, records)
    finally:
        release(staging)  # kept for a rerun to resume if anything failed


def summarize_precompute(store: Path) -> str:
    """A published store in a few lines: its size, and the bytes of each array (per sample where it grows with them)."""
    s = open_precomputed(store)
    m = s.manifest
    n = max(1, m["n_samples"])
    lines = [f"{store}  samples: {m['n_samples']:,}  chunks: {m['n_chunks']} x {m['chunk_samples']}  "
             f"artifacts: {', '.join(m['parameters']['artifacts'])}",
             f"{'array':40s} {'MB':>10s} {'bytes/sample':>13s}"]
    for k, v in m["stored_bytes"].items():
        fixed = k.startswith((KHOP_GENES, ADJACENCY))  # per gene / per step, not per sample
        lines.append(f"{k:40s} {v / 1e6:10.2f} {'(fixed)' if fixed else f'{v / n:.1f}':>13s}")
    return "\n".join(lines)
