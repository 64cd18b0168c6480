"""Read-only access to finished records stores: a per-process environment registry, the reader, verify.

Readers open the environment ``readonly=True, lock=False, readahead=False``: safe only on
a finished store that no writer is writing. A :class:`RecordReader` opens it lazily in
the process that uses it, reopens it after ``fork`` and drops it when pickled (``spawn``).
py-lmdb opens an environment at most once per process, so the readers of one store in
one process share one environment (and a writer cannot open a store that a reader in the
same process still holds: close the readers first).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from pipeline.core.errors import StoreError
from pipeline.core.gcpause import gc_paused
from pipeline.precompute.records.format import (
    CHUNK_PREFIX,
    CORE_DB,
    FORMAT,
    MANIFEST_KEY,
    META_DB,
    SAMPLES_DB,
    SCHEMA_KEY,
    RecordSchema,
    decode_batch,
    decode_record,
    parse_json,
    read_markers,
    sample_key,
    sample_keys,
)

# ----------------------------------------------------------------------------- environment registry


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
            env = lmdb.open(str(path), subdir=True, readonly=True, lock=False, readahead=False, max_dbs=3)
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
        try:  # absent from a version-1 store: refused by its schema's version (see RecordReader._load_meta)
            self.core = env.open_db(CORE_DB, create=False)
        except lmdb.Error:
            self.core = None
        self.env = env

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            env.close()

    def __del__(self) -> None:
        if self.pid == os.getpid():  # an inherited handle is the parent's to close
            self.close()


_SHARED: weakref.WeakValueDictionary[str, _SharedEnv] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)


def _shared_env(path: Path) -> _SharedEnv:
    """This process's environment of the store at ``path``, opened if no reader here holds it yet."""
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


# ----------------------------------------------------------------------------- verify


def _overlaps(chunks: dict[int, dict[str, Any]]) -> list[str]:
    """A problem per pair of chunks, adjacent in id order, whose id ranges overlap."""
    spans = sorted((mk["first"], mk["count"], c) for c, mk in chunks.items())
    return [f"chunk {c0} (ids {f0}..{f0 + n0 - 1}) overlaps chunk {c1}"
            for (f0, n0, c0), (f1, _, c1) in pairwise(spans) if n0 and f1 < f0 + n0]


def _chunk_digest(txn: lmdb.Transaction, db: Any, first: int, count: int) -> tuple[int, str]:
    """(records found, sha256 hex of their values) in ``db`` for ids ``first..first+count-1``, stopping at the
    first gap."""
    digest = hashlib.sha256()
    cur = txn.cursor(db=db)
    got = 0
    if count and cur.set_key(sample_key(first)):
        for k, v in cur:
            if got == count or int.from_bytes(k, "big") != first + got:
                break
            digest.update(v)
            got += 1
    return got, digest.hexdigest()


def _verify_chunk(txn: lmdb.Transaction, db: Any, c: int, mk: dict[str, Any], field: str,
                  where: str) -> tuple[int, str | None]:
    """(records found in ``db``, the problem or None) of chunk ``c`` against its marker ``mk``'s ``field``.

    ``where``: how the problem names the database (``""`` for ``samples``, ``" in core"``).
    """
    first, count = int(mk["first"]), int(mk["count"])
    got, hexdigest = _chunk_digest(txn, db, first, count)
    if got != count:
        return got, f"chunk {c}: sample {first + got} missing{where} (expected ids {first}..{first + count - 1})"
    if hexdigest != mk.get(field):
        return got, (f"chunk {c} (ids {first}..{first + count - 1}){where}: {field} differs "
                     f"(stored {str(mk.get(field))[:12]}, computed {hexdigest[:12]})")
    return got, None


# ----------------------------------------------------------------------------- reader


