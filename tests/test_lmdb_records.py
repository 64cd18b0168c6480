"""Per-sample LMDB records (pipeline.precompute.records): layout, round trip, resume, kill, fork/spawn, verify,
the ``core`` database (the small sections again, read instead of whole records)."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest

import pipeline.precompute.records.writer as writer_mod
from pipeline.core.errors import StoreError
from pipeline.precompute.records import (
    RecordReader,
    RecordSchema,
    RecordWriter,
    decode_batch,
    decode_record,
    encode_records,
    open_records,
)

REPO = Path(__file__).resolve().parents[1]

SCHEMA = RecordSchema((
    ("genes", np.int32),
    ("types", np.uint8),
    ("big", np.int64),
    ("w", np.float32),
    ("empty", np.uint8),
    ("edges:string12_coexpression", np.int32),
))
#: A precompute-like schema: core sections genes, types, node_flips among others.
SCHEMA_FLIPS = RecordSchema(SCHEMA.sections[:2] + (("node_flips", np.int32),) + SCHEMA.sections[2:])


def make_columns(m: int, seed: int, schema: RecordSchema = SCHEMA) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random CSR columns over m samples; section "empty" is always empty, others sometimes."""
    rng = np.random.default_rng(seed)
    cols = {}
    for name, dt in schema.sections:
        hi = {"genes": 5, "types": 4, "big": 3, "w": 7, "empty": 1}.get(name, 200)
        counts = rng.integers(0, hi, m) if name != "empty" else np.zeros(m, np.int64)
        indptr = np.zeros(m + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        nnz = int(indptr[-1])
        if dt.kind == "f":
            values = rng.standard_normal(nnz).astype(dt)
        elif dt == np.int64:
            values = rng.integers(-(1 << 62), 1 << 62, nnz, dtype=np.int64)
        else:
            info = np.iinfo(dt)
            values = rng.integers(info.min, int(info.max) + 1, nnz, dtype=np.int64).astype(dt)
        cols[name] = (indptr, values)
    return cols


def sample(cols: dict, i: int) -> dict[str, np.ndarray]:
    return {k: v[p[i]:p[i + 1]] for k, (p, v) in cols.items()}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def write_store(path: Path, chunks: list[tuple[int, int, int]], schema: RecordSchema = SCHEMA,
                finish: bool = True) -> dict[int, dict[str, np.ndarray]]:
    """Write chunks (chunk, first id, m) with make_columns(m, seed=chunk); returns id -> expected sections."""
    expected = {}
    w = RecordWriter(path, schema)
    for chunk, first, m in chunks:
        cols = make_columns(m, seed=chunk, schema=schema)
        w.put_chunk(chunk, first, cols)
        for i in range(m):
            expected[first + i] = sample(cols, i)
    if finish:
        w.finish({"note": "test", "chunks": len(chunks)})
    else:
        w.close()
    return expected


def raw_env(path: Path, write: bool = False) -> tuple[lmdb.Environment, object, object]:
    env = lmdb.open(str(path), subdir=True, max_dbs=3, readonly=not write, lock=write)
    return env, env.open_db(b"samples", create=False), env.open_db(b"meta", create=False)


def db_keys(path: Path) -> dict[bytes, list[int]]:
    """The sample ids stored in ``samples`` and in ``core`` (raw LMDB, in cursor order)."""
    env, _, _ = raw_env(path)
    out = {}
    with env.begin() as txn:
        for name in (b"samples", b"core"):
            out[name] = [int.from_bytes(k, "big") for k, _ in txn.cursor(db=env.open_db(name, txn=txn, create=False))]
    env.close()
    return out


# --------------------------------------------------------------------------- encoding


STRUCT_CODES = {("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q", ("u", 1): "B", ("u", 2): "H",
                ("u", 4): "I", ("u", 8): "Q", ("f", 4): "f", ("f", 8): "d", ("b", 1): "?"}


def independent_decode(schema: RecordSchema, buf: bytes) -> dict[str, np.ndarray]:
    """Parse a record by hand from the documented layout (struct only), checking alignment and padding."""
    magic, version, n = struct.unpack_from("<4sHH", buf, 0)
    assert magic == b"YPR1" and version == 1 and n == len(schema.sections)
    counts = struct.unpack_from(f"<{n}I", buf, 8)
    off = 8 + 4 * n
    hdr_end = -(-off // 8) * 8
    assert buf[off:hdr_end] == b"\0" * (hdr_end - off)
    off = hdr_end
    out = {}
    for (name, dt), c in zip(schema.sections, counts, strict=True):
        assert off % 8 == 0, (name, off)
        code = STRUCT_CODES[dt.kind, dt.itemsize]
        size = struct.calcsize("<" + code)
        raw = buf[off:off + c * size]
        assert len(raw) == c * size
        out[name] = np.array(struct.unpack(f"<{c}{code}", raw), dtype=dt)
        end = off + c * size
        off = -(-end // 8) * 8
        assert buf[end:off] == b"\0" * (off - end), f"{name}: padding not zero"
    assert off == len(buf)
    assert len(buf) % 8 == 0
    return out


def test_round_trip_encode_decode():
    m = 50
    cols = make_columns(m, seed=1)
    # some samples with every section empty
    for name, (p, v) in list(cols.items()):
        c = np.diff(p)
        c[[3, 17]] = 0
        p2 = np.zeros(m + 1, np.int64)
        np.cumsum(c, out=p2[1:])
        keep = np.concatenate([v[p[i]:p[i] + c[i]] for i in range(m)]) if c.sum() else v[:0]
        cols[name] = (p2, keep)
    bufs = encode_records(SCHEMA, cols)
    assert len(bufs) == m and all(isinstance(b, bytes) for b in bufs)
    for i, b in enumerate(bufs):
        d = decode_record(SCHEMA, b)
        assert_same(d, sample(cols, i))
        assert_same(independent_decode(SCHEMA, b), sample(cols, i))
        assert not d["genes"].flags.owndata  # zero-copy views
    assert all(decode_record(SCHEMA, bufs[3])[k].size == 0 for k in SCHEMA.names)
    batch = decode_batch(SCHEMA, bufs)
    for name, (p, v) in cols.items():
        np.testing.assert_array_equal(batch[name][0], p)
        np.testing.assert_array_equal(batch[name][1], v)
        assert batch[name][1].dtype == dict(SCHEMA.sections)[name]
    # memoryviews decode as well
    assert_same(decode_record(SCHEMA, memoryview(bufs[5])), sample(cols, 5))
    empty = decode_batch(SCHEMA, [])
    assert all(p.tolist() == [0] and v.size == 0 for p, v in empty.values())


def test_long_sections_and_offset_indptr():
    """Long runs (copied run by run) and CSR slices whose indptr does not start at 0."""
    schema = RecordSchema((("ids", np.int32), ("bits", np.uint8), ("x", np.float32)))
    rng = np.random.default_rng(3)
    m = 20
    cols = {}
    for name, dt in schema.sections:
        c = rng.integers(100, 900, m + 2)
        p = np.zeros(m + 3, np.int64)
        np.cumsum(c, out=p[1:])
        v = rng.integers(0, 100, int(p[-1])).astype(dt)
        cols[name] = (p[1:-1], v)  # samples 1..m of a larger CSR: indptr starts > 0
    bufs = encode_records(schema, cols)
    for i, b in enumerate(bufs):
        want = {k: v[p[i]:p[i + 1]] for k, (p, v) in cols.items()}
        assert_same(independent_decode(schema, b), want)
    batch = decode_batch(schema, bufs[::-1])
    for name, (p, v) in cols.items():
        want = np.concatenate([v[p[i]:p[i + 1]] for i in reversed(range(m))])
        np.testing.assert_array_equal(batch[name][1], want)


def test_values_cast_when_lossless_only():
    schema = RecordSchema((("a", np.int32),))
    p = np.array([0, 2], np.int64)
    bufs = encode_records(schema, {"a": (p, np.array([1, 2], np.int64))})
    assert decode_record(schema, bufs[0])["a"].dtype == np.dtype("<i4")
    with pytest.raises(ValueError, match="range"):
        encode_records(schema, {"a": (p, np.array([1, 1 << 40], np.int64))})
    with pytest.raises(ValueError, match="float"):
        encode_records(schema, {"a": (p, np.array([1.5, 2.0]))})
    with pytest.raises(ValueError, match="differ"):
        encode_records(schema, {"b": (p, np.array([1, 2]))})


def test_schema_json():
    js = SCHEMA.to_json()
    obj = json.loads(js)
    assert obj["format"] == "yeast-pipeline.records" and obj["version"] == 2
    assert obj["sections"][0] == ["genes", "<i4"] and obj["sections"][1] == ["types", "|u1"]
    assert obj["core"] == ["genes", "types"] and json.loads(SCHEMA_FLIPS.to_json())["core"] == [
        "genes", "types", "node_flips"]
    assert RecordSchema.from_json(js) == SCHEMA
    assert RecordSchema((("a", ">i4"),)) == RecordSchema((("a", "<i4"),))  # stored little-endian
    with pytest.raises(StoreError, match="foreign"):
        RecordSchema.from_json(b'{"format": "other", "version": 1, "sections": []}')
    with pytest.raises(StoreError, match="version 1, this code reads 2: rebuild the records with --lmdb"):
        RecordSchema.from_json(b'{"format": "yeast-pipeline.records", "version": 1, "sections": []}')
    with pytest.raises(StoreError, match=r"core sections \['types'\], expected \['genes', 'types'\]"):
        RecordSchema.from_json(json.dumps({**obj, "core": ["types"]}).encode())
    with pytest.raises(ValueError, match="duplicate"):
        RecordSchema((("a", np.int32), ("a", np.uint8)))
    with pytest.raises(ValueError, match="not supported"):
        RecordSchema((("a", object),))


# --------------------------------------------------------------------------- store


def test_store_round_trip_and_alignment(tmp_path):
    path = tmp_path / "records.lmdb"
    expected = write_store(path, [(0, 0, 40), (1, 40, 25)])
    r = open_records(path)
    assert len(r) == 65
    assert r.schema == SCHEMA
    assert r.manifest == {"note": "test", "chunks": 2}
    for i in (0, 17, 39, 40, 64):
        assert_same(r.get(i), expected[i])
    ids = np.random.default_rng(0).integers(0, 65, 30)
    ids[1] = ids[0]  # repeats allowed
    batch = r.get_batch(ids)
    for name in SCHEMA.names:
        p, v = batch[name]
        for j, i in enumerate(ids):
            np.testing.assert_array_equal(v[p[j]:p[j + 1]], expected[int(i)][name])
    with pytest.raises(KeyError):
        r.get(65)
    with pytest.raises(KeyError, match="65"):
        r.get_batch([3, 65])
    assert r.verify() == []
    r.close()  # py-lmdb opens an environment once per process
    # every stored value, parsed by hand
    env, samples, _ = raw_env(path)
    with env.begin(db=samples) as txn:
        for k, v in txn.cursor():
            assert_same(independent_decode(SCHEMA, v), expected[int.from_bytes(k, "big")])
    env.close()


def test_key_order_is_id_order(tmp_path):
    path = tmp_path / "records.lmdb"
    # written out of order, ids crossing byte boundaries (little-endian keys would sort 256 before 1)
    write_store(path, [(2, 1000, 30), (0, 0, 300), (1, 300, 10)])
    env, samples, meta = raw_env(path)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor(db=samples)]
        assert all(len(k) == 8 for k in keys)
        ids = [struct.unpack(">Q", k)[0] for k in keys]
        assert ids == list(range(310)) + list(range(1000, 1030))
        metakeys = [k for k, _ in txn.cursor(db=meta)]
        assert metakeys == [b"chunk:00000000", b"chunk:00000001", b"chunk:00000002", b"manifest", b"schema"]
    env.close()
    assert db_keys(path)[b"core"] == ids


def test_resume_and_incomplete(tmp_path):
    path = tmp_path / "records.lmdb"
    expected = write_store(path, [(0, 0, 10), (1, 10, 10)], finish=False)
    with pytest.raises(StoreError, match="incomplete"):
        open_records(path)
    w = RecordWriter(path, SCHEMA)
    assert w.done_chunks() == {0, 1}
    cols = make_columns(5, seed=2)
    w.put_chunk(2, 20, cols)
    expected.update({20 + i: sample(cols, i) for i in range(5)})
    assert w.done_chunks() == {0, 1, 2}
    w.finish({"n": 25})
    r = open_records(path)
    assert len(r) == 25 and r.manifest == {"n": 25}
    assert all(np.array_equal(r.get(i)["genes"], expected[i]["genes"]) for i in range(25))
    assert r.verify() == []


def test_reput_chunk_replaces_and_overlap_refused(tmp_path):
    path = tmp_path / "records.lmdb"
    w = RecordWriter(path, SCHEMA)
    w.put_chunk(0, 0, make_columns(10, seed=0))
    w.put_chunk(0, 0, make_columns(6, seed=9))  # re-put: replaces (fewer samples)
    with pytest.raises(StoreError, match="overlaps"):
        w.put_chunk(1, 5, make_columns(3, seed=1))
    w.finish({})
    r = open_records(path)
    assert len(r) == 6 and r.verify() == []
    assert_same(r.get(5), sample(make_columns(6, seed=9), 5))
    assert_columns_equal(r.get_batch(range(6), sections=["genes", "types"]), r.get_batch(range(6)), ["genes", "types"])
    r.close()
    assert db_keys(path) == {b"samples": list(range(6)), b"core": list(range(6))}


def test_reopen_finished_store_removes_manifest_on_write(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 5)])
    w = RecordWriter(path, SCHEMA)
    assert w.done_chunks() == {0}
    w.close()
    open_records(path)  # untouched: still complete
    w = RecordWriter(path, SCHEMA)
    w.put_chunk(1, 5, make_columns(5, seed=1))
    w.close()
    with pytest.raises(StoreError, match="incomplete"):
        open_records(path)


def test_map_grows(tmp_path):
    path = tmp_path / "records.lmdb"
    w = RecordWriter(path, SCHEMA, map_size=1 << 16)
    cols = make_columns(3000, seed=4)  # ~ 1 MB of records
    w.put_chunk(0, 0, cols)
    w.finish({})
    r = open_records(path)
    assert len(r) == 3000
    assert_same(r.get(2999), sample(cols, 2999))


def test_schema_mismatch_on_reopen(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 3)], finish=False)
    other = RecordSchema(SCHEMA.sections[:-1] + (("edges:string12_coexpression", np.int64),))
    with pytest.raises(StoreError, match="schema differs"):
        RecordWriter(path, other)
    with pytest.raises(StoreError, match="schema differs"):
        RecordWriter(path, RecordSchema(SCHEMA.sections[:2]))
    assert RecordWriter(path, SCHEMA).done_chunks() == {0}  # the store is untouched


