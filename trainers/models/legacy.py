"""The first two reference consumers (kept: ``tests/test_stream_models.py``; the issue-12 reference
models are :data:`trainers.models.MODELS`) of the stream's batch formats (they prove the formats are usable).

- :class:`GraphRegularisedTransformer`: gene tokens + CLS; selected (layer, head) pairs are
  regularised towards the sampled adjacency rows of a graph (row-wise KL); a perturbation
  head pools the perturbed genes' embeddings, cross-attends over all genes and reads out
  an MLP on [CLS, z_S, cross].
- :class:`MaskedGNN`: message passing over the full multigraph, per sample, with the dense
  node and edge masks expanded from a :class:`~pipeline.stream.batches.GraphBatch`.

Only device-agnostic tensor ops: the same code runs on a GPU. Attention is written out
(softmax(QK^T / sqrt(d))) so the regularised heads' rows are available; at the real N
(~6.6k genes) use a fused attention for the layers and compute only the sampled rows of
the regularised heads (``q[:, rows] @ k^T``), as :meth:`GraphRegularisedTransformer.forward`
does for the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.stream.batches import AdjRows, owner
from trainers.models.common import graph_reg_loss, segment_mean


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)  # fused where available
        x = x + self.out(att.transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.ln2(x)), q, k


class GraphRegularisedTransformer(nn.Module):
    """Gene tokens + CLS -> transformer -> perturbation head; see the module docstring."""

    def __init__(self, n_genes: int, d_in: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 n_labels: int = 1, n_types: int = 7, reg_heads: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.inp = nn.Linear(max(d_in, 1), d_model)
        self.gene = nn.Embedding(n_genes, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.ptype = nn.Embedding(n_types, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.cross = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(3 * d_model, d_model), nn.GELU(), nn.Linear(d_model, n_labels))
        self.reg_heads = dict(reg_heads or {})

    def forward(self, gene_x: torch.Tensor, pert_ptr: torch.Tensor, pert_genes: torch.Tensor,
                pert_types: torch.Tensor, adj: dict[str, AdjRows] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(pert_ptr) - 1
        x = gene_x if gene_x.shape[1] else gene_x.new_zeros(gene_x.shape[0], 1)
        tok = self.inp(torch.nan_to_num(x)) + self.gene.weight  # [N, d]
        h = torch.cat([self.cls.expand(b, 1, -1), tok.unsqueeze(0).expand(b, -1, -1)], dim=1).clone()
        sample = owner(pert_ptr)
        h.index_put_((sample, pert_genes + 1), self.ptype(pert_types), accumulate=True)  # M(S), vectorised
        reg = h.new_zeros(())
        for i, blk in enumerate(self.blocks):
            h, q, k = blk(h)
            for name, (layer, head) in self.reg_heads.items():
                if layer == i and adj is not None and name in adj:
                    reg = reg + graph_reg_loss(q[:, head], k[:, head], adj[name])
        genes_h = h[:, 1:]
        z = segment_mean(genes_h[sample, pert_genes], pert_ptr)  # pooled perturbed genes [B, d]
        cross, _ = self.cross(z.unsqueeze(1), genes_h, genes_h)
        return self.head(torch.cat([h[:, 0], z, cross[:, 0]], dim=1)), reg


class MaskedGNN(nn.Module):
    """Per-sample message passing over the full multigraph with node and edge masks."""

    def __init__(self, n_genes: int, d_in: int, edge_types: list[str], d_hidden: int = 32, n_layers: int = 2,
                 n_labels: int = 1) -> None:
        super().__init__()
        self.inp = nn.Linear(max(d_in, 1), d_hidden)
        self.gene = nn.Embedding(n_genes, d_hidden)
        self.types = list(edge_types)
        self.self_w = nn.ModuleList(nn.Linear(d_hidden, d_hidden) for _ in range(n_layers))
        self.msg_w = nn.ModuleList(nn.ModuleDict({t: nn.Linear(d_hidden, d_hidden, bias=False)
                                                  for t in self.types}) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(2 * d_hidden, d_hidden), nn.ReLU(), nn.Linear(d_hidden, n_labels))

    def tokens(self, gene_x: torch.Tensor) -> torch.Tensor:
        """Input embedding of every gene [N, d]: Linear(nan_to_num(gene_x)) + learned gene embedding."""
        x = gene_x if gene_x.shape[1] else gene_x.new_zeros(gene_x.shape[0], 1)
        return self.inp(torch.nan_to_num(x)) + self.gene.weight

    def embed(self, gene_x: torch.Tensor, edge_index: dict[str, torch.Tensor], node_mask: torch.Tensor,
              edge_masks: dict[str, torch.Tensor], h0: torch.Tensor | None = None) -> torch.Tensor:
        """Final gene embeddings per sample [B, N, d]; removed genes are 0 at every layer."""
        nm = node_mask.unsqueeze(-1).to(gene_x.dtype)  # [B, N, 1]
        h = (self.tokens(gene_x) if h0 is None else h0).unsqueeze(0) * nm
        for self_w, msg_w in zip(self.self_w, self.msg_w):
            out = self_w(h)
            for t in self.types:
                src, dst = edge_index[t]
                keep = edge_masks[t].unsqueeze(-1).to(h.dtype)  # [B, E, 1]
                m = msg_w[t](h)[:, src] * keep  # messages of every sample at once
                agg = torch.zeros_like(h).index_add_(1, dst, m)
                deg = torch.zeros(h.shape[0], h.shape[1], 1, device=h.device, dtype=h.dtype).index_add_(1, dst, keep)
                out = out + agg / deg.clamp(min=1)  # mean over kept in-edges of type t
            h = torch.relu(out) * nm
        return h

    def forward(self, gene_x: torch.Tensor, edge_index: dict[str, torch.Tensor], node_mask: torch.Tensor,
                edge_masks: dict[str, torch.Tensor], pert_ptr: torch.Tensor, pert_genes: torch.Tensor) -> torch.Tensor:
        h0 = self.tokens(gene_x)
        h = self.embed(gene_x, edge_index, node_mask, edge_masks, h0)
        nm = node_mask.unsqueeze(-1).to(h.dtype)
        present = h.sum(1) / nm.sum(1).clamp(min=1)  # mean over present genes (removed ones are 0)
        # a removed (deleted) gene's final embedding is 0, so its input token says which gene it was
        z = segment_mean(h[owner(pert_ptr), pert_genes] + h0[pert_genes], pert_ptr)
        return self.head(torch.cat([present, z], dim=1))
