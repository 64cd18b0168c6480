"""Lightning over the stream (optional: ``lightning`` is imported by this module only, so the rest of
``trainers`` works without it): :class:`StreamDataModule` and a thin :class:`LitModel`.

>>> dm = StreamDataModule("data/processed/string12", fmt="graph", batch_size=28, workers=2)  # doctest: +SKIP
>>> lightning.Trainer(max_epochs=10).fit(LitModel("lazy", dm), datamodule=dm)  # doctest: +SKIP

- Each split is a :class:`~pipeline.stream.dataset.PerturbationStream` read through
  :class:`~pipeline.stream.loader.StreamLoader` (workers, pinned memory on CUDA); the train stream
  shards by the trainer's ``global_rank`` / ``world_size`` (no DistributedSampler: the stream is
  an IterableDataset that shards itself) and is set to the trainer's ``current_epoch`` each epoch.
- Batches move to the device through their own ``.to`` (Lightning calls it).
- ``state_dict`` / ``load_state_dict`` carry the stream's position into Lightning checkpoints
  (after the last batch served).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning
import torch

from pipeline.stream import PerturbationStream, StreamLoader
from trainers.models import MODELS


class _EpochLoader:
    """Iterable of one split's batches; sets the stream's epoch from the trainer before each pass."""

    def __init__(self, dm: StreamDataModule, ds: PerturbationStream, train: bool) -> None:
        self.dm, self.ds, self.train = dm, ds, train

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self) -> Iterator[Any]:
        trainer = getattr(self.dm, "trainer", None)
        if self.train and trainer is not None and self.ds.epoch != trainer.current_epoch:
            self.ds.set_epoch(trainer.current_epoch)
        loader = StreamLoader(self.ds, num_workers=self.dm.workers, group=self.dm.group,
                              pin_memory=torch.cuda.is_available())
        for batch in loader:  # Lightning stops after len(self) batches: no code after the loop would run
            if self.train:
                self.dm.last_step = batch.step
            yield batch


class StreamDataModule(lightning.LightningDataModule):
    """train / val / test streams of a build in one format (``fmt``; extra keywords go to every stream)."""

    def __init__(self, build: str, *, fmt: str = "graph", batch_size: int = 64, workers: int = 2, group: int = 8,
                 seed: int = 0, **stream: Any) -> None:
        super().__init__()
        self.build, self.fmt, self.batch_size, self.seed, self.stream = build, fmt, batch_size, seed, stream
        self.workers, self.group = workers, group
        self.last_step: int | None = None
        self._pending: dict[str, Any] | None = None
        self.streams: dict[str, PerturbationStream] = {}

    def _make(self, split: str) -> PerturbationStream:
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if split == "train" and trainer is not None else (0, 1)
        return PerturbationStream(self.build, split=split, fmt=self.fmt, batch_size=self.batch_size, seed=self.seed,
                                  shuffle=split == "train", rank=rank, world_size=world, **self.stream)

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.streams:
                self.streams[split] = self._make(split)
        if self._pending is not None:
            self.streams["train"].load_state_dict(self._pending)
            self._pending = None

    def static(self) -> Any:
        """The wild-type graph of the build (what the models are built from)."""
        self.setup()
        return self.streams["train"].static()

    def train_dataloader(self) -> _EpochLoader:
        return _EpochLoader(self, self.streams["train"], train=True)

    def val_dataloader(self) -> _EpochLoader:
        return _EpochLoader(self, self.streams["val"], train=False)

    def test_dataloader(self) -> _EpochLoader:
        return _EpochLoader(self, self.streams["test"], train=False)

    def state_dict(self) -> dict[str, Any]:
        return self.streams["train"].state_dict(last_step=self.last_step) if "train" in self.streams else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending = dict(state)


class LitModel(lightning.LightningModule):
    """A :data:`~trainers.models.MODELS` model as a LightningModule: AdamW, the model's own ``loss``."""

    def __init__(self, name: str, dm: StreamDataModule, lr: float = 1e-3, **hparams: Any) -> None:
        super().__init__()
        self.model = MODELS[name](dm.static(), len(dm.streams["train"].labels), **hparams)
        self.lr = lr

    def training_step(self, batch: Any, *_: Any) -> torch.Tensor:
        out = self.model.loss(batch)
        self.log("train/loss", out["loss"].detach(), batch_size=int(batch.valid.sum()))
        return out["loss"]

    def validation_step(self, batch: Any, *_: Any) -> None:
        self.log("val/loss", self.model.loss(batch)["loss"], batch_size=int(batch.valid.sum()))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)
