"""Pieces shared by the reference models: segment pooling, the label loss, the graph-regularisation KL,
the gene tokens, and the static graph kept as (non-persistent) buffers so ``model.to(device)`` moves it.

Every model of :data:`trainers.models.MODELS` is an ``nn.Module`` with

- ``stream_format``: the :class:`~pipeline.stream.dataset.PerturbationStream` format it reads;
- ``__init__(static: GraphStatic, n_labels: int, **hyperparameters)``;
- ``forward(batch) -> pred`` [B, n_labels] (the batch on the model's device);
- ``loss(batch) -> {"loss": total, "label": masked MSE, ...scalar components, "pred": [B, L]}``
  (one forward pass gives the loss and the predictions the epoch metrics need): padded samples
  (``batch.pad``) and unmeasured labels (``~batch.y_mask``) count nothing;
- ``gene_embeddings() -> [N, d]``: the embeddings the feature-collapse monitor reads
  (:func:`trainers.metrics.collapse`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pipeline.stream.batches import AdjRows, GraphStatic, IndexBatch, owner

#: Perturbation states of a gene in a strain: 0 = wild type (present, unperturbed), 1..6 = the
#: dataset's type codes (``pipeline.core.perturbations.CODES``), 7 = absent (an added gene not in S).
N_STATES = 8
ABSENT = 7


def segment_mean(values: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [P, d] over the CSR segments ``ptr`` [B+1] -> [B, d] (empty segments: 0)."""
    out = torch.zeros(len(ptr) - 1, values.shape[1], device=values.device, dtype=values.dtype)
    out.index_add_(0, owner(ptr), values)
    return out / ptr.diff().clamp(min=1).unsqueeze(1).to(values.dtype)


