"""``lazy``: message passing over the FULL multigraph for every sample, with the sample's node and
edge masks expanded on the device (the research report's "Lazy" baseline).

Per sample b, gene i starts at ``h0_i = token_i + state_emb(m_i(S))`` and each of ``layers``
rounds computes, over the edge types t (edges kept in sample b: both ends present)::

    h_i <- relu( W_self h_i + sum_t W_t ( sum_{j -> i kept} h_j ) / d_t(i) ) * present_b(i)

with ``d_t(i)`` the WILD-TYPE in-degree of i in t (at least 1): a gene that lost neighbours
receives less, so the shared neighbourhood of the removed genes is visible. Readout::

    pooled_b = sum_i present_b(i) g(h_i^(b)) - sum_i g(h_i^(wt))      (the perturbation's effect)
    y_b = MLP([LayerNorm(pooled_b) || mean_{i in S} h0_i])

where ``wt`` is the wild-type graph run in the same pass (one extra sample per step).

Two entry points compute the same function with the same parameters:

- :meth:`LazyGNN.forward` reads a :class:`~pipeline.stream.batches.GraphBatch` and works on dense
  [B+1, N, d] states over the static edge lists (no per-sample edge copies);
- :meth:`LazyGNN.forward_hetero` reads what research code builds per sample and batches with
  ``torch_geometric.data.Batch.from_data_list``: one ``HeteroData`` per sample, the full graph,
  concatenated. Fields read (``M`` = total nodes, ``E_t`` = total edges of type t):

  * ``data["gene"].node_mask``: bool [M], True where the gene is present in the strain;
  * ``data["gene"].batch``: int64 [M] (set by ``Batch``); ``data.num_graphs``;
  * ``data["gene"].n_id``: int64 [M], the gene's index in the build (optional: the node's
    position in its sample, ``arange(M) - ptr[batch]``, as for a full-graph sample);
  * ``data["gene"].pert_state`` (or ``pert_type``): int64 [M], m_i(S) (0 = wild type / not
    perturbed, 1..6 the type code; optional: 0 everywhere);
  * ``data["gene", t, "gene"].edge_index``: int64 [2, E_t] for each of the model's edge types
    (offset per sample by ``Batch``), and optionally ``.edge_mask`` bool [E_t] (default: both
    ends present). ``x`` is not read: node inputs are the model's own tokens of ``n_id``.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.stream.batches import GraphBatch, owner
from trainers.models.common import (
    N_STATES,
    TypedGNN,
    pert_states,
    segment_mean,
    segment_sum,
)


class LazyGNN(TypedGNN):
    stream_format = "graph"

    # --- the stream: dense [B+1, N, d] ------------------------------------------------------------
    def _dense(self, h: torch.Tensor, present: torch.Tensor, keep: list[torch.Tensor]) -> torch.Tensor:
        """Final states [B', N, d] from inputs ``h`` [B', N, d], ``present`` [B', N], edge masks per type."""
        st = self.graph.static()
        pm = present.unsqueeze(-1).to(h.dtype)
        h = h * pm
        for self_w, msg_w in zip(self.self_w, self.msg_w, strict=True):
            out = self_w(h)
            for i, t in enumerate(self.types):
                src, dst = st.edge_index[t]
                m = h[:, src] * keep[i].unsqueeze(-1).to(h.dtype)
                agg = torch.zeros_like(h).index_add_(1, dst, m) / self._deg(i).unsqueeze(-1).to(h.dtype)
                out = out + msg_w[i](agg)
            h = torch.relu(out) * pm
        return h

    def _wild_type(self, h0: torch.Tensor) -> torch.Tensor:
        """sum_i g(h_i) of the wild-type graph [d] (every genome gene present, every edge kept)."""
        st = self.graph.static()
        keep = [torch.ones(1, st.edge_index[t].shape[1], dtype=torch.bool, device=h0.device) for t in self.types]
        h = self._dense(h0.unsqueeze(0), st.base.unsqueeze(0), keep)[0]
        return (self.readout(h) * st.base.unsqueeze(-1).to(h.dtype)).sum(0)

    def _head(self, pooled: torch.Tensor, wt: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.norm(pooled - wt), s], dim=1))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        st = self.graph.static()
        tok = self.tokens()
        b = len(batch)
        rows = owner(batch.pert_ptr)
        state = self.state(batch.pert_types.clamp(0, N_STATES - 1))
        h0 = tok.unsqueeze(0).repeat(b, 1, 1)
        h0[rows, batch.pert_genes] += state  # M(S) on the inputs, vectorised (a gene twice: both states)
        present = batch.node_mask(st)
        em = batch.edge_masks(st, self.types)
        h = self._dense(h0, present, [em[t] for t in self.types])
        pooled = (self.readout(h) * present.unsqueeze(-1).to(h.dtype)).sum(1)
        s = segment_mean(tok[batch.pert_genes] + state, batch.pert_ptr)
        return self._head(pooled, self._wild_type(tok), s)

    # --- research-code batches: one HeteroData per sample, concatenated -----------------------------
    def forward_hetero(self, data: Any) -> torch.Tensor:
        """The same function on a PyG ``Batch`` of per-sample full-graph ``HeteroData`` (fields: module docstring)."""
        g = data["gene"]
        present = g.node_mask.bool()
        batch = g.batch
        b = int(data.num_graphs)
        m = present.numel()
        ptr = torch.cat([batch.new_zeros(1), torch.bincount(batch, minlength=b).cumsum(0)])
        n_id = g.n_id if "n_id" in g else torch.arange(m, device=batch.device) - ptr[batch]
        pert = pert_states(g, n_id)
        tok = self.tokens()
        is_pert = pert > 0
        h = tok[n_id] + torch.where(is_pert.unsqueeze(-1), self.state(pert.clamp(0, N_STATES - 1)), 0.0)
        pm = present.unsqueeze(-1).to(h.dtype)
        h = h * pm
        edges = []
        for t in self.types:
            e = data["gene", t, "gene"]
            src, dst = e.edge_index
            keep = e.edge_mask.bool() if "edge_mask" in e else present[src] & present[dst]
            edges.append((src, dst, keep))
        for self_w, msg_w in zip(self.self_w, self.msg_w, strict=True):
            out = self_w(h)
            for i, (src, dst, keep) in enumerate(edges):
                agg = segment_sum(h[src] * keep.unsqueeze(-1).to(h.dtype), dst, m)
                out = out + msg_w[i](agg / self._deg(i)[n_id].unsqueeze(-1).to(h.dtype))
            h = torch.relu(out) * pm
        pooled = segment_sum(self.readout(h) * pm, batch, b)
        p_ptr = torch.cat([batch.new_zeros(1), torch.bincount(batch[is_pert], minlength=b).cumsum(0)])
        s = segment_mean(tok[n_id[is_pert]] + self.state(pert[is_pert].clamp(0, N_STATES - 1)), p_ptr)
        return self._head(pooled, self._wild_type(tok), s)

    def gene_embeddings(self) -> torch.Tensor:
        """The wild-type graph's final gene states [N, d] (the oversmoothing panels' embeddings)."""
        st = self.graph.static()
        keep = [torch.ones(1, st.edge_index[t].shape[1], dtype=torch.bool, device=st.base.device) for t in self.types]
        return self._dense(self.tokens().unsqueeze(0), st.base.unsqueeze(0), keep)[0][st.base]