def test_open_records_refuses(tmp_path):
    with pytest.raises(StoreError, match="missing"):
        open_records(tmp_path / "nope.lmdb")
    (tmp_path / "empty.lmdb").mkdir()
    with pytest.raises(StoreError, match="empty.lmdb.*no data.mdb"):
        open_records(tmp_path / "empty.lmdb")
    junk = tmp_path / "junk.lmdb"
    junk.mkdir()
    (junk / "data.mdb").write_bytes(b"this is not an lmdb file" * 1000)
    with pytest.raises(StoreError, match="junk.lmdb.*not an LMDB"):
        open_records(junk)
    # an LMDB environment of something else
    plain = tmp_path / "plain.lmdb"
    env = lmdb.open(str(plain), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(StoreError, match="plain.lmdb.*not a yeast-pipeline.records store"):
        open_records(plain)
    # foreign format / other version in the schema
    for schema_json, msg in [(b'{"format": "x", "version": 1, "sections": []}', "foreign"),
                             (b'{"format": "yeast-pipeline.records", "version": 7, "sections": []}', "version 7")]:
        p = tmp_path / f"f{len(msg)}.lmdb"
        write_store(p, [(0, 0, 2)])
        env, _, meta = raw_env(p, write=True)
        with env.begin(write=True, db=meta) as txn:
            txn.put(b"schema", schema_json)
        env.close()
        with pytest.raises(StoreError, match=msg):
            open_records(p)
        with pytest.raises(StoreError, match=msg):
            RecordWriter(p, SCHEMA)


# --------------------------------------------------------------------------- selective reads


def with_zero_samples(cols: dict, zero: list[int]) -> dict:
    """``cols`` with samples ``zero`` holding no element in any section."""
    out = {}
    for name, (p, v) in cols.items():
        c = np.diff(p)
        keep = np.ones(v.size, bool)
        for i in zero:
            keep[p[i]:p[i + 1]] = False
        c[zero] = 0
        p2 = np.zeros(len(p), np.int64)
        np.cumsum(c, out=p2[1:])
        out[name] = (p2, v[keep])
    return out


def assert_columns_equal(got: dict, want: dict, names) -> None:
    assert list(got) == list(names)
    for k in names:
        (gp, gv), (wp, wv) = got[k], want[k]
        assert gp.dtype == wp.dtype == np.int64 and gv.dtype == wv.dtype, k
        np.testing.assert_array_equal(gp, wp, err_msg=k)
        np.testing.assert_array_equal(gv, wv, err_msg=k)


def test_selective_decode_equals_full_for_every_subset(tmp_path):
    path = tmp_path / "records.lmdb"
    m = 40
    cols = with_zero_samples(make_columns(m, seed=5), [0, 13, 39])  # "empty" is empty everywhere
    cols["genes"] = with_zero_samples({"g": cols["genes"]}, list(range(20, 40)))["g"]  # genes empty in 20..39
    w = RecordWriter(path, SCHEMA)
    w.put_chunk(0, 0, cols)
    w.finish({})
    r = open_records(path)
    ids = np.array([13, 0, 5, 39, 5, 22, 31, 1, 38, 20], np.int64)  # any order, repeats, zero-element samples
    full = r.get_batch(ids)
    only_empty_genes = np.array([22, 31, 38, 20])
    full_empty = r.get_batch(only_empty_genes)
    assert full_empty["genes"][1].size == 0 and full["empty"][1].size == 0
    names = SCHEMA.names
    for k in range(len(names) + 1):
        for subset in itertools.combinations(names, k):
            for order in (subset, subset[::-1]):  # results come in schema order whatever the request's
                assert_columns_equal(r.get_batch(ids, sections=order), full, subset)
                assert_columns_equal(r.get_batch(only_empty_genes, sections=iter(order)), full_empty, subset)
    # repeats in the request, every section, an empty id list, a numpy array of names
    assert_columns_equal(r.get_batch(ids, sections=["w", "w", "genes"]), full, ["genes", "w"])
    assert_columns_equal(r.get_batch(ids, sections=np.array(names)), full, names)
    assert_columns_equal(r.get_batch([], sections=["big", "types"]), r.get_batch([]), ["types", "big"])
    # the pure decoder on bytes, against the CSR columns written
    bufs = encode_records(SCHEMA, cols)
    assert_columns_equal(decode_batch(SCHEMA, bufs, sections=names), cols, names)
    for v in r.get_batch(ids, sections=names).values():
        assert v[1].flags.writeable and v[1].flags.aligned
    r.close()


def test_selective_unknown_section(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 5)])
    r = open_records(path)
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['nope', 'khop:x:k1'\]; the schema's sections "
                                         r"are \['genes', 'types', 'big', 'w', 'empty', 'edges:string12_"):
        r.get_batch([0, 1], sections=["genes", "nope", "khop:x:k1"])
    with pytest.raises(ValueError, match="records.lmdb: unknown section"):
        r.get_batch([], sections=["Genes"])
    with pytest.raises(TypeError, match="not the string 'genes'"):
        r.get_batch([0], sections="genes")
    with pytest.raises(ValueError, match="unknown section"):
        decode_batch(SCHEMA, [], sections=["nope"])


