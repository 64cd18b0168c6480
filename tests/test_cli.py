"""The CLI end to end: the embedded default in a subprocess, options and errors in-process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.build import main
from pipeline.graph.store import open_graph
from tests.helpers import write_gene_list, write_string

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_embedded_default_from_the_shell(tmp_path):
    """`python -m pipeline.build --graphs string12` with no raw data uses the bundled sample: the
    default layout (no --raw; data/raw of the working directory, here empty), and the summary says
    SYNTHETIC on every line it concerns."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pipeline.build", "--graphs", "string12", "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC sample" in r.stderr and "put the real file at" in r.stderr
    assert "string12_coexpression" in r.stdout and "genes: 5,989" in r.stdout
    edge_lines = [ln for ln in r.stdout.splitlines() if ln.startswith("string12_")]
    assert len(edge_lines) == 6 and all("SYNTHETIC" in ln for ln in edge_lines), r.stdout
    g = open_graph(tmp_path / "out" / "string12" / "graph.zarr")
    assert g.manifest["synthetic_inputs"] is True
    assert len(g.edge_types) == 6
    r2 = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and "up to date" in r2.stdout


def test_options_and_summary(tmp_path, capsys):
    write_string(tmp_path / "raw" / "string" / "4932.protein.links.detailed.v12.0.txt.gz")
    genes = write_gene_list(tmp_path / "genes.txt")
    rc = main(["--graphs", "string12_fusion", "--graphs", "string12_experimental", "--raw", str(tmp_path / "raw"),
               "--out", str(tmp_path / "out"), "--genes", str(genes), "--name", "mine", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "string12_fusion" in out and "string12_experimental" in out and "total pairs: 2" in out
    assert open_graph(tmp_path / "out" / "mine" / "graph.zarr").edge_types == [
        "string12_experimental", "string12_fusion"]


def test_a_raw_given_that_lacks_an_input_is_an_error_not_the_sample(tmp_path, capsys):
    """An explicit --raw never falls back to the synthetic samples: a typo must not build synthetic data."""
    assert main(["--graphs", "string12_fusion", "--raw", str(tmp_path / "typo"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --raw {tmp_path / 'typo'}: no such folder"
    (tmp_path / "raw").mkdir()  # there, but without the source's file
    assert main(["--graphs", "string12_fusion", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = tmp_path / "raw" / "string" / "4932.protein.links.detailed.v12.0.txt.gz"
    assert len(err) == 1 and "expected STRING v12.0" in err[0] and f"at {expected}" in err[0], err
    assert main(["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--raw", str(tmp_path / "raw"),
                 "--out", str(tmp_path), "--genes", str(write_gene_list(tmp_path / "genes.txt"))]) == 2


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["--graphs", "string13", "--out", str(tmp_path)]) == 2
    assert "unknown graph 'string13'" in capsys.readouterr().err
    # no v11 file (and never a sample for a --raw given): says where to put it and how to download
    genes = write_gene_list(tmp_path / "genes.txt")
    (tmp_path / "raw").mkdir()
    assert main(["--graphs", "string11", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path),
                 "--genes", str(genes)]) == 2
    err = capsys.readouterr().err
    assert "4932.protein.links.detailed.v11.0.txt.gz" in err and "--download" in err
    # a malformed raw file: file and line in the message, nothing published
    raw = tmp_path / "raw2"
    p = write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt", gz=False)
    p.write_text(p.read_text() + "4932.YAL001C 4932.YAL002W 1 2 3\n")
    assert main(["--graphs", "string12", "--raw", str(raw), "--out", str(tmp_path / "o"),
                 "--genes", str(genes)]) == 2
    err = capsys.readouterr().err
    assert "v12.0.txt, line 10: expected 10 space-separated fields" in err
    assert not (tmp_path / "o" / "string12" / "graph.zarr").exists()


def test_the_dataset_summary_says_synthetic_on_each_source_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default layout: ./data/raw (absent here) with the samples
    assert main(["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--dataset", "costanzo2016",
                 "--out", str(tmp_path / "out"), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    source_lines = [ln for ln in out if ln.lstrip().startswith(("kuzmin2018", "costanzo2016"))]
    assert len(source_lines) == 2 and all(ln.endswith("SYNTHETIC") for ln in source_lines), out
    assert all("dropped (bad value)" in ln for ln in source_lines)
