"""SGD's S288C GFF3 (e.g. ``saccharomyces_cerevisiae_R64-4-1_20230830.gff``, plain or ``.gz``) -> gene table.

Contract: :func:`read_gff3` returns a frame in :data:`~pipeline.core.genes.GENE_SCHEMA`,
one row per feature whose type (column 3) is exactly ``gene``, in file order.
Mitochondrial genes (``chrmt``) are kept as chromosome ``Mito``.

Format (GFF3): ``#`` lines are comments/directives, a ``##FASTA`` line ends the
annotation (the genome sequence follows). Data lines have 9 tab-separated fields::

    chrI  SGD  gene  1807  2169  .  -  .  ID=YAL068C;Name=YAL068C;gene=PAU8;Alias=PAU8,seripauperin%20PAU8;Ontology_term=GO:0005575,GO:0009277,SO:0000704;...

Attribute values are URL-percent-encoded and multi-valued with ``,``; the split on
``;``, ``=`` and ``,`` happens before decoding, so an encoded ``%2C`` stays inside
its value. Columns: ``id`` = ``ID``, ``name`` = ``gene`` (standard name) or null,
``aliases`` = ``Alias`` minus the id and the standard name, ``go_terms`` = the
``GO:`` entries of ``Ontology_term`` (sorted, unique), ``strand`` null for ``.``.

Every data line up to ``##FASTA`` is checked (9 fields, integer start <= end,
strand in ``+ - .``); a bad line, an unknown chromosome on a gene line, a file
without gene features or a truncated gzip raise
:class:`~pipeline.core.errors.SourceFormatError` with the file and 1-based line.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import conform, normalise_chromosome
from pipeline.sources._io import read_source_bytes

_FASTA = re.compile(rb"^##FASTA", re.MULTILINE)


def _attributes(raw: str) -> dict[str, list[str]]:
    """``k=v1,v2;k2=v`` -> {k: [v1, v2], k2: [v]}, values percent-decoded after splitting."""
    out: dict[str, list[str]] = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            continue  # a flag attribute carries nothing we use
        out[unquote(key.strip())] = [unquote(v) for v in value.split(",") if v != ""]
    return out


def read_gff3(path: str | Path) -> pl.DataFrame:
    """Read the ``gene`` features of an SGD GFF3 file into :data:`~pipeline.core.genes.GENE_SCHEMA`."""
    path = Path(path)
    data = read_source_bytes(path, desc=f"gff3 {path.name}")
    if m := _FASTA.search(data):  # the sequence (most of the bytes) is never split into lines
        data = data[:m.start()]
    fast = _read_vectorised(data)
    return fast if fast is not None else _read_checked(path, data)


def _attr(name: str) -> pl.Expr:
    """Raw (still percent-encoded) value of attribute ``name`` in column 9, or null."""
    return pl.col("attributes").str.extract(rf"(?:^|;)\s*{name}=([^;]*)", 1)


def _decode(values: pl.Expr) -> pl.Expr:
    # SGD encodes only a few characters; decode the rare values that carry a '%'
    return (pl.when(values.str.contains("%", literal=True))
            .then(values.map_elements(unquote, return_dtype=pl.String)).otherwise(values))


def _read_vectorised(data: bytes) -> pl.DataFrame | None:
    """The fast path: polars parses and checks every line at once.

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
    if None in chrom.values() or (genes["attributes"].str.count_matches(r"(?:^|;)\s*ID=") != 1).any():
        return None
    g = genes.with_row_index("row").select(
        "row",
        _decode(_attr("ID")).alias("id"),
        _decode(_attr("gene").str.split(",").list.first()).alias("name"),
        pl.col("seqid").replace_strict(chrom, return_dtype=pl.String).alias("chromosome"),
        "start", "end",
        pl.when(pl.col("strand") == ".").then(None).otherwise(pl.col("strand")).alias("strand"),
        _attr("Alias").str.split(",").alias("alias_raw"),
        _attr("Ontology_term").str.split(",").alias("terms"),
    )
    if g["id"].is_null().any() or (g["id"] == "").any():
        return None
    g = g.with_columns(pl.when(pl.col("name") == pl.col("id")).then(None).otherwise(pl.col("name")).alias("name"))
    # aliases: split before decoding, minus the id and the standard name, first occurrence kept
    al = (g.select("row", "id", "name", pl.col("alias_raw").alias("a")).explode("a")
          .filter(pl.col("a").is_not_null() & (pl.col("a") != ""))
          .with_columns(_decode(pl.col("a")).alias("a"))
          .filter((pl.col("a") != pl.col("id")) & (pl.col("name").is_null() | (pl.col("a") != pl.col("name"))))
          .unique(["row", "a"], keep="first", maintain_order=True)
          .group_by("row", maintain_order=True).agg(pl.col("a").alias("aliases")))
    go = (g.select("row", pl.col("terms").alias("t")).explode("t")
          .filter(pl.col("t").is_not_null()).with_columns(_decode(pl.col("t")).alias("t"))
          .filter(pl.col("t").str.starts_with("GO:")).unique(["row", "t"])
          .group_by("row").agg(pl.col("t").sort().alias("go_terms")))
    out = (g.join(al, on="row", how="left").join(go, on="row", how="left").sort("row")
           .with_columns(pl.col("aliases").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                         pl.col("go_terms").fill_null(pl.lit([], dtype=pl.List(pl.String)))))
    return conform(out)


def _read_checked(path: Path, data: bytes) -> pl.DataFrame:
    """The line-by-line reader: the reference for the fast path, and the error reporter."""
    text = data.decode("utf-8", "replace")

    rows: dict[str, list] = {k: [] for k in ("id", "name", "chromosome", "start", "end", "strand",
                                             "go_terms", "aliases")}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line or line[0] == "#":
            continue
        line = line.rstrip("\r")
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 9:
            raise SourceFormatError(path, lineno, f"9 tab-separated GFF3 fields (found {len(f)})", line)
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
        attrs = _attributes(f[8])
        ids = attrs.get("ID", [])
        if len(ids) != 1 or not ids[0]:
            raise SourceFormatError(path, lineno, "exactly one ID attribute on a gene feature", f[8])
        gid = ids[0]
        std = (attrs.get("gene") or [None])[0]
        if std == gid:
            std = None
        aliases = list(dict.fromkeys(a for a in attrs.get("Alias", []) if a not in (gid, std)))
        go = sorted({t for t in attrs.get("Ontology_term", []) if t.startswith("GO:")})
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
    schema = {"id": pl.String, "name": pl.String, "chromosome": pl.String, "start": pl.Int64,
              "end": pl.Int64, "strand": pl.String, "go_terms": pl.List(pl.String),
              "aliases": pl.List(pl.String)}
    return conform(pl.DataFrame(rows, schema=schema))
