"""SGD's S288C GFF3 (e.g. ``saccharomyces_cerevisiae_R64-4-1_20230830.gff``, plain or ``.gz``) -> gene table.

Contract: :func:`read_gff3` returns a frame in :data:`~pipeline.core.genes.GENE_SCHEMA`,
one row per feature whose type (column 3) is exactly ``gene``, in file order.
Mitochondrial genes (``chrmt``) are kept as chromosome ``Mito``.

Format (GFF3): ``#`` lines are comments/directives, a ``##FASTA`` line ends the
annotation (the genome sequence follows). Data lines have 9 tab-separated fields::

    chrI  SGD  gene  1807  2169  .  -  .  ID=YAL068C;Name=YAL068C;gene=PAU8;\
        Alias=PAU8,seripauperin%20PAU8;Ontology_term=GO:0005575,GO:0009277,SO:0000704;...

Column 9 is read by :func:`parse_attributes` (also used by
:func:`pipeline.sources.genome.sequences.read_gff3_cds`): values are URL-percent-encoded
and multi-valued with ``,``; the split on ``;``, ``=`` and ``,`` happens before decoding,
so an encoded ``%2C`` stays inside its value. Columns: ``id`` = ``ID`` (exactly one
value), ``name`` = the first value of ``gene`` (standard name) or null,
``aliases`` = ``Alias`` minus the id and the standard name, ``go_terms`` = the
``GO:`` entries of ``Ontology_term`` (sorted, unique), ``strand`` null for ``.``.

Every data line up to ``##FASTA`` is checked (9 fields, integer start <= end,
strand in ``+ - .``); a bad line, an unknown chromosome on a gene line, a file
without gene features or a truncated gzip raise
:class:`~pipeline.core.errors.SourceFormatError` with the file and 1-based line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from pipeline.core.errors import SourceFormatError, decode_utf8
from pipeline.core.genes import conform, normalise_chromosome
from pipeline.sources._io import read_source_bytes

_FASTA = re.compile(rb"^##FASTA", re.MULTILINE)


def parse_attributes(raw: str) -> dict[str, list[str]]:
    """Column 9 of a GFF3 line -> ``{tag: [values]}``, as the GFF3 specification (v1.26) defines it.

    ``tag=value`` pairs are separated by ``;``, multiple values of a tag by ``,``; tags
    and values are percent-decoded (:func:`urllib.parse.unquote`) after the split, so
    an encoded ``%3B``, ``%3D`` or ``%2C`` stays inside its value. Spaces around a tag
    are ignored (values are kept as written). Empty pairs, pairs without ``=`` and
    empty values are skipped; a tag that is repeated collects the values of each
    occurrence, in order.

    >>> parse_attributes("ID=YAL068C;gene=PAU8;Alias=PAU8,seripauperin%20PAU8;Note=a%3B b%2C c;;")
    {'ID': ['YAL068C'], 'gene': ['PAU8'], 'Alias': ['PAU8', 'seripauperin PAU8'], 'Note': ['a; b, c']}
    >>> parse_attributes("ID=a; gene=,X;Alias=;Ontology_term=GO:1;Ontology_term=GO:2;Is_circular")
    {'ID': ['a'], 'gene': ['X'], 'Alias': [], 'Ontology_term': ['GO:1', 'GO:2']}
    """
    out: dict[str, list[str]] = {}
    for part in raw.split(";"):
        tag, sep, value = part.partition("=")
        tag = tag.strip()
        if not sep or not tag:
            continue  # an empty pair, or a flag without a value: nothing to read
        values = value.split(",")
        if "" in values:
            values = [v for v in values if v]
        if "%" in value:  # (a genome's worth of lines: decode only what is encoded)
            values = [unquote(v) for v in values]
        key = unquote(tag) if "%" in tag else tag
        if key in out:
            out[key].extend(values)
        else:
            out[key] = values
    return out


def feature_lines(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, its 9 fields) of every feature line of GFF3 ``text`` (the part before
    ``##FASTA``): ``#`` lines and blank lines are skipped, ``\\r\\n`` line ends accepted; a line
    without 9 tab-separated fields is a :class:`~pipeline.core.errors.SourceFormatError`."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip() or line[0] == "#":
            continue
        f = line.split("\t")
        if len(f) != 9:
            raise SourceFormatError(path, lineno, f"9 tab-separated GFF3 fields (found {len(f)})", line)
        yield lineno, f


def _gene_fields(attributes: str) -> tuple[str, str | None, list[str], list[str]] | None:
    """(id, standard name or None, aliases, GO terms) of a gene feature's column 9; None
    unless it has exactly one ID."""
    attrs = parse_attributes(attributes)
    ids = attrs.get("ID", [])
    if len(ids) != 1:
        return None
    gid = ids[0]
    std = (attrs.get("gene") or [None])[0]
    if std == gid:
        std = None
    aliases = list(dict.fromkeys(a for a in attrs.get("Alias", []) if a not in (gid, std)))
    go = sorted({t for t in attrs.get("Ontology_term", []) if t.startswith("GO:")})
    return gid, std, aliases, go


_ROWS_SCHEMA = {"id": pl.String, "name": pl.String, "chromosome": pl.String, "start": pl.Int64, "end": pl.Int64,
                "strand": pl.String, "go_terms": pl.List(pl.String), "aliases": pl.List(pl.String)}


def read_gff3(path: str | Path) -> pl.DataFrame:
    """Read the ``gene`` features of an SGD GFF3 file into :data:`~pipeline.core.genes.GENE_SCHEMA`."""
    path = Path(path)
    data = read_source_bytes(path, desc=f"gff3 {path.name}").removeprefix(b"\xef\xbb\xbf")  # a BOM
    if m := _FASTA.search(data):  # the sequence (most of the bytes) is never split into lines
        data = data[:m.start()]
    fast = _read_vectorised(data)
    return fast if fast is not None else _read_checked(path, data)


def _read_vectorised(data: bytes) -> pl.DataFrame | None:
    """The fast path: polars parses and checks every line at once; column 9 of the gene
    lines (a few thousand) goes through :func:`parse_attributes`.

    Returns None when anything is off (wrong field count, bad coordinates or strand,
    unknown chromosome, not exactly one ID): :func:`_read_checked` then finds and
    reports the first bad line with its number.
    """
    cols = ["seqid", "source", "type", "start", "end", "score", "strand", "phase", "attributes"]
    try:
        df = pl.read_csv(data, separator="\t", has_header=False, comment_prefix="#", quote_char=None,
                         new_columns=cols, schema={c: pl.String for c in cols})
    except pl.exceptions.PolarsError:
        return None
    if df.height == 0 or df.null_count().sum_horizontal().item():
        return None
    df = df.with_columns(pl.col("start").cast(pl.Int64, strict=False), pl.col("end").cast(pl.Int64, strict=False))
    ok = df.select(
        pl.col("start").is_not_null().all() & pl.col("end").is_not_null().all()
        & (pl.col("start") >= 1).all() & (pl.col("end") >= pl.col("start")).all()
        & pl.col("strand").is_in(["+", "-", "."]).all()).item()
    genes = df.filter(pl.col("type") == "gene")
    if not ok or genes.height == 0:
        return None
    chrom = {c: normalise_chromosome(c) for c in genes["seqid"].unique().to_list()}
    if None in chrom.values():
        return None
    fields = [_gene_fields(a) for a in genes["attributes"].to_list()]
    if any(f is None for f in fields):
        return None
    ids, names, aliases, go = zip(*fields)
    out = genes.select(pl.Series("id", ids, dtype=pl.String), pl.Series("name", names, dtype=pl.String),
                       pl.col("seqid").replace_strict(chrom, return_dtype=pl.String).alias("chromosome"),
                       "start", "end",
                       pl.when(pl.col("strand") == ".").then(None).otherwise(pl.col("strand")).alias("strand"),
                       _string_lists("go_terms", go), _string_lists("aliases", aliases))
    return conform(out)


_SEP = "\x1f"  # ASCII unit separator: never inside an attribute value of a text GFF3 line


def _string_lists(name: str, lists: Sequence[list[str]]) -> pl.Series:
    """A List(String) Series of Python lists of non-empty strings, built as one joined string
    per row and split by polars: building it list by list (``pl.Series(lists)``) costs ~0.15 s
    for a genome, and going through pyarrow makes polars import pandas (~0.5 s)."""
    joined = pl.Series(name, [_SEP.join(v) for v in lists], dtype=pl.String)
    return (pl.select(pl.when(joined == "").then(pl.lit([], dtype=pl.List(pl.String)))
                      .otherwise(joined.str.split(_SEP)).alias(name)).to_series())


def _read_checked(path: Path, data: bytes) -> pl.DataFrame:
    """The line-by-line reader: the reference for the fast path, and the error reporter."""
    text = decode_utf8(data, path)

    rows: dict[str, list] = {k: [] for k in _ROWS_SCHEMA}
    for lineno, f in feature_lines(path, text):
        try:
            start, end = int(f[3]), int(f[4])
        except ValueError:
            raise SourceFormatError(path, lineno, "integer start and end (columns 4 and 5)",
                                    f"{f[3]!r}, {f[4]!r}") from None
        if start < 1 or end < start:
            raise SourceFormatError(path, lineno, "1 <= start <= end (columns 4 and 5)", f"{start}, {end}")
        if f[6] not in ("+", "-", "."):
            raise SourceFormatError(path, lineno, "strand '+', '-' or '.' (column 7)", f[6])
        if f[2] != "gene":
            continue
        chrom = normalise_chromosome(f[0])
        if chrom is None:
            raise SourceFormatError(path, lineno, "a chromosome chrI..chrXVI or chrmt (column 1)", f[0])
        if (gene := _gene_fields(f[8])) is None:
            raise SourceFormatError(path, lineno, "exactly one ID attribute on a gene feature", f[8])
        gid, std, aliases, go = gene
        rows["id"].append(gid)
        rows["name"].append(std)
        rows["chromosome"].append(chrom)
        rows["start"].append(start)
        rows["end"].append(end)
        rows["strand"].append(None if f[6] == "." else f[6])
        rows["go_terms"].append(go)
        rows["aliases"].append(aliases)

    if not rows["id"]:
        raise SourceFormatError(path, None, "at least one GFF3 feature of type 'gene'",
                                "an empty file" if not text.strip() else "no gene features")
    return conform(pl.DataFrame(rows, schema=_ROWS_SCHEMA))
