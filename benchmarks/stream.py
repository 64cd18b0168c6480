"""Streaming dataset: steps/s, samples/s and bytes per step per batch format and store layout, vs peers and baselines.

``python -m benchmarks stream [--scale 1.0] [--seconds 3] [--device cpu|cuda] [--peers litdata mosaic] [--json PATH]``

- Inputs: the full-scale synthetic build (9 edge types, ~2.42M gene pairs, 6,607
  genes; the Kuzmin-style dataset, ~739k samples of which ~591k train), with
  masks, 1/2/3-hop sets, 1,000 steps of adjacency rows (256 rows x 64 negatives per
  graph) and LMDB records precomputed (built once under ``--workdir``, untimed).
- OURS: ``PerturbationStream`` over the train split, shuffled, for each format (index,
  graph = full graph with compact masks, khop = 1-hop node sets, transformer = M(S) + 9
  graphs' compact adjacency rows) and layout (zarr, lmdb), batch sizes 28 and 64, in
  process (0 workers) and through 2 DataLoader workers (``StreamLoader``, ``--group``
  batches per hand-over): batches iterated for ``--seconds`` after one warm-up batch.
  Bytes per step: what a worker ships to the main process for one batch (its pickle).
  With ``--device cuda`` each batch is also moved to the GPU and expanded there.
- PEERS, same run, same samples (the train split's perturbed genes, types and two labels),
  shuffled, same batch sizes and worker counts: LitData (``optimize`` + ``StreamingDataset`` +
  ``StreamingDataLoader``) and MosaicML Streaming (``MDSWriter`` + ``StreamingDataset`` +
  ``DataLoader``), each collating a batch into the same CSR tensors as an ``index`` batch.
  Written once under ``--workdir``; a peer that is not installed is skipped with the reason.
- BASELINES, same run: the transformer format's CPU-expanded path (rows expanded with
  ``pipeline.precompute.adjacency.expand_rows`` in the worker and shipped expanded, in one
  shared-memory storage, as the stream did before compact rows); the expansion itself,
  numpy per step vs ``TransformerBatch.adjacency`` (torch, here on the CPU); research-code
  per-sample loading: a PyG ``HeteroData`` with the whole graph and its masks, collated
  with ``Batch.from_data_list`` (full graph); PyG ``k_hop_subgraph`` per edge type (1-hop).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import PACKAGES as PACKAGES_REPORTED
from benchmarks._report import Record, format_table, run_metadata, write_json
from benchmarks._report import verdict as _verdict

DEFAULT_WORKDIR = Path("data/bench")
TARGET_RATIO = 500  # graph batches vs the HeteroData baseline
PEERS = ("litdata", "mosaic")
MAX_STEP_BYTES = 256 * 1024
PEER_FACTOR = {"index": 10, "graph": 5}  # in process, vs LitData
PEER_FACTOR_WORKERS = 10  # index through 2 workers, vs the best peer
WORKER_RATIO = 0.5  # through 2 workers vs in process, every format
TRANSFORMER_STEPS = 1_000  # through 2 workers
TRANSFORMER_VS_CPU = 12
TRANSFORMER_VS_INDEX = 0.5


def ensure_build(workdir: Path, scale: float) -> Path:
    """The full-scale synthetic build with everything precomputed (built once; reused while current)."""
    from benchmarks.precompute import GRAPHS, ensure_inputs
    from pipeline.config import BuildConfig
    from pipeline.precompute.stages import PrecomputeConfig
    from pipeline.sequence import run_build

    raw, gff = ensure_inputs(workdir, seed=0, scale=scale)  # the same inputs as the precompute benchmark
    cfg = BuildConfig.create(graphs=GRAPHS, raw=raw, genes=gff, out=workdir / "stream-out", name=f"full{scale:g}",
                      datasets=["kuzmin2018"],
                      precompute=PrecomputeConfig(khop=(1, 2, 3), lmdb=True, adjacency_steps=1000))
    return Path(run_build(cfg).graph).parent


def _step_bytes(batch: Any) -> int:
    """Bytes a worker ships for this batch (pipe + shared memory)."""
    from pipeline.stream.batches import shipped_bytes

    return shipped_bytes(batch)


def _tensor_bytes(obj: Any) -> int:
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _rate(iters: Any, seconds: float, size: Any, on_batch: Any = None) -> tuple[float, float, Any]:
    """(steps/s, samples/s, first batch) in steady state: epoch after epoch (``iters`` yields one
    iterator per epoch) until ``seconds`` of iteration, each epoch's first batch untimed (worker
    start, first chunk reads: a real epoch is thousands of times longer than this benchmark's)."""
    n = samples = 0
    dt, first = 0.0, None
    for it in iters:
        b0 = next(it, None)
        if b0 is None:
            break
        first = b0 if first is None else first
        t0 = time.perf_counter()
        for b in it:
            if on_batch is not None:
                on_batch(b)
            n += 1
            samples += size(b)
            if dt + time.perf_counter() - t0 > seconds:
                break
        dt += time.perf_counter() - t0
        del it
        if dt > seconds:
            break
    return n / dt, samples / dt, first


