"""``PerturbationStream``: a PyTorch ``IterableDataset`` over a published build, yielding whole batches.

>>> ds = PerturbationStream("data/processed/sample", split="train", fmt="graph", batch_size=64)  # doctest: +SKIP
>>> static = ds.static().to("cuda")                          # the wild-type graph, sent once  # doctest: +SKIP
>>> for batch in StreamLoader(ds, num_workers=2, pin_memory=True):  # or a DataLoader  # doctest: +SKIP
...     batch = batch.to("cuda", non_blocking=True)
...     node_mask, edge_masks = batch.node_mask(static), batch.edge_masks(static)

What it reads: the build's dataset (labels, splits), its precomputed store (Zarr, the
default) or its LMDB records (``layout="lmdb"``), and the graph store. Stores are opened
lazily in the process that iterates (each DataLoader worker, after fork or spawn); nothing
open is carried across ``fork``. Reads are whole store chunks (:mod:`pipeline.stream.chunks`,
through :class:`~pipeline.core.chunkio.DirectArray`: no zarr call per read): the epoch's order
is a block shuffle (:mod:`pipeline.stream.order`), each chunk is read and decoded once per epoch
window, the next window's chunks in a background thread while this one's batches are served,
and :data:`BLOCK_BATCHES` batches (a worker: one hand-over's) are one vectorised gather from the
decoded window, cut into batches by views (:mod:`pipeline.stream.blocks`).
Memory is bounded by ``4 x window_blocks x chunk`` samples whatever the dataset size (plus
the labels, 5 bytes per sample and label).

Every batch has ``pad`` (bool [B]): the samples that repeat earlier ones to fill the epoch's
last batches (``drop_last=False``); ``batch.valid`` is its negation.

Workers hand batches to the main process as one bytes blob through the worker's pipe (see
``_Tensors.__reduce__``), not one shared-memory segment per tensor; with
:class:`~pipeline.stream.loader.StreamLoader` a blob is a whole block of batches, and the
transformer format's adjacency rows are mapped from the store in the main process instead.

Sharding: global batch ``b`` of the epoch goes to rank ``b % world_size`` and, within a rank,
round-robin to DataLoader workers, so every rank gets the same number of batches (the tail
is padded by repeating samples, or dropped with ``drop_last``). ``state_dict(last_step)`` /
``load_state_dict`` resume mid-epoch with exactly the remaining samples, also with another
number of workers or ranks.
"""

from __future__ import annotations

import numbers
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.core.errors import StoreError
from pipeline.core.remote import ChunkCache, join, location
from pipeline.stream.batches import GraphStatic, IndexBatch, StepRows
from pipeline.stream.blocks import BatchBlock
from pipeline.stream.chunks import Columns, Prefetcher, View, segments
from pipeline.stream.labels import StreamLabels
from pipeline.stream.order import batches_for, epoch_order, plan_epoch, remaining

FORMATS = ("index", "graph", "khop", "transformer")
LAYOUTS = ("zarr", "lmdb")
KHOP_MODES = ("per_type", "union")
DEFAULT_LABELS = ("fitness", "interaction")
STATE_FIELDS = ("epoch", "start", "seed", "world_size", "batch_size")
#: batches gathered at once by a process that yields batches one by one (:meth:`PerturbationStream.batches`)
BLOCK_BATCHES = 16
#: eps of the adjacency targets A_ij / (d_i + eps), as ``pipeline.precompute.adjacency.expand_rows``
ADJ_EPS = 1e-8


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return rank or 0, world_size or 1


