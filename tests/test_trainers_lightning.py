"""``trainers.lightning``: the stream as a LightningDataModule, one short ``Trainer.fit`` on the CPU."""

from __future__ import annotations

import pytest

from tests.test_trainers import planted  # noqa: F401  (the session fixture)

lightning = pytest.importorskip("lightning")


def test_datamodule_feeds_a_lightning_fit(planted):  # noqa: F811
    from trainers.lightning import LitModel, StreamDataModule

    dm = StreamDataModule(str(planted), fmt="index", batch_size=64, workers=0)
    model = LitModel("index", dm, lr=3e-3, d=16)
    seen: list[int] = []

    class Record(lightning.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.extend(batch.sample_ids[batch.valid].tolist())

    trainer = lightning.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(model, datamodule=dm)
    train = dm.streams["train"]
    ids = set(train.ids.tolist())
    assert len(seen) == 2 * len(ids) and set(seen[:len(ids)]) == ids == set(seen[len(ids):])
    assert seen[:len(ids)] != seen[len(ids):]  # epoch 1 was reshuffled: set_epoch reached the stream
    assert trainer.global_step == 2 * len(train) and "val/loss" in trainer.callback_metrics
    from pipeline.stream import PerturbationStream
    rest = PerturbationStream(str(planted), fmt="index", batch_size=64)
    rest.load_state_dict(dm.state_dict())  # the checkpointed position: after the last batch of epoch 1
    assert rest.epoch == 1 and len(rest) == 0
