"""Reference models trained from the stream (outside the shipped library).

- ``models``: the four reference models (:data:`trainers.models.MODELS`: index, lazy, khop, transformer);
- ``train`` / ``__main__``: the training command ``python -m trainers --build DIR --model NAME``
  (AdamW + warmup/cosine, checkpoints and exact resume, metrics to JSON lines and TensorBoard, DDP
  under ``torchrun``);
- ``metrics``: per-label Pearson / Spearman under the research report's keys, the feature-collapse monitor;
- ``lightning``: a ``LightningDataModule`` over the stream (needs ``lightning``; imported only there).
"""