def _epochs(loader: Any, ds: Any = None) -> Any:
    """One fresh iterator of ``loader`` per epoch (``ds.set_epoch`` first when given)."""
    epoch = 0
    while True:
        if ds is not None:
            ds.set_epoch(epoch)
        yield iter(loader)
        epoch += 1


def measure(build: Path, fmt: str, layout: str, batch_size: int, workers: int, seconds: float,
            device: str = "cpu", group: int = 8, expand: bool = False) -> dict[str, Any]:
    """Rates of our stream; ``expand``: also expand every batch (masks, adjacency rows) in the main process."""
    import torch

    from pipeline.stream import PerturbationStream, StreamLoader

    ds = PerturbationStream(build, fmt=fmt, layout=layout, batch_size=batch_size, seed=0)
    expand = expand or device != "cpu"
    static = ds.static().to(device) if expand else None

    def on_device(b: Any) -> None:
        b = b.to(device, non_blocking=True)
        if fmt == "graph":
            b.node_mask(static), b.edge_masks(static)
        elif fmt == "khop":
            b.node_sets(static.n_genes)
        elif fmt == "transformer":
            b.adjacency(static)

    loader = StreamLoader(ds, num_workers=workers, group=group, pin_memory=device != "cpu",
                          multiprocessing_context="fork" if workers else None)
    steps, samples, first = _rate(_epochs(loader, ds), seconds, len, on_device if expand else None)
    if device != "cpu":
        torch.cuda.synchronize()
    out = {"steps_per_s": steps, "samples_per_s": samples, "step_bytes": _step_bytes(first)}
    if workers:  # what a worker hands over per step (transformer: without the rows, read in this process)
        blk = next(ds.blocks(group, rows=False))
        out["worker_step_bytes"] = _step_bytes(blk) / len(blk)
    return out


class _CpuExpanded:
    """The transformer format as shipped before compact rows: every graph's rows expanded in the
    worker with ``expand_rows`` (numpy), all tensors in one storage (torch shares it by shm)."""

    def __init__(self, build: Path, batch_size: int) -> None:
        from pipeline.graph.store import open_graph
        from pipeline.stream import PerturbationStream

        self.ds = PerturbationStream(build, fmt="transformer", batch_size=batch_size, seed=0)
        g = open_graph(build / "graph.zarr")
        self.csr = {t: g.csr(t) for t in self.ds.adjacency_graphs}

    def expand(self, b: Any) -> dict[str, Any]:
        import torch

        from pipeline.precompute.adjacency import expand_rows

        out: dict[str, Any] = {"sample_ids": b.sample_ids, "pert_ptr": b.pert_ptr, "pert_genes": b.pert_genes,
                               "pert_types": b.pert_types, "y": b.y, "y_mask": b.y_mask}
        for t, c in b.rows.items():
            csr = self.csr[t]
            ptr, cols, target, pos = expand_rows(csr.indptr, csr.indices, csr.weights, c.rows.numpy(),
                                                 c.negatives().numpy())
            out[t] = (c.rows.long(), torch.from_numpy(ptr), torch.from_numpy(cols.astype(np.int64)),
                      torch.from_numpy(target), torch.from_numpy(pos))
        return _one_storage(out)

    def __iter__(self) -> Any:
        for b in self.ds:
            yield self.expand(b)


