"""Batch formats of the stream: small typed objects of tensors, ready for ``.to(device)``.

Every batch carries M(S) in CSR form (``pert_ptr`` [B+1], ``pert_genes``, ``pert_types``),
the labels ``y`` [B, L] with ``y_mask`` (False where not measured), the dataset
``sample_ids`` and ``step`` (the global batch index in the epoch, for resuming). The
static graph (:class:`GraphStatic`) is sent to the device once; masks travel in compact
form and are expanded on whatever device the batch is on, vectorised over the batch.

- :class:`IndexBatch`: the above only (DANGO-style models).
- :class:`GraphBatch`: + compact node masks (genes whose mask differs from the
  wild-type base); :meth:`GraphBatch.node_mask` / :meth:`GraphBatch.edge_masks`
  expand them to dense bool masks; :meth:`GraphBatch.to_hetero` is a PyG view.
- :class:`KHopBatch`: + bit-packed k-hop node sets; :meth:`KHopBatch.node_sets`,
  :meth:`KHopBatch.induced_edges` and :meth:`KHopBatch.to_pyg` expand them.
- :class:`TransformerBatch`: + the sampled adjacency rows of this step per graph
  (:class:`AdjRows`: rows, row_ptr, cols, target, positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import torch

# the packing is a storage codec (packed once, at precompute time): re-exported for the stream
from pipeline.precompute.adjacency import neg_bits as neg_bits
from pipeline.precompute.adjacency import pack_negatives as pack_negatives
from pipeline.precompute.adjacency import unpack_negatives_np

B = TypeVar("B", bound="_Tensors")


def _flatten(obj: Any, arrays: list[torch.Tensor]) -> Any:
    """The layout of ``obj`` with every tensor replaced by its index in ``arrays`` (appended to)."""
    if isinstance(obj, torch.Tensor):
        arrays.append(obj)
        return ("t", len(arrays) - 1)
    if isinstance(obj, _Tensors):
        return ("o", type(obj), {f.name: _flatten(getattr(obj, f.name), arrays) for f in fields(obj)})  # type: ignore[arg-type]
    if isinstance(obj, dict):
        return ("d", {k: _flatten(v, arrays) for k, v in obj.items()})
    if isinstance(obj, list):
        return ("l", [_flatten(v, arrays) for v in obj])
    return ("v", obj)


def _unflatten(layout: Any, tensors: list[torch.Tensor]) -> Any:
    kind, body = layout[0], layout[1:]
    if kind == "t":
        return tensors[body[0]]
    if kind == "o":
        return body[0](**{k: _unflatten(v, tensors) for k, v in body[1].items()})
    if kind == "d":
        return {k: _unflatten(v, tensors) for k, v in body[0].items()}
    if kind == "l":
        return [_unflatten(v, tensors) for v in body[0]]
    return body[0]


#: Blobs from this size on travel in one shared-memory segment (a handle through the pipe, no copies
#: of the bytes through it); smaller ones through the pipe: a segment costs its creation, a socket
#: round trip for its descriptor and fresh page faults on both sides, more than copying a few MB
#: (the README's stream benchmark notes).
SHM_MIN_BYTES = 4 << 20


def _rebuild(layout: Any, meta: tuple[tuple[str, tuple[int, ...], int], ...], blob: bytearray | torch.Tensor) -> Any:
    """Inverse of ``_Tensors.__reduce__``: tensors are views into ``blob`` (no copy)."""
    buf = blob.numpy() if isinstance(blob, torch.Tensor) else blob
    tensors = [torch.from_numpy(np.frombuffer(buf, dt, math.prod(shape), off).reshape(shape))
               for dt, shape, off in meta]
    return _unflatten(layout, tensors)


def shipped_bytes(obj: Any) -> int:
    """Bytes a DataLoader worker hands over for ``obj`` (a batch or group): its pickle through the
    pipe, plus the blob when that travels in shared memory (see :data:`SHM_MIN_BYTES`)."""
    from multiprocessing.reduction import ForkingPickler

    blob = _pack(obj)[2]
    return len(ForkingPickler.dumps(obj)) + (blob.numel() if isinstance(blob, torch.Tensor) else 0)


def _pack(obj: Any) -> tuple[Any, tuple[tuple[str, tuple[int, ...], int], ...], bytearray | torch.Tensor]:
    """(layout, per-tensor (dtype, shape, offset), one blob holding every tensor's bytes) of ``obj``:
    a bytearray, or from :data:`SHM_MIN_BYTES` on a uint8 tensor allocated in shared memory."""
    arrays: list[torch.Tensor] = []
    layout = _flatten(obj, arrays)
    nps = [t.numpy() if t.device.type == "cpu" and not t.requires_grad else t.detach().cpu().numpy()
           for t in arrays]
    offs, total = [], 0
    for a in nps:
        offs.append(total)
        total += -(-a.nbytes // 8) * 8  # 8-byte aligned views
    blob: bytearray | torch.Tensor
    if total >= SHM_MIN_BYTES:
        blob = torch.empty(total, dtype=torch.uint8).share_memory_()  # torch pickles it as a handle
        buf = blob.numpy()
    else:
        blob = bytearray(total)
        buf = np.frombuffer(blob, np.uint8)
    for a, off in zip(nps, offs, strict=True):
        buf[off:off + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return layout, tuple((a.dtype.str, a.shape, off) for a, off in zip(nps, offs, strict=True)), blob


class _Tensors:
    """``to``/``pin_memory`` over every tensor field (and dicts of tensors / nested objects)."""

    def _map(self: B, fn: Any) -> B:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = fn(v)
            elif isinstance(v, dict):
                v = {k: (x._map(fn) if isinstance(x, _Tensors) else fn(x) if isinstance(x, torch.Tensor) else x)
                     for k, x in v.items()}
            elif isinstance(v, _Tensors):
                v = v._map(fn)
            elif isinstance(v, list):
                v = [x._map(fn) if isinstance(x, _Tensors) else x for x in v]
            out[f.name] = v
        return type(self)(**out)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle (the DataLoader's worker -> main hand-over) as ONE bytes blob plus a small layout.

        torch would send every tensor as its own shared-memory segment (created, sent, mapped
        and unlinked per batch: ~0.3 ms for a batch of a few KB); one blob through the
        worker's pipe costs a copy of the batch's bytes, microseconds for these sizes. The
        receiver gets the same batch type with tensors viewing one buffer.
        """
        return _rebuild, _pack(self)

    def to(self: B, device: Any, non_blocking: bool = False) -> B:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self: B) -> B:
        return self._map(lambda t: t.pin_memory())

    @property
    def device(self) -> torch.device:
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                return v.device
        return torch.device("cpu")


