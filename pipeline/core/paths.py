"""Where the repository's bundled inputs live (the embedded default run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"


@dataclass(frozen=True)
class Workspace:
    """Where one build reads its inputs and writes its stores.

    ``root`` is ``OUT/NAME``: ``graph.zarr``, ``dataset/``, ``precomputed.zarr`` and
    ``records.lmdb`` live there. ``force`` rebuilds stores that are up to date; ``wait``
    waits for another build of a store to finish instead of failing
    (:func:`pipeline.core.lock.store_lock`). ``samples``: an input missing from ``raw``
    may come from the bundled synthetic samples (only for the default ``data/raw``;
    a ``--raw`` given must hold every input). ``remote``: the URL ``OUT/NAME`` the stores are
    published to once built under ``root`` (a local staging folder), for ``--out URL``.
    """

    raw: Path
    root: Path
    force: bool = False
    wait: bool = False
    samples: bool = True
    remote: str | None = None

    @property
    def graph_store(self) -> Path:
        return self.root / "graph.zarr"

    @property
    def dataset_store(self) -> Path:
        return self.root / "dataset"

    @property
    def precomputed_store(self) -> Path:
        return self.root / "precomputed.zarr"