# --------------------------------------------------------------------------- the core database


def _core_subsets(schema: RecordSchema):
    core = schema.core().names
    for k in range(len(core) + 1):
        yield from itertools.combinations(core, k)


@pytest.mark.parametrize("schema", [SCHEMA, SCHEMA_FLIPS], ids=["genes-types", "with-node-flips"])
def test_core_reads_equal_samples_reads_for_every_core_subset(tmp_path, schema):
    path = tmp_path / "records.lmdb"
    cols = {n: with_zero_samples({n: c}, [0, 13])[n] if n != "genes" else c
            for n, c in make_columns(60, seed=11, schema=schema).items()}
    w = RecordWriter(path, schema)
    w.put_chunk(0, 0, {n: (p[:31], v) for n, (p, v) in cols.items()})  # samples 0..29
    w.put_chunk(1, 30, {n: (p[30:], v) for n, (p, v) in cols.items()})  # samples 30..59 (indptr from > 0)
    w.finish({})
    r = open_records(path)
    assert r.schema.core().names == (("genes", "types", "node_flips") if schema is SCHEMA_FLIPS
                                     else ("genes", "types"))
    ids = np.array([13, 0, 5, 59, 5, 31, 30, 29, 1, 44], np.int64)  # both chunks, repeats, empty samples
    full = r.get_batch(ids)
    for subset in _core_subsets(schema):
        for order in (subset, subset[::-1]):
            core = r.get_batch(ids, sections=order)  # from core
            assert_columns_equal(core, full, subset)
            # from samples: a non-core section in the request sends it there
            via_samples = r.get_batch(ids, sections=[*order, "big"])
            assert_columns_equal({k: via_samples[k] for k in subset}, core, subset)
            for p, v in core.values():
                assert v.flags.writeable and v.flags.aligned and p.flags.writeable
    assert_columns_equal(r.get_batch(range(60), sections=schema.core().names), cols, schema.core().names)
    assert r.get_batch([], sections=["genes"])["genes"][0].tolist() == [0]
    with pytest.raises(KeyError, match=r"no sample\(s\) \[60\]"):
        r.get_batch([3, 60], sections=["types"])
    assert r.verify() == []
    r.close()
    # every core value, parsed by hand: the samples encoding of the core sections only
    env, _, _ = raw_env(path)
    with env.begin(db=env.open_db(b"core", create=False)) as txn:
        got = {int.from_bytes(k, "big"): independent_decode(schema.core(), v) for k, v in txn.cursor()}
    env.close()
    assert sorted(got) == list(range(60))
    for i, d in got.items():
        assert_same(d, {n: a for n, a in sample(cols, i).items() if n in schema.core().names})


