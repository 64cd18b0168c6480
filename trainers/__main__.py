"""``python -m trainers --build DIR --model {index,lazy,khop,transformer} [...]``: train a reference model
from a build's stream (see :mod:`trainers.train`). ``torchrun --nproc-per-node N -m trainers ...``: DDP."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from trainers.models import MODELS
from trainers.train import TrainConfig, train

_HELP = {
    "build": "build folder (OUT/NAME: graph.zarr, dataset/, precomputed.zarr)",
    "model": f"reference model: {', '.join(MODELS)}",
    "epochs": "epochs (default 10)", "batch_size": "samples per batch and rank (default 64)",
    "lr": "peak learning rate of AdamW (default 1e-3)", "weight_decay": "AdamW weight decay (default 0.01)",
    "warmup": "fraction of the steps in linear warmup before the cosine decay (default 0.05)",
    "clip": "gradient-norm clipping (default 1.0; 0 = off)", "workers": "DataLoader workers (default 2)",
    "group": "batches per worker hand-over (default 8)", "out": "run folder (default runs/<model>)",
    "device": "auto (CUDA when present), cpu or cuda", "seed": "seed of the weights and the batch order",
    "k": "khop model: which k-hop sets to read (default 1)", "split_name": "split column (default random)",
    "eval_split": "split evaluated every epoch (default val)",
    "max_steps": "stop after this many optimizer steps (a checkpoint is written; --resume continues)",
    "checkpoint_every": "also checkpoint every N steps (default: at epoch ends)",
    "resume": "continue from OUT/checkpoint.pt", "shuffle_labels": "control: permute the training labels",
    "record_batches": "write the sample ids of every batch to OUT/batches-rank<r>.jsonl",
    "threads": "torch threads per process (default: torch's choice)",
}


def parse(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m trainers", description=__doc__.split("\n")[0])
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "hparams":
            p.add_argument("--hp", action="append", default=[], metavar="NAME=JSON",
                           help="a model hyperparameter, e.g. --hp d=32 --hp hard_mask=true; repeatable")
        elif f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", help=_HELP[f.name])
        elif f.name == "model":
            p.add_argument(flag, choices=list(MODELS), required=True, help=_HELP[f.name])
        elif f.name == "device":
            p.add_argument(flag, choices=["auto", "cpu", "cuda"], default="auto", help=_HELP[f.name])
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, required=f.name == "build",
                           default=None if f.name in ("build", "out") else f.default, help=_HELP[f.name])
    ns = p.parse_args(argv)
    hp = {}
    for item in ns.hp:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--hp takes NAME=VALUE, got {item!r}")
        try:
            hp[name] = json.loads(value)
        except json.JSONDecodeError:
            hp[name] = value
    args = {f.name: getattr(ns, f.name) for f in fields(TrainConfig) if f.name != "hparams"}
    args["out"] = args["out"] or f"runs/{ns.model}"
    try:
        return TrainConfig(**args, hparams=hp)
    except ValueError as e:
        p.error(str(e))


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    res = train(cfg)
    for rec in res["metrics"]:
        keys = [k for k in rec if k.endswith("/Pearson") or k in ("train/loss", "val/loss")]
        print(f"epoch {rec['epoch']}: " + "  ".join(f"{k} {rec[k]:.4f}" for k in keys), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
