"""``PerturbationStream``: a PyTorch ``IterableDataset`` over a published build, yielding whole batches.

>>> ds = PerturbationStream("data/processed/sample", split="train", fmt="graph", batch_size=64)  # doctest: +SKIP
>>> static = ds.static().to("cuda")                          # the wild-type graph, sent once  # doctest: +SKIP
>>> for batch in DataLoader(ds, batch_size=None, num_workers=2, pin_memory=True):           # doctest: +SKIP
...     batch = batch.to("cuda", non_blocking=True)
...     node_mask, edge_masks = batch.node_mask(static), batch.edge_masks(static)

What it reads: the build's dataset (labels, splits), its precomputed store (Zarr, the
default) or its LMDB records (``layout="lmdb"``), and the graph store. Stores are opened
lazily in the process that iterates (each DataLoader worker, after fork or spawn); nothing
open is carried across ``fork``. Reads are batched by store chunk: the epoch's order is a
block shuffle (:mod:`pipeline.stream.order`) and a window of ``window_blocks`` chunks is
held in memory, so memory is bounded by ``window_blocks x chunk`` samples whatever the
dataset size (plus the labels, 5 bytes per sample and label).

Sharding: global batch ``b`` of the epoch goes to rank ``b % world_size`` and, within a rank,
round-robin to DataLoader workers, so every rank gets the same number of batches (the tail
is padded by repeating samples, or dropped with ``drop_last``). ``state_dict(last_step)`` /
``load_state_dict`` resume mid-epoch with exactly the remaining samples, also with another
number of workers or ranks.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.core.errors import StoreError
from pipeline.core.ragged import indptr_from_lengths, take_csr
from pipeline.stream.batches import AdjRows, GraphBatch, GraphStatic, IndexBatch, KHopBatch, TransformerBatch
from pipeline.stream.order import batches_for, epoch_order, plan_epoch, remaining

FORMATS = ("index", "graph", "khop", "transformer")
LAYOUTS = ("zarr", "lmdb")
DEFAULT_LABELS = ("fitness", "interaction")


@dataclass
class _Chunk:
    """One store chunk's compact per-sample data, indexed by position within the chunk."""

    ptr: np.ndarray
    genes: np.ndarray
    types: np.ndarray
    flip_ptr: np.ndarray | None = None
    flip_genes: np.ndarray | None = None
    bits: np.ndarray | None = None


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return rank or 0, world_size or 1