def test_core_reads_do_not_touch_samples(tmp_path):
    """Reads of core sections go to ``core``: a damaged ``samples`` value does not affect them (and vice versa)."""
    path = tmp_path / "records.lmdb"
    expected = write_store(path, [(0, 0, 10)], schema=SCHEMA_FLIPS)
    _replace(path, 4, lambda b: b"XXXX" + b[4:])
    _replace(path, 6, lambda b: b"XXXX" + b[4:], db=b"core")
    r = open_records(path)
    got = r.get_batch([4, 5], sections=["genes", "node_flips"])
    np.testing.assert_array_equal(got["node_flips"][1], np.concatenate([expected[i]["node_flips"] for i in (4, 5)]))
    with pytest.raises(StoreError, match="sample 4: expected magic"):
        r.get_batch([4], sections=["genes", "big"])
    assert_same(r.get(6), expected[6])  # get reads samples
    r.get_batch([6], sections=["types", "w"])


def test_damaged_core_value_caught_by_verify_and_by_reads(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 10), (1, 10, 10)], schema=SCHEMA_FLIPS)
    assert open_records(path).verify() == []

    def flip(b: bytes) -> bytes:  # a payload byte: the record still decodes
        a = bytearray(b)
        a[-9 if len(a) > 24 else 16] ^= 0x01
        return bytes(a)

    _replace(path, 14, flip, db=b"core")
    problems = open_records(path).verify()
    assert len(problems) == 1 and problems[0].startswith("chunk 1 (ids 10..19) in core: core_sha256 differs"), problems
    # damaged headers: the read names the sample (and the database)
    msgs = {3: (lambda b: b"XXXX" + b[4:], "expected magic"), 5: (lambda b: b[:-8], "truncated record"),
            7: (lambda b: b[:6] + struct.pack("<H", 6) + b[8:], "expected 3 sections"),
            9: (lambda b: b + b"\0" * 8, "record too long")}
    for i, (fn, _) in msgs.items():
        _replace(path, i, fn, db=b"core")
    r = open_records(path)
    for i, (_, msg) in msgs.items():
        for sections in (["genes"], ["types", "node_flips"], []):
            with pytest.raises(StoreError, match=rf"records.lmdb: sample {i}: {msg}.*\(core database\)"):
                r.get_batch([0, i, 1], sections=sections)
    assert len(r.verify()) == 2
    r.close()
    # a missing core record, a core record of no chunk
    _replace(path, 2, lambda b: None, db=b"core")
    r = open_records(path)
    with pytest.raises(KeyError, match=r"no sample\(s\) \[2\]"):
        r.get_batch([1, 2], sections=["genes"])
    assert "chunk 0: sample 2 missing in core (expected ids 0..9)" in r.verify()
    r.close()
    write_store(path2 := tmp_path / "b.lmdb", [(0, 0, 5)], schema=SCHEMA_FLIPS)
    _replace(path2, 4, lambda b: b, db=b"core")
    env, _, _ = raw_env(path2, write=True)
    with env.begin(write=True, db=env.open_db(b"core", create=False)) as txn:
        txn.put(struct.pack(">Q", 99), txn.get(struct.pack(">Q", 4)))
    env.close()
    assert open_records(path2).verify() == ["1 record(s) in core belong to no chunk"]


