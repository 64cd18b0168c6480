"""Precompute on an external 2-worker dask cluster vs the LocalCluster: samples/s, same run, same input.

``python -m benchmarks cluster [--scale 0.1] [--repeats 3] [--chunk-samples 4096] [--workdir data/bench]
[--json bench-results/cluster.json]``

- Inputs: the precompute benchmark's synthetic full graph (9 edge types) and Kuzmin-style
  dataset at ``--scale`` (:func:`benchmarks.precompute.ensure_inputs` / ``ensure_stores``,
  generated once and reused).
- Both sides run the precompute stage's chunk tasks (masks + k-hop 1,2,3 per_type) over the same
  prepared staging store, from this process, ``--repeats`` times each, alternating:
  LOCAL is ``--workers 2`` (a LocalCluster of 2 single-threaded worker processes, started by
  the stage); EXTERNAL is ``--dask-address`` of a ``dask scheduler`` with two
  ``dask worker --nworkers 1 --nthreads 1`` processes started beforehand, in another working
  directory (:func:`external_cluster`). The figure is the stage's own clock
  (``TaskResults.compute_seconds``: compute, write, read back; not the cluster's start, which an
  external cluster does not pay per build). The median of each side is compared.
- Every run's chunk checksums must equal the first LOCAL run's (same bytes written).

Target (issue 15): the external cluster's rate >= 90% of the LocalCluster's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._report import Record, format_table, run_metadata, write_json

TARGET_RATIO = 0.9
REPO = Path(__file__).resolve().parents[1]


def _dask_cli() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dask"]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (dask closes its nannies and workers), then SIGKILL to the process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextlib.contextmanager
def external_cluster(n_workers: int = 2, cwd: Path | None = None, timeout: float = 45) -> Iterator[str]:
    """A real dask cluster in other processes: ``dask scheduler`` on 127.0.0.1 (a port the OS
    picks, no dashboard) and ``n_workers`` ``dask worker --nworkers 1 --nthreads 1`` processes,
    all started in ``cwd`` (a temporary folder by default: not this working directory). Yields
    the scheduler's address once every worker has joined; stops them all at the end.
    """
    from distributed import Client

    own = cwd is None
    where = Path(tempfile.mkdtemp(prefix="dask-cluster-")) if own else Path(cwd)
    where.mkdir(parents=True, exist_ok=True)
    sched_file = where / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    quiet = ["--dashboard-address", "127.0.0.1:0", "--no-dashboard"]  # dask's HTTP server: loopback, any port
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(where / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen([*_dask_cli(), *args], cwd=where, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    try:
        procs.append(start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                           "--scheduler-file", str(sched_file), *quiet))
        for i in range(n_workers):
            procs.append(start(f"worker{i}", "worker", "--scheduler-file", str(sched_file), "--nworkers", "1",
                               "--nthreads", "1", "--host", "127.0.0.1", "--local-directory", str(where / f"w{i}"),
                               *quiet))
        deadline = time.monotonic() + timeout
        while not sched_file.is_file():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {(where / 'scheduler.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written, then filled
        with Client(scheduler_file=str(sched_file), timeout="10s") as client:
            client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
            address = client.scheduler.address
        yield address
    finally:
        for p in reversed(procs):
            _stop(p)
        if own:
            shutil.rmtree(where, ignore_errors=True)


def _run_tasks(graph: Path, dataset: Path, **config: Any) -> tuple[float, int, list[dict[str, Any]]]:
    """(compute seconds, samples, chunk checksums) of the precompute tasks on a fresh staging."""
    from pipeline.core.atomic import release
    from pipeline.precompute import stages as pc

    plan = pc.plan_precompute(pc.PrecomputeConfig(**config), graph, dataset, force=True)
    staging = pc.prepare_precompute(plan)  # force: a clean staging every run
    try:
        res = pc.run_precompute_tasks(plan, staging)
    finally:
        release(staging)
        shutil.rmtree(staging, ignore_errors=True)
    return res.compute_seconds, plan.n_samples, [c.to_dict() for c in res.chunks]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1, help="synthetic graph and table size (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="runs per side, alternating (median compared)")
    p.add_argument("--chunk-samples", type=int, default=4096)
    p.add_argument("--workdir", type=Path, default=Path("data/bench"))
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    from benchmarks.precompute import ensure_inputs, ensure_stores

    args = parser().parse_args(argv)
    wd = args.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    raw, gff = ensure_inputs(wd, args.seed, args.scale)
    graph, dataset = ensure_stores(wd, raw, gff)
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    common = dict(artifacts=("masks", "khop"), khop=(1, 2, 3), khop_modes=("per_type",),
                  chunk_samples=args.chunk_samples)
    local: list[float] = []
    external: list[float] = []
    same = True
    first: list[dict[str, Any]] | None = None
    with external_cluster(2) as address:
        for _ in range(args.repeats):
            for side, kw in (("local", {"workers": 2}), ("external", {"dask_address": address})):
                s, n, chunks = _run_tasks(graph, dataset, **common, **kw)
                (local if side == "local" else external).append(n / s)
                first = chunks if first is None else first
                same = same and chunks == first
                print(f"{side}: {n:,} samples in {s:.2f} s ({n / s:,.0f} samples/s)", file=sys.stderr)
    lo, ex = statistics.median(local), statistics.median(external)
    ratio = ex / lo
    ok = ratio >= TARGET_RATIO and same
    rows = [["LocalCluster, 2 worker processes (--workers 2)", f"{lo:,.0f}", " ".join(f"{r:,.0f}" for r in local),
             "1x", ""],
            ["external: dask scheduler + 2 dask worker (--dask-address)", f"{ex:,.0f}",
             " ".join(f"{r:,.0f}" for r in external), f"{ratio:.2f}x",
             f">= {TARGET_RATIO:.1f}x: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}"],
            ["same chunk checksums on every run", "yes" if same else "NO", "", "", ""]]
    print(format_table([f"precompute tasks, masks + k-hop, {n:,} samples", "samples/s (median)", "runs",
                        "ratio", "target"], rows))
    if args.json:
        meta = run_metadata("cluster", {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                        "samples": n, "synthetic_input": True},
                            packages=("numpy", "zarr", "dask", "distributed", "dask_jobqueue"))
        recs = [Record("cluster.local.samples_per_s", round(lo), "samples/s"),
                Record("cluster.external.samples_per_s", round(ex), "samples/s"),
                Record("cluster.ratio", round(ratio, 3), "x"),
                Record("cluster.same_checksums", int(same), "bool"),
                Record("cluster.target.within_10pct", int(ratio >= TARGET_RATIO), "bool")]
        print(f"wrote {write_json(args.json, recs, meta)}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
