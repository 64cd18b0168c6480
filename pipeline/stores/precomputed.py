"""The precomputed store: per-sample masks, k-hop sets and sampled adjacency rows, in one Zarr v3 group.

Layout (exact contract in ``storage_layout.md``; ``n`` samples, ``N`` genes, ``C``
samples per chunk, ``K = ceil(n / C)`` chunks)::

    precomputed.zarr/                 attributes: format, format_version, manifest (written last)
      perturbation/indptr, genes, types     CSR over samples: M(S) (int64 [n+1], int32, uint8)
      node_mask/base                        uint8 [N]: the wild-type mask (0 for added genes)
      node_mask/indptr, genes               CSR over samples: genes whose mask differs from base
      node_mask/dense                       uint8 [n, N]
      edge_mask/<type>/ptr                  int64 [K, C+1]: per chunk, offsets of each sample's ids
      edge_mask/<type>/values               int32 [K, cap]: per chunk, removed edge ids, ascending per sample
                                            (undirected types: one orientation, id < mirror[id])
      edge_mask/<type>/dense                uint8 [n, nnz]            (--dense-edge-masks only)
      khop/<mode>/k<k>                      uint8 [n, ceil(N/8)]: bit-packed k-hop node sets
      khop_genes/<mode>/k<k>                uint8 [N, ceil(N/8)]: the per-gene sets they are OR-ed from
      adjacency/valid                       uint8 [N]: 0 for genes never sampled (added genes)
      adjacency/<type>/rows                 int32 [E, S, R]
      adjacency/<type>/negatives            int32 [E, S, R, M]

Arrays written per chunk of samples are sharded so that one chunk task writes whole
shards only (tasks never share a file); ragged per-sample data are "chunked CSR":
row ``c`` of ``ptr``/``values`` belongs to chunk ``c`` alone.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.errors import StoreError
from pipeline.stores._open import PublishedStore, open_versioned_group

FORMAT = "yeast-pipeline.precomputed"
FORMAT_VERSION = 2  # 2: undirected edge masks store one orientation
# Measured on masks of 3-gene samples (README): LZ4 stores a dense node-mask row in ~37 B
# (bit-shuffled zstd-3: ~10 B) but encodes at ~24 GB/s and decodes at ~49 GB/s instead of
# ~2.5 GB/s: the dense view is read by loaders, and 37 B is still nothing. Sorted edge ids: byte-shuffled LZ4 compresses them as well as
# zstd-1 (~4x) at 1.8 GB/s instead of 0.66 (decoding 2.1 vs 1.1 GB/s). Bit rows of k-hop
# sets: zstd-1 halves them, LZ4 saves only ~20%.
MASK_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")
IDS_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
BITS_CODEC = BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle")
#: Target bytes of one inner chunk and one shard (zarr's guidance: chunks of >= ~1 MB).
INNER_BYTES = 1 << 20
SHARD_BYTES = 1 << 28
PROGRESS = "progress"  # folder of per-task completion markers (removed at publish)


def _pow2_floor(x: int) -> int:
    return 1 << max(0, int(x).bit_length() - 1)


def row_layout(width_bytes: int, chunk_samples: int) -> tuple[int, int]:
    """(rows per inner chunk, rows per shard) for a [n, width] array written per chunk of samples.

    Both are powers of two dividing ``chunk_samples`` (itself a power of two): a shard
    never spans two chunk tasks, so parallel writers never touch the same file.
    """
    inner = min(chunk_samples, _pow2_floor(max(1, INNER_BYTES // max(1, width_bytes))))
    shard = min(chunk_samples, max(inner, _pow2_floor(max(1, SHARD_BYTES // max(1, width_bytes)))))
    return inner, shard


def create_rows(group: zarr.Group, name: str, n: int, width: int, dtype: Any, chunk_samples: int,
                codec: BloscCodec, attrs: dict[str, Any] | None = None) -> zarr.Array:
    """An [n, width] array chunked by rows (see :func:`row_layout`)."""
    itemsize = np.dtype(dtype).itemsize
    inner, shard = row_layout(width * itemsize, chunk_samples)
    arr = group.create_array(name, shape=(n, width), dtype=dtype, chunks=(inner, max(width, 1)),
                             shards=(shard, max(width, 1)), compressors=codec, fill_value=0)
    if attrs:
        arr.attrs.update(attrs)
    return arr


def create_chunked_csr(group: zarr.Group, name: str, n_chunks: int, chunk_samples: int, cap: int,
                       dtype: Any = np.int32) -> zarr.Group:
    """``name/ptr`` int64 [K, C+1] and ``name/values`` [K, cap]: one row per chunk of samples."""
    g = group.create_group(name)
    g.create_array("ptr", shape=(n_chunks, chunk_samples + 1), dtype=np.int64, chunks=(1, chunk_samples + 1),
                   compressors=IDS_CODEC, fill_value=0)
    itemsize = np.dtype(dtype).itemsize
    inner = max(1, min(_pow2_floor(INNER_BYTES // itemsize), _pow2_floor(max(cap, 1))))
    cap = max(inner, -(-cap // inner) * inner)
    g.create_array("values", shape=(n_chunks, cap), dtype=dtype, chunks=(1, inner), shards=(1, cap),
                   compressors=IDS_CODEC, fill_value=0)
    return g


def written(arr: zarr.Array) -> zarr.Array:
    """``arr`` for writing rows that are never all fill value: zarr's default compares every
    chunk with the fill value before encoding it (a full pass; measured 3x the lz4 encode
    of a dense node-mask chunk), a check that can only fail here."""
    return arr.with_config({"write_empty_chunks": True})


def write_chunked_csr(g: zarr.Group, chunk: int, indptr: np.ndarray, values: np.ndarray) -> None:
    ptr = written(g["ptr"])
    full = np.empty(ptr.shape[1], dtype=np.int64)
    full[:len(indptr)] = indptr
    full[len(indptr):] = indptr[-1]  # the last chunk's missing samples are empty
    ptr[chunk] = full
    if len(values):
        vals = written(g["values"])
        if len(values) > vals.shape[1]:
            raise StoreError(f"chunk {chunk}: {len(values)} values exceed the planned capacity {vals.shape[1]}")
        vals[chunk, :len(values)] = values


def read_chunked_csr(g: zarr.Group, chunk: int, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 [count+1], values) of one chunk of samples."""
    ptr = g["ptr"][chunk]
    if count is not None:
        ptr = ptr[:count + 1]
    end = int(ptr[-1])
    return ptr, (g["values"][chunk, :end] if end else np.zeros(0, dtype=g["values"].dtype))


