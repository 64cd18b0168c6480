"""The precompute stage against independent oracles: naive per-sample masks, PyG's k_hop_subgraph."""

from __future__ import annotations

import json
import logging
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.config import BuildConfig
from pipeline.core.errors import StoreError
from pipeline.core.perturbations import CODES
from pipeline.graph.store import open_graph
from pipeline.precompute.khop import unpack
from pipeline.precompute.masks import dense_from_positions, node_mask_flips, removed_edges, removed_genes
from pipeline.precompute.stages import PrecomputeConfig
from pipeline.precompute.store import open_precomputed
from pipeline.precompute.verify import verify
from pipeline.sequence import run_build
from tests.helpers import default_layout

REPO = Path(__file__).resolve().parents[1]
GRAPHS = ["string12", "regulatory", "tflink"]  # undirected and directed types
PRE = dict(artifacts=["masks", "khop", "adjacency-rows"], khop=(1, 2, 3), khop_modes=("per_type", "union"),
           chunk_samples=256, dense_edge_masks=True, lmdb=True, adjacency_epochs=2, adjacency_steps=12,
           adjacency_rows=16, adjacency_negatives=8, dask_processes=False, workers=2)


def _added(tmp: Path) -> Path:
    p = tmp / "added.tsv"
    p.write_text("id\tname\nGFP\tgfp\nURA3_Kl\tura3\n")
    return p


def _build(out: Path, tmp: Path, **over) -> object:
    cfg = BuildConfig.create(graphs=GRAPHS, out=out, datasets=["kuzmin2018", "costanzo2016"],
                             added_genes=_added(tmp), precompute=PrecomputeConfig(**{**PRE, **over}))
    with default_layout(tmp):
        return run_build(cfg)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pre")
    res = _build(tmp / "out", tmp)
    return res, tmp


def _samples(store):
    ptr, genes, types = store.perturbations()
    return ptr, genes, types


