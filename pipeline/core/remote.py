"""Stores at fsspec URLs (``s3://bucket/...``): where a location is, publishing, reading through a local cache.

A *location* is a local :class:`~pathlib.Path` or a URL string; a URL never goes through
``pathlib.Path`` (``Path("s3://b/x")`` is the LOCAL path ``s3:/b/x``). :func:`location`
tells them apart and refuses what it cannot serve: an unknown scheme, a scheme whose
fsspec implementation is not installed, or a path that is a URL mangled by ``Path``.

Writing: a store is built in a local folder (the same code, locks and atomic publish as a
local build) and then copied to its URL by :func:`publish_tree`, all or nothing for
readers: the old store's *marker* (the top-level file holding the manifest: root
``zarr.json``, ``dataset/manifest.json``) is deleted first, every file the manifest lists
is uploaded with its CRC-32 checked against the manifest as it is read, the remote sizes
are compared with the local ones, files of an earlier version are removed, and the marker
is written LAST. A store whose upload stopped part-way has no marker and does not open.

Reading: zarr stores open read-only through zarr's :class:`~zarr.storage.FsspecStore`;
with a :class:`ChunkCache`, every file is fetched once, checked against its manifest
CRC-32 and kept in a local folder bounded in bytes (least recently used evicted first),
written by temporary file + rename under content-addressed names, so several DataLoader
workers share it safely. Credentials and endpoints come from the standard variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...), fsspec's
``FSSPEC_S3_*`` configuration, or ``PIPELINE_STORAGE_OPTIONS`` (JSON ``storage_options``).

>>> location("data/processed"), location("s3://bucket/builds/")
(PosixPath('data/processed'), 's3://bucket/builds')
>>> location(Path("s3://bucket/x"))
Traceback (most recent call last):
...
ValueError: path s3:/bucket/x: a URL that went through pathlib.Path (give it as the string 's3://bucket/...')
>>> join("s3://b/x", "graph.zarr"), join(Path("o"), "graph.zarr")
('s3://b/x/graph.zarr', PosixPath('o/graph.zarr'))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.digests import crc32, file_crc32
from pipeline.core.errors import StoreError

log = logging.getLogger("pipeline.remote")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_MANGLED = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):$")
CACHE_ENV, CACHE_BYTES_ENV, OPTIONS_ENV = "PIPELINE_CACHE_DIR", "PIPELINE_CACHE_BYTES", "PIPELINE_STORAGE_OPTIONS"
DEFAULT_CACHE_BYTES = 4 << 30
#: Bytes read into memory per upload batch (files are uploaded concurrently within a batch).
_BATCH_BYTES = 256 << 20
#: The top-level files that hold a store's manifest: written last, read first.
ZARR_MARKER, DATASET_MARKER = "zarr.json", "manifest.json"

Location = Path | str


def _known(protocol: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return protocol in known_implementations or protocol in registry


# Filesystem instances (and their HTTP sessions) a forked child inherits: kept referenced there, never
# used or closed (the sockets are the parent's); otherwise fsspec drops them in the child and aiohttp
# logs "Unclosed client session" for each as it is collected. DataLoader workers end with os._exit.
_inherited: list[Any] = []


def _hold_instances() -> None:
    fsspec = sys.modules.get("fsspec")
    if fsspec is None:
        return
    todo = [fsspec.AbstractFileSystem]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        _inherited.extend(getattr(cls, "_cache", {}).values())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_hold_instances, after_in_parent=_inherited.clear)


def is_url(value: object) -> bool:
    """Whether ``value`` is a URL string with a scheme (``s3://...``, ``memory://...``)."""
    return isinstance(value, str) and _SCHEME.match(value) is not None


def local_path(value: str | Path, what: str) -> Path:
    """``value`` as a local :class:`Path`; a URL (or one mangled by ``Path``) is a ValueError naming
    ``what``: inputs are read from local files.

    >>> local_path("genes.tsv", "--genes")
    PosixPath('genes.tsv')
    >>> local_path("s3://b/genes.tsv", "--genes")
    Traceback (most recent call last):
    ...
    ValueError: --genes s3://b/genes.tsv: read from a local file; copy it to this machine first
    """
    try:
        where = location(value, what)
    except ValueError as e:
        if isinstance(value, Path):
            raise
        raise ValueError(f"{what} {value}: read from a local file; copy it to this machine first") from e
    if isinstance(where, str):
        raise ValueError(f"{what} {where}: read from a local file; copy it to this machine first")
    return where


def location(value: str | Path, what: str = "path") -> Location:
    """A local :class:`Path`, or a URL string (no trailing slash) for a scheme fsspec can serve.

    ``file://`` URLs are local paths. ValueError naming ``what`` for an unknown scheme, a
    missing fsspec implementation (``pip install s3fs``) or a URL already mangled by ``Path``.
    """
    if isinstance(value, Path):
        parts = value.parts
        m = _MANGLED.match(parts[0]) if parts else None
        if m and _known(m.group(1).lower()):
            raise ValueError(f"{what} {value}: a URL that went through pathlib.Path "
                             f"(give it as the string '{m.group(1)}://{'/'.join(parts[1:2])}/...')")
        return value
    text = str(value)
    m = _SCHEME.match(text)
    if m is None:
        return location(Path(text), what)
    proto = m.group(1).lower()
    if proto in ("file", "local"):
        return Path(text[m.end():] or "/")
    if not _known(proto):
        raise ValueError(f"{what} {text}: unknown URL scheme {proto!r} (fsspec knows s3://, gs://, az://, "
                         "memory://, ...)")
    import fsspec

    try:
        fsspec.get_filesystem_class(proto)
    except ImportError as e:
        raise ValueError(f"{what} {text}: the fsspec implementation of {proto}:// is not installed ({e})") from None
    return text.rstrip("/")


def join(base: Location, *parts: str) -> Location:
    """``base / parts`` for a path, ``base/parts`` joined with ``/`` for a URL."""
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return "/".join([base.rstrip("/"), *parts])


def storage_options() -> dict[str, Any]:
    """fsspec ``storage_options`` from ``PIPELINE_STORAGE_OPTIONS`` (JSON); empty: the defaults
    (botocore's ``AWS_*`` variables, fsspec's ``FSSPEC_<PROTOCOL>_*`` configuration)."""
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{OPTIONS_ENV}: expected a JSON object of fsspec storage_options: {e}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{OPTIONS_ENV}: expected a JSON object, got {type(opts).__name__}")
    return opts


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) of a URL."""
    import fsspec

    for name in ("botocore", "aiobotocore", "s3fs"):  # their INFO lines name credential sources on every client
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    return fsspec.core.url_to_fs(url, **storage_options())


def cache_root() -> Path:
    """Where local copies of remote builds live: ``$PIPELINE_CACHE_DIR``, else ``~/.cache/yeast-pipeline``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "yeast-pipeline"


