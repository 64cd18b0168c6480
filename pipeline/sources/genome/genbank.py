"""NCBI/SGD GenBank flat files (``chr01.gb`` .. ``chr16.gb``, plain or ``.gz``) -> gene table.

Contract: :func:`read_genbank` returns a frame in :data:`~pipeline.core.genes.GENE_SCHEMA`
with one row per distinct ``/locus_tag`` among ``CDS`` features, in file order
(files in the order given; a directory means its ``chr*.gb[.gz]`` files, sorted).
A locus tag with several CDS features keeps its first one; GO terms and aliases
of the others are merged in.

Columns: ``chromosome`` from the ``source`` feature's ``/chromosome="I"`` (else
the file name ``chrNN``); ``start``/``end`` the min/max position of the location,
``strand`` ``-`` for ``complement(...)``; ``name`` = ``/gene`` (null if absent or
equal to the locus tag); ``aliases`` = ``/gene_synonym`` values split on ``;``;
``go_terms`` = the GO ids in ``/GO_component``, ``/GO_function``, ``/GO_process``.

The parser is a small line-based state machine (Biopython is deliberately not a
dependency). Feature keys start in column 6, locations and qualifiers in column
22; a location may wrap over several lines, and a quoted qualifier value runs
until its quotes balance (GenBank escapes ``"`` as ``""``), so a wrapped value
line starting with ``/`` is not mistaken for a new qualifier. A missing
``LOCUS``/``FEATURES``/``//``, an unparseable location, an unterminated
qualifier or a truncated gzip raises :class:`~pipeline.core.errors.SourceFormatError`
with the file and 1-based line.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import polars as pl

from pipeline.core.errors import SourceFormatError, decode_utf8
from pipeline.core.genes import conform, normalise_chromosome
from pipeline.sources._io import read_source_bytes

_GO_QUALIFIERS = ("GO_component", "GO_function", "GO_process")
_WANTED = {"locus_tag", "gene", "gene_synonym", "chromosome", *_GO_QUALIFIERS}
_GO_ID = re.compile(r"GO:\d{7}")
# one position or range inside join/order/complement: 12, <12, 12..>40, 12^13
_SPAN = re.compile(r"^[<>]?(\d+)(?:(?:\.\.|\^)[<>]?(\d+))?$")
_CHR_FILE = re.compile(r"chr(\d\d|mt)", re.IGNORECASE)


def parse_location(loc: str) -> tuple[int, int, str] | None:
    """``(start, end, strand)`` of a GenBank location, or ``None`` if it cannot be parsed.

    >>> parse_location("complement(join(1807..2169,2300..>2400))")
    (1807, 2400, '-')
    >>> parse_location("<1..200"), parse_location("J01355.1:1..20")
    ((1, 200, '+'), None)
    """
    s = loc.replace(" ", "")
    strand = "-" if "complement(" in s else "+"
    inner = s
    for op in ("complement(", "join(", "order("):
        inner = inner.replace(op, "")
    inner = inner.replace(")", "")
    if not inner or s.count("(") != s.count(")"):
        return None
    lo, hi = None, None
    for part in inner.split(","):
        m = _SPAN.match(part)
        if m is None:  # remote references (ACC:1..20), gap(), typos: not a local gene
            return None
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        lo = min(a, b) if lo is None else min(lo, a, b)
        hi = max(a, b) if hi is None else max(hi, a, b)
    return lo, hi, strand


class _Feature:
    __slots__ = ("key", "line", "loc", "quals")

    def __init__(self, key: str, line: int, loc: str) -> None:
        self.key, self.line, self.loc = key, line, loc
        self.quals: list[tuple[str, str]] = []

    def close(self, qual: list | None) -> _Feature:
        if qual is not None:
            self.quals.append((qual[0], qual[1]))
        return self


def _features(path: Path, lines: list[str]):
    """Yield ``(record_no, feature)`` for every feature of every record; checks the record frame."""
    n = len(lines)
    i = 0
    record = 0
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if not line.startswith("LOCUS"):
            raise SourceFormatError(path, i + 1, "a GenBank record starting with 'LOCUS'", line)
        record += 1
        locus_line = i + 1
        i += 1
        while i < n and not lines[i].startswith("FEATURES"):
            if lines[i].startswith(("//", "LOCUS")):
                break
            i += 1
        if i >= n or not lines[i].startswith("FEATURES"):
            raise SourceFormatError(path, locus_line, "a FEATURES table in the record starting here")
        i += 1
        feat: _Feature | None = None
        qual: list | None = None  # the qualifier being read: [name, value so far, 1-based line]
        while True:
            open_quote = qual is not None and qual[1].count('"') % 2 == 1
            if open_quote and (i >= n or lines[i].startswith(("//", "ORIGIN", "LOCUS"))):
                raise SourceFormatError(path, qual[2], f"a closing quote for /{qual[0]}", qual[1][:80])
            if i >= n:
                raise SourceFormatError(path, n, "a record terminated by '//'", "end of file")
            line = lines[i]
            if open_quote:  # a quoted value continues, whatever the line starts with
                qual[1] += " " + line.strip()
                i += 1
                continue
            if line[:5] == "     " and len(line) > 5 and line[5] != " ":  # new feature key
                if feat is not None:
                    yield record, feat.close(qual)
                key = line[5:21].strip()
                feat, qual = _Feature(key, i + 1, line[21:].strip()), None
            elif line.startswith(" " * 21) and feat is not None:
                body = line[21:].rstrip()
                if body.startswith("/"):
                    feat.close(qual)
                    name, _, value = body[1:].partition("=")
                    qual = [name, value, i + 1]
                elif qual is not None:
                    qual[1] += " " + body.strip()
                else:  # a location wrapping onto the next line
                    feat.loc += body.strip()
            elif line.startswith(" " * 21) or not line.strip():
                pass  # blank padding before the first feature
            else:  # ORIGIN / CONTIG / BASE COUNT / '//': the feature table ends
                if feat is not None:
                    yield record, feat.close(qual)
                break
            i += 1
        while i < n and not lines[i].startswith("//"):  # skip the sequence
            if lines[i].startswith("LOCUS"):
                break
            i += 1
        if i >= n or not lines[i].startswith("//"):
            raise SourceFormatError(path, min(i + 1, n), "a record terminated by '//'",
                                    "end of file" if i >= n else lines[i])
        i += 1


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]
    return v.replace('""', '"')


def qualifiers(feat: _Feature, wanted: Collection[str]) -> dict[str, list[str]]:
    """The ``wanted`` qualifiers of a feature: name -> unquoted values, in file order."""
    quals: dict[str, list[str]] = {}
    for q, v in feat.quals:
        if q in wanted:
            quals.setdefault(q, []).append(_unquote(v))
    return quals


def load_lines(path: Path, expected: str) -> tuple[bytes, list[str]]:
    """A GenBank file's bytes and its lines (no line ends); an empty file is an error."""
    data = read_source_bytes(path, desc=f"genbank {path.name}")
    text = decode_utf8(data, path)
    if not text.strip():
        raise SourceFormatError(path, None, expected, "an empty file")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return data, lines