def test_store_opens_and_checks_fingerprints(built):
    res, _ = built
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed, graph=graph)
    m = s.manifest
    assert m["n_samples"] == s.n_samples > 256 and m["n_chunks"] == -(-s.n_samples // 256)
    assert m["graph"]["gene_fingerprint"] == graph.fingerprint
    assert graph.added.sum() == 2
    assert len(m["chunks"]) == m["n_chunks"] and len(m["adjacency"]) == 2 * -(-12 // s.steps_per_shard)
    assert not (Path(res.precomputed) / "progress").exists()
    # a plain zarr.open reads the dense views as uint8 [samples, genes] and [samples, edges]
    z = zarr.open_group(str(res.precomputed), mode="r")
    assert z["node_mask/dense"].dtype == np.uint8 and z["node_mask/dense"].shape == (s.n_samples, graph.n_genes)
    t = graph.edge_types[0]
    assert z[f"edge_mask/{t}/dense"].shape == (s.n_samples, graph.csr(t).nnz)


def test_node_and_edge_masks_equal_naive(built):
    res, _ = built
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed)
    ptr, genes, types = _samples(s)
    added = graph.added
    dense = s.node_mask_dense(slice(None))
    rng = np.random.default_rng(0)
    ids = sorted({0, 255, 256, s.n_samples - 1, *rng.choice(s.n_samples, 150, replace=False).tolist()})
    rem_codes = {CODES[c] for c in ("deletion", "temperature_sensitive", "knockdown", "suppressor")}
    assert set(types.tolist()) - {1}, "the sample data should exercise more than deletions"
    for t in graph.edge_types:
        src, dst = graph.edge_index(t)
        edense = zarr.open_group(str(res.precomputed), mode="r")[f"edge_mask/{t}/dense"].oindex[ids, :]
        for row, i in enumerate(ids):
            g, ty = genes[ptr[i]:ptr[i + 1]], types[ptr[i]:ptr[i + 1]]
            removed = [int(x) for x, c in zip(g, ty, strict=True) if int(c) in rem_codes and not added[x]]
            if t == graph.edge_types[0]:
                want = np.where(added, 0, 1).astype(np.uint8)
                want[removed] = 0
                assert np.array_equal(dense[i], want), i
            emask = np.ones(len(src), np.uint8)
            for x in removed:
                emask[(src == x) | (dst == x)] = 0
            eptr, eids = s.removed_edges(t, i // 256, graph)
            j = i % 256
            assert np.array_equal(eids[eptr[j]:eptr[j + 1]], np.flatnonzero(emask == 0)), (t, i)
            assert np.array_equal(edense[row], emask), (t, i)
            # as stored: one orientation (id < mirror[id]) of an undirected type, all ids of a directed one
            sptr, sids = s.removed_edges(t, i // 256)
            mirror = graph.mirror(t)
            stored = np.flatnonzero((emask == 0) & ((mirror is None) or (np.arange(len(emask)) < mirror)))
            assert np.array_equal(sids[sptr[j]:sptr[j + 1]], stored), (t, i)
            assert s.edge_orientation(t) == ("both" if mirror is None else "one")


def test_khop_equals_pyg(built):
    import torch
    from torch_geometric.utils import k_hop_subgraph

    res, _ = built
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed)
    ptr, genes, _ = _samples(s)
    n = graph.n_genes
    eis = {t: torch.from_numpy(graph.edge_index(t)) for t in graph.edge_types}
    union_ei = torch.cat(list(eis.values()), dim=1)
    rng = np.random.default_rng(0)
    ids = rng.choice(s.n_samples, size=60, replace=False)
    for k in (1, 2, 3):
        per_type = unpack(s.khop_bits(k, "per_type", ids), n)
        union = unpack(s.khop_bits(k, "union", ids), n)
        for row, i in enumerate(ids.tolist()):
            seeds = torch.from_numpy(genes[ptr[i]:ptr[i + 1]].astype(np.int64))
            want = torch.zeros(n, dtype=torch.bool)
            for ei in eis.values():
                subset, _, _, _ = k_hop_subgraph(seeds, k, ei, relabel_nodes=False, num_nodes=n)
                want[subset] = True
            assert np.array_equal(per_type[row], want.numpy()), (k, i)
            subset, _, _, _ = k_hop_subgraph(seeds, k, union_ei, relabel_nodes=False, num_nodes=n)
            uw = torch.zeros(n, dtype=torch.bool)
            uw[subset] = True
            assert np.array_equal(union[row], uw.numpy()), (k, i)
            # the edge sets: per type, the edges with both ends in the node set (the reference)
            for t, ei in eis.items():
                keep = want[ei[0]] & want[ei[1]]
                mine = per_type[row][ei[0].numpy()] & per_type[row][ei[1].numpy()]
                assert np.array_equal(mine, keep.numpy()), (k, i, t)


def test_directed_khop_follows_in_edges_and_undirected_both_ways():
    from pipeline.graph.csr import CSR
    from pipeline.precompute.khop import gene_khop_bits

    # directed 0 -> 1 -> 2: the 1-hop set of {1} is {0, 1} (PyG source_to_target)
    d = CSR(np.array([0, 1, 2, 2]), np.array([1, 2], np.int32), np.ones(2, np.float32), True)
    assert unpack(gene_khop_bits([d], 3, (1,))[1][1:2], 3).nonzero()[1].tolist() == [0, 1]
    # undirected 0 - 1 stored both ways: 1-hop of {0} holds 1 and of {1} holds 0
    u = CSR(np.array([0, 1, 2, 2]), np.array([1, 0], np.int32), np.ones(2, np.float32), False)
    b = unpack(gene_khop_bits([u], 3, (1,))[1], 3)
    assert b[0].tolist() == [True, True, False] and b[1].tolist() == [True, True, False]


def test_node_mask_flips_for_added_and_non_removing_types():
    added = np.array([0, 0, 0, 1, 1], bool)
    ptr = np.array([0, 3, 5])
    genes = np.array([0, 1, 3, 2, 4])
    types = np.array([CODES["deletion"], CODES["overexpression"], CODES["addition"],
                      CODES["temperature_sensitive"], CODES["deletion"]], np.uint8)
    fptr, fg = node_mask_flips(ptr, genes, types, added)
    dense = dense_from_positions((~added).astype(np.uint8), 5, fptr, fg)
    assert dense.tolist() == [[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    # only temperature-sensitive removes when asked so
    fptr, fg = node_mask_flips(ptr, genes, types, added, removing_types=(CODES["temperature_sensitive"],))
    assert dense_from_positions((~added).astype(np.uint8), 5, fptr, fg).tolist() == [[1, 1, 1, 1, 0],
                                                                                     [1, 1, 0, 0, 0]]
    rptr, rg = removed_genes(ptr, genes, types, added)
    assert rptr.tolist() == [0, 1, 2] and rg.tolist() == [0, 2]


def test_removed_edges_blocks_match_one_pass():
    from pipeline.precompute import masks

    rng = np.random.default_rng(1)
    n = 300
    lens = rng.integers(0, 40, n)
    inc_ptr = np.concatenate([[0], np.cumsum(lens)])
    inc = rng.integers(0, 5000, inc_ptr[-1]).astype(np.int32)
    r_ptr = np.concatenate([[0], np.cumsum(rng.integers(0, 4, 500))])
    r_genes = rng.integers(0, n, r_ptr[-1])
    old = masks._BLOCK_ENTRIES
    try:
        masks._BLOCK_ENTRIES = 64
        a = removed_edges(inc_ptr, inc, r_ptr, r_genes)
    finally:
        masks._BLOCK_ENTRIES = old
    b = removed_edges(inc_ptr, inc, r_ptr, r_genes)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for i in range(len(r_ptr) - 1):
        want = sorted({int(e) for g in r_genes[r_ptr[i]:r_ptr[i + 1]] for e in inc[inc_ptr[g]:inc_ptr[g + 1]]})
        assert b[1][b[0][i]:b[0][i + 1]].tolist() == want


def test_adjacency_rows_stored(built):
    res, _ = built
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed)
    added = graph.added
    a = s.manifest["parameters"]["adjacency"]
    assert a["steps"] == 12 and a["epochs"] == 2
    for t in graph.edge_types:
        csr = graph.csr(t)
        deg = np.diff(csr.indptr)
        for e in range(2):
            rows, negs = s.adjacency(t, e)
            assert rows.shape == (12, 16) and negs.shape == (12, 16, 8)
            for st in range(12):
                r = rows[st][rows[st] >= 0]
                assert len(set(r.tolist())) == len(r)
                assert not added[r].any() and (deg[r] > 0).all()
                for ri, row in enumerate(rows[st].tolist()):
                    if row < 0:
                        continue
                    neg = negs[st, ri][negs[st, ri] >= 0]
                    nbr = csr.indices[csr.indptr[row]:csr.indptr[row + 1]]
                    assert not np.isin(neg, nbr).any() and row not in neg and not added[neg].any()
        r0, _ = s.adjacency(t, 0)
        r1, _ = s.adjacency(t, 1)
        assert not np.array_equal(r0, r1)  # epochs differ


def _mapped(a: np.ndarray) -> bool:
    """Whether ``a`` views a memory-mapped file (numpy.frombuffer over an mmap)."""
    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a, mmap.mmap) or (isinstance(a, memoryview) and isinstance(a.obj, mmap.mmap))


def test_adjacency_negatives_stored_packed(built):
    """adjacency/negatives holds NegativePacking.pack of the sampler's negatives of every graph, uint8
    [E, S, T, P], uncompressed, sharded with a crc32c index; adjacency/rows int16 [E, S, T, R],
    uncompressed; adjacency() unpacks exactly the sampler's output, adjacency_unit() maps a shard of
    every graph, and the shard markers are the checksums of the stored (packed) bytes."""
    from pipeline.precompute.adjacency import NegativePacking, sample_adjacency_rows

    res, _ = built
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed)
    a = s.manifest["parameters"]["adjacency"]
    packing = s.adjacency_packing
    assert packing == NegativePacking.for_genes(graph.n_genes, 8) and packing.bits == 13
    z = zarr.open_group(str(res.precomputed), mode="r")
    assert z["adjacency"].attrs["negative_packing"] == {"bits": 13, "n_negatives": 8, "padded": 8}
    graphs = s.adjacency_graphs
    assert graphs == a["graphs"] == z["adjacency"].attrs["graphs"] and len(graphs) == len(graph.edge_types)
    arr, rows_arr = z["adjacency/negatives"], z["adjacency/rows"]
    p = packing.step_bytes(16)
    assert arr.dtype == np.uint8 and arr.shape == (2, 12, len(graphs), p) and p == 16 * 8 * 13 // 8
    assert rows_arr.dtype == np.int16 and rows_arr.shape == (2, 12, len(graphs), 16)
    (shard,) = arr.metadata.codecs
    assert [c.to_dict()["name"] for c in shard.codecs] == ["bytes"]  # no compressor
    assert "crc32c" in [c.to_dict()["name"] for c in shard.index_codecs]
    assert [c.to_dict()["name"] for c in rows_arr.metadata.codecs] == ["bytes"]
    markers = {(m["epoch"], m["shard"]): m for m in s.manifest["adjacency"]}
    per = s.steps_per_shard
    assert sorted(markers) == [(e, k) for e in range(2) for k in range(-(-12 // per))]
    for e in range(2):
        for k in range(-(-12 // per)):
            assert s.shard_digest(e, k) == markers[(e, k)]["crc32"]
            assert (markers[(e, k)]["first"], markers[(e, k)]["count"]) == (k * per, min(per, 12 - k * per))
        for ti, t in enumerate(graphs):
            csr = graph.csr(t)
            want = sample_adjacency_rows(csr.indptr, csr.indices, ~graph.added, n_rows=16, n_negatives=8,
                                         steps=range(12), seed=a["seed"], graph=t, epoch=e, mode=a["sampling"])
            assert (want.negatives >= 0).any()
            assert np.array_equal(arr[e, :, ti], packing.pack(want.negatives))
            rows, packed = s.adjacency_packed(t, e)
            assert rows.dtype == np.int32 and np.array_equal(rows, want.rows) and np.array_equal(packed, arr[e, :, ti])
            rows, negs = s.adjacency(t, e)
            assert negs.dtype == np.int32 and np.array_equal(rows, want.rows) and np.array_equal(negs, want.negatives)
            r5, n5 = s.adjacency(t, e, 5)
            assert np.array_equal(r5, want.rows[5]) and np.array_equal(n5, want.negatives[5])
        for k in range(-(-12 // per)):
            rows, packed = s.adjacency_unit(e, k)
            steps = slice(k * per, min(12, (k + 1) * per))
            assert np.array_equal(rows, rows_arr[e, steps]) and np.array_equal(packed, arr[e, steps])
            assert _mapped(packed) and _mapped(rows)
    with pytest.raises(KeyError, match="no adjacency rows of graph 'nope'"):
        s.adjacency("nope", 0)


@pytest.mark.parametrize("negatives", [0, 5])
def test_compute_adjacency_pads_and_no_negatives(built, tmp_path, negatives):
    """M not a multiple of 8 (pads to M' = 8) and M = 0 (nothing stored): the task writes what
    adjacency() reads back as the sampler's output, and its checksum is the one verify recomputes."""
    from pipeline.precompute.adjacency import NegativePacking, sample_adjacency_rows
    from pipeline.precompute.store import StagingStore
    from pipeline.precompute.tasks import AdjacencyShardDone, compute_adjacency, verify_adjacency

    res, _ = built
    graph = open_graph(res.graph)
    t, u = graph.edge_types[:2]
    a = {"graphs": [t, u], "epochs": 1, "steps": 7, "rows": 16, "negatives": negatives, "sampling": "uniform",
         "seed": 3}
    st = StagingStore.create(tmp_path / "s.zarr", "key")
    st.create_adjacency((~graph.added).astype(np.uint8), [t, u], 1, 7, 16, negatives)
    packing = st.adjacency_packing
    assert packing == NegativePacking.for_genes(graph.n_genes, negatives)
    assert packing.step_bytes(16) == (16 * 8 * 13 // 8 if negatives else 0)
    assert st.steps_per_shard >= 7  # one shard
    done = compute_adjacency(str(st.path), str(res.graph), 0, 0, {"adjacency": a})
    assert (done.first, done.count) == (0, 7)
    for name in (t, u):
        csr = graph.csr(name)
        want = sample_adjacency_rows(csr.indptr, csr.indices, ~graph.added, n_rows=16, n_negatives=negatives,
                                     steps=range(7), seed=3, graph=name, epoch=0)
        rows, negs = StagingStore.open(st.path).adjacency(name, 0)
        assert negs.shape == (7, 16, negatives) and np.array_equal(negs, want.negatives)
        assert np.array_equal(rows, want.rows)
    assert verify_adjacency(str(st.path), done) == []
    bad = AdjacencyShardDone(0, 0, 0, 7, "00000000")
    assert verify_adjacency(str(st.path), bad) == ["adjacency epoch 0 steps 0..6: differs from its checksum"]


def test_store_of_format_version_3_is_refused(built, tmp_path):
    import shutil

    res, _ = built
    copy = tmp_path / "precomputed.zarr"
    shutil.copytree(res.precomputed, copy)
    zarr.open_group(str(copy), mode="r+").attrs["format_version"] = 3
    with pytest.raises(StoreError, match=r"format version 3, this code reads 4; recompute it"):
        open_precomputed(copy)


def test_lmdb_records_equal_zarr(built):
    from pipeline.precompute.records import open_records

    res, _ = built
    s = open_precomputed(res.precomputed)
    rec = open_records(Path(res.precomputed).parent / "records.lmdb")
    assert len(rec) == s.n_samples and rec.manifest["build_key"] == s.manifest["build_key"]
    ptr, genes, types = s.perturbations()
    fptr, fgenes = s.node_mask_flips()
    t = s.edge_types[0]
    for i in [0, 1, 255, 256, s.n_samples - 1]:
        r = rec.get(i)
        assert r["genes"].tolist() == genes[ptr[i]:ptr[i + 1]].tolist()
        assert r["types"].tolist() == types[ptr[i]:ptr[i + 1]].tolist()
        assert r["node_flips"].tolist() == fgenes[fptr[i]:fptr[i + 1]].tolist()
        eptr, eids = s.removed_edges(t, i // 256)
        assert r[f"edges:{t}"].tolist() == eids[eptr[i % 256]:eptr[i % 256 + 1]].tolist()
        assert r["khop:per_type:k2"].tolist() == s.khop_bits(2, "per_type", slice(i, i + 1))[0].tolist()
    rec.close()


def test_rebuild_is_noop_and_same_seed_is_byte_identical(built, tmp_path):
    res, tmp = built
    again = _build(tmp / "out", tmp)
    assert not again.precomputed_built
    other = _build(tmp_path / "out2", tmp)
    a, b = open_precomputed(res.precomputed).manifest, open_precomputed(other.precomputed).manifest
    assert a["build_key"] == b["build_key"]
    assert a["chunks"] == b["chunks"] and a["adjacency"] == b["adjacency"]


def test_verify_command_and_detects_corruption(built, tmp_path, capsys):
    import shutil

    from pipeline.verify import main as verify_main

    res, _ = built
    assert verify(res.precomputed, samples=20) == []
    assert verify_main([str(res.precomputed), "--samples", "5"]) == 0
    copy = tmp_path / "copy" / "precomputed.zarr"
    shutil.copytree(res.precomputed, copy)
    z = zarr.open_group(str(copy), mode="r+")
    row = z["node_mask/dense"][3]
    row[0] ^= 1
    z["node_mask/dense"][3] = row
    problems = verify(copy, samples=0, graph_path=res.graph)
    assert any("node_mask/dense" in p and "samples 0..255" in p for p in problems)
    assert verify_main([str(copy), "--samples", "0", "--graph", str(res.graph)]) == 1


def test_verify_detects_damaged_packed_negatives_and_a_wrong_packing(built, tmp_path):
    """The packed negatives are stored uncompressed: a flipped byte still decodes, and it is the
    shard checksum that names it; packing attributes that disagree with the gene count are named."""
    import shutil

    res, _ = built
    copy = tmp_path / "copy" / "precomputed.zarr"
    shutil.copytree(res.precomputed, copy)
    shard = copy / "adjacency" / "negatives" / "c" / "1" / "0" / "0" / "0"  # epoch 1's shard
    data = bytearray(shard.read_bytes())
    data[7] ^= 0x10  # a byte of the packed data (the crc32c-checked index is at the end)
    shard.write_bytes(bytes(data))
    problems = verify(copy, samples=0, graph_path=res.graph)
    assert "adjacency epoch 1 steps 0..11: differs from its checksum" in problems, problems
    assert "adjacency epoch 0 steps 0..11: differs from its checksum" not in problems
    zarr.open_group(str(copy / "adjacency"), mode="r+").attrs["negative_packing"] = {
        "bits": 14, "n_negatives": 8, "padded": 8}
    problems = verify(copy, samples=0, graph_path=res.graph)
    assert any(p.startswith("adjacency: negatives packed as NegativePacking(bits=14") for p in problems), problems


def test_other_graph_is_refused(built, tmp_path):
    res, tmp = built
    with default_layout(tmp):
        other = run_build(BuildConfig.create(graphs=GRAPHS, out=tmp_path)).graph  # no added genes
    with pytest.raises(StoreError, match="gene index"):
        open_precomputed(res.precomputed, graph=open_graph(other))


def test_resume_after_partial_run_equals_uninterrupted(built, tmp_path):
    from pipeline.precompute.stages import compute_sample_chunk, plan_precompute, prepare_precompute

    res, tmp = built
    cfg = BuildConfig.create(graphs=GRAPHS, out=tmp_path, datasets=["kuzmin2018", "costanzo2016"],
                             added_genes=_added(tmp), precompute=None)
    with default_layout(tmp):
        r = run_build(cfg)
    plan = plan_precompute(PrecomputeConfig(**PRE), r.graph, r.dataset)
    staging = prepare_precompute(plan)
    compute_sample_chunk(str(staging), str(r.graph), plan.key, 1, plan.parameters, plan.n_samples)
    mtime = (staging / "progress" / "samples-000001.json").stat().st_mtime_ns
    cfg = cfg.replace(precompute=PrecomputeConfig(**PRE))
    with default_layout(tmp):
        out = run_build(cfg)
    assert out.precomputed_built
    m = open_precomputed(out.precomputed).manifest
    assert m["chunks"] == open_precomputed(res.precomputed).manifest["chunks"]
    assert not staging.exists()
    assert mtime  # chunk 1 was not recomputed: its marker came from the partial run
    assert m["chunks"][1]["crc32"]


def _prepared_staging(built, tmp_path):
    """A fresh build's graph and dataset, and a prepared precompute staging of them (no task run yet):
    (build result, plan, staging)."""
    from pipeline.precompute import stages as pc

    res, tmp = built
    cfg = BuildConfig.create(graphs=GRAPHS, out=tmp_path, datasets=["kuzmin2018", "costanzo2016"],
                             added_genes=_added(tmp), precompute=None)
    with default_layout(tmp):
        r = run_build(cfg)
    plan = pc.plan_precompute(PrecomputeConfig(**PRE), r.graph, r.dataset)
    return r, plan, pc.prepare_precompute(plan)


def test_earlier_runs_chunks_are_reverified_and_readback_is_checked(built, tmp_path, monkeypatch, caplog):
    """A chunk left by an interrupted run is decoded again before publishing (a damaged one is
    computed afresh), and a task whose arrays read back differently writes no marker."""
    from pipeline.precompute import stages as pc
    from pipeline.precompute import tasks

    res = built[0]
    r, plan, staging = _prepared_staging(built, tmp_path)
    pc.compute_sample_chunk(str(staging), str(r.graph), plan.key, 0, plan.parameters, plan.n_samples)
    arr = zarr.open_array(str(staging / "node_mask" / "dense"), mode="r+")
    row = arr[3]
    row[0] ^= 1
    arr[3] = row  # damage chunk 0 after its marker was written
    want = {m["chunk"]: m for m in open_precomputed(res.precomputed).manifest["chunks"]}
    with caplog.at_level(logging.WARNING, logger="pipeline.precompute.stages"):
        out = pc.run_precompute_tasks(plan, staging)
    assert "failed re-verification" in caplog.text and "node_mask/dense: samples 0.." in caplog.text
    assert out.recomputed_tasks == 1 and out.chunks[0].to_dict() == want[0]  # chunk 0 computed again

    orig = tasks.read_chunked_csr
    monkeypatch.setattr(tasks, "read_chunked_csr", lambda g, chunk, count=None: (orig(g, chunk, count)[0] + 1,
                                                                              orig(g, chunk, count)[1]))
    (staging / "progress" / "samples-000001.json").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="read back differently"):
        pc.compute_sample_chunk(str(staging), str(r.graph), plan.key, 1, plan.parameters, plan.n_samples)
    assert not (staging / "progress" / "samples-000001.json").exists()


def test_earlier_runs_damaged_adjacency_shards_are_recomputed(built, tmp_path, caplog):
    """Packed negatives left by an interrupted run are re-verified: a flipped data byte (which
    still decodes: no codec) fails the shard checksum, a truncated shard (its crc32c index
    broken) does not decode; both shards are dropped and computed again, equal to an
    uninterrupted build."""
    from pipeline.precompute import stages as pc

    res = built[0]
    r, plan, staging = _prepared_staging(built, tmp_path)
    for e in (0, 1):
        pc.compute_adjacency(str(staging), str(r.graph), e, 0, plan.parameters)
    flipped = staging / "adjacency" / "negatives" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(flipped.read_bytes())
    data[3] ^= 0x01
    flipped.write_bytes(bytes(data))
    cut = staging / "adjacency" / "negatives" / "c" / "1" / "0" / "0" / "0"
    cut.write_bytes(cut.read_bytes()[:-9])
    with caplog.at_level(logging.WARNING, logger="pipeline.precompute.stages"):
        out = pc.run_precompute_tasks(plan, staging)
    assert "adjacency epoch 0 steps 0..11: differs from its checksum" in caplog.text
    assert "adjacency epoch 1 steps 0..11: does not decode" in caplog.text
    assert out.recomputed_tasks == 2
    want = open_precomputed(res.precomputed).manifest["adjacency"]
    assert [a.to_dict() for a in out.adjacency] == want


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(built, tmp_path):
    """kill -9 the CLI (and its dask workers) mid-run; the rerun resumes and equals an uninterrupted store."""
    res, tmp = built
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pipeline.build", "--graphs", ",".join(GRAPHS),  # run in tmp: no data/raw there
            "--out", str(out), "--dataset", "kuzmin2018", "--dataset", "costanzo2016",
            "--added-genes", str(_added(tmp)), "--precompute", "masks,khop,adjacency-rows", "--khop", "1,2,3",
            "--khop-mode", "per_type,union", "--chunk-samples", "64", "--dense-edge-masks", "--lmdb",
            "--adjacency-epochs", "2", "--adjacency-steps", "12", "--adjacency-rows", "16",
            "--adjacency-negatives", "8", "--workers", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=tmp, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        markers = list(out.glob("*/.precomputed.zarr.partial-*/progress/samples-*.json"))
        if len(markers) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the run finished before it could be killed; " + proc.stderr.read().decode()[-2000:]
    partial = list(out.glob("*/.precomputed.zarr.partial-*"))
    assert partial and not list(out.glob("*/precomputed.zarr"))  # nothing published
    done = len(list(partial[0].glob("progress/samples-*.json")))
    run = subprocess.run(args[:-1], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    import re
    resumed = re.search(r"resuming .*: (\d+) task\(s\) already complete", run.stderr)
    assert resumed and int(resumed.group(1)) >= done >= 3
    store = next(out.glob("*/precomputed.zarr"))
    ref = _build(tmp_path / "ref", tmp, chunk_samples=64)
    a, b = open_precomputed(store).manifest, open_precomputed(ref.precomputed).manifest
    assert a["build_key"] == b["build_key"] and a["chunks"] == b["chunks"] and a["adjacency"] == b["adjacency"]
    assert verify(store, samples=10) == []
    json.dumps(a)  # the manifest is plain JSON


@pytest.mark.real_data
def test_real_dango_string9_1_masks_and_khop(real_dango, tmp_path):
    """The real DANGO STRING v9.1 networks: stored masks and k-hop sets equal naive code and PyG."""
    import torch
    from torch_geometric.utils import k_hop_subgraph

    cfg = BuildConfig.create(graphs=["dango_string9_1"], out=tmp_path,
                             genes=real_dango / "yeast_string_genes.txt", datasets=["kuzmin2018"],
                             precompute=PrecomputeConfig(artifacts=["masks", "khop"], khop=(1, 2), chunk_samples=64,
                                                         dask_processes=False, workers=2))
    with default_layout(tmp_path) as raw:  # the real networks, the Kuzmin sample
        raw.mkdir(parents=True)
        (raw / "dango_string9_1").symlink_to(real_dango.resolve())
        res = run_build(cfg)
    graph = open_graph(res.graph)
    s = open_precomputed(res.precomputed, graph=graph)
    assert s.n_samples > 100 and len(graph.edge_types) == 4
    ptr, genes, types = s.perturbations()
    eis = {t: graph.edge_index(t) for t in graph.edge_types}
    rng = np.random.default_rng(0)
    ids = rng.choice(s.n_samples, size=40, replace=False)
    bits = {k: unpack(s.khop_bits(k, "per_type", ids), graph.n_genes) for k in (1, 2)}
    for row, i in enumerate(ids.tolist()):
        g = genes[ptr[i]:ptr[i + 1]]
        removed = [int(x) for x, c in zip(g, types[ptr[i]:ptr[i + 1]], strict=True) if c != CODES["overexpression"]]
        for t, (src, dst) in eis.items():
            eptr, eids = s.removed_edges(t, i // 64, graph)
            want = np.flatnonzero(np.isin(src, removed) | np.isin(dst, removed))
            assert np.array_equal(eids[eptr[i % 64]:eptr[i % 64 + 1]], want)
        for k in (1, 2):
            want = torch.zeros(graph.n_genes, dtype=torch.bool)
            for src_dst in eis.values():
                sub, _, _, _ = k_hop_subgraph(torch.from_numpy(g.astype(np.int64)), k, torch.from_numpy(src_dst),
                                              relabel_nodes=False, num_nodes=graph.n_genes)
                want[sub] = True
            assert np.array_equal(bits[k][row], want.numpy()), (i, k)
    assert verify(res.precomputed, samples=8) == []
