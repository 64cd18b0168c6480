"""The streaming epoch order: block shuffle, global batches, sharding over ranks x workers, resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.stream.order import Plan, batches_for, epoch_order, plan_epoch, remaining, state_dict

CHUNK = 64


def _subset(n_store: int = 1000, keep: float = 0.7, seed: int = 0) -> np.ndarray:
    """A train-split-like subset of the store's ids: ascending, gappy, blocks of unequal size."""
    rng = np.random.default_rng(seed)
    return np.flatnonzero(rng.random(n_store) < keep).astype(np.int64)


def _rank_order(plan: Plan, *, start: int, rank: int, world_size: int, num_workers: int, group: int = 1) -> list[int]:
    """What a DataLoader hands the rank: worker outputs (groups of ``group`` batches) interleaved
    round-robin, as torch does, then flattened."""
    per_worker = []
    for w in range(num_workers):
        mine = batches_for(plan, start=start, rank=rank, world_size=world_size, worker=w, num_workers=num_workers,
                           group=group).tolist()
        per_worker.append([mine[i:i + group] for i in range(0, len(mine), group)])
    out = []
    for k in range(sum(map(len, per_worker))):
        w = k % num_workers
        assert k // num_workers < len(per_worker[w]), "a worker ran dry before its turn: not round-robin"
        out += per_worker[w][k // num_workers]
    return out


# --- epoch_order ---------------------------------------------------------------------------------

def test_deterministic_in_seed_and_epoch():
    ids = _subset()
    a = epoch_order(ids, chunk=CHUNK, seed=3, epoch=1)
    assert np.array_equal(a, epoch_order(ids.copy(), chunk=CHUNK, seed=3, epoch=1))
    assert not np.array_equal(a, epoch_order(ids, chunk=CHUNK, seed=3, epoch=2))
    assert not np.array_equal(a, epoch_order(ids, chunk=CHUNK, seed=4, epoch=1))
    assert a.dtype == np.int64


def test_pinned_values_do_not_drift():
    # splitmix64 keys: the same order with any numpy; a change here breaks mid-epoch resume of old states
    assert epoch_order(np.arange(12), chunk=4, seed=0, epoch=0, window_blocks=1).tolist() == \
        [6, 4, 7, 5, 9, 11, 8, 10, 1, 2, 0, 3]
    assert epoch_order(np.arange(12), chunk=4, seed=0, epoch=0, window_blocks=2).tolist() == \
        [9, 6, 4, 7, 11, 8, 5, 10, 1, 2, 0, 3]


def test_no_shuffle_is_identity():
    ids = _subset()
    out = epoch_order(ids, chunk=CHUNK, seed=3, epoch=5, shuffle=False)
    assert np.array_equal(out, ids)
    out[0] = -7  # a copy, not a view
    assert ids[0] != -7


@pytest.mark.parametrize("window_blocks", [1, 2, 3, 100])
@pytest.mark.parametrize("n_store", [0, 1, 63, 64, 65, 1000])
def test_is_a_permutation(window_blocks, n_store):
    ids = _subset(n_store) if n_store else np.zeros(0, np.int64)
    out = epoch_order(ids, chunk=CHUNK, seed=1, epoch=0, window_blocks=window_blocks)
    assert np.array_equal(np.sort(out), ids)


def _runs(values: np.ndarray) -> list[int]:
    """Values of consecutive runs (``[1, 1, 2, 1] -> [1, 2, 1]``)."""
    return values[np.r_[True, values[1:] != values[:-1]]].tolist()


def test_window_one_keeps_blocks_contiguous():
    ids = _subset(2000)
    for epoch in range(3):
        out = epoch_order(ids, chunk=CHUNK, seed=7, epoch=epoch, window_blocks=1)
        runs = _runs(out // CHUNK)
        assert len(runs) == len(set(runs)) == len(np.unique(ids // CHUNK))  # each chunk is one run
        assert runs != sorted(runs)  # the blocks are permuted
        first = out[: np.count_nonzero(ids // CHUNK == runs[0])]
        assert not np.array_equal(first, np.sort(first))  # and shuffled within


@pytest.mark.parametrize("window_blocks", [2, 3, 5])
def test_a_window_holds_window_blocks_chunks(window_blocks):
    ids = _subset(3000)
    out = epoch_order(ids, chunk=CHUNK, seed=2, epoch=0, window_blocks=window_blocks)
    blocks = out // CHUNK
    # the blocks' first appearances, in order, cut the order into windows of window_blocks blocks
    _, first = np.unique(blocks, return_index=True)
    block_seq = blocks[np.sort(first)]
    window_of = {b: i // window_blocks for i, b in enumerate(block_seq.tolist())}
    windows = np.array([window_of[b] for b in blocks.tolist()])
    assert np.all(np.diff(windows) >= 0)  # a window's samples are contiguous, windows in order
    assert max(np.bincount(windows)) <= window_blocks * CHUNK


def test_larger_windows_mix_more():
    ids = np.arange(64 * CHUNK)
    same_chunk = []
    for w in (1, 2, 4, 8, 16):
        out = epoch_order(ids, chunk=CHUNK, seed=11, epoch=0, window_blocks=w)
        b = out // CHUNK
        same_chunk.append(float(np.mean(b[1:] == b[:-1])))  # ~1/w for a window of w equal blocks
    assert same_chunk[0] > 0.98
    assert all(x > y for x, y in itertools.pairwise(same_chunk)), same_chunk
    assert abs(same_chunk[-1] - 1 / 16) < 0.03


def test_epoch_order_bad_arguments():
    ids = np.arange(10)
    with pytest.raises(ValueError):
        epoch_order(ids, chunk=0, seed=0, epoch=0)
    with pytest.raises(ValueError):
        epoch_order(ids, chunk=4, seed=0, epoch=0, window_blocks=0)
    with pytest.raises(ValueError):
        epoch_order(np.array([-1, 2]), chunk=4, seed=0, epoch=0)
    with pytest.raises(ValueError):
        epoch_order(ids.reshape(2, 5), chunk=4, seed=0, epoch=0)
    with pytest.raises(ValueError):
        epoch_order(ids.astype(float), chunk=4, seed=0, epoch=0)


# --- plan_epoch / batches_for ----------------------------------------------------------------------

SIZES = [0, 1, 2, 5, 7, 16, 17, 31, 100]
BATCH = [1, 3, 8]
WORLD = [1, 2, 3, 4]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", SIZES)
def test_every_sample_once_and_equal_counts(n, drop_last):
    order = epoch_order(np.arange(n), chunk=4, seed=0, epoch=0)
    for batch_size, world in itertools.product(BATCH, WORLD):
        plan = plan_epoch(order, batch_size=batch_size, world_size=world, drop_last=drop_last)
        assert plan.batches.dtype == np.int64 and plan.batches.shape[1] == batch_size
        assert len(plan.batches) % world == 0
        assert not np.any(plan.batches < 0)
        per_rank = []
        seen = []
        for rank in range(world):
            mine = []
            for worker in range(3):
                b = batches_for(plan, start=0, rank=rank, world_size=world, worker=worker, num_workers=3)
                mine += b.tolist()
            per_rank.append(len(mine))
            seen += plan.batches[mine].reshape(-1).tolist()
        assert len(set(per_rank)) == 1, (n, batch_size, world, per_rank)
        counts = np.bincount(np.asarray(seen, dtype=np.int64), minlength=n)
        if drop_last:
            assert plan.n_padded == 0
            assert plan.n_dropped == n - len(seen) < batch_size * world
            assert counts.max(initial=0) <= 1 and counts.sum() == len(seen)
            assert seen == [] or sorted(seen) == sorted(order[: len(seen)].tolist())  # the tail is dropped
        else:
            assert plan.n_dropped == 0
            assert len(seen) == n + plan.n_padded
            assert plan.n_padded < batch_size * world or n == 0
            assert np.all(counts >= 1)  # every sample at least once ...
            if n:
                # ... and the pads repeat the start of the order, cyclically
                assert plan.batches.reshape(-1)[n:].tolist() == np.resize(order, plan.n_padded).tolist()
            if plan.n_padded <= n:
                assert counts.sum() - n == plan.n_padded and counts.max(initial=0) <= 2


def test_small_dataset_is_padded_to_one_round():
    plan = plan_epoch(np.array([5, 6]), batch_size=3, world_size=2)
    assert plan.batches.tolist() == [[5, 6, 5], [6, 5, 6]] and plan.n_padded == 4
    plan = plan_epoch(np.array([5, 6]), batch_size=3, world_size=2, drop_last=True)
    assert plan.batches.shape == (0, 3) and plan.n_dropped == 2


@pytest.mark.parametrize("world,num_workers", list(itertools.product(WORLD, [1, 2, 3, 5])))
def test_batches_for_partitions_and_interleaves_in_order(world, num_workers):
    plan = plan_epoch(np.arange(203), batch_size=4, world_size=world)
    owner = {}
    for rank, worker in itertools.product(range(world), range(num_workers)):
        got = batches_for(plan, start=0, rank=rank, world_size=world, worker=worker, num_workers=num_workers)
        assert np.all(np.diff(got) > 0)  # each worker yields its batches in order
        for b in got.tolist():
            assert b not in owner
            owner[b] = (rank, worker)
            assert b % world == rank
    assert sorted(owner) == list(range(len(plan.batches)))
    for rank in range(world):
        assert _rank_order(plan, start=0, rank=rank, world_size=world, num_workers=num_workers) == \
            list(range(rank, len(plan.batches), world))


@pytest.mark.parametrize("world,num_workers,group", list(itertools.product(WORLD, [1, 2, 3], [2, 5])))
def test_grouped_hand_over_keeps_the_rank_order(world, num_workers, group):
    plan = plan_epoch(np.arange(203), batch_size=4, world_size=world)
    for start in (0, world * 3):
        for rank in range(world):
            want = list(range(start + rank, len(plan.batches), world))
            got = _rank_order(plan, start=start, rank=rank, world_size=world, num_workers=num_workers, group=group)
            assert got == want


@pytest.mark.parametrize("world", WORLD)
def test_resume_with_other_worker_count(world):
    plan = plan_epoch(epoch_order(np.arange(500), chunk=32, seed=1, epoch=2), batch_size=7, world_size=world)
    n_batches = len(plan.batches)
    for k, (w_before, w_after) in itertools.product(range(0, n_batches + 1, world), [(2, 3), (3, 1), (1, 4)]):
        for rank in range(world):
            full = _rank_order(plan, start=0, rank=rank, world_size=world, num_workers=w_before)
            done = k // world  # every rank consumed as many batches
            rest = _rank_order(plan, start=k, rank=rank, world_size=world, num_workers=w_after)
            assert full[:done] + rest == full


def test_resume_start_not_a_multiple_of_world_size_rounds_up():
    plan = plan_epoch(np.arange(100), batch_size=5, world_size=2)
    # rank 0 finished global batch 4 (its 3rd) => in lockstep rank 1 finished batch 5: 6 are consumed
    for rank in range(2):
        a = batches_for(plan, start=5, rank=rank, world_size=2, worker=0, num_workers=1)
        b = batches_for(plan, start=6, rank=rank, world_size=2, worker=0, num_workers=1)
        assert np.array_equal(a, b) and a[0] == 6 + rank
    assert np.array_equal(remaining(plan, 5, world_size=2), remaining(plan, 6))
    assert np.array_equal(remaining(plan, 5), np.arange(25, 100))  # world_size=1: start as is


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [0, 3, 50, 97])
def test_resume_with_other_world_size(n, drop_last):
    order = epoch_order(np.arange(n), chunk=16, seed=5, epoch=0)
    for w_old, w_new, batch_size in itertools.product(WORLD, WORLD, [1, 4, 6]):
        plan = plan_epoch(order, batch_size=batch_size, world_size=w_old, drop_last=drop_last)
        kept = plan.batches.reshape(-1)[: plan.batches.size - plan.n_padded]
        for k in range(0, len(plan.batches) + 1, w_old):
            consumed = plan.batches[:k].reshape(-1)[: min(k * batch_size, len(kept))]
            rest = remaining(plan, k, world_size=w_old)
            assert consumed.tolist() + rest.tolist() == kept.tolist()  # in order, pads excluded
            new = plan_epoch(rest, batch_size=batch_size, world_size=w_new, drop_last=drop_last)
            seen = []
            for rank, worker in itertools.product(range(w_new), range(2)):
                seen += new.batches[batches_for(new, start=0, rank=rank, world_size=w_new, worker=worker,
                                                num_workers=2)].reshape(-1).tolist()
            counts = np.bincount(np.asarray(seen, dtype=np.int64), minlength=max(n, 1))
            if drop_last:
                assert len(seen) + new.n_dropped == len(rest) and counts.max(initial=0) <= 1
            else:
                assert sorted(set(seen)) == sorted(rest.tolist())  # the remaining samples, each ...
                assert len(seen) - len(rest) == new.n_padded  # ... exactly once besides the new pads


def test_remaining_past_the_end_and_in_the_padding():
    plan = plan_epoch(np.arange(10), batch_size=4, world_size=1)  # 3 batches, 2 pads
    assert remaining(plan, 2).tolist() == [8, 9]
    assert remaining(plan, 3).tolist() == [] and remaining(plan, 99).tolist() == []
    empty = plan_epoch(np.zeros(0, np.int64), batch_size=4)
    assert remaining(empty, 0).tolist() == []


def test_plan_and_shard_bad_arguments():
    order = np.arange(10)
    with pytest.raises(ValueError):
        plan_epoch(order, batch_size=0)
    with pytest.raises(ValueError):
        plan_epoch(order, batch_size=2, world_size=0)
    with pytest.raises(ValueError):
        plan_epoch(order.reshape(2, 5), batch_size=2)
    plan = plan_epoch(order, batch_size=2, world_size=2)  # 6 batches
    for kw in [dict(rank=2), dict(rank=-1), dict(worker=1), dict(num_workers=0, worker=0), dict(start=-1)]:
        args = dict(start=0, rank=0, world_size=2, worker=0, num_workers=1) | kw
        with pytest.raises(ValueError):
            batches_for(plan, **args)
    with pytest.raises(ValueError, match="world_size"):  # a plan for 2 ranks used with 4
        batches_for(plan, start=0, rank=0, world_size=4, worker=0, num_workers=1)
    with pytest.raises(ValueError):
        remaining(plan, -1)
    with pytest.raises(ValueError):
        remaining(plan, 0, world_size=0)


# --- state ---------------------------------------------------------------------------------------

def test_state_round_trip():
    s = state_dict(epoch=3, start=12, seed=np.int64(7))
    assert s == {"epoch": 3, "start": 12, "seed": 7} and all(type(v) is int for v in s.values())
