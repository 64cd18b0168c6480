"""The dataset stage's one-pass reader equals the readers + encode, row for row, errors and counts included."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.core.paths import SAMPLE_DIR
from pipeline.dataset.encode import UNKNOWN, collect_observations, encode
from pipeline.dataset.onepass import read_encoded
from pipeline.dataset.sources import DATASETS
from pipeline.sources.phenotypes.costanzo import COSTANZO2016, scan_costanzo2016
from pipeline.sources.phenotypes.kuzmin import KUZMIN2018, scan_kuzmin2018
from synth.phenotypes import COSTANZO_HEADER, KUZMIN_HEADER
from tests.test_phenotype_readers import costanzo_rows, kuzmin_rows, tsv


def _index(drop: tuple[str, ...] = ()) -> GeneIndex:
    ids = [ln.split("\t", 1)[0] for ln in (SAMPLE_DIR / "genes.tsv").read_text().splitlines()
           if ln and not ln.startswith("#") and not ln.startswith("id\t")]
    ids = sorted(i for i in ids if i not in drop)
    return GeneIndex(pl.DataFrame({"id": ids, "added": [False] * len(ids)}))


def _lazy(reader, path: Path, genes: GeneIndex, policy: str, stats: dict) -> pl.DataFrame:
    return collect_observations(encode(reader(path, on_unknown=policy, stats=stats), genes, tag=2))


CASES = [(KUZMIN2018, scan_kuzmin2018, SAMPLE_DIR / "kuzmin2018" / "aao1729_data_s1.sample.tsv")] + [
    (COSTANZO2016, scan_costanzo2016, SAMPLE_DIR / "costanzo2016" / f"SGA_{k}.sample.txt")
    for k in ("ExE", "NxN", "ExN_NxE", "DAmP")]


def _genes_of_first_rows(path: Path, n: int = 5) -> tuple[str, ...]:
    rows = [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines()[1:n + 1]]
    return tuple(sorted({g for r in rows for c in (r[0], r[2]) for g in c.split("_")[0].split("+")} - {"YDL227C"}))


@pytest.mark.parametrize("fmt,reader,path", CASES, ids=lambda c: getattr(c, "name", None))
@pytest.mark.parametrize("missing", [False, True], ids=["all genes", "genes missing"])
def test_equals_reader_then_encode(fmt, reader, path, missing):
    genes = _index(_genes_of_first_rows(path) if missing else ())
    s_old, s_new = {}, {}
    old = _lazy(reader, path, genes, "error", s_old)
    new = read_encoded(path, fmt, genes, 2, stats=s_new)
    assert new is not None and new.columns == old.columns and new.equals(old)
    assert s_new == s_old
    assert bool((new["key"] >= int(UNKNOWN)).any()) == missing  # rows naming a gene outside the index: tagged


def test_skip_policy_counts_and_rows_equal_the_reader(tmp_path):
    rs = costanzo_rows()
    rs[1][0] = "YBL026W_zz1065"  # unknown allele kind on a query
    rs[3][2] = "YAL002W"  # an array strain without allele suffix
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, rs)
    genes = _index()
    s_old, s_new = {}, {}
    old = _lazy(scan_costanzo2016, path, genes, "skip", s_old)
    new = read_encoded(path, COSTANZO2016, genes, 2, on_unknown="skip", stats=s_new)
    assert new.equals(old) and s_new == s_old and s_new["skipped_unparsed"] == 2
    with pytest.raises(SourceFormatError) as a:
        scan_costanzo2016(path)
    with pytest.raises(SourceFormatError) as b:
        read_encoded(path, COSTANZO2016, genes, 2)
    assert str(a.value) == str(b.value) and b.value.line == 3


def test_bad_score_raises_the_readers_error(tmp_path):
    rs = kuzmin_rows()
    rs[2][6] = "1.2.3"
    path = tsv(tmp_path / "k.tsv", KUZMIN_HEADER, rs)
    with pytest.raises(SourceFormatError) as e:
        read_encoded(path, KUZMIN2018, _index(), 0)
    assert e.value.line == 4 and e.value.got == "1.2.3"


def test_an_id_with_two_allele_names_falls_back_to_the_lazy_path(tmp_path):
    rs = costanzo_rows()
    rs[4][3] = "vps8-other"  # YAL002W_dma1 named two ways
    rs[4][2] = "YAL002W_dma1"
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, rs)
    assert read_encoded(path, COSTANZO2016, _index(), 0) is None
    assert DATASETS["costanzo2016"].table_format() is COSTANZO2016
    assert DATASETS["kuzmin2020"].table_format() is None


def test_blank_lines_and_header_only_files(tmp_path):
    path = tsv(tmp_path / "SGA_NxN.txt", COSTANZO_HEADER, costanzo_rows())
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["", ""] + lines[3:] + [""]) + "\n")
    genes = _index()
    old = _lazy(scan_costanzo2016, path, genes, "error", {})
    new = read_encoded(path, COSTANZO2016, genes, 2)
    assert new.equals(old) and new.height == 5 and new["source_row"].to_list()[-1] == 7
    empty = tsv(tmp_path / "SGA_ExE.txt", COSTANZO_HEADER, [])
    with pytest.raises(SourceFormatError, match="data rows"):
        read_encoded(empty, COSTANZO2016, genes, 2)
