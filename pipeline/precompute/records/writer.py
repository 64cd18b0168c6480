"""The single writer of a records store: one LMDB transaction per chunk (records + marker), manifest last.

A chunk's records (in ``samples`` and their ``core`` copies) and its ``chunk:`` marker are
committed in ONE transaction, so a killed
writer (kill -9) loses at most the chunk in flight; a new :class:`RecordWriter` on the
same path sees exactly the committed chunks in :meth:`RecordWriter.done_chunks`.
Publishing the directory atomically is the caller's job.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from pipeline.core.errors import StoreError
from pipeline.precompute.records.format import (
    CHUNK_PREFIX,
    CORE_DB,
    FORMAT,
    MANIFEST_KEY,
    META_DB,
    SAMPLES_DB,
    SCHEMA_KEY,
    Columns,
    RecordSchema,
    chunk_key,
    encode_buffer,
    read_markers,
    sample_keys,
)

#: Initial map size of a writer (grown by doubling on MapFullError, up to 64 TiB).
DEFAULT_MAP_SIZE = 1 << 30
_MAX_MAP_SIZE = 1 << 46  # bounds the retries of a full map: at most log2(_MAX_MAP_SIZE / map_size) growths


def _show(schema: RecordSchema) -> str:
    """A schema in one line, for error messages: ``[name:dtype, ...]``."""
    return "[" + ", ".join(f"{n}:{d.str}" for n, d in schema.sections) + "]"


def _open_env(path: Path, map_size: int, sync: bool) -> lmdb.Environment:
    """Open (create) the writable environment directory ``path``; StoreError naming it if that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return lmdb.open(str(path), subdir=True, max_dbs=3, map_size=map_size, meminit=False,
                         sync=sync, metasync=sync)
    except (OSError, lmdb.Error) as e:
        raise StoreError(f"{path}: cannot open as an LMDB environment: {e}") from None


def _write_error(path: Path, e: lmdb.Error) -> Exception:
    """What a failed LMDB commit means: LMDB reports a full file system as a plain I/O error
    (its pages are written through the map), so a file system with under 1 MiB free is ENOSPC."""
    if shutil.disk_usage(path).free < (1 << 20):
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    return StoreError(f"{path}: LMDB write failed: {e}")


