"""STRING protein.links.detailed reader: values, counts, and bad input."""

import gzip

import numpy as np
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.sources.interactions.string import CHANNELS, read_string
from tests.helpers import gene_index, string_rows, write_string


def test_reads_channels_with_counts(tmp_path):
    gi = gene_index()
    tabs = read_string(write_string(tmp_path / "s.txt.gz"), gi, prefix="string12")
    assert sorted(tabs) == sorted(f"string12_{c}" for c in CHANNELS)
    ex = tabs["string12_experimental"]
    assert ex.stats == {"rows_read": 8, "dropped_zero_score": 4, "dropped_unknown_gene": 2}
    pairs = {(gi.ids[a], gi.ids[b], round(float(w), 3)) for a, b, w in zip(ex.src, ex.dst, ex.weight, strict=True)}
    assert pairs == {("YAL001C", "YBR001C", 0.9), ("YBR001C", "YAL001C", 0.9)}
    assert not ex.directed
    fu = tabs["string12_fusion"]
    assert len(fu) == 2 and np.allclose(fu.weight, 1.0)
    assert len(tabs["string12_cooccurence"]) == 0


def test_plain_file_and_channel_subset(tmp_path):
    tabs = read_string(write_string(tmp_path / "s.txt", gz=False), gene_index(), prefix="string11",
                       channels=["coexpression"])
    assert list(tabs) == ["string11_coexpression"]
    assert len(tabs["string11_coexpression"]) == 2


def test_wrong_header(tmp_path):
    header = ["protein1", "protein2", "neighborhood", "fusion", "combined_score"]
    p = write_string(tmp_path / "s.txt", rows=[], header=header, gz=False)
    with pytest.raises(SourceFormatError, match=r"s\.txt, line 1: expected the header .*missing: cooccurence"):
        read_string(p, gene_index())


def test_short_line_names_line(tmp_path):
    rows = string_rows()
    rows[3] = rows[3][:7]
    p = write_string(tmp_path / "s.txt.gz", rows=rows)
    with pytest.raises(SourceFormatError, match=r"line 5: expected 10 space-separated fields"):
        read_string(p, gene_index())


def test_non_numeric_score_names_line(tmp_path):
    rows = string_rows()
    rows[5][5] = "high"
    p = write_string(tmp_path / "s.txt.gz", rows=rows)
    with pytest.raises(SourceFormatError, match=r"line 7: expected an integer score .*coexpression.*'high'"):
        read_string(p, gene_index())


def test_out_of_range_score_names_line(tmp_path):
    rows = string_rows()
    rows[2][6] = 1200
    p = write_string(tmp_path / "s.txt.gz", rows=rows)
    with pytest.raises(SourceFormatError, match=r"line 4: expected an integer score in \[0, 1000\] for experimental"):
        read_string(p, gene_index())


def test_empty_and_truncated_gzip(tmp_path):
    empty = tmp_path / "empty.txt.gz"
    with gzip.open(empty, "wb"):
        pass
    with pytest.raises(SourceFormatError, match="empty file"):
        read_string(empty, gene_index())
    full = write_string(tmp_path / "s.txt.gz", rows=string_rows() * 200).read_bytes()
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(SourceFormatError, match=r"cut\.txt\.gz: expected a complete gzip stream.*truncated"):
        read_string(cut, gene_index())
