"""Graph store: round trip, CSR invariants, fingerprints, atomic publish, no-op rebuild."""

import json
from dataclasses import replace

import numpy as np
import pytest

import pipeline.graph.stages as stages
from pipeline.config import BuildConfig
from pipeline.core.errors import StoreError
from pipeline.graph.stages import run_graph_build
from pipeline.graph.store import open_graph
from tests.helpers import GENE_IDS, check_csr, write_gene_list, write_string


def build(tmp_path, **kw):
    raw = tmp_path / "raw"
    write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz")
    genes = write_gene_list(tmp_path / "genes.txt")
    cfg = BuildConfig.create(graphs=["string12"], raw=raw, out=tmp_path / "out", genes=genes, **kw)
    return cfg, run_graph_build(cfg.graph, cfg.workspace)


def test_round_trip(tmp_path):
    _, (store, built) = build(tmp_path)
    assert built
    g = open_graph(store)
    assert g.gene_ids.tolist() == sorted(GENE_IDS)
    assert g.genes.table["id"].to_list() == sorted(GENE_IDS)
    assert len(g.edge_types) == 6
    for t in g.edge_types:
        csr = g.csr(t)
        assert check_csr(csr) == []
        ip, ids = g.incidence(t)
        rows = csr.rows()
        for gene in range(g.n_genes):
            assert np.array_equal(ids[ip[gene]:ip[gene + 1]],
                                  np.concatenate([np.flatnonzero(rows == gene), np.flatnonzero(csr.indices == gene)]))
    ex = g.csr("string12_experimental")
    i, j = list(g.gene_ids).index("YAL001C"), list(g.gene_ids).index("YBR001C")
    assert ex.indices[ex.indptr[i]:ex.indptr[i + 1]].tolist() == [j]
    assert ex.weights.tolist() == pytest.approx([0.9, 0.9])
    m = g.manifest
    assert m["genes"]["fingerprint"] == g.fingerprint
    assert m["edge_types"]["string12_experimental"]["stats"]["dropped_unknown_gene"] == 2
    assert {i["role"] for i in m["inputs"]} == {"genes", "string12"}
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    json.dumps(m)  # the manifest is plain JSON


def test_rebuild_is_noop_and_force_rebuilds(tmp_path, caplog):
    cfg, (store, built) = build(tmp_path)
    created = open_graph(store).manifest["created"]
    caplog.set_level("INFO")
    store2, built2 = run_graph_build(cfg.graph, cfg.workspace)
    assert (store2, built2) == (store, False)
    assert "up to date" in caplog.text
    cfg = cfg.replace(where=replace(cfg.where, force=True))
    assert run_graph_build(cfg.graph, cfg.workspace)[1] is True
    # changed parameters (a different selection) -> a different build key, rebuilt
    cfg = BuildConfig.create(graphs=["string12_fusion"], raw=cfg.where.raw, out=cfg.where.out,
                             name=store.parent.name, genes=cfg.graph.genes)
    _, built3 = run_graph_build(cfg.graph, cfg.workspace)
    assert built3 and open_graph(store).edge_types == ["string12_fusion"]
    assert created  # first store had a timestamp


def test_fingerprint_mismatch_names_what_differs(tmp_path):
    _, (store, _) = build(tmp_path)
    g = open_graph(store)
    g.check_against(g.fingerprint, {"string12_fusion": g.edge_attrs("string12_fusion")["fingerprint"]})
    with pytest.raises(StoreError, match="gene index differs"):
        g.check_against("0" * 64)
    with pytest.raises(StoreError, match="edge type 'string12_fusion' differs"):
        g.check_against(g.fingerprint, {"string12_fusion": "0" * 64})


def test_crash_mid_write_publishes_nothing(tmp_path, monkeypatch):
    cfg, (store, _) = build(tmp_path, name="crash")
    before = open_graph(store).manifest["build_key"]
    calls = {"n": 0}
    real = stages.write_edge_type

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(stages, "write_edge_type", failing)
    cfg = cfg.replace(where=replace(cfg.where, force=True))
    with pytest.raises(KeyboardInterrupt):
        run_graph_build(cfg.graph, cfg.workspace)
    # the old store is intact and nothing temporary is left
    assert open_graph(store).manifest["build_key"] == before
    assert [p.name for p in store.parent.iterdir()] == ["graph.zarr"]


def test_half_written_store_does_not_open(tmp_path):
    cfg, (store, _) = build(tmp_path)
    # what a kill -9 leaves: a temporary directory with arrays but no manifest
    import shutil
    leftover = store.parent / ".graph.zarr.tmp-deadbeef"
    shutil.copytree(store, leftover)
    zj = json.loads((leftover / "zarr.json").read_text())
    zj["attributes"] = {}
    (leftover / "zarr.json").write_text(json.dumps(zj))
    with pytest.raises(StoreError, match="incomplete or foreign store"):
        open_graph(leftover)
    with pytest.raises(StoreError, match="no graph store here"):
        open_graph(tmp_path / "nothing")
    cfg = cfg.replace(where=replace(cfg.where, force=True))
    run_graph_build(cfg.graph, cfg.workspace)  # the next build removes the leftover
    assert not leftover.exists()
