"""Training throughput: it/s, data wait and memory per step of the reference models, stream vs research-code loading.

``python -m benchmarks train [--scale 0.01] [--steps 10] [--warmup 2] [--batch-size N] [--device cpu|cuda]
[--workers 2] [--methods ...] [--build PATH] [--workdir data/bench] [--json PATH]``

The research report's table (method, it/s, speedup vs index, memory per batch, batch size,
nodes/sample, edges/sample), reproduced with our stream beside research-code loading in the
same run, plus the fraction of step time the trainer waits for data.

- Input: a synthetic build (:mod:`synth`, the stream benchmark's generator: 9 edge types,
  6,607 genes at every scale, ~2.42M gene pairs x ``--scale``; the Kuzmin-style dataset at
  the same scale) with masks, 1/2/3-hop sets and 64 steps of adjacency rows precomputed,
  built once under ``--workdir`` (untimed). On a CPU a reduced ``--scale`` (default 0.01:
  ~46k edges, ~6k train samples): a full-graph GNN batch at scale 1 needs tens of GB.
- A training step = ``next(iterator)``, the batch moved to ``--device``, forward, loss,
  backward and an AdamW step of the same model on the same samples (CUDA: synchronised).
  ``--warmup`` steps (worker start, first reads, allocator warm-up) are not timed, then at
  least ``--steps`` steps and ``--min-seconds`` (fast rows run more steps, up to one epoch; a
  slow row stops after ``--max-seconds`` once 2 steps are done). it/s = steps / their wall time;
  data wait = time blocked in ``next(iterator)`` / that wall time. The trainer uses ``--threads``
  torch threads (default: the cores left by the workers, at least 1; on 2 cores with 2 workers
  a 2-thread pool made small steps 18-36x slower).
- OURS: each model fed by its stream format through ``StreamLoader`` with ``--workers``
  DataLoader workers: index (DANGO-style set model), lazy (``graph`` format: full graph,
  compact masks expanded on the device), 1/2/3-hop (``khop`` format), transformer
  (``transformer`` format: M(S) + compact adjacency rows expanded on the device).
  The models are ``trainers.models.MODELS`` (``Cls(static, n_labels)``, ``loss(batch)``).
- RESEARCH-CODE LOADING, same run, same samples in the same order, same model:
  :mod:`benchmarks._research_loading` (per sample a PyG ``HeteroData`` with the full graph and
  its masks, or ``k_hop_subgraph`` per edge type; ``Batch.from_data_list`` in the worker), in a
  torch ``DataLoader`` with the same number of workers, fed to the model's ``forward_hetero``
  and the masked MSE of the labels.
- Memory per step, measured on one extra, untimed step of each row. CUDA:
  ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated at its start
  (activations, gradients, optimizer temporaries; the model, optimizer state and static graph
  excluded). CPU: the peak growth of this process's RSS during the step over its RSS at the step's
  start, sampled every ~1 ms by a thread after ``malloc_trim(0)`` (so freed heap pages are
  returned and the step's allocations show as growth); a lower bound of the step's peak
  allocations (short spikes between samples are missed), of the trainer process only.
- Nodes / edges per sample: what the model sees, on the first batch: index, the perturbed
  genes; lazy, the present genes and the edges kept by the masks; k-hop, the subgraph's nodes
  and induced edges; transformer, the N + 1 tokens (attention is dense: no edge count).

Targets (issue 12): data wait < 5% of step time for every row; transformer >= 20x lazy it/s at
the same batch size; lazy fed by the stream >= 5x lazy fed by research-code loading.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._report import Record, format_table, run_metadata, write_json
from benchmarks._report import verdict as _verdict

DEFAULT_WORKDIR = Path("data/bench")
DEFAULT_SCALE = 0.01
ADJACENCY_STEPS = 64  # stored steps of adjacency rows; the stream cycles through them
#: The research report's batch sizes (k-hop and transformer: the lazy model's, so rows compare).
REPORT_BATCH = {"index": 64, "lazy": 28, "khop": 28, "transformer": 28}
METHODS = ("index", "lazy", "khop1", "khop2", "khop3", "transformer", "research-lazy", "research-khop1")
TARGET_WAIT = 0.05
TARGET_TRANSFORMER_VS_LAZY = 20.0
TARGET_OURS_VS_RESEARCH = 5.0


@dataclass(frozen=True)
class Method:
    """One row: a model (a key of ``MODELS``), its hop count (k-hop), and what feeds it."""

    name: str
    model: str
    k: int = 1
    source: str = "stream"  # or "research"

    @property
    def label(self) -> str:
        what = {"index": "index (DANGO-style)", "lazy": "lazy (full graph + masks)", "khop": f"{self.k}-hop",
                "transformer": "transformer"}[self.model]
        if self.source == "research":
            how = "lazy (HeteroData + masks)" if self.model == "lazy" else f"{self.k}-hop (k_hop_subgraph)"
            return f"research: {how}"
        return what

    @property
    def stream_twin(self) -> str:
        """The name of the row fed by our stream that this research row is compared with."""
        return self.name.removeprefix("research-")


def parse_method(name: str) -> Method:
    """``index`` | ``lazy`` | ``khopK`` | ``transformer``, optionally prefixed ``research-`` (lazy, khopK).

    >>> parse_method("research-khop1")
    Method(name='research-khop1', model='khop', k=1, source='research')
    """
    source = "research" if name.startswith("research-") else "stream"
    base = name.removeprefix("research-")
    if base.startswith("khop") and base[4:].isdigit() and int(base[4:]) >= 1:
        m = Method(name, "khop", int(base[4:]), source)
    elif base in ("index", "lazy", "transformer"):
        m = Method(name, base, 1, source)
    else:
        raise ValueError(f"method {name!r}: expected one of {', '.join(METHODS)} (khopK for any K >= 1)")
    if source == "research" and m.model not in ("lazy", "khop"):
        raise ValueError(f"method {name!r}: research-code loading exists for lazy and khopK only")
    return m


def ensure_build(workdir: Path, scale: float) -> Path:
    """The synthetic build at ``scale`` with masks, 1/2/3-hop sets and adjacency rows (built once; reused)."""
    from benchmarks.precompute import GRAPHS, ensure_inputs
    from pipeline.config import BuildConfig
    from pipeline.precompute.stages import PrecomputeConfig
    from pipeline.sequence import run_build

    raw, gff = ensure_inputs(workdir, seed=0, scale=scale)
    cfg = BuildConfig.create(graphs=GRAPHS, raw=raw, genes=gff, out=workdir / "train-out", name=f"train{scale:g}",
                             datasets=["kuzmin2018"],
                             precompute=PrecomputeConfig(khop=(1, 2, 3), adjacency_steps=ADJACENCY_STEPS))
    return Path(run_build(cfg).graph).parent


#: Hyperparameters other than the models' defaults: 8 heads per layer (same width, so the same attention
#: FLOPs) give each of the build's 9 adjacency graphs its own regularised head (2 layers x 4 hold 8).
HYPERPARAMS: dict[str, dict[str, Any]] = {"transformer": {"heads": 8}}


# --- memory of one step -----------------------------------------------------------------------

def _malloc_trim() -> None:
    """Return freed heap pages to the OS (glibc); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _RssPeak(threading.Thread):
    """Peak RSS of this process, sampled every ``interval`` s until :meth:`stop`."""

    def __init__(self, interval: float = 0.001) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc, self.interval = psutil.Process(), interval
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak growth over the RSS at the start, in bytes."""
        self._done.set()
        self.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak - self.start_rss


def step_memory(step: Any, batch: Any, device: str) -> int:
    """Bytes a step on ``batch`` needs beyond what is allocated at its start (see the module docstring)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(batch)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    gc.collect()
    _malloc_trim()
    probe = _RssPeak()
    probe.start()
    step(batch)
    return probe.stop()


