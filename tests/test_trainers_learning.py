"""Proof that the reference models learn: on the SYNTHETIC planted build (``synth.planted``: the
interaction score is a function of the perturbed genes' shared neighbourhood in
``string12_experimental`` plus noise; ideal Pearson 0.89), every model beats the mean predictor
on the held-out test split, and the same model trained on shuffled labels does not."""

from __future__ import annotations

import pytest

from pipeline.stream import PerturbationStream
from tests.test_trainers import planted  # noqa: F401  (the session fixture)
from trainers.train import TrainConfig, train

EPOCHS = 6
#: small and quick on 2 busy cores (lazy: one round already sees the genes that lost two neighbours)
HPARAMS = {"index": {"d": 16}, "lazy": {"d": 16, "layers": 1}, "khop": {"d": 16}, "transformer": {"d": 64}}


def _mean_mse(build, label: int) -> float:
    """Test-split MSE of the train-split mean (the mean predictor), over measured labels."""
    tr = PerturbationStream(build, split="train", fmt="index")
    te = PerturbationStream(build, split="test", fmt="index")
    mu = tr.y[tr.ids, label][tr.y_mask[tr.ids, label]].mean()
    y = te.y[te.ids, label][te.y_mask[te.ids, label]]
    return float(((y - mu) ** 2).mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["index", "lazy", "khop", "transformer"])
def test_model_beats_the_mean_predictor_and_shuffled_labels_do_not(planted, tmp_path, name):  # noqa: F811
    base = dict(build=str(planted), model=name, epochs=EPOCHS, batch_size=32, lr=5e-3, workers=0,
                eval_split="test", hparams=HPARAMS[name], threads=1)
    real = train(TrainConfig(**base, out=str(tmp_path / "real")))["metrics"][-1]
    ctrl = train(TrainConfig(**base, out=str(tmp_path / "shuffled"), shuffle_labels=True))["metrics"][-1]
    mean_mse = _mean_mse(planted, 1)  # labels: (fitness, interaction)
    r, mse = real["test/gene_interaction/Pearson"], real["test/gene_interaction/MSE"]
    print(f"{name}: test interaction Pearson {r:.3f} (MSE {mse:.4f} vs mean predictor {mean_mse:.4f}); "
          f"fitness Pearson {real['test/fitness/Pearson']:.3f}; shuffled: Pearson "
          f"{ctrl['test/gene_interaction/Pearson']:.3f} MSE {ctrl['test/gene_interaction/MSE']:.4f}")
    assert r > 0.4 and mse < 0.85 * mean_mse
    assert real["test/fitness/Pearson"] > 0.5
    assert ctrl["test/gene_interaction/Pearson"] < 0.25 and ctrl["test/gene_interaction/MSE"] > 0.9 * mean_mse
