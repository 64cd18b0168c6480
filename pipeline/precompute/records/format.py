"""The binary layout of a records store (version 2): keys, schema, record encoding and decoding.

No LMDB here: pure bytes and numpy. The exact layout is the "records" section of
``storage_layout.md``; in short:

- ``samples`` database: key = sample id, 8-byte big-endian unsigned (cursor order = id
  order); value = header + payload. Header: magic ``b"YPR1"``, version uint16 LE,
  n_sections uint16 LE, one uint32 LE element count per schema section, zero padding to a
  multiple of 8. Payload: each section's elements little-endian in schema order, each
  starting at a multiple of 8 from the value's start, zero padding between sections and
  after the last one. A value's length is therefore
  ``header_size(n) + sum(pad8(count_i * itemsize_i))``, a multiple of 8.
- ``core`` database (version 2): the same keys; value = a record in the same encoding of
  the :meth:`RecordSchema.core` schema: only the schema's sections named in
  :data:`CORE_SECTIONS` (``genes``, ``types``, ``node_flips``), in schema order. A copy of
  those sections in small values, so that reading them does not fault in whole records.
- ``meta`` database: ``schema`` -> :meth:`RecordSchema.to_json`; ``chunk:%08d`` -> JSON
  marker ``{"first", "count", "sha256", "core_sha256"}`` (sha256 over the chunk's
  ``samples`` values, resp. ``core`` values, in id order); ``manifest`` -> JSON, written last.

>>> header_size(2), sample_key(258).hex(), chunk_key(7)
(16, '0000000000000102', b'chunk:00000007')
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.errors import StoreError

FORMAT = "yeast-pipeline.records"
FORMAT_VERSION = 2
MAGIC = b"YPR1"
RECORD_VERSION = 1
SAMPLES_DB = b"samples"
CORE_DB = b"core"
#: The sections copied into the ``core`` database (those of them a schema has, in schema order):
#: what the stream's ``index``, ``transformer`` and ``graph`` formats read.
CORE_SECTIONS = ("genes", "types", "node_flips")
META_DB = b"meta"
SCHEMA_KEY = b"schema"
MANIFEST_KEY = b"manifest"
CHUNK_PREFIX = b"chunk:"

_MAGIC_U32 = int.from_bytes(MAGIC, "little")  # the magic as the header's first uint32 LE word
#: Mean run length (elements) above which ragged copies go run by run instead of by index.
_RUN_LEN = 64
_HEAD = struct.Struct("<4sHH")  # magic, version, n_sections

#: CSR columns of m records: section name -> (indptr int64 [m+1], values).
Columns = Mapping[str, tuple[np.ndarray, np.ndarray]]


# ----------------------------------------------------------------------------- keys


def _pad8(n: int) -> int:
    """``n`` rounded up to a multiple of 8 (works element-wise on int64 arrays too)."""
    return (n + 7) & ~7


def header_size(n_sections: int) -> int:
    """Bytes of a record header with ``n_sections`` counts (a multiple of 8)."""
    return _pad8(8 + 4 * n_sections)


def sample_key(sample_id: int) -> bytes:
    """The ``samples`` key of one sample id: 8 bytes, big-endian unsigned."""
    return int(sample_id).to_bytes(8, "big")


def sample_keys(ids: np.ndarray) -> list[bytes]:
    """:func:`sample_key` of every id (unsigned 64-bit values), vectorised."""
    kb = np.ascontiguousarray(ids, dtype=">u8").tobytes()
    return [kb[i:i + 8] for i in range(0, len(kb), 8)]


def chunk_key(chunk: int) -> bytes:
    """The ``meta`` key of a chunk's marker: ``b"chunk:%08d"``."""
    return b"chunk:%08d" % chunk


def parse_json(b: bytes | None, what: str) -> Any:
    """A ``meta`` value (marker, manifest) parsed as JSON; StoreError naming ``what`` if it is not JSON."""
    try:
        return json.loads(bytes(b))  # type: ignore[arg-type]
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{what} is not JSON: {e}") from None


def read_markers(items: Iterable[tuple[bytes, bytes]], where: str) -> dict[int, dict[str, Any]]:
    """chunk -> marker, from ``meta`` (key, value) pairs in key order starting at the first ``chunk:`` key.

    Stops at the first key past the ``chunk:`` range (an LMDB cursor positioned with
    ``set_range(CHUNK_PREFIX)`` is such an iterable). StoreError naming ``where`` on a
    marker that is not JSON.
    """
    out = {}
    for k, v in items:
        if not k.startswith(CHUNK_PREFIX):
            break
        out[int(k[len(CHUNK_PREFIX):])] = parse_json(v, f"{where}: marker {k!r}")
    return out


