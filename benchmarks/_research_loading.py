"""Research-code loading, the baseline of ``python -m benchmarks train`` (not a benchmark itself).

What the research trainers do per sample at load time, in a torch ``DataLoader`` with workers:

- full graph + masks ("lazy"): a PyG ``HeteroData`` holding the whole multigraph (features,
  every edge type's ``edge_index``) with the sample's node mask (its removed genes False) and
  one edge mask per type (False where an edge touches a removed gene);
- k-hop: ``torch_geometric.utils.k_hop_subgraph`` of the perturbed genes per edge type, the
  union of the node sets, and each type's induced, relabelled edges (``subgraph``);

then ``Batch.from_data_list`` joins a batch's samples (the collate function, in the worker).

Attribute names (what ``trainers.models``' ``forward_hetero`` reads), per sample::

    data["gene"].x           float32 [n, d]    gene features (the static graph's, NaN kept)
    data["gene"].n_id        int64 [n]         gene id of each node (arange(N) for the full graph)
    data["gene"].pert_state  int64 [n]         m_i(S): the perturbation type code of gene i, 0 = unperturbed
    data["gene"].node_mask   bool [N]          full graph only: False for removed genes
    data["gene", t, "gene"].edge_index         int64 [2, e_t]
    data["gene", t, "gene"].edge_mask          bool [E_t] full graph only
    data.y, data.y_mask      [1, L]            the labels (rows of the batch after joining)

The samples are the ones the stream yields (:func:`stream_samples`: same split, seed, order and
batch size), so a research row trains on exactly the batches of the matching stream row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.precompute.masks import REMOVING_TYPES
from pipeline.stream.batches import GraphStatic


@dataclass(frozen=True)
class Samples:
    """Samples in stream order: perturbed genes and types in CSR form, labels."""

    ptr: np.ndarray  # int64 [n+1]
    genes: np.ndarray  # int64 [P]
    types: np.ndarray  # int64 [P]
    y: np.ndarray  # float32 [n, L]
    y_mask: np.ndarray  # bool [n, L]

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def sample(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(perturbed genes, their type codes) of sample ``i`` as int64 tensors."""
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        return torch.from_numpy(self.genes[a:b]), torch.from_numpy(self.types[a:b])


def stream_samples(build: Path, batch_size: int, n_batches: int, seed: int = 0) -> Samples:
    """The first ``n_batches`` batches' samples of the train split as the stream yields them
    (``fmt="index"``, shuffled with ``seed``), concatenated in order; read in this process (untimed)."""
    from pipeline.stream import PerturbationStream

    ds = PerturbationStream(build, fmt="index", batch_size=batch_size, seed=seed)
    ptrs, genes, types, ys, ms = [np.zeros(1, np.int64)], [], [], [], []
    total = 0
    for _, b in zip(range(n_batches), ds, strict=False):
        ptrs.append(b.pert_ptr.numpy()[1:] + total)
        total += int(b.pert_ptr[-1])
        genes.append(b.pert_genes.numpy())
        types.append(b.pert_types.numpy())
        ys.append(b.y.numpy())
        ms.append(b.y_mask.numpy())
    return Samples(np.concatenate(ptrs), np.concatenate(genes).astype(np.int64),
                   np.concatenate(types).astype(np.int64), np.concatenate(ys), np.concatenate(ms))


def _node_fields(data: Any, n_id: torch.Tensor, x: torch.Tensor, genes: torch.Tensor, types: torch.Tensor,
                 n_genes: int) -> None:
    state = torch.zeros(n_genes, dtype=torch.long)
    state[genes] = types
    data["gene"].x = x
    data["gene"].n_id = n_id
    data["gene"].pert_state = state[n_id]
    data["gene"].num_nodes = len(n_id)


class FullGraphSamples(Dataset):
    """Per sample: the full multigraph as a ``HeteroData`` with the sample's node and edge masks."""

    def __init__(self, static: GraphStatic, samples: Samples) -> None:
        self.static, self.samples = static, samples
        self.removing = torch.tensor(REMOVING_TYPES)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Any:
        from torch_geometric.data import HeteroData

        st = self.static
        genes, types = self.samples.sample(i)
        mask = st.base.clone()
        mask[genes[torch.isin(types, self.removing)]] = False
        d = HeteroData()
        _node_fields(d, torch.arange(st.n_genes), st.gene_x, genes, types, st.n_genes)
        d["gene"].node_mask = mask
        for t, ei in st.edge_index.items():
            d["gene", t, "gene"].edge_index = ei
            d["gene", t, "gene"].edge_mask = mask[ei[0]] & mask[ei[1]]
        d.y = torch.from_numpy(self.samples.y[i:i + 1])
        d.y_mask = torch.from_numpy(self.samples.y_mask[i:i + 1])
        return d


class KHopSamples(Dataset):
    """Per sample: the union over edge types of ``k_hop_subgraph(S, k)``, with every type's induced edges."""

    def __init__(self, static: GraphStatic, samples: Samples, k: int) -> None:
        self.static, self.samples, self.k = static, samples, k

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Any:
        from torch_geometric.data import HeteroData
        from torch_geometric.utils import k_hop_subgraph, subgraph

        st = self.static
        genes, types = self.samples.sample(i)
        sets = [k_hop_subgraph(genes, self.k, ei, relabel_nodes=False, num_nodes=st.n_genes)[0]
                for ei in st.edge_index.values()]
        subset = torch.unique(torch.cat([genes, *sets]))
        d = HeteroData()
        _node_fields(d, subset, st.gene_x[subset], genes, types, st.n_genes)
        for t, ei in st.edge_index.items():
            d["gene", t, "gene"].edge_index = subgraph(subset, ei, relabel_nodes=True, num_nodes=st.n_genes)[0]
        d.y = torch.from_numpy(self.samples.y[i:i + 1])
        d.y_mask = torch.from_numpy(self.samples.y_mask[i:i + 1])
        return d


def collate(datas: list[Any]) -> Any:
    """``Batch.from_data_list``: the research trainers' collate (runs in the DataLoader worker)."""
    from torch_geometric.data import Batch

    return Batch.from_data_list(datas)


def research_loader(ds: Dataset, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """A torch ``DataLoader`` over ``ds`` in sample order, ``Batch.from_data_list`` per batch."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, multiprocessing_context="fork" if workers else None)
