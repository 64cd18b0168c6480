"""Phenotype-table readers (Kuzmin 2018/2020, Costanzo 2016), allele parsing, and the synthetic tables."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.core.paths import SAMPLE_DIR
from pipeline.core.perturbations import ALLELE_KINDS, CODES, MIXED, OBSERVATION_SCHEMA, parse_strains
from pipeline.sources.phenotypes.costanzo import scan_costanzo2016
from pipeline.sources.phenotypes.kuzmin import read_kuzmin2020, scan_kuzmin2018
from synth.phenotypes import (
    COSTANZO_HEADER,
    KUZMIN_HEADER,
    CostanzoSizes,
    KuzminSizes,
    gene_pool,
    write_costanzo2016,
    write_kuzmin2018,
)

KUZMIN_SAMPLE = SAMPLE_DIR / "kuzmin2018" / "aao1729_data_s1.sample.tsv"
COSTANZO_SAMPLES = [SAMPLE_DIR / "costanzo2016" / f"SGA_{k}.sample.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")]
D, TS, KD, OE, SUP = (CODES[k] for k in ("deletion", "temperature_sensitive", "knockdown", "overexpression",
                                         "suppressor"))


def tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = ["\t".join(header)] + ["\t".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def kuzmin_rows() -> list[list[object]]:
    """A hand-written Kuzmin 2018 excerpt: marker last and first, ts query, tm queries, empty values."""
    return [
        ["YAL015C+YDL227C_tm461", "ntg1Δ+hoΔ", "YBL007C_dma91", "sla1Δ", "digenic",
         0.007534, 0.007534, "4.50E-01", None, 0.962, 0.9695, 0.0465],
        ["YBR160W+YDL227C_tsq508", "cdc28-4+hoΔ", "YBR001C_tsa100", "nth2-5001", "digenic",
         -0.1, -0.1, "3.30E-01", 0.83, 1.02, 0.7113, 0.0123],
        ["YDL227C+YAR002W_tm5", "hoΔ+nup60Δ", "YAL048C_dma5203", "gem1Δ", "digenic",
         0.02, 0.02, "1.00E-01", 0.9, 0.95, 0.88, 0.03],
        ["YBR160W+YML107C_tm801", "cdc28-4+pml39Δ", "YBR001C_tsa100", "nth2-5001", "trigenic",
         -0.2, -0.15, "1.68E-01", 0.55, 0.8, 0.3, 0.02],
        ["YAR002W+YBR160W_tm802", "nup60Δ+cdc28-4", "YAL048C_dma5203", "gem1Δ", "trigenic",
         -0.2, -0.15, "1.68E-01", 0.55, 0.8, 0.3, None],
    ]


def costanzo_rows() -> list[list[object]]:
    return [
        ["YAL001C_tsq508", "tfc3-g349e", "YBL023C_tsa111", "mcm2-1", "TSA30", -0.0348, 0.005042, 0.8285, 0.9254,
         0.7319, 0.0102],
        ["YBL026W_sn1065", "lsm2", "YAL001C_dma4", "tfc3", "DMA30", -0.3529, 0.000004, 0.9408, "NaN", 0.4266, 0.079],
        ["YAL001C_damp174", "tfc3_damp", "YAL002W_dma1", "vps8", "DMA30", 0.01, 0.5, 0.9, 0.95, 0.86, "NaN"],
        ["YAL007C_S1", "erp2-supp1", "YAL002W_dma1", "vps8", "DMA30", 0.02, 0.4, 0.9, 0.95, 0.87, 0.04],
        ["YAL002W_sn2", "vps8", "YAL001C_tsa508", "tfc3-1", "TSA26", 0.03, 0.3, 0.8, 0.7, 0.59, 0.05],
    ]


# --- allele parsing ------------------------------------------------------------------------

def test_every_allele_kind_and_its_code():
    ids = ["YAL002W_sn123", "YAL002W_dma1", "YAL002W_del7", "YAL001C_tsq508", "YBR160W_tsa1040", "YBR160W_ts3",
           "YOR001W_damp456", "YOR001W_oe2", "YPL001C_S12", "YPL001C_supp3", "yal002w_DMA2"]
    df = parse_strains(pl.Series(ids))
    assert df["problem"].null_count() == len(ids)
    assert [t[0] for t in df["types"].to_list()] == [D, D, D, TS, TS, TS, KD, OE, SUP, SUP, D]
    assert df["genes"].to_list()[-1] == ["YAL002W"]  # upper-cased


def test_marker_removal_delta_and_ambiguous_ids():
    ids = ["YAL015C+YDL227C_tm461", "YDL227C+YAL015C_tm462", "YBR160W+YDL227C_tsq508", "YBR160W+YML107C_tm801",
           "YAR002W+YBR160W_tm802", "YDL227C_dma3", "YAL001C+YBR001C_tsq3", "YAL001C+YBR001C_tm9"]
    alleles = ["ntg1Δ+hoΔ", "hoΔ+ntg1∆", "cdc28-4+hoΔ", "cdc28-4+pml39Δ", "nup60Δ+cdc28-4", "hoΔ", "a∆+b-1",
               "a_damp+bΔ"]
    df = parse_strains(pl.Series(ids), pl.Series(alleles))
    assert df["problem"].null_count() == len(ids)
    assert df["genes"].to_list() == [["YAL015C"], ["YAL015C"], ["YBR160W"], ["YBR160W", "YML107C"],
                                     ["YAR002W", "YBR160W"], ["YDL227C"], ["YAL001C", "YBR001C"],
                                     ["YAL001C", "YBR001C"]]
    # tm: Δ (either character) -> deletion, else ts; tsq with two genes: Δ overrides; damp -> knockdown
    assert df["types"].to_list() == [[D], [D], [TS], [TS, D], [D, TS], [D], [D, TS], [KD, D]]
    assert df["markers_removed"].to_list() == [1, 1, 1, 0, 0, 0, 0, 0]  # HO alone is a perturbation


def test_unparseable_strains_say_why():
    ids = ["YOR001W_x1", "YAL001C", None, "_dma1", "YDL227C+YDL227C_tm1", "YAR002W+YBR160W_tm803"]
    df = parse_strains(pl.Series(ids), pl.Series(["foo", "x", None, "a", "hoΔ+hoΔ", "nup60Δ"]))
    problems = df["problem"].to_list()
    assert problems[0] == "unknown allele kind 'x'"
    assert "no allele suffix" in problems[1] and "empty strain id" in problems[2]
    assert "empty systematic name" in problems[3] and "only marker" in problems[4]
    assert "one '+'-separated part per gene" in problems[5]  # a tm id needs its allele name
    assert df["genes"].null_count() == len(ids)


def _layout_code_table() -> list[list[str]]:
    """The rows of the type-code table in storage_layout.md (the contract), as lists of cells."""
    text = (Path(__file__).resolve().parents[1] / "storage_layout.md").read_text()
    head = text.index("| code | type | strain-id suffixes (allele kind) | meaning |")
    rows = []
    for line in text[head:].splitlines()[2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_code_table_in_storage_layout_is_the_code():
    rows = _layout_code_table()
    assert len(rows) >= 6 and all(len(r) == 4 for r in rows), rows
    documented = {re.fullmatch(r"`(\w+)`", name).group(1): int(code) for code, name, _, _ in rows}
    assert documented == CODES
    assert sorted(CODES.values()) == list(range(1, len(CODES) + 1))  # 0 is never stored
    # the strain-id suffixes column (before any ';') is ALLELE_KINDS; tm (types from the allele name) besides
    kinds = {}
    for code, _, suffixes, _ in rows:
        for kind in re.findall(r"`([^`]+)`", suffixes.split(";")[0]):
            kinds[kind.lower()] = int(code)
    assert kinds | {"tm": MIXED} == ALLELE_KINDS


# --- readers on the samples ------------------------------------------------------------------

def check_observations(df: pl.DataFrame) -> None:
    assert df.schema == pl.Schema(OBSERVATION_SCHEMA)
    assert (df["n_perturbed"] == df["genes"].list.len()).all()
    assert (df["types"].list.len() == df["genes"].list.len()).all()
    assert (df["genes"].list.sort() == df["genes"]).all()
    assert df["genes"].list.eval(pl.element() == "YDL227C").list.any().sum() == 0
    assert df["types"].list.explode().is_in(list(CODES.values())).all()


def test_kuzmin2018_sample():
    stats: dict[str, int] = {}
    lf = scan_kuzmin2018(KUZMIN_SAMPLE, stats=stats)
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    check_observations(df)
    manifest = {f["path"]: f for f in json.loads((SAMPLE_DIR / "MANIFEST.json").read_text())["files"]}
    assert df.height == stats["rows_read"] == stats["rows"] == manifest["kuzmin2018/aao1729_data_s1.sample.tsv"]["rows"]
    assert df["source_row"].to_list() == list(range(1, df.height + 1))
    tri = df.filter(pl.col("n_perturbed") == 3)
    assert tri.select(pl.struct("genes", "types").n_unique()).item() == 900  # the distinct triples asked for
    assert tri.height > 900  # and replicates
    assert stats["markers_removed"] == df.height - tri.height  # every digenic query carries HO
    assert df["screen"].null_count() == df.height and df["interaction_raw"].null_count() < df.height
    assert df["smf_query"].null_count() > 0  # unmeasured values are null


def test_costanzo2016_samples_stream_lazily():
    stats: dict[str, int] = {}
    lf = scan_costanzo2016(COSTANZO_SAMPLES, stats=stats)
    assert isinstance(lf, pl.LazyFrame) and "SCAN" in lf.explain().upper()  # re-reads the files lazily
    df = lf.collect(engine="streaming")
    check_observations(df)
    assert df.height == stats["rows"] == 4000
    assert set(df["screen"].unique()) == {"DMA26", "DMA30", "TSA26", "TSA30"}
    assert set(df["types"].list.explode().unique()) == {D, TS, KD, SUP}
    assert df["interaction_raw"].null_count() == df.height and (df["n_perturbed"] == 2).all()
    assert df.group_by("genes", "types").len()["len"].max() > 1  # replicate measurements


# --- readers on hand-written excerpts -----------------------------------------------------------

def test_kuzmin2018_excerpt_exact(tmp_path):
    stats: dict[str, int] = {}
    df = scan_kuzmin2018(tsv(tmp_path / "k.tsv", KUZMIN_HEADER, kuzmin_rows()), stats=stats).collect()
    assert df["genes"].to_list() == [["YAL015C", "YBL007C"], ["YBR001C", "YBR160W"], ["YAL048C", "YAR002W"],
                                     ["YBR001C", "YBR160W", "YML107C"], ["YAL048C", "YAR002W", "YBR160W"]]
    assert df["types"].to_list() == [[D, D], [TS, TS], [D, D], [TS, TS, D], [D, D, TS]]
    assert stats == {"rows_read": 5, "dropped_bad_value": 0, "skipped_unparsed": 0, "markers_removed": 3, "rows": 5}
    r = df.row(0, named=True)
    assert (r["interaction"], r["interaction_p"], r["smf_query"], r["fitness_std"]) == (0.007534, 0.45, None, 0.0465)
    assert df["fitness_std"][4] is None and df["source"].unique().to_list() == ["kuzmin2018"]


def test_kuzmin2018_gzip_crlf_and_title_line(tmp_path):
    body = "\r\n".join(["Data S1. Raw genetic interaction dataset", "\t".join(KUZMIN_HEADER)]
                       + ["\t".join("" if v is None else str(v) for v in r) for r in kuzmin_rows()]) + "\r\n"
    p = tmp_path / "aao1729_data_s1.tsv.gz"
    p.write_bytes(gzip.compress(body.encode()))
    df = scan_kuzmin2018(p).collect()
    assert df.height == 5 and df["fitness_std"][0] == 0.0465 and df["fitness_std"][4] is None


def test_costanzo2016_excerpt_exact(tmp_path):
    df = scan_costanzo2016(tsv(tmp_path / "SGA_ExE.txt", COSTANZO_HEADER, costanzo_rows())).collect()
    assert df["genes"].to_list() == [["YAL001C", "YBL023C"], ["YAL001C", "YBL026W"], ["YAL001C", "YAL002W"],
                                     ["YAL002W", "YAL007C"], ["YAL001C", "YAL002W"]]
    assert df["types"].to_list() == [[TS, TS], [D, D], [KD, D], [D, SUP], [TS, D]]
    assert df["screen"].to_list() == ["TSA30", "DMA30", "DMA30", "DMA30", "TSA26"]
    assert df["smf_array"][1] is None and df["fitness_std"][2] is None  # NaN = not measured
    assert df["interaction_p"][1] == 0.000004 and df["smf_query"][0] == 0.8285


def test_kuzmin2020_xlsx_title_row_and_screen(tmp_path):
    import xlsxwriter  # the test extra has it: a missing one is an error, not a skip
    header = [h.replace("Combined mutant fitness", "Double/triple mutant fitness") for h in KUZMIN_HEADER]

    def write(path: Path, hdr: list[str], rows: list[list[object]]) -> Path:
        wb = xlsxwriter.Workbook(str(path))
        ws = wb.add_worksheet()
        ws.write_row(0, 0, ["Table S3. Raw genetic interaction dataset from pilot screens."])
        ws.write_row(1, 0, hdr)
        for i, r in enumerate(rows):
            ws.write_row(i + 2, 0, [float(v) if isinstance(v, str) and v[:1].isdigit() else v for v in r])
        wb.close()
        return path

    stats: dict[str, int] = {}
    df = read_kuzmin2020(write(tmp_path / "aaz5667-Table-S3.xlsx", header, kuzmin_rows()), stats=stats).collect()
    check_observations(df)
    assert df["types"].to_list() == [[D, D], [TS, TS], [D, D], [TS, TS, D], [D, D, TS]]
    assert df["screen"].unique().to_list() == ["S3"] and df["source"][0] == "kuzmin2020"
    assert df["interaction_p"][0] == 0.45 and df["fitness_std"][4] is None and stats["markers_removed"] == 3
    # a screen id column wins over the title; a text score names its sheet row
    rows = [r + [f"screen{i % 2}"] for i, r in enumerate(kuzmin_rows())]
    df = read_kuzmin2020(write(tmp_path / "s.xlsx", header + ["Screen ID"], rows)).collect()
    assert df["screen"].to_list() == ["screen0", "screen1", "screen0", "screen1", "screen0"]
    rows = kuzmin_rows()
    rows[3][10] = "n/d"
    with pytest.raises(SourceFormatError, match="Double/triple mutant fitness") as e:
        read_kuzmin2020(write(tmp_path / "bad.xlsx", header, rows))
    assert e.value.line == 6 and e.value.got == "n/d"  # title, header, then data rows 1..4
    # a bad value (a P-value above 1) names its sheet row, column and value; or is dropped and counted
    rows = kuzmin_rows()
    rows[1][7] = "1.5"
    bad = write(tmp_path / "p.xlsx", header, rows)
    with pytest.raises(SourceFormatError, match="a P-value in \\[0, 1\\].*'P-value'") as e:
        read_kuzmin2020(bad)
    assert e.value.line == 4 and e.value.got == "1.5"
    stats = {}
    assert read_kuzmin2020(bad, on_bad_value="drop", stats=stats).collect()["source_row"].to_list() == [1, 3, 4, 5]
    assert stats["dropped_bad_value"] == 1 and stats["rows"] == 4


# --- bad input -------------------------------------------------------------------------------------

def test_missing_column_and_another_tables_header(tmp_path):
    header = [h for h in KUZMIN_HEADER if h != "P-value"]
    rows = [r[:7] + r[8:] for r in kuzmin_rows()]
    with pytest.raises(SourceFormatError, match="'P-value'") as e:
        scan_kuzmin2018(tsv(tmp_path / "k.tsv", header, rows))
    assert e.value.line == 1 and "missing" in e.value.expected and "looks like" not in e.value.expected
    costanzo = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, costanzo_rows())
    with pytest.raises(SourceFormatError, match="looks like a Costanzo et al. 2016 SGA table"):
        scan_kuzmin2018(costanzo)
    with pytest.raises(SourceFormatError, match="looks like a Kuzmin et al. 2018"):
        scan_costanzo2016([KUZMIN_SAMPLE])


@pytest.mark.parametrize("reader,header,rows,col", [
    (scan_kuzmin2018, KUZMIN_HEADER, kuzmin_rows, 6),
    (scan_costanzo2016, COSTANZO_HEADER, costanzo_rows, 5),
])
def test_non_numeric_score_names_the_line(tmp_path, reader, header, rows, col):
    rs = rows()
    rs[3][col] = "0.1x"
    with pytest.raises(SourceFormatError, match=header[col].replace("(", r"\(").replace(")", r"\)")) as e:
        reader(tsv(tmp_path / "t.txt", header, rs))
    assert e.value.line == 5 and e.value.got == "0.1x"  # header + 4th data row


def test_ragged_rows_empty_and_header_only_files(tmp_path):
    rs = costanzo_rows()
    rs[1].append("")  # a trailing tab: ignored
    rs[2] = rs[2][:9]  # short row: the missing values are null
    df = scan_costanzo2016(tsv(tmp_path / "r.txt", COSTANZO_HEADER, rs)).collect()
    assert df.height == 5 and df["fitness"][2] is None and df["fitness"][1] == 0.4266
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SourceFormatError, match="empty file"):
        scan_costanzo2016(tmp_path / "empty.txt")
    with pytest.raises(SourceFormatError, match="data rows"):
        scan_kuzmin2018(tsv(tmp_path / "h.tsv", KUZMIN_HEADER, []))


def test_unknown_allele_suffix_error_or_counted_skip(tmp_path):
    rs = costanzo_rows()
    rs[2][0] = "YAL001C_zz174"
    rs[4][2] = "YAL001C_zz9"
    rs.insert(1, [])  # a blank line: not data, but it counts in line numbers
    path = tsv(tmp_path / "u.txt", COSTANZO_HEADER, rs)
    with pytest.raises(SourceFormatError, match="unknown allele kind 'zz'") as e:
        scan_costanzo2016(path)
    assert e.value.line == 5 and "YAL001C_zz174" in e.value.got and "Query Strain ID" in e.value.expected
    stats: dict[str, int] = {}
    df = scan_costanzo2016(path, on_unknown="skip", stats=stats).collect()
    assert df["source_row"].to_list() == [1, 3, 5]
    assert stats == {"rows_read": 5, "dropped_bad_value": 0, "skipped_unparsed": 2, "markers_removed": 0, "rows": 3}
    rs.pop(1)
    rs[0][0], rs[0][2] = "YAL001C_zz1", "YBL023C_zz2"  # bad on both sides: one row skipped, not two
    stats = {}
    scan_costanzo2016(tsv(tmp_path / "u2.txt", COSTANZO_HEADER, rs), on_unknown="skip", stats=stats)
    assert stats["skipped_unparsed"] == 3


def test_gene_count_must_match_mutant_type(tmp_path):
    rs = kuzmin_rows()
    rs[1][4] = "trigenic"  # a single-mutant query cannot make a trigenic row
    path = tsv(tmp_path / "k.tsv", KUZMIN_HEADER, rs)
    with pytest.raises(SourceFormatError, match="2 gene\\(s\\) besides markers for a trigenic row") as e:
        scan_kuzmin2018(path)
    assert e.value.line == 3
    stats: dict[str, int] = {}
    df = scan_kuzmin2018(path, on_unknown="skip", stats=stats).collect()
    assert df["source_row"].to_list() == [1, 3, 4, 5] and stats["skipped_unparsed"] == 1
    with pytest.raises(ValueError, match="on_unknown"):
        scan_kuzmin2018(path, on_unknown="ignore")  # type: ignore[arg-type]


# --- synthetic tables -------------------------------------------------------------------------------

def test_synthetic_tables_are_deterministic_and_exact(tmp_path):
    pool = gene_pool()
    sizes = KuzminSizes(triples=300, digenic=200, arrays=20)
    for d in ("a", "b"):
        write_kuzmin2018(tmp_path / d / "k.tsv", pool, sizes, seed=3)
        write_costanzo2016(tmp_path / d, pool, CostanzoSizes.rows_each(300, arrays=12), seed=3)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.t*"))
    assert len(files) == 5
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    df = scan_kuzmin2018(tmp_path / "a" / "k.tsv").collect()
    assert df.filter(pl.col("n_perturbed") == 2).height == 200
    assert df.filter(pl.col("n_perturbed") == 3).select(pl.struct("genes", "types").n_unique()).item() == 300
    c = scan_costanzo2016(sorted((tmp_path / "a" / "costanzo2016").glob("*.txt"))).collect()
    assert c.height == 1200


def test_committed_samples_match_their_generator(tmp_path):
    from scripts.make_sample_phenotypes import GENERATOR, make_samples

    fresh = {f["path"]: f["sha256"] for f in make_samples(tmp_path)}
    manifest = {f["path"]: f for f in json.loads((SAMPLE_DIR / "MANIFEST.json").read_text())["files"]
                if f["generator"] == GENERATOR}
    assert set(manifest) == set(fresh)
    for path, sha in fresh.items():
        assert manifest[path]["synthetic"] is True and manifest[path]["sha256"] == sha
        assert hashlib.sha256((SAMPLE_DIR / path).read_bytes()).hexdigest() == sha
