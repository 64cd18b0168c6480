"""``transformer``: the planned model y = g(F(G), S): the encoder runs ONCE per step on the wild type.

- Tokens ``X = (x_CLS, x_1..x_N)``, ``x_i`` = :class:`~trainers.models.common.GeneTokens` (learned
  identity + features; no positional encoding: an added gene is one more token).
  ``H = F(X) = (h_CLS, h_1..h_N)``: ``layers`` pre-norm blocks, computed once per step for the
  whole batch (a step costs one encoder pass, not B).
- Perturbation head, per sample S (M(S) = ``pert_genes``, ``pert_types``)::

      q_S    = mean{h_i : i in S}
      s_i    = q_S^T W h_i / sqrt(d)            over all genes i
      beta   = softmax(s)
      z_S    = sum_i beta_i phi(h_i, m_i(S))     phi = MLP([h_i || onehot(m_i(S))])
      y      = MLP([h_CLS || z_S])

  ``m_i(S)``: :data:`~trainers.models.common.N_STATES` states: 0 wild type, 1..6 the type code of
  i in S (deletion, ts, knockdown, overexpression, addition, suppressor), 7 absent (an added gene
  not in S). Only the members of S differ from the default state, so ``z_S = beta @ phi(H, default)
  + sum_{i in S} beta_i (phi(h_i, m_i) - phi(h_i, default))``: one [B, N] x [N, d] product per step.
- Graph-regularised heads: ``reg_heads = {graph: (layer, head)}`` (default: the stream's adjacency
  graphs dealt to distinct (layer, head) pairs, heads first). For graph k, the row-wise
  ``KL(A~_i || alpha_i)`` (:func:`~trainers.models.common.graph_reg_loss`) over the step's sampled
  rows only, from ``q_rows K^T`` of that head, so every head's attention itself runs fused
  (``F.scaled_dot_product_attention``). Validity mask R^(k): rows of added genes are dropped,
  and alpha is the softmax over the CLS and genome genes only (an entry involving an added gene
  never counts). Total loss = label MSE + sum_k lambda_k L_graph^(k) (``reg_weight``: lambda, one
  value or per graph).
- ``hard_mask=True``: each regularised head attends only along its graph's symmetrised adjacency
  plus self-loops (and the CLS token, both ways), through a boolean attention mask given to
  ``scaled_dot_product_attention`` (the other heads of the layer stay unmasked); the KL then
  runs over the same support. torch 2.13 also has ``flex_attention`` with block masks, but on
  the CPU without ``torch.compile`` it runs unfused (it warns and materialises the scores), so
  the dense boolean mask is used: N+1 x N+1 bools per hard head (44 MB at 6,607 genes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.stream.batches import AdjRows, GraphStatic, TransformerBatch, owner
from trainers.models.common import (
    N_STATES,
    GeneTokens,
    StaticBuffers,
    default_states,
    graph_reg_loss,
    label_loss,
    mlp,
    segment_mean,
)


class Block(nn.Module):
    """Pre-norm self-attention + feed-forward; returns the queries and keys (for the regularised heads)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d {d} is not a multiple of heads {heads}")
        self.heads, self.dh = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = mlp(d, 2 * d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # fused where available
        x = x + self.out(att.transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.ln2(x)), q, k


def default_reg_heads(graphs: list[str], layers: int, heads: int) -> dict[str, tuple[int, int]]:
    """Graph i -> (layer i // heads, head i % heads); ValueError if there are more graphs than heads.

    >>> default_reg_heads(["a", "b", "c"], layers=2, heads=2)
    {'a': (0, 0), 'b': (0, 1), 'c': (1, 0)}
    """
    if len(graphs) > layers * heads:
        raise ValueError(f"{len(graphs)} regularised graphs need {len(graphs)} heads; the model has "
                         f"{layers} x {heads}: pass reg_heads or fewer adjacency graphs")
    return {g: (i // heads, i % heads) for i, g in enumerate(graphs)}


class PerturbationTransformer(nn.Module):
    stream_format = "transformer"

    def __init__(self, static: GraphStatic, n_labels: int, d: int = 64, heads: int = 4, layers: int = 2,
                 reg_heads: dict[str, tuple[int, int]] | None = None, reg_weight: float | dict[str, float] = 0.1,
                 hard_mask: bool = False) -> None:
        super().__init__()
        self.graph = StaticBuffers(static, edge_types=[], adjacency=True)
        graphs = self.graph.adj_graphs
        self.reg_heads = dict(default_reg_heads(graphs, layers, heads) if reg_heads is None else reg_heads)
        for g, (layer, head) in self.reg_heads.items():
            if g not in graphs or not (0 <= layer < layers and 0 <= head < heads):
                raise ValueError(f"reg_heads[{g!r}] = {(layer, head)}: need a graph of {graphs} and "
                                 f"0 <= layer < {layers}, 0 <= head < {heads}")
        if len(set(self.reg_heads.values())) < len(self.reg_heads):
            raise ValueError(f"reg_heads {self.reg_heads}: two graphs on one head")
        self.reg_weight = {g: float(reg_weight[g] if isinstance(reg_weight, dict) else reg_weight)
                           for g in self.reg_heads}
        self.hard_mask, self.heads = bool(hard_mask), heads
        self.tokens = GeneTokens(static.gene_x, d)
        self.cls = nn.Parameter(torch.randn(1, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.w = nn.Linear(d, d, bias=False)
        self.phi = mlp(d + N_STATES, d, d)
        self.head = mlp(2 * d, d, n_labels)
        keys = torch.cat([torch.ones(1, dtype=torch.bool), static.valid])  # CLS + genome genes: R^(k)
        self.register_buffer("key_valid", keys, persistent=False)
        self.register_buffer("default_state", default_states(static.base), persistent=False)
        if self.hard_mask:
            for g in self.reg_heads:
                self.register_buffer(f"hard_{g}", self._support(static, g), persistent=False)

    @staticmethod
    def _support(static: GraphStatic, graph: str) -> torch.Tensor:
        """bool [N+1, N+1]: the symmetrised adjacency of ``graph`` + self-loops, and the CLS row and column."""
        n = static.n_genes
        ptr, cols = static.adj_ptr[graph], static.adj_cols[graph]
        rows = owner(ptr)
        m = torch.zeros(n + 1, n + 1, dtype=torch.bool)
        m[rows + 1, cols + 1] = True
        m |= m.clone().T
        m |= torch.eye(n + 1, dtype=torch.bool)
        m[0, :] = m[:, 0] = True
        return m

    def _layer_mask(self, layer: int) -> torch.Tensor | None:
        hard = [(g, h) for g, (lay, h) in self.reg_heads.items() if lay == layer] if self.hard_mask else []
        if not hard:
            return None
        n = self.key_valid.numel()
        mask = torch.ones(1, self.heads, n, n, dtype=torch.bool, device=self.key_valid.device)
        for g, h in hard:
            mask[0, h] = getattr(self, f"hard_{g}")
        return mask

    def encode(self) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """H = F(X) [N+1, d] (row 0 = CLS), and per layer its (q, k) [1, heads, N+1, dh]. Once per step."""
        x = torch.cat([self.cls, self.tokens()]).unsqueeze(0)
        qk = {}
        for i, blk in enumerate(self.blocks):
            x, q, k = blk(x, self._layer_mask(i))
            qk[i] = (q, k)
        return x[0], qk

    def predict(self, h: torch.Tensor, batch: TransformerBatch) -> torch.Tensor:
        """y [B, L] from the encoded tokens ``h`` [N+1, d] and M(S) (module docstring)."""
        hc, hg = h[0], h[1:]
        ptr, genes = batch.pert_ptr, batch.pert_genes
        rows = owner(ptr)
        q = segment_mean(hg[genes], ptr)  # q_S [B, d]
        s = q @ self.w(hg).T / math.sqrt(hg.shape[1])  # [B, N]
        beta = torch.softmax(s.float(), dim=1).to(hg.dtype)
        onehot = F.one_hot(self.default_state, N_STATES).to(hg.dtype)
        p0 = self.phi(torch.cat([hg, onehot], dim=1))  # phi(h_i, default state) [N, d]
        z = beta @ p0
        mine = F.one_hot(batch.pert_types.clamp(0, N_STATES - 1), N_STATES).to(hg.dtype)
        delta = self.phi(torch.cat([hg[genes], mine], dim=1)) - p0[genes]  # members of S: their own state
        z = z.index_add(0, rows, (beta[rows, genes].unsqueeze(1) * delta).to(z.dtype))  # one dtype under autocast
        return self.head(torch.cat([hc.expand(len(z), -1), z], dim=1))

    def forward(self, batch: TransformerBatch) -> torch.Tensor:
        return self.predict(self.encode()[0], batch)

    def graph_losses(self, qk: dict[int, tuple[torch.Tensor, torch.Tensor]],
                     adj: dict[str, AdjRows]) -> dict[str, torch.Tensor]:
        """L_graph^(k) of each regularised graph present in ``adj`` (the step's sampled rows)."""
        out = {}
        for g, (layer, head) in self.reg_heads.items():
            if g not in adj:
                continue
            a = adj[g]
            ok = a.rows >= 0
            ok[ok.clone()] = self.graph.valid[a.rows[ok]]  # R^(k): rows of added genes never count
            a = AdjRows(torch.where(ok, a.rows, -1), a.row_ptr, a.cols, a.target, a.positive)
            q, k = qk[layer]
            km = self.key_valid
            if self.hard_mask:
                km = getattr(self, f"hard_{g}")[a.rows.clamp(min=0) + 1] & self.key_valid
            out[g] = graph_reg_loss(q[:, head], k[:, head], a, km)
        return out

    def loss(self, batch: TransformerBatch) -> dict[str, torch.Tensor]:
        h, qk = self.encode()
        pred = self.predict(h, batch)
        label = label_loss(pred, batch)
        parts = {f"graph/{g}": v for g, v in self.graph_losses(qk, batch.adjacency(self.graph.static())).items()}
        total = label + sum((self.reg_weight[k.split("/", 1)[1]] * v.float() for k, v in parts.items()),
                            label.new_zeros(()))
        return {"loss": total, "label": label, **parts, "pred": pred}

    def gene_embeddings(self) -> torch.Tensor:
        """The encoder's gene tokens H[1:] of the genome genes [N, d]."""
        return self.encode()[0][1:][self.graph.valid]
