"""Gene features: CDS sequence readers (FASTA, GenBank, GFF3), sequence and position features,
embedding import, added genes, and the committed data/sample/gene_cds.fa.gz."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GENE_SCHEMA, GeneIndex, conform, read_gene_table_tsv
from pipeline.graph.features import (
    AMINO_ACIDS,
    CODONS,
    GENETIC_CODE,
    POSITION_FEATURE_NAMES,
    SEQUENCE_FEATURE_NAMES,
    added_genes,
    append_added,
    codon_counts,
    gene_features,
    import_embeddings,
    position_features,
    sequence_features,
    translate,
)
from pipeline.sources.genome.sequences import (
    location_parts,
    read_fasta,
    read_genbank_cds,
    read_gff3_cds,
    reverse_complement,
    sequences_for,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

# A 40 bp chromosome, hand-built (1-based positions):
#   1..9   ATGGCCTAA   a plus-strand CDS
#   10..12 GGG
#   13..18 TCAGGG      exon 2 of a minus-strand CDS (its last 6 coding bases, reverse-complemented: CCCTGA)
#   19..22 GTAC        intron
#   23..28 TTTCAT      exon 1 of the minus-strand CDS (reverse-complemented: ATGAAA)
#   29..40 ACGTACGTACGT
GENOME = "ATGGCCTAA" "GGG" "TCAGGG" "GTAC" "TTTCAT" "ACGTACGTACGT"
PLUS_CDS = "ATGGCCTAA"
MINUS_CDS = "ATGAAACCCTGA"  # reverse complement of 13..18 + 23..28, the intron spliced out


def test_hand_built_genome_is_what_the_comments_say():
    assert len(GENOME) == 40
    assert reverse_complement(GENOME[12:18] + GENOME[22:28]) == MINUS_CDS


# --- FASTA -------------------------------------------------------------------------------

FASTA = ">YAL001C TFC3 some description\natggtactga\nCGATTTATCC\n>YAL002W\nATGGAG\nCAGAAT\n\n>Q0010\n"


@pytest.mark.parametrize("compressed", [False, True])
def test_fasta(tmp_path, compressed):
    p = tmp_path / ("cds.fa.gz" if compressed else "cds.fa")
    p.write_bytes(gzip.compress(FASTA.encode()) if compressed else FASTA.encode())
    df = read_fasta(p)
    assert df.schema == pl.Schema({"id": pl.String, "sequence": pl.String})
    assert df.rows() == [("YAL001C", "ATGGTACTGACGATTTATCC"), ("YAL002W", "ATGGAGCAGAAT"), ("Q0010", None)]


@pytest.mark.parametrize("text, line, expected", [
    (">A\nACGT\n>B\nAC\n>A\nGG\n", 5, "unique ids (first seen on line 1)"),
    (">A\nACGT\nACXT\n", 3, "nucleotide letters"),
    ("ACGT\n>A\nACGT\n", 1, "a '>' header line first"),
    (">\nACGT\n", 1, "an id after '>'"),
    ("", None, "FASTA records"),
])
def test_fasta_errors(tmp_path, text, line, expected):
    p = tmp_path / "bad.fa"
    p.write_text(text)
    with pytest.raises(SourceFormatError) as e:
        read_fasta(p)
    assert e.value.line == line and expected in e.value.expected


# --- GenBank -----------------------------------------------------------------------------


def _origin(seq: str) -> list[str]:
    """ORIGIN lines as GenBank writes them: position, then 6 blocks of 10 lower-case letters."""
    s = seq.lower()
    out = ["ORIGIN      "]
    for i in range(0, len(s), 60):
        blocks = " ".join(s[j:j + 10] for j in range(i, min(i + 60, len(s)), 10))
        out.append(f"{i + 1:>9} {blocks}")
    return out


def _genbank(features: list[str], seq: str | None = GENOME) -> str:
    lines = ["LOCUS       TEST01                    40 bp    DNA     linear   CON 01-JAN-2020",
             "DEFINITION  A test chromosome.",
             "FEATURES             Location/Qualifiers",
             "     source          1..40",
             '                     /chromosome="I"',
             *features]
    lines += _origin(seq) if seq is not None else ["CONTIG      join(X:1..40)"]
    return "\n".join(lines + ["//"]) + "\n"


GB_FEATURES = [
    "     gene            1..9",
    '                     /locus_tag="YAA001W"',
    "     CDS             1..9",
    '                     /locus_tag="YAA001W"',
    '                     /note="a value with a /slash/ and',
    '                     /qualifier-looking text"',
    '                     /translation="MA"',
    "     CDS             complement(join(13..18,",  # a location wrapped over two lines
    "                     23..28))",
    '                     /locus_tag="YAA002C"',
    '                     /codon_start=1',
    "     CDS             join(1..3,29..31)",
    '                     /locus_tag="YAA001W"',  # a repeated tag: the first CDS is kept
    "     CDS             2..10",
    '                     /locus_tag="YAA003W"',
    "                     /codon_start=2",
]


def test_genbank_cds_spliced_and_reverse_complemented(tmp_path):
    p = tmp_path / "chr01.gb"
    p.write_text(_genbank(GB_FEATURES))
    df = read_genbank_cds(p)
    assert dict(df.rows()) == {"YAA001W": PLUS_CDS, "YAA002C": MINUS_CDS, "YAA003W": GENOME[2:10]}
    assert translate(MINUS_CDS) == "MKP*"


def test_genbank_directory_and_record_without_sequence(tmp_path):
    (tmp_path / "chr01.gb").write_text(_genbank(GB_FEATURES[:7]))
    cds = ['     CDS             1..9', '                     /locus_tag="YBB001W"']
    (tmp_path / "chr02.gb").write_text(_genbank(cds, seq=None))
    df = read_genbank_cds(tmp_path)
    assert df.rows() == [("YAA001W", PLUS_CDS), ("YBB001W", None)]  # kept, as null


@pytest.mark.parametrize("feature, line, expected", [
    (["     CDS             1..41", '                     /locus_tag="YAA001W"'], 6, "within the record's 40 bp"),
    (["     CDS             J01355.1:1..20", '                     /locus_tag="YAA001W"'], 6, "a local location"),
    (["     CDS             1..9", '                     /locus_tag="YAA001W"', "                     /codon_start=4"],
     6, "/codon_start=1, 2 or 3"),
])
def test_genbank_errors(tmp_path, feature, line, expected):
    p = tmp_path / "chr01.gb"
    p.write_text(_genbank(feature))
    with pytest.raises(SourceFormatError) as e:
        read_genbank_cds(p)
    assert e.value.line == line and expected in e.value.expected


def test_genbank_bad_base_names_its_line(tmp_path):
    p = tmp_path / "chr01.gb"
    p.write_text(_genbank(GB_FEATURES[:4], seq=GENOME[:30] + "ACGTAXGTAC"))
    with pytest.raises(SourceFormatError) as e:
        read_genbank_cds(p)
    assert e.value.got == "x" and e.value.line == 11  # the (only) sequence line, as written


def test_location_parts():
    assert location_parts("12..40") == [(12, 40, 1)]
    assert location_parts("complement(join(1..3,7..9))") == [(7, 9, -1), (1, 3, -1)]
    assert location_parts("join(complement(7..9),complement(1..3))") == [(7, 9, -1), (1, 3, -1)]
    assert location_parts("join(<1..3, 7..>9)") == [(1, 3, 1), (7, 9, 1)]
    for bad in ("J01355.1:1..20", "1^2", "join(1..3", "complement(1..3,5..6)", "9..1", ""):
        assert location_parts(bad) is None, bad


# --- GFF3 --------------------------------------------------------------------------------

GFF3 = "\n".join([
    "##gff-version 3",
    "chrI\tSGD\tchromosome\t1\t40\t.\t.\t.\tID=chrI;Name=chrI",
    "chrI\tSGD\tgene\t1\t9\t.\t+\t.\tID=YAA001W;Name=YAA001W",
    "chrI\tSGD\tmRNA\t1\t9\t.\t+\t.\tID=YAA001W_mRNA;Name=YAA001W_mRNA;Parent=YAA001W",
    "chrI\tSGD\tCDS\t1\t9\t.\t+\t0\tParent=YAA001W_mRNA;Name=YAA001W_CDS",
    "chrI\tSGD\tgene\t13\t28\t.\t-\t.\tID=YAA002C;Name=YAA002C;gene=ABC1",
    "chrI\tSGD\tmRNA\t13\t28\t.\t-\t.\tID=YAA002C_mRNA;Name=YAA002C_mRNA;Parent=YAA002C",
    "chrI\tSGD\tCDS\t23\t28\t.\t-\t0\tParent=YAA002C_mRNA;Name=YAA002C_CDS",
    "chrI\tSGD\tintron\t19\t22\t.\t-\t.\tParent=YAA002C_mRNA;Name=YAA002C_intron",
    "chrI\tSGD\tCDS\t13\t18\t.\t-\t0\tParent=YAA002C_mRNA;Name=YAA002C_CDS",
    "chrI\tSGD\tgene\t29\t40\t.\t+\t.\tID=YAA003W;Name=YAA003W",  # no CDS: kept, null
    "chrI\tSGD\tCDS\t29\t31\t.\t+\t0\tParent=tRNA_mRNA",  # a CDS of no gene: counted, skipped
    "chrII\tSGD\tgene\t1\t9\t.\t+\t.\tID=YBB001W;Name=YBB001W",  # chromosome absent from ##FASTA: null
    "chrII\tSGD\tCDS\t1\t9\t.\t+\t0\tParent=YBB001W_mRNA",  # no mRNA line: <gene>_mRNA is matched
    "###",
    "##FASTA",
    ">chrI",
    GENOME[:25].lower(),
    GENOME[25:],
]) + "\n"


def test_gff3_cds(tmp_path):
    p = tmp_path / "saccharomyces_cerevisiae.gff.gz"
    p.write_bytes(gzip.compress(GFF3.encode()))
    df = read_gff3_cds(p)
    assert df.rows() == [("YAA001W", PLUS_CDS), ("YAA002C", MINUS_CDS), ("YAA003W", None), ("YBB001W", None)]


def test_gff3_cds_attributes_as_the_gene_reader_parses_them(tmp_path):
    """Column 9 through the shared parser: percent-decoded ids, an empty ID is no ID."""
    p = tmp_path / "x.gff"
    p.write_text(GFF3.replace("ID=YAA001W;", "ID=YAA%30001W;").replace("Parent=YAA001W\n", "Parent=YAA%30001W\n")
                 .replace("Parent=YAA001W_mRNA;", "Parent=,YAA001W_mRNA;"))
    assert read_gff3_cds(p)["id"][0] == "YAA0001W" and read_gff3_cds(p)["sequence"][0] == PLUS_CDS
    p.write_text(GFF3.replace("ID=YAA003W;", "ID=;"))  # an empty value is none (was read as the id '')
    with pytest.raises(SourceFormatError, match="an ID attribute on a gene feature"):
        read_gff3_cds(p)


def test_gff3_phase_and_errors(tmp_path):
    p = tmp_path / "x.gff"
    p.write_text(GFF3.replace("CDS\t1\t9\t.\t+\t0\tParent=YAA001W_mRNA", "CDS\t1\t9\t.\t+\t1\tParent=YAA001W_mRNA"))
    assert read_gff3_cds(p)["sequence"][0] == PLUS_CDS[1:]  # phase 1: one base before the first codon
    p.write_text(GFF3.replace("CDS\t13\t18\t.\t-", "CDS\t13\t18\t.\t+"))
    with pytest.raises(SourceFormatError, match="one strand") as e:
        read_gff3_cds(p)
    assert e.value.line == 10
    p.write_text(GFF3.replace(">chrI\n" + GENOME[:25].lower(), ">chrI\n" + GENOME[:24].lower() + "!"))
    with pytest.raises(SourceFormatError) as e:
        read_gff3_cds(p)
    assert e.value.line == GFF3.splitlines().index(">chrI") + 2 and e.value.got == "!"
    p.write_text(GFF3.replace("CDS\t23\t28", "CDS\t23\t48"))
    with pytest.raises(SourceFormatError, match="within chrI's 40 bp"):
        read_gff3_cds(p)
    p.write_text(GFF3[:GFF3.index("##FASTA")])
    with pytest.raises(SourceFormatError, match="##FASTA"):
        read_gff3_cds(p)


def test_sequences_for_reports_missing_and_unknown():
    table = pl.DataFrame({"id": ["B", "Z", "C"], "sequence": ["ATG", "ATG", None]})
    seqs, rep = sequences_for(["A", "B", "C"], table)
    assert seqs == [None, "ATG", None]
    assert (rep.n_genes, rep.n_with_sequence, rep.missing, rep.unknown) == (3, 1, ["A", "C"], ["Z"])


# --- sequence features -------------------------------------------------------------------


def col(name: str) -> int:
    return SEQUENCE_FEATURE_NAMES.index(name)


def test_feature_names():
    assert len(SEQUENCE_FEATURE_NAMES) == 87 and len(set(SEQUENCE_FEATURE_NAMES)) == 87
    assert SEQUENCE_FEATURE_NAMES[:4] == ["log10_length_bp", "gc_content", "gc3", "codon_AAA"]
    assert SEQUENCE_FEATURE_NAMES[-1] == "aa_Y" and POSITION_FEATURE_NAMES[16:] == ["chr_Mito", "strand",
                                                                                  "relative_position"]
    assert sum(aa == "*" for aa in GENETIC_CODE.values()) == 3 and GENETIC_CODE["TGG"] == "W"


def test_sequence_features_by_hand():
    x, names = sequence_features(["g1", "g2", "g3"], {"g1": "ATGGCCTAA", "g2": "atgNNNaaaC"})
    assert x.dtype == np.float32 and x.shape == (3, 87) and names == SEQUENCE_FEATURE_NAMES
    g1, g2, g3 = x
    assert g1[col("log10_length_bp")] == pytest.approx(np.log10(9))
    assert g1[col("gc_content")] == pytest.approx(4 / 9)
    assert g1[col("gc3")] == pytest.approx(2 / 3)  # ATG, GCC yes; TAA no
    for c in ("codon_ATG", "codon_GCC", "codon_TAA"):
        assert g1[col(c)] == pytest.approx(1 / 3)
    assert g1[3:67].sum() == pytest.approx(1.0)
    assert g1[col("aa_M")] == g1[col("aa_A")] == pytest.approx(0.5)  # the stop codon is not an amino acid
    assert g1[67:].sum() == pytest.approx(1.0)
    # g2: NNN is no codon, the trailing C no complete codon; N is not counted in GC
    assert g2[col("log10_length_bp")] == pytest.approx(1.0)
    assert g2[col("gc_content")] == pytest.approx(2 / 7)
    assert g2[col("gc3")] == pytest.approx(1 / 2)
    assert g2[col("codon_ATG")] == g2[col("codon_AAA")] == pytest.approx(0.5)
    assert g2[col("aa_M")] == g2[col("aa_K")] == pytest.approx(0.5)
    assert np.isnan(g3).all()  # no sequence


def test_sequence_features_match_a_plain_python_count():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), p=[0.27, 0.22, 0.22, 0.27, 0.02], size=n))
            for n in rng.integers(1, 400, size=200)]
    x, _ = sequence_features([str(i) for i in range(len(seqs))], seqs)
    counts = codon_counts(seqs)
    for i, s in enumerate(seqs):
        codons = Counter(s[j:j + 3] for j in range(0, len(s) - 2, 3) if "N" not in s[j:j + 3])
        assert counts[i].tolist() == [codons.get(c, 0) for c in CODONS]
        total = sum(codons.values())
        aas = Counter(GENETIC_CODE[c] for c in codons.elements() if GENETIC_CODE[c] != "*")
        acgt = sum(ch != "N" for ch in s)
        want = [np.log10(len(s)), (s.count("G") + s.count("C")) / acgt if acgt else np.nan,
                sum(v for c, v in codons.items() if c[2] in "GC") / total if total else np.nan,
                *[codons.get(c, 0) / total if total else np.nan for c in CODONS],
                *[aas.get(a, 0) / sum(aas.values()) if aas else np.nan for a in AMINO_ACIDS]]
        np.testing.assert_allclose(x[i], np.array(want, dtype=np.float32), rtol=1e-6, equal_nan=True)


def test_sequence_features_aligned_input_and_length_check():
    x, _ = sequence_features(["a", "b"], ["ATG", None])
    assert not np.isnan(x[0]).any() and np.isnan(x[1]).all()
    with pytest.raises(ValueError, match="2 ids but 1 sequences"):
        sequence_features(["a", "b"], ["ATG"])


# --- position features -------------------------------------------------------------------


def _table(rows: list[tuple]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, schema=["id", "chromosome", "start", "end", "strand"], orient="row"))


def test_position_features():
    t = _table([("YAL001C", "I", 101, 300, "-"), ("YAL002W", "I", 801, 1000, "+"),
                ("Q0010", "Mito", 1, 99, "+"), ("GFP", None, None, None, None)])
    x, names = position_features(t)
    assert x.shape == (4, 19) and names == POSITION_FEATURE_NAMES and x.dtype == np.float32
    assert x[0, names.index("chr_I")] == 1 and x[0, :17].sum() == 1
    assert x[2, names.index("chr_Mito")] == 1 and x[3, :17].sum() == 0
    assert x[:, names.index("strand")].tolist() == [-1, 1, 1, 0]
    rel = x[:, names.index("relative_position")]
    assert rel[:3] == pytest.approx([200.5 / 1000, 900.5 / 1000, 50 / 99]) and np.isnan(rel[3])
    both, both_names = gene_features(t, {"YAL001C": "ATG"})
    assert both.shape == (4, 106) and both_names == POSITION_FEATURE_NAMES + SEQUENCE_FEATURE_NAMES


# --- embeddings --------------------------------------------------------------------------

GENES = ["YAL001C", "YAL002W", "YAL003W", "YBR010W"]


def test_embeddings_csv_aligned_with_report(tmp_path):
    p = tmp_path / "emb.csv"
    p.write_text("dim0,gene,dim1\n0.5,YBR010W,1e-3\n1,4932.YAL001C,NA\n2,YZZ999W,3\n\n-4,YAL003W,5\n")
    x, rep = import_embeddings(p, GeneIndex.from_table(conform(pl.DataFrame({"id": GENES}))))
    assert x.dtype == np.float32 and x.shape == (4, 2)
    np.testing.assert_array_equal(x[[0, 2, 3]], np.array([[1, np.nan], [-4, 5], [0.5, 1e-3]], dtype=np.float32))
    assert np.isnan(x[1]).all()
    assert rep.columns == ["dim0", "dim1"] and rep.n_rows == 4
    assert (rep.n_missing, rep.missing, rep.n_unknown, rep.unknown) == (1, ["YAL002W"], 1, ["YZZ999W"])
    assert "3 of 4 genes matched" in rep.summary()


def test_embeddings_tsv_first_column_and_parquet(tmp_path):
    tsv = tmp_path / "emb.tsv.gz"
    tsv.write_bytes(gzip.compress(b"orf\te1\te2\te3\nYAL002W\t1\t2\t3\nYAL001C\t4\t5\t6\n"))
    x, rep = import_embeddings(tsv, GENES)
    assert x[:2].tolist() == [[4, 5, 6], [1, 2, 3]] and rep.missing == ["YAL003W", "YBR010W"]
    pq = tmp_path / "emb.parquet"
    pl.DataFrame({"systematic_name": ["YBR010W"], "v": [7.0]}).write_parquet(pq)
    x, rep = import_embeddings(pq, GENES)
    assert x[3, 0] == 7 and np.isnan(x[:3]).all() and rep.n_missing == 3


@pytest.mark.parametrize("text, line, expected", [
    ("id,a,b\nYAL001C,1,2\nYAL002W,x1,3\n", 3, "a number in column 'a'"),
    ("id\ta\nYAL001C\t1\nYAL001C\t2\n", 3, "each gene id once (first YAL001C in data row 1)"),
    ("id,a\nYAL001C,1\n,2\n", 3, "a gene id"),
    ("id,a\nYAL001C,1e99\n", 2, "a finite float32"),
    ("id\nYAL001C\n", 1, "at least one numeric column"),
])
def test_embeddings_errors(tmp_path, text, line, expected):
    p = tmp_path / ("e.tsv" if "\t" in text else "e.csv")
    p.write_text(text)
    with pytest.raises(SourceFormatError) as e:
        import_embeddings(p, GENES)
    assert e.value.line == line and expected in e.value.expected


def test_embeddings_parquet_error_names_the_row(tmp_path):
    p = tmp_path / "e.parquet"
    pl.DataFrame({"id": ["YAL001C", "YAL002W"], "a": ["1.5", "oops"]}).write_parquet(p)
    with pytest.raises(SourceFormatError, match="row 2: oops"):
        import_embeddings(p, GENES)


# --- added genes -------------------------------------------------------------------------

GENOME_TABLE = conform(pl.DataFrame({"id": ["YBR010W", "YAL001C"], "name": ["HHT1", "TFC3"],
                                     "aliases": [["BUR5"], []]}))


def test_added_genes_flag_and_order(tmp_path):
    p = tmp_path / "added.tsv"
    p.write_text("# heterologous genes\nid\tname\tsequence\textra\nkanMX\tkanR\tatgggtaaggaa\tx\n"
                 "GFP\t\tAUGUCUAAA\ty\nCas9\tSpCas9\t\tz\n")
    added = added_genes(p, genome=GENOME_TABLE)
    assert added.columns == ["id", "name", "sequence", "added"]
    assert added.rows() == [("kanMX", "kanR", "ATGGGTAAGGAA", True), ("GFP", None, "ATGTCTAAA", True),
                            ("Cas9", "SpCas9", None, True)]
    t = append_added(GENOME_TABLE, added)
    assert t.columns == list(GENE_SCHEMA)  # "added" is part of the schema
    # genome first, sorted; then the added genes, sorted among themselves
    assert t["id"].to_list() == ["YAL001C", "YBR010W", "Cas9", "GFP", "kanMX"]
    assert t["added"].to_list() == [False, False, True, True, True]
    assert t.filter("added")["chromosome"].null_count() == 3
    # genome indices do not depend on what is added
    more = append_added(t, pl.DataFrame({"id": ["AAA1"], "name": [None]}))
    assert more["id"].to_list()[:2] == ["YAL001C", "YBR010W"] and more["id"].to_list()[2] == "AAA1"
    assert more["added"].sum() == 4


@pytest.mark.parametrize("added_id, what", [("YAL001C", "a genome systematic name"), ("yal001c", "systematic"),
                                            ("HHT1", "standard name"), ("bur5", "an alias")])
def test_added_gene_collision_names_the_id(tmp_path, added_id, what):
    p = tmp_path / "added.tsv"
    p.write_text(f"id\tsequence\nGFP\tATG\n{added_id}\tATG\n")
    with pytest.raises(SourceFormatError) as e:
        added_genes(p, genome=GeneIndex.from_table(GENOME_TABLE))
    assert e.value.line == 3 and added_id in e.value.got and what in e.value.got
    with pytest.raises(SourceFormatError, match=added_id):
        append_added(GENOME_TABLE, added_genes(p))


@pytest.mark.parametrize("text, line, expected", [
    ("id\tsequence\nGFP\tATG\nGFP\tATG\n", 3, "unique ids (first on line 2)"),
    ("id\tsequence\nGFP\tATGQ\n", 2, "a nucleotide sequence for GFP"),
    ("id\tsequence\nG FP\tATG\n", 2, "an id of letters"),
    ("name\tsequence\nGFP\tATG\n", 1, "missing: 'id'"),
])
def test_added_genes_errors(tmp_path, text, line, expected):
    p = tmp_path / "added.tsv"
    p.write_text(text)
    with pytest.raises(SourceFormatError) as e:
        added_genes(p)
    assert e.value.line == line and expected in e.value.expected


# --- the committed sample ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_cds() -> pl.DataFrame:
    return read_fasta(SAMPLE / "gene_cds.fa.gz")


def test_sample_cds_covers_the_gene_table(sample_cds):
    genes = read_gene_table_tsv(SAMPLE / "genes.tsv")
    assert sample_cds.height == 5989 == genes.height
    assert sample_cds["id"].to_list() == sorted(genes["id"].to_list())  # gene-index order
    assert sample_cds["sequence"].null_count() == 0
    seqs, rep = sequences_for(GeneIndex.from_table(genes), sample_cds)
    assert rep.n_missing == 0 and rep.unknown == []
    # spliced CDS never exceed their genomic span; intron-less ones equal it
    span = dict(zip(genes["id"].to_list(), genes["length"].to_list(), strict=True))
    lengths = {g: len(s) for g, s in sample_cds.iter_rows()}
    assert all(lengths[g] <= span[g] for g in lengths)
    assert sum(lengths[g] == span[g] for g in lengths) > 5600


def test_sample_cds_look_like_coding_sequences(sample_cds):
    ids, seqs = sample_cds["id"].to_list(), sample_cds["sequence"].to_list()
    not3 = [g for g, s in zip(ids, seqs, strict=True) if len(s) % 3]
    no_atg = [g for g, s in zip(ids, seqs, strict=True) if not s.startswith("ATG")]
    no_stop = [g for g, s in zip(ids, seqs, strict=True) if s[-3:] not in ("TAA", "TAG", "TGA")]
    # as generated from R64-2-1 all three lists are empty (the generator prints them)
    assert len(not3) <= 0.01 * len(ids), not3[:20]
    assert len(no_atg) <= 0.01 * len(ids), no_atg[:20]
    assert len(no_stop) <= 0.01 * len(ids), no_stop[:20]
    x, _ = sequence_features(ids, seqs)
    assert not np.isnan(x).any()
    gc = x[:, SEQUENCE_FEATURE_NAMES.index("gc_content")]
    assert 0.38 < float(np.median(gc)) < 0.41  # yeast coding GC content is about 39-40%


def test_sample_cds_listed_in_manifest():
    entry = next(f for f in json.loads((SAMPLE / "MANIFEST.json").read_text())["files"]
                 if f["path"] == "gene_cds.fa.gz")
    data = (SAMPLE / "gene_cds.fa.gz").read_bytes()
    assert entry["synthetic"] is False and entry["generator"] == "scripts/make_gene_sequences.py"
    assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert data[4:8] == b"\0\0\0\0"  # gzip mtime 0: reproducible bytes