@dataclass
class GraphStatic(_Tensors):
    """The wild-type graph, sent to the device once: per edge type the edge list, and the
    gene -> incident edge index that expands node removals into edge masks."""

    base: torch.Tensor  # bool [N]: wild-type node mask (False for added genes)
    valid: torch.Tensor  # bool [N]: graph-regularisation validity (False for added genes)
    gene_x: torch.Tensor  # float32 [N, d] gene token features (NaN where unknown)
    edge_index: dict[str, torch.Tensor] = field(default_factory=dict)  # int64 [2, E_t]
    inc_ptr: dict[str, torch.Tensor] = field(default_factory=dict)  # int64 [N+1]
    inc_edges: dict[str, torch.Tensor] = field(default_factory=dict)  # int64 [2 E_t]
    # the CSR of each adjacency graph of the transformer format (see ``CompactRows.expand``)
    adj_ptr: dict[str, torch.Tensor] = field(default_factory=dict)  # int64 [N+1]
    adj_cols: dict[str, torch.Tensor] = field(default_factory=dict)  # int64 [nnz]
    adj_target: dict[str, torch.Tensor] = field(default_factory=dict)  # float32 [nnz]: A_ij / (d_i + eps)

    @property
    def n_genes(self) -> int:
        return int(self.base.numel())


def owner(ptr: torch.Tensor) -> torch.Tensor:
    """Row (int64, on ``ptr``'s device) of every entry of a CSR with offsets ``ptr`` [B+1]: the
    sample of each perturbed gene, of each mask flip, of each adjacency entry.

    >>> owner(torch.tensor([0, 2, 2, 3])).tolist()
    [0, 0, 2]
    """
    return torch.repeat_interleave(torch.arange(len(ptr) - 1, device=ptr.device), ptr.diff())


