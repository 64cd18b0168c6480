"""The streaming dataset: ``from pipeline.stream import PerturbationStream``.

Modules: ``order`` (block shuffle, sharding, resume), ``batches`` (batch formats with
on-device mask and adjacency-row expansion), ``chunks`` (whole-chunk reads, prefetched a
window ahead), ``dataset`` (the IterableDataset over a published build), ``loader``
(DataLoader workers handing over several batches at once).
Reference models that train from the stream live outside the library, in ``trainers/``.
"""

from pipeline.stream.batches import (
    AdjRows,
    CompactRows,
    GraphBatch,
    GraphStatic,
    IndexBatch,
    KHopBatch,
    TransformerBatch,
)
from pipeline.stream.dataset import FORMATS, LAYOUTS, PerturbationStream
from pipeline.stream.loader import StreamLoader

__all__ = ["AdjRows", "CompactRows", "FORMATS", "GraphBatch", "GraphStatic", "IndexBatch", "KHopBatch", "LAYOUTS",
           "PerturbationStream", "StreamLoader", "TransformerBatch"]
