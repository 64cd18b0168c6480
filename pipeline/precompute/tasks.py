"""What runs on the dask workers of the precompute stage, and what it returns.

The tasks: :func:`compute_sample_chunk` (every per-sample artifact of one chunk of
samples), :func:`compute_adjacency` (every graph's adjacency rows of one shard of steps of
one epoch) and :func:`reverify` (an earlier run's chunk or shard decoded again). Each writes whole shards
of the staging store (:class:`pipeline.precompute.store.StagingStore`), reads them back
(:class:`_Readback`) and only then writes its marker. Their results are small frozen
dataclasses, pickled between processes by dask: :class:`SampleChunkDone` and
:class:`AdjacencyShardDone` (also the markers' and the manifest's entries, through
``to_dict``/``from_dict``) and :class:`Reverified`. :func:`verify_sample_chunk` and
:func:`verify_adjacency` check a chunk or shard against its checksums (also for the
``verify`` command). What every task of one store needs is loaded once per worker
process (:func:`_context`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import zarr

from pipeline.core.errors import StoreError
from pipeline.graph.store import open_graph
from pipeline.precompute.khop import as_words, n_bytes, sample_bits
from pipeline.precompute.masks import (
    both_orientations,
    dense_from_positions,
    node_base,
    node_mask_flips,
    one_orientation,
    removed_edges,
    removed_genes,
)
from pipeline.precompute.store import (
    ADJ_NEGATIVES,
    ADJ_ROWS,
    ADJACENCY,
    NODE_MASK_DENSE,
    StagingStore,
    crc_update,
    digest,
    edge_mask_dense_path,
    edge_mask_path,
    is_chunked_csr,
    khop_path,
    read_chunked_csr,
    write_chunked_csr,
    write_marker,
    written,
)

# --- task results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SampleChunkDone:
    """A chunk of samples computed, written and read back: its marker and its manifest entry."""

    PREFIX: ClassVar[str] = "samples-"
    chunk: int
    first: int
    count: int
    crc32: dict[str, str] = field(hash=False)  # checksum per array name (store.NODE_MASK_DENSE, ...)

    @property
    def marker_name(self) -> str:
        return f"{self.PREFIX}{self.chunk:06d}"

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "first": self.first, "count": self.count, "crc32": dict(self.crc32)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleChunkDone:
        return cls(d["chunk"], d["first"], d["count"], dict(d["crc32"]))


@dataclass(frozen=True)
class AdjacencyShardDone:
    """One shard of adjacency steps of one epoch (every graph's rows) computed, written and read back."""

    PREFIX: ClassVar[str] = "adjacency-"
    epoch: int
    shard: int
    first: int  # its first step
    count: int  # its steps
    crc32: str

    @property
    def key(self) -> tuple[int, int]:
        return self.epoch, self.shard

    @property
    def marker_name(self) -> str:
        return f"{self.PREFIX}e{self.epoch:04d}-s{self.shard:06d}"

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "shard": self.shard, "first": self.first, "count": self.count,
                "crc32": self.crc32}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdjacencyShardDone:
        return cls(int(d["epoch"]), int(d["shard"]), int(d["first"]), int(d["count"]), str(d["crc32"]))


TaskDone = SampleChunkDone | AdjacencyShardDone


@dataclass(frozen=True)
class Reverified:
    """An earlier run's chunk or epoch decoded again: its marker, and the problems found (none: sound)."""

    marker: TaskDone
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"reverified": self.marker.to_dict(), "problems": list(self.problems)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reverified:
        m = d["reverified"]
        marker = SampleChunkDone.from_dict(m) if "chunk" in m else AdjacencyShardDone.from_dict(m)
        return cls(marker, tuple(d["problems"]))


# --- per-worker context ------------------------------------------------------------------------

