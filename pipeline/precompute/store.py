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
      adjacency/rows                        int16/int32 [E, S, T, R]: every graph's sampled rows (attribute
                                            graphs: the T graphs in order), uncompressed
      adjacency/negatives                   uint8 [E, S, T, P]: each step's R x M negatives of each graph
                                            bit-packed, uncompressed (adjacency.NegativePacking, recorded in
                                            the group's attribute negative_packing; P = R*ceil(M/8)*8*bits/8)

Arrays written per chunk of samples are sharded so that one chunk task writes whole
shards only (tasks never share a file); ragged per-sample data are "chunked CSR":
row ``c`` of ``ptr``/``values`` belongs to chunk ``c`` alone.

This module is the only one that knows the paths inside the store. It holds the codecs
and chunk layouts; the names of the arrays a chunk's checksums are recorded under
(:data:`NODE_MASK_DENSE`, :func:`edge_mask_path`, :func:`khop_path`); the progress
markers; :class:`StagingStore`, the store being written (``prepare_precompute`` creates
its arrays, the chunk tasks of :mod:`pipeline.precompute.tasks` fill them); and
:class:`PrecomputedStore`, a published store opened read-only. Both read through
:class:`StoreArrays`, whose readers take whole chunks of samples (one zarr read per
array and chunk: a zarr call costs ~0.5 ms).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.core.chunkio import DirectArray
from pipeline.core.errors import StoreError
from pipeline.core.remote import ChunkCache, location
from pipeline.core.zarr_store import PublishedStore, open_versioned_group, put_array
from pipeline.precompute.adjacency import NegativePacking

FORMAT = "yeast-pipeline.precomputed"
# 2: undirected edge masks store one orientation; 3: adjacency negatives stored bit-packed
# (uint8 [E, S, P], uncompressed: adjacency.NegativePacking) instead of int32 [E, S, R, M] lz4;
# 4: every graph's adjacency rows and negatives in one array each ([E, S, T, R], [E, S, T, P]),
# so a step of all graphs is one contiguous range
FORMAT_VERSION = 4
# Measured on masks of 3-gene samples (README): LZ4 stores a dense node-mask row in ~37 B
# (bit-shuffled zstd-3: ~10 B) but encodes at ~24 GB/s and decodes at ~49 GB/s instead of
# ~2.5 GB/s: the dense view is read by loaders, and 37 B is still nothing. Sorted edge ids:
# byte-shuffled LZ4 compresses them as well as zstd-1 (~4x) at 1.8 GB/s instead of 0.66
# (decoding 2.1 vs 1.1 GB/s). Bit rows of k-hop sets: zstd-1 halves them, LZ4 saves only ~20%.
MASK_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")
IDS_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
BITS_CODEC = BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle")
#: Target bytes of one inner chunk and one shard (zarr's guidance: chunks of >= ~1 MB).
INNER_BYTES = 1 << 20
SHARD_BYTES = 1 << 28
PROGRESS = "progress"  # folder of per-task completion markers (removed at publish)
#: Target bytes of one adjacency shard: the unit one task writes and a stream maps at once.
ADJ_SHARD_BYTES = 1 << 25
#: Attribute of the adjacency group: how its negatives are packed (NegativePacking.to_dict()).
NEGATIVE_PACKING = "negative_packing"

# --- paths inside the store ------------------------------------------------------------------
# A chunk's checksums are recorded (in its marker and the manifest) under the path of each
# array: these names are part of the stored content.

PERTURBATION, NODE_MASK, EDGE_MASK, KHOP, KHOP_GENES, ADJACENCY = (
    "perturbation", "node_mask", "edge_mask", "khop", "khop_genes", "adjacency")
NODE_MASK_DENSE = f"{NODE_MASK}/dense"
ADJ_ROWS, ADJ_NEGATIVES = f"{ADJACENCY}/rows", f"{ADJACENCY}/negatives"


def edge_mask_path(edge_type: str) -> str:
    """The chunked CSR of one edge type's removed ids (its checksum name)."""
    return f"{EDGE_MASK}/{edge_type}"


def edge_mask_dense_path(edge_type: str) -> str:
    return f"{EDGE_MASK}/{edge_type}/dense"


def is_chunked_csr(name: str) -> bool:
    """Whether the array named ``name`` is an edge type's chunked CSR (else rows over samples)."""
    return name.startswith(f"{EDGE_MASK}/") and not name.endswith("/dense")


def khop_path(mode: str, k: int) -> str:
    """The per-sample k-hop bit rows of one mode and k (their checksum name)."""
    return f"{KHOP}/{mode}/k{k}"


def pow2_floor(x: int) -> int:
    return 1 << max(0, int(x).bit_length() - 1)


def row_layout(width_bytes: int, chunk_samples: int) -> tuple[int, int]:
    """(rows per inner chunk, rows per shard) for a [n, width] array written per chunk of samples.

    Both are powers of two dividing ``chunk_samples`` (itself a power of two): a shard
    never spans two chunk tasks, so parallel writers never touch the same file.
    """
    inner = min(chunk_samples, pow2_floor(max(1, INNER_BYTES // max(1, width_bytes))))
    shard = min(chunk_samples, max(inner, pow2_floor(max(1, SHARD_BYTES // max(1, width_bytes)))))
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
    inner = max(1, min(pow2_floor(INNER_BYTES // itemsize), pow2_floor(max(cap, 1))))
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
        crc = crc_update(crc, a)
    return f"{crc:08x}"


def crc_update(crc: int, a: np.ndarray) -> int:
    """``crc`` continued over ``a``'s little-endian bytes: ``digest`` of blocks of rows, one block
    at a time (a dense edge-mask chunk does not fit in memory whole)."""
    if a.size == 0:  # no bytes (memoryview cannot cast a shape with a zero)
        return crc
    a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    return zlib.crc32(memoryview(a).cast("B"), crc)


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


def has_marker(store: Path, name: str) -> bool:
    return (store / PROGRESS / f"{name}.json").is_file()


def remove_marker(store: Path, name: str) -> None:
    (store / PROGRESS / f"{name}.json").unlink(missing_ok=True)


def remove_markers(store: Path) -> None:
    """Drop the progress folder (at publish: a published store has no markers)."""
    shutil.rmtree(store / PROGRESS, ignore_errors=True)


def adjacency_layout(steps: int, step_bytes: int) -> tuple[int, int]:
    """(steps per inner chunk, steps per shard) of the adjacency negatives, ``step_bytes`` bytes a step
    (every graph's packed negatives): inner chunks of ~:data:`INNER_BYTES`, shards of ~:data:`ADJ_SHARD_BYTES`
    (a whole number of inner chunks, never spanning epochs).

    >>> adjacency_layout(1000, 9 * 26624)
    (4, 140)
    """
    per_step = max(1, step_bytes)
    inner = max(1, min(pow2_floor(max(1, INNER_BYTES // per_step)), pow2_floor(steps)))
    shard = inner * max(1, min(math.ceil(steps / inner), ADJ_SHARD_BYTES // (inner * per_step)))
    return inner, shard


def rows_dtype(n_genes: int) -> np.dtype:
    """The stored dtype of adjacency rows: the narrowest signed integer holding every gene and -1."""
    return np.dtype(np.int16 if n_genes <= np.iinfo(np.int16).max else np.int32)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def stored_sizes(store: Path) -> dict[str, int]:
    """Bytes on disk per stored array/group of interest (for the manifest and the benchmark)."""
    out = {}
    for rel in (PERTURBATION, f"{NODE_MASK}/indptr", f"{NODE_MASK}/genes", NODE_MASK_DENSE, KHOP_GENES):
        if (store / rel).exists():
            out[rel] = _dir_bytes(store / rel)
    for group in (EDGE_MASK, KHOP, ADJACENCY):
        base = store / group
        if not base.is_dir():
            continue
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if group == EDGE_MASK:
                out[f"{group}/{sub.name}"] = _dir_bytes(sub) - _dir_bytes(sub / "dense")
                if (sub / "dense").exists():
                    out[f"{group}/{sub.name}/dense"] = _dir_bytes(sub / "dense")
            elif group == KHOP:
                for k in sorted(p for p in sub.iterdir() if p.is_dir()):
                    out[f"{KHOP}/{sub.name}/{k.name}"] = _dir_bytes(k)
            else:
                out[f"{group}/{sub.name}"] = _dir_bytes(sub)
    return out


class StoreArrays:
    """Readers over the root group of a precomputed store, published or staging.

    Per-sample data are read a whole chunk of samples at a time (``first``, ``count``):
    one zarr read per array, never one per sample.
    """

    root: zarr.Group

    # --- what the store holds ------------------------------------------------------------
    @property
    def has_masks(self) -> bool:
        return NODE_MASK in self.root

    @property
    def has_khop(self) -> bool:
        return KHOP in self.root

    def stored_edge_types(self) -> list[str]:
        """The edge types with removed-edge masks, sorted."""
        return sorted(self.root[EDGE_MASK].group_keys()) if EDGE_MASK in self.root else []

    def khop_sets(self) -> list[tuple[str, int]]:
        """(mode, k) of every per-sample k-hop array: modes sorted, then arrays by name."""
        if KHOP not in self.root:
            return []
        return [(mode, int(name[1:])) for mode in sorted(self.root[KHOP].group_keys())
                for name in sorted(self.root[f"{KHOP}/{mode}"].array_keys())]

    def khop_gene_sets(self) -> dict[tuple[str, int], np.ndarray]:
        """The per-gene k-hop bit rows, by (mode, k)."""
        out = {}
        if KHOP_GENES in self.root:
            for mode, g in self.root[KHOP_GENES].groups():
                for name, arr in g.arrays():
                    out[(mode, int(name[1:]))] = arr[:]
        return out

    @property
    def steps_per_shard(self) -> int:
        """Adjacency steps per shard (0 without adjacency rows): what one task writes, the unit to read them in."""
        return int(self.root[ADJACENCY].attrs["steps_per_shard"]) if ADJACENCY in self.root else 0

    @property
    def adjacency_graphs(self) -> list[str]:
        """The graphs of the adjacency arrays' axis ``T``, in order (empty without adjacency rows)."""
        return list(self.root[ADJACENCY].attrs["graphs"]) if ADJACENCY in self.root else []

    @property
    def adjacency_packing(self) -> NegativePacking | None:
        """How ``adjacency/negatives`` packs the negatives (None without adjacency rows)."""
        if ADJACENCY not in self.root:
            return None
        return NegativePacking.from_dict(self.root[ADJACENCY].attrs[NEGATIVE_PACKING])

    def _graph_index(self, edge_type: str) -> int:
        graphs = self.adjacency_graphs
        if edge_type not in graphs:
            raise KeyError(f"no adjacency rows of graph {edge_type!r} (the store has {graphs})")
        return graphs.index(edge_type)

    # --- whole arrays ----------------------------------------------------------------------
    def perturbations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """M(S) for every sample: (indptr int64 [n+1], genes int32, types uint8)."""
        g = self.root[PERTURBATION]
        return g["indptr"][:], g["genes"][:], g["types"][:]

    def node_mask_flips(self) -> tuple[np.ndarray, np.ndarray]:
        g = self.root[NODE_MASK]
        return g["indptr"][:], g["genes"][:]

    # --- chunks of samples -----------------------------------------------------------------
    def _read(self, name: str, *sel: int | slice) -> np.ndarray:
        """``array[sel]`` of the array ``name`` (a published store reads chunk files directly)."""
        return self.root[name][sel]

    def perturbation_chunk(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """M(S) of samples ``first .. first+count-1`` (clipped to the store): (indptr from 0, genes, types)."""
        ptr = self._read(f"{PERTURBATION}/indptr", slice(first, first + count + 1))
        a, b = int(ptr[0]), int(ptr[-1])
        return (ptr - ptr[0], self._read(f"{PERTURBATION}/genes", slice(a, b)),
                self._read(f"{PERTURBATION}/types", slice(a, b)))

    def node_flips_chunk(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The node-mask flips of samples ``first .. first+count-1``: (indptr from 0, genes)."""
        ptr = self._read(f"{NODE_MASK}/indptr", slice(first, first + count + 1))
        return ptr - ptr[0], self._read(f"{NODE_MASK}/genes", slice(int(ptr[0]), int(ptr[-1])))

    def node_mask_dense(self, rows: np.ndarray | slice) -> np.ndarray:
        a = self.root[NODE_MASK_DENSE]
        return a[rows] if isinstance(rows, slice) else a.oindex[np.asarray(rows), :]

    def edge_orientation(self, edge_type: str) -> str:
        """``one`` (undirected type: ids with id < mirror[id] stored) or ``both`` (directed type: all ids)."""
        return str(self.root[edge_mask_path(edge_type)].attrs["orientation"])

    def chunk_edges(self, edge_type: str, chunk: int, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Removed edge ids of one chunk's samples as stored: (indptr [count+1], ids int32)."""
        return read_chunked_csr(self.root[edge_mask_path(edge_type)], chunk, count)

    def khop_bits(self, k: int, mode: str = "per_type", rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        if isinstance(rows, slice):
            return self._read(khop_path(mode, k), rows)
        return self.root[khop_path(mode, k)].oindex[np.asarray(rows), :]

    def adjacency(self, edge_type: str, epoch: int, steps: slice | int = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(rows int32 [S, R], negatives int32 [S, R, M]) of one graph and epoch: the stored
        negatives unpacked (an int ``steps``: one step, [R] and [R, M])."""
        rows, packed = self.adjacency_packed(edge_type, epoch, steps)
        return rows, self.adjacency_packing.unpack(packed, rows.shape[-1])

    def adjacency_packed(self, edge_type: str, epoch: int,
                         steps: slice | int = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(rows int32 [S, R], packed negatives uint8 [S, P]) of one graph and epoch, as stored
        (:attr:`adjacency_packing` says how they are packed; a plain read, no codec)."""
        t = self._graph_index(edge_type)
        rows = self._read(ADJ_ROWS, epoch, steps, t).astype(np.int32)
        return rows, self._read(ADJ_NEGATIVES, epoch, steps, t)

    # --- checksums (a task's marker; the manifest) ------------------------------------------
    def chunk_digest(self, name: str, chunk: int, first: int, count: int) -> str:
        """The checksum of one chunk's samples of the array (or chunked CSR) named ``name``."""
        if is_chunked_csr(name):
            return digest(*read_chunked_csr(self.root[name], chunk, count))
        arr = self.root[name]
        step = (arr.shards or arr.chunks)[0]
        crc = 0
        for a in range(first, first + count, step):  # shard by shard: the digest of the whole rows
            crc = crc_update(crc, arr[a:min(first + count, a + step)])
        return f"{crc:08x}"

    def _adjacency_meta(self) -> tuple[int, int, int]:
        """(steps per shard, stored steps, stored epochs) of the adjacency arrays."""
        epochs, steps = self.root[ADJ_ROWS].shape[:2]
        return self.steps_per_shard, int(steps), int(epochs)

    def adjacency_steps(self, shard: int) -> range:
        """The steps of adjacency shard ``shard`` (of every epoch; the last one may be short)."""
        per, n, _ = self._adjacency_meta()
        return range(shard * per, min((shard + 1) * per, n))

    def adjacency_shards(self) -> list[tuple[int, int]]:
        """Every (epoch, shard) of the adjacency arrays: one task and one checksum each (empty without them)."""
        if ADJACENCY not in self.root:
            return []
        per, n, epochs = self._adjacency_meta()
        return [(e, k) for e in range(epochs) for k in range(-(-n // per))]

    def shard_digest(self, epoch: int, shard: int) -> str:
        """The checksum of one adjacency shard (every graph's rows and packed negatives of its steps of one
        epoch) as stored: :func:`digest` of the rows [s, T, R] then the negatives [s, T, P]."""
        s = self.adjacency_steps(shard)
        sel = slice(s.start, s.stop)
        return digest(self.root[ADJ_ROWS][epoch, sel], self.root[ADJ_NEGATIVES][epoch, sel])


@dataclass
class StagingStore(StoreArrays):
    """The store being written, beside the final one: created by ``prepare_precompute``, filled by
    the chunk tasks (whole shards each), sealed with its manifest by ``publish_precompute``."""

    path: Path
    root: zarr.Group

    @classmethod
    def create(cls, path: Path, key: str) -> StagingStore:
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update({"format": FORMAT + ".partial", "key": key})
        return cls(Path(path), root)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> StagingStore:
        return cls(Path(path), zarr.open_group(str(path), mode=mode))

    # --- prepare: the arrays computed once, and every empty array -------------------------
    def write_perturbations(self, indptr: np.ndarray, genes: np.ndarray, types: np.ndarray) -> None:
        pg = self.root.create_group(PERTURBATION)
        put_array(pg, "indptr", indptr, IDS_CODEC)
        put_array(pg, "genes", genes, IDS_CODEC)
        put_array(pg, "types", types, IDS_CODEC)

    def create_masks(self, base: np.ndarray, flip_ptr: np.ndarray, flip_genes: np.ndarray, n: int, n_genes: int,
                     chunk_samples: int) -> None:
        """The node masks (base, flips, empty dense rows) and the (empty) edge-mask group."""
        ng = self.root.create_group(NODE_MASK)
        put_array(ng, "base", base, IDS_CODEC)
        put_array(ng, "indptr", flip_ptr, IDS_CODEC)
        put_array(ng, "genes", flip_genes, IDS_CODEC)
        create_rows(ng, "dense", n, n_genes, np.uint8, chunk_samples, MASK_CODEC)
        self.root.create_group(EDGE_MASK)

    def create_edge_mask(self, edge_type: str, n: int, n_chunks: int, chunk_samples: int, cap: int, nnz: int,
                         orientation: str, dense: bool) -> None:
        """The chunked CSR of one edge type's removed ids (``cap`` values per chunk), dense rows if asked."""
        g = create_chunked_csr(self.root[EDGE_MASK], edge_type, n_chunks, chunk_samples, cap)
        g.attrs.update({"nnz": nnz, "orientation": orientation})
        if dense:
            create_rows(g, "dense", n, nnz, np.uint8, chunk_samples, MASK_CODEC)

    def create_khop(self) -> None:
        self.root.create_group(KHOP_GENES)
        self.root.create_group(KHOP)

    def write_khop_mode(self, mode: str, gene_bits: dict[int, np.ndarray], n: int, width: int,
                        chunk_samples: int) -> None:
        """One mode's per-gene k-hop sets and its empty per-sample arrays (``width`` bytes a row)."""
        kgm, sgm = self.root[KHOP_GENES].create_group(mode), self.root[KHOP].create_group(mode)
        for k, b in gene_bits.items():
            put_array(kgm, f"k{k}", b, BITS_CODEC)
            create_rows(sgm, f"k{k}", n, width, np.uint8, chunk_samples, BITS_CODEC)

    def create_adjacency(self, valid: np.ndarray, graphs: list[str], epochs: int, steps: int, rows: int,
                         negatives: int) -> None:
        """The empty rows [E, S, T, R] (:func:`rows_dtype`; -1: not written) and packed negatives uint8
        [E, S, T, P] (0: not written, which unpacks to pads) of the ``T`` graphs, for ``len(valid)`` genes;
        the graphs' order, the packing (:class:`~pipeline.precompute.adjacency.NegativePacking`) and the
        steps per shard on the adjacency group's attributes.

        Every graph's step is in one array, so a step of all graphs is one contiguous range of a
        file (a reader maps a shard at once and takes a step as one view). Neither array is
        compressed: uniformly drawn gene ids packed in just enough bits leave little to find
        (measured: lz4 saves 4%, zstd-1 7%), so a read is a plain copy or a mapping. The negatives'
        shards hold whole steps (:func:`adjacency_layout` of the ``T x P`` bytes of a step); the rows
        are chunked by the same steps (one file per shard).
        """
        ag = self.root.create_group(ADJACENCY)
        put_array(ag, "valid", valid, IDS_CODEC)
        packing = NegativePacking.for_genes(len(valid), negatives)
        p, t = packing.step_bytes(rows), len(graphs)
        inner, shard = adjacency_layout(steps, t * (p or rows * 4))
        ag.create_array("rows", shape=(epochs, steps, t, rows), dtype=rows_dtype(len(valid)),
                        chunks=(1, shard, max(t, 1), max(rows, 1)), compressors=None, fill_value=-1)
        ag.create_array("negatives", shape=(epochs, steps, t, p), dtype=np.uint8,
                        chunks=(1, inner, max(t, 1), max(p, 1)), shards=(1, shard, max(t, 1), max(p, 1)),
                        compressors=None, fill_value=0)
        ag.attrs.update({"graphs": list(graphs), "steps_per_shard": shard, NEGATIVE_PACKING: packing.to_dict()})

    # --- tasks: the arrays a chunk task writes ---------------------------------------------
    def array(self, name: str) -> zarr.Array:
        """The array named by :data:`NODE_MASK_DENSE`, :func:`khop_path` or :func:`edge_mask_dense_path`."""
        return self.root[name]

    def group(self, name: str) -> zarr.Group:
        """The chunked CSR named by :func:`edge_mask_path`."""
        return self.root[name]

    def adjacency_arrays(self) -> tuple[zarr.Array, zarr.Array]:
        """(rows [E, S, T, R], packed negatives uint8 [E, S, T, P]), for writing whole shards."""
        return self.root[ADJ_ROWS], self.root[ADJ_NEGATIVES]

    # --- publish -----------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Mark the store complete: its format, version and manifest (written last)."""
        self.root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest})


@dataclass
class PrecomputedStore(PublishedStore, StoreArrays):
    """A published precomputed store, opened read-only (the readers of :class:`StoreArrays`).

    >>> s = open_precomputed("data/processed/sample/precomputed.zarr")   # doctest: +SKIP
    >>> s.node_mask_dense(np.arange(64)).shape                           # doctest: +SKIP
    (64, 6607)
    """

    #: one :class:`~pipeline.core.chunkio.DirectArray` per array read, kept with this object (its decoded-chunk
    #: cache serves the next reads; zarr's fixed per-call cost dominates a chunk's read)
    _readers: dict[str, DirectArray] = field(default_factory=dict, init=False, repr=False, compare=False)

    #: (steps per shard, stored steps, epochs) of the adjacency arrays, read once (a zarr metadata read: ~1 ms)
    _adj_meta: tuple[int, int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def _adjacency_meta(self) -> tuple[int, int, int]:
        if self._adj_meta is None:
            self._adj_meta = super()._adjacency_meta()
        return self._adj_meta

    def _reader(self, name: str) -> DirectArray:
        r = self._readers.get(name)
        if r is None:
            r = self._readers[name] = DirectArray.of(self.root[name])
        return r

    def _read(self, name: str, *sel: int | slice) -> np.ndarray:
        return self._reader(name).read(*sel)

    @property
    def adjacency_read_steps(self) -> int:
        """Adjacency steps per read unit of :meth:`adjacency_unit` (a shard); 0 without adjacency rows."""
        return self._adjacency_meta()[0] if ADJACENCY in self.root else 0

    def adjacency_unit(self, epoch: int, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """Read unit ``unit`` (the steps of shard ``unit``) of every graph and epoch ``epoch``: (rows
        [U, T, R], packed negatives uint8 [U, T, P]) as stored, mapped from the store's files without
        a copy where they can be (a private copy-on-write mapping per call; a plain read otherwise).
        A step of every graph is then one view of each."""
        steps = self.adjacency_steps(unit)
        sel = slice(steps.start, steps.stop)
        rows_r, neg_r = self._reader(ADJ_ROWS), self._reader(ADJ_NEGATIVES)
        rows = rows_r.mapped(epoch, unit, 0, 0)
        rows = rows[0, :len(steps), :rows_r.shape[2], :rows_r.shape[3]] if rows is not None else rows_r.read(epoch, sel)
        inner = neg_r.chunks[1]
        first = steps.start // inner
        view = neg_r.mapped(epoch, first, 0, 0, count=-(-len(steps) // inner), axis=1)
        if view is None:  # compressed, never written, or not stored back to back
            return rows, neg_r.read(epoch, sel)
        return rows, view[0, :len(steps), :neg_r.shape[2], :neg_r.shape[3]]  # chunks: (1, u, max(T, 1), max(P, 1))

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

    def removed_edges(self, edge_type: str, chunk: int, graph: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Removed edge ids of the samples of one chunk: (indptr [count+1], ids int32), ascending per sample.

        As stored (one orientation of an undirected type) without ``graph``; with ``graph``
        (the GraphStore it was computed from), every removed id, both orientations.
        """
        first = chunk * self.chunk_samples
        count = min(self.chunk_samples, self.n_samples - first)
        ptr, ids = self.chunk_edges(edge_type, chunk, count)
        if graph is None or self.edge_orientation(edge_type) == "both":
            return ptr, ids
        from pipeline.precompute.masks import both_orientations
        return both_orientations(ptr, ids, graph.mirror(edge_type))

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


def open_precomputed(path: str | Path, graph: Any = None, cache: ChunkCache | None = None) -> PrecomputedStore:
    """Open a published store; with ``graph`` (a GraphStore), check it was computed from that graph.

    ``path`` may be a URL (``s3://...``; files cached in ``cache`` when given: :mod:`pipeline.core.remote`)."""
    path = location(path, "precomputed store")
    root = open_versioned_group(path, FORMAT, FORMAT_VERSION, "precomputed store", "recompute", cache=cache)
    store = PrecomputedStore(path, root)
    if graph is not None:
        store.check_against(graph.fingerprint, {t: graph.edge_attrs(t)["fingerprint"] for t in graph.edge_types})
    return store
