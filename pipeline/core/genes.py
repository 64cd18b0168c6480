"""The gene universe: one table, one stable sorted order, one fingerprint.

Every artifact stores the gene index it was computed over (ids in this order and
its fingerprint), so that no two artifacts can disagree on what index ``i`` means.
The order is the lexicographic order of systematic names, as in the reference
research code (a ``SortedSet`` of systematic names).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError, decode_utf8

#: Columns of a gene table, as every gene reader returns it.
GENE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,  # systematic name, e.g. YAL001C
    "name": pl.String,  # standard name, e.g. TFC3 (null when none)
    "chromosome": pl.String,  # I..XVI or Mito
    "start": pl.Int64,  # 1-based, inclusive
    "end": pl.Int64,  # 1-based, inclusive
    "strand": pl.String,  # "+" or "-"
    "length": pl.Int64,  # end - start + 1
    "go_terms": pl.List(pl.String),  # GO ids, e.g. GO:0005634, sorted, unique
    "aliases": pl.List(pl.String),  # other names, used to map standard names in sources
    "added": pl.Boolean,  # a heterologous gene appended to the genome's (no edges in any graph)
}

_ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X",
          "XI", "XII", "XIII", "XIV", "XV", "XVI"]
#: Chromosome names in genome order; the position is the integer code stored in the graph store.
CHROMOSOMES: list[str] = _ROMAN + ["Mito"]
_CHROM_ALIASES = {r: r for r in _ROMAN}
_CHROM_ALIASES.update({str(i + 1): r for i, r in enumerate(_ROMAN)})
_CHROM_ALIASES.update({f"{i + 1:02d}": r for i, r in enumerate(_ROMAN)})
for _m in ("mt", "mito", "mitochondrion", "mitochondrial", "m"):
    _CHROM_ALIASES[_m] = "Mito"


def normalise_chromosome(raw: str) -> str | None:
    """Map ``chrI``, ``I``, ``1``, ``chr01``, ``chrmt``, ``Mito`` ... to ``I``..``XVI`` / ``Mito``.

    Returns ``None`` for anything else (e.g. the 2-micron plasmid is mapped to Mito
    only if named so; unknown names are for the caller to report).

    >>> normalise_chromosome("chrXVI"), normalise_chromosome("chrmt"), normalise_chromosome("01")
    ('XVI', 'Mito', 'I')
    """
    s = raw.strip()
    low = s.lower()
    for prefix in ("chromosome", "chr"):
        if low.startswith(prefix):
            s = s[len(prefix):].strip(" _")
            low = s.lower()
            break
    if s in _CHROM_ALIASES:
        return _CHROM_ALIASES[s]
    return _CHROM_ALIASES.get(low)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Cast a reader's frame to :data:`GENE_SCHEMA`, in schema column order, filling absent columns."""
    cols = []
    for name, dtype in GENE_SCHEMA.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype))
        elif name == "length" and {"start", "end"} <= set(df.columns):
            cols.append((pl.col("end") - pl.col("start") + 1).cast(dtype).alias(name))
        elif isinstance(dtype, pl.List):
            cols.append(pl.lit([], dtype=dtype).alias(name))
        elif name == "added":
            cols.append(pl.lit(False).alias(name))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(cols)


