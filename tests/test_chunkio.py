"""The direct chunk reader (:mod:`pipeline.core.chunkio`) against zarr itself, for every codec chain the
project writes: random selections equal ``arr[sel]``, chunks are decoded once, damage is one StoreError."""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec, ShardingCodec, TransposeCodec, ZstdCodec

from pipeline.core import chunkio, remote
from pipeline.core.chunkio import DirectArray
from pipeline.core.digests import file_crc32
from pipeline.core.errors import StoreError
from pipeline.core.remote import ChunkCache
from pipeline.precompute.store import BITS_CODEC, IDS_CODEC, MASK_CODEC


@dataclass(frozen=True)
class Config:
    """One array layout: ``shards`` None is unsharded; ``serializer`` overrides sharding (index at the start)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    compressor: Any
    fill: Any = 0
    serializer: Any = "auto"
    separator: str = "/"


CONFIGS = [
    Config("ids-1d-int32", "int32", (1000,), (64,), None, IDS_CODEC),
    Config("ids-1d-int64-sharded", "int64", (1000,), (32,), (128,), IDS_CODEC),
    Config("mask-2d-uint8-sharded", "uint8", (300, 37), (32, 37), (128, 37), MASK_CODEC),
    Config("bits-2d-uint8", "uint8", (300, 37), (50, 10), None, BITS_CODEC, separator="."),
    Config("plain-2d-float32", "float32", (70, 9), (16, 4), None, None, fill=1.5),
    Config("plain-2d-float32-sharded", "float32", (70, 9), (8, 4), (16, 8), None, fill=-2.0),
    Config("rows-3d-int32-sharded", "int32", (3, 40, 5), (1, 8, 5), (1, 32, 5), IDS_CODEC, fill=-1),
    Config("negatives-4d-int32-sharded", "int32", (2, 50, 6, 4), (1, 8, 6, 4), (1, 24, 6, 4), IDS_CODEC, fill=-1),
    Config("zstd-4d-int64", "int64", (3, 5, 4, 6), (2, 2, 3, 4), None, ZstdCodec(level=1), fill=7),
    Config("zstd-1d-uint8-sharded", "uint8", (500,), (16,), (64,), ZstdCodec(level=3)),
    Config("bits-2d-uint8-index-start", "uint8", (200, 12), (64, 12), None, None, serializer=ShardingCodec(
        chunk_shape=(16, 12), codecs=[BytesCodec(), BITS_CODEC], index_location="start")),
]


def _create(where: Any, c: Config) -> zarr.Array:
    return zarr.create_array(where, shape=c.shape, dtype=c.dtype, chunks=c.chunks, shards=c.shards,
                             compressors=c.compressor,
                             serializer=c.serializer, fill_value=c.fill,
                             chunk_key_encoding={"name": "default", "separator": c.separator})


def _data(c: Config, rng: np.random.Generator) -> np.ndarray:
    """Random values, with inner chunk 1 along the longest axis and the last shard (or chunk) there left at the
    fill value: zarr then writes no file for them (never-written chunks, empty inner chunks of a shard)."""
    dtype = np.dtype(c.dtype)
    data = rng.integers(0, 200, c.shape).astype(dtype) if dtype.kind != "f" else rng.random(c.shape, dtype)
    inner = c.serializer.chunk_shape if c.serializer != "auto" else c.chunks
    outer = c.shards or c.chunks
    axis = int(np.argmax([n // i for n, i in zip(c.shape, inner, strict=True)]))
    cut = [slice(None)] * len(c.shape)
    cut[axis] = slice(inner[axis], 2 * inner[axis])
    data[tuple(cut)] = c.fill
    cut[axis] = slice((c.shape[axis] - 1) // outer[axis] * outer[axis], None)
    data[tuple(cut)] = c.fill
    return data


def _selections(shape: tuple[int, ...], rng: np.random.Generator, n: int) -> list[tuple[Any, ...]]:
    """Random selections of ints (negative too) and step-1 slices (empty, open, past the ends); trailing
    axes sometimes left out."""
    out: list[tuple[Any, ...]] = [(), tuple(slice(None) for _ in shape), tuple(slice(0, 0) for _ in shape)]
    while len(out) < n:
        sel: list[Any] = []
        for size in shape[:rng.integers(1, len(shape) + 1)]:
            if rng.random() < 0.2:
                sel.append(int(rng.integers(-size, size)))
                continue
            a, b = (int(v) for v in rng.integers(-size - 2, size + 3, 2))
            sel.append(slice(None if rng.random() < 0.15 else a, None if rng.random() < 0.15 else b))
        out.append(tuple(sel))
    return out


def _assert_reads_equal(d: DirectArray, arr: zarr.Array, sels: list[tuple[Any, ...]]) -> None:
    for sel in sels:
        got, want = d.read(*sel), np.asarray(arr[sel if sel else ...])
        assert got.shape == want.shape and got.dtype == want.dtype, sel
        np.testing.assert_array_equal(got, want, err_msg=str(sel))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "zarr.json")


def _empty_inner_chunks(d: DirectArray, root: Path) -> int:
    """Entries of the shard indexes under ``root`` that mark an empty inner chunk."""
    lay, n = d._layout, d._layout.index_bytes
    heads = [p.read_bytes()[-n:] if lay.index_at == "end" else p.read_bytes()[:n] for p in _files(root)]
    return sum(int((np.frombuffer(h, "<u8", count=n // 8).reshape(-1, 2) == 2**64 - 1).all(1).sum()) for h in heads)


@pytest.mark.parametrize("c", CONFIGS, ids=[c.name for c in CONFIGS])
def test_reads_equal_zarr(c, tmp_path):
    rng = np.random.default_rng(len(c.name))
    arr = _create(tmp_path / "a", c)
    arr[...] = _data(c, rng)
    d = DirectArray.of(arr)
    assert d.direct and d.shape == c.shape and d.dtype == np.dtype(c.dtype)
    grid = np.prod([-(-n // o) for n, o in zip(c.shape, c.shards or c.chunks, strict=True)])
    assert len(_files(tmp_path / "a")) < grid  # some chunk (shard) files were never written
    assert not d._layout.index_at or _empty_inner_chunks(d, tmp_path / "a") > 0
    _assert_reads_equal(d, arr, _selections(c.shape, rng, 60))
    # the same through a fresh reader (an empty cache: chunks read whole and in part come from the files)
    _assert_reads_equal(DirectArray.of(arr), arr, _selections(c.shape, rng, 20))


def test_bad_selections_are_index_errors(tmp_path):
    d = DirectArray.of(_create(tmp_path / "a", CONFIGS[2]))
    for sel in [(300,), (-301,), (0, 0, 0), (slice(0, 10, 2),), (True,)]:
        with pytest.raises(IndexError):
            d.read(*sel)


def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    opened: list[Path] = []
    real = chunkio._open

    def spy(path: Path) -> Any:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(chunkio, "_open", spy)
    return opened


@pytest.mark.parametrize("c", [CONFIGS[0], CONFIGS[1]], ids=["unsharded", "sharded"])
def test_a_chunk_read_in_parts_is_decoded_once(c, tmp_path, monkeypatch):
    arr = _create(tmp_path / "a", c)
    arr[...] = np.arange(1000)
    opened = _counting_opens(monkeypatch)
    d = DirectArray.of(arr)
    assert d.read(slice(3, 10)).tolist() == list(range(3, 10))
    assert len(opened) == 1
    assert d.read(slice(10, 20)).tolist() == list(range(10, 20))  # same chunk (and shard index): from the cache
    assert d.read(slice(0, 3)).tolist() == [0, 1, 2]
    assert len(opened) == 1
    assert d.read(slice(70, 80)).tolist() == list(range(70, 80))  # another chunk (of the same shard when sharded)
    assert len(opened) == 2
    assert d.read(slice(0, 3)).tolist() == [0, 1, 2]
    assert len(opened) == 2
    for n in (3, 4):  # chunks read whole go straight into the output and are not kept
        assert d.read(slice(128, 192)).tolist() == list(range(128, 192))
        assert len(opened) == n


def test_cache_is_bounded_and_keeps_the_last_chunk(tmp_path, monkeypatch):
    arr = _create(tmp_path / "a", CONFIGS[0])  # int32 chunks of 64: 256 bytes decoded
    arr[...] = np.arange(1000)
    opened = _counting_opens(monkeypatch)
    d = DirectArray.of(arr, cache_bytes=600)  # two chunks fit, not three
    for a in (0, 64, 128):
        d.read(slice(a + 1, a + 2))
    assert len(opened) == 3 and d._held <= 600
    d.read(slice(129, 130))
    d.read(slice(65, 66))
    assert len(opened) == 3  # the two most recent are kept
    d.read(slice(1, 2))
    assert len(opened) == 4  # the oldest was evicted
    tiny = DirectArray.of(arr, cache_bytes=1)
    tiny.read(slice(1, 2))
    tiny.read(slice(2, 3))
    assert len(opened) == 5 and len(tiny._cache) == 1  # larger than the bound, still kept


def test_threads_share_one_reader(tmp_path):
    c = CONFIGS[7]
    arr = _create(tmp_path / "a", c)
    arr[...] = _data(c, np.random.default_rng(1))
    want = arr[...]
    d = DirectArray.of(arr, cache_bytes=2_000)  # two chunks: eviction while reading
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(150):
                e, s = int(rng.integers(0, 2)), int(rng.integers(0, 50))
                n = int(rng.integers(1, 20))
                np.testing.assert_array_equal(d.read(e, slice(s, s + n)), want[e, s:s + n])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("how", ["transpose", "memory-store", "zarr-v2", "gzip"])
def test_unsupported_arrays_read_through_zarr(how, tmp_path):
    shape, kw = (40, 6), {"dtype": "int32", "chunks": (16, 4), "fill_value": 3}
    if how == "transpose":
        arr = zarr.create_array(tmp_path / "a", shape=shape, filters=[TransposeCodec(order=(1, 0))], **kw)
    elif how == "memory-store":
        arr = zarr.create_array(zarr.storage.MemoryStore(), shape=shape, compressors=IDS_CODEC, **kw)
    elif how == "zarr-v2":
        arr = zarr.create_array(tmp_path / "a", shape=shape, zarr_format=2, **kw)
    else:
        arr = zarr.create_array(tmp_path / "a", shape=shape, compressors=zarr.codecs.GzipCodec(), **kw)
    arr[:20] = np.arange(120).reshape(20, 6)
    d = DirectArray.of(arr)
    assert not d.direct
    _assert_reads_equal(d, arr, _selections(shape, np.random.default_rng(0), 15))


def test_pickled_reader_reads_the_same(tmp_path):
    arr = _create(tmp_path / "a", CONFIGS[1])
    arr[...] = np.arange(1000)
    d = DirectArray.of(arr)
    d.read(slice(1, 2))
    copy = pickle.loads(pickle.dumps(d))
    assert copy.direct and not copy._cache and copy.read(slice(990, None)).tolist() == list(range(990, 1000))


# --- damage ---------------------------------------------------------------------------------------------------


def _damaged(tmp_path: Path, c: Config, damage: Any) -> tuple[DirectArray, Path]:
    arr = _create(tmp_path / "a", c)
    arr[...] = np.arange(int(np.prod(c.shape))).reshape(c.shape).astype(c.dtype)
    path = _files(tmp_path / "a")[0]
    damage(path)
    return DirectArray.of(arr), path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _flip_last_index_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40  # in the offsets table, before the 4 checksum bytes
    path.write_bytes(bytes(data))


def _scramble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[16:] = bytes(range(256)) * (len(data[16:]) // 256) + bytes(len(data[16:]) % 256)
    data[4:8] = b"\xff\xff\xff\x00"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("c", "damage", "what"), [
    (CONFIGS[0], _truncate, "truncated"),
    (CONFIGS[4], _truncate, "truncated"),
    (CONFIGS[1], _truncate, "crc32c"),  # the index at the end moved: its checksum no longer matches
    (CONFIGS[1], _flip_last_index_byte, "crc32c"),
    (CONFIGS[10], _truncate, "truncated"),  # index at the start: the last inner chunk runs past the end
    (CONFIGS[0], _scramble, "decompresses to"),
    (CONFIGS[8], _scramble, "does not decompress"),
], ids=["blosc-truncated", "plain-truncated", "shard-truncated", "shard-index-flipped", "shard-start-truncated",
        "blosc-header", "zstd-garbage"])
def test_damage_is_one_store_error_naming_the_file(c, damage, what, tmp_path):
    d, path = _damaged(tmp_path, c, damage)
    with pytest.raises(StoreError) as e:
        d.read()
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and what in msg and "python -m pipeline.verify" in msg and "\n" not in msg


# --- through the chunk cache of a remote store ----------------------------------------------------------------


def _cached_group(tmp_path: Path, c: Config, data: np.ndarray, unlisted: str | None = None) -> tuple[Any, Path]:
    """A published-looking store (root zarr.json with the manifest's ``files``) opened through a
    ``CachedStore`` over its LocalStore, as :func:`remote.open_zarr_group` opens a remote one."""
    src = tmp_path / "src"
    zarr.open_group(src, mode="w")
    arr = _create(src / "a", c)
    arr[...] = data
    files = {p.relative_to(src).as_posix(): file_crc32(p) for p in src.rglob("*") if p.is_file()}
    del files["zarr.json"]
    if unlisted is not None:
        del files[unlisted]
    meta = json.loads((src / "zarr.json").read_bytes())
    meta.setdefault("attributes", {})["manifest"] = {"files": files}
    store = remote._cached_store_class()(zarr.storage.LocalStore(src, read_only=True), url="s3://bucket/p.zarr",
                                         files=files, root_meta=json.dumps(meta).encode(),
                                         cache=ChunkCache(tmp_path / "cache", 1 << 20))
    return zarr.open_group(store, mode="r"), src


def test_reads_through_the_chunk_cache(tmp_path, monkeypatch):
    c = CONFIGS[2]
    data = _data(c, np.random.default_rng(5))
    unlisted = f"a/c/0/{0}"  # written, but not in the manifest: absent (fill), as zarr reads it there too
    group, src = _cached_group(tmp_path, c, data, unlisted=unlisted)
    arr = group["a"]
    d = DirectArray.of(arr)
    assert d.direct
    opened = _counting_opens(monkeypatch)
    _assert_reads_equal(d, arr, _selections(c.shape, np.random.default_rng(6), 30))
    assert opened and all(str(p).startswith(str(tmp_path / "cache")) for p in opened)  # the cached copies
    assert (d.read(slice(0, 128)) == 0).all()
    evicted: list[Path] = []
    real = chunkio._open

    def evicting(path: Path) -> Any:  # another process evicts the entry between locating and opening it
        if not evicted:
            evicted.append(path)
            path.unlink()
        return real(path)

    monkeypatch.setattr(chunkio, "_open", evicting)
    np.testing.assert_array_equal(DirectArray.of(arr).read(), data * (np.arange(300) >= 128)[:, None])
    assert evicted


def test_damaged_cached_copy_names_the_remote_file(tmp_path):
    c = CONFIGS[1]
    group, _ = _cached_group(tmp_path, c, np.arange(1000))
    d = DirectArray.of(group["a"])
    d.read(slice(0, 1))  # fetched into the cache
    store = group.store
    _flip_last_index_byte(store.cache.entry("s3://bucket/p.zarr/a/c/0", store.files["a/c/0"]))
    with pytest.raises(StoreError, match=r"^s3://bucket/p\.zarr/a/c/0 \(cached copy .*crc32c"):
        DirectArray.of(group["a"]).read()


@pytest.mark.parametrize("c", [CONFIGS[4], CONFIGS[5], CONFIGS[0]], ids=["plain", "plain-sharded", "compressed"])
def test_mapped_chunks_are_the_stored_chunks_without_a_copy(c, tmp_path):
    """``mapped`` views an uncompressed chunk in its file; a write to the view changes neither the file nor
    what the next call returns; compressed and never-written chunks map to None."""
    rng = np.random.default_rng(1)
    arr = _create(tmp_path / "a", c)
    data = _data(c, rng)
    arr[...] = data
    d = DirectArray.of(arr)
    before = {p: p.read_bytes() for p in _files(tmp_path / "a")}
    cells = list(np.ndindex(*[-(-n // i) for n, i in zip(c.shape, d.chunks, strict=True)]))
    seen = 0
    for cell in cells * 2:
        view = d.mapped(*cell)
        box = tuple(slice(i * n, min((i + 1) * n, s)) for i, n, s in zip(cell, d.chunks, c.shape, strict=True))
        if c.compressor is not None or (data[box] == c.fill).all():
            assert view is None or c.compressor is None, cell  # compressed: never mapped
            continue
        assert view is not None and view.shape == d.chunks, cell
        np.testing.assert_array_equal(view[tuple(slice(0, b.stop - b.start) for b in box)], data[box])
        view[...] = 0  # copy-on-write: the file keeps its bytes
        seen += 1
    assert (seen > 0) == (c.compressor is None)
    assert {p: p.read_bytes() for p in _files(tmp_path / "a")} == before


def test_mapped_runs_of_chunks_join_along_an_axis(tmp_path):
    """``mapped(cell, count=k, axis=a)``: k chunks stored back to back in one shard file, joined along ``a``
    (leading chunk axes of length 1); None across shard files, past the array, or along a later axis."""
    c = Config("negs", "uint8", (2, 70, 12), (1, 8, 12), (1, 32, 12), None)
    arr = _create(tmp_path / "a", c)
    data = np.random.default_rng(2).integers(0, 255, c.shape).astype(np.uint8)
    arr[...] = data
    d = DirectArray.of(arr)
    view = d.mapped(1, 0, 0, count=4, axis=1)
    assert view is not None and view.shape == (1, 32, 12)
    np.testing.assert_array_equal(view, data[1:2, 0:32])
    np.testing.assert_array_equal(d.mapped(0, 5, 0, count=3, axis=1), data[0:1, 40:64])
    assert d.mapped(0, 3, 0, count=2, axis=1) is None  # chunks 3 and 4: two shard files
    assert d.mapped(0, 8, 0, count=2, axis=1) is None  # chunk 9 would start past the array
    assert d.mapped(0, 0, 0, count=2, axis=2) is None  # a join after an axis of chunk length 8
