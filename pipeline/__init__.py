"""Data pipeline for perturbation-graph machine learning on S. cerevisiae.

What users import (everything else is reachable through the stage packages)::

    from pipeline import open_graph, open_dataset, open_precomputed, PerturbationStream
    from pipeline import BuildConfig, run_build

- :func:`open_graph`, :func:`open_dataset`, :func:`open_precomputed`: the published stores.
- :class:`PerturbationStream`: the PyTorch streaming dataset over a build.
- :class:`BuildConfig` (with :class:`GraphConfig`, :class:`DatasetConfig`,
  :class:`PrecomputeConfig`) and :func:`run_build`: a build from Python, as
  ``python -m pipeline.build`` runs it.

The layout: ``pipeline.core`` (shared by every stage), ``pipeline.sources`` (one reader
per real file format), then one package per stage, each owning its algorithms, its stage
functions and its store: ``pipeline.graph``, ``pipeline.dataset``, ``pipeline.precompute``,
``pipeline.stream``. Names are loaded on first use, so ``import pipeline`` stays cheap
(the stream needs torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.core.version import __version__

_EXPORTS = {
    "open_graph": "pipeline.graph.store",
    "open_dataset": "pipeline.dataset.store",
    "open_precomputed": "pipeline.precompute.store",
    "PerturbationStream": "pipeline.stream.dataset",
    "BuildConfig": "pipeline.config",
    "GraphConfig": "pipeline.graph.config",
    "DatasetConfig": "pipeline.dataset.config",
    "PrecomputeConfig": "pipeline.precompute.config",
    "run_build": "pipeline.sequence",
}

__all__ = ["BuildConfig", "DatasetConfig", "GraphConfig", "PerturbationStream", "PrecomputeConfig", "__version__",
           "open_dataset", "open_graph", "open_precomputed", "run_build"]

if TYPE_CHECKING:
    from pipeline.config import BuildConfig
    from pipeline.dataset.config import DatasetConfig
    from pipeline.dataset.store import open_dataset
    from pipeline.graph.config import GraphConfig
    from pipeline.graph.store import open_graph
    from pipeline.precompute.config import PrecomputeConfig
    from pipeline.precompute.store import open_precomputed
    from pipeline.sequence import run_build
    from pipeline.stream.dataset import PerturbationStream


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