def fingerprint_ids(ids: list[str] | np.ndarray) -> str:
    """sha256 over the ids joined by newlines: equal iff same ids in the same order."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, ids)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class GeneIndex:
    """A gene table sorted by systematic name, with fast id -> index lookup.

    >>> gi = GeneIndex.from_table(conform(pl.DataFrame({"id": ["YB", "YA"]})))
    >>> gi.ids.tolist(), gi.lookup(pl.Series(["YA", "nope", "YB"])).tolist()
    (['YA', 'YB'], [0, -1, 1])
    """

    table: pl.DataFrame
    source: str = "<memory>"
    _lookup: pl.DataFrame = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lk = self.table.select(pl.col("id").alias("key"),
                               pl.int_range(pl.len(), dtype=pl.Int32).alias("idx"))
        object.__setattr__(self, "_lookup", lk)

    @classmethod
    def from_table(cls, df: pl.DataFrame, source: str = "<memory>") -> GeneIndex:
        """Sort (genome genes by id, then added genes by id) and check ids are present and unique.

        Added genes go last so that a genome gene's index never depends on what is added.
        """
        df = conform(df)
        nulls = df["id"].is_null() | (df["id"].str.len_chars() == 0)
        if nulls.any():
            row = int(np.flatnonzero(nulls.to_numpy())[0])
            raise SourceFormatError(source, None, f"a systematic name for every gene (gene #{row + 1} has none)")
        dup = df.filter(pl.col("id").is_duplicated())["id"].unique().sort()
        if len(dup):
            raise SourceFormatError(source, None, "unique systematic names",
                                    f"{len(dup)} duplicated, e.g. {dup.head(5).to_list()}")
        return cls(df.with_columns(pl.col("added").fill_null(False)).sort("added", "id"), source)

    def __len__(self) -> int:
        return self.table.height

    @property
    def ids(self) -> np.ndarray:
        return self.table["id"].to_numpy()

    @property
    def added(self) -> np.ndarray:
        """Boolean [n]: heterologous genes appended to the genome's."""
        return self.table["added"].to_numpy().astype(bool)

    @property
    def fingerprint(self) -> str:
        return fingerprint_ids(self.table["id"].to_list())

    def lookup(self, ids: pl.Series) -> np.ndarray:
        """Indices (int32) of systematic names; -1 where a name is not in the index."""
        s = pl.DataFrame({"key": ids.cast(pl.String)})
        out = s.join(self._lookup, on="key", how="left", maintain_order="left")["idx"]
        return out.fill_null(-1).to_numpy().astype(np.int32, copy=False)

    @cached_property
    def name_map(self) -> pl.DataFrame:
        """(key, idx) for systematic names, standard names and aliases, upper-cased.

        A key that names two different genes (an ambiguous alias) is left out: a
        source that uses it cannot be mapped without guessing.
        """
        t = self.table.with_row_index("idx").with_columns(pl.col("idx").cast(pl.Int32))
        keys = pl.concat([
            t.select(pl.col("id").alias("key"), "idx", pl.lit(0).alias("rank")),
            t.select(pl.col("name").alias("key"), "idx", pl.lit(1).alias("rank")),
            t.select(pl.col("aliases").alias("key"), "idx", pl.lit(2).alias("rank")).explode("key"),
        ]).drop_nulls("key").with_columns(pl.col("key").str.to_uppercase())
        # systematic > standard > alias; among equal rank an ambiguous key is dropped
        best = keys.group_by("key").agg(pl.col("rank").min())
        keys = keys.join(best, on=["key", "rank"]).unique(["key", "idx"])
        return keys.filter(pl.col("key").is_unique()).select("key", "idx")

    def lookup_names(self, names: pl.Series) -> np.ndarray:
        """Like :meth:`lookup` but also accepts standard names and aliases (case-insensitive)."""
        s = pl.DataFrame({"key": names.cast(pl.String).str.to_uppercase()})
        out = s.join(self.name_map, on="key", how="left", maintain_order="left")["idx"]
        return out.fill_null(-1).to_numpy().astype(np.int32, copy=False)


# --- the committed gene table format (TSV, lists joined by ';') --------------------------

_LIST_COLS = [k for k, v in GENE_SCHEMA.items() if isinstance(v, pl.List)]


def write_gene_table_tsv(df: pl.DataFrame, path: str | Path, comment: str | None = None) -> None:
    """Write a gene table as TSV; list columns joined by ';'. ``comment`` lines start with '#'."""
    # an empty list is written as an empty field (null), never as a quoted ""
    df = conform(df).with_columns([
        pl.when(pl.col(c).list.len() > 0).then(pl.col(c).list.join(";")).alias(c) for c in _LIST_COLS])
    if not df["added"].any():  # a genome's table: the column would say nothing
        df = df.drop("added")
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        if comment:
            for line in comment.splitlines():
                fh.write(f"# {line}\n")
        df.write_csv(fh, separator="\t", null_value="")


def read_gene_table_tsv(path: str | Path) -> pl.DataFrame:
    """Read a gene table written by :func:`write_gene_table_tsv`."""
    path = Path(path)
    text = decode_utf8(path.read_bytes(), path).replace("\r\n", "\n")
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("#")]
    if not lines:
        raise SourceFormatError(path, None, "a gene table with header " + "\t".join(GENE_SCHEMA))
    header = lines[0].rstrip("\n").split("\t")
    if header[0] != "id":
        raise SourceFormatError(path, None, "a header line starting with 'id'", lines[0].strip())
    schema = {c: (pl.String if c in _LIST_COLS else GENE_SCHEMA.get(c, pl.String)) for c in header}
    try:
        df = pl.read_csv("".join(lines).encode(), separator="\t", schema=schema, quote_char=None)
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(path, None, "a tab-separated gene table with typed columns", str(e)) from e
    df = df.with_columns([
        pl.when(pl.col(c).is_null() | (pl.col(c) == "")).then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col(c).str.split(";")).alias(c)
        for c in _LIST_COLS if c in df.columns
    ])
    return conform(df)


def read_gene_list(path: str | Path) -> pl.DataFrame:
    """A plain list of systematic names, one per line (e.g. DANGO's ``yeast_string_genes.txt``)."""
    path = Path(path)
    text = decode_utf8(path.read_bytes(), path)  # strict: a mis-decoded id would silently match nothing
    ids = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not ids:
        raise SourceFormatError(path, None, "one systematic gene name per line", "an empty file")
    return conform(pl.DataFrame({"id": ids}))