# ----------------------------------------------------------------------------- schema


def _normalise_dtype(name: str, dt: Any) -> np.dtype:
    """``dt`` as stored: little-endian; ValueError unless bool, int, uint or float of 1-8 bytes."""
    d = np.dtype(dt)
    if d.kind not in "biuf" or d.itemsize not in (1, 2, 4, 8) or d.fields is not None or d.shape:
        raise ValueError(f"section {name!r}: dtype {d} not supported (bool, int, uint or float of 1-8 bytes)")
    return d.newbyteorder("<") if d.itemsize > 1 else d


@dataclass(frozen=True)
class RecordSchema:
    """Named sections and their dtypes (stored little-endian), the same for every record of a store.

    ValueError on duplicate names, more than 65535 sections or an unsupported dtype.

    >>> s = RecordSchema((("genes", np.int32), ("types", np.uint8)))
    >>> s.names, s.to_dict()["sections"]
    (('genes', 'types'), [['genes', '<i4'], ['types', '|u1']])
    >>> RecordSchema.from_json(s.to_json()) == s
    True
    """

    sections: tuple[tuple[str, np.dtype], ...]

    def __post_init__(self) -> None:
        secs = tuple((str(n), _normalise_dtype(str(n), d)) for n, d in self.sections)
        names = [n for n, _ in secs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate section names in {names}")
        if len(secs) > 0xFFFF:  # n_sections is a uint16 of the header
            raise ValueError(f"{len(secs)} sections; at most 65535")
        object.__setattr__(self, "sections", secs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.sections)

    def positions(self, names: Iterable[str]) -> tuple[int, ...]:
        """Schema positions of the sections ``names``, ascending, repeats dropped.

        ValueError naming the unknown names and the schema's sections; TypeError if
        ``names`` is a single string (pass ``[name]``).

        >>> s = RecordSchema((("genes", np.int32), ("types", np.uint8), ("flips", np.int32)))
        >>> s.positions(["flips", "genes", "flips"]), s.positions([])
        ((0, 2), ())
        """
        if isinstance(names, (str, bytes)):
            raise TypeError(f"sections must be an iterable of section names, not the string {names!r}")
        names = list(names)
        pos = {n: i for i, (n, _) in enumerate(self.sections)}
        unknown = [n for n in names if n not in pos]
        if unknown:
            raise ValueError(f"unknown section(s) {unknown}; the schema's sections are {list(self.names)}")
        return tuple(sorted({pos[n] for n in names}))

    def core(self) -> RecordSchema:
        """The schema of the ``core`` records: this schema's sections named in :data:`CORE_SECTIONS`, in order.

        >>> RecordSchema((("types", np.uint8), ("edges:x", np.int32), ("genes", np.int32))).core().names
        ('types', 'genes')
        """
        return RecordSchema(tuple((n, d) for n, d in self.sections if n in CORE_SECTIONS))

    def to_dict(self) -> dict[str, Any]:
        """The stored schema object: ``{"format", "version", "sections": [[name, dtype_str], ...],
        "core": [name, ...]}`` (``core``: the names of :meth:`core`, checked on reading)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "sections": [[n, d.str] for n, d in self.sections],
                "core": list(self.core().names)}

    @classmethod
    def from_dict(cls, obj: Any) -> RecordSchema:
        """Inverse of :meth:`to_dict`; StoreError on a foreign format, another version or bad sections."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise StoreError(f"foreign record schema: expected format {FORMAT!r}, got {got!r}")
        if obj.get("version") != FORMAT_VERSION:
            raise StoreError(f"record schema version {obj.get('version')!r}, this code reads {FORMAT_VERSION}: "
                             f"rebuild the records with --lmdb")
        try:
            schema = cls(tuple((str(n), np.dtype(d)) for n, d in obj["sections"]))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"bad record schema sections: {e}") from None
        if obj.get("core") != list(schema.core().names):
            raise StoreError(f"record schema: core sections {obj.get('core')!r}, expected "
                             f"{list(schema.core().names)} (those of {list(CORE_SECTIONS)} in the schema)")
        return schema

    def to_json(self) -> bytes:
        """:meth:`to_dict` as the JSON bytes stored under ``meta`` key ``schema``."""
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_json(cls, b: bytes) -> RecordSchema:
        """Inverse of :meth:`to_json`; StoreError if ``b`` is not JSON or not a schema this code reads."""
        try:
            obj = json.loads(bytes(b))
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(f"record schema is not JSON: {e}") from None
        return cls.from_dict(obj)


