"""Object stores: a build served by an S3-compatible server, streamed through the local chunk cache, vs local.

``python -m benchmarks remote [--scale 0.1] [--formats graph khop transformer] [--workers 0 2] [--repeats 3]
[--batch-size 64] [--cache-bytes N] [--workdir data/bench] [--json PATH]``

- Inputs: the synthetic build of the stream benchmark's sources at ``--scale`` (9 edge types;
  the Kuzmin-style dataset; masks, 1/2/3-hop sets, adjacency rows), built once with
  ``--out s3://...`` into its local staging folder under ``--workdir`` (untimed, reused while
  current) and published, every run, to a moto server (``python -m moto.server``, its own
  process on 127.0.0.1, in-memory): the publish (upload, size check, marker last) is timed.
- OURS: ``PerturbationStream("s3://bench/builds/NAME", cache_dir=..., cache_bytes=...)``, the
  train split, shuffled: one cold epoch (an empty cache: every file fetched, checked, cached),
  then warm epochs, each from a new stream over the same cache (what a new training run or
  DataLoader worker does), in process and through 2 workers (``StreamLoader``). The rate is
  samples/s from each epoch's first batch to its end, as the stream benchmark counts; the
  seconds to open the stream and the whole epoch from the open are reported beside it.
- BASELINE, same run, same stores: the same stream over the local copy the build was published
  from, epochs alternating with the remote ones (``--repeats`` each, median reported).

Target (issue 15): the S3-served build streamed at >= 50% of the local rate once the cache is warm.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._report import Record, format_table, run_metadata, write_json

DEFAULT_WORKDIR = Path("data/bench")
TARGET_RATIO = 0.5
BUCKET = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen, str]:
    """A moto S3 server in its own process on a free loopback port: (process, endpoint URL)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, url
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto server did not answer on {url} within 60 s")


def build_and_publish(workdir: Path, scale: float) -> tuple[str, Path, float, int]:
    """Build (once) and publish (every run) the synthetic build: (URL, local copy, publish seconds, bytes)."""
    from benchmarks.precompute import GRAPHS, ensure_inputs
    from pipeline.config import BuildConfig
    from pipeline.core import remote
    from pipeline.precompute.stages import PrecomputeConfig
    from pipeline.sequence import publish_build, run_build

    raw, gff = ensure_inputs(workdir, seed=0, scale=scale)
    out = f"s3://{BUCKET}/builds"
    kw = dict(graphs=GRAPHS, raw=raw, genes=gff, name=f"remote{scale:g}", datasets=["kuzmin2018"],
              precompute=PrecomputeConfig(khop=(1, 2, 3), adjacency_steps=200))
    ws = BuildConfig.create(out=out, **kw).workspace
    # the same stages into the same local folder as `--out s3://...` builds in (untimed, reused while current)
    res = run_build(BuildConfig.create(out=ws.root.parent, **kw))
    assert Path(res.graph).parent == ws.root
    fs, _ = remote.filesystem(out)
    fs.mkdir(BUCKET)
    t0 = time.perf_counter()
    publish_build(res, str(ws.remote))  # what `--out s3://...` runs after the stages
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in ws.root.rglob("*") if p.is_file())
    return str(ws.remote), ws.root, seconds, size


def epoch(build: Any, fmt: str, batch_size: int, workers: int, cache: Path | None,
          cache_bytes: int | None) -> dict[str, Any]:
    """One epoch of the train split from a new stream: samples/s after the first batch (as the stream
    benchmark counts), the seconds to open the stream, and to the end of the epoch from the open."""
    from pipeline.stream import PerturbationStream, StreamLoader

    t0 = time.perf_counter()
    kw = {} if cache is None else {"cache_dir": cache, "cache_bytes": cache_bytes}
    ds = PerturbationStream(build, fmt=fmt, batch_size=batch_size, seed=0, **kw)
    t_open = time.perf_counter()
    it = iter(StreamLoader(ds, num_workers=workers, group=8, multiprocessing_context="fork" if workers else None))
    next(it)  # warm-up: worker start, the first window's reads
    t1 = time.perf_counter()
    n = sum(len(b) for b in it)
    t2 = time.perf_counter()
    return {"samples_per_s": n / (t2 - t1), "open_s": t_open - t0, "epoch_s": t2 - t0, "samples": n}


