"""Gene readers (SGD GFF3, GenBank flat files), the committed sample gene table, GO co-annotation edges."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import CHROMOSOMES, GENE_SCHEMA, GeneIndex, conform, read_gene_table_tsv
from pipeline.sources.genome.genbank import parse_location, read_genbank
from pipeline.sources.genome.gff3 import parse_attributes, read_gff3
from pipeline.sources.interactions.go import go_coannotation

SAMPLE_GENES = Path(__file__).resolve().parents[1] / "data" / "sample" / "genes.tsv"

# --- GFF3 ------------------------------------------------------------------------------

# An excerpt in the shape of saccharomyces_cerevisiae_R64-4-1_20230830.gff (attributes shortened).
GFF3 = "\n".join([
    "##gff-version 3",
    "#date Wed Aug 30 10:48:40 2023",
    "#genome-build R64-4-1",
    "chrI\tSGD\tchromosome\t1\t230218\t.\t.\t.\tID=chrI;dbxref=NCBI:BK006935.2;Name=chrI",
    "chrI\tSGD\tgene\t1807\t2169\t.\t-\t.\tID=YAL068C;Name=YAL068C;gene=PAU8;"
    "Alias=PAU8,seripauperin%20PAU8;Ontology_term=GO:0009277,GO:0005575,SO:0000704,GO:0005575;"
    "Note=Protein%20of%20unknown%20function%3B%20member%20of%20the%20seripauperin%20multigene%20family;"
    "dbxref=SGD:S000002142;orf_classification=Verified",
    "chrI\tSGD\tCDS\t1807\t2169\t.\t-\t0\tParent=YAL068C_mRNA;Name=YAL068C_CDS;orf_classification=Verified",
    "chrI\tSGD\tgene\t2480\t2707\t.\t+\t.\tID=YAL067W-A;Name=YAL067W-A;Ontology_term=GO:0003674,GO:0005575;"
    "orf_classification=Uncharacterized",
    "chrI\tSGD\tARS\t7997\t8547\t.\t.\t.\tID=ARS102;Name=ARS102",
    "chrII\tSGD\tgene\t9961\t11043\t.\t+\t.\tID=YBL109W;Name=YBL109W;Alias=YBL109W",
    "chrIV\tSGD\tgene\t1000\t2000\t.\t-\t.\tID=YDL001W;Name=YDL001W;gene=RMD1;"
    "Alias=RMD1,required%20for%20meiotic%20nuclear%20division%2C%20putative,FUN48",
    "chrmt\tSGD\tgene\t13818\t26701\t.\t+\t.\tID=Q0045;Name=Q0045;gene=COX1;Alias=COX1,OXI3;"
    "Ontology_term=GO:0004129,GO:0005743",
    "chrmt\tSGD\tgene_cassette\t1\t100\t.\t+\t.\tID=cassette1",
    "###",
    "##FASTA",
    ">chrI",
    "CCACACCACACCCACACACCCACACACCACACCACACACCACACCACACCCACACACACA",
    "this\tline\tis\tnot\tgff",
]) + "\n"


def test_gff3_columns(tmp_path):
    p = tmp_path / "saccharomyces_cerevisiae.gff"
    p.write_text(GFF3)
    df = read_gff3(p)
    assert df.schema == pl.Schema(GENE_SCHEMA)
    assert df["id"].to_list() == ["YAL068C", "YAL067W-A", "YBL109W", "YDL001W", "Q0045"]
    assert df["name"].to_list() == ["PAU8", None, None, "RMD1", "COX1"]
    assert df["chromosome"].to_list() == ["I", "I", "II", "IV", "Mito"]
    assert df["start"].to_list() == [1807, 2480, 9961, 1000, 13818]
    assert df["end"].to_list() == [2169, 2707, 11043, 2000, 26701]
    assert df["strand"].to_list() == ["-", "+", "+", "-", "+"]
    assert df["length"].to_list() == [363, 228, 1083, 1001, 12884]
    assert df["go_terms"].to_list() == [["GO:0005575", "GO:0009277"], ["GO:0003674", "GO:0005575"], [], [],
                                        ["GO:0004129", "GO:0005743"]]
    # percent-decoded after splitting on ',': the encoded comma stays inside its alias
    assert df["aliases"].to_list() == [["seripauperin PAU8"], [], [],
                                       ["required for meiotic nuclear division, putative", "FUN48"], ["OXI3"]]
    GeneIndex.from_table(df)


def test_gff3_gzip_equals_plain(tmp_path):
    plain, gz = tmp_path / "a.gff", tmp_path / "a.gff.gz"
    plain.write_text(GFF3)
    gz.write_bytes(gzip.compress(GFF3.encode()))
    assert read_gff3(gz).equals(read_gff3(plain))


def _gff3_line_error(tmp_path, bad_line: str) -> SourceFormatError:
    lines = GFF3.split("\n")
    lines.insert(6, bad_line)  # becomes line 7
    p = tmp_path / "bad.gff"
    p.write_text("\n".join(lines))
    with pytest.raises(SourceFormatError) as ei:
        read_gff3(p)
    assert ei.value.line == 7 and ei.value.path == str(p)
    return ei.value


@pytest.mark.parametrize("bad_line, expected", [
    ("chrI\tSGD\tgene\t1807\t2169\t.\t-\tID=YAL001C", "9 tab-separated GFF3 fields"),
    ("chrI SGD gene 1807 2169 . - . ID=YAL001C", "9 tab-separated GFF3 fields"),
    ("chrI\tSGD\tgene\t1807\t21x69\t.\t-\t.\tID=YAL001C", "integer start and end"),
    ("chrI\tSGD\tgene\t2169\t1807\t.\t-\t.\tID=YAL001C", "start <= end"),
    ("chrI\tSGD\tgene\t1807\t2169\t.\t?\t.\tID=YAL001C", "strand"),
    ("chrUn\tSGD\tgene\t1\t200\t.\t+\t.\tID=R0010W", "chromosome"),
    ("chrI\tSGD\tgene\t1807\t2169\t.\t-\t.\tName=YAL001C", "ID attribute"),
])
def test_gff3_bad_lines(tmp_path, bad_line, expected):
    err = _gff3_line_error(tmp_path, bad_line)
    assert expected in str(err) and "bad.gff, line 7" in str(err)


def test_parse_attributes_follows_the_gff3_spec():
    """Column 9: ``;`` between pairs, ``,`` between values, percent-decoding after the split."""
    assert parse_attributes("ID=YAL001C;Note=a%3Bb%3Dc%2Cd;Alias=X%25,Y") == {
        "ID": ["YAL001C"], "Note": ["a;b=c,d"], "Alias": ["X%", "Y"]}
    assert parse_attributes(" ID=a ; gene=b c;Is_circular;;=x;Dbxref=") == {"ID": ["a "], "gene": ["b c"],
                                                                          "Dbxref": []}
    assert parse_attributes("Alias=A1;Alias=A2,A1") == {"Alias": ["A1", "A2", "A1"]}  # a repeated tag adds up
    assert parse_attributes("") == {}


# Column-9 spellings on which the two GFF3 readers' parsers disagreed before they shared
# parse_attributes: (attributes, expected (id, name, aliases)); both paths now agree.
_ATTRIBUTE_CASES = [
    ("ID=YAL001C;gene=;Alias=A1", ("YAL001C", None, ["A1"])),  # empty value: no name (fast path said "")
    ("ID=YAL001C;gene=,TFC3", ("YAL001C", "TFC3", [])),  # empty values skipped (fast path said "")
    ("ID=YAL001C;Alias=A1;Alias=A2,A1", ("YAL001C", None, ["A1", "A2"])),  # fast path: first, line reader: last
    ("ID=YAL001C; gene=TFC3;Alias=TFC3,FUN24", ("YAL001C", "TFC3", ["FUN24"])),
]


@pytest.mark.parametrize("attributes,expected", _ATTRIBUTE_CASES)
def test_gff3_attribute_spellings_read_alike_on_both_paths(tmp_path, attributes, expected):
    from pipeline.sources.genome.gff3 import _read_checked, _read_vectorised

    p = tmp_path / "a.gff"
    p.write_text(f"##gff-version 3\nchrI\tSGD\tgene\t1\t10\t.\t+\t.\t{attributes}\n")
    data = p.read_bytes()
    fast = _read_vectorised(data)
    assert fast is not None and fast.equals(_read_checked(p, data))
    assert (fast["id"][0], fast["name"][0], fast["aliases"][0].to_list()) == expected


def test_gff3_gene_with_two_ids_is_an_error(tmp_path):
    """``ID=a,b`` is two values (the fast path used to take 'a,b' as the id)."""
    p = tmp_path / "a.gff"
    p.write_text("##gff-version 3\nchrI\tSGD\tgene\t1\t10\t.\t+\t.\tID=YAL001C,YAL002W\n")
    with pytest.raises(SourceFormatError, match=r"a\.gff, line 2: expected exactly one ID attribute"):
        read_gff3(p)


def test_gff3_non_gene_on_unknown_chromosome_is_fine(tmp_path):
    p = tmp_path / "a.gff"
    p.write_text(GFF3.replace("##FASTA", "chr2-micron\tSGD\tARS\t1\t20\t.\t.\t.\tID=x\n##FASTA"))
    assert read_gff3(p).height == 5


def test_gff3_empty_and_geneless(tmp_path):
    empty = tmp_path / "empty.gff"
    empty.write_text("")
    with pytest.raises(SourceFormatError, match=r"empty\.gff: expected at least one GFF3 feature.*empty file"):
        read_gff3(empty)
    geneless = tmp_path / "geneless.gff"
    geneless.write_text("##gff-version 3\nchrI\tSGD\tARS\t1\t20\t.\t.\t.\tID=x\n")
    with pytest.raises(SourceFormatError, match="no gene features"):
        read_gff3(geneless)


def test_gff3_truncated_gzip(tmp_path):
    p = tmp_path / "cut.gff.gz"
    p.write_bytes(gzip.compress(GFF3.encode() * 50)[:-40])
    with pytest.raises(SourceFormatError, match=r"cut\.gff\.gz: expected a complete gzip stream") as ei:
        read_gff3(p)
    assert ei.value.line is None


# --- GenBank ---------------------------------------------------------------------------

# An excerpt in the shape of SGD's chr01.gb (R64-2-1), with a spliced, a wrapped and a repeated CDS.
GENBANK = """\
LOCUS       BK006935              230218 bp    DNA     linear       18-JAN-2017
DEFINITION  TPA: Saccharomyces cerevisiae S288c chromosome I.
ACCESSION   BK006935
FEATURES             Location/Qualifiers
     source          1..230218
                     /organism="Saccharomyces cerevisiae S288c"
                     /mol_type="genomic DNA"
                     /chromosome="I"
                     /note="R64-2-1"
     gene            complement(1807..2169)
                     /gene="PAU8"
                     /locus_tag="YAL068C"
     CDS             complement(1807..2169)
                     /gene="PAU8"
                     /locus_tag="YAL068C"
                     /GO_component="GO:0005575 - cellular_component [Evidence
                     ND]"
                     /GO_component="GO:0009277 - fungal-type cell wall
                     [Evidence IBA]"
                     /GO_process="GO:0045944 - positive regulation of
                     transcription from RNA polymerase II promoter [Evidence
                     IMP] [PMID 12586695]"
                     /note="hypothetical protein; a wrapped note whose next line
                     /looks like a qualifier but is inside the quotes"
                     /codon_start=1
                     /product="seripauperin PAU8"
                     /translation="MVKLTSIAAGVAAIAATASATTTLAQSDERVNLVELGVYVSDIR
                     AHLAQYYMFQAAHPTETYPVEVAEAVFNYGDFTTMLTGIAPDQVTRMITGVPWYSSRL
                     KPAISSALSKDGIYTIAN"
     CDS             2480..2707
                     /locus_tag="YAL067W-A"
                     /GO_function="GO:0003674 - molecular_function [Evidence
                     ND]"
     tRNA            complement(139152..139254)
                     /gene="tP(UGG)A"
                     /locus_tag="tP(UGG)A"
     CDS             join(<142174..142253,142620..>143160)
                     /gene="YAL003W"
                     /locus_tag="YAL003W"
                     /gene_synonym="EFB1; TEF5"
                     /gene_synonym="TEF5"
                     /GO_function="GO:0003746 - translation elongation factor
                     activity [Evidence IDA] [PMID 2674118]"
     CDS             complement(join(1319387..1319617,1319698..1319720,
                     1319817..1319841))
                     /gene="RPL31B"
                     /locus_tag="YLR406C-A"
                     /GO_component="GO:0022625 - cytosolic large ribosomal
                     subunit [Evidence IDA]"
     CDS             complement(join(1319387..1319617,1319698..1319720))
                     /gene="RPL31B"
                     /locus_tag="YLR406C-A"
                     /gene_synonym="RPL34"
                     /GO_process="GO:0002181 - cytoplasmic translation
                     [Evidence IC]"
     CDS             500..600
                     /note="a CDS without a locus tag is not a gene row"