def _make_version_1(path: Path) -> None:
    """Turn a store into what version 1 wrote: no core database, no core_sha256, schema version 1."""
    env, _, meta = raw_env(path, write=True)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"core", txn=txn, create=False), delete=True)
        obj = json.loads(txn.get(b"schema", db=meta))
        del obj["core"]
        txn.put(b"schema", json.dumps({**obj, "version": 1}).encode(), db=meta)
        for k, v in list(txn.cursor(db=meta)):
            if k.startswith(b"chunk:"):
                mk = json.loads(v)
                del mk["core_sha256"]
                txn.put(k, json.dumps(mk).encode(), db=meta)
    env.close()


def test_version_1_store_refused_with_rebuild_message(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 5)])
    _make_version_1(path)
    msg = r"records.lmdb: record schema version 1, this code reads 2: rebuild the records with --lmdb"
    with pytest.raises(StoreError, match=msg):
        open_records(path)
    with pytest.raises(StoreError, match=msg):
        RecordReader(path).get_batch([0], sections=["genes"])
    with pytest.raises(StoreError, match=msg):
        RecordWriter(path, SCHEMA)  # not resumed into a mixed store
    # a version-2 schema without its core database: refused too
    p2 = tmp_path / "nocore.lmdb"
    write_store(p2, [(0, 0, 5)])
    env, _, _ = raw_env(p2, write=True)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"core", txn=txn, create=False), delete=True)
    env.close()
    with pytest.raises(StoreError, match="nocore.lmdb: no 'core' database.*rebuild it with --lmdb"):
        open_records(p2)