def staging_root(url: str) -> Path:
    """The local folder a build for ``--out URL`` is built in before it is published (kept, so
    that a rerun is up to date locally and publishes nothing new)."""
    return cache_root() / "staging" / hashlib.sha256(url.encode()).hexdigest()[:16]


def manifest_files(marker: str, body: bytes) -> dict[str, str]:
    """The ``files`` (POSIX path -> CRC-32) of a store's manifest, from its marker file's bytes."""
    doc = json.loads(body)
    m = doc.get("attributes", {}).get("manifest", {}) if marker == ZARR_MARKER else doc
    files = m.get("files")
    if not isinstance(files, dict):
        raise StoreError(f"{marker}: no file checksums in the manifest (incomplete store, or published by an older "
                         "version): rebuild it")
    return dict(files)


# --- publishing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """The outcome of :func:`publish_tree`: where, how many files and bytes, and whether anything was uploaded."""

    url: str
    files: int
    bytes: int
    uploaded: bool


def _remote_sizes(fs: Any, root: str) -> dict[str, int]:
    fs.invalidate_cache(root)
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    prefix = root.rstrip("/") + "/"
    return {p[len(prefix):]: int(info.get("size") or 0) for p, info in found.items()
            if p.startswith(prefix) and info.get("type", "file") == "file"}


