"""Bad input ends in one clear error naming the file, line and column (or the option), never in a
silently wrong store: hostile names, bad values, undecodable or truncated text, duplicate files."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import BuildConfig
from pipeline.core.errors import SourceFormatError
from pipeline.dataset.encode import collect_observations, encode
from pipeline.dataset.onepass import read_encoded
from pipeline.sources.phenotypes.costanzo import COSTANZO2016, scan_costanzo2016
from pipeline.sources.phenotypes.kuzmin import KUZMIN2018, scan_kuzmin2018
from synth.phenotypes import COSTANZO_HEADER, KUZMIN_HEADER
from tests.test_encoded_tables import _index
from tests.test_phenotype_readers import costanzo_rows, kuzmin_rows, tsv

# --- names ---------------------------------------------------------------------------------

HOSTILE = ["../../x", "/abs", "a/b", "..", ".hidden", "a..b", "", "x y"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_name_that_is_a_path_is_refused_by_the_config(value):
    with pytest.raises(ValueError, match="expected a plain name"):
        BuildConfig.from_params({"graphs": ["string12"], "name": value})
    with pytest.raises(ValueError, match="--embeddings (name .*expected a plain name|takes NAME=PATH)"):
        BuildConfig.from_params({"graphs": ["string12"], "embeddings": [f"{value}=e.tsv"]})


def test_plain_names_pass():
    cfg = BuildConfig.from_params({"graphs": ["string12"], "name": "v1.2_test+b-c", "embeddings": ["esm2=e.tsv"]})
    assert cfg.build_name == "v1.2_test+b-c"


def test_the_cli_refuses_a_hostile_name_in_one_line(tmp_path, capsys):
    from pipeline.build import main

    assert main(["--graphs", "string12", "--out", str(tmp_path), "--name", "../../x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --name ../../x: expected a plain name (letters, digits, . _ + -)"]
    assert list(tmp_path.iterdir()) == []


# --- values --------------------------------------------------------------------------------

def _both(path: Path, fmt, reader, **kw) -> tuple[pl.DataFrame, dict, pl.DataFrame, dict]:
    """(one-pass frame, its counts, reader + encode frame, its counts) of one table."""
    genes = _index()
    s_new, s_old = {}, {}
    new = read_encoded(path, fmt, genes, 2, stats=s_new, **kw)
    old = collect_observations(encode(reader(path, stats=s_old, **kw), genes, tag=2))
    return new, s_new, old, s_old


# (row, column index in KUZMIN_HEADER, text, column named in the error)
KUZMIN_BAD = [
    (1, 6, "inf", "Adjusted genetic interaction score (epsilon or tau)"),
    (2, 10, "-inf", "Combined mutant fitness"),
    (3, 8, "1e39", "Query single/double mutant fitness"),  # finite in float64, inf in float32
    (0, 7, "1.5", "P-value"),
    (4, 7, "-0.01", "P-value"),
    (2, 11, "-0.2", "Combined mutant fitness standard deviation"),
    (1, 9, "NAN", "Array single mutant fitness"),  # NaN spelled other than the null spellings
]


@pytest.mark.parametrize("row,col,text,column", KUZMIN_BAD, ids=[c[2] for c in KUZMIN_BAD])
def test_a_bad_value_is_an_error_naming_file_line_column_and_value(tmp_path, row, col, text, column):
    rs = kuzmin_rows()
    rs[row][col] = text
    path = tsv(tmp_path / "k.tsv", KUZMIN_HEADER, rs)
    errors = []
    for read in (lambda: scan_kuzmin2018(path), lambda: scan_kuzmin2018(path, check_values=False).collect(),
                 lambda: read_encoded(path, KUZMIN2018, _index(), 0)):
        with pytest.raises((SourceFormatError, pl.exceptions.PolarsError)) as e:
            read()
        errors.append(e.value)
    reader, unchecked, onepass = errors
    # unchecked: the frame fails inside polars; the dataset stage then reads with check_values=True
    assert isinstance(unchecked, pl.exceptions.PolarsError)
    assert str(reader) == str(onepass)
    assert reader.path == str(path) and reader.line == row + 2 and reader.got == text
    assert repr(column) in reader.expected


def test_bad_values_dropped_and_counted_alike_on_both_paths(tmp_path):
    rs = costanzo_rows()
    rs[0][6] = "2"  # P-value
    rs[3][10] = "-1"  # std
    rs[3][5] = "inf"  # same row, counted once
    rs[4][9] = "1e40"
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, rs)
    new, s_new, old, s_old = _both(path, COSTANZO2016, scan_costanzo2016, on_bad_value="drop")
    assert new.equals(old) and s_new == s_old
    assert s_new["dropped_bad_value"] == 3 and s_new["rows"] == 2 and s_new["rows_read"] == 5
    assert new["source_row"].to_list() == [2, 3]


def test_dropping_counts_a_row_once_even_with_a_bad_strain(tmp_path):
    rs = costanzo_rows()
    rs[1][0] = "YBL026W_zz1065"  # unknown allele kind: skipped ...
    rs[1][6] = "7"  # ... but first dropped for its P-value
    rs[2][2] = "YAL002W"  # no allele suffix: skipped
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, rs)
    new, s_new, old, s_old = _both(path, COSTANZO2016, scan_costanzo2016, on_bad_value="drop", on_unknown="skip")
    assert new.equals(old) and s_new == s_old
    assert (s_new["dropped_bad_value"], s_new["skipped_unparsed"], s_new["rows"]) == (1, 1, 3)


def test_null_spellings_are_not_bad_values(tmp_path):
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, costanzo_rows())  # "NaN" cells: not measured
    new, s_new, old, _ = _both(path, COSTANZO2016, scan_costanzo2016)
    assert new.equals(old) and s_new["dropped_bad_value"] == 0 and new["smf_array"].null_count() == 1


def test_the_dataset_option_is_a_build_parameter():
    plain = BuildConfig.from_params({"graphs": ["string12"], "datasets": ["kuzmin2018"]})
    drop = BuildConfig.from_params({"graphs": ["string12"], "datasets": ["kuzmin2018"], "on_bad_value": "drop"})
    assert plain.dataset.on_bad_value == "error" and drop.dataset.on_bad_value == "drop"
    assert BuildConfig.from_params(drop.to_params()) == drop
    with pytest.raises(ValueError, match="--on-bad-value"):
        BuildConfig.from_params({"graphs": ["string12"], "datasets": ["kuzmin2018"], "on_bad_value": "keep"})


# --- text: encodings and truncation --------------------------------------------------------

def test_a_byte_that_is_not_utf8_names_its_line_and_offset(tmp_path):
    path = tsv(tmp_path / "k.tsv", KUZMIN_HEADER, kuzmin_rows())
    data = path.read_bytes()
    at = data.index(b"sla1")  # line 2
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    for read in (lambda: scan_kuzmin2018(path), lambda: read_encoded(path, KUZMIN2018, _index(), 0)):
        with pytest.raises(SourceFormatError) as e:
            read()
        assert e.value.line == 2 and f"byte 0xff at byte offset {at} is not" in str(e.value)


def test_a_truncated_gzip_table_names_the_file(tmp_path):
    plain = tsv(tmp_path / "k.tsv", KUZMIN_HEADER, kuzmin_rows() * 400)
    packed = gzip.compress(plain.read_bytes())
    path = tmp_path / "aao1729_data_s1.tsv.gz"
    path.write_bytes(packed[: len(packed) - 40])
    for read in (lambda: scan_kuzmin2018(path), lambda: read_encoded(path, KUZMIN2018, _index(), 0)):
        with pytest.raises(SourceFormatError, match="expected a complete gzip stream") as e:
            read()
        assert e.value.path == str(path)


# --- gene lists and tables -----------------------------------------------------------------

def test_a_bom_is_not_part_of_the_first_gene_id(tmp_path):
    from pipeline.core.genes import read_gene_list

    path = tmp_path / "genes.txt"
    path.write_bytes(b"\xef\xbb\xbfYAL001C\nYAL002W\n")
    assert read_gene_list(path)["id"].to_list() == ["YAL001C", "YAL002W"]


def test_a_gene_list_byte_that_is_not_utf8_names_line_and_offset(tmp_path):
    from pipeline.core.genes import read_gene_list

    path = tmp_path / "genes.txt"
    path.write_bytes(b"YAL001C\nYAL\xe9002W\n")
    with pytest.raises(SourceFormatError) as e:
        read_gene_list(path)
    assert e.value.line == 2 and "byte 0xe9 at byte offset 11" in str(e.value)


# --- the command line: file system failures --------------------------------------------------

def test_out_naming_a_file_is_one_error_line(tmp_path, capsys):
    from pipeline.build import main

    out = tmp_path / "a_file"
    out.write_text("x")
    assert main(["--graphs", "string12_fusion", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out}") and err[0].endswith("Not a directory"), err


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_one_error_line(tmp_path, capsys):
    from pipeline.build import main

    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["--graphs", "string12_fusion", "--out", str(out), "-q"]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out}") and err[0].endswith("Permission denied"), err


def test_a_full_disk_says_free_space_and_rerun(tmp_path, capsys, monkeypatch):
    import errno

    import pipeline.build

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.build, "run_build", full)
    assert pipeline.build.main(["--graphs", "string12_fusion", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path}: no space left on device; free space and rerun "
                                               f"(the build resumes)")


# --- two files where one is expected ----------------------------------------------------------

def test_two_files_of_one_source_are_an_error_naming_both(tmp_path, capsys):
    from pipeline.build import main
    from tests.helpers import write_gene_list, write_string

    raw = tmp_path / "raw"
    write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz")
    write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt", gz=False)
    genes = write_gene_list(tmp_path / "genes.txt")
    assert main(["--graphs", "string12_fusion", "--raw", str(raw), "--out", str(tmp_path / "o"),
                 "--genes", str(genes), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 files match where one string12 file" in err[0], err
    assert "v12.0.txt, " in err[0] and "v12.0.txt.gz" in err[0]


def test_two_spellings_of_one_table_are_an_error_several_tables_are_not(tmp_path):
    from pipeline.core.errors import AmbiguousSourceError
    from pipeline.dataset.sources import DATASETS, find_dataset_files

    k = tmp_path / "kuzmin2018"
    k.mkdir()
    (k / "aao1729_data_s1.tsv").write_text("x")
    (k / "aao1729_data_s1.tsv.gz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(AmbiguousSourceError, match="aao1729_data_s1.tsv, aao1729_data_s1.tsv.gz"):
        find_dataset_files(DATASETS["kuzmin2018"], tmp_path)
    c = tmp_path / "costanzo2016"
    c.mkdir()
    for name in ("SGA_ExE.txt", "SGA_NxN.txt"):
        (c / name).write_text("x")
    assert [p.name for p in find_dataset_files(DATASETS["costanzo2016"], tmp_path)] == ["SGA_ExE.txt", "SGA_NxN.txt"]


def test_a_dataset_input_is_the_release_or_a_local_variant(tmp_path, caplog):
    import logging

    from pipeline.core.inputs import describe_input
    from pipeline.dataset.sources import DATASETS
    from pipeline.sources.download import verify_input

    path = tmp_path / "kuzmin2018" / "aao1729_data_s1.tsv"
    path.parent.mkdir()
    path.write_text("an edited table\n")
    known = dict(DATASETS["kuzmin2018"].releases)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        inp = verify_input(describe_input("kuzmin2018", path, "raw"), tmp_path, known)
    assert inp.release == "local variant"
    assert any(str(path) in r.getMessage() and known["aao1729_data_s1.tsv"] in r.getMessage() for r in caplog.records)
    assert verify_input(describe_input("kuzmin2018", path, "raw"), tmp_path,
                        {"aao1729_data_s1.tsv": inp.sha256}).release == "verified"
    other = tmp_path / "kuzmin2018" / "mine.tsv"  # no release of that name: nothing to say
    other.write_text("x\n")
    assert verify_input(describe_input("kuzmin2018", other, "raw"), tmp_path, known).release is None


def test_a_source_table_byte_that_is_not_utf8_names_line_and_offset(tmp_path):
    from pipeline.sources.interactions.regulatory import read_regulatory
    from tests.helpers import gene_index

    path = tmp_path / "regulatory.tsv"
    body = b"regulator\ttarget\r\nYAL001C\tYAL002W\r\nYAL003W\tYBR\xff001C\r\n"
    path.write_bytes(body)
    with pytest.raises(SourceFormatError) as e:
        read_regulatory(path, gene_index())
    offset = body.index(b"\xff")
    assert e.value.line == 3 and f"byte 0xff at byte offset {offset}, column 12" in str(e.value)


@pytest.mark.parametrize("policy", ["error", "drop"])
def test_the_dataset_stage_on_the_lazy_path_reports_or_drops_a_bad_value(tmp_path, capsys, policy):
    """A table the one-pass reader hands to the lazy path (an id with two allele names): the
    bad value is reported by the first read (file, line, column, value), or dropped by the lazy
    path and counted."""
    from pipeline.build import main
    from pipeline.dataset.store import open_dataset
    from tests.helpers import write_gene_list, write_string

    raw = tmp_path / "raw"
    write_string(raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz")
    rs = costanzo_rows()
    rs[4][2], rs[4][3] = "YAL002W_dma1", "vps8-other"  # YAL002W_dma1 named two ways: the lazy path
    rs[2][6] = "1.7"  # a P-value above 1, on line 4
    (raw / "costanzo2016").mkdir()
    path = tsv(raw / "costanzo2016" / "SGA_NxN.txt", COSTANZO_HEADER, rs)
    genes = write_gene_list(tmp_path / "genes.txt", ids=["YAL001C", "YAL002W", "YAL007C", "YBL023C", "YBL026W"])
    argv = ["--graphs", "string12_fusion", "--dataset", "costanzo2016", "--raw", str(raw), "--genes", str(genes),
            "--out", str(tmp_path / "out"), "--on-bad-value", policy, "-q"]
    if policy == "error":
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {path}, line 4: expected a P-value in [0, 1] in column 'P-value' "
                       f"(--on-bad-value drop drops such rows and counts them), got '1.7'"]
        return
    assert main(argv) == 0
    m = open_dataset(tmp_path / "out" / "string12" / "dataset").manifest
    assert m["counts"]["sources"]["costanzo2016"]["dropped_bad_value"] == 1
    assert m["parameters"]["on_bad_value"] == "drop"