def _section_bytes(schema: RecordSchema, counts: np.ndarray) -> np.ndarray:
    """Padded payload bytes of each section of each record, int64 (n, m), from element counts (n, m)."""
    isz = np.array([dt.itemsize for _, dt in schema.sections], dtype=np.int64)
    return _pad8(counts * isz[:, None])


# ----------------------------------------------------------------------------- ragged copy


def _ragged_copy(dst: np.ndarray, dst_start: np.ndarray, src: np.ndarray, src_start: np.ndarray,
                counts: np.ndarray) -> None:
    """``dst[dst_start[i]:+counts[i]] = src[src_start[i]:+counts[i]]`` for every i (int64 arrays).

    Short runs: one vectorised scatter (an index per element); long runs: one memcpy per
    run (a Python step per run, none per element: cheaper than an int64 index per element).

    >>> dst = np.zeros(6, np.int32)
    >>> _ragged_copy(dst, np.array([0, 4]), np.arange(10, 20, dtype=np.int32), np.array([0, 5]), np.array([2, 2]))
    >>> dst.tolist()
    [10, 11, 0, 0, 15, 16]
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
    for d, s, c in zip(dst_start.tolist(), src_start.tolist(), counts.tolist(), strict=True):
        if c:
            dst[d:d + c] = src[s:s + c]


# ----------------------------------------------------------------------------- encode


def _as_section(name: str, values: Any, dt: np.dtype) -> np.ndarray:
    """``values`` as a 1-D array of ``dt``: cast when lossless (integers range-checked), else ValueError."""
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


def _checked_columns(schema: RecordSchema, columns: Columns) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """(indptrs int64, values in the section dtypes, m) of ``columns``, in schema order; ValueError if malformed."""
    names = schema.names
    if set(columns) != set(names):
        raise ValueError(f"columns {sorted(columns)} differ from the schema's sections {list(names)}")
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
    return ptrs, vals, m or 0


def encode_buffer(schema: RecordSchema, columns: Columns, scratch: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode m records into one buffer: (uint8 buffer, record starts int64 [m], lengths int64 [m]).

    ``columns`` as in :func:`encode_records`. The records lie back to back in the buffer,
    in sample order (so the buffer is the input of the chunk's sha256). ``scratch``
    (uint64), when large enough, is reused as the buffer (saves page faults on every chunk);
    the returned buffer then shares its memory.
    """
    ptrs, vals, m = _checked_columns(schema, columns)
    n = len(schema.sections)
    H = header_size(n)
    counts = np.stack([p[1:] - p[:-1] for p in ptrs]) if n else np.zeros((0, m), np.int64)  # (n, m)
    if counts.size and counts.max() > 0xFFFFFFFF:
        raise ValueError("a section holds more than 2**32-1 elements in one record")
    padded = _section_bytes(schema, counts)
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
        # element index of each record's section start (sections are 8-aligned, so itemsize-aligned)
        _ragged_copy(buf.view(dt), (starts + sec_off[s]) // dt.itemsize, vals[s], ptrs[s][:-1], counts[s])
    return buf.view(np.uint8), starts, lengths


def encode_records(schema: RecordSchema, columns: Columns) -> list[bytes]:
    """Encode m records from CSR columns: section name -> (indptr int64 [m+1], values).

    Sample ``i``'s section holds ``values[indptr[i]:indptr[i+1]]``. Values are cast to the
    section's dtype when that is lossless (integers are range-checked), else ValueError.

    >>> s = RecordSchema((("genes", np.int32),))
    >>> [len(b) for b in encode_records(s, {"genes": (np.array([0, 3, 3]), np.array([4, 5, 6]))})]
    [32, 16]
    """
    buf, starts, lengths = encode_buffer(schema, columns)
    mv = memoryview(buf)
    return [mv[a:a + n].tobytes() for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


# ----------------------------------------------------------------------------- decode


def _who(sample_id: int | None) -> str:
    return "record" if sample_id is None else f"sample {sample_id}"


def decode_record(schema: RecordSchema, buf: bytes | memoryview, *, sample_id: int | None = None
                  ) -> dict[str, np.ndarray]:
    """Decode one record into zero-copy, read-only ``np.frombuffer`` views of ``buf``.

    The views share ``buf``'s memory: a memoryview from an LMDB ``buffers=True``
    transaction is valid only inside that transaction. StoreError (naming
    ``sample_id``) on a wrong magic, version, section count or length.

    >>> s = RecordSchema((("genes", np.int32),))
    >>> [b] = encode_records(s, {"genes": (np.array([0, 2]), np.array([7, 9]))})
    >>> decode_record(s, b)["genes"].tolist()
    [7, 9]
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
    need = H + sum(_pad8(c * dt.itemsize) for c, (_, dt) in zip(counts, schema.sections, strict=True))
    if nb != need:
        what = "truncated record" if nb < need else "record too long"
        raise StoreError(f"{who}: {what}: its header says {need} bytes, got {nb} bytes")
    out = {}
    off = H
    for c, (name, dt) in zip(counts, schema.sections, strict=True):
        out[name] = np.frombuffer(buf, dtype=dt, count=c, offset=off)
        off += _pad8(c * dt.itemsize)
    return out


def decode_batch(schema: RecordSchema, bufs: Sequence[bytes | memoryview], *,
                 sample_ids: Sequence[int] | np.ndarray | None = None,
                 sections: Iterable[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode m records into CSR columns: section name -> (indptr int64 [m+1], values).

    The arrays are copies (safe to keep after an LMDB transaction ends). StoreError
    naming the sample (``sample_ids[i]``, else the batch position) on a bad record.

    ``sections`` (names of the schema's sections; ValueError on others): decode only
    those, in schema order, each entry equal to the full decode's. Only each record's
    header and those sections' elements are read (sliced and joined, one Python step per
    record and section: no copy of the whole values); ``bufs`` must then index by byte
    (``bytes``, ``bytearray``, LMDB's ``buffers=True`` memoryviews). Every record is
    still checked (magic, version, section count, length against its header).

    >>> s = RecordSchema((("genes", np.int32), ("types", np.uint8)))
    >>> bufs = encode_records(s, {"genes": (np.array([0, 1, 3]), np.array([4, 5, 6])),
    ...                           "types": (np.array([0, 0, 1]), np.array([2]))})
    >>> p, v = decode_batch(s, bufs)["genes"]
    >>> p.tolist(), v.tolist()
    ([0, 1, 3], [4, 5, 6])
    >>> {k: (p.tolist(), v.tolist()) for k, (p, v) in decode_batch(s, bufs, sections=["types"]).items()}
    {'types': ([0, 0, 1], [2])}
    """
    if sections is not None:
        return _decode_sections(schema, bufs, schema.positions(sections), sample_ids)
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
    padded = _section_bytes(schema, counts)
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


def _decode_sections(schema: RecordSchema, bufs: Sequence[bytes | memoryview], wanted: tuple[int, ...],
                     sample_ids: Sequence[int] | np.ndarray | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`decode_batch` of the sections at schema positions ``wanted``, reading only their bytes.

    The headers (``H`` bytes each) are joined and parsed as one (m, H/4) uint32 array; then,
    per wanted section, each record's elements (padding excluded) are sliced and joined
    into one buffer, which is the section's CSR values as they are.
    """
    m = len(bufs)
    secs = schema.sections
    n = len(secs)
    H = header_size(n)
    if m == 0:
        return {secs[s][0]: (np.zeros(1, np.int64), np.zeros(0, secs[s][1])) for s in wanted}

    def bad(i: int) -> None:  # precise message from the scalar decoder
        sid = int(sample_ids[i]) if sample_ids is not None else None
        decode_record(schema, bufs[i], sample_id=sid)
        raise StoreError(f"{_who(sid)}: bad record")  # not reached

    lengths = np.fromiter(map(len, bufs), dtype=np.int64, count=m)
    short = np.flatnonzero((lengths < H) | (lengths % 8 != 0))
    if short.size:
        bad(int(short[0]))
    hdr = np.frombuffer(b"".join([b[:H] for b in bufs]), dtype="<u4").reshape(m, H // 4)
    ok = (hdr[:, 0] == _MAGIC_U32) & (hdr[:, 1] == (RECORD_VERSION | (n << 16)))
    counts = hdr[:, 2:2 + n].T.astype(np.int64)  # (n, m)
    padded = _section_bytes(schema, counts)
    ends = H + np.cumsum(padded, axis=0)  # (n, m): end of each padded section in its record
    ok &= (ends[-1] if n else H) == lengths
    if not ok.all():
        bad(int(np.flatnonzero(~ok)[0]))
    out = {}
    for s in wanted:
        name, dt = secs[s]
        c = counts[s]
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(c, out=indptr[1:])
        if indptr[-1] == 0:
            out[name] = (indptr, np.zeros(0, dt))
            continue
        a = ends[s] - padded[s]
        raw = bytearray().join([b[i:j] for b, i, j in zip(bufs, a.tolist(), (a + c * dt.itemsize).tolist(),
                                                           strict=True)])
        values = np.frombuffer(raw, dtype=dt)  # writable (a bytearray); copied only if misaligned
        out[name] = (indptr, values if values.flags.aligned else values.copy())
    return out