def test_chunk_commit_is_atomic_across_both_databases(tmp_path, monkeypatch):
    """A chunk whose transaction fails after its records are put leaves neither database holding it; resumable."""
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 10)], finish=False)

    def boom(chunk: int) -> bytes:
        raise RuntimeError("killed inside the transaction")

    w = RecordWriter(path, SCHEMA)
    monkeypatch.setattr(writer_mod, "chunk_key", boom)  # raised after both databases' puts, before the marker
    with pytest.raises(RuntimeError, match="killed"):
        w.put_chunk(1, 10, make_columns(7, seed=1))
    monkeypatch.undo()
    w.close()
    assert db_keys(path) == {b"samples": list(range(10)), b"core": list(range(10))}
    w = RecordWriter(path, SCHEMA)
    assert w.done_chunks() == {0}
    w.put_chunk(1, 10, make_columns(7, seed=1))
    w.finish({})
    r = open_records(path)
    assert r.verify() == [] and len(r) == 17
    assert_columns_equal(r.get_batch(range(10, 17), sections=["types"]), make_columns(7, seed=1), ["types"])


# --------------------------------------------------------------------------- corruption


def _replace(path: Path, sample_id: int, fn, db: bytes = b"samples") -> None:
    """Replace a stored value by ``fn(value)`` (``db``: ``samples`` or ``core``); ``fn`` returning None deletes it."""
    env, _, _ = raw_env(path, write=True)
    with env.begin(write=True, db=env.open_db(db, create=False)) as txn:
        key = struct.pack(">Q", sample_id)
        new = fn(bytes(txn.get(key))) if txn.get(key) is not None else fn(None)
        if new is None:
            txn.delete(key)
        else:
            txn.put(key, new)
    env.close()


