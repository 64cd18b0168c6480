"""SGD's S288C GFF3 (e.g. ``saccharomyces_cerevisiae_R64-4-1_20230830.gff``, plain or ``.gz``) -> gene table.

Contract: :func:`read_gff3` returns a frame in :data:`~pipeline.genes.GENE_SCHEMA`,
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
:class:`~pipeline.errors.SourceFormatError` with the file and 1-based line.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from pipeline.errors import SourceFormatError
from pipeline.genes import conform, normalise_chromosome
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
    """Read the ``gene`` features of an SGD GFF3 file into :data:`~pipeline.genes.GENE_SCHEMA`."""
    path = Path(path)
    data = read_source_bytes(path, desc=f"gff3 {path.name}")
    if m := _FASTA.search(data):  # the sequence (most of the bytes) is never split into lines
        data = data[:m.start()]
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
