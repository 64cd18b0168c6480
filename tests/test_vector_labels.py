"""Vector labels: the Kemmeren / Sameith / Ohya readers on their SYNTHETIC samples, bad input, the Zarr
label store (alignment with sample ids, masks, p-values, replicates, checksums) and the stream's reader."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.digests import file_digests
from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex, read_gene_table_tsv
from pipeline.core.paths import SAMPLE_DIR
from pipeline.dataset.labels import VECTOR_SOURCES, VectorTable, open_labels, pack_mask, unpack_mask, write_labels
from pipeline.sources.phenotypes.kemmeren import iter_soft, read_kemmeren2014, t_pvalue, title_tokens
from pipeline.sources.phenotypes.ohya import read_ohya2005
from pipeline.sources.phenotypes.sameith import read_sameith2015
from pipeline.stream.chunks import Columns, View
from pipeline.stream.labels import StreamLabels


def _files(name: str) -> list[Path]:
    return sorted(p for p in (SAMPLE_DIR / name).iterdir() if p.suffix != ".txt")


@pytest.fixture(scope="module")
def genes() -> GeneIndex:
    return GeneIndex.from_table(read_gene_table_tsv(SAMPLE_DIR / "genes.tsv"))


@pytest.fixture(scope="module")
def tables() -> dict[str, VectorTable]:
    return {n: VECTOR_SOURCES[n].read(_files(n)) for n in VECTOR_SOURCES}


def test_kemmeren_sample(tables):
    t = tables["kemmeren2014"]
    s = t.stats
    # 24 mutants x 2 dye-swapped arrays, 4 wild-type arrays, 1 title Table S1 does not resolve
    assert (s["arrays_read"], s["arrays_wildtype"], s["arrays_unresolved"], s["arrays_used"]) == (53, 4, 1, 48)
    assert s["rows_read"] == len(t.genes) == 24 and t.values.shape == (24, 400) == t.pvalue.shape
    assert s["probes_unmapped"] == 2 * 48  # the two control spots without an ORF, on every used array
    assert t.columns == sorted(t.columns) and t.column_genes
    assert np.isfinite(t.values).all() and ((t.pvalue >= 0) & (t.pvalue <= 1)).all()
    # the channels are read the GEO way: the deleted gene's own transcript is depleted (-4 log2 planted)
    own = [(i, t.columns.index(g[0])) for i, g in enumerate(t.genes) if g[0] in t.columns]
    assert own and all(t.values[i, j] < -3 for i, j in own)
    assert np.median([t.pvalue[i, j] for i, j in own]) < 0.1 < np.median(t.pvalue)  # 2 arrays: df 1


def test_sameith_sample_has_double_mutants(tables):
    t = tables["sameith2015"]
    assert t.stats["arrays_used"] == 32 and len(t.genes) == 15 and t.stats["double_mutants"] == 7
    doubles = [g for g in t.genes if len(g) == 2]
    assert all(a < b for a, b in doubles)  # sorted; "a+b" and "b+a" titles are one strain (4 arrays)
    assert t.values.shape == (15, 300)
    with pytest.raises(SourceFormatError, match="expected GEO family SOFT file GSE42536_family.soft.gz"):
        read_sameith2015([p for p in _files("sameith2015") if p.suffix == ".xlsx"])


def test_ohya_sample_and_reference(tables):
    t = tables["ohya2005"]
    assert t.width == 501 and len(t.genes) == 60 and t.pvalue is None
    assert t.columns[0] == "C101_A1B" and t.columns[-1].startswith(("CCV", "ACV", "DCV"))
    assert int(np.isnan(t.values).sum()) == t.stats["values_blank"] == 6  # blanks: not measured
    assert all(g[0] == g[0].upper() for g in t.genes)  # 2005 lower-case ORFs upper-cased
    ref = t.reference
    assert ref["n"].tolist() == [12] * 501 and np.isfinite(ref["mean"]).all() and (ref["sd"] > 0).all()


def test_t_pvalue_known_quantiles():
    t = np.array([12.706, 4.303, 2.353, 2.132, 2.015, 1.812])  # two-sided 0.05 (df 1, 2), 0.1 (df 3, 4, 5, 10)
    df = np.array([1, 2, 3, 4, 5, 10])
    assert np.allclose(t_pvalue(t, df), [0.05, 0.05, 0.1, 0.1, 0.1, 0.1], atol=2e-4)
    assert t_pvalue(np.array([0.0]), np.array([7]))[0] == pytest.approx(1.0)


def test_title_tokens():
    assert title_tokens("[HS1991] cup9-del-a") == ["CUP9"]
    assert title_tokens("rpn4-del+ydr026c-del-1-b") == ["RPN4", "YDR026C"]
    assert title_tokens("wt-BY4742-3") == []


def _soft(tmp: Path, table_rows: list[str], *, ch1: str = "refpool", end: bool = True) -> Path:
    lines = ["^SERIES = GSE1", "!Series_title = test", "^PLATFORM = GPL1", "!platform_table_begin", "ID\tORF",
             "1\tYAL001C", "2\tYAL002W", "3\tYAL001C", "!platform_table_end", "^SAMPLE = GSM1",
             "!Sample_title = YAL003W-del-1-a",
             f"!Sample_source_name_ch1 = {ch1}", "!Sample_label_ch1 = Cy5", "!Sample_source_name_ch2 = x-del",
             "!Sample_label_ch2 = Cy3", "!sample_table_begin", "ID_REF\tVALUE\tSignal Norm_Cy5\tSignal Norm_Cy3",
             *table_rows] + (["!sample_table_end"] if end else [])
    p = tmp / "GSE1_family.soft.gz"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return p


def test_soft_bad_inputs_name_file_line_and_column(tmp_path):
    good = ["1\t0.1\t100\t200", "2\t0.2\t150\t120", "3\t0\t100\t400"]
    f = read_kemmeren2014([_soft(tmp_path, good)])
    assert f["genes"] == [["YAL003W"]] and f["values"].shape == (1, 2)
    # ref in Cy5 (ch1): test is Cy3; YAL001C's two probes on the array are averaged: (log2 2 + log2 4) / 2
    assert f["values"][0].tolist() == [pytest.approx(1.5), pytest.approx(np.log2(120 / 150))]
    assert f["pvalue"][0].tolist() == [1.0, 1.0]  # one array: no t-test, p = 1
    with pytest.raises(SourceFormatError) as e:
        read_kemmeren2014([_soft(tmp_path, ["1\t0.1\t100\t200", "2\t0.2\tabc\t120"])])
    assert "GSE1_family.soft.gz, line 19: expected a number (or an empty cell) in column 'Signal Norm_Cy5'" \
        in str(e.value) and "'abc'" in str(e.value)
    with pytest.raises(SourceFormatError, match="line 10: expected sample GSM1: the reference pool"):
        read_kemmeren2014([_soft(tmp_path, good, ch1="x-del")])
    with pytest.raises(SourceFormatError, match=r"_table_end' line closing the table of GSM1"):
        read_kemmeren2014([_soft(tmp_path, good, end=False)])
    trunc = tmp_path / "t" / "GSE1_family.soft.gz"
    trunc.parent.mkdir()
    trunc.write_bytes(_soft(tmp_path, good).read_bytes()[:-12])
    with pytest.raises(SourceFormatError, match="truncated"):
        list(iter_soft(trunc))


def test_ohya_bad_inputs(tmp_path):
    mt, wt = tmp_path / "mt4718data.tsv", tmp_path / "wt122data.tsv"
    mt.write_text("ORF\tC101_A1B\tC101_C\nYAL001C\t1.5\t2\n\t1\t1\nYAL002W\tx1\t3\n")
    wt.write_text("NAME\tC101_A1B\tC101_C\nhis3_1\t1\t2\n")
    with pytest.raises(SourceFormatError) as e:
        read_ohya2005([mt, wt])
    assert str(e.value) == f"{mt}, line 4: expected a finite number (or an empty cell) in column 'C101_A1B', got 'x1'"
    mt.write_text("ORF\tC101_A1B\tC101_C\nYAL001C\t1.5\t2\n\t1\t1\nyal002w\t\t3\n")
    f = read_ohya2005([mt, wt])
    assert f["genes"] == [["YAL001C"], ["YAL002W"]] and f["stats"]["dropped_blank_orf"] == 1
    assert f["stats"]["values_blank"] == 1
    wt.write_text("NAME\tC101_A1B\nhis3_1\t1\n")
    with pytest.raises(SourceFormatError, match=r"wt122data.tsv, line 1: expected the parameter columns of "
                                                r"mt4718data.tsv \(missing \['C101_C'\]\)"):
        read_ohya2005([mt, wt])
    mt.write_text("NAME\tC101_A1B\nYAL001C\t1\n")
    with pytest.raises(SourceFormatError, match="line 1: expected a header starting with the id column 'ORF'"):
        read_ohya2005([mt, wt])


def _samples(keys: list[tuple[tuple[int, int], ...]]) -> pl.DataFrame:
    keys = sorted(set(keys), key=lambda k: (len(k), k))
    return pl.DataFrame({"sample_id": np.arange(len(keys)), "gene_idx": [[g for g, _ in k] for k in keys],
                         "types": [[t for _, t in k] for k in keys]},
                        schema={"sample_id": pl.Int64, "gene_idx": pl.List(pl.Int32), "types": pl.List(pl.UInt8)})


@pytest.fixture(scope="module")
def store(tmp_path_factory, tables, genes):
    """The three sample tables written beside 300 unlabelled samples (and one strain of no table)."""
    keys = []
    for t in tables.values():
        keys += [tuple(sorted(zip(genes.lookup(pl.Series(g)).tolist(), ty, strict=True)))
                 for g, ty in zip(t.genes, t.types, strict=True)]
    keys += [((i, 2),) for i in range(0, 3000, 10)]
    samples = _samples(keys)
    root = tmp_path_factory.mktemp("labels")
    specs = write_labels(root, samples, list(tables.values()), genes)
    return root, samples, specs


def test_store_aligned_with_sample_ids(store, tables, genes):
    root, samples, specs = store
    st = open_labels(root)
    assert st.names == sorted(t.name for t in tables.values()) and st.n_samples == samples.height
    by_key = {tuple(zip(g, t, strict=True)): s for s, g, t in
              zip(samples["sample_id"], samples["gene_idx"].to_list(), samples["types"].to_list(), strict=True)}
    for t in tables.values():
        sid = np.array([by_key[tuple(sorted(zip(genes.lookup(pl.Series(g)).tolist(), ty, strict=True)))]
                        for g, ty in zip(t.genes, t.types, strict=True)])
        values, mask = st.read(t.name, sid)
        want = ~np.isnan(t.values)
        assert (mask == want).all() and np.array_equal(values[want], t.values[want]) and (values[~want] == 0).all()
        if t.pvalue is not None:
            p, _ = st.read(t.name, sid, pvalue=True)
            assert np.array_equal(p[want], t.pvalue[want])
        others = np.setdiff1d(samples["sample_id"].to_numpy(), sid)
        v, m = st.read(t.name, others)
        assert not m.any() and not v.any()
        assert specs[t.name]["rows"] == len(t.genes) and specs[t.name]["counts"]["dropped_unknown_gene"] == 0
        assert st.columns(t.name) == t.columns
    col_gene = np.asarray(st.root["kemmeren2014.expression/column_gene"][:])
    assert (col_gene == genes.lookup(pl.Series(tables["kemmeren2014"].columns))).all() and (col_gene >= 0).all()
    assert np.asarray(st.root["ohya2005.morphology/column_gene"][:]).max() == -1
    assert np.allclose(st.root["ohya2005.morphology/reference/mean"][:], tables["ohya2005"].reference["mean"])


def test_store_layout_chunks_and_checksums(store):
    root, samples, specs = store
    st = open_labels(root)
    v = st.array("kemmeren2014.expression", "values")
    assert v.chunks == (specs["kemmeren2014.expression"]["rows"], 400)  # whole rows (24 < 2,048 rows of 400)
    assert st.array("kemmeren2014.expression", "mask").shape == (24, 50)
    assert st.array("kemmeren2014.expression", "row").shape == (samples.height,)
    files = file_digests(root)
    assert any(k.startswith("labels.zarr/kemmeren2014.expression/values/c/") for k in files)
    assert "labels.zarr/zarr.json" in files  # nested: covered by the dataset manifest's checksums


def test_replicates_merge_and_unknown_genes(tmp_path, genes):
    vals = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], np.float32)
    p = np.array([[0.1, np.nan], [0.3, 0.2], [0.5, 0.5], [0.01, 0.01]], np.float32)
    t = VectorTable("x.expression", "expression", "log2", "", ["YAL001C", "YAL002W"],
                    genes=[["YAL001C"], ["YAL001C"], ["NOTAGENE"], ["YAL003W"]], types=[[1]] * 4,
                    values=vals, pvalue=p, column_genes=True)
    samples = _samples([((int(genes.lookup(pl.Series(["YAL001C"]))[0]), 1),)])  # YAL003W has no sample
    spec = write_labels(tmp_path, samples, [t], genes)["x.expression"]
    c = spec["counts"]
    assert (c["merged_replicate_rows"], c["dropped_unknown_gene"], c["dropped_no_sample"], c["rows"]) == (1, 1, 1, 1)
    v, m = open_labels(tmp_path).read("x.expression", np.array([0]))
    assert v.tolist() == [[2.0, 4.0]] and m.tolist() == [[True, True]]  # NaN-aware mean
    pv, _ = open_labels(tmp_path).read("x.expression", np.array([0]), pvalue=True)
    assert pv.tolist() == [[pytest.approx(0.3), pytest.approx(0.2)]]  # the largest (conservative)


def test_mask_bits_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((5, 6203)) < 0.5
    assert (unpack_mask(pack_mask(m), 6203) == m).all()


def test_stream_reader_reads_row_windows_and_masks_pads(store):
    root, samples, _ = store
    sl = StreamLabels(root, None)
    assert sl.names == ["kemmeren2014.expression", "ohya2005.morphology", "sameith2015.expression"]
    with pytest.raises(ValueError, match=r"vector_labels \['nope'\]: not in .* \(it has \["):
        StreamLabels(root, ["nope"])
    sl = StreamLabels(root, ["ohya2005.morphology", "kemmeren2014.expression.p"])
    chunk, n = 32, samples.height
    parts = {}
    st = open_labels(root)
    for c in range(-(-n // chunk)):
        cols = Columns(min(chunk, n - c * chunk))
        sl.attach(cols, c * chunk)
        parts[c] = cols
        rows = st.rows_of("ohya2005.morphology", c * chunk, cols.n)  # only the rows of its own samples
        assert len(cols.values["vec:ohya2005.morphology"]) == (
            rows.max() - rows[rows >= 0].min() + 1 if (rows >= 0).any() else 0)
    rng = np.random.default_rng(1)
    for chunks in (sorted(parts), [0], [1, 3, 4]):  # a view of every chunk, of one, of a few
        view = View.build({c: parts[c] for c in chunks}, len(parts), chunk)
        held = np.concatenate([np.arange(c * chunk, c * chunk + parts[c].n) for c in chunks])
        ids = rng.choice(held, min(64, len(held)), replace=False)
        pad = np.zeros(len(ids), bool)
        pad[-5:] = True
        values, masks = sl.gather(ids, view.gather(ids), view, pad)
        for name, label, pv in (("ohya2005.morphology", "ohya2005.morphology", False),
                                ("kemmeren2014.expression.p", "kemmeren2014.expression", True)):
            v, m = st.read(label, ids, pvalue=pv)
            m[pad] = False
            v[pad] = 0
            assert values[name].shape == v.shape and np.array_equal(values[name].numpy(), v)
            assert np.array_equal(masks[name].numpy(), m)


def test_samples_are_synthetic_and_regenerate_byte_identically(tmp_path):
    from synth.vectors import main  # noqa: PLC0415

    main(["--sample", "--out", str(tmp_path)])
    for name in VECTOR_SOURCES:
        assert "SYNTHETIC" in (SAMPLE_DIR / name / "SYNTHETIC.txt").read_text()
        for p in _files(name):
            assert (tmp_path / name / p.name).read_bytes() == p.read_bytes(), p
    soft = SAMPLE_DIR / "kemmeren2014" / "GSE42527_family.sample.soft.gz"
    assert b"!Series_title = SYNTHETIC" in gzip.decompress(soft.read_bytes())
    # data/sample/MANIFEST.json marks every sample file synthetic, with its current digest
    import hashlib
    import json

    listed = {e["path"]: e for e in json.loads((SAMPLE_DIR / "MANIFEST.json").read_text())["files"]}
    for name in VECTOR_SOURCES:
        for p in _files(name):
            e = listed[f"{name}/{p.name}"]
            assert e["synthetic"] and e["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest(), p
