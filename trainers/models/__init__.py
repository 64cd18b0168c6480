"""The reference models trained from the stream (outside the shipped library).

:data:`MODELS` maps a model name to its class; every class has ``stream_format`` (the
:class:`~pipeline.stream.dataset.PerturbationStream` format it reads), is built as
``Cls(static, n_labels, **hyperparameters)`` and has ``forward(batch)``, ``loss(batch)`` and
``gene_embeddings()`` (see :mod:`trainers.models.common`). The GNNs (``lazy``, ``khop``) also
have ``forward_hetero(data)`` for research-code PyG batches.

- ``index`` (:mod:`~trainers.models.index`): DANGO-style, the perturbed genes' embeddings + a set aggregator;
- ``lazy`` (:mod:`~trainers.models.lazy`): the full multigraph per sample with node and edge masks;
- ``khop`` (:mod:`~trainers.models.khop`): each sample's k-hop induced subgraph;
- ``transformer`` (:mod:`~trainers.models.transformer`): y = g(F(G), S), the encoder once per step,
  graph-regularised heads.

``legacy``: the first two consumers (:class:`GraphRegularisedTransformer`, :class:`MaskedGNN`).
"""

from trainers.models.common import graph_reg_loss, masked_mse
from trainers.models.index import IndexModel
from trainers.models.khop import KHopGNN
from trainers.models.lazy import LazyGNN
from trainers.models.legacy import GraphRegularisedTransformer, MaskedGNN
from trainers.models.transformer import PerturbationTransformer

MODELS = {"index": IndexModel, "lazy": LazyGNN, "khop": KHopGNN, "transformer": PerturbationTransformer}

__all__ = ["MODELS", "GraphRegularisedTransformer", "IndexModel", "KHopGNN", "LazyGNN", "MaskedGNN",
           "PerturbationTransformer", "graph_reg_loss", "masked_mse"]
