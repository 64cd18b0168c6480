"""The dataset stage end to end: CLI on the bundled samples, no-op rebuild, bad input, the benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.build import main
from pipeline.dataset.store import open_dataset
from pipeline.graph.store import open_graph
from tests.helpers import default_layout

REPO = Path(__file__).resolve().parents[1]


def test_default_build_with_datasets(tmp_path, capsys):
    argv = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--dataset", "costanzo2016",
            "--out", str(tmp_path / "out"), "-q"]
    with default_layout(tmp_path):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "samples:" in out and "split_gene_holdout" in out
    ds = open_dataset(tmp_path / "out" / "string12" / "dataset")
    g = open_graph(tmp_path / "out" / "string12" / "graph.zarr")
    assert ds.fingerprint == g.fingerprint and ds.gene_ids.tolist() == g.gene_ids.tolist()
    df = ds.read()
    m = ds.manifest
    assert df.height == m["n_samples"] == m["counts"]["samples"]
    assert m["synthetic_inputs"] is True
    assert set(m["counts"]["sources"]) == {"kuzmin2018", "costanzo2016"}
    assert m["counts"]["sources"]["kuzmin2018"]["markers_removed"] > 0
    assert df["sample_id"].to_list() == list(range(df.height))
    assert set(df["n_perturbed"].unique().to_list()) <= {1, 2, 3}
    assert (df["gene_idx"].list.len() == df["n_perturbed"]).all()
    assert (df["gene_idx"].list.max() < g.n_genes).all() and (df["gene_idx"].list.min() >= 0).all()
    assert (df["types"].list.len() == df["n_perturbed"]).all()
    assert set(df["types"].explode().unique().to_list()) <= {1, 2, 3, 4, 5, 6}
    assert (df["source"].is_in(["kuzmin2018", "costanzo2016", "costanzo2016,kuzmin2018"])).all()
    # every Kuzmin trigenic row lands in a 3-gene sample; the marker never appears
    ho = int(np.flatnonzero(g.gene_ids == "YDL227C")[0]) if "YDL227C" in g.gene_ids else -1
    assert not (df.filter(pl.col("n_perturbed") == 3)["gene_idx"].list.contains(ho)).any()
    assert m["counts"]["merged_replicate_rows"] == m["counts"]["rows_kept"] - df.height
    # a second run is a no-op
    with default_layout(tmp_path):
        assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out


def test_changed_seed_rebuilds_with_other_splits(tmp_path):
    base = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--out", str(tmp_path / "out"), "-q"]
    with default_layout(tmp_path):
        assert main(base) == 0
    a = open_dataset(tmp_path / "out" / "string12" / "dataset").read()
    with default_layout(tmp_path):
        assert main(base + ["--split-seed", "5"]) == 0
    b = open_dataset(tmp_path / "out" / "string12" / "dataset").read()
    assert a["sample_id"].equals(b["sample_id"]) and a["gene_idx"].equals(b["gene_idx"])
    assert not a["split_random"].equals(b["split_random"])


def test_unknown_dataset_and_bad_fractions(tmp_path, capsys):
    assert main(["--graphs", "string12_fusion", "--dataset", "kuzmin2099", "--out", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--split-fractions", "0.5", "0.5", "0.5",
                 "--out", str(tmp_path)]) == 2
    assert "split fractions" in capsys.readouterr().err
    # a dataset option without --dataset would be dropped silently: refused
    assert main(["--graphs", "string12_fusion", "--split-fractions", "0.5", "0.25", "0.25",
                 "--out", str(tmp_path)]) == 2
    assert "--split-fractions given without --dataset" in capsys.readouterr().err


def test_dataset_benchmark_runs(tmp_path):
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks", "dataset", "--costanzo-scales", "0.001", "0.002",
                        "--kuzmin-scale", "0.01", "--baseline-rows", "300", "--workdir", str(tmp_path / "wd"),
                        "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "rows/s" in r.stdout and "baseline" in r.stdout
    recs = json.loads(out.read_text())
    names = {x["name"] for x in (recs["records"] if isinstance(recs, dict) else recs)}
    assert "dataset.kuzmin.rows_per_s" in names


def test_non_numeric_score_fails_the_build_naming_file_line_and_column(tmp_path, capsys):
    """The stage parses scores once (in its collect, not in the readers' validation pass); a bad
    one still stops it with the reader's message: file, line and column."""
    from pipeline.core.paths import SAMPLE_DIR

    raw = tmp_path / "data" / "raw" / "costanzo2016"  # the default layout: the STRING file is the sample
    raw.mkdir(parents=True)
    for p in sorted((SAMPLE_DIR / "costanzo2016").glob("SGA_*.sample.txt")):
        lines = p.read_text().splitlines(keepends=True)
        name = p.name.replace(".sample", "")
        if name == "SGA_NxN.txt":
            cells = lines[3].rstrip("\n").split("\t")
            cells[5] = "0.0x7"  # the 3rd data row's interaction score
            lines[3] = "\t".join(cells) + "\n"
        (raw / name).write_text("".join(lines))
    argv = ["--graphs", "string12_fusion", "--dataset", "costanzo2016", "--out", str(tmp_path / "out"), "-q"]
    with default_layout(tmp_path):
        assert main(argv) != 0
    err = capsys.readouterr().err
    assert "SGA_NxN.txt" in err and "line 4" in err and "0.0x7" in err and "Genetic interaction score" in err
    assert not (tmp_path / "out" / "string12" / "dataset").exists()


def test_rows_naming_genes_outside_the_index_are_counted_and_dropped(tmp_path):
    from pipeline.core.paths import SAMPLE_DIR

    nxn = (SAMPLE_DIR / "costanzo2016" / "SGA_NxN.sample.txt").read_text().splitlines()[1:]
    gone = sorted({ln.split("\t")[0].split("_")[0] for ln in nxn[:3]})  # query genes of the first rows
    genes = [ln for ln in (SAMPLE_DIR / "genes.tsv").read_text().splitlines(keepends=True)
             if ln.split("\t", 1)[0] not in gone]
    (tmp_path / "genes.tsv").write_text("".join(genes))
    argv = ["--graphs", "string12_fusion", "--dataset", "costanzo2016", "--genes", str(tmp_path / "genes.tsv"),
            "--out", str(tmp_path / "out"), "-q"]
    with default_layout(tmp_path):
        assert main(argv) == 0
    ds = open_dataset(next((tmp_path / "out").glob("*/dataset")))
    want = 0
    for p in sorted((SAMPLE_DIR / "costanzo2016").glob("SGA_*.sample.txt")):
        for ln in p.read_text().splitlines()[1:]:
            cells = ln.split("\t")
            want += cells[0].split("_")[0] in gone or cells[2].split("_")[0] in gone
    c = ds.manifest["counts"]
    assert want > 0 and c["sources"]["costanzo2016"]["dropped_unknown_gene"] == want
    assert c["rows_kept"] == c["sources"]["costanzo2016"]["rows"] - want
    ids = set(ds.gene_ids.tolist())
    assert not set(gone) & ids and ds.read().height == c["samples"]
