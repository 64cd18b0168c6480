"""``StreamLoader``: DataLoader workers that hand over several batches at once.

>>> loader = StreamLoader(ds, num_workers=2, group=8, pin_memory=True)  # doctest: +SKIP
>>> for batch in loader:  # the batches, in order, of DataLoader(ds, batch_size=None, ...)  # doctest: +SKIP
...     batch = batch.to("cuda", non_blocking=True)

A worker -> main hand-over has a fixed cost (the DataLoader's bookkeeping, a pipe write and
read, waking the main process), ~0.1-0.3 ms on a 2-core machine whatever the batch size: at
thousands of batches per second it is the bottleneck. Here each worker yields groups of
``group`` consecutive batches of the rank (:class:`~pipeline.stream.batches.BatchGroup`, one
blob), dealt to workers a group at a time so the flattened sequence is the rank's batches in
order: the public batch API, the order, resume (``ds.state_dict(last_step=batch.step)``) and
rank/worker sharding are exactly those of the plain DataLoader. Memory in flight: up to
``prefetch_factor x num_workers x group`` batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from pipeline.stream.batches import BatchGroup, IndexBatch
from pipeline.stream.dataset import PerturbationStream


class _Groups(IterableDataset):
    """The stream's batches of this worker, ``group`` at a time."""

    def __init__(self, stream: PerturbationStream, group: int) -> None:
        self.stream, self.group = stream, group

    def __iter__(self) -> Iterator[BatchGroup]:
        buf: list[IndexBatch] = []
        for b in self.stream.batches(self.group):
            buf.append(b)
            if len(buf) == self.group:
                yield BatchGroup(buf)
                buf = []
        if buf:
            yield BatchGroup(buf)


class StreamLoader:
    """Iterate a :class:`PerturbationStream` through ``num_workers`` DataLoader workers, ``group``
    batches per hand-over (``num_workers=0``: in this process). Other keyword arguments go to
    ``torch.utils.data.DataLoader`` (``pin_memory``, ``multiprocessing_context``, ``prefetch_factor``, ...)."""

    def __init__(self, stream: PerturbationStream, *, num_workers: int = 2, group: int = 8, **kwargs: Any) -> None:
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
        loader = DataLoader(_Groups(self.stream, self.group), batch_size=None, num_workers=self.num_workers,
                            **self.kwargs)
        for g in loader:
            yield from g.batches