def publish_tree(local: Path, url: str, marker: str) -> Published:
    """Copy the published local store ``local`` to ``url`` (see the module docstring): the marker last.

    A remote copy whose marker and file sizes already equal the local store is left as it is
    (``uploaded=False``). StoreError when a local file differs from its manifest CRC-32, or a
    remote size from the local one after the upload (the marker is then not written).
    """
    fs, root = filesystem(url)
    body = (local / marker).read_bytes()
    files = manifest_files(marker, body)
    sizes = {rel: (local / rel).stat().st_size for rel in files}
    total = sum(sizes.values())
    have = _remote_sizes(fs, root)
    with contextlib.suppress(FileNotFoundError):
        if have.get(marker) == len(body) and all(have.get(r) == s for r, s in sizes.items()) \
                and fs.cat_file(f"{root}/{marker}") == body:
            log.info("%s is already published (same manifest, %d files): nothing uploaded", url, len(files))
            return Published(url, len(files), total, False)
    if marker in have:  # from here on the old version no longer reads as a store
        fs.rm_file(f"{root}/{marker}")
    batch: dict[str, bytes] = {}
    size = 0
    for rel in sorted(files):
        data = (local / rel).read_bytes()
        if crc32(data) != files[rel]:
            raise StoreError(f"{local / rel}: differs from its manifest checksum; run python -m pipeline.verify "
                             f"{local} (nothing more published to {url})")
        batch[f"{root}/{rel}"] = data
        size += len(data)
        if size >= _BATCH_BYTES:
            fs.pipe(batch)
            batch, size = {}, 0
    if batch:
        fs.pipe(batch)
    now = _remote_sizes(fs, root)
    wrong = [rel for rel, s in sizes.items() if now.get(rel) != s]
    if wrong:
        raise StoreError(f"{url}: {len(wrong)} file(s) not stored as uploaded (first: {wrong[0]}, "
                         f"{now.get(wrong[0])} bytes for {sizes[wrong[0]]}); not published, rerun the build")
    stale = sorted(set(now) - set(files) - {marker})
    if stale:
        fs.rm([f"{root}/{rel}" for rel in stale])
    fs.pipe_file(f"{root}/{marker}", body)
    fs.invalidate_cache(root)
    log.info("published %s: %d files, %.1f MB (%d stale files of an earlier version removed)",
             url, len(files) + 1, (total + len(body)) / 1e6, len(stale))
    return Published(url, len(files), total, True)


def download_tree(url: str, dest: Path) -> int:
    """Every file under ``url`` (as stored, damaged or not) into the new folder ``dest``; returns the count."""
    fs, root = filesystem(url)
    rels = sorted(_remote_sizes(fs, root))
    for i in range(0, len(rels), 64):
        part = rels[i:i + 64]
        got = fs.cat([f"{root}/{rel}" for rel in part], on_error="raise")
        for rel in part:
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(got[f"{root}/{rel}"])
    return len(rels)


def check_reachable(url: str) -> None:
    """StoreError, before anything is built, when the bucket of ``url`` is missing or unreachable
    (no credentials, a wrong endpoint)."""
    fs, root = filesystem(url)
    bucket = root.strip("/").split("/", 1)[0] if not root.startswith("/") else ""
    if not bucket:
        return  # a file-system-like store (memory://): nothing to check
    try:
        fs.ls(bucket)  # unlike exists(), names why (no such bucket, denied, no endpoint)
    except FileNotFoundError:
        raise StoreError(f"{url}: bucket {bucket!r} does not exist; create it first") from None
    except Exception as e:  # noqa: BLE001 - botocore/aiohttp raise many types
        raise StoreError(f"{url}: cannot use the object store ({type(e).__name__}: {e}); check AWS_ENDPOINT_URL "
                         "and the credentials") from None


def exists(url: str) -> bool:
    fs, root = filesystem(url)
    return bool(fs.exists(root))


def read_marker(url: str, marker: str, kind: str) -> bytes:
    """The marker file of the store at ``url``; StoreError when there is none (missing or incomplete)."""
    fs, root = filesystem(url)
    try:
        return fs.cat_file(f"{root}/{marker}")
    except FileNotFoundError:
        raise StoreError(f"{url}: no {kind} here (no {marker}: missing, or its upload did not finish)") from None


# --- the local cache -----------------------------------------------------------------------------------------------


