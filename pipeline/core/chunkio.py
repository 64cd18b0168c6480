"""Reading the Zarr v3 arrays this project writes chunk file by chunk file, without zarr's per-call machinery.

A zarr read (``arr[a:b]``) costs a fixed overhead of Python and asyncio work whatever its size;
a stream that reads a few thousand values per call spends most of its time there.
:class:`DirectArray` wraps an opened :class:`zarr.Array` and, where it can, reads the chunk
files itself: one positioned read per (inner) chunk, decoded with numcodecs, decoded chunks
kept in a small least-recently-used cache (consecutive reads often share a chunk at their
boundary). Where it cannot, every read goes through zarr, so a read always returns what
``arr[sel]`` returns.

The direct path needs a store whose files are local (:class:`zarr.storage.LocalStore`, or the
chunk cache of a remote store: ``CachedStore`` of :mod:`pipeline.core.remote`) and an array
of zarr format 3 with a regular chunk grid, the ``default`` chunk key encoding (separator
``/`` or ``.``), a bool or numeric dtype, no storage transformers, and codecs

- ``bytes`` (little endian; any endianness for 1-byte types), optionally followed by one of
  ``blosc`` (any cname, shuffle) or ``zstd``; or
- ``sharding_indexed`` whose inner codecs are as above, whose index codecs are ``bytes``
  (little endian) + ``crc32c`` (checked whenever an index is read from its file), index at the ``end`` or ``start``.

Anything else (transpose, filters, other compressors, big endian, zarr v2, a memory or fsspec
store) reads through zarr. A chunk file that is missing, or an empty inner chunk of a shard,
reads as the fill value. A damaged file (truncated, an index whose checksum differs, a chunk
that does not decompress to its size) is a :class:`~pipeline.core.errors.StoreError` naming it.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     arr = zarr.create_array(tmp, shape=(10,), dtype="int32", chunks=(4,), fill_value=-1)
...     arr[:6] = np.arange(6)
...     d = DirectArray.of(arr)
...     print(d.direct, d.read(slice(3, 9)).tolist(), d.read(-5))
True [3, 4, 5, -1, -1, -1] 5
>>> DirectArray.of(zarr.create_array(zarr.storage.MemoryStore(), shape=(3,), dtype="uint8")).direct
False
"""

from __future__ import annotations

import itertools
import math
import mmap
import operator
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc, zstd

from pipeline.core.errors import StoreError

#: The offset and length of an empty inner chunk in a shard index.
_EMPTY = 2**64 - 1
_BLOSC_HEADER = 16
_COMPRESSORS = ("blosc", "zstd")


class _Unsupported(Exception):
    """The array's metadata asks for something the direct path does not read: zarr reads it."""


