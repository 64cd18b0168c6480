"""``python -m benchmarks train`` at tiny scale: every row trains, research rows see the stream's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import BuildConfig
from pipeline.precompute.stages import PrecomputeConfig
from pipeline.sequence import run_build

PRE = dict(artifacts=["masks", "khop", "adjacency-rows"], khop=(1,), chunk_samples=256, adjacency_steps=4,
           adjacency_rows=8, adjacency_negatives=8, dask_processes=False, workers=1)


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _small_universe(path: Path) -> Path:
    """A gene list: the sample Kuzmin table's genes and their neighbours in the sample STRING file
    (~320 genes, ~5k edges), so a full-graph model step takes milliseconds, not seconds."""
    import gzip

    import polars as pl

    df = pl.read_csv(SAMPLE / "kuzmin2018" / "aao1729_data_s1.sample.tsv", separator="\t", infer_schema_length=0)
    genes = {g for c in ("Query strain ID", "Array strain ID") for v in df[c] for g in v.split("_")[0].split("+")}
    with gzip.open(SAMPLE / "string" / "4932.protein.links.detailed.v12.0.sample.txt.gz", "rt") as fh:
        next(fh)
        pairs = [[p.split(".", 1)[1] for p in line.split()[:2]] for line in fh]
    genes |= {b for a, b in pairs if a in genes}
    path.write_text("\n".join(sorted(genes)) + "\n")
    return path


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    res = run_build(BuildConfig.create(graphs=["string12", "regulatory"], out=tmp / "out",  # inputs: the samples
                                       genes=_small_universe(tmp / "genes.txt"), datasets=["kuzmin2018"],
                                       precompute=PrecomputeConfig(**PRE)))
    return Path(res.graph).parent


def test_parse_method_refuses_unknown_rows():
    from benchmarks.train import parse_method

    assert parse_method("khop3").k == 3
    with pytest.raises(ValueError, match="research-code loading exists for lazy and khopK only"):
        parse_method("research-index")
    with pytest.raises(ValueError, match="expected one of"):
        parse_method("khop0")


def _run(build: Path, tmp_path: Path, methods: list[str]) -> tuple[str, dict[str, dict]]:
    from benchmarks import train

    out = tmp_path / "train.json"
    assert train.main(["--build", str(build), "--steps", "1", "--warmup", "1", "--batch-size", "2", "--workers", "1",
                       "--min-seconds", "0", "--methods", *methods, "--json", str(out)]) == 0
    recs = {r["name"]: r for r in json.loads(out.read_text())}
    for m in methods:
        assert recs[f"train.{m}.it_per_s"]["value"] > 0
        assert 0 <= recs[f"train.{m}.data_wait"]["value"] <= 1
        assert recs[f"train.{m}.steps"]["value"] == 1
        assert recs[f"train.{m}.step_memory"]["value"] >= 0
    return out.read_text(), recs


def _same_samples(recs: dict[str, dict], model: str) -> None:
    """Research-code loading trains on exactly the stream's samples: the same sizes per sample."""
    for what in ("nodes_per_sample", "edges_per_sample"):
        assert recs[f"train.{model}.{what}"]["value"] == recs[f"train.research-{model}.{what}"]["value"] > 0


def test_train_benchmark_smoke(build, tmp_path, capsys):
    _, recs = _run(build, tmp_path, ["index", "lazy", "research-lazy"])
    table = capsys.readouterr().out
    assert "research: lazy (HeteroData + masks)" in table and "ours" in table and "wait <5%" in table
    _same_samples(recs, "lazy")
    assert recs["train.lazy.edges_per_sample"]["value"] > 100  # the small universe still has a graph
    assert recs["train.lazy.step_memory"]["value"] > 0
    assert "train.lazy.ours_vs_research" in recs
    assert recs["train.index.it_per_s"]["meta"]["benchmark"] == "train"


@pytest.mark.slow
def test_train_benchmark_khop_and_transformer_rows(build, tmp_path, capsys):
    _, recs = _run(build, tmp_path, ["lazy", "khop1", "transformer", "research-khop1"])
    assert ">=20x lazy" in capsys.readouterr().out
    _same_samples(recs, "khop1")
    assert {"train.khop1.ours_vs_research", "train.transformer.vs_lazy"} <= set(recs)
    n_genes = recs["train.transformer.it_per_s"]["meta"]["params"]["n_genes"]
    assert recs["train.transformer.nodes_per_sample"]["value"] == n_genes + 1  # every gene token + CLS
