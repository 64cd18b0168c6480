"""Stores on an object store, end to end against an S3-compatible server on 127.0.0.1 (moto's server mode).

A build goes to ``--out s3://...`` through the CLI, is verified there, and a stream epoch read remotely
(through the local chunk cache, in process and with DataLoader workers) is bit-identical to the same
epoch read from the local copy. A half-uploaded store never opens; URLs never become local folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.core import remote
from pipeline.core.errors import StoreError
from pipeline.core.remote import ChunkCache, publish_tree, staging_root
from pipeline.graph.store import open_graph
from pipeline.precompute.store import open_precomputed
from pipeline.stream.dataset import PerturbationStream

BUCKET = "yeast-builds"
ARGS = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--precompute", "masks,khop,adjacency-rows",
        "--chunk-samples", "256", "--adjacency-steps", "8", "--adjacency-rows", "16", "--adjacency-negatives", "8",
        "--workers", "1", "--dask-threads", "-q"]
NAME = "string12"  # the build name of --graphs string12_fusion (its source)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server on a free loopback port for the session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3_env(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The endpoint, dummy credentials and a private cache folder, set for this module only; the bucket."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", remote.CACHE_ENV: str(tmp_path_factory.mktemp("pipeline-cache"))}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        fs, _ = remote.filesystem(f"s3://{BUCKET}")
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        yield env


@dataclasses.dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _cli(module: str, *args: str, cwd: Path, env: dict[str, str]) -> Ran:
    """``python -m MODULE ARGS`` in ``cwd``, run in this process (``main(argv)``, what the CLI runs; a
    fresh interpreter per call would cost seconds of imports); ``env`` is already set by the fixture."""
    main = importlib.import_module(module).main
    assert all(os.environ.get(k) == v for k, v in env.items())
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def published(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A build published with ``--out s3://...`` by the CLI: (its URL, the local copy it was built in)."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = f"s3://{BUCKET}/builds"
    r = _cli("pipeline.build", *ARGS, "--out", out, cwd=cwd, env=s3_env)
    assert r.returncode == 0, r.stderr
    assert f"s3://{BUCKET}/builds/{NAME}/precomputed.zarr (published" in r.stdout
    assert not any(cwd.iterdir()), f"the build wrote locally: {list(cwd.iterdir())}"  # no folder named s3:
    return f"{out}/{NAME}", staging_root(out) / NAME


def _tensors(obj: object, prefix: str = "") -> dict[str, object]:
    """Every field of a batch, nested compact rows included, by name (tensors and plain values)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, dict):
            for k, sub in v.items():
                out.update(_tensors(sub, f"{prefix}{f.name}.{k}.") if dataclasses.is_dataclass(sub)
                           else {f"{prefix}{f.name}.{k}": sub})
        elif dataclasses.is_dataclass(v):  # e.g. a transformer batch's StepRows
            out.update(_tensors(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = v
    return out


def _assert_same_epoch(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        tx, ty = _tensors(x), _tensors(y)
        assert tx.keys() == ty.keys()
        for k, v in tx.items():
            w = ty[k]
            if isinstance(v, torch.Tensor):
                assert v.dtype == w.dtype and torch.equal(v, w), k  # bit-exact
            else:
                assert v == w, k


# --- the bug: a URL through pathlib.Path --------------------------------------------------------------------


def test_url_never_becomes_a_local_folder(s3_env, published, tmp_path, monkeypatch):
    """``--out`` with an unknown scheme is one error line and writes nothing; a local folder ``s3:/...``
    (what ``Path("s3://...")`` names) is never read for the URL."""
    r = _cli("pipeline.build", "--graphs", "string12_fusion", "-q", "--out", "nosuch://bucket/x", cwd=tmp_path,
             env=s3_env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: --out nosuch://bucket/x: unknown URL scheme 'nosuch'")
    assert not any(tmp_path.iterdir())
    r = _cli("pipeline.build", "--graphs", "string12_fusion", "-q", "--out", "s3://no-such-bucket/x", cwd=tmp_path,
             env=s3_env)  # checked before anything is built
    assert r.returncode == 2 and r.stderr.startswith("error: s3://no-such-bucket/x/string12: bucket "
                                                     "'no-such-bucket' does not exist"), r.stderr
    assert not any(tmp_path.iterdir())
    r = _cli("pipeline.build", "--graphs", "string12_fusion", "-q", "--raw", f"s3://{BUCKET}/raw", cwd=tmp_path,
             env=s3_env)
    assert r.returncode == 2 and "error: --raw s3://" in r.stderr and "local folder" in r.stderr
    # a valid local build under the folder name pathlib makes of the URL must not be read
    monkeypatch.chdir(tmp_path)
    shutil.copytree(published[1], tmp_path / "s3:" / BUCKET / "decoy")
    assert PerturbationStream(tmp_path / "s3:" / BUCKET / "decoy", fmt="index").n_samples > 0  # it is a build
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/decoy/graph.zarr: no graph store here"):
        PerturbationStream(f"s3://{BUCKET}/decoy", fmt="index")
    with pytest.raises(ValueError, match="a URL that went through pathlib.Path"):
        PerturbationStream(Path(f"s3://{BUCKET}/decoy"), fmt="index")
    with pytest.raises(ValueError, match="a URL that went through pathlib.Path"):
        open_graph(Path(f"s3://{BUCKET}/decoy/graph.zarr"))


def test_lmdb_stays_local(s3_env, tmp_path, published):
    r = _cli("pipeline.build", *ARGS, "--lmdb", "--out", f"s3://{BUCKET}/lmdb", cwd=tmp_path, env=s3_env)
    assert r.returncode == 2 and r.stderr.startswith("error: --lmdb with --out s3://"), r.stderr
    with pytest.raises(StoreError, match="not published to object stores; use layout='zarr'"):
        PerturbationStream(published[0], fmt="index", layout="lmdb")


# --- build, verify, stream ---------------------------------------------------------------------------------


def test_build_published_verified_and_rerun_uploads_nothing(s3_env, published, tmp_path):
    url, local = published
    fs, root = remote.filesystem(url)
    for store in ("graph.zarr", "dataset", "precomputed.zarr"):
        want = sorted(p.relative_to(local / store).as_posix() for p in (local / store).rglob("*") if p.is_file())
        have = sorted(p[len(f"{root}/{store}/"):] for p in fs.find(f"{root}/{store}"))
        assert have == want, store  # every file, nothing else
    r = _cli("pipeline.verify", url, "--samples", "16", cwd=tmp_path, env=s3_env)
    assert r.returncode == 0, r.stderr
    assert f"{url}/precomputed.zarr: ok (every file as published, every chunk decoded, 16 samples recomputed)" \
        in r.stdout
    before = {p: i["LastModified"] for p, i in fs.find(root, detail=True).items()}
    r = _cli("pipeline.build", *ARGS, "--out", url.rsplit("/", 1)[0], cwd=tmp_path, env=s3_env)
    assert r.returncode == 0 and r.stdout.count("up to date: s3://") == 3, r.stdout + r.stderr
    fs.invalidate_cache()
    assert {p: i["LastModified"] for p, i in fs.find(root, detail=True).items()} == before  # nothing uploaded


@pytest.mark.parametrize("fmt", ["graph", "khop", "transformer"])
def test_remote_epoch_equals_local(published, tmp_path, fmt):
    url, local = published
    kw = dict(fmt=fmt, batch_size=64, seed=1, k=2)
    ours = PerturbationStream(url, cache_dir=tmp_path / "cache", cache_bytes=1 << 30, **kw)
    _assert_same_epoch(list(ours), list(PerturbationStream(local, **kw)))
    assert ours._cache is not None and ours._cache.misses > 0
    if fmt == "graph":  # the wild-type graph too, and map-style access
        a, b = ours.static(), PerturbationStream(local, **kw).static()
        _assert_same_epoch([a], [b])
        _assert_same_epoch([ours.get_batch(torch.arange(5).numpy())],
                           [PerturbationStream(local, **kw).get_batch(torch.arange(5).numpy())])


def test_remote_epoch_with_workers_shares_one_cache(published, tmp_path):
    url, local = published
    cache = tmp_path / "cache"
    ours = PerturbationStream(url, fmt="graph", batch_size=32, cache_dir=cache, cache_bytes=1 << 30)
    got = list(DataLoader(ours, batch_size=None, num_workers=2, multiprocessing_context="fork"))
    want = list(DataLoader(PerturbationStream(local, fmt="graph", batch_size=32), batch_size=None, num_workers=2,
                           multiprocessing_context="fork"))
    _assert_same_epoch(got, want)
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries and not [p for p in entries if p.name.startswith(".")]  # no temporaries left
    shipped = pickle.loads(pickle.dumps(ours))  # what a spawn worker receives: no open store, the same cache
    assert shipped._cache is not None and shipped._cache.directory == cache and "_zarr" not in vars(shipped)
    _assert_same_epoch(list(shipped), want)
    assert shipped._cache.misses == 0


def test_cache_is_bounded_reused_and_checked(published, tmp_path):
    url, local = published
    cache = tmp_path / "cache"
    want = list(PerturbationStream(local, fmt="khop", batch_size=64))
    # bounded: a cache far smaller than the build holds at most its bound plus one file
    small = PerturbationStream(url, fmt="khop", batch_size=64, cache_dir=cache, cache_bytes=40_000)
    _assert_same_epoch(list(small), want)
    biggest = max([p.stat().st_size for p in local.rglob("*") if p.is_file()]
                  + [sum(p.stat().st_size for p in (local / "dataset").iterdir())])  # the dataset: one entry
    assert 0 < ChunkCache(cache).size() <= 40_000 + biggest
    # reused: a warm cache serves a second stream (another process's, as a worker's) without fetching
    warm_dir = tmp_path / "warm"
    PerturbationStream(url, fmt="khop", batch_size=64, cache_dir=warm_dir).static()
    list(PerturbationStream(url, fmt="khop", batch_size=64, cache_dir=warm_dir))
    again = PerturbationStream(url, fmt="khop", batch_size=64, cache_dir=warm_dir)
    _assert_same_epoch(list(again), want)
    again.static()
    assert again._cache is not None and again._cache.misses == 0 and again._cache.hits > 0
    # checked: a damaged cached chunk is detected, fetched again, and the epoch is still exact
    chunk = "khop/per_type/k1/c/0/0"
    crc = open_precomputed(local / "precomputed.zarr").manifest["files"][chunk]
    for victim in (ChunkCache(warm_dir).entry(f"{url}/precomputed.zarr/{chunk}", crc),
                   next(warm_dir.rglob("*.d/samples.parquet"))):
        victim.write_bytes(b"\0" * victim.stat().st_size)
    third = PerturbationStream(url, fmt="khop", batch_size=64, cache_dir=warm_dir)
    _assert_same_epoch(list(third), want)
    assert third._cache is not None and third._cache.misses >= 2


# --- all or nothing --------------------------------------------------------------------------------------------


class _Cut(Exception):
    pass


def _failing_after(monkeypatch, n: int) -> None:
    """Every upload batch is one file; the n+1-th upload raises (a publish killed part-way)."""
    import s3fs

    calls = {"n": 0}
    real = s3fs.S3FileSystem._pipe_file

    async def pipe_file(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > n:
            raise _Cut("connection lost")
        return await real(self, *a, **kw)

    monkeypatch.setattr(remote, "_BATCH_BYTES", 1)
    monkeypatch.setattr(s3fs.S3FileSystem, "_pipe_file", pipe_file)


def test_half_upload_never_reads_as_valid(s3_env, published, tmp_path, monkeypatch):
    _, local = published
    url = f"s3://{BUCKET}/half/{NAME}"
    with monkeypatch.context() as mp:  # a first publish cut after 5 files
        _failing_after(mp, 5)
        with pytest.raises(_Cut):
            publish_tree(local / "graph.zarr", f"{url}/graph.zarr", remote.ZARR_MARKER)
    with pytest.raises(StoreError, match="no graph store here .*upload did not finish"):
        open_graph(f"{url}/graph.zarr")
    r = _cli("pipeline.verify", f"{url}/graph.zarr", cwd=tmp_path, env=s3_env)
    assert r.returncode == 2 and "no graph store here" in r.stderr and str(tmp_path) not in r.stderr
    # publish it whole; then a changed version whose upload is cut: the old one stops reading as valid
    publish_tree(local / "precomputed.zarr", f"{url}/precomputed.zarr", remote.ZARR_MARKER)
    assert open_precomputed(f"{url}/precomputed.zarr").n_samples > 0
    changed = tmp_path / "precomputed.zarr"
    shutil.copytree(local / "precomputed.zarr", changed)
    meta = (changed / "zarr.json").read_text()
    (changed / "zarr.json").write_text(meta.replace('"created": "', '"created": "0'))
    with monkeypatch.context() as mp:
        _failing_after(mp, 3)
        with pytest.raises(_Cut):
            publish_tree(changed, f"{url}/precomputed.zarr", remote.ZARR_MARKER)
    with pytest.raises(StoreError, match="no precomputed store here"):
        open_precomputed(f"{url}/precomputed.zarr")
    done = publish_tree(changed, f"{url}/precomputed.zarr", remote.ZARR_MARKER)  # the rerun publishes it
    assert done.uploaded and open_precomputed(f"{url}/precomputed.zarr").n_samples > 0
    # a local file that differs from its manifest checksum is never published
    victim = next(p for p in sorted(changed.rglob("*")) if p.is_file() and "/c/" in p.as_posix())
    victim.write_bytes(b"x" + victim.read_bytes()[1:])
    (changed / "zarr.json").write_text(meta)
    with pytest.raises(StoreError, match="differs from its manifest checksum"):
        publish_tree(changed, f"{url}/precomputed.zarr", remote.ZARR_MARKER)
    with pytest.raises(StoreError, match="no precomputed store here"):
        open_precomputed(f"{url}/precomputed.zarr")


def test_verify_names_a_damaged_remote_file(s3_env, published, tmp_path):
    _, local = published
    url = f"s3://{BUCKET}/damaged/{NAME}"
    for store, marker in (("graph.zarr", remote.ZARR_MARKER), ("dataset", remote.DATASET_MARKER),
                          ("precomputed.zarr", remote.ZARR_MARKER)):
        publish_tree(local / store, f"{url}/{store}", marker)
    fs, root = remote.filesystem(url)
    key = next(p for p in sorted(fs.find(f"{root}/precomputed.zarr")) if "/khop/per_type/k1/c/" in p)
    fs.pipe_file(key, b"\1" + fs.cat_file(key)[1:])
    r = _cli("pipeline.verify", url, cwd=tmp_path, env=s3_env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{url}/precomputed.zarr: " in r.stderr and "khop/per_type/k1 rows 0..255" in r.stderr
    assert str(tmp_path) not in r.stderr
    with pytest.raises(StoreError, match="fetched bytes differ from the manifest checksum"):
        list(PerturbationStream(url, fmt="khop", k=1, batch_size=64, cache_dir=tmp_path / "c"))


def test_cache_evicts_least_recently_used_first(tmp_path):
    """No server: the cache's own contract (bound, recency, checksums, atomic names)."""
    def put(cache: ChunkCache, i: int) -> Path:
        data = bytes([i]) * 100
        return cache.put(f"s3://b/x/{i}", remote.crc32(data), data)

    cache = ChunkCache(tmp_path, max_bytes=250)
    first = [put(cache, i) for i in range(2)]
    for age, p in enumerate(first):
        os.utime(p, (1_000 + age, 1_000 + age))
    put(cache, 2)  # 300 bytes > 250: the least recently used (entry 0) goes
    assert not first[0].exists() and first[1].exists()
    other = ChunkCache(tmp_path, max_bytes=250)  # another process: its first read marks entry 1 as used
    assert other.lookup("s3://b/x/1", remote.crc32(bytes([1]) * 100)) == first[1]
    put(other, 3)
    assert first[1].exists() and not other.entry("s3://b/x/2", remote.crc32(bytes([2]) * 100)).exists()
    assert cache.size() == 200 and not [p for p in tmp_path.rglob(".*")]
    first[1].write_bytes(b"\0" * 100)  # damaged on disk: not served, removed
    assert ChunkCache(tmp_path).lookup("s3://b/x/1", remote.crc32(bytes([1]) * 100)) is None
    assert not first[1].exists()
    with pytest.raises(StoreError, match="fetched bytes differ from the manifest checksum"):
        cache.put("s3://b/x/9", "00000000", b"abc")
    with pytest.raises(ValueError, match="cache_bytes must be >= 1"):
        ChunkCache(tmp_path, max_bytes=0)


@pytest.mark.parametrize("flag", ["--genes", "--sequences", "--added-genes"])
def test_a_url_for_a_local_input_is_one_error_line(tmp_path, capsys, flag):
    """Gene tables, sequences and added genes are read from local files: a URL (which argparse's
    Path would have turned into a local ``s3:/...`` path) is refused with one line."""
    from pipeline.build import main

    assert main(["--graphs", "string12_fusion", flag, "s3://bucket/genes.tsv", "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    want = f"error: {flag} s3://bucket/genes.tsv: read from a local file; copy it to this machine first"
    assert err == [want], err
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()