def masked_mse(pred: Any, y: Any, y_mask: Any) -> Any:
    """Mean squared error over the measured labels (the research rows' loss)."""
    m = y_mask.to(pred.dtype)
    return ((pred - y) ** 2 * m).sum() / m.sum().clamp(min=1)


# --- one row ----------------------------------------------------------------------------------

def sample_stats(method: Method, batch: Any, static: Any) -> tuple[float, float | None]:
    """(nodes per sample, edges per sample) the model sees in ``batch`` (see the module docstring)."""
    if method.source == "research":
        b = batch.y.shape[0]
        gene = batch["gene"]
        nodes = float(gene.node_mask.sum()) if "node_mask" in gene else float(gene.num_nodes)
        edges = 0.0
        for et in batch.edge_types:
            store = batch[et]
            edges += float(store.edge_mask.sum()) if "edge_mask" in store else float(store.edge_index.shape[1])
        return nodes / b, edges / b
    b = len(batch)
    if method.model == "index":
        return float(batch.pert_ptr[-1]) / b, None
    if method.model == "lazy":
        em = batch.edge_masks(static)
        return float(batch.node_mask(static).sum()) / b, float(sum(m.sum() for m in em.values())) / b
    if method.model == "khop":
        nodes = float(batch.node_sets(static.n_genes).sum()) / b
        return nodes, float(sum(len(r) for r, _ in batch.induced_edges(static).values())) / b
    return float(static.n_genes + 1), None