def test_corrupt_record_names_the_sample(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 20)])
    _replace(path, 5, lambda b: b"XXXX" + b[4:])
    _replace(path, 7, lambda b: b[:-8])
    _replace(path, 9, lambda b: b[:4] + struct.pack("<H", 2) + b[6:])
    _replace(path, 11, lambda b: b[:5])
    r = open_records(path)
    with pytest.raises(StoreError, match=r"records.lmdb: sample 5: expected magic b'YPR1'"):
        r.get(5)
    with pytest.raises(StoreError, match=r"sample 7: truncated record"):
        r.get(7)
    with pytest.raises(StoreError, match=r"sample 9: expected record version 1, got 2"):
        r.get(9)
    with pytest.raises(StoreError, match=r"sample 11: truncated"):
        r.get(11)
    for bad in (5, 7, 9, 11):
        with pytest.raises(StoreError, match=rf"sample {bad}\b"):
            r.get_batch([0, 1, bad, 2])
    r.get_batch([0, 1, 2, 19])  # the others are fine
    with pytest.raises(StoreError, match="sample 3: record too long"):
        decode_record(SCHEMA, encode_records(SCHEMA, make_columns(1, 0))[0] + b"\0" * 8, sample_id=3)


def test_corrupt_record_names_the_sample_in_selective_reads(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 20)])
    _replace(path, 5, lambda b: b"XXXX" + b[4:])  # magic
    _replace(path, 7, lambda b: b[:-8])  # shorter than its header says
    _replace(path, 9, lambda b: b[:4] + struct.pack("<H", 2) + b[6:])  # version
    _replace(path, 11, lambda b: b[:5])  # shorter than a header
    _replace(path, 13, lambda b: b[:6] + struct.pack("<H", 5) + b[8:])  # section count
    _replace(path, 15, lambda b: b + b"\0" * 8)  # longer than its header says
    r = open_records(path)
    msgs = {5: "expected magic", 7: "truncated record: its header says", 9: "expected record version 1, got 2",
            11: "truncated", 13: "expected 6 sections", 15: "record too long"}
    for sections in (["genes", "big"], ["types", "edges:string12_coexpression"], ["empty"]):  # samples reads
        for bad, msg in msgs.items():
            with pytest.raises(StoreError, match=rf"records.lmdb: sample {bad}: {msg}"):
                r.get_batch([0, 1, bad, 2], sections=sections)
        assert_columns_equal(r.get_batch([0, 1, 2, 19], sections=sections), r.get_batch([0, 1, 2, 19]),
                             sections)  # the others are fine