@dataclass(frozen=True)
class _Layout:
    """How one array's chunks are stored: what the direct path needs from its ``zarr.json``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fill: np.ndarray  # 0-d, of dtype
    outer: tuple[int, ...]  # the chunk grid's chunk shape: one file each (a shard when sharded)
    inner: tuple[int, ...]  # the shape of one decoded chunk (== outer when not sharded)
    compressor: str  # "" (bytes only), "blosc" or "zstd"
    index_at: str  # "" (not sharded), "end" or "start"
    prefix: str  # the array's path in its store, with a trailing "/" ("" at the root)
    separator: str

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(o // i for o, i in zip(self.outer, self.inner, strict=True))

    @property
    def cell_bytes(self) -> int:
        return math.prod(self.inner) * self.dtype.itemsize

    @property
    def index_bytes(self) -> int:
        return 16 * math.prod(self.per_shard) + 4  # (offset, nbytes) u64 per inner chunk, then crc32c

    def key(self, coords: tuple[int, ...]) -> str:
        """The store key of the file of the chunk-grid cell ``coords``."""
        return self.prefix + "c" + "".join(f"{self.separator}{c}" for c in coords)


@dataclass(frozen=True)
class _Source:
    """Where an array's files are: ``locate(key)`` is a local path (possibly absent) or None (no such file).

    ``cached``: the files are copies in a remote store's chunk cache, which another process may evict
    between ``locate`` and opening (then located again, which fetches it anew); ``label`` names the store.
    """

    locate: Callable[[str], Path | None]
    label: str
    cached: bool

    def where(self, key: str, path: Path) -> str:
        return f"{self.label}/{key} (cached copy {path})" if self.cached else str(path)


def _bytes_codec(codec: dict[str, Any], itemsize: int) -> None:
    if codec.get("name") != "bytes":
        raise _Unsupported(codec.get("name"))
    endian = (codec.get("configuration") or {}).get("endian")
    if itemsize > 1 and endian != "little":
        raise _Unsupported(f"endian {endian}")


def _compressor(codecs: list[dict[str, Any]], itemsize: int) -> str:
    """The compressor of a plain chain (``bytes`` + at most one of blosc / zstd); "" for none."""
    if not 1 <= len(codecs) <= 2:
        raise _Unsupported(f"{len(codecs)} codecs")
    _bytes_codec(codecs[0], itemsize)
    if len(codecs) == 1:
        return ""
    name = codecs[1].get("name")
    if name not in _COMPRESSORS:
        raise _Unsupported(name)
    return str(name)


def _layout(arr: zarr.Array) -> _Layout:
    """The layout of ``arr``; :class:`_Unsupported` for what only zarr reads."""
    meta = arr.metadata
    if getattr(meta, "zarr_format", None) != 3 or sys.byteorder != "little":
        raise _Unsupported("zarr format 2 or a big-endian machine")
    doc = meta.to_dict()
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf" or doc.get("storage_transformers"):
        raise _Unsupported(f"dtype {dtype} or storage transformers")
    grid, keys = doc["chunk_grid"], doc["chunk_key_encoding"]
    if grid["name"] != "regular" or keys["name"] != "default":
        raise _Unsupported("chunk grid or key encoding")
    separator = (keys.get("configuration") or {}).get("separator", "/")
    if separator not in ("/", "."):
        raise _Unsupported(f"separator {separator}")
    outer = tuple(int(c) for c in grid["configuration"]["chunk_shape"])
    codecs = list(doc["codecs"])
    inner, index_at = outer, ""
    if codecs and codecs[0].get("name") == "sharding_indexed":
        if len(codecs) != 1:
            raise _Unsupported("codecs after sharding")
        cfg = codecs[0]["configuration"]
        inner, index_at = tuple(int(c) for c in cfg["chunk_shape"]), cfg.get("index_location", "end")
        index_codecs = list(cfg["index_codecs"])
        if index_at not in ("end", "start") or len(inner) != len(outer) or any(
                i < 1 or o % i for o, i in zip(outer, inner, strict=True)) \
                or len(index_codecs) != 2 or index_codecs[1].get("name") != "crc32c":
            raise _Unsupported("shard layout or index codecs")
        _bytes_codec(index_codecs[0], 8)
        codecs = list(cfg["codecs"])
    path = arr.store_path.path
    return _Layout(shape=tuple(arr.shape), dtype=dtype, fill=np.asarray(meta.fill_value, dtype=dtype),
                   outer=outer, inner=inner, compressor=_compressor(codecs, dtype.itemsize), index_at=index_at,
                   prefix=f"{path}/" if path else "", separator=separator)


def _source(store: Any) -> _Source:
    """The files of ``store``; :class:`_Unsupported` for a store whose files are not local."""
    from zarr.storage import LocalStore

    from pipeline.core.remote import _cached_store_class

    if isinstance(store, LocalStore):
        root = Path(store.root)
        return _Source(locate=root.joinpath, label=str(root), cached=False)
    if isinstance(store, _cached_store_class()):
        return _Source(locate=store.local_file, label=store.url, cached=True)
    raise _Unsupported(type(store).__name__)


def _box(sel: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[list[tuple[int, int]], list[bool]]:
    """([start, stop) per axis, whether each axis is kept) of a selection of ints and step-1 slices."""
    if len(sel) > len(shape):
        raise IndexError(f"too many indices for an array of shape {shape}: {sel!r}")
    box, keep = [], []
    for axis, n in enumerate(shape):
        s = sel[axis] if axis < len(sel) else slice(None)
        if isinstance(s, slice):
            if s.step not in (None, 1):
                raise IndexError(f"only step-1 slices are read, got {s!r}")
            start, stop, _ = s.indices(n)
            box.append((start, max(start, stop)))
            keep.append(True)
            continue
        if isinstance(s, bool | np.bool_):
            raise IndexError(f"boolean index {s!r}: only ints and step-1 slices are read")
        i = operator.index(s)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
        i %= n
        box.append((i, i + 1))
        keep.append(False)
    return box, keep


def _open(path: Path) -> BinaryIO:
    """``path`` opened for unbuffered positioned reads (the one place chunk files are opened)."""
    return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by _Files


@dataclass(frozen=True)
class _File:
    """One open chunk (or shard) file: its handle, size in bytes, local path and store key."""

    fh: BinaryIO
    size: int
    path: Path
    key: str

    def pread(self, offset: int, nbytes: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(nbytes)


class _Files:
    """The chunk files one read opens, each opened once and all closed at its end (``with``)."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self._open: dict[str, _File | None] = {}

    def __enter__(self) -> _Files:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._open.values():
            if f is not None:
                f.fh.close()

    def get(self, key: str) -> _File | None:
        """The file of ``key``, or None when there is none (it reads as the fill value)."""
        if key not in self._open:
            self._open[key] = self._first_open(key)
        return self._open[key]

    def _first_open(self, key: str) -> _File | None:
        path = self.source.locate(key)
        if path is None:
            return None
        try:
            fh = _open(path)
        except FileNotFoundError:
            if not self.source.cached:
                return None  # never written: all fill
            path = self.source.locate(key)  # evicted by another process meanwhile: fetched again
            if path is None:
                return None
            fh = _open(path)
        return _File(fh, os.fstat(fh.fileno()).st_size, path, key)