def _stream_loader(build: Path, method: Method, fmt: str, batch_size: int, workers: int, device: str,
                   group: int) -> tuple[Any, Any, int]:
    """(loader, static graph, number of labels) of our stream in ``fmt``."""
    from pipeline.stream import PerturbationStream, StreamLoader

    ds = PerturbationStream(build, fmt=fmt, batch_size=batch_size, seed=0, k=method.k)
    loader = StreamLoader(ds, num_workers=workers, group=group, pin_memory=device != "cpu",
                          multiprocessing_context="fork" if workers else None)
    return loader, ds.static(), len(ds.labels)


def _research_loader(build: Path, method: Method, batch_size: int, n_batches: int, workers: int,
                     device: str) -> tuple[Any, Any, int]:
    """(loader, static graph, number of labels) of research-code loading over the stream's samples."""
    import torch_geometric.data  # noqa: F401  imported before the workers fork: they inherit it

    from benchmarks._research_loading import FullGraphSamples, KHopSamples, research_loader, stream_samples
    from pipeline.stream import PerturbationStream

    static = PerturbationStream(build, fmt="graph", batch_size=batch_size).static()
    samples = stream_samples(build, batch_size, n_batches)
    ds = FullGraphSamples(static, samples) if method.model == "lazy" else KHopSamples(static, samples, method.k)
    return research_loader(ds, batch_size, workers, pin_memory=device != "cpu"), static, samples.y.shape[1]