class RecordReader:
    """Read-only access to a finished records store; fork-safe and picklable.

    The environment is opened lazily in the process that uses it (``readonly=True,
    lock=False, readahead=False``; one per store and process, shared by readers of the
    same store) and reopened after a fork; pickling drops it. Use :func:`open_records`,
    which checks the store first. Sample arrays returned are copies or views of
    Python-owned bytes: they stay valid after the reader is closed. ``get_batch(ids,
    sections=[...])`` decodes only the named sections (their bytes alone are copied).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h: _SharedEnv | None = None
        self._schema: RecordSchema | None = None
        self._core: RecordSchema | None = None  # the schema of the ``core`` records
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

    def _read_meta(self) -> tuple[bytes | None, bytes | None, int, bool]:
        h = self._open()
        with h.env.begin(db=h.meta) as txn:
            return txn.get(SCHEMA_KEY), txn.get(MANIFEST_KEY), int(txn.stat(h.samples)["entries"]), h.core is not None

    def _load_meta(self) -> None:
        """Read schema, manifest and record count; StoreError if foreign, of another version (rebuild it),
        without its ``core`` database or incomplete (no manifest)."""
        # no handle in this frame: a traceback kept by the caller must not keep the environment open
        raw, man, n, has_core = self._read_meta()
        if raw is None:
            raise StoreError(f"{self.path}: not a {FORMAT} store (no schema)")
        try:
            schema = RecordSchema.from_json(raw)
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from None
        if not has_core:
            raise StoreError(f"{self.path}: no 'core' database: a damaged {FORMAT} store; rebuild it with --lmdb")
        if man is None:
            raise StoreError(f"{self.path}: incomplete records store (no manifest: its writer did not finish "
                             f"or was killed); resume or rebuild it")
        self._manifest = parse_json(man, f"{self.path}: manifest")
        self._schema, self._core, self._len = schema, schema.core(), n

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
        with h.env.begin(db=h.meta) as txn:
            cur = txn.cursor()
            return read_markers(cur, str(self.path)) if cur.set_range(CHUNK_PREFIX) else {}

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

    def get_batch(self, sample_ids: Sequence[int] | np.ndarray, sections: Iterable[str] | None = None
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Samples ``sample_ids`` (in that order, repeats allowed) as CSR columns, read in one transaction.

        Returns section name -> (indptr int64 [m+1], values), copies that stay valid after
        the reader is closed (the cyclic collector paused meanwhile: :func:`~pipeline.core.gcpause.gc_paused`).
        ``sections`` (an iterable of the schema's section names):
        only those sections (in schema order; repeats ignored), each entry equal to the
        full decode's. When every requested section is a core one (``genes``, ``types``,
        ``node_flips``: :meth:`RecordSchema.core`), the records are read from the ``core``
        database, whose small values hold only those sections: py-lmdb touches one byte of
        every page of each value it returns, so reading ``samples`` faults in whole records
        (~11 KB) on a cold cache (see ``storage_layout.md``). Otherwise the ``samples``
        records are read zero-copy (memoryviews into the map) and only each record's header
        and the requested sections' bytes are copied and decoded. ``None``: every section.

        KeyError if an id is negative, not an integer or absent; ValueError naming the
        unknown names (and the schema's sections) if ``sections`` has any (TypeError if it
        is a single string); StoreError
        naming the sample id on a damaged record (checked whatever ``sections`` is; in
        the database read).
        """
        schema = self.schema
        core = self._core
        if sections is not None:
            try:
                sections = [schema.names[s] for s in schema.positions(sections)]
            except ValueError as e:
                raise ValueError(f"{self.path}: {e}") from None
        use_core = sections is not None and core is not None and set(sections) <= set(core.names)
        h = self._open()
        ids = np.asarray(sample_ids)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0):
            raise KeyError(f"{self.path}: sample ids must be non-negative integers")
        ids = ids.astype(np.uint64, copy=False).ravel()
        keys = sample_keys(ids)
        with gc_paused(), h.env.begin(db=h.core if use_core else h.samples, buffers=True) as txn:
            cur = txn.cursor()
            if hasattr(cur, "getmulti"):
                vals = [v for _, v in cur.getmulti(keys)]
                if len(vals) != len(keys):  # getmulti skips absent keys: find them one by one
                    vals = [txn.get(k) for k in keys]
            else:  # py-lmdb < 1.1
                vals = [txn.get(k) for k in keys]
            if len(vals) != len(keys) or any(v is None for v in vals):
                missing = [int(i) for i, v in zip(ids, vals, strict=True) if v is None]
                raise KeyError(f"{self.path}: no sample(s) {missing[:10]}")
            try:  # copies: valid after the transaction (the memoryviews are not)
                if use_core:  # small values: the whole-record decode (one join) is the cheaper one
                    cols = decode_batch(core, vals, sample_ids=ids)
                    return {name: cols[name] for name in sections}  # type: ignore[union-attr]
                return decode_batch(schema, vals, sample_ids=ids, sections=sections)
            except StoreError as e:
                raise StoreError(f"{self.path}: {e}{' (core database)' if use_core else ''}") from None

    def verify(self) -> list[str]:
        """Recompute every chunk's sha256 (``samples``) and core_sha256 (``core``) from the stored values;
        problems found (empty = ok).

        Also reports chunks whose id ranges overlap and, when nothing else is wrong,
        records (of either database) that belong to no chunk.
        """
        h = self._open()
        chunks = self.chunks()
        problems = _overlaps(chunks)
        if h.core is None:
            return [*problems, "no 'core' database"]
        dbs = ((h.samples, "sha256", ""), (h.core, "core_sha256", " in core"))
        covered = [0, 0]
        with h.env.begin(buffers=True) as txn:
            for c, mk in sorted(chunks.items()):
                for i, (db, field, where) in enumerate(dbs):
                    got, problem = _verify_chunk(txn, db, c, mk, field, where)
                    covered[i] += got
                    if problem is not None:
                        problems.append(problem)
            entries = [int(txn.stat(db)["entries"]) for db, _, _ in dbs]
        if not problems:
            problems += [f"{e - n} record(s){where} belong to no chunk"
                         for e, n, (_, _, where) in zip(entries, covered, dbs, strict=True) if e != n]
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