def stored_incidence(graph: Any, edge_type: str) -> tuple[np.ndarray, np.ndarray]:
    """The incidence whose removed ids are stored: one orientation of an undirected type
    (:func:`pipeline.precompute.masks.one_orientation`; the mirrors follow from the graph, and storing
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
    st = StagingStore.open(staging)
    inc, mirror, nnz = {}, {}, {}
    if st.has_masks:
        for t in graph.edge_types:
            inc[t] = stored_incidence(graph, t)
            mirror[t] = graph.mirror(t)
            nnz[t] = int(graph.edge_attrs(t)["nnz"])
    bits = {mk: as_words(b) for mk, b in st.khop_gene_sets().items()}
    return _Context(graph.n_genes, graph.added, node_base(graph.added), inc, mirror, nnz, bits)


def chunk_bounds(params: dict[str, Any], n: int, chunk: int) -> tuple[int, int]:
    """(first sample, number of samples) of one chunk."""
    c = params["chunk_samples"]
    first = chunk * c
    return first, min(c, n - first)


# --- the tasks ---------------------------------------------------------------------------------

def _write_dense_edges(arr: zarr.Array, first: int, nnz: int, eptr: np.ndarray, eids: np.ndarray) -> str:
    """Write one chunk's dense edge-mask rows, read each shard back, and return their checksum
    (:func:`~pipeline.precompute.store.digest` of the rows), shard by shard: a whole chunk of dense
    edge rows would not fit in memory."""
    step = arr.shards[0] if arr.shards else arr.chunks[0]
    count = len(eptr) - 1
    crc = 0
    for a in range(0, count, step):
        b = min(count, a + step)
        sub_ptr = eptr[a:b + 1] - eptr[a]
        rows = dense_from_positions(1, nnz, sub_ptr, eids[eptr[a]:eptr[b]])
        written(arr)[first + a:first + b] = rows
        if not np.array_equal(arr[first + a:first + b], rows):
            raise StoreError(f"{arr.path}: samples {first + a}..{first + b - 1} read back differently from what "
                             "was written")
        crc = crc_update(crc, rows)
    return f"{crc:08x}"


class _Readback:
    """Write-then-read-back of one chunk's arrays: each array is decoded from the store right
    after it is written (its bytes still in the page cache) and compared with what was
    computed, so a chunk's marker stands for data known to read back exactly. A separate
    pass over the store at the end would decode every chunk a second time (measured: a
    fifth of the stage's time at full scale)."""

    def __init__(self, store: StagingStore, chunk: int, first: int, count: int) -> None:
        self.store, self.chunk, self.first, self.count = store, chunk, first, count
        self.sums: dict[str, str] = {}

    def rows(self, name: str, data: np.ndarray) -> None:
        arr = self.store.array(name)
        sel = slice(self.first, self.first + self.count)
        written(arr)[sel] = data
        self._check(name, np.array_equal(arr[sel], data))
        self.sums[name] = digest(data)

    def csr(self, name: str, indptr: np.ndarray, values: np.ndarray) -> None:
        g = self.store.group(name)
        write_chunked_csr(g, self.chunk, indptr, values)
        have_ptr, have_values = read_chunked_csr(g, self.chunk, self.count)
        self._check(name, np.array_equal(have_ptr, indptr) and np.array_equal(have_values, values))
        self.sums[name] = digest(indptr, values)

    def _check(self, name: str, same: bool) -> None:
        if not same:
            raise StoreError(f"{name}: samples {self.first}..{self.first + self.count - 1} read back differently "
                             "from what was written")


def compute_sample_chunk(staging: str, graph_store: str, key: str, chunk: int, params: dict[str, Any],
                         n: int) -> SampleChunkDone:
    """Compute, write and read back every per-sample artifact of one chunk, then write its marker
    (which it returns)."""
    ctx = _context(staging, graph_store, key)
    st = StagingStore.open(staging, mode="r+")
    first, count = chunk_bounds(params, n, chunk)
    sip, genes, types = st.perturbation_chunk(first, count)
    rem = tuple(params["removing_types"])
    out = _Readback(st, chunk, first, count)
    if "masks" in params["artifacts"]:
        fptr, fgenes = node_mask_flips(sip, genes, types, ctx.added, rem)
        out.rows(NODE_MASK_DENSE, dense_from_positions(ctx.base, ctx.n_genes, fptr, fgenes))
        rptr, rgenes = removed_genes(sip, genes, types, ctx.added, rem)
        for t, (inc_ptr, inc_ids) in ctx.incidence.items():
            eptr, eids = removed_edges(inc_ptr, inc_ids, rptr, rgenes, ctx.nnz[t])
            out.csr(edge_mask_path(t), eptr, eids)
            if params.get("dense_edge_masks"):
                if ctx.mirror[t] is not None:
                    eptr, eids = both_orientations(eptr, eids, ctx.mirror[t])
                name = edge_mask_dense_path(t)
                out.sums[name] = _write_dense_edges(st.array(name), first, ctx.nnz[t], eptr, eids)
    for (mode, k), gb in sorted(ctx.gene_bits.items()):
        out.rows(khop_path(mode, k), sample_bits(gb, sip, genes, width=n_bytes(ctx.n_genes)))
    done = SampleChunkDone(chunk, first, count, out.sums)
    write_marker(Path(staging), done.marker_name, done.to_dict())
    return done


#: Bytes of int32 negatives sampled at once (then packed into the shard's buffer): a task's
#: memory stays bounded however many steps a shard of packed bytes holds.
SAMPLE_BYTES = 1 << 26


@lru_cache(maxsize=1)
def _adjacency_graphs(staging: str, graph_store: str,
                      graphs: tuple[str, ...]) -> tuple[int, np.ndarray, dict[str, Any]]:
    """(genes, valid genes, CSR per graph) for the adjacency tasks, read once per worker process and
    staging (its name holds the build key, so another graph is read afresh); every shard task samples
    every graph: ~0.25 s of reads a task at full scale otherwise."""
    graph = open_graph(graph_store)
    return graph.n_genes, ~graph.added, {t: graph.csr(t) for t in graphs}


def compute_adjacency(staging: str, graph_store: str, epoch: int, shard: int,
                      params: dict[str, Any]) -> AdjacencyShardDone:
    """Sample every graph's adjacency rows of the steps of one shard of one epoch, pack the negatives
    (:class:`~pipeline.precompute.adjacency.NegativePacking` for the graph's gene count), write the
    shard whole and read it back, then the marker. The checksum is
    :func:`~pipeline.precompute.store.digest` of the shard's rows then its packed bytes (as
    ``StoreArrays.shard_digest`` reads them)."""
    from pipeline.precompute.adjacency import NegativePacking, sample_adjacency_rows

    a = params["adjacency"]
    n_genes, valid, csrs = _adjacency_graphs(staging, graph_store, tuple(a["graphs"]))
    st = StagingStore.open(staging, mode="r+")
    packing = NegativePacking.for_genes(n_genes, a["negatives"])
    if st.adjacency_packing != packing:
        raise StoreError(f"{staging}: negatives packed as {st.adjacency_packing}, but the graph's {n_genes} "
                         f"genes need {packing}")
    if st.adjacency_graphs != list(a["graphs"]):
        raise StoreError(f"{staging}: adjacency graphs {st.adjacency_graphs}, parameters {a['graphs']}")
    rows_arr, negs_arr = st.adjacency_arrays()
    steps = st.adjacency_steps(shard)
    n_rows, graphs = a["rows"], a["graphs"]
    rows = np.empty((len(steps), len(graphs), n_rows), dtype=rows_arr.dtype)
    packed = np.empty((len(steps), len(graphs), packing.step_bytes(n_rows)), dtype=np.uint8)
    block = max(1, SAMPLE_BYTES // max(1, n_rows * a["negatives"] * 4))
    for t, name in enumerate(graphs):
        csr = csrs[name]
        for b0 in range(steps.start, steps.stop, block):  # results never depend on the block (counter-based draws)
            b1 = min(steps.stop, b0 + block)
            res = sample_adjacency_rows(csr.indptr, csr.indices, valid, n_rows=n_rows, n_negatives=a["negatives"],
                                        steps=range(b0, b1), seed=a["seed"], graph=name, epoch=epoch,
                                        mode=a["sampling"])
            rows[b0 - steps.start:b1 - steps.start, t] = res.rows
            packed[b0 - steps.start:b1 - steps.start, t] = packing.pack(res.negatives)
    sel = slice(steps.start, steps.stop)
    written(rows_arr)[epoch, sel] = rows
    same = np.array_equal(rows_arr[epoch, sel], rows)
    if packed.size:  # no negatives (or rows): nothing stored
        written(negs_arr)[epoch, sel] = packed
        same &= np.array_equal(negs_arr[epoch, sel], packed)
    if not same:
        raise StoreError(f"{ADJACENCY} epoch {epoch} steps {steps.start}..{steps.stop - 1}: read back "
                         "differently from what was written")
    done = AdjacencyShardDone(epoch, shard, steps.start, len(steps), digest(rows, packed))
    write_marker(Path(staging), done.marker_name, done.to_dict())
    return done


def _decoded_digest(read: Callable[[], str]) -> str | Exception:
    """``read()`` (a checksum of decoded data), or the error that decoding raised.

    Damaged bytes fail in many ways (Blosc, the shard index, a short file, a zarr.json that
    is no longer JSON: each raises its own type), and every one of them means the same
    here: the data is not what its marker recorded. So any exception is the answer.
    """
    try:
        return read()
    except Exception as e:  # noqa: BLE001 - any decode failure is damage (see the docstring)
        return e


def verify_sample_chunk(store: str, marker: SampleChunkDone) -> list[str]:
    """Re-read one chunk's arrays and compare them with its marker's checksums; returns problems,
    one per damaged array, naming it and the sample range (a chunk that does not decode is one)."""
    st = StagingStore.open(store)
    first, count = marker.first, marker.count
    problems = []
    for name, want in marker.crc32.items():
        have = _decoded_digest(lambda name=name: st.chunk_digest(name, marker.chunk, first, count))
        if isinstance(have, Exception):
            problems.append(f"{name}: samples {first}..{first + count - 1} do not decode "
                            f"({type(have).__name__}: {str(have)[:120]})")
        elif have != want:
            problems.append(f"{name}: samples {first}..{first + count - 1} differ from their checksum")
    return problems


def verify_adjacency(store: str, marker: AdjacencyShardDone) -> list[str]:
    """Re-read one shard of adjacency steps of one epoch and compare it with the marker's checksum."""
    st = StagingStore.open(store)
    have = _decoded_digest(lambda: st.shard_digest(marker.epoch, marker.shard))
    where = f"{ADJACENCY} epoch {marker.epoch} steps {marker.first}..{marker.first + marker.count - 1}"
    if isinstance(have, Exception):
        return [f"{where}: does not decode ({type(have).__name__}: {str(have)[:120]})"]
    return [] if have == marker.crc32 else [f"{where}: differs from its checksum"]


def _drop_shards(st: StagingStore, name: str, lo: int, hi: int) -> None:
    """Delete the stored shards (or chunks, unsharded) of array ``name`` that hold rows ``lo:hi``
    (first axis), every column of them."""
    arr = st.root[name]
    grid = arr.shards or arr.chunks
    rows = range(lo // grid[0], -(-hi // grid[0]))
    cols = [range(-(-n // g)) for n, g in zip(arr.shape[1:], grid[1:])]
    for idx in itertools.product(rows, *cols):
        (st.path / name / arr.metadata.encode_chunk_key(idx)).unlink(missing_ok=True)


def drop_task_output(staging: str, marker: TaskDone) -> None:
    """Delete what one chunk or epoch task wrote, before it is computed again.

    A task that writes part of a shard makes zarr decode the stored shard first (to merge
    into it): a damaged shard would fail every recompute. Deleted shards read as fill value
    until the task writes them afresh.
    """
    st = StagingStore.open(staging)
    match marker:
        case SampleChunkDone(chunk=c, first=first, count=count):
            for name in marker.crc32:
                if is_chunked_csr(name):  # row c of its ptr and values
                    for part in ("ptr", "values"):
                        _drop_shards(st, f"{name}/{part}", c, c + 1)
                else:
                    _drop_shards(st, name, first, first + count)
        case AdjacencyShardDone(epoch=e, shard=k):
            for name in (ADJ_ROWS, ADJ_NEGATIVES):
                arr = st.root[name]
                (st.path / name / arr.metadata.encode_chunk_key((e, k, 0, 0))).unlink(missing_ok=True)


def reverify(staging: str, marker: TaskDone) -> Reverified:
    """A task: decode an earlier run's chunk or adjacency shard again; its marker, and the problems found."""
    match marker:
        case SampleChunkDone():
            problems = verify_sample_chunk(staging, marker)
        case AdjacencyShardDone():
            problems = verify_adjacency(staging, marker)
        case _:
            raise TypeError(f"not a task's marker: {marker!r}")
    return Reverified(marker, tuple(problems))