@dataclass
class IndexBatch(_Tensors):
    sample_ids: torch.Tensor  # int64 [B]
    step: int
    pert_ptr: torch.Tensor  # int64 [B+1]
    pert_genes: torch.Tensor  # int64 [P]
    pert_types: torch.Tensor  # int64 [P]
    y: torch.Tensor  # float32 [B, L]
    y_mask: torch.Tensor  # bool [B, L]
    pad: torch.Tensor  # bool [B]: True for the repeated samples that pad an epoch's last batches (not real)
    # vector labels by name (pipeline.stream.labels): float32 [B, w], 0 where not measured, and their
    # masks bool [B, w] (False where not measured, for a sample without the vector, and for pad samples)
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    label_mask: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def valid(self) -> torch.Tensor:
        """bool [B]: the real samples (``~pad``); weight metrics with it so none counts twice."""
        return ~self.pad

    def __len__(self) -> int:
        return int(self.sample_ids.numel())


@dataclass
class GraphBatch(IndexBatch):
    flip_ptr: torch.Tensor = None  # type: ignore[assignment]  # int64 [B+1]
    flip_genes: torch.Tensor = None  # type: ignore[assignment]  # int64: genes whose mask differs from base

    def node_mask(self, static: GraphStatic) -> torch.Tensor:
        """Dense bool [B, N]: True where the gene is present in the strain."""
        m = static.base.unsqueeze(0).expand(len(self), -1).clone()
        rows = owner(self.flip_ptr)
        m[rows, self.flip_genes] = ~m[rows, self.flip_genes]
        return m

    def removed(self, static: GraphStatic) -> tuple[torch.Tensor, torch.Tensor]:
        """(sample row, gene) of every removed genome gene."""
        rows = owner(self.flip_ptr)
        keep = static.base[self.flip_genes]  # a flip of a present-by-default gene is a removal
        return rows[keep], self.flip_genes[keep]

    def edge_masks(self, static: GraphStatic, types: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Dense bool [B, E_t] per edge type: False where the edge touches a removed gene."""
        rows, genes = self.removed(static)
        out = {}
        for t in types or list(static.edge_index):
            ptr, inc = static.inc_ptr[t], static.inc_edges[t]
            a, lens = ptr[genes], ptr[genes + 1] - ptr[genes]
            total = int(lens.sum())
            starts = torch.cumsum(lens, 0) - lens
            pos = torch.arange(total, device=ptr.device) + torch.repeat_interleave(a - starts, lens)
            m = torch.ones(len(self), static.edge_index[t].shape[1], dtype=torch.bool, device=ptr.device)
            m[torch.repeat_interleave(rows, lens), inc[pos]] = False
            out[t] = m
        return out

    def to_hetero(self, static: GraphStatic) -> Any:
        """A PyG ``HeteroData`` view: the static graph with per-sample ``node_mask`` [B, N] on
        ``data['gene']`` and ``edge_mask`` [B, E_t] on each ``data['gene', t, 'gene']``."""
        from torch_geometric.data import HeteroData

        d = HeteroData()
        d["gene"].x = static.gene_x
        d["gene"].node_mask = self.node_mask(static)
        d["gene"].num_nodes = static.n_genes
        for t, m in self.edge_masks(static).items():
            d["gene", t, "gene"].edge_index = static.edge_index[t]
            d["gene", t, "gene"].edge_mask = m
        d.y, d.y_mask = self.y, self.y_mask
        return d


@dataclass
class KHopBatch(IndexBatch):
    k: int = 1
    bits: torch.Tensor = None  # type: ignore[assignment]  # uint8 [B, ceil(N/8)], gene g = bit g%8 of byte g//8

    def node_sets(self, n_genes: int) -> torch.Tensor:
        """Dense bool [B, N]: the k-hop node set of each sample."""
        g = torch.arange(n_genes, device=self.bits.device)
        return ((self.bits[:, g >> 3] >> (g & 7).to(torch.uint8)) & 1).bool()

    def induced_edges(self, static: GraphStatic) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per edge type, (sample row, edge id) of the edges with both ends in the sample's set."""
        sets = self.node_sets(static.n_genes)
        out = {}
        for t, ei in static.edge_index.items():
            keep = sets[:, ei[0]] & sets[:, ei[1]]
            out[t] = tuple(keep.nonzero(as_tuple=True))  # type: ignore[assignment]
        return out

    def to_pyg(self, static: GraphStatic) -> Any:
        """A PyG ``Batch`` (of ``HeteroData``) holding the B subgraphs as one disjoint union:
        ``gene.n_id`` (original gene), ``gene.batch`` and ``gene.ptr``, relabelled edges per type.
        Built vectorised, not by ``Batch.from_data_list``; it has no per-example slices
        (``to_data_list`` is not available)."""
        from torch_geometric.data import Batch, HeteroData

        sets = self.node_sets(static.n_genes)
        b, g = sets.nonzero(as_tuple=True)
        new = torch.full(sets.shape, -1, dtype=torch.long, device=sets.device)
        new[b, g] = torch.arange(len(g), device=sets.device)
        d = Batch(_base_cls=HeteroData)
        d["gene"].n_id, d["gene"].batch = g, b
        d["gene"].x = static.gene_x[g]
        d["gene"].ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=g.device),
                                   torch.bincount(b, minlength=len(self)).cumsum(0)])
        for t, (rows, e) in self.induced_edges(static).items():
            ei = static.edge_index[t]
            d["gene", t, "gene"].edge_index = torch.stack([new[rows, ei[0, e]], new[rows, ei[1, e]]])
        d.y, d.y_mask = self.y, self.y_mask
        return d