class PerturbationStream(IterableDataset):
    """Batches of one split of a build, in one of :data:`FORMATS`; see the module docstring.

    ``build``: the build folder (``OUT/NAME``, holding graph.zarr, dataset/, precomputed.zarr).
    ``fmt``: ``index`` | ``graph`` | ``khop`` (k-hop node sets, ``k``, ``khop_mode``) |
    ``transformer`` (M(S) + this step's adjacency rows of ``adjacency_graphs``).
    """

    def __init__(self, build: str | Path, *, split: str | None = "train", split_name: str = "random",
                 fmt: str = "graph", layout: str = "zarr", batch_size: int = 64, seed: int = 0,
                 shuffle: bool = True, window_blocks: int = 4, drop_last: bool = False,
                 labels: tuple[str, ...] = DEFAULT_LABELS, k: int = 1, khop_mode: str = "per_type",
                 adjacency_graphs: list[str] | None = None, weighted_targets: bool = False,
                 rank: int | None = None, world_size: int | None = None) -> None:
        from pipeline.dataset.store import open_dataset
        from pipeline.graph.store import open_graph
        from pipeline.precompute.store import open_precomputed

        if fmt not in FORMATS:
            raise ValueError(f"fmt {fmt!r}: expected one of {', '.join(FORMATS)}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        build = Path(build)
        self.paths = {"graph": build / "graph.zarr", "dataset": build / "dataset",
                      "precomputed": build / "precomputed.zarr", "records": build / "records.lmdb"}
        self.fmt, self.layout, self.batch_size, self.seed = fmt, layout, int(batch_size), int(seed)
        self.shuffle, self.window_blocks, self.drop_last = shuffle, max(1, int(window_blocks)), drop_last
        self.k, self.khop_mode, self.weighted_targets = int(k), khop_mode, weighted_targets
        self.rank, self.world_size = _rank_world(rank, world_size)
        graph = open_graph(self.paths["graph"])
        pre = open_precomputed(self.paths["precomputed"], graph=graph)  # fingerprints must match
        ds = open_dataset(self.paths["dataset"])
        m = pre.manifest
        if m["dataset"].get("build_key") != ds.manifest.get("build_key"):
            raise StoreError(f"{self.paths['precomputed']} was computed from another dataset than "
                             f"{self.paths['dataset']}; recompute it")
        arts = m["parameters"]["artifacts"]
        need = {"graph": "masks", "khop": "khop", "transformer": "adjacency-rows"}.get(fmt)
        if need and need not in arts:
            raise StoreError(f"{self.paths['precomputed']}: format {fmt!r} needs the {need!r} artifact "
                             f"(store has {arts}); rerun the build with --precompute {need}")
        if fmt == "khop" and (self.k not in m["parameters"].get("khop", []) or
                              khop_mode not in m["parameters"].get("khop_modes", [])):
            raise StoreError(f"{self.paths['precomputed']}: no {self.k}-hop sets in mode {khop_mode!r}")
        if layout == "lmdb" and not self.paths["records"].exists():
            raise StoreError(f"{self.paths['records']}: no LMDB records; rerun the build with --lmdb")
        self.n_genes, self.chunk = int(m["graph"]["n_genes"]), int(m["chunk_samples"])
        self.adjacency = m["parameters"].get("adjacency") or {}
        self.adjacency_graphs = list(adjacency_graphs or self.adjacency.get("graphs", []))
        splits = {"train": 0, "val": 1, "test": 2}
        if split is not None and split not in splits:
            raise ValueError(f"split {split!r}: expected one of {', '.join(splits)} or None (every sample)")
        have = ds.scan().collect_schema().names()
        cols = ["sample_id", *labels] + ([f"split_{split_name}"] if split else [])
        missing = [c for c in cols if c not in have]
        if missing:
            raise ValueError(f"{self.paths['dataset']}: no column(s) {missing} (split_name / labels); "
                             f"it has {have}")
        df = ds.scan().select(cols).collect()
        if split is not None:
            code = splits[split]
            keep = df[f"split_{split_name}"].to_numpy() == code
        else:
            keep = np.ones(df.height, bool)
        self.ids = df["sample_id"].to_numpy()[keep].astype(np.int64)
        y = np.stack([df[c].cast(float).fill_null(np.nan).to_numpy() for c in labels], axis=1).astype(np.float32)
        self.y = np.nan_to_num(y)  # labels of every sample, by sample id
        self.y_mask = ~np.isnan(y)
        self.labels = tuple(labels)
        self.epoch, self._start, self._state_world = 0, 0, self.world_size
        self._pid: int | None = None
        self._cache: OrderedDict[int, _Chunk] = OrderedDict()
        self._adj_cache: OrderedDict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    # --- process-local stores (opened lazily: after fork/spawn, in the worker) --------------
    def _stores(self) -> dict[str, Any]:
        if self._pid != os.getpid():
            from pipeline.precompute.store import open_precomputed
            self._zarr = open_precomputed(self.paths["precomputed"])  # a PrecomputedStore
            self._records = None
            if self.layout == "lmdb":
                from pipeline.precompute.records import open_records
                self._records = open_records(self.paths["records"])
            self._graph_csr: dict[str, Any] = {}
            self._steps_per_shard = self._zarr.steps_per_shard
            self._cache.clear()
            self._adj_cache.clear()
            self._pid = os.getpid()
        return {"zarr": self._zarr, "records": self._records}

    def __getstate__(self) -> dict[str, Any]:  # spawn: never ship open stores
        s = dict(self.__dict__)
        for key in ("_zarr", "_records", "_graph_csr"):
            s.pop(key, None)
        s["_pid"], s["_cache"], s["_adj_cache"] = None, OrderedDict(), OrderedDict()
        return s

    # --- static graph ------------------------------------------------------------------------
    def static(self, edge_types: list[str] | None = None) -> GraphStatic:
        """The wild-type graph for the GNN formats and the gene tokens for the transformer (send once)."""
        from pipeline.graph.store import open_graph
        g = open_graph(self.paths["graph"])
        x, _ = g.features() if "features" in g.root["genes"] else (np.zeros((g.n_genes, 0), np.float32), [])
        st = GraphStatic(torch.from_numpy(~g.added), torch.from_numpy(~g.added), torch.from_numpy(x))
        for t in edge_types or g.edge_types:
            st.edge_index[t] = torch.from_numpy(g.edge_index(t))
            ip, ids = g.incidence(t)
            st.inc_ptr[t], st.inc_edges[t] = torch.from_numpy(ip), torch.from_numpy(ids.astype(np.int64))
        return st

    # --- reading ------------------------------------------------------------------------------
    def _chunk(self, c: int) -> _Chunk:
        hit = self._cache.get(c)
        if hit is not None:
            self._cache.move_to_end(c)
            return hit
        z = self._stores()["zarr"]
        first = c * self.chunk  # whole chunks: one read per array, never one per sample
        ch = _Chunk(*z.perturbation_chunk(first, self.chunk))
        if self.fmt == "graph":
            ch.flip_ptr, ch.flip_genes = z.node_flips_chunk(first, self.chunk)
        if self.fmt == "khop":
            ch.bits = z.khop_bits(self.k, self.khop_mode, slice(first, first + len(ch.ptr) - 1))
        self._cache[c] = ch
        while len(self._cache) > self.window_blocks + 1:
            self._cache.popitem(last=False)
        return ch

    def _read_zarr(self, ids: np.ndarray) -> dict[str, Any]:
        chunks, local = ids // self.chunk, ids % self.chunk
        order = np.argsort(chunks, kind="stable")
        parts: dict[str, list[np.ndarray]] = {"ptr": [], "genes": [], "types": [], "fptr": [], "fgenes": [],
                                               "bits": []}
        bounds = np.flatnonzero(np.diff(chunks[order])) + 1
        for grp in np.split(order, bounds):
            ch = self._chunk(int(chunks[grp[0]]))
            li = local[grp]
            ptr, g, t = take_csr(ch.ptr, li, ch.genes, ch.types)
            parts["ptr"].append(np.diff(ptr)); parts["genes"].append(g); parts["types"].append(t)  # noqa: E702
            if ch.flip_ptr is not None:
                fp, fg = take_csr(ch.flip_ptr, li, ch.flip_genes)
                parts["fptr"].append(np.diff(fp)); parts["fgenes"].append(fg)  # noqa: E702
            if ch.bits is not None:
                parts["bits"].append(ch.bits[li])
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))  # batch position -> position in chunk-grouped order

        def regroup(lens: list[np.ndarray], *vals: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            return take_csr(indptr_from_lengths(np.concatenate(lens)), inv, *(np.concatenate(v) for v in vals))

        out: dict[str, Any] = {}
        out["ptr"], out["genes"], out["types"] = regroup(parts["ptr"], parts["genes"], parts["types"])
        if parts["fptr"]:
            out["fptr"], out["fgenes"] = regroup(parts["fptr"], parts["fgenes"])
        if parts["bits"]:
            out["bits"] = np.concatenate(parts["bits"])[inv]
        return out

    def _read_lmdb(self, ids: np.ndarray) -> dict[str, Any]:
        cols = self._stores()["records"].get_batch(ids)
        out = {"ptr": cols["genes"][0], "genes": cols["genes"][1], "types": cols["types"][1]}
        if self.fmt == "graph":
            out["fptr"], out["fgenes"] = cols["node_flips"]
        if self.fmt == "khop":
            out["bits"] = cols[f"khop:{self.khop_mode}:k{self.k}"][1].reshape(len(ids), -1)
        return out

    def _adjacency(self, step: int) -> dict[str, AdjRows]:
        from pipeline.graph.store import open_graph
        from pipeline.precompute.adjacency import expand_rows

        a = self.adjacency
        e, s = self.epoch % a["epochs"], step % a["steps"]
        z = self._stores()["zarr"]
        out = {}
        block = self._steps_per_shard
        for t in self.adjacency_graphs:
            key = (t, e, s // block)
            if key not in self._adj_cache:  # one read per shard of steps, not per step
                s0 = (s // block) * block
                self._adj_cache[key] = z.adjacency(t, e, slice(s0, s0 + block))
                while len(self._adj_cache) > 2 * max(1, len(self.adjacency_graphs)):
                    self._adj_cache.popitem(last=False)
            rows, negs = self._adj_cache[key]
            if t not in self._graph_csr:
                self._graph_csr[t] = open_graph(self.paths["graph"]).csr(t)
            csr = self._graph_csr[t]
            r, n = rows[s % block], negs[s % block]
            ptr, cols, target, pos = expand_rows(csr.indptr, csr.indices, csr.weights, r, n,
                                                 weighted=self.weighted_targets)
            out[t] = AdjRows(torch.from_numpy(r.astype(np.int64)), torch.from_numpy(ptr),
                             torch.from_numpy(cols.astype(np.int64)), torch.from_numpy(target),
                             torch.from_numpy(pos))
        return out

    def get_batch(self, ids: np.ndarray, step: int = -1) -> IndexBatch:
        """The batch of these sample ids (map-style access), in this stream's format."""
        ids = np.asarray(ids, dtype=np.int64)
        d = self._read_lmdb(ids) if self.layout == "lmdb" else self._read_zarr(ids)
        base = dict(sample_ids=torch.from_numpy(ids), step=step, pert_ptr=torch.from_numpy(d["ptr"]),
                    pert_genes=torch.from_numpy(d["genes"].astype(np.int64)),
                    pert_types=torch.from_numpy(d["types"].astype(np.int64)),
                    y=torch.from_numpy(self.y[ids]), y_mask=torch.from_numpy(self.y_mask[ids]))
        if self.fmt == "graph":
            return GraphBatch(**base, flip_ptr=torch.from_numpy(d["fptr"]),
                              flip_genes=torch.from_numpy(d["fgenes"].astype(np.int64)))
        if self.fmt == "khop":
            return KHopBatch(**base, k=self.k, bits=torch.from_numpy(np.ascontiguousarray(d["bits"])))
        if self.fmt == "transformer":
            return TransformerBatch(**base, adjacency=self._adjacency(max(step, 0)))
        return IndexBatch(**base)

    def __getitem__(self, i: int) -> IndexBatch:
        """Map-style: the one-sample batch of dataset sample id ``i``."""
        return self.get_batch(np.array([i]))

    # --- order, sharding, resume ---------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._start, self._state_world = int(epoch), 0, self.world_size

    def _plan(self) -> tuple[Any, int]:
        order = epoch_order(self.ids, chunk=self.chunk, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
                            window_blocks=self.window_blocks)
        plan = plan_epoch(order, batch_size=self.batch_size, world_size=self._state_world, drop_last=self.drop_last)
        start = self._start
        if self._state_world != self.world_size:  # resumed with another number of ranks: re-deal the rest
            plan = plan_epoch(remaining(plan, start), batch_size=self.batch_size, world_size=self.world_size,
                              drop_last=self.drop_last)
            start = 0
        return plan, start

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (equal on every rank)."""
        plan, start = self._plan()
        return len(batches_for(plan, start=start, rank=self.rank, world_size=self.world_size, worker=0,
                               num_workers=1))

    def __iter__(self) -> Iterator[IndexBatch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan, start = self._plan()
        for b in batches_for(plan, start=start, rank=self.rank, world_size=self.world_size, worker=worker,
                             num_workers=n_workers).tolist():
            batch = self.get_batch(plan.batches[b], step=b)
            yield batch.packed() if info is not None else batch  # one storage to ship to the main process

    def state_dict(self, last_step: int | None = None) -> dict[str, Any]:
        """Where to resume: after the batch whose ``step`` is ``last_step`` (None: the epoch's start)."""
        w = self.world_size
        start = 0 if last_step is None else (int(last_step) // w + 1) * w
        return {"epoch": self.epoch, "start": start, "seed": self.seed, "world_size": w,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("epoch", "start", "seed", "world_size", "batch_size"):
            if key not in state:
                raise ValueError(f"stream state: missing {key!r}")
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError("stream state: seed and batch_size must match the stream's to resume")
        self.epoch, self._start, self._state_world = int(state["epoch"]), int(state["start"]), int(state["world_size"])
