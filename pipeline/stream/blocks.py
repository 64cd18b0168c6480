"""``BatchBlock``: consecutive batches of one process, gathered at once, cut into batches by views.

Contract:

- A stream process (the main one, or a DataLoader worker) gathers ``G`` of its batches with
  ONE vectorised gather per array from the decoded window (:meth:`pipeline.stream.chunks.View.gather`
  over the ``G x B`` samples), not one per batch: a block holds the batches' columns one after the
  other, every array already in the dtype its batches have.
- :meth:`BatchBlock.batches` cuts it into the public batch objects (:mod:`pipeline.stream.batches`)
  with slices: each batch's tensors are views of the block's buffers (no copy), so a batch costs a
  handful of slices whatever its size.
- A block is what a worker hands over (one blob through the pipe or one shared-memory segment:
  ``_Tensors.__reduce__``); pinned by the DataLoader as a whole (``pin_memory``), its batches are
  pinned views.
- Transformer format: the step's adjacency rows do not depend on the block's samples, only on
  (epoch, step); :meth:`BatchBlock.attach` adds them (one :class:`~pipeline.stream.batches.StepRows`
  per step, views of the store's mapped file) where they are read: in the process that iterates,
  or in the trainer's process when a :class:`~pipeline.stream.loader.StreamLoader` runs the
  workers (so the ~244 KB per step never cross a process boundary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.stream.batches import GraphBatch, IndexBatch, KHopBatch, StepRows, TransformerBatch, _Tensors

_CLASSES = {"index": IndexBatch, "graph": GraphBatch, "khop": KHopBatch, "transformer": TransformerBatch}


@dataclass
class BatchBlock(_Tensors):
    """``len(steps)`` batches of ``batch_size`` samples each, one after the other (see the module docstring)."""

    fmt: str
    batch_size: int
    steps: torch.Tensor  # int64 [G]: each batch's global step
    sample_ids: torch.Tensor  # int64 [G*B]
    pert_ptr: torch.Tensor  # int64 [G*B+1], from 0
    pert_genes: torch.Tensor  # int64
    pert_types: torch.Tensor  # int64
    y: torch.Tensor  # float32 [G*B, L]
    y_mask: torch.Tensor  # bool [G*B, L]
    pad: torch.Tensor  # bool [G*B]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # float32 [G*B, w]
    label_mask: dict[str, torch.Tensor] = field(default_factory=dict)
    flip_ptr: torch.Tensor | None = None  # graph: int64 [G*B+1]
    flip_genes: torch.Tensor | None = None  # graph: int64
    bits: torch.Tensor | None = None  # khop: uint8 [G*B, ceil(N/8)]
    k: int = 1
    step_rows: list[StepRows] | None = None  # transformer: each batch's adjacency rows (None until attached)

    def __len__(self) -> int:
        return int(self.steps.numel())

    def attach(self, step_rows: list[StepRows]) -> None:
        """Add the adjacency rows of the block's steps, in order (transformer format)."""
        if len(step_rows) != len(self):
            raise ValueError(f"{len(step_rows)} steps of adjacency rows for a block of {len(self)} batches")
        self.step_rows = list(step_rows)

    def batches(self) -> list[IndexBatch]:
        """The block's batches, in order; their tensors are views of the block's."""
        cls, b = _CLASSES[self.fmt], self.batch_size
        if self.fmt == "transformer" and self.step_rows is None:
            raise ValueError("transformer block without its adjacency rows: attach() them first")
        sid, ptr, genes, types = (t.numpy() for t in (self.sample_ids, self.pert_ptr, self.pert_genes,
                                                      self.pert_types))
        y, ym, pad = self.y.numpy(), self.y_mask.numpy(), self.pad.numpy()
        labels = {k: v.numpy() for k, v in self.labels.items()}
        lmask = {k: v.numpy() for k, v in self.label_mask.items()}
        graph = self.fmt == "graph"
        if graph:
            fptr, fgenes = self.flip_ptr.numpy(), self.flip_genes.numpy()  # type: ignore[union-attr]
        bits = self.bits.numpy() if self.bits is not None else None
        tn = torch.from_numpy
        out = []
        for i, step in enumerate(self.steps.tolist()):
            a, e = i * b, i * b + b
            p = ptr[a:e + 1]
            p0, p1 = p[0], p[-1]
            kw = dict(sample_ids=tn(sid[a:e]), step=step, pert_ptr=tn(p - p0), pert_genes=tn(genes[p0:p1]),
                      pert_types=tn(types[p0:p1]), y=tn(y[a:e]), y_mask=tn(ym[a:e]), pad=tn(pad[a:e]),
                      labels={k: tn(v[a:e]) for k, v in labels.items()},
                      label_mask={k: tn(v[a:e]) for k, v in lmask.items()})
            if graph:
                f = fptr[a:e + 1]
                kw.update(flip_ptr=tn(f - f[0]), flip_genes=tn(fgenes[f[0]:f[-1]]))
            elif bits is not None:
                kw.update(k=self.k, bits=tn(bits[a:e]))
            elif self.step_rows is not None:
                kw["rows"] = self.step_rows[i]
            out.append(cls(**kw))
        return out
