"""Precompute stage: samples/s, bytes per sample per artifact and peak memory at full synthetic scale.

``python -m benchmarks precompute [--scale 1.0] [--cores 2] [--chunk-samples 4096] [--baseline-samples 200]
[--lmdb/--no-lmdb] [--workdir data/bench] [--json PATH]``

- Inputs: synthetic STRING v12 + BioGRID + TFLink + regulatory + GFF3 (:mod:`synth.graph`,
  9 edge types, ~2.42 M pairs over 6,607 genes at scale 1) and the Kuzmin-2018-style table
  (:func:`benchmarks.dataset.ensure_tables`: 332,313 triples, ~739k samples with the digenic
  ones), generated once per (seed, scale) under ``--workdir`` and reused (the generator writes
  ``SYNTHETIC.txt`` last: it is the completeness marker). The graph and dataset stores are built
  once into ``WORKDIR/precompute-out`` (``run_build``, untimed setup, reused while current).
- OURS: the precompute stage (``plan_precompute(force=True)``, ``prepare_precompute``,
  ``run_precompute_tasks`` on its own LocalCluster, ``write_records``, ``publish_precompute``),
  each stage timed, in a fresh interpreter pinned to ``--cores`` CPUs (the dask workers inherit
  the affinity; one worker per core). Peak memory: a thread of that interpreter samples every
  ~50 ms the RSS of its whole process tree (nannies and workers included): the peak of the SUM,
  and the max of any single process. Configurations: masks + k-hop (k=1,2,3 per_type) with LMDB
  records (timed apart); the same at ``--chunk-samples / 4`` (memory follows the chunk size);
  adjacency rows only (``--adjacency-steps`` x every graph x 256 rows x 64 negatives, 1 epoch).
  Bytes per sample come from the published manifest's ``stored_bytes``.
- BASELINE, same run, same pinning: what research code does at load time, per sample, on the
  first ``--baseline-samples`` samples: node mask ``torch.ones(n, uint8)`` with the perturbed
  genes zeroed; per edge type ``~(isin(ei[0], S) | isin(ei[1], S))``; for k = 1, 2, 3 PyG's
  ``k_hop_subgraph(S, k, ei, relabel_nodes=False, num_nodes=n)`` per type, union of the node
  sets. Its outputs are compared with ours on the first samples (k-hop sets, masked counts).

Targets (checked at ``--scale 1`` only): >= 20,000 samples/s on 2 cores (end to end and compute
only, both reported); stored bytes per sample < 1% of the 2.55 MB dense reference record;
adjacency rows (1,000 steps) < 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._report import Record, format_table, run_metadata, write_json

DEFAULT_WORKDIR = Path("data/bench")
GRAPHS = ["string12", "physical", "tflink", "regulatory"]
TARGET_SAMPLES_PER_S = 20_000
REFERENCE_BYTES = 2.55e6  # the reference's dense record per sample
TARGET_FRACTION = 0.01
TARGET_ADJ_S = 60.0
CHECK_SAMPLES = 20  # baseline outputs compared with ours on this many samples


# --- inputs (untimed) ----------------------------------------------------------------------

def ensure_inputs(workdir: Path, seed: int, scale: float) -> tuple[Path, Path]:
    """(raw folder with every graph source and a kuzmin2018 link, GFF3 path); generated once."""
    from benchmarks.dataset import ensure_tables
    from synth.graph import GENERATOR_VERSION, OUTPUTS, generate

    raw = workdir / f"synth-all-seed{seed}-scale{scale:g}"
    note = raw / "SYNTHETIC.txt"  # written last by generate()
    want = f"--scale {scale:g} --seed {seed} (synth.graph version {GENERATOR_VERSION})"
    if not (note.is_file() and want in note.read_text() and all((raw / p).is_file() for p in OUTPUTS.values())):
        if raw.exists():
            shutil.rmtree(raw)
        print(f"generating synthetic graph sources (seed {seed}, scale {scale:g}) in {raw} ...", file=sys.stderr)
        generate(raw, scale=scale, seed=seed)
    ph = ensure_tables(workdir, "kuzmin2018", scale, seed)
    link = raw / "kuzmin2018"
    if not link.exists():
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath((ph / "kuzmin2018").resolve(), raw.resolve()))
    return raw, raw / OUTPUTS["genome"]


def ensure_stores(workdir: Path, raw: Path, gff: Path) -> tuple[Path, Path]:
    """(graph store, dataset store) in WORKDIR/precompute-out, built unless current."""
    import logging

    from pipeline.config import BuildConfig
    from pipeline.sequence import run_build

    logging.basicConfig(level=logging.WARNING)
    res = run_build(BuildConfig.create(graphs=GRAPHS, raw=raw, out=workdir / "precompute-out", genes=gff, name="full",
                                datasets=["kuzmin2018"]))
    assert res.dataset is not None
    return res.graph, res.dataset


# --- child side: one timed configuration -----------------------------------------------------

class TreeSampler(threading.Thread):
    """Peak RSS (MiB) of this process and its descendants: sum, max single, main, max worker; per phase."""

    def __init__(self, every: float = 0.05) -> None:
        import psutil

        super().__init__(daemon=True)
        self.me, self.every, self.phase, self.error = psutil.Process(), every, "start", psutil.Error
        self.peaks: dict[str, dict[str, float]] = {}
        self.done = threading.Event()

    def sample(self) -> None:
        main, others = self.me.memory_info().rss, []
        for p in self.me.children(recursive=True):
            with contextlib.suppress(self.error):  # a process that just ended
                others.append(p.memory_info().rss)
        pk = self.peaks.setdefault(self.phase, dict.fromkeys(("sum", "max", "main", "worker"), 0.0))
        for k, v in zip(pk, (main + sum(others), max([main, *others]), main, max(others, default=0))):
            pk[k] = max(pk[k], v / 2**20)

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()


def _child_stage(spec: dict[str, Any]) -> dict[str, Any]:
    from pipeline.graph.store import open_graph
    from pipeline.precompute import stages as pc
    from pipeline.precompute.khop import unpack
    from pipeline.precompute.store import open_precomputed

    cfg = pc.PrecomputeConfig(**spec["config"])
    plan = pc.plan_precompute(cfg, Path(spec["graph"]), Path(spec["dataset"]), force=True)
    mem, secs = TreeSampler(), {}
    mem.sample()
    mem.start()
    client_cm = pc.dask_client

    @contextlib.contextmanager
    def timed_client(*a: Any) -> Iterator[Any]:  # the stage's compute/verify clocks include start/shutdown
        t = time.perf_counter()
        with client_cm(*a) as client:
            secs["cluster_start"] = time.perf_counter() - t
            yield client
            t = time.perf_counter()
        secs["cluster_shutdown"] = time.perf_counter() - t

    pc.dask_client = timed_client

    def timed(name: str, fn: Any, *a: Any) -> Any:
        mem.phase = name
        t = time.perf_counter()
        try:
            return fn(*a)
        finally:
            secs[name] = time.perf_counter() - t

    staging = timed("prepare", pc.prepare_precompute, plan)
    results = timed("tasks", pc.run_precompute_tasks, plan, staging)
    recs = timed("records", pc.write_records, plan, staging)
    store = timed("publish", pc.publish_precompute, plan, staging, results, recs)
    mem.done.set()
    mem.join()
    s = open_precomputed(store)
    m = s.manifest
    out: dict[str, Any] = {"seconds": secs, "compute_s": results.compute_seconds,
                           "memory": mem.peaks, "n_samples": m["n_samples"],
                           "stored_bytes": m["stored_bytes"], "edge_counts": m["graph"]["edge_counts"],
                           "n_genes": m["graph"]["n_genes"], "n_chunks": m["n_chunks"]}
    if plan.records is not None:  # allocated bytes (the LMDB map is a sparse file)
        out["records_bytes"] = sum(f.stat().st_blocks * 512 for f in plan.records.rglob("*") if f.is_file())
    n = min(spec.get("check", 0), m["n_samples"])
    if n and "khop" in m["parameters"]["artifacts"]:
        zeros = (m["graph"]["n_genes"] - s.node_mask_dense(slice(0, n)).sum(axis=1)).tolist()
        removed = [0] * n
        graph = open_graph(spec["graph"])
        for t in s.edge_types:
            ptr, _ = s.removed_edges(t, 0, graph)
            removed = [a + int(b) for a, b in zip(removed, (ptr[1:] - ptr[:-1])[:n])]
        khop = {k: [unpack(r[None], s.n_genes)[0].nonzero()[0].tolist() for r in s.khop_bits(k, rows=slice(0, n))]
                for k in (1, 2, 3)}
        out["check"] = [{"zeros": zeros[i], "removed": removed[i], **{f"k{k}": khop[k][i] for k in khop}}
                        for i in range(n)]
    return out


def _child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl
    import torch
    from torch_geometric.utils import k_hop_subgraph

    from pipeline.dataset.store import open_dataset
    from pipeline.graph.store import open_graph

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    graph = open_graph(spec["graph"])
    n = graph.n_genes
    eis = [torch.from_numpy(graph.edge_index(t)) for t in graph.edge_types]  # the graph held in memory
    df = (open_dataset(spec["dataset"]).scan().filter(pl.col("sample_id") < spec["samples"])
          .select("sample_id", "gene_idx").collect().sort("sample_id"))
    samples = [list(g) for g in df["gene_idx"].to_list()]
    check = []
    t0 = time.perf_counter()
    for i, genes in enumerate(samples):
        S = torch.tensor(genes, dtype=torch.long)
        node = torch.ones(n, dtype=torch.uint8)
        node[S] = 0
        edge_masks = [~(torch.isin(ei[0], S) | torch.isin(ei[1], S)) for ei in eis]
        sets = {k: torch.unique(torch.cat([k_hop_subgraph(S, k, ei, relabel_nodes=False, num_nodes=n)[0]
                                           for ei in eis])) for k in (1, 2, 3)}
        if i < spec["check"]:
            check.append({"zeros": int(n - node.sum()), "removed": int(sum(int((~m).sum()) for m in edge_masks)),
                          **{f"k{k}": v.tolist() for k, v in sets.items()}})
    seconds = time.perf_counter() - t0
    return {"samples": len(samples), "seconds": seconds, "samples_per_s": len(samples) / seconds, "check": check}


def _child(spec_path: str) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    out = _child_baseline(spec) if spec["mode"] == "baseline" else _child_stage(spec)
    Path(spec["result"]).write_text(json.dumps(out))
    return 0


# --- parent side ---------------------------------------------------------------------------

def run_child(spec: dict[str, Any], workdir: Path, cores: int, tag: str) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter pinned to ``cores`` CPUs; returns its JSON result."""
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cpus = have[:cores] if cores > 0 else have
    th = str(len(cpus))
    env = {**os.environ, "POLARS_MAX_THREADS": th, "OMP_NUM_THREADS": th, "BLOSC_NTHREADS": th,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    spec_path, result = workdir / f".precompute-{tag}.spec.json", workdir / f".precompute-{tag}.result.json"
    result.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "result": str(result)}))
    log_path = workdir / f"last-precompute-{tag}.log"
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.precompute", "--child", str(spec_path)],
                              stdout=log, stderr=subprocess.STDOUT, env=env,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
                              if hasattr(os, "sched_setaffinity") else None)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"precompute bench child {tag!r} failed (exit {proc.returncode}); log {log_path}:\n"
                           f"{log_path.read_text()[-3000:]}")
    out = json.loads(result.read_text())
    spec_path.unlink()
    result.unlink()
    out.update(wall_s=wall, cores=len(cpus))
    return out


