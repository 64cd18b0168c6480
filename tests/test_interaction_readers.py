"""BioGRID TAB3, TFLink and regulatory-table readers: edges, counts, and bad input."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex, conform
from pipeline.sources.interactions.biogrid import TAB3_COLUMNS, read_biogrid
from pipeline.sources.interactions.regulatory import read_regulatory
from pipeline.sources.interactions.tflink import read_tflink


@pytest.fixture
def genes() -> GeneIndex:
    return GeneIndex.from_table(conform(pl.DataFrame({
        "id": ["YAL001C", "YAL002W", "YAL003W", "YBR001C", "YCR002C", "YKL112W", "YPL248C", "YML007W", "Q0010"],
        "name": ["TFC3", "VPS8", "EFB1", "NTH2", "CDC10", "ABF1", "GAL4", "YAP1", None],
        "aliases": [["FUN24", "TSV115"], ["FUN15"], ["TEF5"], [], [], ["BAF1", "OBF1", "REB2"], ["GAL81"],
                    ["PAR1"], []],
    })))


def pairs(table, genes: GeneIndex) -> list[tuple[str, str]]:
    ids = genes.ids
    return [(ids[a], ids[b]) for a, b in zip(table.src, table.dst, strict=True)]


# --- BioGRID ----------------------------------------------------------------------------

BIOGRID_HEADER = TAB3_COLUMNS  # the real 37-column header
assert len(BIOGRID_HEADER) == 37

_ORGANISM = {"559292": "Saccharomyces cerevisiae (S288c)", "9606": "Homo sapiens"}


def biogrid_row(iid: int, sys_a: str, sys_b: str, sym_a: str, sym_b: str, system: str, kind: str,
                org_a: str = "559292", org_b: str = "559292", qualifications: str = "-") -> list[str]:
    """A TAB3 row as BioGRID writes it: ``-`` for missing values, ``|`` inside lists."""
    return [str(iid), str(850000 + iid), str(860000 + iid), str(31000 + iid), str(32000 + iid),
            sys_a, sys_b, sym_a, sym_b, "-", f"{sym_b}|L000001234", system, kind,
            "Ho Y (2002)", "PUBMED:11805837", org_a, org_b, "High Throughput", "-", "-",
            qualifications, "-", "BIOGRID", "P34111", "-", "NP_009400", "-", "-", "-",
            "-", "-", "-", "-", "-", "-", _ORGANISM[org_a], _ORGANISM[org_b]]


BIOGRID_ROWS = [
    biogrid_row(1, "YAL001C", "YAL002W", "TFC3", "VPS8", "Affinity Capture-MS", "physical"),
    biogrid_row(2, "YAL002W", "YAL001C", "VPS8", "TFC3", "Two-hybrid", "physical",
                qualifications='weak "bait" signal'),  # a stray quote, as BioGRID has
    biogrid_row(3, "YBR001C", "YCR002C", "NTH2", "CDC10", "Synthetic Lethality", "genetic"),
    biogrid_row(4, "YAL003W", "-", "EFB1", "ABF1", "Negative Genetic", "genetic"),  # B maps by symbol
    biogrid_row(5, "YAL001C", "YNOTREAL", "TFC3", "FAKE1", "Affinity Capture-MS", "physical"),  # unknown
    biogrid_row(6, "-", "-", "TP53", "MDM2", "Reconstituted Complex", "physical", "9606", "9606"),
    biogrid_row(7, "YAL001C", "-", "TFC3", "TP53", "Two-hybrid", "physical", "559292", "9606"),
    biogrid_row(8, "YAL003W", "YAL003W", "EFB1", "EFB1", "Affinity Capture-Western", "physical"),  # self-loop
    biogrid_row(9, "YLR999W", "YML007W", "gal4", "YAP1", "Dosage Rescue", "genetic"),  # A: unknown id, symbol maps
]


def write_biogrid(path: Path, rows=None, header=BIOGRID_HEADER, extra: str = "") -> Path:
    rows = BIOGRID_ROWS if rows is None else rows
    text = "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows) + extra
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.stem, text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["b.tab3.txt", "b.tab3.txt.gz", "BIOGRID-ORGANISM.tab3.zip"])
def test_biogrid_edges_and_counts(tmp_path, genes, name):
    tabs = read_biogrid(write_biogrid(tmp_path / name), genes)
    assert sorted(tabs) == ["genetic", "physical"]
    ph, ge = tabs["physical"], tabs["genetic"]
    assert not ph.directed and not ge.directed
    assert pairs(ph, genes) == [("YAL001C", "YAL002W"), ("YAL002W", "YAL001C"), ("YAL003W", "YAL003W")]
    assert ph.stats == {"rows_read": 6, "dropped_other_organism": 2, "dropped_unknown_gene": 1}
    assert pairs(ge, genes) == [("YBR001C", "YCR002C"), ("YAL003W", "YKL112W"), ("YPL248C", "YML007W")]
    assert ge.stats == {"rows_read": 3, "dropped_other_organism": 0, "dropped_unknown_gene": 0}
    assert ph.weight.dtype == np.float32 and np.all(ph.weight == 1.0) and np.all(ge.weight == 1.0)
    assert ph.source == str(tmp_path / name)


def test_biogrid_other_organism(tmp_path, genes):
    tabs = read_biogrid(write_biogrid(tmp_path / "b.txt"), genes, organism_id=9606)
    # the human pair maps to no yeast gene; the mixed row is dropped either way
    assert tabs["physical"].stats == {"rows_read": 6, "dropped_other_organism": 5, "dropped_unknown_gene": 1}
    assert len(tabs["physical"]) == 0 and len(tabs["genetic"]) == 0


def test_biogrid_header_only(tmp_path, genes):
    tabs = read_biogrid(write_biogrid(tmp_path / "b.txt", rows=[]), genes)
    assert len(tabs["physical"]) == 0 and tabs["genetic"].stats["rows_read"] == 0


def test_biogrid_missing_columns(tmp_path, genes):
    drop = {BIOGRID_HEADER.index("Experimental System Type"), BIOGRID_HEADER.index("Organism ID Interactor B")}
    header = [h for i, h in enumerate(BIOGRID_HEADER) if i not in drop]
    rows = [[v for i, v in enumerate(r) if i not in drop] for r in BIOGRID_ROWS]
    p = write_biogrid(tmp_path / "bad.tab3.txt", rows=rows, header=header)
    with pytest.raises(SourceFormatError, match=r"bad\.tab3\.txt, line 1: .*missing: 'Experimental System Type', "
                                                r"'Organism ID Interactor B'") as e:
        read_biogrid(p, genes)
    assert e.value.line == 1


def test_biogrid_short_and_long_rows(tmp_path, genes):
    rows = [r[:] for r in BIOGRID_ROWS]
    rows[2] = rows[2][:-1]  # data row 3 -> line 4
    with pytest.raises(SourceFormatError, match=r"short\.txt, line 4: expected 37 tab-separated fields") as e:
        read_biogrid(write_biogrid(tmp_path / "short.txt", rows=rows), genes)
    assert e.value.line == 4 and "36 fields" in str(e.value)
    rows = [r[:] for r in BIOGRID_ROWS]
    rows[5] = rows[5] + ["extra"]
    with pytest.raises(SourceFormatError, match=r"long\.txt\.gz, line 7: expected 37") as e:
        read_biogrid(write_biogrid(tmp_path / "long.txt.gz", rows=rows), genes)


def test_biogrid_truncated_last_line(tmp_path, genes):
    """A plain file cut mid-line: the last row is short, not silently padded."""
    p = write_biogrid(tmp_path / "cut.txt", extra="\t".join(BIOGRID_ROWS[0][:20]))
    with pytest.raises(SourceFormatError, match=r"cut\.txt, line 11: expected 37"):
        read_biogrid(p, genes)


def test_biogrid_unknown_type_line_after_blank_lines(tmp_path, genes):
    rows = [r[:] for r in BIOGRID_ROWS]
    rows[4][12] = "chemical"
    p = write_biogrid(tmp_path / "t.txt", rows=rows)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:2] + ["", ""] + lines[2:]) + "\n")  # blank lines before data row 5
    with pytest.raises(SourceFormatError, match=r"t\.txt, line 8: expected Experimental System Type "
                                                r"'physical' or 'genetic', got 'chemical'"):
        read_biogrid(p, genes)


def test_biogrid_bad_archives(tmp_path, genes):
    good = write_biogrid(tmp_path / "b.txt.gz").read_bytes()
    cut = tmp_path / "cut.tab3.txt.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(SourceFormatError, match=r"cut\.tab3\.txt\.gz: expected a complete gzip stream.*truncated"):
        read_biogrid(cut, genes)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.tab3.txt", "x")
        zf.writestr("b.tab3.txt", "y")
    with pytest.raises(SourceFormatError, match=r"two\.zip: expected a \.zip archive holding exactly one file"):
        read_biogrid(two, genes)
    zipped = write_biogrid(tmp_path / "z.tab3.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(zipped[: len(zipped) // 2])
    with pytest.raises(SourceFormatError, match=r"cut\.zip: expected a complete, valid \.zip archive"):
        read_biogrid(tmp_path / "cut.zip", genes)


@pytest.mark.parametrize("content", [b"", b"\n\n", gzip.compress(b"", mtime=0)])
def test_empty_files(tmp_path, genes, content):
    p = tmp_path / "empty.txt.gz"
    p.write_bytes(content)
    for reader in (read_biogrid, read_tflink, read_regulatory):
        with pytest.raises(SourceFormatError, match=r"empty\.txt\.gz: expected a header line.*an empty file"):
            reader(p, genes)


# --- TFLink -----------------------------------------------------------------------------

TFLINK_HEADER = ("UniprotID.TF\tUniprotID.Target\tNCBI.GeneID.TF\tNCBI.GeneID.Target\tName.TF\tName.Target\t"
                 "Detection.method\tPubmedID\tOrganism\tSource.database\tSmall-scale.evidence")
TFLINK_ROWS = [
    # TF by standard name, target by standard / systematic name
    "P14164\tP34111\t853590\t851230\tABF1\tTFC3\tchromatin immunoprecipitation assay\t11823631\t"
    "Saccharomyces cerevisiae\tYEASTRACT\tNo",
    "P14164\tP39702\t853590\t851228\tABF1\tYAL002W\tbeta galactosidase assay;electrophoretic mobility shift assay\t"
    "9353269;15192094\tSaccharomyces cerevisiae\tYEASTRACT;ReMap\tYes",
    # several names in one cell: the first known one counts
    "P04386\tP25342\t855828\t850297\tgal4\tXYZ1;CDC10\tchromatin immunoprecipitation-chip\t15343339\t"
    "Saccharomyces cerevisiae\tGTRD\tNo",
    "P19880\tP32471\t855005\t851260\tYML007W\tTEF5\tinferred from physical interaction\t-\t"
    "Saccharomyces cerevisiae\tYEASTRACT\tNo",
    # unknown TF, missing target name
    "Q00000\tP34111\t-\t851230\tNOTATF\tTFC3\t-\t-\tSaccharomyces cerevisiae\tGTRD\tNo",
    "P14164\t-\t853590\t-\tABF1\t-\t-\t-\tSaccharomyces cerevisiae\tGTRD\tNo",
]


def write_text(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["tf.tsv", "tf.tsv.gz"])
def test_tflink(tmp_path, genes, name):
    tabs = read_tflink(write_text(tmp_path / name, [TFLINK_HEADER] + TFLINK_ROWS), genes)
    t = tabs["tflink"]
    assert list(tabs) == ["tflink"] and t.directed and np.all(t.weight == 1.0)
    assert pairs(t, genes) == [("YKL112W", "YAL001C"), ("YKL112W", "YAL002W"), ("YPL248C", "YCR002C"),
                               ("YML007W", "YAL003W")]
    assert t.stats == {"rows_read": 6, "dropped_unknown_gene": 2}


def test_tflink_missing_column_and_short_row(tmp_path, genes):
    header = TFLINK_HEADER.replace("Name.Target", "Target.Name")
    with pytest.raises(SourceFormatError, match=r"tf\.tsv, line 1: .*missing: 'Name\.Target'"):
        read_tflink(write_text(tmp_path / "tf.tsv", [header] + TFLINK_ROWS), genes)
    rows = TFLINK_ROWS[:3] + ["P14164\tP34111\t853590\t851230\tABF1\tTFC3"] + TFLINK_ROWS[3:]
    with pytest.raises(SourceFormatError, match=r"tf2\.tsv, line 5: expected 11 tab-separated fields"):
        read_tflink(write_text(tmp_path / "tf2.tsv", [TFLINK_HEADER] + rows), genes)


# --- regulatory tables ------------------------------------------------------------------

def test_regulatory_sgd_export(tmp_path, genes):
    lines = [
        "! SGD regulation export",
        "Regulator systematic name\tRegulator standard name\tTarget systematic name\tTarget standard name\t"
        "Assay\tRegulator type\tRegulation type\tDirection",
        "YKL112W\tABF1\tYAL001C\tTFC3\tchromatin immunoprecipitation evidence\ttranscription factor\t"
        "transcription\tpositive",
        "YPL248C\tGAL4\tYAL003W\tEFB1\tmicroarray RNA expression level evidence\ttranscription factor\t"
        "transcription\t",
        "YPL248C\tGAL4\tYZZ999W\tNEW1\tmicroarray RNA expression level evidence\ttranscription factor\t"
        "transcription\tnegative",
    ]
    t = read_regulatory(write_text(tmp_path / "regulation.tsv", lines), genes)["regulatory"]
    assert t.directed and np.all(t.weight == 1.0)
    assert pairs(t, genes) == [("YKL112W", "YAL001C"), ("YPL248C", "YAL003W")]
    assert t.stats == {"rows_read": 3, "dropped_unknown_gene": 1}


def test_regulatory_yeastract_two_columns(tmp_path, genes):
    lines = ["TF\tGene", "Abf1p\tYAL001C", "Gal4p\tVPS8", "Yap1p\tefb1", "Xyz9p\tYAL001C", "YAP1\tQ0010"]
    t = read_regulatory(write_text(tmp_path / "yeastract.tsv.gz", lines), genes)["regulatory"]
    assert pairs(t, genes) == [("YKL112W", "YAL001C"), ("YPL248C", "YAL002W"), ("YML007W", "YAL003W"),
                               ("YML007W", "Q0010")]
    assert t.stats == {"rows_read": 5, "dropped_unknown_gene": 1}


def test_regulatory_weights(tmp_path, genes):
    lines = ["regulator\ttarget\tScore", "ABF1\tTFC3\t0.25", "GAL4\tEFB1\t 2 ", "OBF1\tCDC10\t0"]
    t = read_regulatory(write_text(tmp_path / "w.tsv", lines), genes)["regulatory"]
    assert pairs(t, genes) == [("YKL112W", "YAL001C"), ("YPL248C", "YAL003W"), ("YKL112W", "YCR002C")]
    assert t.weight.tolist() == [0.25, 2.0, 0.0]


@pytest.mark.parametrize("bad", ["high", "", "-1", "nan", "inf", "1e300"])
def test_regulatory_bad_weight(tmp_path, genes, bad):
    lines = ["regulator\ttarget\tweight", "ABF1\tTFC3\t0.5", "", f"GAL4\tEFB1\t{bad}"]
    with pytest.raises(SourceFormatError, match=r"w\.tsv, line 4: expected a finite weight >= 0"):
        read_regulatory(write_text(tmp_path / "w.tsv", lines), genes)


def test_regulatory_missing_column(tmp_path, genes):
    with pytest.raises(SourceFormatError, match=r"r\.tsv, line 1: .*missing: 'target'.*'Gene'"):
        read_regulatory(write_text(tmp_path / "r.tsv", ["TF\tTarget gene", "ABF1\tTFC3"]), genes)