def _one_storage(tree: dict[str, Any]) -> dict[str, Any]:
    """The tensors of ``tree`` (values: tensors or tuples of them) as views of ONE uint8 storage."""
    import torch

    flat = [(k, i, t) for k, v in tree.items() for i, t in (enumerate(v) if isinstance(v, tuple) else [(None, v)])]
    offs, total = [], 0
    for _, _, t in flat:
        offs.append(total)
        total += -(-t.numel() * t.element_size() // 8) * 8
    buf = torch.empty(total, dtype=torch.uint8)
    out: dict[str, Any] = {}
    for (k, i, t), off in zip(flat, offs, strict=True):
        v = buf[off:off + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
        v.copy_(t)
        if i is None:
            out[k] = v
        else:
            out[k] = (*out.get(k, ()), v)
    return out


def measure_cpu_expanded(build: Path, batch_size: int, workers: int, seconds: float) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    src = _CpuExpanded(build, batch_size)

    class _Iter(IterableDataset):
        def __iter__(self) -> Any:
            return iter(src)

    # the stream's former hand-over: one storage per batch through torch's "file_system" shm
    torch.multiprocessing.set_sharing_strategy("file_system")
    loader = DataLoader(_Iter(), batch_size=None, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    steps, samples, first = _rate(_epochs(loader), seconds, lambda b: len(b["sample_ids"]))
    return {"steps_per_s": steps, "samples_per_s": samples, "step_bytes": _tensor_bytes(first)}


def expansion_rates(build: Path, seconds: float, device: str = "cpu") -> dict[str, float]:
    """Steps/s expanding every graph's rows of a step: numpy ``expand_rows`` vs ``TransformerBatch.adjacency``
    on the CPU, and (``device`` not cpu) ``adjacency`` with the batch and the static graph on ``device``."""
    import torch

    src = _CpuExpanded(build, 64)
    ds = src.ds
    static = ds.static()
    batches = [b for _, b in zip(range(20), ds)]
    fns = [("numpy", src.expand, batches), ("device", lambda b: b.adjacency(static), batches)]
    if device != "cpu":
        on = static.to(device)
        fns.append((device, lambda b: b.adjacency(on), [b.to(device) for b in batches]))
    out = {}
    for name, fn, todo in fns:
        for b in todo[:2]:  # warm (kernels, allocator)
            fn(b)
        if device != "cpu":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for b in todo:
                fn(b)
                n += 1
        if device != "cpu":
            torch.cuda.synchronize()
        out[name] = n / (time.perf_counter() - t0)
    return out


def expand_rate(build: Path, seconds: float) -> float:
    from pipeline.stream.dataset import PerturbationStream

    ds = PerturbationStream(build, fmt="graph", batch_size=64)
    static = ds.static()
    batches = [b for _, b in zip(range(20), ds)]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in batches:
            b.node_mask(static)
            b.edge_masks(static)
            n += len(b)
    return n / (time.perf_counter() - t0)


# --- peers: the same samples through LitData and MosaicML Streaming -----------------------------

_SAMPLES: dict[str, np.ndarray] = {}  # the peers' writers read these (set before their worker processes fork)


def _train_samples(build: Path) -> dict[str, np.ndarray]:
    """The train split's samples as the peers store them: CSR genes/types and the two labels."""
    from pipeline.precompute.store import open_precomputed
    from pipeline.stream import PerturbationStream

    ds = PerturbationStream(build, fmt="index", batch_size=64)
    ptr, genes, types = open_precomputed(build / "precomputed.zarr").perturbations()
    return {"ids": ds.ids, "ptr": ptr, "genes": genes.astype(np.int32), "types": types.astype(np.uint8),
            "y": ds.y}


def _sample(i: int) -> dict[str, np.ndarray]:
    s = _SAMPLES
    sid = int(s["ids"][i])
    a, b = int(s["ptr"][sid]), int(s["ptr"][sid + 1])
    return {"genes": s["genes"][a:b], "types": s["types"][a:b], "y": s["y"][sid]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Peer samples -> the tensors of an ``index`` batch (CSR genes/types, labels)."""
    import torch

    lens = np.array([len(s["genes"]) for s in samples])
    ptr = np.zeros(len(samples) + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    return {"pert_ptr": torch.from_numpy(ptr),
            "pert_genes": torch.from_numpy(np.concatenate([np.asarray(s["genes"]) for s in samples]).astype(np.int64)),
            "pert_types": torch.from_numpy(np.concatenate([np.asarray(s["types"]) for s in samples]).astype(np.int64)),
            "y": torch.from_numpy(np.stack([np.asarray(s["y"]) for s in samples]))}


def _peer_missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here (None: it can)."""
    import importlib.util

    mod = {"litdata": "litdata", "mosaic": "streaming"}[peer]
    if importlib.util.find_spec(mod) is None:
        return f"{mod} is not installed (pip install -e '.[bench]')"
    return None


def _import_mosaic() -> Any:
    """``streaming`` (MosaicML) without its vision/multimodal dataset zoo: those import torchvision,
    whose wheels on the index are not built for the CPU torch used here; only the core is used."""
    import importlib.util
    import types

    if importlib.util.find_spec("torchvision") is None:
        for name in ("streaming.vision", "streaming.multimodal"):
            sys.modules.setdefault(name, types.ModuleType(name))
    import streaming
    return streaming


def ensure_peer_data(workdir: Path, build: Path, peer: str) -> Path:
    """The train split written in ``peer``'s format under ``workdir/peers`` (once; reused)."""
    out = workdir / "peers" / f"{peer}-{build.name}"
    done = out / "COMPLETE"
    if done.exists():
        return out
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    _SAMPLES.update(_train_samples(build))
    n = len(_SAMPLES["ids"])
    t0 = time.perf_counter()
    if peer == "litdata":
        import litdata
        litdata.optimize(fn=_sample, inputs=list(range(n)), output_dir=str(out), chunk_bytes="64MB", num_workers=2,
                         start_method="fork", verbose=False)
    else:
        streaming = _import_mosaic()
        with streaming.MDSWriter(out=str(out), columns={"genes": "ndarray:int32", "types": "ndarray:uint8",
                                                        "y": "ndarray:float32"}, size_limit="64mb") as w:
            for i in range(n):
                w.write(_sample(i))
    done.write_text(f"{n} samples in {time.perf_counter() - t0:.0f}s\n")
    print(f"{peer}: wrote {n:,} samples to {out} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return out


def measure_peer(peer: str, data: Path, batch_size: int, workers: int, seconds: float) -> dict[str, Any]:
    ctx = {"multiprocessing_context": "fork"} if workers else {}
    if peer == "litdata":
        import litdata
        ds = litdata.StreamingDataset(str(data), shuffle=True, seed=0)
        loader = litdata.StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                             **ctx)
    else:
        from torch.utils.data import DataLoader
        streaming = _import_mosaic()
        streaming.base.util.clean_stale_shared_memory()
        ds = streaming.StreamingDataset(local=str(data), shuffle=True, shuffle_seed=0, batch_size=batch_size)
        loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate, **ctx)
    steps, samples, first = _rate(_epochs(loader), seconds, lambda b: len(b["pert_ptr"]) - 1)
    return {"steps_per_s": steps, "samples_per_s": samples, "step_bytes": _tensor_bytes(first)}


def baselines(build: Path, n_full: int, n_khop: int) -> dict[str, float]:
    """Research-code style loading, per sample: full graph + masks as HeteroData (collated), and 1-hop subgraphs."""
    import torch
    from torch_geometric.data import Batch, HeteroData
    from torch_geometric.utils import k_hop_subgraph

    from pipeline.graph.store import open_graph
    from pipeline.stream.dataset import PerturbationStream

    g = open_graph(build / "graph.zarr")
    ei = {t: torch.from_numpy(g.edge_index(t)) for t in g.edge_types}
    x = torch.from_numpy(np.nan_to_num(g.features()[0]))
    ds = PerturbationStream(build, fmt="index", batch_size=max(n_full, n_khop), shuffle=False)
    b = next(iter(ds))
    sets = [b.pert_genes[b.pert_ptr[i]:b.pert_ptr[i + 1]] for i in range(len(b))]
    t0 = time.perf_counter()
    datas = []
    for s in sets[:n_full]:
        d = HeteroData()
        d["gene"].x = x
        m = torch.ones(g.n_genes, dtype=torch.bool)
        m[s] = False
        d["gene"].node_mask = m
        for t, e in ei.items():
            d["gene", t, "gene"].edge_index = e
            d["gene", t, "gene"].edge_mask = m[e[0]] & m[e[1]]
        datas.append(d)
    Batch.from_data_list(datas)
    full = n_full / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for s in sets[:n_khop]:
        subset = [k_hop_subgraph(s, 1, e, relabel_nodes=False, num_nodes=g.n_genes)[0] for e in ei.values()]
        torch.unique(torch.cat(subset))
    khop = n_khop / (time.perf_counter() - t0)
    return {"full": full, "khop": khop}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks stream", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="graph scale of the synthetic build")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of iteration per configuration")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to move batches and expand them on the GPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[28, 64])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--group", type=int, default=32, help="batches per worker hand-over (StreamLoader)")
    p.add_argument("--formats", nargs="+", default=["index", "graph", "khop", "transformer"])
    p.add_argument("--peers", nargs="+", default=list(PEERS), help=f"peer loaders to compare: {PEERS} or none")
    p.add_argument("--baseline-samples", type=int, default=28)
    p.add_argument("--build", type=Path, help="an existing build folder to stream (default: the synthetic one)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    build = args.build or ensure_build(args.workdir, args.scale)
    base = baselines(build, args.baseline_samples, args.baseline_samples)
    res: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for fmt in args.formats:
        for layout in ("zarr", "lmdb"):
            for bs in args.batch_sizes:
                for w in args.workers:
                    res[(fmt, layout, bs, w)] = measure(build, fmt, layout, bs, w, args.seconds, args.device,
                                                        args.group)
    peers: dict[tuple[str, int, int], dict[str, Any]] = {}
    for peer in [p for p in args.peers if p != "none"]:
        why = _peer_missing(peer)
        if why:
            print(f"peer {peer}: skipped: {why}", file=sys.stderr)
            continue
        data = ensure_peer_data(args.workdir, build, peer)
        for bs in args.batch_sizes:
            for w in args.workers:
                peers[(peer, bs, w)] = measure_peer(peer, data, bs, w, args.seconds)
    cpu_exp = {}
    if "transformer" in args.formats:
        for bs in args.batch_sizes:
            for w in args.workers:
                cpu_exp[(bs, w)] = measure_cpu_expanded(build, bs, w, args.seconds)
    expn = expansion_rates(build, args.seconds, args.device) if "transformer" in args.formats else {}
    # end to end on the CPU: compact rows shipped, expanded in the trainer's process, vs today's path
    e2e = {(bs, w): measure(build, "transformer", "zarr", bs, w, args.seconds, args.device, args.group, expand=True)
           for bs in args.batch_sizes[-1:] for w in args.workers} if "transformer" in args.formats else {}

    rows: list[list[str]] = []
    recs: list[Record] = []

    def row(name: str, layout: str, bs: int | str, w: int | str, r: dict[str, Any], vs: str = "", target: str = "",
            verdict: str = "") -> None:
        rows.append([name, layout, str(bs), str(w), f"{r['steps_per_s']:,.0f}", f"{r['samples_per_s']:,.0f}",
                     f"{r['step_bytes'] / 1024:,.1f}", vs, target, verdict])

    def peer_best(bs: int, w: int) -> tuple[str, float] | None:
        have = [(p, peers[(p, bs, w)]["samples_per_s"]) for p in PEERS if (p, bs, w) in peers]
        return max(have, key=lambda x: x[1]) if have else None

    for (fmt, layout, bs, w), r in res.items():
        vs, target, verdict = [], [], []
        if w and (fmt, layout, bs, 0) in res:
            ratio = r["samples_per_s"] / res[(fmt, layout, bs, 0)]["samples_per_s"]
            vs.append(f"{ratio:.2f}x own w0")
            target.append(f">={WORKER_RATIO}x w0")
            verdict.append(_verdict(ratio >= WORKER_RATIO))
        lit = peers.get(("litdata", bs, w))
        if fmt in PEER_FACTOR and layout == "zarr" and not w and lit:
            ratio = r["samples_per_s"] / lit["samples_per_s"]
            vs.append(f"{ratio:.1f}x LitData")
            target.append(f">={PEER_FACTOR[fmt]}x LitData")
            verdict.append(_verdict(ratio >= PEER_FACTOR[fmt]))
        best = peer_best(bs, w)
        if fmt == "index" and layout == "zarr" and w and best:
            ratio = r["samples_per_s"] / best[1]
            vs.append(f"{ratio:.1f}x best peer ({best[0]})")
            target.append(f">={PEER_FACTOR_WORKERS}x best peer")
            verdict.append(_verdict(ratio >= PEER_FACTOR_WORKERS))
        if fmt == "graph" and not w:
            vs.append(f"{r['samples_per_s'] / base['full']:,.0f}x HeteroData")
        if fmt == "khop" and not w:
            vs.append(f"{r['samples_per_s'] / base['khop']:,.0f}x k_hop_subgraph")
        if fmt == "transformer":
            target.append(f"<={MAX_STEP_BYTES // 1024} KB/step")
            verdict.append(_verdict(r["step_bytes"] <= MAX_STEP_BYTES))
            cpu = cpu_exp.get((bs, w))
            if cpu:
                ratio = r["steps_per_s"] / cpu["steps_per_s"]
                vs.append(f"{ratio:.1f}x CPU-expanded")
                if w and layout == "zarr":
                    target.append(f">={TRANSFORMER_VS_CPU}x CPU-expanded")
                    verdict.append(_verdict(ratio >= TRANSFORMER_VS_CPU))
            idx = res.get(("index", layout, bs, w))
            if idx and w:
                ratio = r["steps_per_s"] / idx["steps_per_s"]
                vs.append(f"{ratio:.2f}x index steps")
                target.append(f">={TRANSFORMER_VS_INDEX}x index, >={TRANSFORMER_STEPS:,} steps/s")
                verdict.append(_verdict(ratio >= TRANSFORMER_VS_INDEX and r["steps_per_s"] >= TRANSFORMER_STEPS))
        row(fmt, layout, bs, w, r, "; ".join(vs), "; ".join(target), " ".join(verdict))
        name = f"stream.{fmt}.{layout}.b{bs}.w{w}"
        recs += [Record(f"{name}.samples_per_s", round(r["samples_per_s"]), "samples/s"),
                 Record(f"{name}.steps_per_s", round(r["steps_per_s"], 1), "steps/s"),
                 Record(f"{name}.step_bytes", r["step_bytes"], "bytes")]
        if "worker_step_bytes" in r:
            recs.append(Record(f"{name}.worker_step_bytes", round(r["worker_step_bytes"]), "bytes"))
    for (peer, bs, w), r in peers.items():
        label = {"litdata": "peer: LitData (optimize + StreamingDataset)",
                 "mosaic": "peer: MosaicML Streaming (MDS)"}[peer]
        row(label, "", bs, w, r)
        recs += [Record(f"stream.peer.{peer}.b{bs}.w{w}.samples_per_s", round(r["samples_per_s"]), "samples/s")]
    for (bs, w), r in cpu_exp.items():
        row("baseline: transformer, CPU-expanded rows (expand_rows in the worker)", "zarr", bs, w, r)
        recs += [Record(f"stream.baseline.transformer_cpu_expanded.b{bs}.w{w}.steps_per_s",
                        round(r["steps_per_s"], 1), "steps/s"),
                 Record(f"stream.baseline.transformer_cpu_expanded.b{bs}.w{w}.step_bytes", r["step_bytes"],
                        "bytes")]
    for (bs, w), r in e2e.items():
        cpu = cpu_exp[(bs, w)]
        ratio = r["steps_per_s"] / cpu["steps_per_s"]
        row(f"transformer + adjacency(static) on the {args.device} in the main process", "zarr", bs, w, r,
            f"{ratio:.1f}x CPU-expanded", "> CPU-expanded", _verdict(ratio > 1))
        recs.append(Record(f"stream.transformer_expanded.zarr.b{bs}.w{w}.steps_per_s", round(r["steps_per_s"], 1),
                           "steps/s"))
    if expn:
        rows.append(["transformer: expand a step's rows, TransformerBatch.adjacency (CPU)", "", "64", "0",
                     f"{expn['device']:,.0f}", "", "", f"{expn['device'] / expn['numpy']:.1f}x numpy", "", ""])
        rows.append(["baseline: expand a step's rows, expand_rows (numpy)", "", "64", "0", f"{expn['numpy']:,.0f}",
                     "", "", "1x", "", ""])
        recs += [Record("stream.transformer.expand_device_cpu.steps_per_s", round(expn["device"], 1), "steps/s"),
                 Record("stream.transformer.expand_numpy.steps_per_s", round(expn["numpy"], 1), "steps/s")]
        if args.device in expn:  # the batch and the static graph on the GPU, rows expanded there
            rows.append([f"transformer: expand a step's rows, TransformerBatch.adjacency ({args.device})", "", "64",
                         "0", f"{expn[args.device]:,.0f}", "", "", f"{expn[args.device] / expn['numpy']:.1f}x numpy",
                         "", ""])
            recs.append(Record(f"stream.transformer.expand_{args.device}.steps_per_s", round(expn[args.device], 1),
                               "steps/s"))
    exp = expand_rate(build, args.seconds) if "graph" in args.formats else None
    if exp is not None:
        rows.append(["graph: expand to dense node+edge masks (CPU)", "", "64", "0", f"{exp / 64:,.0f}", f"{exp:,.0f}",
                     "", "", "", ""])
        recs.append(Record("stream.expand_dense_cpu.samples_per_s", round(exp), "samples/s"))
    rows.append(["baseline: HeteroData full graph + masks, Batch.from_data_list", "", "", "0", "",
                 f"{base['full']:,.1f}", "", "1x", "", ""])
    rows.append(["baseline: PyG k_hop_subgraph per type (1-hop)", "", "", "0", "", f"{base['khop']:,.0f}", "", "1x",
                 "", ""])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = format_table(["reader", "layout", "batch", "workers", "steps/s", "samples/s", "KB/step", "vs",
                          "target", "verdict"], rows)
    graph_rates = [r["samples_per_s"] for (f, lay, _, _), r in res.items() if f == "graph" and lay == "zarr"]
    if graph_rates:
        best_graph = max(graph_rates)
        table += (f"\nfull-graph batches vs the in-run HeteroData baseline: {best_graph / base['full']:,.0f}x "
                  f"(target >= {TARGET_RATIO}x: {_verdict(best_graph / base['full'] >= TARGET_RATIO)})")
    handed = {k[2]: r["worker_step_bytes"] for k, r in res.items()
              if k[0] == "transformer" and "worker_step_bytes" in r}
    if handed:
        table += ("\ntransformer through workers: a worker hands over "
                  + ", ".join(f"{v / 1024:,.1f} KB/step at batch {b}" for b, v in sorted(handed.items()))
                  + "; the rows (KB/step column) are read in the trainer's process (StreamLoader)")
    table += f"\npeak RSS of this process {peak:,.0f} MiB; device {args.device}; {args.group} batches per hand-over"
    print(table)
    recs += [Record("stream.baseline.full_graph.samples_per_s", round(base["full"], 2), "samples/s"),
             Record("stream.baseline.khop.samples_per_s", round(base["khop"], 1), "samples/s"),
             Record("stream.peak_rss", round(peak), "MiB")]
    if args.json:
        meta = run_metadata("stream", {"scale": args.scale, "seconds": args.seconds, "device": args.device,
                                       "batch_sizes": args.batch_sizes, "workers": args.workers,
                                       "group": args.group, "peers": args.peers},
                            packages=(*PACKAGES_REPORTED, "litdata", "mosaicml-streaming"))
        print(f"wrote {write_json(args.json, recs, meta)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