class RecordWriter:
    """The single writer of a records store: one transaction per chunk (records + marker).

    Opens (creates) the environment at ``path``; an existing one must hold the same
    schema, else StoreError. Re-putting a committed chunk replaces it. Reopening a
    finished store is allowed: its manifest is removed with the first chunk written.
    ``sync=False`` skips the fsync of every commit (:meth:`finish` still syncs once).
    py-lmdb opens an environment at most once per process: close this process's readers
    of the store first.
    """

    def __init__(self, path: str | Path, schema: RecordSchema, map_size: int | None = None, *,
                 sync: bool = True):
        self.path = Path(path)
        self.schema = schema
        self._map_size = int(map_size or DEFAULT_MAP_SIZE)
        self._core_schema = schema.core()
        self._scratch: np.ndarray | None = None
        self._chunks: dict[int, dict[str, Any]] = {}
        self._finished = False
        self._env: lmdb.Environment | None = _open_env(self.path, self._map_size, sync)
        try:
            self._map_size = max(self._map_size, int(self._env.info()["map_size"]))  # an existing map may be larger
            self._samples = self._env.open_db(SAMPLES_DB)
            self._core = self._env.open_db(CORE_DB)
            self._meta = self._env.open_db(META_DB)
            self._write(self._load_state)
        except BaseException:
            self._env.close()
            raise

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- transactions

    def _write(self, body: Callable[[lmdb.Transaction], None]) -> None:
        """Run ``body(txn)`` in one write transaction and commit it, growing the map while it is full.

        A full map aborts the transaction (nothing of it is committed); the map then
        doubles and ``body`` runs again from scratch, so it must be safe to rerun. Bounded:
        StoreError once the map is at ``_MAX_MAP_SIZE`` and still full.
        """
        assert self._env is not None
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    body(txn)
                return
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as e:
                raise _write_error(self.path, e) from None

    def _grow_map(self) -> None:
        """Double the map size (at most ``_MAX_MAP_SIZE``); StoreError if it is already there."""
        assert self._env is not None
        if self._map_size >= _MAX_MAP_SIZE:
            raise StoreError(f"{self.path}: LMDB map full at {self._map_size} bytes, the most a writer grows it "
                             f"to: the write does not fit") from None
        self._map_size = min(2 * self._map_size, _MAX_MAP_SIZE)
        self._env.set_mapsize(self._map_size)

    def _load_state(self, txn: lmdb.Transaction) -> None:
        """Store the schema in a new store or check it against an existing one's; read its markers."""
        have = txn.get(SCHEMA_KEY, db=self._meta)
        if have is None:
            if txn.stat(self._samples)["entries"] or txn.stat(self._core)["entries"]:
                raise StoreError(f"{self.path}: holds records but no schema: not a {FORMAT} store")
            txn.put(SCHEMA_KEY, self.schema.to_json(), db=self._meta)
        else:
            try:
                stored = RecordSchema.from_json(have)
            except StoreError as e:
                raise StoreError(f"{self.path}: {e}") from None
            if stored != self.schema:
                raise StoreError(f"{self.path}: schema differs: store has {_show(stored)}, "
                                 f"writer has {_show(self.schema)}")
        self._finished = txn.get(MANIFEST_KEY, db=self._meta) is not None
        cur = txn.cursor(db=self._meta)
        self._chunks = read_markers(cur, str(self.path)) if cur.set_range(CHUNK_PREFIX) else {}

    def _check_open(self) -> None:
        if self._env is None:
            raise StoreError(f"{self.path}: writer is closed")

    # ------------------------------------------------------------------------- chunks

    def done_chunks(self) -> set[int]:
        """Chunks whose records and marker are committed."""
        return set(self._chunks)

    def _check_ids(self, chunk: int, first: int, m: int) -> None:
        """ValueError if ids ``first..first+m-1`` leave the uint64 range; StoreError if they overlap another chunk."""
        if first < 0 or first + m > 1 << 64:
            raise ValueError(f"sample ids {first}..{first + m - 1} outside the 64-bit unsigned range")
        for c, mk in self._chunks.items():
            if c != chunk and m and mk["count"] and first < mk["first"] + mk["count"] and mk["first"] < first + m:
                raise StoreError(f"{self.path}: chunk {chunk} (ids {first}..{first + m - 1}) overlaps chunk {c} "
                                 f"(ids {mk['first']}..{mk['first'] + mk['count'] - 1})")

    def put_chunk(self, chunk: int, first_sample_id: int, columns: Columns) -> None:
        """Write samples ``first_sample_id..first_sample_id+m-1`` and the marker of ``chunk``, in one transaction.

        Each sample's record goes to ``samples`` and its core sections' record to ``core``.
        ``columns``: section name -> (indptr int64 [m+1], values), as for
        :func:`~pipeline.precompute.records.format.encode_records`. ``chunk`` must be in
        0..99999999 (ValueError); a committed chunk of that number is replaced.
        """
        self._check_open()
        chunk, first = int(chunk), int(first_sample_id)
        if not 0 <= chunk <= 99_999_999:
            raise ValueError(f"chunk {chunk} outside 0..99999999")
        buf, starts, lengths = encode_buffer(self.schema, columns, self._scratch)
        if self._scratch is None or buf.nbytes > self._scratch.nbytes:
            self._scratch = buf.view(np.uint64)  # reused by the next chunk (no fresh pages to fault in)
        m = len(lengths)
        self._check_ids(chunk, first, m)
        # the core copy: the same columns (checked above), only the core sections
        cbuf, cstarts, clengths = encode_buffer(self._core_schema, {n: columns[n] for n in self._core_schema.names})
        marker = {"first": first, "count": m, "sha256": hashlib.sha256(buf).hexdigest(),
                  "core_sha256": hashlib.sha256(cbuf).hexdigest()}
        keys = sample_keys(np.arange(first, first + m, dtype=np.uint64))
        items, core_items = (list(zip(keys, (mv[a:a + n] for a, n in zip(st.tolist(), ln.tolist(), strict=True)),
                                      strict=True))
                             for mv, st, ln in ((memoryview(buf), starts, lengths),
                                                (memoryview(cbuf), cstarts, clengths)))
        old = self._chunks.get(chunk)
        self._write(lambda txn: self._put_records(txn, chunk, items, core_items, old, marker))
        self._finished = False
        self._chunks[chunk] = marker

    def _put_records(self, txn: lmdb.Transaction, chunk: int, items: list[tuple[bytes, memoryview]],
                     core_items: list[tuple[bytes, memoryview]], old: dict[str, Any] | None,
                     marker: dict[str, Any]) -> None:
        """In ``txn``: drop the manifest, replace chunk ``old``'s records by ``items`` (``samples``) and
        ``core_items`` (``core``), put the marker."""
        if self._finished:
            txn.delete(MANIFEST_KEY, db=self._meta)  # the store is no longer finished
        for db, its in ((self._samples, items), (self._core, core_items)):
            if old is not None:
                for k in sample_keys(np.arange(old["first"], old["first"] + old["count"], dtype=np.uint64)):
                    txn.delete(k, db=db)
            cur = txn.cursor(db=db)
            # append mode (no page splits) when the chunk's keys all come after the last stored key
            append = (not cur.last() or cur.key() < its[0][0]) if its else False
            cur.putmulti(its, append=append)
        txn.put(chunk_key(chunk), json.dumps(marker).encode(), db=self._meta)

    def finish(self, manifest: dict) -> None:
        """Write ``manifest`` (last, marking the store complete), sync to disk and close."""
        self._check_open()
        data = json.dumps(manifest).encode()
        self._write(lambda txn: txn.put(MANIFEST_KEY, data, db=self._meta))
        self._env.sync(True)  # type: ignore[union-attr]
        self.close()

    def close(self) -> None:
        """Close without finishing (the store stays incomplete; a new writer resumes it)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        self._scratch = None
