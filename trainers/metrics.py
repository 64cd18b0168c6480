"""Epoch metrics of a training run: per-label Pearson and Spearman over the real samples, under the
research report's keys, and the feature-collapse monitor of the gene embeddings.

Keys: ``{split}/{label}/{metric}`` with the dataset's label columns renamed as the report names
them (:data:`REPORT_LABELS`: ``interaction`` -> ``gene_interaction``, ``fitness`` -> ``fitness``),
e.g. ``train/gene_interaction/Pearson``, ``val/fitness/Spearman``, plus ``{split}/loss`` and
``{split}/{label}/MSE``.

Feature collapse (the report's oversmoothing panels; LOW values = collapse), over the model's
``gene_embeddings()`` (at most ``max_genes`` rows, a fixed subset):

- ``collapse/cosine_distance``: mean pairwise cosine distance ``1 - cos(e_i, e_j)`` over i != j of
  the mean-centred embeddings (about 1 for spread-out embeddings, 0 when all point one way);
- ``collapse/effective_rank``: ``exp(entropy(sigma / sum sigma))`` of the centred embedding matrix's
  singular values (Roy & Vetterli 2007): between 1 (all on one line) and d;
- ``collapse/effective_rank_frac``: the effective rank divided by min(n, d).
"""

from __future__ import annotations

import numpy as np
import torch

#: Dataset label column -> the research report's metric name.
REPORT_LABELS = {"interaction": "gene_interaction", "fitness": "fitness"}


def report_name(label: str) -> str:
    """The report's name of a dataset label column (unknown columns keep their name).

    >>> report_name("interaction"), report_name("fitness"), report_name("smf")
    ('gene_interaction', 'fitness', 'smf')
    """
    return REPORT_LABELS.get(label, label)


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), float64."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (NaN with fewer than 2 values or a constant side).

    >>> round(pearson(np.array([1., 2., 3.]), np.array([2., 4., 7.])), 4)
    0.9934
    """
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks).

    >>> spearman(np.array([1., 2., 3., 4.]), np.array([1., 8., 27., 64.]))
    1.0
    """
    return pearson(_rank(a), _rank(b)) if len(a) >= 2 else float("nan")


class Accumulator:
    """Predictions and labels of an epoch's real samples (``batch.valid``), per label where measured."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.pred: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.mask: list[np.ndarray] = []
        self.loss_sum, self.steps = 0.0, 0

    def add(self, pred: torch.Tensor, batch, loss: float | None = None) -> None:
        v = batch.valid
        self.pred.append(pred.detach().float()[v].cpu().numpy())
        self.y.append(batch.y[v].cpu().numpy())
        self.mask.append(batch.y_mask[v].cpu().numpy())
        if loss is not None:
            self.loss_sum, self.steps = self.loss_sum + loss, self.steps + 1

    def metrics(self, split: str) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.steps:
            out[f"{split}/loss"] = self.loss_sum / self.steps
        if not self.pred:
            return out
        p, y, m = (np.concatenate(x) for x in (self.pred, self.y, self.mask))
        for j, label in enumerate(self.labels):
            k = m[:, j]
            name = f"{split}/{report_name(label)}"
            out[f"{name}/Pearson"] = pearson(p[k, j], y[k, j])
            out[f"{name}/Spearman"] = spearman(p[k, j], y[k, j])
            out[f"{name}/MSE"] = float(((p[k, j] - y[k, j]) ** 2).mean()) if k.any() else float("nan")
            out[f"{name}/n"] = int(k.sum())
        return out


@torch.no_grad()
def collapse(emb: torch.Tensor, max_genes: int = 1024) -> dict[str, float]:
    """The feature-collapse monitor of embeddings ``emb`` [n, d] (module docstring); low = collapse.

    >>> e = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    >>> c = collapse(e); c["collapse/cosine_distance"] > 0.9 and c["collapse/effective_rank"] > 12
    True
    >>> collapse(e[:, :1] * torch.ones(1, 16))["collapse/effective_rank"] < 1.01
    True
    """
    e = emb.detach().float().cpu()
    if e.shape[0] > max_genes:  # a fixed, evenly spaced subset: comparable across epochs
        e = e[torch.linspace(0, e.shape[0] - 1, max_genes).long()]
    n, d = e.shape
    e = e - e.mean(0, keepdim=True)
    u = e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cos = u @ u.T
    mean_cos = float((cos.sum() - cos.diagonal().sum()) / max(n * (n - 1), 1))
    s = torch.linalg.svdvals(e)
    p = s / s.sum().clamp(min=1e-12)
    erank = float(torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum()))
    return {"collapse/cosine_distance": 1.0 - mean_cos, "collapse/effective_rank": erank,
            "collapse/effective_rank_frac": erank / max(min(n, d), 1)}
