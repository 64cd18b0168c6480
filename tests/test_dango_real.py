"""The real DANGO STRING v9.1 networks (../shared/data): reader and build vs an independent count."""

import numpy as np
import pytest

from pipeline.config import BuildConfig
from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex, read_gene_list
from pipeline.graph.stages import run_graph_build
from pipeline.graph.store import open_graph
from pipeline.sources.interactions.dango import available_channels, read_dango
from tests.helpers import check_csr

pytestmark = pytest.mark.real_data


def independent_pairs(path):
    """Distinct unordered pairs with score > 0, no self-loops: plain Python, no project code."""
    pairs = {}
    with open(path) as fh:
        for line in fh:
            f = line.split()
            if not f:
                continue
            i, j, s = int(f[0]), int(f[1]), float(f[2])
            if i != j and s > 0:
                key = (min(i, j), max(i, j))
                pairs[key] = max(pairs.get(key, 0.0), s)
    return pairs


def test_build_matches_independent_count(real_dango, tmp_path):
    genes_file = real_dango / "yeast_string_genes.txt"
    cfg = BuildConfig.create(graphs=["dango_string9_1"], raw=real_dango.parent, out=tmp_path, genes=genes_file)
    store, built = run_graph_build(cfg.graph, cfg.workspace)
    g = open_graph(store)
    dango_ids = [ln.strip() for ln in open(genes_file) if ln.strip()]
    pos = {gid: k for k, gid in enumerate(g.gene_ids.tolist())}
    channels = available_channels(real_dango)
    assert set(channels) == {"neighborhood", "database", "cooccurence", "fusion"}
    assert g.edge_types == sorted(f"dango_string9_1_{c}" for c in channels)
    for c in channels:
        want = independent_pairs(real_dango / f"yeast_string_{c}_adjacency.txt")
        csr = g.csr(f"dango_string9_1_{c}")
        assert check_csr(csr) == []
        assert csr.n_pairs == len(want), c
        # exact pairs and weights
        rows = csr.rows()
        up = rows < csr.indices
        got = {}
        for r, col, w in zip(rows[up].tolist(), csr.indices[up].tolist(), csr.weights[up].tolist(), strict=True):
            got[(r, col)] = w
        want_idx = {tuple(sorted((pos[dango_ids[i - 1]], pos[dango_ids[j - 1]]))): s
                    for (i, j), s in want.items()}
        assert got.keys() == want_idx.keys(), c
        assert np.allclose([got[k] for k in want_idx], list(want_idx.values()), atol=1e-6), c


def test_unknown_genes_are_counted(real_dango):
    ids = read_gene_list(real_dango / "yeast_string_genes.txt")
    half = GeneIndex.from_table(ids.head(3000))
    tabs = read_dango(real_dango, half, channels=["fusion"])
    t = tabs["dango_string9_1_fusion"]
    assert t.stats["dropped_unknown_gene"] > 0
    assert t.stats["rows_read"] == t.stats["dropped_unknown_gene"] + t.stats["dropped_zero_score"] + len(t)


def test_bad_dango_lines(tmp_path):
    (tmp_path / "yeast_string_genes.txt").write_text("YAL001C\nYAL002W\n")
    f = tmp_path / "yeast_string_fusion_adjacency.txt"
    gi = GeneIndex.from_table(read_gene_list(tmp_path / "yeast_string_genes.txt"))
    f.write_text("1\t2\t0.5\n2\t1\t0.5\n1\t3\t0.2\n")
    with pytest.raises(SourceFormatError, match=r"line 3: expected a gene number j in \[1, 2\]"):
        read_dango(tmp_path, gi)
    f.write_text("1\t2\t0.5\n2\t1\tx\n")
    with pytest.raises(SourceFormatError, match=r"line 2: expected three fields"):
        read_dango(tmp_path, gi)
    f.write_text("1\t2\t1.5\n")
    with pytest.raises(SourceFormatError, match=r"line 1: expected a score in \[0, 1\]"):
        read_dango(tmp_path, gi)