def digest(*arrays: np.ndarray) -> str:
    """CRC-32 (8 hex digits) of the arrays' little-endian bytes, in order: the per-chunk checksums.

    An integrity check, not a signature: zlib's CRC-32 runs at ~7 GB/s here, sha256 at ~2 GB/s,
    and every chunk is hashed twice (when written and when verified).
    """
    crc = 0
    for a in arrays:
        a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
        crc = zlib.crc32(memoryview(a).cast("B"), crc)
    return f"{crc:08x}"


def write_marker(store: Path, name: str, body: dict[str, Any]) -> None:
    """Record a finished task (atomically: a marker is either absent or complete)."""
    d = store / PROGRESS
    d.mkdir(exist_ok=True)
    tmp = d / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, sort_keys=True))
    os.replace(tmp, d / f"{name}.json")


def read_markers(store: Path, prefix: str) -> dict[str, dict[str, Any]]:
    d = store / PROGRESS
    if not d.is_dir():
        return {}
    out = {}
    for p in sorted(d.glob(f"{prefix}*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):  # a torn marker counts as missing
            continue
    return out


@dataclass
class PrecomputedStore(PublishedStore):
    """A published precomputed store, opened read-only.

    >>> s = open_precomputed("data/processed/sample/precomputed.zarr")   # doctest: +SKIP
    >>> s.node_mask_dense(np.arange(64)).shape                           # doctest: +SKIP
    (64, 6607)
    """

    @property
    def n_samples(self) -> int:
        return int(self.manifest["n_samples"])

    @property
    def chunk_samples(self) -> int:
        return int(self.manifest["chunk_samples"])

    @property
    def n_genes(self) -> int:
        return int(self.manifest["graph"]["n_genes"])

    @property
    def edge_types(self) -> list[str]:
        return sorted(self.manifest["graph"]["edge_types"])

    def perturbations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """M(S) for every sample: (indptr int64 [n+1], genes int32, types uint8)."""
        g = self.root["perturbation"]
        return g["indptr"][:], g["genes"][:], g["types"][:]

    def node_mask_flips(self) -> tuple[np.ndarray, np.ndarray]:
        g = self.root["node_mask"]
        return g["indptr"][:], g["genes"][:]

    def node_mask_dense(self, rows: np.ndarray | slice) -> np.ndarray:
        a = self.root["node_mask/dense"]
        return a[rows] if isinstance(rows, slice) else a.oindex[np.asarray(rows), :]

    def edge_orientation(self, edge_type: str) -> str:
        """``one`` (undirected type: ids with id < mirror[id] stored) or ``both`` (directed type: all ids)."""
        return str(self.root[f"edge_mask/{edge_type}"].attrs["orientation"])

    def removed_edges(self, edge_type: str, chunk: int, graph: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Removed edge ids of the samples of one chunk: (indptr [count+1], ids int32), ascending per sample.

        As stored (one orientation of an undirected type) without ``graph``; with ``graph``
        (the GraphStore it was computed from), every removed id, both orientations.
        """
        first = chunk * self.chunk_samples
        count = min(self.chunk_samples, self.n_samples - first)
        ptr, ids = read_chunked_csr(self.root[f"edge_mask/{edge_type}"], chunk, count)
        if graph is None or self.edge_orientation(edge_type) == "both":
            return ptr, ids
        from pipeline.masks import both_orientations
        return both_orientations(ptr, ids, graph.mirror(edge_type))

    def khop_bits(self, k: int, mode: str = "per_type", rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        a = self.root[f"khop/{mode}/k{k}"]
        return a[rows] if isinstance(rows, slice) else a.oindex[np.asarray(rows), :]

    def adjacency(self, edge_type: str, epoch: int, steps: slice | int = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(rows int32 [S, R], negatives int32 [S, R, M]) of one graph and epoch."""
        g = self.root[f"adjacency/{edge_type}"]
        return g["rows"][epoch, steps], g["negatives"][epoch, steps]

    def check_against(self, gene_fingerprint: str, edge_fingerprints: dict[str, str]) -> None:
        """Raise :class:`StoreError` naming the gene index or edge type that differs from the graph."""
        g = self.manifest["graph"]
        if g["gene_fingerprint"] != gene_fingerprint:
            raise StoreError(f"{self.path}: computed for another gene index (store {g['gene_fingerprint'][:12]}, "
                             f"graph {gene_fingerprint[:12]}): every gene index would be shifted; recompute it")
        for name, fp in g["edge_types"].items():
            have = edge_fingerprints.get(name)
            if have is None:
                raise StoreError(f"{self.path}: computed with edge type {name!r}, which the graph lacks")
            if have != fp:
                raise StoreError(f"{self.path}: edge type {name!r} differs (store {fp[:12]}, graph {have[:12]}): "
                                 f"edge ids would not match; recompute it")


def open_precomputed(path: str | Path, graph: Any = None) -> PrecomputedStore:
    """Open a published store; with ``graph`` (a GraphStore), check it was computed from that graph."""
    path = Path(path)
    root = open_versioned_group(path, FORMAT, FORMAT_VERSION, "precomputed store", "recompute")
    store = PrecomputedStore(path, root)
    if graph is not None:
        store.check_against(graph.fingerprint, {t: graph.edge_attrs(t)["fingerprint"] for t in graph.edge_types})
    return store
