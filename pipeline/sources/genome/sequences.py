"""Per-gene coding sequences (nucleotides) from FASTA, GenBank flat files and SGD GFF3.

Contract: every reader returns a frame ``(id: String, sequence: String)``, one row
per gene, the sequence in upper-case IUPAC letters (``U`` read as ``T``), 5' -> 3'
on the coding strand. A gene the file names but whose sequence cannot be built (a
GenBank record without ``ORIGIN``, a GFF3 gene without CDS or whose chromosome has
no ``##FASTA`` record, an empty FASTA record) has a **null** sequence: it is kept,
counted and logged, never silently dropped. :func:`sequences_for` aligns a frame
to a gene index and reports the genes without a sequence.

- :func:`read_fasta`: ``>YAL001C any description`` headers, plain or ``.gz``; the
  id is the first word of the header.
- :func:`read_genbank_cds`: ``chr01.gb``..``chr16.gb`` (a directory means its
  ``chr*.gb[.gz]`` files). Each ``CDS`` with a ``/locus_tag`` is cut from its
  record's ``ORIGIN`` sequence part by part, in transcript order (``join``,
  ``order``, ``complement``, nested), minus-strand parts reverse-complemented.
  ``/codon_start=N`` drops the first ``N-1`` bases so that the sequence starts in
  frame. A repeated locus tag keeps its first CDS, as
  :func:`pipeline.sources.genome.genbank.read_genbank` does.
- :func:`read_gff3_cds`: SGD GFF3 with a ``##FASTA`` section. Every ``gene``
  feature is a row (the genes :func:`pipeline.sources.genome.gff3.read_gff3` reads); its
  ``CDS`` features (``Parent`` = an mRNA whose ``Parent`` is the gene, the gene
  itself, or ``<gene>_mRNA``) are sorted by start, concatenated, and
  reverse-complemented on ``-``; a non-zero phase on the first coding part drops
  that many bases. CDS of other parents are counted and logged.

Bad input raises :class:`~pipeline.core.errors.SourceFormatError` with the file and
1-based line: a character that is not a nucleotide, a location that cannot be
parsed or reaches past the sequence, CDS parts of one gene on different strands or
chromosomes, a duplicated id, a file without any record, a GFF3 file without
``##FASTA``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.sources._io import line_of_offset, read_source_bytes

# The feature-table state machine (multi-line quoted values, wrapped locations) is the gene
# reader's; sharing it keeps one GenBank grammar in the package.
from pipeline.sources.genome.genbank import _expand, _features, load_lines, qualifiers
from pipeline.sources.genome.gff3 import feature_lines, parse_attributes

log = logging.getLogger(__name__)

#: Columns of every reader's frame.
SCHEMA: dict[str, pl.DataType] = {"id": pl.String, "sequence": pl.String}

_IUPAC = b"ACGTUNRYKMSWBDHV"
_BAD_BASE = re.compile(rb"[^" + _IUPAC + _IUPAC.lower() + rb"]")
_UPPER = bytes.maketrans(_IUPAC.lower() + b"U", _IUPAC.replace(b"U", b"T") + b"T")  # RNA U reads as T
_COMPLEMENT = bytes.maketrans(b"ACGTNRYKMSWBDHV", b"TGCANYRMKSWVHDB")
_WHITESPACE = b" \t\r\n"


def reverse_complement(seq: str) -> str:
    """Reverse complement of an upper-case IUPAC sequence.

    >>> reverse_complement("ATGCRN")
    'NYGCAT'
    """
    return seq.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")


def _clean(path: Path, data: bytes, start: int, end: int, drop: bytes = _WHITESPACE) -> str:
    """``data[start:end]`` without the bytes in ``drop``, upper-cased; a non-nucleotide is an error."""
    seq = data[start:end].translate(None, drop)
    if (bad := _BAD_BASE.search(seq)) is not None:
        # locate the character in the raw text: the cleaned bytes have lost their positions
        ch = bad.group(0)
        at = next(i for i in range(start, end) if data[i:i + 1] == ch)
        raise SourceFormatError(path, line_of_offset(data, at),
                                "nucleotide letters (IUPAC: ACGTUN RYKMSWBDHV)", ch.decode("latin-1"))
    return seq.translate(_UPPER).decode("ascii")


def _frame(ids: list[str], seqs: list[str | None], path: Path | str, what: str) -> pl.DataFrame:
    df = pl.DataFrame({"id": ids, "sequence": seqs}, schema=SCHEMA)
    if n_null := df["sequence"].null_count():
        ex = df.filter(pl.col("sequence").is_null())["id"].head(5).to_list()
        log.warning("%s: %d of %d %s have no sequence (kept, as null), e.g. %s", path, n_null, df.height, what, ex)
    return df


# --- FASTA ------------------------------------------------------------------------------

_HEADER = re.compile(rb"^>", re.MULTILINE)


def _fasta_records(path: Path, data: bytes, offset: int = 0) -> list[tuple[str, int, int]]:
    """``(id, sequence start, sequence end)`` per record of ``data[offset:]``; checks the ids."""
    starts = [m.start() for m in _HEADER.finditer(data, offset)]
    if not starts:
        raise SourceFormatError(path, line_of_offset(data, offset) if offset else None,
                                "FASTA records ('>id' header lines)",
                                "nothing" if not data[offset:].strip() else _line_at(data, offset))
    if data[offset:starts[0]].strip():
        raise SourceFormatError(path, line_of_offset(data, offset), "a '>' header line first",
                                _line_at(data, offset))
    out = []
    first: dict[str, int] = {}
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        nl = data.find(b"\n", s, end)
        body = nl + 1 if nl >= 0 else end
        words = data[s + 1:body].decode("utf-8", "replace").split(maxsplit=1)
        if not words:
            raise SourceFormatError(path, line_of_offset(data, s), "an id after '>'", _line_at(data, s))
        gid = words[0]
        if gid in first:
            raise SourceFormatError(path, line_of_offset(data, s),
                                    f"unique ids (first seen on line {line_of_offset(data, first[gid])})", gid)
        first[gid] = s
        out.append((gid, body, end))
    return out


def _line_at(data: bytes, offset: int) -> str:
    """The line starting at byte ``offset`` (for error messages)."""
    end = data.find(b"\n", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")


def read_fasta(path: str | Path) -> pl.DataFrame:
    """Per-gene sequences from a FASTA file (plain or gzip): ``(id, sequence)`` in file order."""
    path = Path(path)
    data = read_source_bytes(path, desc=f"fasta {path.name}")
    ids, seqs = [], []
    for gid, a, b in _fasta_records(path, data):
        ids.append(gid)
        seqs.append(_clean(path, data, a, b) or None)
    return _frame(ids, seqs, path, "records")


def write_fasta(fh, ids: Sequence[str], seqs: Sequence[str], width: int = 60) -> None:
    """Write ``>id`` records with sequence lines of ``width`` letters to a binary file handle."""
    for gid, seq in zip(ids, seqs, strict=True):
        fh.write(f">{gid}\n".encode())
        b = seq.encode("ascii")
        fh.write(b"\n".join(b[i:i + width] for i in range(0, len(b), width)) + b"\n")


# --- locations --------------------------------------------------------------------------

_SPAN = re.compile(r"[<>]?(\d+)(?:\.\.[<>]?(\d+))?")
_OPS = ("complement(", "join(", "order(")


class _BadLocation(ValueError):
    pass


def location_parts(loc: str) -> list[tuple[int, int, int]] | None:
    """Parts ``(start, end, strand)`` (1-based inclusive, strand +1/-1) of a GenBank location,
    in transcript order; ``None`` for what cannot be cut from the record (remote ``ACC:1..9``
    references, ``a^b`` sites, typos).

    >>> location_parts("complement(join(10..12,20..25))")
    [(20, 25, -1), (10, 12, -1)]
    >>> location_parts("join(complement(20..25),complement(10..12))"), location_parts("<1..>9")
    ([(20, 25, -1), (10, 12, -1)], [(1, 9, 1)])
    """
    s = loc.replace(" ", "")
    pos = 0

    def expr() -> list[tuple[int, int, int]]:
        nonlocal pos
        for op in _OPS:
            if s.startswith(op, pos):
                pos += len(op)
                items = [expr()]
                while s.startswith(",", pos):
                    pos += 1
                    items.append(expr())
                if not s.startswith(")", pos) or (op == "complement(" and len(items) != 1):
                    raise _BadLocation
                pos += 1
                if op == "complement(":  # the other strand: reversed order, each part flipped
                    return [(a, b, -st) for a, b, st in reversed(items[0])]
                return [p for it in items for p in it]
        m = _SPAN.match(s, pos)
        if m is None:
            raise _BadLocation
        pos = m.end()
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if a > b:  # GenBank writes complement(), never a reversed range
            raise _BadLocation
        return [(a, b, 1)]

    try:
        parts = expr()
    except _BadLocation:
        return None
    return parts if pos == len(s) and parts else None


def splice(genome: str, parts: list[tuple[int, int, int]]) -> str:
    """The sequence of ``parts`` (see :func:`location_parts`) cut from ``genome``.

    >>> splice("AACCGGTTAC", [(7, 8, -1), (1, 2, -1)])
    'AATT'
    """
    return "".join(genome[a - 1:b] if st > 0 else reverse_complement(genome[a - 1:b]) for a, b, st in parts)


# --- GenBank ----------------------------------------------------------------------------

_ORIGIN_DROP = _WHITESPACE + b"0123456789"


def _origins(path: Path, data: bytes) -> dict[int, str]:
    """Record number (1-based, as :func:`_features` counts) -> its ORIGIN sequence."""
    out: dict[int, str] = {}
    record = 0
    for m in re.finditer(rb"^(LOCUS|ORIGIN)[^\n]*\n?", data, re.MULTILINE):
        if m.group(1) == b"LOCUS":
            record += 1
            continue
        end = data.find(b"\n//", m.end() - 1)
        end = len(data) if end < 0 else end
        out[record] = _clean(path, data, m.end(), end, drop=_ORIGIN_DROP)
    return out


def _read_genbank_one(path: Path, out: dict[str, str | None], dup: list[str]) -> None:
    data, lines = load_lines(path, "a GenBank flat file (LOCUS ... FEATURES ... ORIGIN ... //)")
    # the feature pass checks the record frame (LOCUS, FEATURES, //) before sequences are cut
    cds = [(record, feat) for record, feat in _features(path, lines) if feat.key == "CDS"]
    origins = _origins(path, data.replace(b"\r\n", b"\n"))
    for record, feat in cds:
        quals = qualifiers(feat, ("locus_tag", "codon_start"))
        tag = (quals.get("locus_tag") or [None])[0]  # the first /locus_tag, the last /codon_start
        codon_start = (quals.get("codon_start") or [None])[-1]
        if not tag:
            continue
        if tag in out:
            dup.append(tag)
            continue
        parts = location_parts(feat.loc)
        if parts is None:
            raise SourceFormatError(path, feat.line, "a local location like 12..340, complement(...) or join(...)",
                                    feat.loc)
        genome = origins.get(record)
        if genome is None:  # a CONTIG-only record: no bases to cut from
            out[tag] = None
            continue
        if (hi := max(b for _, b, _ in parts)) > len(genome):
            raise SourceFormatError(path, feat.line, f"a location within the record's {len(genome)} bp",
                                    f"{feat.loc} (reaches {hi})")
        seq = splice(genome, parts)
        if codon_start is not None:
            if codon_start not in ("1", "2", "3"):
                raise SourceFormatError(path, feat.line, "/codon_start=1, 2 or 3", codon_start)
            seq = seq[int(codon_start) - 1:]
        out[tag] = seq


def read_genbank_cds(paths: list[Path] | Path | str) -> pl.DataFrame:
    """Spliced CDS sequences of the ``/locus_tag`` CDS features of GenBank flat files, in file order."""
    files = _expand(paths)
    out: dict[str, str | None] = {}
    dup: list[str] = []
    for f in files:
        _read_genbank_one(f, out, dup)
    where = files[0] if len(files) == 1 else f"{files[0].parent}/{{{files[0].name}..{files[-1].name}}}"
    if not out:
        raise SourceFormatError(where, None, "at least one CDS feature with a /locus_tag", "none")
    if dup:
        log.info("%s: %d repeated locus tags: first CDS kept (e.g. %s)", where, len(dup), dup[:5])
    return _frame(list(out), list(out.values()), where, "CDS genes")


# --- GFF3 -------------------------------------------------------------------------------

_GFF_FASTA = re.compile(rb"^##FASTA[^\n]*\n?", re.MULTILINE)


@dataclass
class _Cds:
    seqid: str
    strand: str
    line: int
    parts: list[tuple[int, int, int]]  # (start, end, phase)


def read_gff3_cds(path: str | Path) -> pl.DataFrame:
    """Spliced CDS sequences of the ``gene`` features of a GFF3 file with a ``##FASTA`` section."""
    path = Path(path)
    data = read_source_bytes(path, desc=f"gff3 {path.name}")
    m = _GFF_FASTA.search(data)
    annot, fasta_at = (data[:m.start()], m.end()) if m else (data, len(data))
    genes: list[str] = []
    mrna_parent: dict[str, str] = {}
    cds: dict[str, _Cds] = {}  # by Parent
    for lineno, f in feature_lines(path, annot.decode("utf-8", "replace")):
        if f[2] not in ("gene", "mRNA", "CDS"):
            continue
        attrs = parse_attributes(f[8])
        if f[2] == "gene":
            if not (ids := attrs.get("ID")):
                raise SourceFormatError(path, lineno, "an ID attribute on a gene feature", f[8])
            genes.append(ids[0])
            continue
        parent = (attrs.get("Parent") or [None])[0]
        if f[2] == "mRNA":
            if (mid := attrs.get("ID")) and parent is not None:
                mrna_parent[mid[0]] = parent
            continue
        try:
            start, end = int(f[3]), int(f[4])
            phase = int(f[7]) if f[7] != "." else 0
        except ValueError:
            raise SourceFormatError(path, lineno, "integer start, end and phase (columns 4, 5, 8)",
                                    f"{f[3]!r}, {f[4]!r}, {f[7]!r}") from None
        if not 1 <= start <= end or f[6] not in "+-" or len(f[6]) != 1 or phase not in (0, 1, 2):
            raise SourceFormatError(path, lineno, "1 <= start <= end, strand '+' or '-', phase 0..2 on a CDS",
                                    f"{start}, {end}, {f[6]!r}, {f[7]!r}")
        if parent is None:
            raise SourceFormatError(path, lineno, "a Parent attribute on a CDS feature", f[8])
        c = cds.setdefault(parent, _Cds(f[0], f[6], lineno, []))
        if (c.seqid, c.strand) != (f[0], f[6]):
            raise SourceFormatError(path, lineno, f"CDS parts of {parent} on one strand of one chromosome "
                                    f"(line {c.line}: {c.seqid} {c.strand})", f"{f[0]} {f[6]}")
        c.parts.append((start, end, phase))
    if not genes:
        raise SourceFormatError(path, None, "at least one GFF3 feature of type 'gene'",
                                "an empty file" if not data.strip() else "no gene features")
    if m is None:  # nothing to cut from: every gene would be null
        raise SourceFormatError(path, None, "a '##FASTA' section with the chromosome sequences", "none")
    chroms = {gid: (a, b) for gid, a, b in _fasta_records(path, data, fasta_at)}
    genome_cache: dict[str, str] = {}
    gene_set = set(genes)
    by_gene: dict[str, _Cds] = {}
    orphans: list[str] = []
    for parent, c in cds.items():
        gid = mrna_parent.get(parent, parent)
        if gid not in gene_set and parent.endswith("_mRNA") and parent[:-5] in gene_set:
            gid = parent[:-5]
        if gid not in gene_set:
            orphans.append(parent)
            continue
        if gid in by_gene:  # a second transcript: the first one is the gene's CDS
            continue
        by_gene[gid] = c
    if orphans:
        log.warning("%s: CDS of %d parents that are no gene feature were skipped, e.g. %s",
                    path, len(orphans), orphans[:5])
    seqs: list[str | None] = []
    for gid in genes:
        c = by_gene.get(gid)
        if c is None or c.seqid not in chroms:
            seqs.append(None)
            continue
        if c.seqid not in genome_cache:
            a, b = chroms[c.seqid]
            genome_cache[c.seqid] = _clean(path, data, a, b)
        genome = genome_cache[c.seqid]
        parts = sorted(c.parts)
        if parts[-1][1] > len(genome):
            raise SourceFormatError(path, c.line, f"CDS within {c.seqid}'s {len(genome)} bp", str(parts[-1][1]))
        strand = 1 if c.strand == "+" else -1
        seq = splice(genome, [(a, b, strand) for a, b, _ in (parts if strand > 0 else parts[::-1])])
        first_phase = parts[0][2] if strand > 0 else parts[-1][2]
        seqs.append(seq[first_phase:])
    return _frame(genes, seqs, path, "genes")


