"""The streaming dataset over a real build of the sample data: formats, order, sharding, resume, fork/spawn."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from pipeline.config import BuildConfig
from pipeline.precompute.khop import unpack
from pipeline.precompute.stages import PrecomputeConfig
from pipeline.sequence import run_build
from pipeline.stream.dataset import PerturbationStream

PRE = dict(artifacts=["masks", "khop", "adjacency-rows"], khop=(1, 2), chunk_samples=256, dense_edge_masks=True,
           lmdb=True, adjacency_steps=8, adjacency_rows=16, adjacency_negatives=8, dask_processes=False, workers=2)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stream")
    added = tmp / "added.tsv"
    added.write_text("id\tname\nGFP\tgfp\n")
    res = run_build(BuildConfig.create(graphs=["string12", "regulatory"], raw=tmp / "raw", out=tmp / "out",
                                datasets=["kuzmin2018", "costanzo2016"], added_genes=added,
                                precompute=PrecomputeConfig(**PRE)))
    return Path(res.graph).parent


def _ids(batches) -> list[int]:
    return [i for b in batches for i in b.sample_ids.tolist()]


def test_order_is_deterministic_and_epochs_differ(build):
    a = PerturbationStream(build, fmt="index", batch_size=32, seed=3)
    b = PerturbationStream(build, fmt="index", batch_size=32, seed=3)
    assert _ids(a) == _ids(b)
    assert sorted(set(_ids(a))) == sorted(a.ids.tolist())
    b.set_epoch(1)
    assert _ids(b) != _ids(a) and sorted(set(_ids(b))) == sorted(a.ids.tolist())


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_and_workers_cover_every_sample_once(build, world):
    per_rank = []
    for rank in range(world):
        ds = PerturbationStream(build, fmt="index", batch_size=16, rank=rank, world_size=world)
        got = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"))
        assert len(got) == len(ds)
        per_rank.append(got)
    assert len({len(g) for g in per_rank}) == 1  # equal batch counts per rank
    ids = [i for g in per_rank for i in _ids(g)]
    want = per_rank[0][0].sample_ids.new_tensor(PerturbationStream(build, fmt="index").ids).tolist()
    assert set(ids) == set(want)
    padded = len(ids) - len(want)
    assert 0 <= padded < 16 * world  # only the documented padding repeats samples


def test_resume_with_other_worker_count_yields_exactly_the_rest(build):
    ds = PerturbationStream(build, fmt="index", batch_size=16)
    full = _ids(ds)
    it = iter(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"))
    seen = [next(it) for _ in range(5)]
    state = ds.state_dict(last_step=seen[-1].step)
    ds2 = PerturbationStream(build, fmt="index", batch_size=16)
    ds2.load_state_dict(state)
    rest = _ids(DataLoader(ds2, batch_size=None, num_workers=3, multiprocessing_context="fork"))
    assert _ids(seen) + rest == full


def test_resume_with_other_world_size(build):
    ds = PerturbationStream(build, fmt="index", batch_size=16, rank=0, world_size=2)
    first = list(ds)[:3]
    state = ds.state_dict(last_step=first[-1].step)
    seen = _ids(first) + _ids(list(PerturbationStream(build, fmt="index", batch_size=16, rank=1,
                                                      world_size=2))[:3])
    assert len(seen) == len(set(seen)) == 6 * 16  # 3 rounds of 2 ranks, no padding yet
    rest = []
    for rank in range(3):
        d = PerturbationStream(build, fmt="index", batch_size=16, rank=rank, world_size=3)
        d.load_state_dict(state)
        mine = _ids(d)
        assert len(mine) == len(d) * 16  # full batches, as many on every rank
        rest += mine
    everything = set(ds.ids.tolist())
    assert not set(seen) & set(rest)  # nothing consumed before the checkpoint comes again ...
    assert set(rest) == everything - set(seen)  # ... and everything else does
    assert len(rest) - len(set(rest)) < 16 * 3  # repeats: only the new plan's padding


def test_graph_batch_masks_equal_precomputed_dense(build):
    ds = PerturbationStream(build, fmt="graph", batch_size=64)
    static = ds.static()
    z = zarr.open_group(str(build / "precomputed.zarr"), mode="r")
    batch = next(iter(ds))
    ids = batch.sample_ids.numpy()
    assert torch.equal(batch.node_mask(static), torch.from_numpy(z["node_mask/dense"].oindex[ids, :].astype(bool)))
    for t, m in batch.edge_masks(static).items():
        assert torch.equal(m, torch.from_numpy(z[f"edge_mask/{t}/dense"].oindex[ids, :].astype(bool))), t
    h = batch.to_hetero(static)
    assert h["gene"].node_mask.shape == (64, static.n_genes)
    assert not static.base[-1]  # the added gene is absent by default


def test_khop_batch_and_pyg_view(build):
    ds = PerturbationStream(build, fmt="khop", k=2, batch_size=32)
    static = ds.static()
    z = zarr.open_group(str(build / "precomputed.zarr"), mode="r")
    b = next(iter(ds))
    sets = b.node_sets(static.n_genes)
    want = unpack(z["khop/per_type/k2"].oindex[b.sample_ids.numpy(), :], static.n_genes)
    assert np.array_equal(sets.numpy(), want)
    pyg = b.to_pyg(static)
    from torch_geometric.data import Batch
    assert isinstance(pyg, Batch)
    assert pyg["gene"].n_id.numel() == int(sets.sum()) and pyg["gene"].ptr[-1] == pyg["gene"].n_id.numel()
    for t, (rows, e) in b.induced_edges(static).items():
        ei = static.edge_index[t]
        assert sets[rows, ei[0, e]].all() and sets[rows, ei[1, e]].all()
        assert pyg["gene", t, "gene"].edge_index.shape[1] == len(e)


def test_lmdb_layout_gives_the_zarr_batches(build):
    for fmt in ("graph", "khop"):
        a = list(PerturbationStream(build, fmt=fmt, batch_size=50))
        b = list(PerturbationStream(build, fmt=fmt, layout="lmdb", batch_size=50))
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x.sample_ids, y.sample_ids) and torch.equal(x.pert_genes, y.pert_genes)
            assert torch.equal(x.pert_ptr, y.pert_ptr) and torch.equal(x.pert_types, y.pert_types)
            if fmt == "graph":
                assert torch.equal(x.flip_genes, y.flip_genes) and torch.equal(x.flip_ptr, y.flip_ptr)
            else:
                assert torch.equal(x.bits, y.bits)


def test_transformer_batch_carries_the_steps_adjacency_rows(build):
    from pipeline.graph.store import open_graph
    from pipeline.precompute.adjacency import expand_rows

    ds = PerturbationStream(build, fmt="transformer", batch_size=32)
    g = open_graph(build / "graph.zarr")
    z = zarr.open_group(str(build / "precomputed.zarr"), mode="r")
    for b in list(ds)[:10]:
        assert b.adjacency, "a transformer batch without adjacency rows"
        for t, adj in b.adjacency.items():
            s = b.step % 8
            rows = z[f"adjacency/{t}/rows"][0, s]
            assert adj.rows.tolist() == rows.tolist()
            csr = g.csr(t)
            ptr, cols, target, pos = expand_rows(csr.indptr, csr.indices, csr.weights, rows,
                                                 z[f"adjacency/{t}/negatives"][0, s])
            assert adj.cols.tolist() == cols.tolist() and np.allclose(adj.target.numpy(), target)
            sums = torch.zeros(len(adj.rows)).index_add_(0, torch.repeat_interleave(
                torch.arange(len(adj.rows)), adj.row_ptr.diff()), adj.target)
            assert torch.allclose(sums[adj.rows >= 0], torch.ones(int((adj.rows >= 0).sum())), atol=1e-5)


def test_map_style_and_to_device(build):
    ds = PerturbationStream(build, fmt="graph", batch_size=8)
    one = ds[5]
    assert one.sample_ids.tolist() == [5] and len(one) == 1
    moved = one.to("cpu", non_blocking=True)
    assert moved.flip_genes.device.type == "cpu"


def _spawn_worker(q, build):  # module level: picklable for spawn
    ds = PerturbationStream(build, fmt="graph", batch_size=16)
    q.put(sorted(_ids(ds)))


def test_spawn_start_method(build):
    ds = PerturbationStream(build, fmt="graph", batch_size=16)
    got = _ids(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"))
    assert sorted(got) == sorted(_ids(ds))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_spawn_worker, args=(q, build))
    p.start()
    assert q.get(timeout=120) == sorted(_ids(ds))
    p.join()


def test_stream_benchmark_smoke(build, tmp_path, capsys):
    import json

    from benchmarks.stream import main as bench

    out = tmp_path / "s.json"
    assert bench(["--build", str(build), "--seconds", "0.2", "--batch-sizes", "16", "--workers", "0",
                  "--baseline-samples", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "baseline: HeteroData" in table and "graph" in table
    names = {r["name"] for r in json.loads(out.read_text())}
    assert {"stream.graph.zarr.b16.w0.samples_per_s", "stream.khop.lmdb.b16.w0.samples_per_s",
            "stream.transformer.zarr.b16.w0.samples_per_s", "stream.baseline.full_graph.samples_per_s"} <= names


def _train(step_fn, params, steps=40, lr=3e-3):
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = step_fn()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_reference_transformer_trains_from_the_stream(build):
    from trainers.models import GraphRegularisedTransformer, masked_mse

    torch.manual_seed(0)
    ds = PerturbationStream(build, fmt="transformer", batch_size=2)  # full attention over ~6k genes: keep it small
    static = ds.static()
    batch = next(iter(DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="fork")))
    graphs = list(batch.adjacency)[:2]
    model = GraphRegularisedTransformer(static.n_genes, static.gene_x.shape[1], d_model=8, n_heads=1,
                                        n_labels=2, reg_heads={graphs[0]: (0, 0), graphs[1]: (1, 0)})

    parts = []

    def step():
        pred, reg = model(static.gene_x, batch.pert_ptr, batch.pert_genes, batch.pert_types, batch.adjacency)
        assert torch.isfinite(pred).all() and torch.isfinite(reg)
        mse = masked_mse(pred, batch.y, batch.y_mask)
        parts.append((float(mse), float(reg)))
        return mse + reg

    losses = _train(step, model.parameters(), steps=25, lr=1e-2)
    assert losses[-1] < losses[0]
    assert parts[-1][0] < 0.5 * parts[0][0] and parts[-1][1] < parts[0][1]  # label loss and graph KL both fall
    with torch.no_grad():
        _, reg0 = model.eval()(static.gene_x, batch.pert_ptr, batch.pert_genes, batch.pert_types, batch.adjacency)
    assert reg0 > 0


def test_graph_reg_loss_is_zero_when_attention_matches():
    from pipeline.stream.batches import AdjRows
    from trainers.models import graph_reg_loss

    # one row (gene 0) whose target is uniform over genes 1 and 2; keys make attention exactly that
    n, big = 3, 50.0
    k = torch.zeros(1, n + 1, 1)
    k[0, 2, 0] = k[0, 3, 0] = big
    q = torch.ones(1, n + 1, 1)
    adj = AdjRows(torch.tensor([0, -1]), torch.tensor([0, 3, 3]), torch.tensor([1, 2, 0]),
                  torch.tensor([0.5, 0.5, 0.0]), torch.tensor([True, True, False]))
    assert float(graph_reg_loss(q, k, adj)) < 1e-6
    k[0, 3, 0] = 0.0
    assert float(graph_reg_loss(q, k, adj)) > 0.1


def test_reference_gnn_trains_with_expanded_masks(build):
    from trainers.models import MaskedGNN, masked_mse

    torch.manual_seed(0)
    ds = PerturbationStream(build, fmt="graph", batch_size=8)
    static = ds.static()
    batch = next(iter(ds))
    node_mask, edge_masks = batch.node_mask(static), batch.edge_masks(static)
    model = MaskedGNN(static.n_genes, static.gene_x.shape[1], list(static.edge_index), d_hidden=16, n_labels=2)

    def step():
        pred = model(static.gene_x, static.edge_index, node_mask, edge_masks, batch.pert_ptr, batch.pert_genes)
        return masked_mse(pred, batch.y, batch.y_mask)

    losses = _train(step, model.parameters())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    # a masked-out edge carries nothing: removing it from the graph changes no output
    t = next(t for t, m in edge_masks.items() if (~m).any())
    r, e = (int(x) for x in (~edge_masks[t]).nonzero()[0])
    keep = torch.ones(static.edge_index[t].shape[1], dtype=torch.bool)
    keep[e] = False
    ptr = batch.pert_ptr[r:r + 2] - batch.pert_ptr[r]
    genes = batch.pert_genes[int(batch.pert_ptr[r]):int(batch.pert_ptr[r + 1])]
    one = {k: v[r:r + 1] for k, v in edge_masks.items()}
    with torch.no_grad():
        a = model(static.gene_x, static.edge_index, node_mask[r:r + 1], one, ptr, genes)
        ei = {**static.edge_index, t: static.edge_index[t][:, keep]}
        b = model(static.gene_x, ei, node_mask[r:r + 1], {**one, t: one[t][:, keep]}, ptr, genes)
    assert torch.allclose(a, b, atol=1e-6)