def _int_arg(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming the argument (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_records(paths: dict[str, Path], manifest: dict[str, Any]) -> None:
    """StoreError unless ``records.lmdb`` was written by the same build as the precomputed store."""
    from pipeline.precompute.records import open_records

    rec = open_records(paths["records"])
    try:
        rm = rec.manifest
    finally:
        rec.close()
    mine, theirs = manifest.get("build_key"), rm.get("build_key")
    genes = (manifest.get("graph", {}).get("gene_fingerprint"), rm.get("graph", {}).get("gene_fingerprint"))
    if mine != theirs or genes[0] != genes[1]:
        raise StoreError(f"{paths['records']} was written from another build than {paths['precomputed']} "
                         f"(build_key {str(theirs)[:12]} vs {str(mine)[:12]}, gene fingerprint "
                         f"{str(genes[1])[:12]} vs {str(genes[0])[:12]}); rebuild with --lmdb")


class PerturbationStream(IterableDataset):
    """Batches of one split of a build, in one of :data:`FORMATS`; see the module docstring.

    ``build``: the build folder (``OUT/NAME``, holding graph.zarr, dataset/, precomputed.zarr).
    ``fmt``: ``index`` | ``graph`` | ``khop`` (k-hop node sets, ``k``, ``khop_mode``) |
    ``transformer`` (M(S) + this step's adjacency rows of ``adjacency_graphs``, compact).
    ``batch_size`` >= 1, ``window_blocks`` >= 1 (chunks shuffled together), ``k`` >= 1: ValueError otherwise.
    ``build`` may be a URL (``s3://bucket/builds/NAME``, a string: :mod:`pipeline.core.remote`): every file
    is read through a local :class:`~pipeline.core.remote.ChunkCache` in ``cache_dir`` bounded by
    ``cache_bytes`` (defaults: ``$PIPELINE_CACHE_DIR/chunks``, 4 GiB), shared by DataLoader workers.
    """

    def __init__(self, build: str | Path, *, split: str | None = "train", split_name: str = "random",
                 fmt: str = "graph", layout: str = "zarr", batch_size: int = 64, seed: int = 0,
                 shuffle: bool = True, window_blocks: int = 4, drop_last: bool = False,
                 labels: tuple[str, ...] = DEFAULT_LABELS, k: int = 1, khop_mode: str = "per_type",
                 adjacency_graphs: list[str] | None = None, weighted_targets: bool = False,
                 rank: int | None = None, world_size: int | None = None,
                 cache_dir: str | Path | None = None, cache_bytes: int | None = None,
                 vector_labels: tuple[str, ...] | list[str] | None = None,
                 vector_cache_bytes: int = 256 << 20) -> None:
        from pipeline.dataset.store import open_dataset
        from pipeline.graph.store import open_graph
        from pipeline.precompute.store import open_precomputed

        if fmt not in FORMATS:
            raise ValueError(f"fmt {fmt!r}: expected one of {', '.join(FORMATS)}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        if khop_mode not in KHOP_MODES:
            raise ValueError(f"khop_mode {khop_mode!r}: expected one of {', '.join(KHOP_MODES)}")
        build = location(build, "build")  # a URL stays a string: read remotely, through a local cache
        self.paths = {key: join(build, name) for key, name in (("graph", "graph.zarr"), ("dataset", "dataset"),
                                                               ("precomputed", "precomputed.zarr"),
                                                               ("records", "records.lmdb"))}
        self._cache = ChunkCache(cache_dir, cache_bytes) if isinstance(build, str) else None
        self.fmt, self.layout = fmt, layout
        self.batch_size = _int_arg("batch_size", batch_size, 1)
        self.seed = _int_arg("seed", seed, 0)
        self.window_blocks = _int_arg("window_blocks", window_blocks, 1)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.k, self.khop_mode, self.weighted_targets = _int_arg("k", k, 1), khop_mode, bool(weighted_targets)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.world_size = _int_arg("world_size", self.world_size, 1)
        if not 0 <= _int_arg("rank", self.rank, 0) < self.world_size:
            raise ValueError(f"rank {self.rank} out of range for world_size {self.world_size}")
        graph = open_graph(self.paths["graph"], cache=self._cache)
        pre = open_precomputed(self.paths["precomputed"], graph=graph, cache=self._cache)  # fingerprints must match
        ds = open_dataset(self.paths["dataset"], cache=self._cache)
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
        if layout == "lmdb":
            if self._cache is not None:
                raise StoreError(f"{self.paths['records']}: LMDB records are read memory-mapped from a local file "
                                 "system and are not published to object stores; use layout='zarr'")
            if not self.paths["records"].exists():
                raise StoreError(f"{self.paths['records']}: no LMDB records; rerun the build with --lmdb")
            _check_records(self.paths, m)
        self.n_genes, self.chunk = int(m["graph"]["n_genes"]), int(m["chunk_samples"])
        self.n_samples = int(m["n_samples"])
        self.n_chunks = -(-self.n_samples // self.chunk)
        self.adjacency = m["parameters"].get("adjacency") or {}
        self.adjacency_graphs = list(adjacency_graphs or self.adjacency.get("graphs", []))
        unknown = sorted(set(self.adjacency_graphs) - set(self.adjacency.get("graphs", [])))
        if fmt == "transformer" and unknown:
            raise ValueError(f"adjacency_graphs {unknown}: no adjacency rows in {self.paths['precomputed']} "
                             f"(it has {self.adjacency.get('graphs', [])})")
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
        # vector labels (None: every one the dataset has; (): none), read with each store chunk; decoded
        # blocks kept across epochs up to vector_cache_bytes per process (pipeline.stream.labels)
        self.vlabels = StreamLabels(ds.path, vector_labels, _int_arg("vector_cache_bytes", vector_cache_bytes, 0))
        self.epoch, self._start, self._state_world = 0, 0, self.world_size
        self._pid: int | None = None
        self._decoded: OrderedDict[int, Columns] = OrderedDict()  # map-style reads only
        self._adj_cache: OrderedDict[tuple[int, int], tuple[Any, Any]] = OrderedDict()  # (epoch, unit) -> rows

    # --- process-local stores (opened lazily: after fork/spawn, in the worker) --------------
    def _stores(self) -> dict[str, Any]:
        if self._pid != os.getpid():
            from pipeline.precompute.store import open_precomputed
            self._zarr = open_precomputed(self.paths["precomputed"], cache=self._cache)  # a PrecomputedStore
            self._records = None
            if self.layout == "lmdb":
                from pipeline.precompute.records import open_records
                self._records = open_records(self.paths["records"])
            if self.fmt == "transformer":
                self._adj_steps = self._zarr.adjacency_read_steps  # steps per read of the rows (a shard)
                self._packing = self._zarr.adjacency_packing
                stored = self._zarr.adjacency_graphs
                pick = [stored.index(t) for t in self.adjacency_graphs]
                self._adj_pick = None if pick == list(range(len(stored))) else np.array(pick)
            self._decoded.clear()
            self._adj_cache.clear()
            self._pid = os.getpid()
        return {"zarr": self._zarr, "records": self._records}

    def __getstate__(self) -> dict[str, Any]:  # spawn: never ship open stores
        s = dict(self.__dict__)
        for key in ("_zarr", "_records"):
            s.pop(key, None)
        s["_pid"], s["_decoded"], s["_adj_cache"] = None, OrderedDict(), OrderedDict()
        return s

    # --- static graph ------------------------------------------------------------------------
    def static(self, edge_types: list[str] | None = None) -> GraphStatic:
        """The wild-type graph for the GNN formats, the gene tokens and (transformer format) the
        CSR of each adjacency graph with its per-entry targets: send it to the device once."""
        from pipeline.core.ragged import owner, segment_sum
        from pipeline.graph.store import open_graph
        g = open_graph(self.paths["graph"], cache=self._cache)
        x, _ = g.features() if "features" in g.root["genes"] else (np.zeros((g.n_genes, 0), np.float32), [])
        st = GraphStatic(torch.from_numpy(~g.added), torch.from_numpy(~g.added), torch.from_numpy(x))
        for t in edge_types or g.edge_types:
            st.edge_index[t] = torch.from_numpy(g.edge_index(t))
            ip, ids = g.incidence(t)
            st.inc_ptr[t], st.inc_edges[t] = torch.from_numpy(ip), torch.from_numpy(ids.astype(np.int64))
        for t in self.adjacency_graphs if self.fmt == "transformer" else []:
            csr = g.csr(t)
            row = owner(csr.indptr)
            if self.weighted_targets:  # exactly expand_rows' arithmetic: float64, then float32
                w = np.asarray(csr.weights, dtype=np.float64)
                target = w / (segment_sum(w, csr.indptr)[row] + ADJ_EPS)
            else:
                target = 1.0 / (np.diff(csr.indptr)[row].astype(np.float64) + ADJ_EPS)
            st.adj_ptr[t] = torch.from_numpy(np.asarray(csr.indptr, np.int64))
            st.adj_cols[t] = torch.from_numpy(csr.indices.astype(np.int64))
            st.adj_target[t] = torch.from_numpy(target.astype(np.float32))
        return st

    # --- reading ------------------------------------------------------------------------------
    def _read_chunk(self, c: int) -> Columns:
        """Chunk ``c``'s columns, and the vector-label rows of its samples (:mod:`pipeline.stream.labels`),
        one read per array (called from the prefetch thread)."""
        out = self._read_store_chunk(c)
        if self.vlabels:
            self.vlabels.attach(out, c * self.chunk)
        return out

    def _read_store_chunk(self, c: int) -> Columns:
        """Chunk ``c``'s columns from the precomputed store or the LMDB records."""
        first = c * self.chunk
        st = self._stores()
        if self.layout == "lmdb":
            need = ["genes", "types"] + {"graph": ["node_flips"],
                                          "khop": [f"khop:{self.khop_mode}:k{self.k}"]}.get(self.fmt, [])
            cols = st["records"].get_batch(np.arange(first, min(first + self.chunk, self.n_samples)), sections=need)
            out = Columns(len(cols["genes"][0]) - 1, csr={"genes": cols["genes"]},
                          values={"genes:types": cols["types"][1]})
            if self.fmt == "graph":
                out.csr["flips"] = cols["node_flips"]
            if self.fmt == "khop":
                out.rows["bits"] = cols[f"khop:{self.khop_mode}:k{self.k}"][1].reshape(out.n, -1)
            return out
        z = st["zarr"]
        ptr, genes, types = z.perturbation_chunk(first, self.chunk)
        out = Columns(len(ptr) - 1, csr={"genes": (ptr, genes)}, values={"genes:types": types})
        if self.fmt == "graph":
            out.csr["flips"] = z.node_flips_chunk(first, self.chunk)
        if self.fmt == "khop":
            out.rows["bits"] = z.khop_bits(self.k, self.khop_mode, slice(first, first + out.n))
        return out

    def _view(self, ids: np.ndarray) -> View:
        """A view holding ``ids``' chunks, read now (map-style access; iteration prefetches instead)."""
        self._stores()
        need = np.unique(ids // self.chunk).tolist()
        for c in need:
            if c not in self._decoded:
                self._decoded[c] = self._read_chunk(c)
            self._decoded.move_to_end(c)
        while len(self._decoded) > max(self.window_blocks, len(need)):
            self._decoded.popitem(last=False)
        return View.build({c: self._decoded[c] for c in need}, self.n_chunks, self.chunk)

    def _adj_unit(self, e: int, unit: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """One read unit (a shard: ``adjacency_read_steps`` consecutive steps) of every graph, per step:
        (rows narrow int [T, R], packed negatives uint8 [T, P]), views of the store's mapped files where
        they can be (a copy when ``adjacency_graphs`` picks some of the stored graphs). Built once per
        unit, kept for the next steps (the last two units)."""
        key = (e, unit)
        hit = self._adj_cache.get(key)
        if hit is not None:
            return hit
        rows, packed = self._stores()["zarr"].adjacency_unit(e, unit)  # [U, T, R], [U, T, P]
        if self._adj_pick is not None:
            rows, packed = rows[:, self._adj_pick], packed[:, self._adj_pick]
        hit = (torch.from_numpy(rows).unbind(0), torch.from_numpy(packed).unbind(0))
        self._adj_cache[key] = hit
        while len(self._adj_cache) > 2:
            self._adj_cache.popitem(last=False)
        return hit

    def step_rows(self, steps: np.ndarray) -> list[StepRows]:
        """The stored adjacency rows of these global steps of the current epoch (stored step = step mod
        the stored steps), one :class:`~pipeline.stream.batches.StepRows` per step: every graph's rows
        and packed negatives as two views (of the store's mapped files), read a shard of steps at a time."""
        a = self.adjacency
        e = self.epoch % a["epochs"]
        self._stores()
        u, pk, graphs = self._adj_steps, self._packing, tuple(self.adjacency_graphs)
        out = []
        for s in (np.asarray(steps, np.int64).clip(0) % a["steps"]).tolist():
            unit, local = divmod(s, u)
            rows, packed = self._adj_unit(e, unit)
            out.append(StepRows(rows[local], packed[local], graphs, n_neg=pk.n_negatives, bits=pk.bits))
        return out

    def attach_rows(self, block: BatchBlock) -> BatchBlock:
        """Add the adjacency rows of ``block``'s steps (transformer format; see :mod:`pipeline.stream.blocks`)."""
        if self.fmt == "transformer" and block.step_rows is None:
            block.attach(self.step_rows(block.steps.numpy()))
        return block

    def _block(self, ids: np.ndarray, steps: np.ndarray, pad: np.ndarray, view: View, rows: bool = True
               ) -> BatchBlock:
        """The block of batches ``ids`` [G, B] (global ``steps`` [G], ``pad`` [G, B]), gathered from ``view``
        at once; with ``rows``, the transformer format's adjacency rows attached."""
        flat, pad = ids.reshape(-1), pad.reshape(-1)
        d = view.gather(flat)
        vec = {}
        if self.vlabels:
            vec = dict(zip(("labels", "label_mask"), self.vlabels.gather(flat, d, view, pad), strict=True))
        tn = torch.from_numpy
        blk = BatchBlock(self.fmt, ids.shape[1], steps=tn(np.asarray(steps, np.int64)), sample_ids=tn(flat),
                         pert_ptr=tn(d["genes_ptr"]), pert_genes=tn(d["genes"].astype(np.int64)),
                         pert_types=tn(d["types"].astype(np.int64)), y=tn(self.y[flat]),
                         y_mask=tn(self.y_mask[flat]), pad=tn(pad), **vec)
        if self.fmt == "graph":
            blk.flip_ptr, blk.flip_genes = tn(d["flips_ptr"]), tn(d["flips"].astype(np.int64))
        elif self.fmt == "khop":
            blk.k, blk.bits = self.k, tn(np.ascontiguousarray(d["bits"]))
        elif rows:
            self.attach_rows(blk)
        return blk

    def get_batch(self, ids: np.ndarray, step: int = -1) -> IndexBatch:
        """The batch of these sample ids (map-style access), in this stream's format (``pad`` all False)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= self.n_samples)):
            raise ValueError(f"ids must be a 1-D array of sample ids in 0..{self.n_samples - 1}")
        view = self._view(ids)
        return self._block(ids[None], np.array([step]), np.zeros((1, len(ids)), bool), view).batches()[0]

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
        return self.batches()

    def batches(self, group: int = 1) -> Iterator[IndexBatch]:
        """This process's batches of the epoch, in order: all of them in the main process; in a
        DataLoader worker its share, dealt ``group`` consecutive batches at a time (see
        :func:`pipeline.stream.order.batches_for`). Gathered :data:`BLOCK_BATCHES` at a time."""
        for blk in self.blocks(group, size=max(group, BLOCK_BATCHES)):
            yield from blk.batches()

    def blocks(self, group: int = 1, size: int | None = None, rows: bool = True) -> Iterator[BatchBlock]:
        """This process's batches as :class:`~pipeline.stream.blocks.BatchBlock` s of ``size`` (default
        ``group``) consecutive batches of its share, dealt as in :meth:`batches`; ``rows=False``: the
        transformer format's adjacency rows are left for :meth:`attach_rows` (the trainer's process)."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan, start = self._plan()
        mine = batches_for(plan, start=start, rank=self.rank, world_size=self.world_size, worker=worker,
                           num_workers=n_workers, group=group)
        if len(mine) == 0:
            return
        self._stores()
        size = size or group
        real = plan.batches.size - plan.n_padded  # flat positions >= real are padding repeats
        cols = np.arange(self.batch_size, dtype=np.int64)
        runs = [(a, min(a + size, len(mine))) for a in range(0, len(mine), size)]
        needs = [np.unique(plan.batches[mine[a:b]] // self.chunk) for a, b in runs]
        for ra, rb, view in Prefetcher(self._read_chunk, self.n_chunks, self.chunk).views(
                segments(needs, cap=2 * self.window_blocks)):
            for a, b in runs[ra:rb]:
                idx = mine[a:b]
                yield self._block(plan.batches[idx], idx, idx[:, None] * self.batch_size + cols >= real, view, rows)

    def state_dict(self, last_step: int | None = None) -> dict[str, Any]:
        """Where to resume: after the batch whose ``step`` is ``last_step`` (None: the epoch's start)."""
        w = self.world_size
        start = 0 if last_step is None else (int(last_step) // w + 1) * w
        return {"epoch": self.epoch, "start": start, "seed": self.seed, "world_size": w,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; ValueError naming the field that is missing, not a
        non-negative integer, or (seed, batch_size) different from this stream's."""
        if not isinstance(state, dict):
            raise ValueError(f"stream state: expected a dict with {', '.join(STATE_FIELDS)}, "
                             f"got {type(state).__name__}")
        for key in STATE_FIELDS:
            if key not in state:
                raise ValueError(f"stream state: missing {key!r}")
            _int_arg(f"stream state: {key!r}", state[key], 1 if key in ("world_size", "batch_size") else 0)
        for key in ("seed", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"stream state: {key} {state[key]} differs from the stream's {getattr(self, key)}; "
                                 "both must match to resume")
        self.epoch, self._start, self._state_world = int(state["epoch"]), int(state["start"]), int(state["world_size"])