def _read_one(path: Path, genes: dict[str, dict]) -> None:
    """Add the CDS genes of one file to ``genes`` (locus tag -> row), merging repeats."""
    _, lines = load_lines(path, "a GenBank flat file (LOCUS ... FEATURES ... //)")
    m = _CHR_FILE.search(path.name)
    fallback = normalise_chromosome(m.group(0)) if m else None
    record_chrom: dict[int, str | None] = {}
    for record, feat in _features(path, lines):
        if feat.key == "source":
            for q, v in feat.quals:
                if q == "chromosome":
                    c = normalise_chromosome(_unquote(v))
                    if c is None:
                        raise SourceFormatError(path, feat.line, "/chromosome naming I..XVI or Mito", v)
                    record_chrom[record] = c
            continue
        if feat.key != "CDS":
            continue
        quals = qualifiers(feat, _WANTED)
        tag = (quals.get("locus_tag") or [None])[0]
        if not tag:
            continue
        span = parse_location(feat.loc)
        if span is None:
            raise SourceFormatError(path, feat.line, "a location like 12..340, complement(...) or join(...)",
                                    feat.loc)
        chrom = record_chrom.get(record, fallback)
        if chrom is None:
            raise SourceFormatError(path, feat.line, "a source feature with /chromosome (or a file named chrNN.gb)")
        go = {g for q in _GO_QUALIFIERS for v in quals.get(q, []) for g in _GO_ID.findall(v)}
        std = (quals.get("gene") or [None])[0]
        if std == tag:
            std = None
        syn = [s.strip() for v in quals.get("gene_synonym", []) for s in v.split(";")]
        syn = [s for s in dict.fromkeys(syn) if s and s not in (tag, std)]
        if tag in genes:  # a second CDS of the same locus: keep the first, merge annotations
            row = genes[tag]
            row["go_terms"] |= go
            row["aliases"] += [s for s in syn if s not in row["aliases"]]
            continue
        genes[tag] = {"id": tag, "name": std, "chromosome": chrom, "start": span[0], "end": span[1],
                      "strand": span[2], "go_terms": go, "aliases": syn}


def _expand(paths: list[Path] | Path | str) -> list[Path]:
    if isinstance(paths, (str, Path)):
        p = Path(paths)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if re.fullmatch(r"chr.*\.gb(\.gz)?", q.name))
            if not found:
                raise SourceFormatError(p, None, "chr*.gb or chr*.gb.gz files in the directory", "none")
            return found
        return [p]
    return [Path(p) for p in paths]


def read_genbank(paths: list[Path] | Path) -> pl.DataFrame:
    """Read the CDS genes of GenBank flat files into :data:`~pipeline.core.genes.GENE_SCHEMA`."""
    files = _expand(paths)
    genes: dict[str, dict] = {}
    for f in files:
        _read_one(f, genes)
    if not genes:
        raise SourceFormatError(files[0] if len(files) == 1 else ", ".join(map(str, files)), None,
                                "at least one CDS feature with a /locus_tag", "none")
    rows = list(genes.values())
    schema = {"id": pl.String, "name": pl.String, "chromosome": pl.String, "start": pl.Int64,
              "end": pl.Int64, "strand": pl.String, "go_terms": pl.List(pl.String),
              "aliases": pl.List(pl.String)}
    df = pl.DataFrame({k: [r[k] if k != "go_terms" else sorted(r[k]) for r in rows] for k in schema},
                      schema=schema)
    return conform(df)
