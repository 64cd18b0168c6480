"""The order of a streaming epoch: block shuffle, global batches, sharding, resume.

Pure numpy, no I/O. Contract:

- :func:`epoch_order`: a permutation of the sample ids, deterministic in (ids, chunk,
  seed, epoch). A *block* is the ids of one store chunk (``id // chunk``): blocks are
  permuted, then each window of ``window_blocks`` consecutive blocks is shuffled
  within itself, so a reader holds at most one window of chunks (quality knob: 1 =
  shuffle within a chunk only; larger = closer to a full shuffle). Sort keys are
  splitmix64 hashes, so the order is the same with any numpy.
- :func:`plan_epoch`: the epoch's global batches; their number is a multiple of
  ``world_size`` so every rank gets as many batches: the tail is padded with samples
  from the start of the order (``drop_last=False``; counted in ``n_padded``) or
  dropped (counted in ``n_dropped``).
- :func:`batches_for`: global batch ``b`` belongs to rank ``b % world_size``; a rank's
  batches are dealt round-robin to its DataLoader workers, in groups of ``group``
  consecutive batches (a worker hands a group over at once), the order in which the
  DataLoader interleaves them, so the rank sees its batches in order.
- Resume: after ``start`` global batches (all ranks consumed theirs), :func:`batches_for`
  with ``start`` gives exactly the remaining batches for any number of workers; for
  another number of ranks, :func:`remaining` gives the samples still due, to re-plan
  with :func:`plan_epoch`. Ranks advance in lockstep, so a ``start`` that is not a
  multiple of ``world_size`` (e.g. ``last_step + 1`` as seen by a low rank) is rounded
  *up* to whole rounds: when any rank has finished its k-th batch, every rank has, so
  ``ceil(start / world_size)`` batches per rank count as consumed. :func:`remaining`
  rounds the same way when given the plan's ``world_size``.

>>> order = epoch_order(np.arange(10), chunk=4, seed=0, epoch=0, shuffle=False)
>>> plan = plan_epoch(order, batch_size=3, world_size=2)
>>> plan.batches.tolist(), plan.n_padded
([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]], 2)
>>> batches_for(plan, start=0, rank=1, world_size=2, worker=0, num_workers=1).tolist()
[1, 3]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pipeline.core.splitmix import splitmix64


def _keys(values: np.ndarray, *salt: int) -> np.ndarray:
    h = np.asarray(values, dtype=np.uint64)
    for s in salt:
        h = splitmix64(h, int(s) & 0xFFFFFFFFFFFFFFFF)
    return h


def _int_array(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array (sample ids), or a ValueError naming ``name``."""
    a = np.asarray(values)
    if a.ndim != 1 or not (a.dtype.kind in "iu" or a.size == 0):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.int64)


def epoch_order(ids: np.ndarray, *, chunk: int, seed: int, epoch: int, shuffle: bool = True,
                window_blocks: int = 4) -> np.ndarray:
    """The epoch's permutation of ``ids`` (see the module docstring)."""
    ids = _int_array(ids, "ids")
    if chunk < 1 or window_blocks < 1:
        raise ValueError(f"chunk and window_blocks must be >= 1, got {chunk}, {window_blocks}")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be non-negative sample ids")
    if not shuffle or len(ids) == 0:
        return ids.copy()
    block = ids // chunk
    blocks = np.unique(block)  # sorted
    perm = np.argsort(_keys(blocks, seed, epoch, 1), kind="stable")  # block blocks[perm[j]] goes j-th
    rank = np.empty(len(blocks), dtype=np.int64)
    rank[perm] = np.arange(len(perm))
    window = rank[np.searchsorted(blocks, block)] // window_blocks
    within = _keys(ids, seed, epoch, 2)
    return ids[np.lexsort((within, window))]


@dataclass(frozen=True)
class Plan:
    """The global batches of one epoch."""

    batches: np.ndarray  # int64 [n_batches, batch_size] sample ids
    n_padded: int  # samples repeated to fill the last batches (drop_last=False)
    n_dropped: int  # samples dropped (drop_last=True)


def plan_epoch(order: np.ndarray, *, batch_size: int, world_size: int = 1, drop_last: bool = False) -> Plan:
    """Cut ``order`` into global batches, a multiple of ``world_size`` of them."""
    if batch_size < 1 or world_size < 1:
        raise ValueError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
    order = _int_array(order, "order")
    per_round = batch_size * world_size
    if drop_last:
        n = (len(order) // per_round) * per_round
        return Plan(order[:n].reshape(-1, batch_size), 0, len(order) - n)
    if len(order) == 0:
        return Plan(np.zeros((0, batch_size), np.int64), 0, 0)
    n = -(-len(order) // per_round) * per_round
    pad = n - len(order)
    filled = np.concatenate([order, np.resize(order, pad)]) if pad else order
    return Plan(filled.reshape(-1, batch_size), pad, 0)


def batches_for(plan: Plan, *, start: int, rank: int, world_size: int, worker: int, num_workers: int,
                group: int = 1) -> np.ndarray:
    """Indices into ``plan.batches`` that (rank, worker) yields, in order, from global batch ``start`` on.

    ``start`` is rounded up to a whole round of ``world_size`` batches (ranks advance in lockstep).
    ``world_size`` must be the one the plan was made for (its batch count is a multiple of it).
    The rank's batches are dealt to workers ``group`` at a time (the worker's list is whole
    groups, its last one possibly short).

    >>> plan = plan_epoch(np.arange(12), batch_size=1)
    >>> batches_for(plan, start=0, rank=0, world_size=1, worker=1, num_workers=2, group=2).tolist()
    [2, 3, 6, 7, 10, 11]
    """
    if not (0 <= rank < world_size and 0 <= worker < num_workers) or group < 1:
        raise ValueError(f"rank {rank} of {world_size}, worker {worker} of {num_workers}, group {group}: "
                         "out of range")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if len(plan.batches) % world_size:
        raise ValueError(f"the plan has {len(plan.batches)} batches, not a multiple of world_size {world_size}: "
                         "re-plan with plan_epoch(remaining(plan, start), world_size=...)")
    start = -(-int(start) // world_size) * world_size
    mine = np.arange(start + rank, len(plan.batches), world_size, dtype=np.int64)
    if group == 1:
        return mine[worker::num_workers]
    return mine[(np.arange(len(mine)) // group) % num_workers == worker]


def remaining(plan: Plan, start: int, *, world_size: int = 1) -> np.ndarray:
    """Sample ids not yet consumed after ``start`` global batches, in order, without the padding.

    ``start`` is rounded up to a multiple of ``world_size`` (pass the plan's, as :func:`batches_for`
    does; the default 1 takes ``start`` as is). Samples dropped by ``drop_last`` are not in the plan,
    so not in the result either.
    """
    if start < 0 or world_size < 1:
        raise ValueError(f"start must be >= 0 and world_size >= 1, got {start}, {world_size}")
    start = -(-int(start) // world_size) * world_size
    flat = plan.batches.reshape(-1)
    real = len(flat) - plan.n_padded
    begin = min(start * plan.batches.shape[1], real) if plan.batches.size else 0
    return flat[begin:real]


def state_dict(epoch: int, start: int, seed: int) -> dict[str, int]:
    """The resume state: the epoch, the global batches consumed in it, and the shuffle seed."""
    return {"epoch": int(epoch), "start": int(start), "seed": int(seed)}
