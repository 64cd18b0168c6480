"""Names ``vulture`` (``make lint``) must count as used: the library's public API, called from user code.

Only API the README documents belongs here; a name the library and its consumers in this
repository (flows, benchmarks, trainers, scripts) do not use, and the README does not promise,
is dead code to remove rather than to list. The file is plain importable Python, so a
whitelisted name that is renamed or removed fails the test run (pytest imports it).
"""

from pipeline.graph.csr import CSR
from pipeline.graph.features import codon_counts
from pipeline.graph.store import GraphStore
from pipeline.stream.batches import GraphBatch, KHopBatch
from pipeline.stream.dataset import PerturbationStream
from trainers import models

__all__ = ["PUBLIC_API"]

PUBLIC_API = (
    PerturbationStream.set_epoch,  # README: the training loop's epoch hook
    PerturbationStream.state_dict,  # README: mid-epoch checkpoint / resume
    PerturbationStream.load_state_dict,
    GraphBatch.to_hetero,  # README: the PyG HeteroData view
    KHopBatch.to_pyg,  # README: the PyG Batch view
    CSR.degree,  # README (the notebooks): node degrees of a graph
    GraphStore.embedding,  # README: imported embedding tables
    codon_counts,  # per-gene codon counts, the features' building block
    # the reference models (trainers/, outside the library), trained from the stream by the tests
    models.masked_mse, models.GraphRegularisedTransformer, models.MaskedGNN,
)

# pipeline.core.remote: zarr's Store protocol (called by zarr, never by name) and the outcome of a publish
from pipeline.core import remote  # noqa: E402

_CachedStore = remote._cached_store_class()
PUBLIC_API = (*PUBLIC_API, _CachedStore._with_store, _CachedStore.get_partial_values, _CachedStore.list_prefix,
              _CachedStore.list_dir, remote.Published("", 0, 0, True).uploaded, remote.ChunkCache("/tmp").misses)

# trainers/ (issue 12): the planted build (README "Train a model", the trainers' tests), and the Lightning hooks
# (called by lightning.Trainer by name; lightning is optional, so its module is imported only when installed)
from synth import planted as _planted  # noqa: E402

PUBLIC_API = (*PUBLIC_API, _planted.build_planted)
try:
    from trainers import lightning as _lit

    PUBLIC_API = (*PUBLIC_API, _lit.StreamDataModule.train_dataloader, _lit.StreamDataModule.val_dataloader,
                  _lit.StreamDataModule.test_dataloader, _lit.LitModel, _lit.LitModel.training_step,
                  _lit.LitModel.validation_step, _lit.LitModel.configure_optimizers)
except ImportError:  # lightning not installed
    pass

# research-code batches (benchmarks/train.py feeds the same models from per-sample PyG HeteroData)
from trainers.models import khop as _khop  # noqa: E402
from trainers.models import lazy as _lazy  # noqa: E402

PUBLIC_API = (*PUBLIC_API, _lazy.LazyGNN.forward_hetero, _khop.KHopGNN.forward_hetero)

# vector labels (issue 14): a batch's label masks, read by trainers (README "Vector labels")
PUBLIC_API = (*PUBLIC_API, lambda batch: batch.label_mask)

# a HeteroData field set by benchmarks/_research_loading.py, read by name in trainers.models.common.pert_states
PUBLIC_API = (*PUBLIC_API, lambda data: data["gene"].pert_state)