class DirectArray:
    """A read-only view of a zarr v3 array that reads its chunk files directly (see the module docstring).

    ``read(*sel)`` equals ``arr[sel]`` for ints and step-1 slices on the leading axes. ``direct``
    says whether the chunk files are read here (else zarr reads them). Decoded chunks are kept in
    a least-recently-used cache of at most ``cache_bytes`` (at least the last chunk is kept),
    shared by the threads that read: a chunk read whole by one call goes straight into its output
    and is not kept (nothing else is expected to want it), a chunk read in part is kept, so that
    the next read of its other part decodes nothing. Two threads missing the same chunk at the
    same moment may both decode it (with the same result).
    """

    def __init__(self, arr: zarr.Array, layout: _Layout | None, source: _Source | None, cache_bytes: int) -> None:
        self._arr, self._layout, self._source = arr, layout, source
        self.cache_bytes = int(cache_bytes)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], np.ndarray] = OrderedDict()
        self._held = 0
        self._kept = _Files(source) if source is not None else None  # the files :meth:`mapped` keeps open

    @classmethod
    def of(cls, arr: zarr.Array, cache_bytes: int = 32 << 20) -> DirectArray:
        """``arr`` read directly where its store and codecs allow it, else through zarr."""
        try:
            layout, source = _layout(arr), _source(arr.store)
        except (_Unsupported, KeyError, TypeError, ValueError):
            layout = source = None
        return cls(arr, layout, source, cache_bytes)

    def __getstate__(self) -> dict[str, Any]:  # a copy in another process starts with an empty cache
        return {"arr": self._arr, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = DirectArray.of(state["arr"], state["cache_bytes"])
        self.__init__(other._arr, other._layout, other._source, other.cache_bytes)  # type: ignore[misc]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._arr.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._arr.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        """The shape of one (inner, when sharded) chunk: the unit reads decode."""
        return tuple(self._layout.inner) if self._layout is not None else tuple(self._arr.chunks)

    @property
    def direct(self) -> bool:
        """Whether reads go to the chunk files here (False: through zarr)."""
        return self._layout is not None and self._source is not None

    def read(self, *sel: int | slice) -> np.ndarray:
        """``arr[sel]`` (ints and step-1 slices; missing trailing axes are whole), a new array."""
        if not self.direct:
            return np.asarray(self._arr[sel if sel else ...])
        lay, source = self._layout, self._source
        assert lay is not None and source is not None
        box, keep = _box(sel, lay.shape)
        out = np.empty([b - a for a, b in box], lay.dtype)
        if out.size:
            with _Files(source) as files:
                for cell in self._cells(box):
                    self._read_cell(files, cell, box, out)
        return out.reshape([n for n, k in zip(out.shape, keep, strict=True) if k])

    def mapped(self, *cell: int, count: int = 1, axis: int = 0) -> np.ndarray | None:
        """The (inner) chunk ``cell`` of an uncompressed array, and the ``count - 1`` chunks after it along
        ``axis``, mapped from their file without a copy: a writable view (the chunks' full shapes,
        joined along ``axis``) in a private copy-on-write mapping made for this call (a write to it
        changes neither the file nor what another call returns). None where there is nothing to map
        that way: compressed or zarr-read arrays, a chunk never written, chunks in different files or
        not stored back to back, or an ``axis`` after one whose chunks are longer than 1 (the join
        would not be contiguous); :meth:`read` those. The files stay open (one descriptor each)."""
        lay, source = self._layout, self._source
        if lay is None or source is None or lay.compressor or len(cell) != len(lay.inner) or count < 1 \
                or any(n != 1 for n in lay.inner[:axis]):
            return None
        first = tuple(int(c) for c in cell)
        if (first[axis] + count - 1) * lay.inner[axis] >= lay.shape[axis]:
            return None
        run = self._stored_run(first, count, axis)
        return None if run is None else self._map(*run, count, axis)

    def _stored_run(self, first: tuple[int, ...], count: int, axis: int) -> tuple[_File, int] | None:
        """(file, offset of the first) of ``mapped``'s chunks when they are all stored, back to back in
        one file; None otherwise (an unsharded array holds one chunk a file)."""
        lay = self._layout
        assert lay is not None
        if not lay.index_at:
            where = self._locate(self._kept, first) if count == 1 else None
            if where is None:
                return None
            f, offset, nbytes = where
            if nbytes != lay.cell_bytes:
                raise self._damage(f, f"a chunk holds {nbytes} bytes, expected {lay.cell_bytes}: truncated")
            return f, offset
        per = lay.per_shard
        if first[axis] // per[axis] != (first[axis] + count - 1) // per[axis]:
            return None  # across two shard files
        shard = tuple(c // p for c, p in zip(first, per, strict=True))
        f = self._kept.get(lay.key(shard))
        if f is None:
            return None
        at = [c % p for c, p in zip(first, per, strict=True)]
        sel = tuple(slice(a, a + count) if i == axis else a for i, a in enumerate(at))
        spans = self._index(f, shard)[sel]  # [count, 2]: (offset, nbytes) of each chunk
        offsets, sizes = spans[:, 0], spans[:, 1]
        if (sizes == _EMPTY).any():
            return None
        if (sizes != lay.cell_bytes).any():
            raise self._damage(f, f"a chunk holds {int(sizes[sizes != lay.cell_bytes][0])} bytes, expected "
                                  f"{lay.cell_bytes}: truncated")
        if int(offsets[-1]) + lay.cell_bytes > f.size:
            raise self._damage(f, f"inner chunk at bytes {int(offsets[-1])}..{int(offsets[-1]) + lay.cell_bytes} "
                                  f"runs past the end of the file ({f.size} bytes): truncated")
        back_to_back = (offsets == offsets[0] + np.arange(count, dtype=np.uint64) * np.uint64(lay.cell_bytes)).all()
        return (f, int(offsets[0])) if back_to_back else None

    def _map(self, f: _File, offset: int, count: int, axis: int) -> np.ndarray:
        """``count`` chunks stored back to back from ``offset`` of ``f``, mapped (see :meth:`mapped`)."""
        lay = self._layout
        assert lay is not None
        size = count * lay.cell_bytes
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mm = mmap.mmap(f.fh.fileno(), offset + size - start, access=mmap.ACCESS_COPY, offset=start)
        shape = lay.inner[:axis] + (count * lay.inner[axis],) + lay.inner[axis + 1:]
        return np.frombuffer(mm, lay.dtype, math.prod(shape), offset - start).reshape(shape)

    def _cells(self, box: list[tuple[int, int]]) -> Iterator[tuple[int, ...]]:
        """The (inner) chunk-grid cells that intersect ``box``, in C order."""
        assert self._layout is not None
        return itertools.product(*(range(a // n, (b - 1) // n + 1) for (a, b), n in zip(box, self._layout.inner,
                                                                                         strict=True)))

    def _read_cell(self, files: _Files, cell: tuple[int, ...], box: list[tuple[int, int]], out: np.ndarray) -> None:
        """Copy the part of chunk ``cell`` inside ``box`` into its place in ``out``."""
        lay = self._layout
        assert lay is not None
        origin = [c * n for c, n in zip(cell, lay.inner, strict=True)]
        src = tuple(slice(max(a, o) - o, min(b, o + n) - o) for (a, b), o, n in zip(box, origin, lay.inner,
                                                                                     strict=True))
        dst = out[tuple(slice(s.start + o - a, s.stop + o - a) for s, o, (a, _) in zip(src, origin, box,
                                                                                     strict=True))]
        key = ("c", cell)
        hit = self._cached(key)
        if hit is not None:
            dst[...] = hit[src]
            return
        whole = dst.shape == lay.inner and dst.flags.c_contiguous
        chunk = self._decode(files, cell, dst if whole else None)
        if chunk is None:
            dst[...] = lay.fill
        elif not whole:
            dst[...] = chunk[src]
            self._keep(key, chunk)

    def _cached(self, key: tuple[str, tuple[int, ...]]) -> np.ndarray | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _keep(self, key: tuple[str, tuple[int, ...]], value: np.ndarray) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = value
            self._held += value.nbytes
            while self._held > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._held -= old.nbytes

    def _locate(self, files: _Files, cell: tuple[int, ...]) -> tuple[_File, int, int] | None:
        """(file, offset, nbytes) of the stored bytes of chunk ``cell``; None: not stored (the fill value)."""
        lay = self._layout
        assert lay is not None
        if not lay.index_at:
            f = files.get(lay.key(cell))
            return None if f is None else (f, 0, f.size)
        shard = tuple(c // p for c, p in zip(cell, lay.per_shard, strict=True))
        f = files.get(lay.key(shard))
        if f is None:
            return None
        index = self._index(f, shard)
        offset, nbytes = (int(v) for v in index[tuple(c % p for c, p in zip(cell, lay.per_shard, strict=True))])
        if offset == _EMPTY and nbytes == _EMPTY:
            return None
        if offset + nbytes > f.size:
            raise self._damage(f, f"inner chunk {cell} at bytes {offset}..{offset + nbytes} runs past the end of "
                                  f"the file ({f.size} bytes): truncated")
        return f, offset, nbytes

    def _index(self, f: _File, shard: tuple[int, ...]) -> np.ndarray:
        """The (offset, nbytes) table of a shard, its crc32c checked (kept in the cache with the chunks)."""
        lay = self._layout
        assert lay is not None
        key = ("i", shard)
        hit = self._cached(key)
        if hit is not None:
            return hit
        n = lay.index_bytes
        if f.size < n:
            raise self._damage(f, f"{f.size} bytes, shorter than its shard index ({n} bytes): truncated")
        raw = f.pread(f.size - n if lay.index_at == "end" else 0, n)
        if len(raw) != n:
            raise self._damage(f, f"read {len(raw)} of the {n} bytes of its shard index: truncated")
        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise self._damage(f, "its shard index does not match its crc32c checksum")
        index = np.frombuffer(raw, "<u8", count=2 * math.prod(lay.per_shard)).reshape(*lay.per_shard, 2)
        self._keep(key, index)
        return index

    def _decode(self, files: _Files, cell: tuple[int, ...], into: np.ndarray | None) -> np.ndarray | None:
        """Chunk ``cell`` decoded (into ``into`` when given: C-contiguous, of the chunk's shape); None: fill."""
        lay = self._layout
        assert lay is not None
        where = self._locate(files, cell)
        if where is None:
            return None
        f, offset, nbytes = where
        want = lay.cell_bytes
        if not lay.compressor:
            if nbytes != want:
                raise self._damage(f, f"chunk {cell} holds {nbytes} bytes, expected {want}: truncated")
            if into is None:
                return np.frombuffer(self._exact(f, offset, nbytes), lay.dtype).reshape(lay.inner)
            f.fh.seek(offset)
            got = f.fh.readinto(memoryview(into).cast("B"))
            if got != want:
                raise self._damage(f, f"read {got} of the {want} bytes of chunk {cell}: truncated")
            return into
        data = self._exact(f, offset, nbytes)
        if lay.compressor == "blosc":
            self._check_blosc(f, data, cell)
        chunk = into if into is not None else np.empty(lay.inner, lay.dtype)
        try:
            if lay.compressor == "blosc":
                blosc.decompress(data, chunk)
            else:
                raw = zstd.decompress(data)
                if len(raw) != want:
                    raise self._damage(f, f"chunk {cell} decompresses to {len(raw)} bytes, expected {want}")
                chunk[...] = np.frombuffer(raw, lay.dtype).reshape(lay.inner)
        except (RuntimeError, ValueError) as e:
            raise self._damage(f, f"chunk {cell} does not decompress ({lay.compressor}: {e})") from None
        return chunk

    def _check_blosc(self, f: _File, data: bytes, cell: tuple[int, ...]) -> None:
        """A blosc frame's header sizes (nbytes at bytes 4..8, cbytes at 12..16) checked against the frame and
        the chunk: blosc itself accepts a larger destination than the frame fills."""
        assert self._layout is not None
        want = self._layout.cell_bytes
        if len(data) < _BLOSC_HEADER or int.from_bytes(data[12:16], "little") != len(data):
            raise self._damage(f, f"chunk {cell}: a blosc frame of {len(data)} bytes whose header says otherwise: "
                                  "truncated or damaged")
        size = int.from_bytes(data[4:8], "little")
        if size != want:
            raise self._damage(f, f"chunk {cell} decompresses to {size} bytes, expected {want}")

    def _exact(self, f: _File, offset: int, nbytes: int) -> bytes:
        data = f.pread(offset, nbytes)
        if len(data) != nbytes:
            raise self._damage(f, f"read {len(data)} of the {nbytes} bytes at offset {offset}: truncated")
        return data

    def _damage(self, f: _File, what: str) -> StoreError:
        assert self._source is not None
        return StoreError(f"{self._source.where(f.key, f.path)}: {what}; run python -m pipeline.verify "
                          f"{self._source.label}")