def _stage(graph: Path, dataset: Path, workdir: Path, cores: int, tag: str, check: int = 0,
           **config: Any) -> dict[str, Any]:
    r = run_child({"mode": "stage", "graph": str(graph), "dataset": str(dataset), "check": check, "config": config},
                  workdir, cores, tag)
    for name in ("precomputed.zarr", "records.lmdb"):  # big outputs: gone before the next run
        shutil.rmtree(graph.parent / name, ignore_errors=True)
    s = r["seconds"]
    # compute_s is the stage's own clock (tasks compute, write and read back), taken inside its dask
    # client (no cluster start/stop)
    r["e2e_s"] = s["prepare"] + s["tasks"] + s["publish"]  # LMDB records excluded (optional, timed apart)
    r["rate_compute"] = r["n_samples"] / r["compute_s"]
    r["rate_e2e"] = r["n_samples"] / r["e2e_s"]
    r["peak"] = {k: max(p[k] for p in r["memory"].values()) for k in ("sum", "max", "main", "worker")}
    return r


def _verdict(ok: bool, checked: bool) -> str:
    return ("PASS" if ok else "FAIL") if checked else "n/a (scale != 1)"


def report(mk: dict[str, Any], small: dict[str, Any], adj: dict[str, Any], base: dict[str, Any], args: Any
           ) -> tuple[str, list[Record], bool]:
    """The console tables, the JSON records and whether every checked target holds."""
    checked, n = args.scale == 1.0, mk["n_samples"]
    sb, c, c4 = mk["stored_bytes"], args.chunk_samples, args.chunk_samples // 4
    base_rate = base["samples_per_s"]
    ok_e2e, ok_cmp = mk["rate_e2e"] >= TARGET_SAMPLES_PER_S, mk["rate_compute"] >= TARGET_SAMPLES_PER_S
    adj_s = adj["compute_s"]
    ok_adj = adj_s < TARGET_ADJ_S
    total = sum(sb.values())
    ok_bytes = total / n < TARGET_FRACTION * REFERENCE_BYTES
    same = [a == b for a, b in zip(mk.get("check", []), base["check"])]
    tgt = f">= {TARGET_SAMPLES_PER_S:,} on {args.cores} cores"
    s, mem = mk["seconds"], mk["peak"]
    adj_mb = sum(v for k, v in adj["stored_bytes"].items() if k.startswith("adjacency")) / 1e6
    phases = [("prepare", "prepare", s["prepare"]), ("LocalCluster start", "cluster_start", s["cluster_start"]),
              ("tasks: compute, write, read back", "compute", mk["compute_s"]),
              ("LocalCluster shutdown", "cluster_shutdown", s["cluster_shutdown"]),
              ("publish", "publish", s["publish"])]
    rows = [["samples (Kuzmin-style dataset)", f"{n:,}", f"{base['samples']:,} (first)"],
            *[[f"  {label} s", f"{v:.2f}"] for label, _, v in phases],
            ["  end to end s (prepare..publish, no LMDB)", f"{mk['e2e_s']:.2f}", f"{base['seconds']:.2f}"],
            ["samples/s, tasks only", f"{mk['rate_compute']:,.0f}", "", "",
             f"{tgt}: {_verdict(ok_cmp, checked)}"],
            ["samples/s, end to end", f"{mk['rate_e2e']:,.0f}", f"{base_rate:,.1f}",
             f"{mk['rate_e2e'] / base_rate:,.0f}x", f"{tgt}: {_verdict(ok_e2e, checked)}"],
            ["peak RSS MiB, process tree sum", f"{mem['sum']:,.0f}"],
            ["peak RSS MiB, max single process (main / worker)",
             f"{mem['max']:,.0f} ({mem['main']:,.0f} / {mem['worker']:,.0f})"],
            ["adjacency rows: compute, write, read back s", f"{adj_s:.2f}", "", "",
             f"< {TARGET_ADJ_S:g} s: {_verdict(ok_adj, checked)}"],
            [f"  {args.adjacency_steps:,} steps x {len(adj['edge_counts'])} graphs x 256 rows x 64 neg.: MB stored",
             f"{adj_mb:,.1f}"],
            ["  peak RSS MiB, tree sum / max process", f"{adj['peak']['sum']:,.0f} / {adj['peak']['max']:,.0f}"]]
    if "records_bytes" in mk:
        rows += [["LMDB records: write_records s", f"{s['records']:.2f}"],
                 ["  records/s", f"{n / s['records']:,.0f}"],
                 ["  bytes per sample (allocated on disk)", f"{mk['records_bytes'] / n:,.0f}"]]
    rows.append([f"baseline output == ours (first {len(same)} samples)", "yes" if same and all(same) else "NO"])
    rows = [r + [""] * (5 - len(r)) for r in rows]
    t1 = format_table(["masks + k-hop 1/2/3 (per_type)", "ours", "baseline", "ratio", "target"], rows)

    dense = mk["n_genes"] + sum(mk["edge_counts"].values())
    em = {k: v for k, v in sb.items() if k.startswith("edge_mask/")}
    parts = [("node mask, dense (compressed)", "node_mask_dense", sb.get("node_mask/dense", 0)),
             ("node flips (CSR)", "node_flips", sb.get("node_mask/indptr", 0) + sb.get("node_mask/genes", 0)),
             ("edge masks, all types (removed ids)", "edge_masks", sum(em.values())),
             *[(f"  {k[10:]}", f"edge_mask.{k[10:]}", v) for k, v in sorted(em.items())],
             *[(f"k-hop {k.rsplit('/', 1)[1]} (bit sets)", f"khop.{k.rsplit('/', 1)[1]}", v)
               for k, v in sorted(sb.items()) if k.startswith("khop/")],
             ("perturbation CSR", "perturbation", sb.get("perturbation", 0)),
             ("per-gene k-hop sets (fixed)", "khop_genes", sb.get("khop_genes", 0))]
    rows2 = [[name, f"{v / n:,.1f}", f"{v / 1e6:,.2f}", f"{100 * v / n / dense:.4f}%"] for name, _, v in parts]
    rows2 += [["total stored", f"{total / n:,.1f}", f"{total / 1e6:,.2f}", f"{100 * total / n / dense:.4f}%"],
              [f"dense uint8 node + edge masks ({mk['n_genes']:,} + {sum(mk['edge_counts'].values()):,})",
               f"{dense:,}", "", "100%"],
              ["reference dense record", f"{REFERENCE_BYTES:,.0f}", "", ""]]
    t2 = format_table(["bytes per sample", "B/sample", "MB", "% of dense"], rows2)
    t2 += (f"\ntarget: total < {100 * TARGET_FRACTION:g}% of {REFERENCE_BYTES / 1e6:g} MB per sample: "
           f"{100 * total / n / REFERENCE_BYTES:.3f}%: {_verdict(ok_bytes, checked)}")

    rows3 = [[f"{cs:,} samples/chunk ({r['n_chunks']} chunks)", f"{r['memory']['tasks']['worker']:,.0f}",
              f"{r['memory']['tasks']['sum']:,.0f}", f"{r['peak']['max']:,.0f}", f"{r['compute_s']:.2f}"]
             for cs, r in ((c, mk), (c4, small))]
    slope = (mk["memory"]["tasks"]["worker"] - small["memory"]["tasks"]["worker"]) / (c - c4) * 2**20
    t3 = format_table(["masks + k-hop, chunk size", "worker peak MiB", "tree sum MiB (tasks)",
                       "max process MiB (all)", "compute s"], rows3)
    t3 += (f"\nper-sample working set of a worker: {slope:,.0f} B x chunk size, on a fixed "
           f"{small['memory']['tasks']['worker'] - slope * c4 / 2**20:,.0f} MiB (graph context); "
           f"dataset: {n:,} samples")
    text = "\n\n".join([t1, t2, t3])
    if args.scale != 1.0:
        text += "\n(targets are checked at --scale 1 only)"

    recs = [Record("precompute.masks_khop.samples", n, "samples"),
            Record("precompute.masks_khop.samples_per_s", round(mk["rate_e2e"]), "samples/s"),
            Record("precompute.masks_khop.samples_per_s_compute", round(mk["rate_compute"]), "samples/s"),
            *[Record(f"precompute.masks_khop.seconds.{k}", round(v, 3), "s") for _, k, v in phases],
            Record("precompute.masks_khop.seconds.end_to_end", round(mk["e2e_s"], 3), "s"),
            Record("precompute.masks_khop.peak_rss_tree_sum", round(mem["sum"]), "MiB"),
            Record("precompute.masks_khop.peak_rss_max_process", round(mem["max"]), "MiB"),
            *[Record(f"precompute.bytes_per_sample.{key}", round(v / n, 1), "B/sample") for _, key, v in parts],
            Record("precompute.bytes_per_sample.total", round(total / n, 1), "B/sample"),
            Record("precompute.bytes_per_sample.dense_uint8", dense, "B/sample"),
            Record("precompute.bytes_per_sample.percent_of_reference", round(100 * total / n / REFERENCE_BYTES, 4),
                   "%"),
            Record("precompute.adjacency.seconds", round(adj_s, 3), "s"),
            Record("precompute.adjacency.megabytes", round(adj_mb, 1), "MB"),
            *[Record(f"precompute.chunk{cs}.{k}", round(r["memory"]["tasks"][k2]), "MiB")
              for cs, r in ((c, mk), (c4, small)) for k, k2 in (("peak_rss_worker", "worker"),
                                                                ("peak_rss_tree_sum", "sum"))],
            Record("precompute.baseline.samples", base["samples"], "samples"),
            Record("precompute.baseline.samples_per_s", round(base_rate, 2), "samples/s"),
            Record("precompute.speedup_end_to_end", round(mk["rate_e2e"] / base_rate, 1), "x"),
            Record("precompute.baseline.agrees", int(bool(same) and all(same)), "bool")]
    if "records_bytes" in mk:
        recs += [Record("precompute.records.seconds", round(s["records"], 3), "s"),
                 Record("precompute.records.records_per_s", round(n / s["records"]), "records/s"),
                 Record("precompute.records.bytes_per_sample", round(mk["records_bytes"] / n, 1), "B/sample")]
    if checked:
        recs += [Record("precompute.target.samples_per_s_end_to_end", int(ok_e2e), "bool"),
                 Record("precompute.target.samples_per_s_compute", int(ok_cmp), "bool"),
                 Record("precompute.target.bytes_under_1pct", int(ok_bytes), "bool"),
                 Record("precompute.target.adjacency_under_60s", int(ok_adj), "bool")]
    return text, recs, (ok_e2e and ok_cmp and ok_bytes and ok_adj) if checked else True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks precompute", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="synthetic graph and table size (default 1: real)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=int, default=2, help="CPUs each timed run is pinned to (0 = all)")
    p.add_argument("--chunk-samples", type=int, default=4096, help="power of two >= 256 (also run at 1/4)")
    p.add_argument("--adjacency-steps", type=int, default=1000)
    p.add_argument("--baseline-samples", type=int, default=200, help="samples the baseline loops over (>= 1)")
    p.add_argument("--lmdb", action=argparse.BooleanOptionalAction, default=True, help="also time LMDB records")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    c = args.chunk_samples
    if c < 256 or c & (c - 1) or args.baseline_samples < 1:
        raise SystemExit("--chunk-samples: a power of two >= 256 (also run at a quarter); --baseline-samples >= 1")
    wd = args.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    raw, gff = ensure_inputs(wd, args.seed, args.scale)
    graph, dataset = ensure_stores(wd, raw, gff)
    common = dict(khop=(1, 2, 3), khop_modes=("per_type",))
    mk = _stage(graph, dataset, wd, args.cores, "masks-khop", CHECK_SAMPLES, artifacts=["masks", "khop"],
                chunk_samples=c, lmdb=args.lmdb, **common)
    small = _stage(graph, dataset, wd, args.cores, "masks-khop-quarter", artifacts=["masks", "khop"],
                   chunk_samples=c // 4, lmdb=False, **common)
    adj = _stage(graph, dataset, wd, args.cores, "adjacency", artifacts=["adjacency-rows"], chunk_samples=c,
                 adjacency_steps=args.adjacency_steps, adjacency_epochs=1, adjacency_rows=256,
                 adjacency_negatives=64)
    base = run_child({"mode": "baseline", "graph": str(graph), "dataset": str(dataset),
                      "samples": args.baseline_samples, "check": CHECK_SAMPLES}, wd, args.cores, "baseline")
    text, records, ok = report(mk, small, adj, base, args)
    print(text)
    if args.json:
        meta = run_metadata("precompute", {**{k: (str(v) if isinstance(v, Path) else v)
                                              for k, v in vars(args).items()},
                                           "cores_used": mk["cores"], "graphs": GRAPHS, "synthetic_input": True},
                            packages=("numpy", "polars", "zarr", "numcodecs", "dask", "distributed", "lmdb",
                                      "psutil", "torch", "torch_geometric"))
        print(f"wrote {write_json(args.json, records, meta)}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2]))
    sys.exit(main())