ORIGIN
        1 ccacaccaca cccacacacc cacacaccac accacacacc acaccacacc cacacacaca
       61 catcctaaca ctaccctaac acagccctaa tctaaccctg gccaacctgt ctctcaactt
//
"""


def _write_gb(tmp_path: Path, text: str = GENBANK, name: str = "chr01.gb") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_genbank_columns(tmp_path):
    df = read_genbank(_write_gb(tmp_path))
    assert df.schema == pl.Schema(GENE_SCHEMA)
    assert df["id"].to_list() == ["YAL068C", "YAL067W-A", "YAL003W", "YLR406C-A"]
    assert df["name"].to_list() == ["PAU8", None, None, "RPL31B"]  # /gene equal to the locus tag -> null
    assert df["chromosome"].to_list() == ["I"] * 4
    assert df["start"].to_list() == [1807, 2480, 142174, 1319387]
    assert df["end"].to_list() == [2169, 2707, 143160, 1319841]  # the first of the two YLR406C-A CDS
    assert df["strand"].to_list() == ["-", "+", "+", "-"]
    assert df["length"].to_list() == [363, 228, 987, 455]
    assert df["go_terms"].to_list() == [["GO:0005575", "GO:0009277", "GO:0045944"], ["GO:0003674"],
                                        ["GO:0003746"], ["GO:0002181", "GO:0022625"]]
    assert df["aliases"].to_list() == [[], [], ["EFB1", "TEF5"], ["RPL34"]]


def test_genbank_directory_gzip_and_fallback_chromosome(tmp_path):
    d = tmp_path / "gb"
    d.mkdir()
    no_source_chrom = GENBANK.replace('                     /chromosome="I"\n', "")
    (d / "chr03.gb.gz").write_bytes(gzip.compress(no_source_chrom.replace("YA", "YC").replace("YLR", "YCR").encode()))
    _write_gb(d, GENBANK)
    (d / "notes.txt").write_text("not a GenBank file")
    df = read_genbank(d)
    assert df.height == 8
    assert df["chromosome"].to_list() == ["I"] * 4 + ["III"] * 4  # chr01 before chr03; III from the name
    assert df["id"].to_list()[4:6] == ["YCL068C", "YCL067W-A"]
    assert read_genbank([d / "chr01.gb"]).equals(read_genbank(d / "chr01.gb"))


@pytest.mark.parametrize("loc, expected", [
    ("1807..2169", (1807, 2169, "+")),
    ("complement(1807..2169)", (1807, 2169, "-")),
    ("join(155222,155311..155765)", (155222, 155765, "+")),
    ("complement(join(10..20,30..40))", (10, 40, "-")),
    ("join(complement(30..40),complement(10..20))", (10, 40, "-")),
    ("<1..>200", (1, 200, "+")),
    ("100^101", (100, 101, "+")),
    ("1807..", None),
    ("complement(1807..2169", None),
    ("J01355.1:1..20", None),
    ("", None),
])
def test_parse_location(loc, expected):
    assert parse_location(loc) == expected


def test_genbank_bad_location_names_the_feature_line(tmp_path):
    p = _write_gb(tmp_path, GENBANK.replace("     CDS             2480..2707", "     CDS             2480..27x7"))
    with pytest.raises(SourceFormatError, match=r"chr01\.gb, line 30: expected a location") as ei:
        read_genbank(p)
    assert ei.value.got == "2480..27x7"


def test_genbank_unterminated_qualifier(tmp_path):
    p = _write_gb(tmp_path, GENBANK.replace('[PMID 2674118]"', '[PMID 2674118]'))
    with pytest.raises(SourceFormatError, match=r"line 42: expected a closing quote for /GO_function"):
        read_genbank(p)


def test_genbank_missing_parts(tmp_path):
    with pytest.raises(SourceFormatError, match=r"line 1: expected a GenBank record starting with 'LOCUS'"):
        read_genbank(_write_gb(tmp_path, "ID   X; SV 1; linear; DNA\n", "chr01.gb"))
    no_features = GENBANK.split("FEATURES")[0] + "ORIGIN\n//\n"
    with pytest.raises(SourceFormatError, match=r"line 1: expected a FEATURES table"):
        read_genbank(_write_gb(tmp_path, no_features, "chr02.gb"))
    truncated = GENBANK.split("     CDS             500..600")[0]
    with pytest.raises(SourceFormatError, match=r"chr03\.gb, line 55: expected a record terminated by '//'"):
        read_genbank(_write_gb(tmp_path, truncated, "chr03.gb"))
    with pytest.raises(SourceFormatError, match="empty file"):
        read_genbank(_write_gb(tmp_path, "", "chr04.gb"))
    no_cds = GENBANK.split("     gene ")[0] + "ORIGIN\n//\n"
    with pytest.raises(SourceFormatError, match="at least one CDS feature with a /locus_tag"):
        read_genbank(_write_gb(tmp_path, no_cds, "chr05.gb"))
    gz = tmp_path / "chr06.gb.gz"
    gz.write_bytes(gzip.compress(GENBANK.encode() * 20)[:-30])
    with pytest.raises(SourceFormatError, match=r"chr06\.gb\.gz: expected a complete gzip stream"):
        read_genbank(gz)


# --- the committed sample gene table ---------------------------------------------------

def test_sample_gene_table():
    df = read_gene_table_tsv(SAMPLE_GENES)
    assert df.height == 5989
    assert df["id"].n_unique() == 5989 and df["id"].null_count() == 0
    assert set(df["chromosome"].unique()) <= set(CHROMOSOMES[:16])
    assert (df["strand"].is_in(["+", "-"])).all()
    assert (df["length"] == df["end"] - df["start"] + 1).all() and (df["start"] >= 1).all()
    # empty lists must read back empty, not as [''] or ['""']
    for col in ("go_terms", "aliases"):
        assert not df[col].list.eval(pl.element().str.contains('^$|"')).list.any().any()
    assert df["go_terms"].explode().drop_nulls().str.contains(r"^GO:\d{7}$").all()
    gi = GeneIndex.from_table(df, str(SAMPLE_GENES))
    assert gi.ids.tolist() == sorted(gi.ids.tolist())
    row = gi.table.row(int(gi.lookup(pl.Series(["YAL068C"]))[0]), named=True)
    assert (row["name"], row["chromosome"], row["start"], row["end"], row["strand"]) == ("PAU8", "I", 1807, 2169, "-")
    assert gi.lookup_names(pl.Series(["cln3", "WHI1"])).tolist() == gi.lookup(pl.Series(["YAL040C"] * 2)).tolist()
    header = [ln for ln in SAMPLE_GENES.read_text().splitlines() if ln.startswith("#")]
    assert any("genes: 5989" in ln for ln in header) and any("R64-2-1" in ln for ln in header)
    assert SAMPLE_GENES.stat().st_size < 2_000_000


# --- GO co-annotation ------------------------------------------------------------------

def _go_index() -> GeneIndex:
    terms = {
        "YA": ["GO:0000001", "GO:0000002", "GO:0005575"],
        "YB": ["GO:0000001", "GO:0000002", "GO:0005575"],
        "YC": ["GO:0000001", "GO:0005575", "GO:0000009"],
        "YD": ["GO:0005575"],
        "YE": ["GO:0005575", "GO:0000003"],
        "YF": [],
    }
    return GeneIndex.from_table(conform(pl.DataFrame({"id": list(terms), "go_terms": list(terms.values())})))


def test_go_coannotation_pairs_and_bound():
    gi = _go_index()
    e = go_coannotation(gi, max_term_size=3)
    got = {(gi.ids[a], gi.ids[b]): float(w) for a, b, w in zip(e.src, e.dst, e.weight, strict=True)}
    # GO:0000001 {A,B,C}, GO:0000002 {A,B}; GO:0005575 (5 genes) too large; 0000003/0000009 singletons
    assert got == {("YA", "YB"): 2.0, ("YA", "YC"): 1.0, ("YB", "YC"): 1.0}
    assert not e.directed and e.name == "go_coannotation"
    assert e.src.dtype == np.int32 and e.weight.dtype == np.float32
    assert e.stats == {"rows_read": 12, "terms_total": 5, "terms_used": 2, "terms_too_large": 1,
                       "terms_too_small": 2}

    big = go_coannotation(gi, max_term_size=5, name="go")
    pairs = {(gi.ids[a], gi.ids[b]) for a, b in zip(big.src, big.dst, strict=True)}
    assert pairs == set(itertools.combinations(["YA", "YB", "YC", "YD", "YE"], 2))
    assert big.weight[(big.src == 0) & (big.dst == 1)].tolist() == [3.0]
    assert big.name == "go" and big.stats["terms_used"] == 3

    none = go_coannotation(gi, max_term_size=2, min_term_size=2)
    assert len(none) == 1 and none.stats["terms_used"] == 1
    with pytest.raises(ValueError):
        go_coannotation(gi, min_term_size=1)


def test_go_coannotation_matches_brute_force():
    rng = np.random.default_rng(0)
    ids = [f"Y{i:03d}" for i in range(60)]
    terms = [[f"GO:{t:07d}" for t in rng.choice(40, size=rng.integers(0, 6), replace=False)] for _ in ids]
    gi = GeneIndex.from_table(conform(pl.DataFrame({"id": ids, "go_terms": terms})))
    e = go_coannotation(gi, max_term_size=9, min_term_size=3)
    members: dict[str, set[int]] = {}
    for i, ts in enumerate(gi.table["go_terms"].to_list()):
        for t in ts:
            members.setdefault(t, set()).add(i)
    expected: dict[tuple[int, int], float] = {}
    for s in members.values():
        if 3 <= len(s) <= 9:
            for pair in itertools.combinations(sorted(s), 2):
                expected[pair] = expected.get(pair, 0.0) + 1.0
    assert dict(zip(zip(e.src.tolist(), e.dst.tolist(), strict=True), e.weight.tolist(), strict=True)) == expected
    assert (e.src < e.dst).all()


def test_gff3_fast_path_equals_line_reader(tmp_path):
    """The vectorised reader and the line-by-line reader agree, on the excerpt and at genome scale."""
    from pipeline.sources.genome.gff3 import _read_checked, _read_vectorised
    from synth.graph import write_gff3

    p = tmp_path / "excerpt.gff"
    p.write_text(GFF3)
    data = p.read_bytes().split(b"##FASTA")[0]
    fast = _read_vectorised(data)
    assert fast is not None
    assert fast.equals(_read_checked(p, data))
    big = tmp_path / "genome.gff"
    write_gff3(big, read_gene_table_tsv(SAMPLE_GENES).with_columns(filler=pl.lit(False)))
    data = big.read_bytes()
    fast = _read_vectorised(data)
    assert fast is not None and fast.height == 5989
    assert fast.equals(_read_checked(big, data))
