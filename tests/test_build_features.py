"""Gene features, added genes and embeddings through the whole build."""

import numpy as np
import polars as pl
import pytest

from pipeline.build import main
from pipeline.graph.store import open_graph
from tests.helpers import default_layout, write_string


def test_default_build_stores_sequence_features(tmp_path):
    with default_layout(tmp_path):
        assert main(["--graphs", "string12_fusion", "--out", str(tmp_path), "-q"]) == 0
    g = open_graph(tmp_path / "string12" / "graph.zarr")
    x, names = g.features()
    assert x.shape == (g.n_genes, len(names)) and x.dtype == np.float32
    assert {"gc_content", "log10_length_bp", "codon_ATG", "aa_M", "chr_I", "strand"} <= set(names)
    gc = x[:, names.index("gc_content")]
    assert np.isfinite(gc).all() and 0.3 < np.median(gc) < 0.45  # yeast CDS GC is ~0.40
    assert not g.added.any()
    src = [i for i in g.manifest["inputs"] if i["role"] == "sequences"][0]
    assert src["path"].endswith("gene_cds.fa.gz") and src["synthetic"] is False


def test_added_genes_and_embeddings(tmp_path):
    raw = tmp_path / "raw"
    genes = tmp_path / "genes.tsv"
    genes.write_text("id\nYAL001C\nYAL002W\nYBR001C\n")
    rows = [["4932.YAL001C", "4932.YAL002W", 0, 500, 0, 0, 0, 0, 0, 500],
            ["4932.YAL002W", "4932.YAL001C", 0, 500, 0, 0, 0, 0, 0, 500],
            ["4932.YAL001C", "4932.GFP", 0, 800, 0, 0, 0, 0, 0, 800],  # a source naming the added gene
            ["4932.GFP", "4932.YAL001C", 0, 800, 0, 0, 0, 0, 0, 800]]
    write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz", rows=rows)
    added = tmp_path / "added.tsv"
    added.write_text("id\tname\tsequence\nGFP\tgfp\tATGAGTAAAGGAGAAGAACTTTTCACTGGAGTTGTCCCAATTCTTTAA\n")
    emb = tmp_path / "emb.csv"
    pl.DataFrame({"id": ["YAL001C", "YBR001C", "YZZ999W"], "e0": [0.5, 1.0, 2.0], "e1": [1.5, 2.0, 3.0]}).write_csv(emb)
    fasta = tmp_path / "cds.fa"
    fasta.write_text(">YAL001C\nATGAAAGCCTAA\n>YAL002W\nATGGGGCCCTGA\n")
    assert main(["--graphs", "string12_fusion", "--raw", str(raw), "--out", str(tmp_path), "--genes", str(genes),
                 "--added-genes", str(added), "--embeddings", f"toy={emb}", "--sequences", str(fasta), "-q"]) == 0
    g = open_graph(tmp_path / "string12" / "graph.zarr")
    assert g.gene_ids.tolist() == ["YAL001C", "YAL002W", "YBR001C", "GFP"]  # added genes last
    assert g.added.tolist() == [False, False, False, True]
    csr = g.csr("string12_fusion")
    assert csr.n_pairs == 1 and csr.degree()[3] == 0  # no edge reaches the added gene
    assert g.edge_attrs("string12_fusion")["stats"]["dropped_added_gene"] == 2
    e = g.embedding("toy")
    np.testing.assert_array_equal(e[[0, 2]], [[0.5, 1.5], [1.0, 2.0]])
    assert np.isnan(e[[1, 3]]).all()
    x, names = g.features()
    gc = x[:, names.index("gc_content")]
    assert gc[0] == pytest.approx(4 / 12) and np.isnan(gc[2])  # YBR001C has no sequence
    assert np.isfinite(gc[3])  # the added gene's own sequence