def segment_sum(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Sum of rows of ``values`` [P, d] by ``index`` [P] into ``n`` rows."""
    return torch.zeros(n, values.shape[1], device=values.device, dtype=values.dtype).index_add_(0, index, values)


def masked_mse(pred: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the measured labels only."""
    m = y_mask.to(pred.dtype)
    return ((pred - y) ** 2 * m).sum() / m.sum().clamp(min=1)


def label_loss(pred: torch.Tensor, batch: IndexBatch) -> torch.Tensor:
    """:func:`masked_mse` over the real samples' measured labels (padding repeats excluded), in float32."""
    return masked_mse(pred.float(), batch.y, batch.y_mask & batch.valid.unsqueeze(1))


def graph_reg_loss(q: torch.Tensor, k: torch.Tensor, adj: AdjRows, key_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Row-wise KL(target || attention) of one head over the sampled rows, averaged over rows and batch.

    ``q``, ``k``: [B, N+1, dh] queries and keys of the head (token 0 is CLS, gene g is g+1).
    Standard formulation: KL(A_tilde[i, :] || alpha[i, :]) = sum_j t_ij (log t_ij - log alpha_ij)
    over the row's listed columns, alpha the softmax over ALL keys (not renormalised over
    the listed columns). Negatives have t = 0 and add no term, but attention mass on them
    (or on any other token) lowers alpha on the positives and so raises the loss; that is
    how negatives matter, and no extra term is added. ``log_softmax`` stands in for the
    reference code's ``log(alpha + 1e-8)`` (same value away from 0, stable). Rows with
    gene -1 (padding) and their entries are ignored; the mean runs over real rows and batch.

    ``key_mask`` (bool [N+1] or [R, N+1], R the rows): keys a row may attend to; alpha is the
    softmax over those only (the validity mask R^(k) that drops added genes, or the hard-mask
    variant's adjacency). Entries on masked keys are dropped. Only ``q[:, rows] @ k^T`` is formed.
    """
    valid = adj.rows >= 0
    n_rows = int(valid.sum())
    if n_rows == 0:
        return q.new_zeros(())
    slot = torch.cumsum(valid, 0) - 1  # row slot -> index among the real rows
    row = owner(adj.row_ptr)  # row slot of every entry
    keep = valid[row]  # entries of padded rows (empty in the stream's batches) are ignored all the same
    logits = q[:, adj.rows[valid] + 1] @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # [B, R, N+1]: sampled rows only
    if key_mask is not None:
        km = key_mask if key_mask.dim() == 1 else key_mask[valid]
        logits = logits.masked_fill(~km, float("-inf"))
        col_ok = km[slot[row], adj.cols + 1] if km.dim() == 2 else km[adj.cols + 1]
        keep = keep & col_ok
    logp = torch.log_softmax(logits.float(), dim=-1)
    t = adj.target[keep]
    lp = logp[:, slot[row[keep]], adj.cols[keep].long() + 1]  # [B, nnz]
    kl = torch.where(t > 0, t * (torch.log(t.clamp(min=1e-12)) - lp), torch.zeros_like(lp))
    return kl.sum(dim=1).mean() / n_rows


class GeneTokens(nn.Module):
    """The input embedding of every gene [N, d]: ``Linear(nan_to_num(gene_x)) + Embedding(gene)``
    (features, when the build has them, plus a learned identity; no positional encoding)."""

    def __init__(self, gene_x: torch.Tensor, d: int) -> None:
        super().__init__()
        x = torch.nan_to_num(gene_x.float())
        if x.shape[1]:  # standardised on the build's genes: features of very different scales
            x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
        self.register_buffer("x", x, persistent=False)
        self.inp = nn.Linear(x.shape[1], d) if x.shape[1] else None
        self.gene = nn.Embedding(x.shape[0], d)
        nn.init.normal_(self.gene.weight, std=0.1)

    def forward(self) -> torch.Tensor:
        return self.gene.weight if self.inp is None else self.gene.weight + self.inp(self.x)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class StaticBuffers(nn.Module):
    """A :class:`GraphStatic` held as non-persistent buffers (moved by ``.to``, not checkpointed:
    the graph comes from the build); :meth:`static` rebuilds the dataclass on the current device."""

    def __init__(self, static: GraphStatic, edge_types: list[str] | None = None, adjacency: bool = False) -> None:
        super().__init__()
        self.edge_types = list(static.edge_index) if edge_types is None else list(edge_types)
        self.adj_graphs = list(static.adj_ptr) if adjacency else []
        reg = self.register_buffer
        reg("base", static.base, persistent=False)
        reg("valid", static.valid, persistent=False)
        reg("gene_x", static.gene_x, persistent=False)
        for i, t in enumerate(self.edge_types):
            reg(f"ei{i}", static.edge_index[t], persistent=False)
            reg(f"ip{i}", static.inc_ptr[t], persistent=False)
            reg(f"ie{i}", static.inc_edges[t], persistent=False)
        for i, t in enumerate(self.adj_graphs):
            reg(f"ap{i}", static.adj_ptr[t], persistent=False)
            reg(f"ac{i}", static.adj_cols[t], persistent=False)
            reg(f"at{i}", static.adj_target[t], persistent=False)

    def static(self) -> GraphStatic:
        g: Any = lambda name: getattr(self, name)  # noqa: E731
        st = GraphStatic(self.base, self.valid, self.gene_x)
        for i, t in enumerate(self.edge_types):
            st.edge_index[t], st.inc_ptr[t], st.inc_edges[t] = g(f"ei{i}"), g(f"ip{i}"), g(f"ie{i}")
        for i, t in enumerate(self.adj_graphs):
            st.adj_ptr[t], st.adj_cols[t], st.adj_target[t] = g(f"ap{i}"), g(f"ac{i}"), g(f"at{i}")
        return st

    @property
    def n_genes(self) -> int:
        return int(self.base.numel())


def default_states(base: torch.Tensor) -> torch.Tensor:
    """int64 [N]: 0 for genome genes, :data:`ABSENT` for added genes (``~base``)."""
    return torch.where(base, 0, ABSENT).long()


def pert_states(store: Any, n_id: torch.Tensor) -> torch.Tensor:
    """m(S) per node of a research-code PyG node store: ``pert_state``, else ``pert_type`` (the same
    codes: 0 = not perturbed), else 0 everywhere."""
    for name in ("pert_state", "pert_type"):
        if name in store:
            return getattr(store, name).long()
    return torch.zeros_like(n_id)


class TypedGNN(nn.Module):
    """What the two message-passing models share: gene tokens, perturbation-state embeddings, per
    edge type a message weight and the wild-type in-degree (>= 1) that normalises it, a readout
    and a head over [pooled graph, perturbed genes]; and their loss (the labels' masked MSE)."""

    def __init__(self, static: GraphStatic, n_labels: int, d: int = 32, layers: int = 2,
                 edge_types: list[str] | None = None) -> None:
        super().__init__()
        self.graph = StaticBuffers(static, edge_types)
        self.types = self.graph.edge_types
        n = static.n_genes
        for i, t in enumerate(self.types):  # wild-type in-degree per type, >= 1
            deg = torch.bincount(static.edge_index[t][1], minlength=n).clamp(min=1).float()
            self.register_buffer(f"deg{i}", deg, persistent=False)
        self.tokens = GeneTokens(static.gene_x, d)
        self.state = nn.Embedding(N_STATES, d)
        self.self_w = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        self.msg_w = nn.ModuleList(nn.ModuleList(nn.Linear(d, d, bias=False) for _ in self.types)
                                   for _ in range(layers))
        self.readout = mlp(d, d, d)
        self.norm = nn.LayerNorm(d)
        self.head = mlp(2 * d, d, n_labels)

    def _deg(self, i: int) -> torch.Tensor:
        return getattr(self, f"deg{i}")

    def loss(self, batch: IndexBatch) -> dict[str, torch.Tensor]:
        pred = self(batch)
        label = label_loss(pred, batch)
        return {"loss": label, "label": label, "pred": pred}

