"""``index``: a DANGO-style model on the perturbed genes only (no graph at step time).

Each perturbed gene i of S is ``e_i = token_i + type_emb(m_i)`` (:class:`~trainers.models.common.GeneTokens`:
learned identity + features). The set aggregator is ``attention`` (default: one multi-head
self-attention layer over the members of S, a small hypergraph-attention layer: every member
attends to the others, then mean) or ``mean`` / ``sum`` of the e_i; an MLP maps the pooled vector
to the labels. Reads :class:`~pipeline.stream.batches.IndexBatch` (``pert_ptr``, ``pert_genes``,
``pert_types``).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.stream.batches import GraphStatic, IndexBatch, owner
from trainers.models.common import N_STATES, GeneTokens, label_loss, mlp, segment_mean

AGGREGATORS = ("attention", "mean", "sum")


class IndexModel(nn.Module):
    stream_format = "index"

    def __init__(self, static: GraphStatic, n_labels: int, d: int = 64, heads: int = 4,
                 aggregator: str = "attention") -> None:
        super().__init__()
        if aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator {aggregator!r}: expected one of {', '.join(AGGREGATORS)}")
        self.aggregator = aggregator
        self.tokens = GeneTokens(static.gene_x, d)
        self.register_buffer("valid", static.valid, persistent=False)
        self.state = nn.Embedding(N_STATES, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True) if aggregator == "attention" else None
        self.norm = nn.LayerNorm(d)
        self.head = mlp(d, d, n_labels)

    def members(self, batch: IndexBatch) -> torch.Tensor:
        """e_i of every perturbed gene [P, d] (CSR order of ``batch.pert_genes``)."""
        return self.tokens()[batch.pert_genes] + self.state(batch.pert_types.clamp(0, N_STATES - 1))

    def forward(self, batch: IndexBatch) -> torch.Tensor:
        e = self.members(batch)
        ptr = batch.pert_ptr
        if self.aggregator == "sum":
            pooled = segment_mean(e, ptr) * ptr.diff().unsqueeze(1).to(e.dtype)
        elif self.aggregator == "mean":
            pooled = segment_mean(e, ptr)
        else:  # pad S to [B, K] (K = the largest set), attend within each set, mean over members
            b = len(ptr) - 1
            row = owner(ptr)
            pos = torch.arange(len(e), device=e.device) - ptr[row]
            k = int(ptr.diff().max()) if b else 1
            dense = e.new_zeros(b, max(k, 1), e.shape[1])
            dense[row, pos] = e
            pad = torch.ones(b, max(k, 1), dtype=torch.bool, device=e.device)
            pad[row, pos] = False
            pad[:, 0] = False  # an empty set still has one (zero) slot to attend to
            att, _ = self.attn(dense, dense, dense, key_padding_mask=pad, need_weights=False)
            pooled = segment_mean((dense + att)[row, pos], ptr)
        return self.head(self.norm(pooled))

    def loss(self, batch: IndexBatch) -> dict[str, torch.Tensor]:
        pred = self(batch)
        label = label_loss(pred, batch)
        return {"loss": label, "label": label, "pred": pred}

    def gene_embeddings(self) -> torch.Tensor:
        """The genome genes' input embeddings [N, d] (what the set aggregator reads)."""
        return self.tokens()[self.valid]
