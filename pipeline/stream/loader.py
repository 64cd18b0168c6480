"""``StreamLoader``: DataLoader workers that hand over blocks of batches.

>>> loader = StreamLoader(ds, num_workers=2, group=32, pin_memory=True)  # doctest: +SKIP
>>> for batch in loader:  # the batches, in order, of DataLoader(ds, batch_size=None, ...)  # doctest: +SKIP
...     batch = batch.to("cuda", non_blocking=True)

A worker -> main hand-over has a fixed cost (the DataLoader's bookkeeping, a pipe write and
read, waking the main process), ~0.1-0.3 ms on a 2-core machine whatever its size: at
thousands of batches per second it is the bottleneck. Here each worker gathers ``group``
consecutive batches of the rank at once and hands them over as one
:class:`~pipeline.stream.blocks.BatchBlock` (one blob), dealt to workers a group at a time, so
the flattened sequence is the rank's batches in order; the main process cuts a block into its
batches with views. The public batch API, the order, resume (``ds.state_dict(last_step=batch.step)``)
and rank/worker sharding are exactly those of the plain DataLoader. The transformer format's
adjacency rows depend only on the step: the main process reads them itself
(:meth:`PerturbationStream.attach_rows`) instead of receiving ~244 KB per step from a worker.
Memory in flight: up to ``prefetch_factor x num_workers x group`` batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from pipeline.stream.batches import IndexBatch
from pipeline.stream.blocks import BatchBlock
from pipeline.stream.dataset import PerturbationStream


class _Blocks(IterableDataset):
    """The stream's batches of this worker, one block per dealt group, adjacency rows left out."""

    def __init__(self, stream: PerturbationStream, group: int) -> None:
        self.stream, self.group = stream, group

    def __iter__(self) -> Iterator[BatchBlock]:
        return self.stream.blocks(self.group, rows=False)


class StreamLoader:
    """Iterate a :class:`PerturbationStream` through ``num_workers`` DataLoader workers, ``group``
    batches per hand-over (``num_workers=0``: in this process). Other keyword arguments go to
    ``torch.utils.data.DataLoader`` (``pin_memory``, ``multiprocessing_context``, ``prefetch_factor``, ...)."""

    def __init__(self, stream: PerturbationStream, *, num_workers: int = 2, group: int = 32, **kwargs: Any) -> None:
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ValueError(f"group must be an integer >= 1, got {group!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.stream, self.num_workers, self.group, self.kwargs = stream, num_workers, group, kwargs

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[IndexBatch]:
        if self.num_workers == 0:
            yield from self.stream
            return
        loader = DataLoader(_Blocks(self.stream, self.group), batch_size=None, num_workers=self.num_workers,
                            **self.kwargs)
        pin = bool(self.kwargs.get("pin_memory"))
        for blk in loader:
            if self.stream.fmt == "transformer":
                self.stream.attach_rows(blk)
                if pin:
                    blk.step_rows = [r.pin_memory() for r in blk.step_rows]  # type: ignore[union-attr]
            yield from blk.batches()