@dataclass
class AdjRows(_Tensors):
    """Sampled adjacency rows of one graph for one step, expanded: exactly
    ``pipeline.precompute.adjacency.expand_rows`` of the stored rows (cols as int64)."""

    rows: torch.Tensor  # int64 [R]: gene of each row, -1 = padding
    row_ptr: torch.Tensor  # int64 [R+1]
    cols: torch.Tensor  # int64 [nnz]
    target: torch.Tensor  # float32 [nnz]: A_ij / (d_i + eps) for positives, 0 for negatives
    positive: torch.Tensor  # bool [nnz]

    @property
    def valid(self) -> torch.Tensor:
        """bool [R]: real rows (a pad row, gene -1, has no entries)."""
        return self.rows >= 0


def unpack_negatives(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_negatives` for one step (any device): int64 genes, -1 pads."""
    v = lo.long()
    h = bits - 8
    if h:
        b = hi.reshape(-1, h).long()
        word = torch.zeros(b.shape[0], dtype=torch.long, device=lo.device)
        for j in range(h):
            word |= b[:, j] << (8 * j)
        shifts = torch.arange(8, device=lo.device) * h
        v = v | (((word[:, None] >> shifts) & ((1 << h) - 1)).reshape(-1) << 8)
    return v - 1


@dataclass
class CompactRows(_Tensors):
    """One graph's rows of a step as shipped: the row genes and their packed negatives, nothing
    derivable from the static graph (a few hundred KB per step instead of ~7 MB expanded)."""

    rows: torch.Tensor  # int16/int32 [R]: gene of each row, -1 = padding
    neg_lo: torch.Tensor  # uint8 [R*M']: low bytes of gene+1 (M' = M rounded up to 8)
    neg_hi: torch.Tensor  # uint8 [R*M'/8*(bits-8)]: high bits, see pack_negatives
    n_neg: int = 0  # M: negatives per row
    bits: int = 8

    def negatives(self) -> torch.Tensor:
        """int64 [R, M]: the stored negatives (ascending, then -1 pads)."""
        r = self.rows.numel()
        v = unpack_negatives(self.neg_lo, self.neg_hi, self.bits).view(r, -1)
        return v[:, :self.n_neg]

    def expand(self, static: GraphStatic, graph: str) -> AdjRows:
        """The expanded rows on ``static``'s device, vectorised over rows, from the static CSR of
        ``graph``: per row its whole CSR row (positives, targets from ``static.adj_target``), then
        its negatives (pads dropped, target 0). Equal to ``expand_rows`` of the stored rows.

        Entry ``j`` of row ``t`` is CSR entry ``j + start[t] - row_ptr[t]`` while it is a positive:
        one gather of the columns and targets over the output (a shift per row, no per-entry
        arithmetic), then the few negatives (a quarter of the entries at 256 rows x 64) are
        scattered over the places that gather filled past each CSR row. On the CPU the same
        arithmetic runs in numpy (torch's CPU gathers are slower, and its thread pool contends
        with the DataLoader's workers)."""
        ptr, cols_csr, tgt = static.adj_ptr[graph], static.adj_cols[graph], static.adj_target[graph]
        if ptr.device.type == "cpu":
            r = self.rows.numpy().astype(np.int64)
            neg = unpack_negatives_np(self.neg_lo.numpy(), self.neg_hi.numpy(), self.bits).reshape(len(r), -1)
            out = _expand_numpy(ptr.numpy(), cols_csr.numpy(), tgt.numpy(), r, neg[:, :self.n_neg])
            return AdjRows(*(torch.from_numpy(x) for x in out))
        return self.expand_torch(static, graph)

    def expand_torch(self, static: GraphStatic, graph: str) -> AdjRows:
        """:meth:`expand` in torch ops, on ``static``'s device (the GPU path; exact on any device). One
        host sync (the output's length); the negatives' pads are scattered to a spare last slot."""
        plan = self._plan(static, graph)
        return plan.finish(int(plan.row_ptr[-1]))

    def _plan(self, static: GraphStatic, graph: str) -> _Expansion:
        """The per-row part of :meth:`expand_torch` (no host sync): lengths and offsets of every row."""
        ptr = static.adj_ptr[graph]
        dev = ptr.device
        r = self.rows.to(dev).long()
        neg = self.negatives().to(dev)
        real = r >= 0
        rr = torch.where(real, r, torch.zeros_like(r))
        start = ptr.index_select(0, rr)
        deg = torch.where(real, ptr.index_select(0, rr + 1) - start, torch.zeros_like(r))
        ok = (neg >= 0) & real[:, None]
        lens = deg + ok.sum(1)
        row_ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cumsum(lens, 0)])
        return _Expansion(r, neg, ok, start, deg, lens, row_ptr, static.adj_cols[graph], static.adj_target[graph])


@dataclass
class _Expansion:
    """One graph's rows of a step between the two halves of :meth:`CompactRows.expand_torch`: what the
    rows' lengths are (on the device) and what :meth:`finish` needs once the total is known on the host."""

    r: torch.Tensor
    neg: torch.Tensor
    ok: torch.Tensor
    start: torch.Tensor
    deg: torch.Tensor
    lens: torch.Tensor
    row_ptr: torch.Tensor
    cols_csr: torch.Tensor
    tgt: torch.Tensor

    def finish(self, total: int) -> AdjRows:
        """The expanded rows, ``total`` (= ``row_ptr[-1]``) entries: entry ``j`` of row ``t`` is CSR entry
        ``j + start[t] - row_ptr[t]`` (one shifted gather), then the negatives scattered past each CSR row."""
        dev, n_neg = self.row_ptr.device, self.neg.shape[1]
        row_ptr, cols_csr, tgt = self.row_ptr, self.cols_csr, self.tgt
        src = torch.repeat_interleave(self.start - row_ptr[:-1], self.lens, output_size=total)
        src += torch.arange(total, device=dev)
        src.clamp_(0, max(cols_csr.numel() - 1, 0))  # past a CSR row's end: overwritten by its negatives
        dest = torch.where(self.ok, (row_ptr[:-1] + self.deg)[:, None] + torch.arange(n_neg, device=dev),
                           total).reshape(-1)
        cols = torch.empty(total + 1, dtype=torch.long, device=dev)
        target = torch.empty(total + 1, dtype=tgt.dtype, device=dev)
        positive = torch.ones(total + 1, dtype=torch.bool, device=dev)
        if cols_csr.numel():
            cols[:total] = cols_csr.index_select(0, src)
            target[:total] = tgt.index_select(0, src)
        cols[dest] = self.neg.reshape(-1)
        target[dest] = 0
        positive[dest] = False
        return AdjRows(self.r, row_ptr, cols[:total], target[:total], positive[:total])


def _expand_numpy(ptr: np.ndarray, cols_csr: np.ndarray, tgt: np.ndarray, r: np.ndarray,
                  neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """:meth:`CompactRows.expand`'s arithmetic in numpy: (rows, row_ptr, cols, target, positive)."""
    m, n_neg = neg.shape
    real = r >= 0
    rr = np.where(real, r, 0)
    start = ptr[rr]
    deg = np.where(real, ptr[rr + 1] - start, 0)
    ok = neg >= 0
    ok &= real[:, None]
    lens = deg + np.count_nonzero(ok, axis=1)
    row_ptr = np.zeros(m + 1, np.int64)
    np.cumsum(lens, out=row_ptr[1:])
    total = int(row_ptr[-1])
    src = np.repeat(start - row_ptr[:-1], lens)
    src += np.arange(total)
    dest = ((row_ptr[:-1] + deg)[:, None] + np.arange(n_neg))[ok]
    if len(cols_csr):  # "clip": entries past a CSR row's end are overwritten by its negatives below
        cols, target = cols_csr.take(src, mode="clip"), tgt.take(src, mode="clip")
    else:
        cols, target = np.empty(total, cols_csr.dtype), np.empty(total, tgt.dtype)
    cols[dest] = neg[ok]
    target[dest] = 0
    positive = np.ones(total, bool)
    positive[dest] = False
    return r, row_ptr, cols, target, positive


@dataclass
class StepRows(_Tensors):
    """Every adjacency graph's rows of one step as shipped: a read-only mapping graph ->
    :class:`CompactRows` (views, no copies). Two tensors whatever the number of graphs: ``rows``
    and ``packed``, row ``i`` of each is graph ``graphs[i]``; ``packed[i]`` holds its negatives
    exactly as stored (``pipeline.precompute.adjacency.NegativePacking``: the low bytes ``R x M'``,
    then the high bits), often a view of the store's file mapped in memory."""

    rows: torch.Tensor  # int16/int32 [T, R]: gene of each row, -1 = padding
    packed: torch.Tensor  # uint8 [T, P]: each graph's packed negatives
    graphs: tuple[str, ...] = ()
    n_neg: int = 0  # M: negatives per row
    bits: int = 8

    def _compact(self, i: int) -> CompactRows:
        lo = self.rows.shape[1] * (-(-self.n_neg // 8) * 8)
        p = self.packed[i]
        return CompactRows(self.rows[i], p[:lo], p[lo:], n_neg=self.n_neg, bits=self.bits)

    def __getitem__(self, graph: str) -> CompactRows:
        if graph not in self.graphs:
            raise KeyError(graph)
        return self._compact(self.graphs.index(graph))

    def __iter__(self) -> Any:
        return iter(self.graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    def keys(self) -> list[str]:
        return list(self.graphs)

    def values(self) -> list[CompactRows]:
        return [self._compact(i) for i in range(len(self.graphs))]

    def items(self) -> list[tuple[str, CompactRows]]:
        return [(t, self._compact(i)) for i, t in enumerate(self.graphs)]


@dataclass
class TransformerBatch(IndexBatch):
    """M(S) + this step's adjacency rows of every graph in compact form (:class:`StepRows`, a mapping
    graph -> :class:`CompactRows`): expand them with :meth:`adjacency` on the device, from ``static``
    (``ds.static()``)."""

    rows: StepRows = None  # type: ignore[assignment]

    def adjacency(self, static: GraphStatic) -> dict[str, AdjRows]:
        """The expanded rows of every graph, on ``static``'s device (see :meth:`CompactRows.expand`). Off the
        CPU, with one host sync for the step (every graph's output length at once), not one per graph."""
        if static.base.device.type == "cpu":
            return {t: c.expand(static, t) for t, c in self.rows.items()}
        return self.adjacency_torch(static)

    def adjacency_torch(self, static: GraphStatic) -> dict[str, AdjRows]:
        """:meth:`adjacency` through the torch ops a GPU runs, on any device (for tests on the CPU)."""
        plans = {t: c._plan(static, t) for t, c in self.rows.items()}
        totals = torch.stack([p.row_ptr[-1] for p in plans.values()]).tolist() if plans else []
        return {t: p.finish(n) for (t, p), n in zip(plans.items(), totals, strict=True)}
