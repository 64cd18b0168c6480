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

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import torch

B = TypeVar("B", bound="_Tensors")


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
            out[f.name] = v
        return type(self)(**out)

    def packed(self: B) -> B:
        """The same batch with every tensor a view into ONE uint8 storage.

        A DataLoader worker sends a batch to the main process storage by storage (one
        shared-memory handle each); one storage instead of ~8 makes that ~4x cheaper.
        """
        tensors: list[torch.Tensor] = []
        self._map(lambda t: tensors.append(t) or t)
        offs, total = [], 0
        for t in tensors:
            offs.append(total)
            total += -(-t.numel() * t.element_size() // 8) * 8  # 8-byte aligned views
        buf = torch.empty(total, dtype=torch.uint8)
        views = []
        for t, off in zip(tensors, offs):
            v = buf[off:off + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
            v.copy_(t)
            views.append(v)
        it = iter(views)
        return self._map(lambda t: next(it))

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
    """Sampled adjacency rows of one graph for one step (``pipeline.precompute.adjacency.expand_rows``)."""

    rows: torch.Tensor  # int64 [R]: gene of each row, -1 = padding
    row_ptr: torch.Tensor  # int64 [R+1]
    cols: torch.Tensor  # int64 [nnz]
    target: torch.Tensor  # float32 [nnz]: A_ij / (d_i + eps) for positives, 0 for negatives
    positive: torch.Tensor  # bool [nnz]


@dataclass
class TransformerBatch(IndexBatch):
    adjacency: dict[str, AdjRows] = field(default_factory=dict)