# --- alignment to a gene index -----------------------------------------------------------


@dataclass(frozen=True)
class SequenceReport:
    """What :func:`sequences_for` found: genes without a sequence and ids outside the index."""

    n_genes: int
    n_with_sequence: int
    missing: list[str]  #: index ids with no (or a null) sequence, in index order
    unknown: list[str]  #: ids of the frame that are not in the index

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    def summary(self) -> str:
        return (f"{self.n_with_sequence:,} of {self.n_genes:,} genes have a sequence; "
                f"{self.n_missing:,} missing (e.g. {self.missing[:5]}); "
                f"{len(self.unknown):,} ids not in the gene index (e.g. {self.unknown[:5]})")


def sequences_for(ids: Sequence[str] | np.ndarray | GeneIndex,
                  table: pl.DataFrame) -> tuple[list[str | None], SequenceReport]:
    """Sequences of a reader's frame in the order of ``ids`` (None where missing), and a report."""
    if isinstance(ids, GeneIndex):
        ids = ids.ids
    ids = [str(i) for i in ids]
    have = dict(zip(table["id"].to_list(), table["sequence"].to_list()))
    seqs = [have.get(i) for i in ids]
    index = set(ids)
    report = SequenceReport(
        n_genes=len(ids), n_with_sequence=sum(s is not None for s in seqs),
        missing=[i for i, s in zip(ids, seqs) if s is None],
        unknown=[i for i in have if i not in index])
    if report.missing or report.unknown:
        log.warning("sequences: %s", report.summary())
    return seqs, report