def run_method(build: Path, method: Method, batch_size: int, steps: int, warmup: int, workers: int, device: str,
               max_seconds: float, group: int = 8, min_seconds: float = 0.0) -> dict[str, Any]:
    """Train ``method``'s model for ``warmup`` untimed steps, then timed steps: at least ``steps`` and
    ``min_seconds`` (at most ``max_seconds`` once 2 are done, and what one epoch holds), then 1 memory step."""
    import torch

    from trainers.models import MODELS

    torch.manual_seed(0)
    cls = MODELS[method.model]
    if method.source == "stream":
        loader, static, n_labels = _stream_loader(build, method, cls.stream_format, batch_size, workers, device, group)
    else:
        loader, static, n_labels = _research_loader(build, method, batch_size, 10**9, workers, device)  # an epoch
    static = static.to(device)
    model = cls(static, n_labels, **HYPERPARAMS.get(method.model, {})).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cuda = device.startswith("cuda")

    def step(batch: Any) -> None:
        batch = batch.to(device, non_blocking=True)
        if method.source == "research":
            loss = masked_mse(model.forward_hetero(batch), batch.y, batch.y_mask)
        else:
            loss = model.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    it = iter(loader)
    nodes = edges = None
    for i in range(warmup):
        b = next(it)
        if i == 0:
            nodes, edges = sample_stats(method, b.to(device), static)
        step(b)
    wait = 0.0
    n = 0
    t_start = time.perf_counter()
    limit = len(loader) - warmup - 1  # batches left in the epoch, one kept for the memory step
    while n < limit:
        elapsed = time.perf_counter() - t_start
        if (n >= steps and elapsed >= min_seconds) or (n >= 2 and elapsed > max_seconds):
            break
        t0 = time.perf_counter()
        b = next(it)
        wait += time.perf_counter() - t0
        step(b)
        n += 1
    wall = time.perf_counter() - t_start
    mem = step_memory(step, next(it), device)
    del it, loader
    params = sum(p.numel() for p in model.parameters())
    return {"it_per_s": n / wall, "steps": n, "wall_s": wall, "data_wait": wait / wall, "step_bytes": mem,
            "batch_size": batch_size, "nodes": nodes, "edges": edges, "parameters": params}


