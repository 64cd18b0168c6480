"""Per-sample training records in LMDB, in a documented binary layout (no pickle).

A record holds, for one sample, a fixed list of named variable-length 1-D arrays
("sections"): e.g. ``genes`` int32, ``types`` uint8, ``node_off`` int32, one
``edges:<type>`` int32 per edge type, ``khop1`` uint8 (bit-packed bytes). The list of
sections and their dtypes (the *schema*) is the same for every record of a store and is
stored once. A streaming loader reads either this store or a Zarr store.

Layout (version 1):

- One LMDB environment directory ``records.lmdb/`` (``subdir=True``) with two named
  databases, ``samples`` and ``meta`` (``max_dbs=2``).
- ``samples``: key = sample id as 8-byte big-endian unsigned (so cursor order = id
  order); value = header + payload:

  - header: magic ``b"YPR1"`` (4 bytes), version uint16 LE = 1, n_sections uint16 LE,
    then ``n_sections`` uint32 LE element counts (one per schema section, in schema
    order), then zero padding to a multiple of 8 bytes;
  - payload: each section's elements little-endian in schema order, each section
    starting at a multiple of 8 bytes from the record start (zero padding between
    sections and after the last one). A value's length is therefore
    ``pad8(8 + 4 * n_sections) + sum(pad8(count_i * itemsize_i))``, a multiple of 8.

- ``meta``:

  - key ``b"schema"`` -> JSON ``{"format": "yeast-pipeline.records", "version": 1,
    "sections": [[name, dtype_str], ...]}`` (numpy dtype strings, little-endian:
    ``"<i4"``, ``"|u1"``, ``"<i8"``, ``"<f4"``, ...);
  - keys ``b"chunk:%08d"`` -> JSON ``{"first": int, "count": int, "sha256": hex}``, one
    per committed chunk of samples: its records are ids ``first .. first+count-1``, and
    ``sha256`` is taken over the concatenation of their values in id order;
  - key ``b"manifest"`` -> JSON (free-form dict given by the writer: fingerprints,
    parameters, ...), written LAST, by ``finish()``. A store without it is incomplete
    (its writer did not finish or was killed) and :func:`open_records` refuses it.

A chunk's records and its ``chunk:`` marker are committed in ONE transaction, so a
killed writer (kill -9) loses at most the chunk in flight; a new :class:`RecordWriter` on
the same path sees exactly the committed chunks in :meth:`RecordWriter.done_chunks`.
Publishing the directory atomically (``pipeline.stores.atomic``) is the caller's job.

Readers open the environment ``readonly=True, lock=False, readahead=False``: safe only
on a finished store that no writer is writing. A :class:`RecordReader` opens it lazily in
the process that uses it, reopens it after ``fork`` and drops it when pickled (``spawn``).
py-lmdb opens an environment at most once per process, so the readers of one store in
one process share one environment (and a writer cannot open a store that a reader in the
same process still holds: close the readers first).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from pipeline.errors import StoreError

FORMAT = "yeast-pipeline.records"
FORMAT_VERSION = 1
MAGIC = b"YPR1"
RECORD_VERSION = 1
SAMPLES_DB = b"samples"
META_DB = b"meta"
SCHEMA_KEY = b"schema"
MANIFEST_KEY = b"manifest"
CHUNK_PREFIX = b"chunk:"
#: Initial map size of a writer (grown by doubling on MapFullError).
DEFAULT_MAP_SIZE = 1 << 30
_MAX_MAP_SIZE = 1 << 46
_MAGIC_U32 = int.from_bytes(MAGIC, "little")
#: Mean run length (elements) above which ragged copies go run by run instead of by index.
_RUN_LEN = 64
_HEAD = struct.Struct("<4sHH")


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def header_size(n_sections: int) -> int:
    """Bytes of a record header with ``n_sections`` counts (a multiple of 8)."""
    return _pad8(8 + 4 * n_sections)


def sample_key(sample_id: int) -> bytes:
    return int(sample_id).to_bytes(8, "big")


def chunk_key(chunk: int) -> bytes:
    return b"chunk:%08d" % chunk


def _keys(ids: np.ndarray) -> list[bytes]:
    kb = np.ascontiguousarray(ids, dtype=">u8").tobytes()
    return [kb[i:i + 8] for i in range(0, len(kb), 8)]


def _normalise_dtype(name: str, dt: Any) -> np.dtype:
    d = np.dtype(dt)
    if d.kind not in "biuf" or d.itemsize not in (1, 2, 4, 8) or d.fields is not None or d.shape:
        raise ValueError(f"section {name!r}: dtype {d} not supported (bool, int, uint or float of 1-8 bytes)")
    return d.newbyteorder("<") if d.itemsize > 1 else d


@dataclass(frozen=True)
class RecordSchema:
    """Named sections and their dtypes (stored little-endian), the same for every record of a store."""

    sections: tuple[tuple[str, np.dtype], ...]

    def __post_init__(self) -> None:
        secs = tuple((str(n), _normalise_dtype(str(n), d)) for n, d in self.sections)
        names = [n for n, _ in secs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate section names in {names}")
        if len(secs) > 0xFFFF:
            raise ValueError(f"{len(secs)} sections; at most 65535")
        object.__setattr__(self, "sections", secs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.sections)

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                           "sections": [[n, d.str] for n, d in self.sections]}).encode()

    @classmethod
    def from_json(cls, b: bytes) -> RecordSchema:
        try:
            obj = json.loads(bytes(b))
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(f"record schema is not JSON: {e}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise StoreError(f"foreign record schema: expected format {FORMAT!r}, got {got!r}")
        if obj.get("version") != FORMAT_VERSION:
            raise StoreError(f"record schema version {obj.get('version')!r}, this code reads {FORMAT_VERSION}")
        try:
            return cls(tuple((str(n), np.dtype(d)) for n, d in obj["sections"]))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"bad record schema sections: {e}") from None


# ----------------------------------------------------------------------------- encode


def _as_section(name: str, values: Any, dt: np.dtype) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"section {name!r}: values must be 1-D, got shape {v.shape}")
    if v.dtype == dt:
        return v
    if np.can_cast(v.dtype, dt, "safe") or v.size == 0:
        return v.astype(dt)
    if v.dtype.kind in "biu" and dt.kind in "iu":
        info = np.iinfo(dt)
        if v.min() >= info.min and v.max() <= info.max:
            return v.astype(dt)
        raise ValueError(f"section {name!r}: values outside the range of {dt}")
    raise ValueError(f"section {name!r}: cannot store {v.dtype} values as {dt}")


def _ragged_copy(dst: np.ndarray, dst_start: np.ndarray, src: np.ndarray, src_start: np.ndarray,
                 counts: np.ndarray) -> None:
    """``dst[dst_start[i]:+counts[i]] = src[src_start[i]:+counts[i]]`` for every i.

    Short runs: one vectorised scatter (an index per element); long runs: one memcpy per
    run (a Python step per run, none per element: cheaper than an int64 index per element).
    """
    nnz = int(counts.sum())
    if nnz == 0:
        return
    if nnz <= _RUN_LEN * len(counts):
        excl = np.cumsum(counts) - counts  # run i covers [excl[i], excl[i] + counts[i]) of the packed runs
        j = np.arange(nnz, dtype=np.int64)
        if np.array_equal(src_start - src_start[0], excl):  # source runs back to back (CSR values)
            s0 = int(src_start[0])
            dst[np.repeat(dst_start - excl, counts) + j] = src[s0:s0 + nnz]
        elif np.array_equal(dst_start - dst_start[0], excl):  # destination runs back to back (CSR values)
            d0 = int(dst_start[0])
            dst[d0:d0 + nnz] = src[np.repeat(src_start - excl, counts) + j]
        else:
            dst[np.repeat(dst_start - excl, counts) + j] = src[np.repeat(src_start - excl, counts) + j]
        return
    for d, s, c in zip(dst_start.tolist(), src_start.tolist(), counts.tolist()):
        if c:
            dst[d:d + c] = src[s:s + c]


def _encode(schema: RecordSchema, columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
            scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode m records into one buffer: (uint8 buffer, record starts int64 [m], lengths int64 [m]).

    The records lie back to back in the buffer, in sample order. ``scratch`` (uint64), when
    large enough, is reused as the buffer (saves page faults on every chunk).
    """
    names = schema.names
    if set(columns) != set(names):
        raise ValueError(f"columns {sorted(columns)} differ from the schema's sections {list(names)}")
    n = len(names)
    H = header_size(n)
    ptrs, vals = [], []
    m = None
    for name, dt in schema.sections:
        indptr, values = columns[name]
        p = np.asarray(indptr, dtype=np.int64)
        if p.ndim != 1 or p.size == 0:
            raise ValueError(f"section {name!r}: indptr must be 1-D with m+1 entries")
        if m is None:
            m = p.size - 1
        elif p.size - 1 != m:
            raise ValueError(f"section {name!r}: {p.size - 1} samples, section {names[0]!r} has {m}")
        v = _as_section(name, values, dt)
        if m and (p[0] < 0 or p[-1] > v.size or np.any(p[1:] < p[:-1])):
            raise ValueError(f"section {name!r}: indptr not ascending within 0..{v.size}")
        ptrs.append(p)
        vals.append(v)
    m = m or 0
    counts = np.stack([p[1:] - p[:-1] for p in ptrs]) if n else np.zeros((0, m), np.int64)  # (n, m)
    if counts.size and counts.max() > 0xFFFFFFFF:
        raise ValueError("a section holds more than 2**32-1 elements in one record")
    isz = np.array([dt.itemsize for _, dt in schema.sections], dtype=np.int64)
    padded = (counts * isz[:, None] + 7) & ~7
    sec_off = H + np.cumsum(padded, axis=0) - padded  # (n, m): offset of each section in its record
    lengths = H + padded.sum(axis=0) if n else np.full(m, H, np.int64)
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    if scratch is not None and scratch.size >= total // 8:
        buf = scratch[:total // 8]
        buf.fill(0)
    else:
        buf = np.zeros(total // 8, dtype=np.uint64)  # 8-aligned; zero padding for free
    # headers, as uint32 words: magic, version | n << 16, counts..., zero padding
    hdr = np.zeros((m, H // 4), dtype="<u4")
    hdr[:, 0] = _MAGIC_U32
    hdr[:, 1] = RECORD_VERSION | (n << 16)
    hdr[:, 2:2 + n] = counts.T
    buf.view("<u4")[(starts // 4)[:, None] + np.arange(H // 4)] = hdr
    for s, (_, dt) in enumerate(schema.sections):
        p = ptrs[s]
        # element index of each record's section start (sections are 8-aligned, so itemsize-aligned)
        _ragged_copy(buf.view(dt), (starts + sec_off[s]) // dt.itemsize, vals[s], p[:-1], counts[s])
    return buf.view(np.uint8), starts, lengths


def encode_records(schema: RecordSchema, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> list[bytes]:
    """Encode m records from CSR columns: section name -> (indptr int64 [m+1], values).

    Sample ``i``'s section holds ``values[indptr[i]:indptr[i+1]]``. Values are cast to the
    section's dtype when that is lossless (integers are range-checked), else ValueError.
    """
    buf, starts, lengths = _encode(schema, columns)
    mv = memoryview(buf)
    return [mv[a:a + n].tobytes() for a, n in zip(starts.tolist(), lengths.tolist())]


# ----------------------------------------------------------------------------- decode


def _who(sample_id: int | None) -> str:
    return "record" if sample_id is None else f"sample {sample_id}"


def decode_record(schema: RecordSchema, buf: bytes | memoryview, *, sample_id: int | None = None
                  ) -> dict[str, np.ndarray]:
    """Decode one record into zero-copy, read-only ``np.frombuffer`` views of ``buf``.

    The views share ``buf``'s memory: a memoryview from an LMDB ``buffers=True``
    transaction is valid only inside that transaction. StoreError (naming
    ``sample_id``) on a wrong magic, version, section count or length.
    """
    nb = memoryview(buf).nbytes
    n = len(schema.sections)
    H = header_size(n)
    who = _who(sample_id)
    if nb < 8:
        raise StoreError(f"{who}: truncated record: expected a header of {H} bytes, got {nb} bytes")
    magic, version, ns = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        raise StoreError(f"{who}: expected magic {MAGIC!r}, got {magic!r}")
    if version != RECORD_VERSION:
        raise StoreError(f"{who}: expected record version {RECORD_VERSION}, got {version}")
    if ns != n:
        raise StoreError(f"{who}: expected {n} sections (the schema's), got {ns}")
    if nb < H:
        raise StoreError(f"{who}: truncated record: expected a header of {H} bytes, got {nb} bytes")
    counts = struct.unpack_from(f"<{n}I", buf, 8)
    need = H + sum(_pad8(c * dt.itemsize) for c, (_, dt) in zip(counts, schema.sections))
    if nb != need:
        what = "truncated record" if nb < need else "record too long"
        raise StoreError(f"{who}: {what}: its header says {need} bytes, got {nb} bytes")
    out = {}
    off = H
    for c, (name, dt) in zip(counts, schema.sections):
        out[name] = np.frombuffer(buf, dtype=dt, count=c, offset=off)
        off += _pad8(c * dt.itemsize)
    return out


def decode_batch(schema: RecordSchema, bufs: Sequence[bytes | memoryview], *,
                 sample_ids: Sequence[int] | np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode m records into CSR columns: section name -> (indptr int64 [m+1], values).

    The arrays are copies (safe to keep after an LMDB transaction ends). StoreError
    naming the sample (``sample_ids[i]``, else the batch position) on a bad record.
    """
    m = len(bufs)
    n = len(schema.sections)
    H = header_size(n)
    W = H // 4
    if m == 0:
        return {name: (np.zeros(1, np.int64), np.zeros(0, dt)) for name, dt in schema.sections}

    def bad(i: int) -> None:  # precise message from the scalar decoder
        sid = int(sample_ids[i]) if sample_ids is not None else None
        decode_record(schema, bufs[i], sample_id=sid)
        raise StoreError(f"{_who(sid)}: bad record")  # not reached

    lengths = np.fromiter((memoryview(b).nbytes for b in bufs), dtype=np.int64, count=m)
    short = np.flatnonzero((lengths < H) | (lengths % 8 != 0))
    if short.size:
        bad(int(short[0]))
    joined = b"".join(bufs)
    starts = np.cumsum(lengths) - lengths
    words = np.frombuffer(joined, dtype="<u4")
    hdr = words[(starts // 4)[:, None] + np.arange(W)]  # (m, W)
    ok = (hdr[:, 0] == _MAGIC_U32) & (hdr[:, 1] == (RECORD_VERSION | (n << 16)))
    counts = hdr[:, 2:2 + n].T.astype(np.int64)  # (n, m)
    isz = np.array([dt.itemsize for _, dt in schema.sections], dtype=np.int64)
    padded = (counts * isz[:, None] + 7) & ~7
    ok &= (H + padded.sum(axis=0)) == lengths
    if not ok.all():
        bad(int(np.flatnonzero(~ok)[0]))
    sec_off = H + np.cumsum(padded, axis=0) - padded
    out = {}
    for s, (name, dt) in enumerate(schema.sections):
        c = counts[s]
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(c, out=indptr[1:])
        nnz = int(indptr[-1])
        if nnz == 0:
            out[name] = (indptr, np.zeros(0, dt))
            continue
        values = np.empty(nnz, dtype=dt)
        _ragged_copy(values, indptr[:-1], np.frombuffer(joined, dtype=dt), (starts + sec_off[s]) // dt.itemsize, c)
        out[name] = (indptr, values)
    return out


# ----------------------------------------------------------------------------- writer


def _loads(b: bytes | None, what: str) -> Any:
    try:
        return json.loads(bytes(b))  # type: ignore[arg-type]
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{what} is not JSON: {e}") from None


class RecordWriter:
    """The single writer of a records store: one transaction per chunk (records + marker).

    Opens (creates) the environment at ``path``; an existing one must hold the same
    schema, else StoreError. Re-putting a committed chunk replaces it. Reopening a
    finished store is allowed: its manifest is removed with the first chunk written.
    """

    def __init__(self, path: str | Path, schema: RecordSchema, map_size: int | None = None, *,
                 sync: bool = True):
        self.path = Path(path)
        self.schema = schema
        self._map_size = int(map_size or DEFAULT_MAP_SIZE)
        self._scratch: np.ndarray | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(str(self.path), subdir=True, max_dbs=2, map_size=self._map_size, meminit=False,
                                  sync=sync, metasync=sync)
        except (OSError, lmdb.Error) as e:
            raise StoreError(f"{self.path}: cannot open as an LMDB environment: {e}") from None
        try:
            self._map_size = max(self._map_size, int(self._env.info()["map_size"]))
            self._samples = self._env.open_db(SAMPLES_DB)
            self._meta = self._env.open_db(META_DB)
            self._chunks: dict[int, dict[str, Any]] = {}
            with self._env.begin(write=True) as txn:
                have = txn.get(SCHEMA_KEY, db=self._meta)
                if have is None:
                    if txn.stat(self._samples)["entries"]:
                        raise StoreError(f"{self.path}: holds records but no schema: not a {FORMAT} store")
                    txn.put(SCHEMA_KEY, schema.to_json(), db=self._meta)
                else:
                    try:
                        stored = RecordSchema.from_json(have)
                    except StoreError as e:
                        raise StoreError(f"{self.path}: {e}") from None
                    if stored != schema:
                        raise StoreError(f"{self.path}: schema differs: store has {_show(stored)}, "
                                         f"writer has {_show(schema)}")
                self._finished = txn.get(MANIFEST_KEY, db=self._meta) is not None
                cur = txn.cursor(db=self._meta)
                if cur.set_range(CHUNK_PREFIX):
                    for k, v in cur:
                        if not k.startswith(CHUNK_PREFIX):
                            break
                        self._chunks[int(k[len(CHUNK_PREFIX):])] = _loads(v, f"{self.path}: marker {k!r}")
        except BaseException:
            self._env.close()
            raise

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._env is None:
            raise StoreError(f"{self.path}: writer is closed")

    def done_chunks(self) -> set[int]:
        """Chunks whose records and marker are committed."""
        return set(self._chunks)

    def put_chunk(self, chunk: int, first_sample_id: int, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]
                  ) -> None:
        """Write samples ``first_sample_id..first_sample_id+m-1`` and the marker of ``chunk``, in one transaction."""
        self._check_open()
        chunk, first = int(chunk), int(first_sample_id)
        if not 0 <= chunk <= 99_999_999:
            raise ValueError(f"chunk {chunk} outside 0..99999999")
        buf, starts, lengths = _encode(self.schema, columns, self._scratch)
        if self._scratch is None or buf.nbytes > self._scratch.nbytes:
            self._scratch = buf.view(np.uint64)  # reused by the next chunk (no fresh pages to fault in)
        m = len(lengths)
        if first < 0 or first + m > 1 << 64:
            raise ValueError(f"sample ids {first}..{first + m - 1} outside the 64-bit unsigned range")
        for c, mk in self._chunks.items():
            if c != chunk and m and mk["count"] and first < mk["first"] + mk["count"] and mk["first"] < first + m:
                raise StoreError(f"{self.path}: chunk {chunk} (ids {first}..{first + m - 1}) overlaps chunk {c} "
                                 f"(ids {mk['first']}..{mk['first'] + mk['count'] - 1})")
        marker = {"first": first, "count": m, "sha256": hashlib.sha256(buf).hexdigest()}
        mv = memoryview(buf)
        items = list(zip(_keys(np.arange(first, first + m, dtype=np.uint64)),
                         (mv[a:a + n] for a, n in zip(starts.tolist(), lengths.tolist()))))
        old = self._chunks.get(chunk)
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    if self._finished:
                        txn.delete(MANIFEST_KEY, db=self._meta)
                    if old is not None:
                        for k in _keys(np.arange(old["first"], old["first"] + old["count"], dtype=np.uint64)):
                            txn.delete(k, db=self._samples)
                    cur = txn.cursor(db=self._samples)
                    append = not cur.last() or cur.key() < items[0][0] if items else False
                    cur.putmulti(items, append=append)
                    txn.put(chunk_key(chunk), json.dumps(marker).encode(), db=self._meta)
                break
            except lmdb.MapFullError:
                if self._map_size >= _MAX_MAP_SIZE:
                    raise StoreError(f"{self.path}: map size {self._map_size} exhausted") from None
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)
        self._finished = False
        self._chunks[chunk] = marker

    def finish(self, manifest: dict) -> None:
        """Write ``manifest`` (last), sync to disk and close."""
        self._check_open()
        data = json.dumps(manifest).encode()
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    txn.put(MANIFEST_KEY, data, db=self._meta)
                break
            except lmdb.MapFullError:
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)
        self._env.sync(True)
        self.close()

    def close(self) -> None:
        """Close without finishing (the store stays incomplete; a new writer resumes it)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        self._scratch = None


def _show(schema: RecordSchema) -> str:
    return "[" + ", ".join(f"{n}:{d.str}" for n, d in schema.sections) + "]"


# ----------------------------------------------------------------------------- reader


class _SharedEnv:
    """One read-only environment per store and process, shared by that process's readers.

    py-lmdb refuses to open an environment twice in one process, so readers of the same
    store share this handle (found through ``_SHARED``; closed when the last reader lets
    go). After a fork the child closes the inherited handle (harmless with ``lock=False``:
    no lock table; the parent's mapping is its own) and opens its own.
    """

    def __init__(self, path: Path):
        self.pid = os.getpid()
        self.env: lmdb.Environment | None = None
        try:
            env = lmdb.open(str(path), subdir=True, readonly=True, lock=False, readahead=False, max_dbs=2)
        except lmdb.InvalidError as e:
            raise StoreError(f"{path}: not an LMDB environment: {e}") from None
        except lmdb.Error as e:
            raise StoreError(f"{path}: cannot open the LMDB environment: {e}") from None
        try:
            self.samples = env.open_db(SAMPLES_DB, create=False)
            self.meta = env.open_db(META_DB, create=False)
        except lmdb.Error:
            env.close()
            raise StoreError(f"{path}: not a {FORMAT} store (no 'samples'/'meta' databases)") from None
        self.env = env

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            env.close()

    def __del__(self) -> None:
        if self.pid == os.getpid():
            self.close()


_SHARED: weakref.WeakValueDictionary[str, _SharedEnv] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)


def _shared_env(path: Path) -> _SharedEnv:
    # the data file's identity too: a store re-published at the same path is another environment
    try:
        st = os.stat(path / "data.mdb")
    except OSError:
        raise StoreError(f"{path}: not an LMDB environment (no data.mdb)") from None
    key = f"{os.path.realpath(path)}\0{st.st_dev}:{st.st_ino}"
    pid = os.getpid()
    with _SHARED_LOCK:
        h = _SHARED.get(key)
        if h is not None and h.pid == pid and h.env is not None:
            return h
        if h is not None and h.pid != pid:
            h.close()  # inherited through fork: release it here (py-lmdb would refuse a second open)
        h = _SharedEnv(path)
        _SHARED[key] = h
        return h


class RecordReader:
    """Read-only access to a finished records store; fork-safe and picklable.

    The environment is opened lazily in the process that uses it (``readonly=True,
    lock=False, readahead=False``; one per store and process, shared by readers of the
    same store) and reopened after a fork; pickling drops it. Use :func:`open_records`,
    which checks the store first. Sample arrays returned are copies or views of
    Python-owned bytes: they stay valid after the reader is closed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h: _SharedEnv | None = None
        self._schema: RecordSchema | None = None
        self._manifest: dict | None = None
        self._len: int | None = None

    def _open(self) -> _SharedEnv:
        h = self._h
        if h is not None and h.pid == os.getpid() and h.env is not None:
            return h
        self._h = None  # an environment inherited through fork is never used
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no records store here (missing or not a directory)")
        self._h = _shared_env(self.path)
        return self._h

    @property
    def _pid(self) -> int | None:
        """The process whose environment this reader holds (None: not opened here yet)."""
        return self._h.pid if self._h is not None else None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        """Let go of the environment (closed when no other reader of the store in this process holds it)."""
        self._h = None

    def _read_meta(self) -> tuple[bytes | None, bytes | None, int]:
        h = self._open()
        with h.env.begin(db=h.meta) as txn:
            return txn.get(SCHEMA_KEY), txn.get(MANIFEST_KEY), int(txn.stat(h.samples)["entries"])

    def _load_meta(self) -> None:
        # no handle in this frame: a traceback kept by the caller must not keep the environment open
        raw, man, n = self._read_meta()
        if raw is None:
            raise StoreError(f"{self.path}: not a {FORMAT} store (no schema)")
        try:
            schema = RecordSchema.from_json(raw)
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from None
        if man is None:
            raise StoreError(f"{self.path}: incomplete records store (no manifest: its writer did not finish "
                             f"or was killed); resume or rebuild it")
        self._manifest = _loads(man, f"{self.path}: manifest")
        self._schema, self._len = schema, n

    @property
    def schema(self) -> RecordSchema:
        if self._schema is None:
            self._load_meta()
        return self._schema  # type: ignore[return-value]

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self._load_meta()
        return self._manifest  # type: ignore[return-value]

    def __len__(self) -> int:
        if self._len is None:
            self._load_meta()
        return self._len  # type: ignore[return-value]

    def chunks(self) -> dict[int, dict[str, Any]]:
        """chunk -> marker {"first", "count", "sha256"}."""
        h = self._open()
        out = {}
        with h.env.begin(db=h.meta) as txn:
            cur = txn.cursor()
            if cur.set_range(CHUNK_PREFIX):
                for k, v in cur:
                    if not k.startswith(CHUNK_PREFIX):
                        break
                    out[int(k[len(CHUNK_PREFIX):])] = _loads(v, f"{self.path}: marker {k!r}")
        return out

    def get(self, sample_id: int) -> dict[str, np.ndarray]:
        """One sample's sections (read-only arrays). KeyError if the id is absent."""
        schema = self.schema
        h = self._open()
        sid = int(sample_id)
        if not 0 <= sid < 1 << 64:
            raise KeyError(f"{self.path}: no sample {sid}")
        with h.env.begin(db=h.samples) as txn:
            v = txn.get(sample_key(sid))
        if v is None:
            raise KeyError(f"{self.path}: no sample {sid}")
        try:
            return decode_record(schema, v, sample_id=sid)
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from None

    def get_batch(self, sample_ids: Sequence[int] | np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Samples ``sample_ids`` (in that order, repeats allowed) as CSR columns, read in one transaction."""
        schema = self.schema
        h = self._open()
        ids = np.asarray(sample_ids)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0):
            raise KeyError(f"{self.path}: sample ids must be non-negative integers")
        ids = ids.astype(np.uint64, copy=False).ravel()
        keys = _keys(ids)
        with h.env.begin(db=h.samples, buffers=True) as txn:
            cur = txn.cursor()
            if hasattr(cur, "getmulti"):
                vals = [v for _, v in cur.getmulti(keys)]
                if len(vals) != len(keys):
                    vals = [txn.get(k) for k in keys]
            else:  # py-lmdb < 1.1
                vals = [txn.get(k) for k in keys]
            if len(vals) != len(keys) or any(v is None for v in vals):
                missing = [int(i) for i, v in zip(ids, vals) if v is None]
                raise KeyError(f"{self.path}: no sample(s) {missing[:10]}")
            try:
                return decode_batch(schema, vals, sample_ids=ids)
            except StoreError as e:
                raise StoreError(f"{self.path}: {e}") from None

    def verify(self) -> list[str]:
        """Recompute every chunk's sha256 from the stored values; problems found (empty = ok)."""
        h = self._open()
        problems: list[str] = []
        chunks = self.chunks()
        covered = 0
        spans = sorted((mk["first"], mk["count"], c) for c, mk in chunks.items())
        for (f0, n0, c0), (f1, _, c1) in zip(spans, spans[1:]):
            if n0 and f1 < f0 + n0:
                problems.append(f"chunk {c0} (ids {f0}..{f0 + n0 - 1}) overlaps chunk {c1}")
        with h.env.begin(db=h.samples, buffers=True) as txn:
            for c, mk in sorted(chunks.items()):
                first, count = int(mk["first"]), int(mk["count"])
                digest = hashlib.sha256()
                cur = txn.cursor()
                got = 0
                if count and cur.set_key(sample_key(first)):
                    for k, v in cur:
                        if got == count:
                            break
                        if int.from_bytes(k, "big") != first + got:
                            break
                        digest.update(v)
                        got += 1
                covered += got
                if got != count:
                    problems.append(f"chunk {c}: sample {first + got} missing "
                                    f"(expected ids {first}..{first + count - 1})")
                elif digest.hexdigest() != mk["sha256"]:
                    problems.append(f"chunk {c} (ids {first}..{first + count - 1}): sha256 differs "
                                    f"(stored {mk['sha256'][:12]}, computed {digest.hexdigest()[:12]})")
            entries = int(txn.stat(h.samples)["entries"])
        if entries != covered and not problems:
            problems.append(f"{entries - covered} record(s) belong to no chunk")
        return problems


def open_records(path: str | Path) -> RecordReader:
    """Open a finished records store; StoreError naming ``path`` if it is missing, not an LMDB
    environment, incomplete (no manifest) or of a foreign format/version."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{path}: no records store here (missing or not a directory)")
    if not (path / "data.mdb").is_file():
        raise StoreError(f"{path}: not an LMDB environment (no data.mdb)")
    reader = RecordReader(path)
    try:
        reader._load_meta()
    except BaseException:
        reader.close()
        raise
    return reader