def test_verify_detects_modified_value(tmp_path):
    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 10), (1, 10, 10)])
    assert open_records(path).verify() == []

    def flip(b: bytes) -> bytes:
        a = bytearray(b)
        a[-9] ^= 0xFF  # last byte of the padded payload region that holds data or padding
        a[len(a) // 2] ^= 0x01
        return bytes(a)

    _replace(path, 14, flip)
    problems = open_records(path).verify()
    assert len(problems) == 1 and problems[0].startswith("chunk 1 ") and "sha256" in problems[0]
    # a missing record
    env, samples, _ = raw_env(path, write=True)
    with env.begin(write=True, db=samples) as txn:
        txn.delete(struct.pack(">Q", 3))
    env.close()
    problems = open_records(path).verify()
    assert any(p.startswith("chunk 0: sample 3 missing") for p in problems)


# --------------------------------------------------------------------------- kill -9

KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from tests.test_lmdb_records import SCHEMA, make_columns
    from pipeline.precompute.records import RecordWriter
    w = RecordWriter({path!r}, SCHEMA)
    for chunk in range(10_000):
        w.put_chunk(chunk, chunk * 2000, make_columns(2000, seed=chunk))
        print("done", chunk, flush=True)
""")


def test_killed_writer_loses_at_most_the_chunk_in_flight(tmp_path):
    path = tmp_path / "records.lmdb"
    code = KILL_SCRIPT.format(repo=str(REPO), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("done 0"), (line, proc.stderr.read() if proc.poll() is not None else "")
        # the first marker is committed; the writer is now busy with the next chunk(s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    keys = db_keys(path)  # both databases hold exactly the committed chunks
    assert keys[b"samples"] == keys[b"core"] and len(keys[b"core"]) % 2000 == 0
    w = RecordWriter(path, SCHEMA)
    assert len(keys[b"core"]) == 2000 * len(w.done_chunks())
    done = w.done_chunks()
    assert 0 in done and done == set(range(len(done)))  # a sequential writer: a prefix of chunks
    # resume: the chunk in flight is redone, then finish
    nxt = len(done)
    w.put_chunk(nxt, nxt * 2000, make_columns(2000, seed=nxt))
    w.finish({"resumed_after_kill": True})
    r = open_records(path)
    assert len(r) == (nxt + 1) * 2000  # no stray records of the killed chunk
    assert r.verify() == []
    for chunk in range(nxt + 1):
        cols = make_columns(2000, seed=chunk)
        ids = np.arange(chunk * 2000, (chunk + 1) * 2000)
        batch = r.get_batch(ids)
        for name, (p, v) in cols.items():
            np.testing.assert_array_equal(batch[name][0], p)
            np.testing.assert_array_equal(batch[name][1], v)
        assert_columns_equal(r.get_batch(ids, sections=["genes", "types"]), cols, ["genes", "types"])  # core


# --------------------------------------------------------------------------- fork / spawn


def _read_in_child(reader: RecordReader, ids: list[int], q) -> None:
    try:
        out = [{k: v.copy() for k, v in reader.get(i).items()} for i in ids]
        batch = reader.get_batch(np.array(ids))
        q.put((os.getpid(), reader._pid, out, batch))
    except BaseException as e:  # report instead of hanging the parent
        q.put(repr(e))


def _read_spawned(reader: RecordReader, ids: list[int]):
    assert reader._h is None  # nothing carried across
    got = [reader.get(i) for i in ids]
    return os.getpid(), reader._pid, got, reader.get_batch(np.array(ids)), len(reader)


def test_reader_after_fork(tmp_path):
    path = tmp_path / "records.lmdb"
    expected = write_store(path, [(0, 0, 30)])
    r = open_records(path)
    assert_same(r.get(3), expected[3])  # env open in the parent
    parent_env = r._h.env
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ids = [0, 7, 29, 3]
    p = ctx.Process(target=_read_in_child, args=(r, ids, q))
    p.start()
    res = q.get(timeout=60)
    p.join(timeout=60)
    assert not isinstance(res, str), res
    child_pid, child_reader_pid, out, batch = res
    assert child_pid != os.getpid() and child_reader_pid == child_pid  # reopened in the child
    for i, got in zip(ids, out, strict=True):
        assert_same(got, expected[i])
    assert batch["genes"][1].tolist() == np.concatenate([expected[i]["genes"] for i in ids]).tolist()
    assert r._h.env is parent_env  # the parent's env is untouched and still works
    assert_same(r.get(29), expected[29])


def test_reader_pickles_for_spawn(tmp_path):
    path = tmp_path / "records.lmdb"
    expected = write_store(path, [(0, 0, 12)])
    r = open_records(path)
    r.get(0)
    state = pickle.loads(pickle.dumps(r))
    assert state._h is None and state.path == r.path
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        pid, rpid, out, batch, n = pool.apply(_read_spawned, (r, [11, 2, 5]))
    assert pid != os.getpid() and rpid == pid and n == 12
    for i, got in zip([11, 2, 5], out, strict=True):
        assert_same(got, expected[i])
    assert batch["types"][1].tolist() == np.concatenate([expected[i]["types"] for i in (11, 2, 5)]).tolist()