class ChunkCache:
    """A local folder of remote files, at most ``max_bytes`` (within one file), least recently used evicted.

    Entries are named by a hash of (what, CRC-32): a changed file gets a new name, so an entry
    is written once and never changed (temporary file + rename: readers see all of it or
    nothing), and processes sharing the folder need no lock. Every entry is checked against
    its CRC-32 when fetched and once per process when first read from the cache (a damaged
    one is fetched again). Recency is an entry's mtime, set when a process first uses it.
    """

    def __init__(self, directory: str | Path | None = None, max_bytes: int | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_root() / "chunks"
        env = os.environ.get(CACHE_BYTES_ENV)
        self.max_bytes = int(max_bytes if max_bytes is not None else env if env else DEFAULT_CACHE_BYTES)
        if self.max_bytes < 1:
            raise ValueError(f"cache_bytes must be >= 1, got {self.max_bytes}")
        self._checked: set[str] = set()
        self._approx: int | None = None
        self.hits = self.misses = 0
        # URL -> the root zarr.json first opened through this cache: the version a stream validated,
        # reused by its workers (which then open the store without a request when the cache is warm)
        self.markers: dict[str, bytes] = {}

    def __getstate__(self) -> dict[str, Any]:  # a worker starts with its own checks and counts
        return {"directory": self.directory, "max_bytes": self.max_bytes, "markers": self.markers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], state["max_bytes"])  # type: ignore[misc]
        self.markers = dict(state["markers"])

    def entry(self, ident: str, crc: str) -> Path:
        name = f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}-{crc}"
        return self.directory / name[:2] / name

    def lookup(self, ident: str, crc: str) -> Path | None:
        """The cached copy of ``ident`` with checksum ``crc``, or None (absent, or damaged: removed)."""
        path = self.entry(ident, crc)
        key = path.name
        if key in self._checked:
            return path if path.exists() else None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if crc32(data) != crc:
            log.warning("cached copy of %s differs from its checksum %s: fetched again", ident, crc)
            path.unlink(missing_ok=True)
            return None
        self._checked.add(key)
        with contextlib.suppress(OSError):
            os.utime(path)
        self.hits += 1
        return path

    def put(self, ident: str, crc: str, data: bytes) -> Path:
        """Store fetched bytes (StoreError if they differ from ``crc``: a damaged remote file)."""
        have = crc32(data)
        if have != crc:
            raise StoreError(f"{ident}: fetched bytes differ from the manifest checksum (stored {crc}, "
                             f"fetched {have}); run python -m pipeline.verify on the store")
        path = self.entry(ident, crc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self._checked.add(path.name)
        self.misses += 1
        if self._approx is None:
            self._approx = self.size()
        else:
            self._approx += len(data)
        if self._approx > self.max_bytes:
            self._approx = self.evict(keep=path)
        return path

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        if not self.directory.is_dir():
            return out
        for sub in os.scandir(self.directory):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                if e.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = e.stat()
                    size = st.st_size if not e.is_dir() else sum(f.stat().st_size for f in Path(e.path).rglob("*")
                                                                  if f.is_file())
                    out.append((st.st_mtime, size, Path(e.path)))
        return out

    def size(self) -> int:
        """Bytes held now (every process's entries)."""
        return sum(s for _, s, _ in self._entries())

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used entries until at most ``max_bytes`` remain; returns the bytes left."""
        entries = sorted(self._entries(), key=lambda e: e[0])
        total = sum(s for _, s, _ in entries)
        for _, s, p in entries:
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)  # a reader with it open keeps its bytes (POSIX)
            self._checked.discard(p.name)
            total -= s
        return total


def _read_range(path: Path, byte_range: Any) -> bytes:
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    with open(path, "rb") as fh:
        if byte_range is None:
            return fh.read()
        if isinstance(byte_range, RangeByteRequest):
            fh.seek(byte_range.start)
            return fh.read(byte_range.end - byte_range.start)
        if isinstance(byte_range, OffsetByteRequest):
            fh.seek(byte_range.offset)
            return fh.read()
        if isinstance(byte_range, SuffixByteRequest):
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - byte_range.suffix))
            return fh.read()
    raise TypeError(f"unexpected byte range {byte_range!r}")


def _cached_store_class() -> type:
    """:class:`CachedStore`, defined on first use (zarr is imported lazily)."""
    global _CachedStore
    if _CachedStore is not None:
        return _CachedStore
    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.storage import WrapperStore

    class CachedStore(WrapperStore):
        """A read-only zarr store over a remote published store: every file fetched once into a
        :class:`ChunkCache`; keys the manifest does not list do not exist (no request made)."""

        def __init__(self, store: Any, *, url: str, files: dict[str, str], root_meta: bytes,
                     cache: ChunkCache) -> None:
            super().__init__(store)
            self.url, self.files, self.root_meta, self.cache = url, files, root_meta, cache

        def _with_store(self, store: Any) -> CachedStore:
            return type(self)(store, url=self.url, files=self.files, root_meta=self.root_meta, cache=self.cache)

        async def _local(self, key: str, prototype: BufferPrototype) -> Path:
            ident, crc = f"{self.url}/{key}", self.files[key]
            path = self.cache.lookup(ident, crc)
            if path is None:
                buf = await self._store.get(key, prototype)
                if buf is None:
                    raise StoreError(f"{ident}: listed in the manifest but missing from the store")
                path = self.cache.put(ident, crc, buf.to_bytes())
            return path

        async def get(self, key: str, prototype: BufferPrototype,
                      byte_range: ByteRequest | None = None) -> Buffer | None:
            if key == ZARR_MARKER:
                data = self.root_meta if byte_range is None else None
                if data is None:
                    raise ValueError("byte ranges of the root zarr.json are not served")
                return prototype.buffer.from_bytes(data)
            if key not in self.files:
                return None
            try:
                data = _read_range(await self._local(key, prototype), byte_range)
            except FileNotFoundError:  # evicted by another process meanwhile: fetch again
                self.cache._checked.discard(self.cache.entry(f"{self.url}/{key}", self.files[key]).name)
                data = _read_range(await self._local(key, prototype), byte_range)
            return prototype.buffer.from_bytes(data)

        def local_file(self, key: str) -> Path | None:
            """The local cached copy of ``key``, fetched into the cache on a miss (synchronously); None for
            a key the manifest does not list (an absent chunk: it reads as the fill value). For readers that
            read chunk files themselves (:class:`pipeline.core.chunkio.DirectArray`)."""
            if key not in self.files:
                return None
            from zarr.core.buffer import default_buffer_prototype
            from zarr.core.sync import sync

            path = self.cache.lookup(f"{self.url}/{key}", self.files[key])  # a hit needs no event loop
            if path is None:
                path = sync(self._local(key, default_buffer_prototype()))
            if not path.exists():  # evicted by another process meanwhile: fetch again
                self.cache._checked.discard(path.name)
                path = sync(self._local(key, default_buffer_prototype()))
            return path

        async def get_partial_values(self, prototype: BufferPrototype,
                                     key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
            return [await self.get(k, prototype, r) for k, r in key_ranges]

        async def exists(self, key: str) -> bool:
            return key == ZARR_MARKER or key in self.files

        def _keys(self) -> list[str]:
            return [ZARR_MARKER, *self.files]

        async def list(self) -> AsyncIterator[str]:
            for k in self._keys():
                yield k

        async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            for k in self._keys():
                if k.startswith(prefix):
                    yield k

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            prefix = prefix.rstrip("/")
            base = f"{prefix}/" if prefix else ""
            seen = set()
            for k in self._keys():
                if k.startswith(base):
                    child = k[len(base):].split("/", 1)[0]
                    if child not in seen:
                        seen.add(child)
                        yield child

    _CachedStore = CachedStore
    return CachedStore


_CachedStore: type | None = None


def open_zarr_group(url: str, kind: str, cache: ChunkCache | None = None) -> Any:
    """The root group of the zarr store at ``url``, read-only (through ``cache`` when given).

    StoreError when the store has no root ``zarr.json`` (missing, or its upload did not finish). With a
    cache, the root ``zarr.json`` is fetched once per cache object and kept with it (see
    :attr:`ChunkCache.markers`): a stream's workers open the version the stream opened."""
    import zarr
    from zarr.storage import FsspecStore

    meta = cache.markers.get(url) if cache is not None else None
    if meta is None:
        meta = read_marker(url, ZARR_MARKER, kind)
        if cache is not None:
            cache.markers[url] = meta
    store = FsspecStore.from_url(url, storage_options=storage_options() or None, read_only=True)
    if cache is not None:
        try:
            files = manifest_files(ZARR_MARKER, meta)
        except (StoreError, ValueError):
            files = None  # no manifest: opened plainly, so that the caller says what is wrong
        if files is not None:
            store = _cached_store_class()(store, url=url, files=files, root_meta=meta, cache=cache)
    return zarr.open_group(store, mode="r")


def fetch_tree(url: str, files: dict[str, str], cache: ChunkCache, extra: dict[str, bytes]) -> Path:
    """A local folder holding every file of the store at ``url`` (each checked against ``files``),
    plus ``extra`` (name -> bytes, e.g. its marker): one cache entry, shared and evicted as a whole."""
    ident = hashlib.sha256(json.dumps([url, files, sorted(extra)], sort_keys=True).encode()).hexdigest()
    path = cache.entry(url, ident[:8]).with_suffix(".d")
    if path.is_dir():
        if path.name in cache._checked or all(
                (path / rel).is_file() and file_crc32(path / rel) == crc for rel, crc in files.items()):
            cache._checked.add(path.name)
            with contextlib.suppress(OSError):
                os.utime(path)
            cache.hits += 1
            return path
        log.warning("cached copy of %s differs from its checksums: fetched again", url)
        shutil.rmtree(path, ignore_errors=True)
    fs, root = filesystem(url)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        for rel, crc in sorted(files.items()):
            data = fs.cat_file(f"{root}/{rel}")
            if crc32(data) != crc:
                raise StoreError(f"{url}/{rel}: fetched bytes differ from the manifest checksum {crc}; run "
                                 f"python -m pipeline.verify {url}")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        for name, data in extra.items():
            (tmp / name).write_bytes(data)
        try:
            os.rename(tmp, path)
        except OSError:  # another process published the same entry first: use theirs
            if not path.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    cache.misses += 1
    return path