def _cache_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _entries(path: Path) -> set[str]:
    """The cache's entries (files, and the dataset's folder), whichever process fetched them."""
    return {e.name for sub in path.iterdir() if sub.is_dir() for e in sub.iterdir()} if path.exists() else set()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks remote", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1, help="scale of the synthetic sources")
    p.add_argument("--formats", nargs="+", default=["graph", "khop", "transformer"])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="warm remote and local epochs per configuration")
    p.add_argument("--cache-bytes", type=int, default=4 << 30)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--json", type=Path, default=Path("bench-results/remote.json"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    import logging
    logging.basicConfig(level=logging.WARNING)
    server, endpoint = start_server()
    cache_root = (args.workdir / "remote-cache").resolve()
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "PIPELINE_CACHE_DIR": str(cache_root)})
    try:
        url, local, publish_s, size = build_and_publish(args.workdir, args.scale)
        rows, recs = [], []
        results = {}
        for fmt in args.formats:
            for w in args.workers:
                cache = cache_root / "chunks" / f"{fmt}-w{w}"
                if cache.exists():
                    import shutil
                    shutil.rmtree(cache)
                cold = epoch(url, fmt, args.batch_size, w, cache, args.cache_bytes)
                fetched = _entries(cache)
                warm, base = [], []
                for _ in range(args.repeats):  # alternate: the machine's load drifts
                    base.append(epoch(local, fmt, args.batch_size, w, None, None))
                    warm.append(epoch(url, fmt, args.batch_size, w, cache, args.cache_bytes))
                refetched = _entries(cache) - fetched  # a warm epoch that fetched anything adds an entry

                def med(runs: list[dict[str, Any]], key: str) -> float:
                    return statistics.median(r[key] for r in runs)

                res = {"cold": cold["samples_per_s"], "cold_epoch_s": cold["epoch_s"],
                       "warm": med(warm, "samples_per_s"), "local": med(base, "samples_per_s"),
                       "warm_open_s": med(warm, "open_s"), "local_open_s": med(base, "open_s"),
                       "warm_epoch_s": med(warm, "epoch_s"), "local_epoch_s": med(base, "epoch_s"),
                       "warm_misses": len(refetched), "cold_misses": len(fetched),
                       "cache_bytes": _cache_bytes(cache)}
                res["ratio"] = res["warm"] / res["local"]
                results[(fmt, w)] = res
                ok = res["ratio"] >= TARGET_RATIO
                rows.append([fmt, str(w), f"{res['local']:,.0f}", f"{res['cold']:,.0f}", f"{res['warm']:,.0f}",
                             f"{res['ratio']:.2f}x",
                             f"{res['local_open_s']:.2f} / {res['warm_open_s']:.2f}",
                             f"{res['local_epoch_s']:.2f} / {res['cold_epoch_s']:.2f} / {res['warm_epoch_s']:.2f}",
                             f"{res['cold_misses']} / {res['warm_misses']}", f"{res['cache_bytes'] / 1e6:,.1f}",
                             f">= {TARGET_RATIO}x local", "PASS" if ok else "FAIL"])
                key = f"remote.{fmt}.w{w}"
                recs += [Record(f"{key}.local.samples_per_s", res["local"], "samples/s"),
                         Record(f"{key}.remote_cold.samples_per_s", res["cold"], "samples/s"),
                         Record(f"{key}.remote_warm.samples_per_s", res["warm"], "samples/s"),
                         Record(f"{key}.warm_vs_local", res["ratio"], "x"),
                         Record(f"{key}.local.open_s", res["local_open_s"], "s"),
                         Record(f"{key}.remote_warm.open_s", res["warm_open_s"], "s"),
                         Record(f"{key}.local.epoch_s", res["local_epoch_s"], "s"),
                         Record(f"{key}.remote_cold.epoch_s", res["cold_epoch_s"], "s"),
                         Record(f"{key}.remote_warm.epoch_s", res["warm_epoch_s"], "s"),
                         Record(f"{key}.warm_fetches", res["warm_misses"], "files"),
                         Record(f"{key}.cache_bytes", res["cache_bytes"], "bytes")]
        recs += [Record("remote.publish.seconds", publish_s, "s"), Record("remote.build.bytes", size, "bytes")]
        print(f"build {url} ({size / 1e6:,.1f} MB, local copy {local}); published in "
              f"{publish_s:.1f} s ({size / 1e6 / publish_s:,.0f} MB/s); batch size {args.batch_size}; "
              f"median of {args.repeats} epochs "
              f"alternating; samples/s after each epoch's first batch\n")
        print(format_table(["format", "workers", "local samples/s", "remote cold", "remote warm", "warm/local",
                            "open s local/warm", "epoch s local/cold/warm", "cached files cold/new warm", "cache MB",
                            "target", ""], rows))
        passed = all(r["ratio"] >= TARGET_RATIO for r in results.values())
        print(f"\nS3-served build, warm cache, vs local: "
              f"{min(r['ratio'] for r in results.values()):.2f}x..{max(r['ratio'] for r in results.values()):.2f}x "
              f"(target >= {TARGET_RATIO}x: {'PASS' if passed else 'FAIL'})")
        meta = run_metadata("remote", {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                            packages=("numpy", "zarr", "fsspec", "s3fs", "moto", "torch"))
        write_json(args.json, recs, meta)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
