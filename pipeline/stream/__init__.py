"""The streaming dataset: ``from pipeline.stream import PerturbationStream``.

Modules: ``order`` (block shuffle, sharding, resume), ``batches`` (batch formats with
on-device mask expansion), ``dataset`` (the IterableDataset over a published build).
Reference models that train from the stream live outside the library, in ``trainers/``.
"""

from pipeline.stream.batches import AdjRows, GraphBatch, GraphStatic, IndexBatch, KHopBatch, TransformerBatch
from pipeline.stream.dataset import FORMATS, LAYOUTS, PerturbationStream

__all__ = ["AdjRows", "FORMATS", "GraphBatch", "GraphStatic", "IndexBatch", "KHopBatch", "LAYOUTS",
           "PerturbationStream", "TransformerBatch"]
