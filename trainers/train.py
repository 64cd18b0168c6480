"""The training loop of the reference models: ``python -m trainers --build DIR --model NAME``.

One run: AdamW, linear warmup then cosine decay (per step), gradient clipping, bf16 autocast on
CUDA only, the stream through :class:`~pipeline.stream.loader.StreamLoader` (``workers`` DataLoader
workers, pinned memory on CUDA). Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DDP (gloo on the
CPU, nccl on CUDA) and the stream shards the batches by rank (``PerturbationStream(rank=,
world_size=)``): every rank gets as many batches, disjoint ones.

Writes under ``out`` (rank 0):

- ``config.json``: the :class:`TrainConfig`;
- ``steps.jsonl``: one line per optimizer step (``epoch``, ``step``, ``lr``, ``loss`` and its components);
- ``metrics.jsonl``: one line per epoch: ``train/...`` and ``val/...`` metrics under the research
  report's keys (``val/gene_interaction/Pearson``, ``train/fitness/Spearman``, ...; padded samples
  excluded, :mod:`trainers.metrics`), ``collapse/...`` (feature-collapse monitor of the gene
  embeddings), ``lr``, ``seconds``, ``samples_per_s``;
- ``tb/``: the same scalars for TensorBoard (``tensorboard --logdir runs``), offline;
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states and the stream's ``state_dict``,
  written atomically at every epoch's end, every ``checkpoint_every`` steps and at ``max_steps``.
  ``--resume`` continues from it with the same remaining batches and, on the CPU, the same losses.
  It holds tensors and plain containers only: it loads with ``torch.load(weights_only=True)``.
- ``batches-rank{r}.jsonl`` with ``record_batches``: the sample ids of every batch of rank r.

Train metrics are those of rank 0's batches (its shard); validation runs on rank 0 over the
whole split. An epoch resumed mid-way reports train metrics over its resumed part only.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.stream import PerturbationStream, StreamLoader
from trainers.metrics import Accumulator, collapse
from trainers.models import MODELS

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """One training run (every field is a ``python -m trainers`` option of the same name)."""

    build: str
    model: str = "transformer"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  #: fraction of all steps spent in linear warmup
    clip: float = 1.0  #: max gradient norm (0: off)
    workers: int = 2
    group: int = 8  #: batches per worker hand-over (StreamLoader)
    out: str = "runs/default"
    device: str = "auto"
    seed: int = 0
    k: int = 1  #: khop: the k-hop sets to read (as built)
    hparams: dict[str, Any] = field(default_factory=dict)  #: model keyword arguments
    split_name: str = "random"
    eval_split: str = "val"
    max_steps: int = 0  #: stop after this many optimizer steps in all (0: run every epoch)
    checkpoint_every: int = 0  #: also checkpoint every this many steps (0: at epoch ends only)
    resume: bool = False
    shuffle_labels: bool = False  #: control run: the training labels permuted among training samples
    record_batches: bool = False
    threads: int = 0  #: torch intra-op threads (0: torch's default); losses are bit-identical at equal threads

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r}: expected one of {', '.join(MODELS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device {self.device!r}: expected auto, cpu or cuda")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)


def warmup_cosine(total: int, warmup: float):
    """The LambdaLR factor of step s: linear from 1/w up to 1 over the first w = ceil(warmup * total)
    steps, then cosine down to 0 at ``total``.

    >>> f = warmup_cosine(101, 0.1); [round(f(s), 3) for s in (0, 10, 11, 55, 100)]
    [0.091, 1.0, 1.0, 0.509, 0.0]
    """
    w = max(1, math.ceil(warmup * total)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < w:
            return (step + 1) / w
        span = max(1, total - 1 - w)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / span)))
    return factor


class _LossOf(nn.Module):
    """``forward(batch) = model.loss(batch)``: what DDP wraps (its hooks run on ``forward``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
          "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(("MT19937", st["numpy"].numpy().astype(np.uint32), st["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save(path: Path, obj: dict[str, Any]) -> None:
    """torch.save to a temporary file, then an atomic rename: a crash never leaves a torn checkpoint."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def shuffle_labels(ds: PerturbationStream, seed: int) -> None:
    """Permute the labels (and their masks) among ``ds``'s samples: the control run's data."""
    perm = np.random.default_rng(seed).permutation(len(ds.ids))
    ds.y[ds.ids] = ds.y[ds.ids[perm]]
    ds.y_mask[ds.ids] = ds.y_mask[ds.ids[perm]]


class _Logs:
    """JSON lines + TensorBoard on rank 0; nothing elsewhere."""

    def __init__(self, out: Path, active: bool, resume: bool) -> None:
        self.active = active
        if not active:
            return
        out.mkdir(parents=True, exist_ok=True)
        mode = "a" if resume else "w"
        self.steps = open(out / "steps.jsonl", mode)
        self.epochs = open(out / "metrics.jsonl", mode)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(out / "tb"))

    def step(self, rec: dict[str, Any]) -> None:
        if self.active:
            self.steps.write(json.dumps(rec) + "\n")

    def epoch(self, rec: dict[str, Any]) -> None:
        if not self.active:
            return
        self.epochs.write(json.dumps(rec) + "\n")
        self.epochs.flush()
        self.steps.flush()
        for k, v in rec.items():
            if isinstance(v, float) and math.isfinite(v):
                self.tb.add_scalar(k, v, rec["step"])
        self.tb.flush()

    def close(self) -> None:
        if self.active:
            self.steps.close()
            self.epochs.close()
            self.tb.close()


def _stream(cfg: TrainConfig, split: str, fmt: str, rank: int, world: int, shuffle: bool) -> PerturbationStream:
    return PerturbationStream(cfg.build, split=split, split_name=cfg.split_name, fmt=fmt,
                              batch_size=cfg.batch_size, seed=cfg.seed, shuffle=shuffle, k=cfg.k,
                              rank=rank, world_size=world)


@torch.no_grad()
def evaluate(model: nn.Module, ds: PerturbationStream, device: torch.device, split: str,
             autocast: bool = False) -> dict[str, float]:
    """Metrics of ``split`` (padded samples excluded) and the loss averaged over its batches."""
    was = model.training
    model.eval()
    acc = Accumulator(ds.labels)
    for batch in ds:
        batch = batch.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = model.loss(batch)
        acc.add(out["pred"], batch, float(out["loss"]))
    model.train(was)
    return acc.metrics(split)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run ``cfg``; returns ``{"losses": [per-step loss], "metrics": [per-epoch records], "steps": n}``
    (this process's view; rank 0 also writes the files of the module docstring)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg.device, local)
    dist = world > 1
    if dist and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _run(cfg, rank, world, device)
    finally:
        if dist and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    cls = MODELS[cfg.model]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    ds = _stream(cfg, "train", cls.stream_format, rank, world, shuffle=True)
    if cfg.shuffle_labels:
        shuffle_labels(ds, cfg.seed)
    val = _stream(cfg, cfg.eval_split, cls.stream_format, 0, 1, shuffle=False) if rank == 0 else None
    model = cls(ds.static(), len(ds.labels), **cfg.hparams).to(device)
    step_fn: nn.Module = _LossOf(model)
    if world > 1:
        # the buffers are the static graph, equal on every rank: no per-step broadcast (MBs at full scale)
        step_fn = nn.parallel.DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda"
                                                      else None, forward_sync_buffers=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(ds)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, cfg.warmup))
    epoch, step = 0, 0
    if cfg.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        ds.load_state_dict(ck["stream"])
        epoch, step = int(ck["stream"]["epoch"]), int(ck["step"])
        _set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
    out.mkdir(parents=True, exist_ok=True)  # every rank: rank r > 0 may write its batch record first
    logs = _Logs(out, rank == 0, cfg.resume and ckpt_path.exists())
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    rec_file = open(out / f"batches-rank{rank}.jsonl", "a" if cfg.resume else "w") if cfg.record_batches else None
    cuda = device.type == "cuda"
    losses: list[float] = []
    history: list[dict[str, Any]] = []

    def checkpoint(last_step: int | None) -> None:
        rng = [_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if rank == 0:
            _save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "stream": ds.state_dict(last_step=last_step),
                              "step": step, "rng": rng, "config": json.dumps(cfg.to_dict())})

    stop = False
    while epoch < cfg.epochs and not stop:
        if ds.epoch != epoch:
            ds.set_epoch(epoch)
        model.train()
        acc = Accumulator(ds.labels)
        t0, n_samples = time.perf_counter(), 0
        loader = StreamLoader(ds, num_workers=cfg.workers, group=cfg.group, pin_memory=cuda)
        left, last = len(ds), None  # this epoch's batches still to come on this rank
        for batch in loader:
            batch = batch.to(device, non_blocking=cuda)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                parts = step_fn(batch)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            step, left, last = step + 1, left - 1, batch.step
            loss = float(parts["loss"].detach())
            losses.append(loss)
            n_samples += int(batch.valid.sum())
            acc.add(parts["pred"], batch, loss)
            logs.step({"epoch": epoch, "step": step, "lr": sched.get_last_lr()[0],
                       **{k: float(v.detach()) for k, v in parts.items() if k != "pred"}})
            if rec_file is not None:
                rec_file.write(json.dumps({"epoch": epoch, "step": int(batch.step),
                                           "ids": batch.sample_ids[batch.valid].tolist(),
                                           "pad_ids": batch.sample_ids[batch.pad].tolist()}) + "\n")
            if cfg.max_steps and step >= cfg.max_steps:
                stop = True
                break
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint(last)
        seconds = time.perf_counter() - t0
        if stop and left > 0:
            checkpoint(last)  # mid-epoch: resume after the last trained batch
            break
        epoch += 1
        ds.set_epoch(epoch)
        checkpoint(None)
        if rank == 0:
            rec = {"epoch": epoch - 1, "step": step, "lr": sched.get_last_lr()[0], "seconds": seconds,
                   "samples_per_s": n_samples / max(seconds, 1e-9), **acc.metrics("train")}
            rec.update(evaluate(model, val, device, cfg.eval_split, autocast=cuda))
            model.eval()
            with torch.no_grad():
                rec.update(collapse(model.gene_embeddings()))
            logs.epoch(rec)
            history.append(rec)
    if rec_file is not None:
        rec_file.close()
    logs.close()
    return {"losses": losses, "metrics": history, "steps": step}