# --- the table --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks train", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE, help="graph (and dataset) scale of the synthetic "
                   f"build (default {DEFAULT_SCALE}; 1 = full size, for a GPU)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (worker start, first reads)")
    p.add_argument("--min-seconds", type=float, default=5.0, help="time at least this long per row (fast rows: more "
                   "steps than --steps, up to one epoch)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop a row's timed steps after this long")
    p.add_argument("--batch-size", type=int, help="one batch size for every row (default: the report's: "
                   + ", ".join(f"{k} {v}" for k, v in REPORT_BATCH.items()) + ")")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of every loader")
    p.add_argument("--threads", type=int, help="torch intra-op threads of the trainer (default: the available "
                   "cores minus --workers, at least 1)")
    p.add_argument("--group", type=int, default=8, help="batches per worker hand-over (StreamLoader)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"rows to run: {' '.join(METHODS)}")
    p.add_argument("--build", type=Path, help="an existing build folder (default: the synthetic one at --scale)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--json", type=Path)
    return p


def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def targets(methods: list[Method], res: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """Per row name: (comparison, target, verdict) cells."""
    out: dict[str, tuple[str, str, str]] = {}
    for m in methods:
        r = res[m.name]
        vs, target, verdict = [], [f"wait <{TARGET_WAIT:.0%}"], [_verdict(r["data_wait"] < TARGET_WAIT)]
        lazy = res.get("lazy")
        if m.name == "transformer" and lazy:
            ratio = r["it_per_s"] / lazy["it_per_s"]
            vs.append(f"{ratio:,.2f}x lazy")
            target.append(f">={TARGET_TRANSFORMER_VS_LAZY:g}x lazy")
            same = r["batch_size"] == lazy["batch_size"]
            verdict.append(_verdict(ratio >= TARGET_TRANSFORMER_VS_LAZY) if same else "n/a (batch differs)")
        twin = res.get(m.stream_twin)
        if m.source == "research" and twin:
            ratio = twin["it_per_s"] / r["it_per_s"]
            vs.append(f"ours {ratio:,.2f}x")
            if m.model == "lazy":
                target.append(f"ours >={TARGET_OURS_VS_RESEARCH:g}x")
                verdict.append(_verdict(ratio >= TARGET_OURS_VS_RESEARCH))
        out[m.name] = ("; ".join(vs), "; ".join(target), " ".join(verdict))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    methods = [parse_method(n) for n in args.methods]
    if args.steps < 1 or args.warmup < 1:
        print("error: --steps and --warmup must be >= 1", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    build = args.build or ensure_build(args.workdir, args.scale)
    import torch

    # the workers need their cores: a trainer pool spread over them stalls every small op (see the README)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or max(1, cores - args.workers))
    res: dict[str, dict[str, Any]] = {}
    for m in methods:
        bs = args.batch_size or REPORT_BATCH[m.model]
        print(f"train: {m.label}, batch {bs} ...", file=sys.stderr, flush=True)
        res[m.name] = run_method(build, m, bs, args.steps, args.warmup, args.workers, args.device,
                                 args.max_seconds, args.group, args.min_seconds)
    index = res.get("index")
    cells = targets(methods, res)
    rows, recs = [], []
    for m in methods:
        r = res[m.name]
        speedup = f"{r['it_per_s'] / index['it_per_s']:.4f}x" if index else "-"
        rows.append([m.label, f"{r['it_per_s']:,.2f}", speedup, f"{r['step_bytes'] / 2**20:,.1f}",
                     str(r["batch_size"]), _fmt(r["nodes"], ",.1f"), _fmt(r["edges"], ",.1f"),
                     f"{r['data_wait']:.1%}", str(r["steps"]), *cells[m.name]])
        name = f"train.{m.name}"
        recs += [Record(f"{name}.it_per_s", round(r["it_per_s"], 4), "it/s"),
                 Record(f"{name}.data_wait", round(r["data_wait"], 4), "fraction"),
                 Record(f"{name}.step_memory", r["step_bytes"], "bytes"),
                 Record(f"{name}.batch_size", r["batch_size"], "samples"),
                 Record(f"{name}.nodes_per_sample", None if r["nodes"] is None else round(r["nodes"], 1), "nodes"),
                 Record(f"{name}.edges_per_sample", None if r["edges"] is None else round(r["edges"], 1), "edges"),
                 Record(f"{name}.steps", r["steps"], "steps"),
                 Record(f"{name}.parameters", r["parameters"], "parameters")]
        if m.source == "research" and m.stream_twin in res:
            recs.append(Record(f"train.{m.stream_twin}.ours_vs_research",
                               round(res[m.stream_twin]["it_per_s"] / r["it_per_s"], 3), "x"))
    if "transformer" in res and "lazy" in res:
        recs.append(Record("train.transformer.vs_lazy", round(res["transformer"]["it_per_s"] /
                                                               res["lazy"]["it_per_s"], 3), "x"))
    from pipeline.graph.store import open_graph

    g = open_graph(build / "graph.zarr")
    n_edges = sum(int(g.edge_index(t).shape[1]) for t in g.edge_types)
    mem = "peak CUDA allocation over the step's start" if args.device.startswith("cuda") else \
        "peak RSS growth of the trainer process during the step (after malloc_trim)"
    print(f"build {build}: {g.n_genes:,} genes, {len(g.edge_types)} edge types, {n_edges:,} directed edges "
          f"(scale {args.scale:g}); device {args.device}; {args.workers} workers; {torch.get_num_threads()} torch "
          f"threads; trainers.models.MODELS, "
          f"hyperparameters beyond the defaults {HYPERPARAMS}")
    print(format_table(["method", "it/s", "vs index", "MiB/step", "batch", "nodes/sample", "edges/sample",
                        "data wait", "steps", "vs", "target", "verdict"], rows))
    print(f"MiB/step: {mem}; it/s over at least {args.steps} timed steps and "
          f"{args.min_seconds:g} s (at most {args.max_seconds:g} s) after {args.warmup} warm-up steps")
    if args.json:
        meta = run_metadata("train", {"scale": args.scale, "steps": args.steps, "warmup": args.warmup,
                                      "max_seconds": args.max_seconds, "min_seconds": args.min_seconds,
                                      "device": args.device,
                                      "workers": args.workers, "group": args.group, "methods": args.methods,
                                      "batch_size": args.batch_size or REPORT_BATCH, "build": str(build),
                                      "n_genes": g.n_genes, "n_edges": n_edges, "hyperparameters": HYPERPARAMS,
                                      "torch_threads": torch.get_num_threads(), "step_memory": mem},
                            packages=("numpy", "zarr", "torch", "torch_geometric", "psutil"))
        print(f"wrote {write_json(args.json, recs, meta)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
