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
    res = run_build(BuildConfig.create(graphs=["string12", "regulatory"], out=tmp / "out",  # inputs: the samples
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


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", ["zarr", "lmdb"])
def test_transformer_rows_expand_to_exactly_expand_rows(build, weighted, layout):
    """Every graph of every step: the compact rows expanded from the static CSR equal expand_rows."""
    from pipeline.graph.store import open_graph
    from pipeline.precompute.adjacency import expand_rows
    from pipeline.precompute.store import open_precomputed

    ds = PerturbationStream(build, fmt="transformer", batch_size=32, weighted_targets=weighted, layout=layout)
    static = ds.static()
    g = open_graph(build / "graph.zarr")
    assert g.added.any(), "the fixture has an added gene"
    pre = open_precomputed(build / "precomputed.zarr")
    batches = list(ds)[:10]
    assert {b.step % 8 for b in batches} == set(range(8))  # every stored step
    for b in batches:
        assert set(b.rows) == set(ds.adjacency_graphs) and b.rows
        on_gpu = b.adjacency_torch(static)  # every graph at once, one host sync
        assert list(on_gpu) == list(b.rows)
        for t, adj in b.adjacency(static).items():
            s = b.step % 8
            rows, negs = pre.adjacency(t, 0, s)  # the stored packed negatives, unpacked
            csr = g.csr(t)
            ptr, cols, target, pos = expand_rows(csr.indptr, csr.indices, csr.weights, rows, negs, weighted=weighted)
            assert adj.rows.tolist() == rows.tolist() and adj.row_ptr.tolist() == ptr.tolist(), t
            assert adj.cols.tolist() == cols.tolist() and adj.positive.tolist() == pos.tolist(), t
            assert np.array_equal(adj.target.numpy(), target), t  # bit-exact, not allclose
            assert not (~static.valid[adj.cols]).any() and not (~static.valid[adj.rows[adj.valid]]).any()
            assert b.rows[t].negatives().tolist() == negs.tolist()
            for gpu_path in (b.rows[t].expand_torch(static, t), on_gpu[t]):  # the torch ops a GPU runs, on the CPU
                assert gpu_path.cols.tolist() == cols.tolist() and gpu_path.row_ptr.tolist() == ptr.tolist(), t
                assert np.array_equal(gpu_path.target.numpy(), target) and gpu_path.positive.tolist() == pos.tolist()


@pytest.mark.parametrize("case", ["pads", "no_negatives", "no_edges", "last_row_last_gene"])
def test_compact_rows_expand_equals_expand_rows_on_edge_cases(case):
    """Both expansion paths (numpy on the CPU, the torch ops a GPU runs) equal expand_rows on a small
    CSR: pad rows (-1), pad negatives, a row of degree 0, rows at the CSR's end, no negatives, no edges."""
    from pipeline.precompute.adjacency import NegativePacking, expand_rows
    from pipeline.stream.batches import CompactRows, GraphStatic

    n = 12
    if case == "no_edges":
        indptr, indices = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    else:
        rng = np.random.default_rng(0)
        deg = rng.integers(0, 5, n)
        deg[3] = 0
        indptr = np.concatenate([[0], np.cumsum(deg)])
        indices = np.concatenate([np.sort(rng.choice(n, d, replace=False)) for d in deg]).astype(np.int64)
    weights = np.ones(len(indices), np.float32)
    rows = np.array([0, 3, 11, -1, 7, 10] if case != "last_row_last_gene" else [9, 10, 11], np.int64)
    m = 0 if case == "no_negatives" else 5
    neg = np.full((len(rows), m), -1, np.int64)
    for i, r in enumerate(rows):
        if r >= 0 and m:
            k = i % (m + 1)  # 0..m valid negatives, pads at the end
            neg[i, :k] = np.sort(np.setdiff1d(np.arange(n), indices[indptr[r]:indptr[r + 1]]))[:k]
    pk = NegativePacking.for_genes(n, m)
    packed = torch.from_numpy(pk.pack(neg))
    lo = len(rows) * pk.padded
    c = CompactRows(torch.from_numpy(rows.astype(np.int16)), packed[:lo], packed[lo:], n_neg=m, bits=pk.bits)
    target = 1.0 / (np.diff(indptr)[np.repeat(np.arange(n), np.diff(indptr))] + 1e-8)
    st = GraphStatic(torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool), torch.zeros(n, 0))
    st.adj_ptr["g"], st.adj_cols["g"] = torch.from_numpy(indptr), torch.from_numpy(indices)
    st.adj_target["g"] = torch.from_numpy(target.astype(np.float32))
    ptr, cols, tgt, pos = expand_rows(indptr, indices, weights, rows, neg)
    for got in (c.expand(st, "g"), c.expand_torch(st, "g")):
        assert got.rows.tolist() == rows.tolist() and got.row_ptr.tolist() == ptr.tolist()
        assert got.cols.dtype == torch.int64 and got.cols.tolist() == cols.tolist()
        assert np.array_equal(got.target.numpy(), tgt) and got.positive.tolist() == pos.tolist()


def test_transformer_rows_of_some_graphs_in_another_order(build):
    """adjacency_graphs picks stored graphs (any order): each step's two tensors hold those, in that order."""
    from pipeline.precompute.store import open_precomputed

    pre = open_precomputed(build / "precomputed.zarr")
    stored = pre.adjacency_graphs
    assert len(stored) >= 2
    pick = [stored[-1], stored[0]]
    ds = PerturbationStream(build, fmt="transformer", batch_size=32, adjacency_graphs=pick)
    p = pre.adjacency_packing.step_bytes(pre.manifest["parameters"]["adjacency"]["rows"])
    for b in list(ds)[:9]:
        assert list(b.rows) == pick and b.rows.packed.shape == (2, p) and b.rows.rows.shape[0] == 2
        for t in pick:
            rows, negs = pre.adjacency(t, 0, b.step % 8)
            assert b.rows[t].rows.tolist() == rows.tolist() and b.rows[t].negatives().tolist() == negs.tolist()
    with pytest.raises(KeyError):
        b.rows["nope"]


def test_transformer_ships_compact_rows(build):
    from multiprocessing.reduction import ForkingPickler

    ds = PerturbationStream(build, fmt="transformer", batch_size=32)
    b = next(iter(ds))
    c = next(iter(b.rows.values()))
    assert c.rows.dtype == torch.int16 and c.neg_lo.dtype == torch.uint8 and c.neg_hi.dtype == torch.uint8
    back = ForkingPickler.loads(ForkingPickler.dumps(b))  # the worker -> main hand-over
    assert type(back) is type(b) and back.step == b.step and torch.equal(back.pert_genes, b.pert_genes)
    for t in b.rows:
        assert torch.equal(back.rows[t].negatives(), b.rows[t].negatives())


def test_records_from_another_build_are_refused(build, tmp_path):
    import json
    import shutil

    import lmdb

    from pipeline.core.errors import StoreError
    from pipeline.precompute.records.format import MANIFEST_KEY, META_DB

    copy = tmp_path / "b"
    shutil.copytree(build, copy)
    env = lmdb.open(str(copy / "records.lmdb"), max_dbs=4, subdir=True)
    meta = env.open_db(META_DB)
    with env.begin(write=True, db=meta) as txn:
        m = json.loads(bytes(txn.get(MANIFEST_KEY)))
        m["build_key"] = "0" * 64
        txn.put(MANIFEST_KEY, json.dumps(m).encode())
    env.close()
    PerturbationStream(copy, fmt="index")  # the zarr layout does not read the records
    with pytest.raises(StoreError, match="records.lmdb was written from another build .*rebuild with --lmdb"):
        PerturbationStream(copy, fmt="index", layout="lmdb")


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(batch_size=2.5), "batch_size must be an integer"),
    (dict(batch_size=True), "batch_size must be an integer"),
    (dict(window_blocks=0), "window_blocks must be an integer >= 1"),
    (dict(k=0), "k must be an integer >= 1"),
    (dict(khop_mode="nope"), "khop_mode 'nope'"),
    (dict(rank=2, world_size=2), "rank 2 out of range"),
    (dict(fmt="transformer", adjacency_graphs=["nope"]), r"adjacency_graphs \['nope'\]"),
])
def test_bad_arguments_are_refused(build, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerturbationStream(build, **{"fmt": "index", **kwargs})


def test_bad_state_dicts_are_refused_field_by_field(build):
    ds = PerturbationStream(build, fmt="index", batch_size=16)
    good = ds.state_dict(last_step=3)
    for key, bad, match in [("start", -1, "'start' must be an integer >= 0"),
                            ("epoch", "1", "'epoch' must be an integer"),
                            ("world_size", 0, "'world_size' must be an integer >= 1"),
                            ("seed", 9, "seed 9 differs"), ("batch_size", 8, "batch_size 8 differs")]:
        with pytest.raises(ValueError, match=match):
            ds.load_state_dict({**good, key: bad})
    with pytest.raises(ValueError, match="missing 'epoch'"):
        ds.load_state_dict({k: v for k, v in good.items() if k != "epoch"})
    with pytest.raises(ValueError, match="expected a dict"):
        ds.load_state_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("drop_last", [False, True])
def test_pad_marks_exactly_the_repeated_samples(build, drop_last):
    ds = PerturbationStream(build, fmt="graph", batch_size=48, world_size=1, rank=0, drop_last=drop_last)
    batches = list(ds)
    real = [i for b in batches for i, p in zip(b.sample_ids.tolist(), b.pad.tolist(), strict=True) if not p]
    assert len(real) == len(set(real))  # no real sample twice
    if drop_last:
        assert not any(b.pad.any() for b in batches) and len(real) == len(ds.ids) // 48 * 48
    else:
        assert sorted(real) == sorted(ds.ids.tolist())  # ... and every sample once
        assert batches[-1].pad.any() and all(len(b) == 48 for b in batches)
        assert torch.equal(batches[-1].valid, ~batches[-1].pad)


@pytest.mark.parametrize("num_workers,group", [(2, 3), (3, 1)])
def test_stream_loader_gives_the_dataloader_batches_and_resumes(build, num_workers, group):
    from pipeline.stream import StreamLoader

    ds = PerturbationStream(build, fmt="graph", batch_size=16)
    want = list(ds)
    got = list(StreamLoader(ds, num_workers=num_workers, group=group, multiprocessing_context="fork"))
    assert [b.step for b in got] == [b.step for b in want] and _ids(got) == _ids(want)
    assert all(torch.equal(x.flip_genes, y.flip_genes) and torch.equal(x.pad, y.pad) for x, y in zip(got, want))
    it = iter(StreamLoader(ds, num_workers=num_workers, group=group, multiprocessing_context="fork"))
    seen = [next(it) for _ in range(7)]
    del it
    ds2 = PerturbationStream(build, fmt="graph", batch_size=16)
    ds2.load_state_dict(ds.state_dict(last_step=seen[-1].step))
    rest = list(StreamLoader(ds2, num_workers=2, group=4, multiprocessing_context="fork"))
    assert _ids(seen) + _ids(rest) == _ids(want)


def test_negative_packing_round_trips():
    from pipeline.stream.batches import neg_bits, pack_negatives, unpack_negatives

    rng = np.random.default_rng(0)
    for n_genes in (7, 255, 256, 6607, 65535):
        bits = neg_bits(n_genes)
        v = rng.integers(-1, n_genes, size=(3, 64))
        lo, hi = pack_negatives(v, bits)
        assert lo.dtype == np.uint8 and hi.shape == (3, 64 // 8 * (bits - 8))
        for i in range(3):
            got = unpack_negatives(torch.from_numpy(lo[i]), torch.from_numpy(hi[i]), bits)
            assert got.tolist() == v[i].tolist(), n_genes
    with pytest.raises(ValueError, match="16 bits"):
        neg_bits(65536)


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
    assert bench(["--build", str(build), "--seconds", "0.2", "--batch-sizes", "16", "--workers", "0", "1",
                  "--baseline-samples", "2", "--peers", "none", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "baseline: HeteroData" in table and "graph" in table and "CPU-expanded" in table
    names = {r["name"] for r in json.loads(out.read_text())}
    assert {"stream.graph.zarr.b16.w0.samples_per_s", "stream.khop.lmdb.b16.w1.samples_per_s",
            "stream.transformer.zarr.b16.w1.step_bytes", "stream.transformer.lmdb.b16.w0.steps_per_s",
            "stream.baseline.transformer_cpu_expanded.b16.w1.steps_per_s",
            "stream.transformer.expand_device_cpu.steps_per_s", "stream.baseline.full_graph.samples_per_s"} <= names


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
    adj = batch.adjacency(static)
    graphs = list(adj)[:2]
    model = GraphRegularisedTransformer(static.n_genes, static.gene_x.shape[1], d_model=8, n_heads=1,
                                        n_labels=2, reg_heads={graphs[0]: (0, 0), graphs[1]: (1, 0)})

    parts = []

    def step():
        pred, reg = model(static.gene_x, batch.pert_ptr, batch.pert_genes, batch.pert_types, adj)
        assert torch.isfinite(pred).all() and torch.isfinite(reg)
        mse = masked_mse(pred, batch.y, batch.y_mask)
        parts.append((float(mse), float(reg)))
        return mse + reg

    losses = _train(step, model.parameters(), steps=25, lr=1e-2)
    assert losses[-1] < losses[0]
    assert parts[-1][0] < 0.5 * parts[0][0] and parts[-1][1] < parts[0][1]  # label loss and graph KL both fall
    with torch.no_grad():
        _, reg0 = model.eval()(static.gene_x, batch.pert_ptr, batch.pert_genes, batch.pert_types, adj)
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


@pytest.mark.parametrize("fmt", ["index", "graph", "khop", "transformer"])
def test_batches_equal_the_store_read_sample_by_sample(build, fmt):
    """Blocks gathered at once and cut into batches by views: every batch equals what the store holds
    for its samples, read independently of the stream (whole arrays, sample by sample)."""
    from pipeline.precompute.store import open_precomputed

    ds = PerturbationStream(build, fmt=fmt, batch_size=24, seed=3)
    z = open_precomputed(build / "precomputed.zarr")
    ptr, genes, types = z.perturbations()
    fptr, fgenes = z.node_mask_flips()
    bits = z.khop_bits(1, "per_type")
    batches = list(ds)
    assert len(batches) > 16  # more than one block
    for b in batches:
        ids = b.sample_ids.numpy()
        want = [genes[ptr[i]:ptr[i + 1]] for i in ids]
        assert b.pert_ptr.tolist() == np.concatenate([[0], np.cumsum([len(w) for w in want])]).tolist()
        assert b.pert_genes.tolist() == np.concatenate(want).tolist() and b.pert_genes.dtype == torch.int64
        assert b.pert_types.tolist() == np.concatenate([types[ptr[i]:ptr[i + 1]] for i in ids]).tolist()
        assert np.array_equal(b.y.numpy(), ds.y[ids]) and np.array_equal(b.y_mask.numpy(), ds.y_mask[ids])
        if fmt == "graph":
            assert b.flip_genes.tolist() == np.concatenate([fgenes[fptr[i]:fptr[i + 1]] for i in ids]).tolist()
            assert b.flip_ptr[-1] == len(b.flip_genes) and b.flip_ptr[0] == 0
        if fmt == "khop":
            assert np.array_equal(b.bits.numpy(), bits[ids])
        if fmt == "transformer":
            assert list(b.rows) == ds.adjacency_graphs
            for t in ds.adjacency_graphs:
                rows, negs = z.adjacency(t, 0, b.step % 8)
                assert b.rows[t].rows.tolist() == rows.tolist() and b.rows[t].negatives().tolist() == negs.tolist()


def test_stream_loader_reads_transformer_rows_in_the_main_process(build):
    """Workers hand over blocks without the rows; the main process attaches them: the same batches."""
    from pipeline.stream import StreamLoader
    from pipeline.stream.batches import shipped_bytes

    ds = PerturbationStream(build, fmt="transformer", batch_size=16)
    want = list(ds)
    got = list(StreamLoader(ds, num_workers=2, group=3, multiprocessing_context="fork"))
    assert [b.step for b in got] == [b.step for b in want] and _ids(got) == _ids(want)
    for x, y in zip(got, want, strict=True):
        assert torch.equal(x.rows.rows, y.rows.rows) and list(x.rows) == list(y.rows)
        assert torch.equal(x.rows.packed, y.rows.packed)
    blk = next(ds.blocks(3, rows=False))
    assert blk.step_rows is None and shipped_bytes(blk) < shipped_bytes(ds.attach_rows(blk))
