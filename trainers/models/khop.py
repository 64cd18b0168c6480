"""``khop``: message passing on each sample's k-hop induced subgraph (the ``khop`` format; k as built).

The B subgraphs are one disjoint union (nodes = the sample's k-hop set of the perturbed genes,
edges = every edge type's edges with both ends in the set). Node u (gene ``n_id[u]`` of sample
``b``) starts at ``token + state_emb(m(S))``: the perturbed genes carry their perturbation type,
and ``layers`` rounds of::

    h_u <- relu( W_self h_u + sum_t W_t ( sum_{v -> u in the subgraph} h_v ) / d_t(n_id[u]) )

(``d_t``: wild-type in-degree, at least 1) spread it, so a gene next to two perturbed genes
holds both signals. Readout: ``y_b = MLP([LayerNorm(sum_{u in b} g(h_u)) || mean_{u in S} h_u])``.

- :meth:`KHopGNN.forward` reads a :class:`~pipeline.stream.batches.KHopBatch` (bit-packed node
  sets, expanded and relabelled on the device, vectorised over the batch);
- :meth:`KHopGNN.forward_hetero` reads research-code batches: per sample a ``HeteroData``
  from ``torch_geometric.utils.k_hop_subgraph`` (relabelled), batched with ``Batch.from_data_list``.
  Fields read: ``data["gene"].n_id`` int64 [M] (the subgraph's genes in the build's index:
  k_hop_subgraph's ``subset``), ``data["gene"].batch``, ``data.num_graphs``,
  ``data["gene"].pert_state`` or ``pert_type`` int64 [M] (m(S): 0 = unperturbed, else the type
  code; optional: 0),
  ``data["gene", t, "gene"].edge_index`` for each of the model's edge types (relabelled, offset
  by ``Batch``). ``x`` is not read.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.stream.batches import KHopBatch, owner
from trainers.models.common import (
    N_STATES,
    TypedGNN,
    pert_states,
    segment_mean,
    segment_sum,
)


class KHopGNN(TypedGNN):
    stream_format = "khop"

    def union(self, n_id: torch.Tensor, batch: torch.Tensor, pert: torch.Tensor, b: int,
              edges: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Predictions [b, L] from a disjoint union: node genes ``n_id`` [M], sample ``batch`` [M] (sorted),
        states ``pert`` [M], per edge type (src, dst) node indices."""
        tok = self.tokens()
        is_pert = pert > 0
        h = tok[n_id] + torch.where(is_pert.unsqueeze(-1), self.state(pert.clamp(0, N_STATES - 1)), 0.0)
        h = self.propagate(h, n_id, edges)
        pooled = segment_sum(self.readout(h), batch, b)
        p_ptr = torch.cat([batch.new_zeros(1), torch.bincount(batch[is_pert], minlength=b).cumsum(0)])
        s = segment_mean(h[is_pert], p_ptr)
        return self.head(torch.cat([self.norm(pooled), s], dim=1))

    def propagate(self, h: torch.Tensor, n_id: torch.Tensor, edges: list[tuple[torch.Tensor, torch.Tensor]]
                  ) -> torch.Tensor:
        """The ``layers`` rounds of message passing over a union's edges (node states ``h`` [M, d])."""
        m = n_id.numel()
        for self_w, msg_w in zip(self.self_w, self.msg_w, strict=True):
            out = self_w(h)
            for i, (src, dst) in enumerate(edges):
                agg = segment_sum(h[src], dst, m) / self._deg(i)[n_id].unsqueeze(-1).to(h.dtype)
                out = out + msg_w[i](agg)
            h = torch.relu(out)
        return h

    def forward(self, batch: KHopBatch) -> torch.Tensor:
        st = self.graph.static()
        sets = batch.node_sets(st.n_genes)
        rows, genes = owner(batch.pert_ptr), batch.pert_genes
        sets[rows, genes] = True  # the perturbed genes are in their own k-hop set (made sure)
        b, g = sets.nonzero(as_tuple=True)
        new = torch.full(sets.shape, -1, dtype=torch.long, device=sets.device)
        new[b, g] = torch.arange(len(g), device=sets.device)
        pert = torch.zeros_like(g)
        pert[new[rows, genes]] = batch.pert_types.clamp(0, N_STATES - 1)
        edges = []
        for t in self.types:
            src, dst = st.edge_index[t]
            er, e = (sets[:, src] & sets[:, dst]).nonzero(as_tuple=True)
            edges.append((new[er, src[e]], new[er, dst[e]]))
        return self.union(g, b, pert, len(batch), edges)

    def forward_hetero(self, data: Any) -> torch.Tensor:
        """The same function on a PyG ``Batch`` of per-sample k-hop ``HeteroData`` (fields: module docstring)."""
        gd = data["gene"]
        pert = pert_states(gd, gd.n_id)
        edges = [tuple(data["gene", t, "gene"].edge_index) for t in self.types]
        return self.union(gd.n_id, gd.batch, pert, int(data.num_graphs), edges)

    def gene_embeddings(self) -> torch.Tensor:
        """Final states of every genome gene on the whole wild-type graph (one union of 1 sample) [N, d]."""
        st = self.graph.static()
        n_id = torch.arange(st.n_genes, device=st.base.device)
        edges = [tuple(st.edge_index[t]) for t in self.types]
        return self.propagate(self.tokens(), n_id, edges)[st.base]
