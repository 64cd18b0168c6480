"""Gene features: sequence- and position-derived matrices, external embeddings, added genes.

Contract (pure functions over numpy/polars; every matrix is float32, one row per
gene in the order given, NaN where a value is unknown):

- :func:`sequence_features` -> 87 columns from each gene's coding sequence
  (:data:`SEQUENCE_FEATURE_NAMES`): ``log10_length_bp``, ``gc_content``, ``gc3``,
  64 ``codon_XYZ`` relative frequencies (codons in ACGT order, ``AAA`` first) and
  20 ``aa_X`` amino-acid frequencies (``ACDEFGHIKLMNPQRSTVWY``) of the translation
  with the standard genetic code, stop codons excluded. Codons are read in frame
  from the first base; a trailing partial codon and any codon with a non-ACGT
  letter are left out of the codon, GC3 and amino-acid columns. A gene without a
  sequence is a NaN row.
- :func:`position_features` -> 19 columns (:data:`POSITION_FEATURE_NAMES`):
  chromosome one-hot ``chr_I``..``chr_XVI``, ``chr_Mito`` (all 0 when unknown),
  ``strand`` (+1, -1, 0 unknown) and ``relative_position``: the gene's midpoint
  divided by the largest gene end on its chromosome in the table (a proxy for the
  chromosome length that needs no other input; NaN when unknown).
- :func:`import_embeddings` -> an external matrix aligned to the gene index (NaN
  rows for genes the file lacks) and an :class:`EmbeddingReport`.
- :func:`added_genes` / :func:`append_added`: heterologous genes appended after
  the genome's genes with ``added = True``.

The standard code is used for every gene, mitochondrial ones (``Q0...``) included,
although they use NCBI table 3; with 28 such genes in ~6,600 this is accepted here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import CHROMOSOMES, GENE_SCHEMA, GeneIndex, conform
from pipeline.core.ragged import indptr_from_lengths, owner, segment_sum
from pipeline.sources._io import read_source_bytes
from pipeline.sources._table import match_header, read_table

log = logging.getLogger(__name__)

BASES = "ACGT"
#: Codons in index order: index = 16*b1 + 4*b2 + b3 with A=0, C=1, G=2, T=3.
CODONS: list[str] = [a + b + c for a in BASES for b in BASES for c in BASES]
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# NCBI translation table 1, written in the usual TCAG order of the first, second, third base.
_TCAG_CODE = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
#: Codon -> one-letter amino acid, ``*`` for stop (standard genetic code).
GENETIC_CODE: dict[str, str] = {a + b + c: _TCAG_CODE[16 * "TCAG".index(a) + 4 * "TCAG".index(b) + "TCAG".index(c)]
                                for a in BASES for b in BASES for c in BASES}

SEQUENCE_FEATURE_NAMES: list[str] = (["log10_length_bp", "gc_content", "gc3"] + [f"codon_{c}" for c in CODONS]
                                     + [f"aa_{a}" for a in AMINO_ACIDS])
POSITION_FEATURE_NAMES: list[str] = [f"chr_{c}" for c in CHROMOSOMES] + ["strand", "relative_position"]

# byte -> base code; 4 for anything that is not A/C/G/T (N, IUPAC ambiguity codes)
_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(BASES):
    _BASE_CODE[ord(_b)] = _BASE_CODE[ord(_b.lower())] = _i
# codon index -> amino-acid column (one-hot); stop codons are all-zero rows
_CODON_TO_AA = np.zeros((64, len(AMINO_ACIDS)), dtype=np.float64)
for _k, _c in enumerate(CODONS):
    if GENETIC_CODE[_c] != "*":
        _CODON_TO_AA[_k, AMINO_ACIDS.index(GENETIC_CODE[_c])] = 1.0
_GC_THIRD = np.array([c[2] in "GC" for c in CODONS])


def translate(seq: str) -> str:
    """Standard-code translation of the complete codons (``X`` for a codon with a non-ACGT letter).

    >>> translate("ATGGCCTAAG")
    'MA*'
    """
    s = seq.upper()
    return "".join(GENETIC_CODE.get(s[i:i + 3], "X") for i in range(0, len(s) - 2, 3))


def _aligned(ids: Sequence[str], sequences: Mapping[str, str | None] | Sequence[str | None]) -> list[str | None]:
    if isinstance(sequences, Mapping):
        return [sequences.get(i) for i in ids]
    seqs = list(sequences)
    if len(seqs) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(seqs)} sequences")
    return seqs


def _encode(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All sequences as one uint8 array of base codes (A0 C1 G2 T3, other 4) and int64 bounds [n+1]."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    bounds = indptr_from_lengths(lengths)
    codes = _BASE_CODE[np.frombuffer("".join(sequences).encode("ascii", "replace"), dtype=np.uint8)]
    return codes, bounds


def _codon_counts(codes: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    n = len(bounds) - 1
    cod_ptr = indptr_from_lengths(np.diff(bounds) // 3)
    gene = owner(cod_ptr)
    # first base of codon j (global numbering) of gene g: bounds[g] + 3 * (j - cod_ptr[g])
    first = bounds[gene] + 3 * (np.arange(cod_ptr[-1], dtype=np.int64) - cod_ptr[gene])
    b1, b2, b3 = codes[first], codes[first + 1], codes[first + 2]
    ok = (b1 < 4) & (b2 < 4) & (b3 < 4)
    idx = 16 * b1[ok].astype(np.int64) + 4 * b2[ok] + b3[ok]
    return np.bincount(gene[ok] * 64 + idx, minlength=n * 64).reshape(n, 64)


def codon_counts(sequences: Sequence[str]) -> np.ndarray:
    """``int64 [n, 64]`` in-frame codon counts (columns as :data:`CODONS`), vectorised over all genes.

    >>> codon_counts(["ATGATGTAA", "AANCC"])[:, [CODONS.index("ATG"), CODONS.index("TAA")]].tolist()
    [[2, 1], [0, 0]]
    """
    return _codon_counts(*_encode(sequences))


def sequence_features(ids: Sequence[str],
                      sequences: Mapping[str, str | None] | Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """``(float32 [n, 87], names)``: see the module docstring. ``sequences`` maps id -> sequence
    or is aligned with ``ids``; a missing, null or empty sequence gives a NaN row."""
    seqs = _aligned(ids, sequences)
    out = np.full((len(seqs), len(SEQUENCE_FEATURE_NAMES)), np.nan, dtype=np.float32)
    have = np.array([bool(s) for s in seqs], dtype=bool)
    rows = np.flatnonzero(have)
    if not len(rows):
        return out, list(SEQUENCE_FEATURE_NAMES)
    codes, bounds = _encode([seqs[i] for i in rows])

    acgt = segment_sum(codes < 4, bounds)
    gc = segment_sum((codes == 1) | (codes == 2), bounds)
    counts = _codon_counts(codes, bounds).astype(np.float64)
    n_cod = counts.sum(axis=1)
    aa = counts @ _CODON_TO_AA
    n_aa = aa.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN: no complete codon, no ACGT base
        block = np.column_stack([
            np.log10(np.diff(bounds).astype(np.float64)),
            gc / acgt,
            counts[:, _GC_THIRD].sum(axis=1) / n_cod,
            counts / n_cod[:, None],
            aa / n_aa[:, None],
        ])
    out[rows] = block
    return out, list(SEQUENCE_FEATURE_NAMES)


def position_features(gene_table: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """``(float32 [n, 19], names)`` from a gene table's ``chromosome``, ``strand``, ``start``, ``end``."""
    t = gene_table.select("chromosome", "strand", "start", "end")
    n = t.height
    code = t["chromosome"].replace_strict({c: i for i, c in enumerate(CHROMOSOMES)}, default=-1,
                                          return_dtype=pl.Int32).fill_null(-1).to_numpy()
    onehot = np.zeros((n, len(CHROMOSOMES)), dtype=np.float32)
    known = code >= 0
    onehot[np.flatnonzero(known), code[known]] = 1.0
    strand = t["strand"].replace_strict({"+": 1.0, "-": -1.0}, default=0.0,
                                        return_dtype=pl.Float32).fill_null(0.0).to_numpy()
    chrom_len = t.group_by("chromosome").agg(pl.col("end").max().alias("chrom_len"))
    rel = (t.join(chrom_len, on="chromosome", how="left", maintain_order="left")
           .select(((pl.col("start") + pl.col("end")) / 2 / pl.col("chrom_len")).fill_nan(None))
           .to_series().fill_null(float("nan")).to_numpy())
    rel = np.where(known, rel, np.nan)
    return np.column_stack([onehot, strand, rel]).astype(np.float32), list(POSITION_FEATURE_NAMES)


def gene_features(gene_table: pl.DataFrame,
                  sequences: Mapping[str, str | None] | Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Position then sequence features of every gene of ``gene_table`` (its row order): ``[n, 106]``."""
    pos, pos_names = position_features(gene_table)
    seq, seq_names = sequence_features(gene_table["id"].to_list(), sequences)
    return np.hstack([pos, seq]), pos_names + seq_names


# --- external embeddings ----------------------------------------------------------------

#: Accepted names of the key column (case-insensitive); otherwise the first column is the key.
ID_COLUMNS = ("id", "gene", "systematic_name")
# STRING-style protein ids ("4932.YAL001C") name the same genes
_TAXON_PREFIX = r"^4932\."
_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "None"]


@dataclass(frozen=True)
class EmbeddingReport:
    """How an embedding table matched the gene index."""

    path: str
    columns: list[str]  #: the numeric columns, in matrix order
    n_genes: int
    n_rows: int  #: data rows in the file
    missing: list[str] = field(repr=False)  #: index genes absent from the file (NaN rows), index order
    unknown: list[str] = field(repr=False)  #: file ids not in the index (ignored), file order

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    @property
    def n_unknown(self) -> int:
        return len(self.unknown)

    def summary(self) -> str:
        return (f"{self.path}: {len(self.columns)} columns; {self.n_genes - self.n_missing:,} of {self.n_genes:,} "
                f"genes matched, {self.n_missing:,} missing (NaN rows, e.g. {self.missing[:5]}), "
                f"{self.n_unknown:,} ids not in the gene index (e.g. {self.unknown[:5]})")


def _read_embedding_table(path: Path) -> tuple[pl.DataFrame, int | None]:
    """The table, and the 1-based line of its header (None for Parquet: rows have no lines)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            return pl.read_parquet(path), None
        except (pl.exceptions.PolarsError, OSError) as e:
            raise SourceFormatError(path, None, "a Parquet file", str(e)) from e
    data = read_source_bytes(path, desc=f"embeddings {path.name}").removeprefix(b"\xef\xbb\xbf")
    lines = data.split(b"\n", 64)
    header_at = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if header_at is None:
        raise SourceFormatError(path, None, "a table with a header line", "an empty file")
    header = lines[header_at]
    stem = name.removesuffix(".gz").removesuffix(".zip")
    sep = "," if stem.endswith(".csv") or (b"\t" not in header and b"," in header) else "\t"
    try:
        df = pl.read_csv(data, separator=sep, infer_schema_length=None, null_values=_NULLS, quote_char='"',
                         skip_rows=header_at)
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(path, None, f"a {'comma' if sep == ',' else 'tab'}-separated table "
                                "with the same number of fields on every line", str(e)) from e
    return df, header_at + 1


def import_embeddings(path: str | Path,
                      gene_index: GeneIndex | Sequence[str] | np.ndarray) -> tuple[np.ndarray, EmbeddingReport]:
    """An external per-gene matrix aligned to ``gene_index``: ``(float32 [n_genes, width], report)``.

    The file is CSV, TSV (plain, ``.gz`` or one-file ``.zip``) or Parquet with a header.
    The key column is the first one named ``id``, ``gene`` or ``systematic_name``
    (case-insensitive), else the first column; a ``4932.`` prefix is removed. Every
    other column must be numeric: a value that is not a number (or is infinite) is a
    :class:`SourceFormatError` naming its line (its row for Parquet) and column;
    empty/``NA`` cells are NaN. Duplicate keys are an error. Genes the file lacks are
    NaN rows; keys outside the index are counted, not used.
    """
    path = Path(path)
    ids = [str(i) for i in (gene_index.ids if isinstance(gene_index, GeneIndex) else gene_index)]
    df, header_line = _read_embedding_table(path)
    # blank lines of a text file read as all-null rows: drop them, keeping each row's position
    df = df.with_row_index("__row").filter(~pl.all_horizontal(pl.exclude("__row").is_null()))
    file_row = df["__row"].to_numpy()
    df = df.drop("__row")

    def error(row: int, expected: str, got: str) -> SourceFormatError:
        """The error for data row ``row`` of ``df``: its line, or for Parquet its row in the message."""
        r = int(file_row[row])
        if header_line is None:
            return SourceFormatError(path, None, expected, f"row {r + 1}: {got}")
        return SourceFormatError(path, header_line + 1 + r, expected, got)

    found, _ = match_header(df.columns, {"key": ID_COLUMNS}, optional={"key"})
    key = df.columns[found["key"]] if found else (df.columns[0] if df.columns else None)
    values = [c for c in df.columns if c != key]
    if key is None or not values:
        raise SourceFormatError(path, header_line, "a key column and at least one numeric column",
                                ", ".join(df.columns))
    keys = df[key].cast(pl.String).str.strip_chars().str.replace(_TAXON_PREFIX, "")
    if (bad := keys.is_null() | (keys == "")).any():
        raise error(int(np.flatnonzero(bad.to_numpy())[0]), f"a gene id in column {key!r}", "an empty value")
    if (again := ~keys.is_first_distinct()).any():
        row = int(np.flatnonzero(again.to_numpy())[0])
        first = int(np.flatnonzero((keys == keys[row]).to_numpy())[0])
        raise error(row, f"each gene id once (first {keys[row]} in data row {int(file_row[first]) + 1})",
                    keys[row])
    cols = []
    for c in values:
        v = df[c]
        if v.dtype == pl.String:  # inference met a non-number somewhere: find it
            f = v.str.strip_chars().cast(pl.Float64, strict=False)
            bad = (f.is_null() & v.is_not_null()).to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise error(row, f"a number in column {c!r}", str(v[row]))
            v = f
        if not v.dtype.is_numeric():
            raise SourceFormatError(path, header_line, f"a numeric column {c!r}", str(v.dtype))
        cols.append(v.cast(pl.Float64).fill_null(float("nan")).to_numpy())
    with np.errstate(over="ignore"):  # beyond float32: inf, reported just below
        mat = np.column_stack(cols).astype(np.float32)
    if (inf := np.isinf(mat)).any():
        row, col = map(int, np.argwhere(inf)[0])
        raise error(row, f"a finite float32 in column {values[col]!r}", str(df[values[col]][row]))
    pos = {k: i for i, k in enumerate(keys.to_list())}
    src = np.array([pos.get(i, -1) for i in ids], dtype=np.int64)
    out = np.full((len(ids), len(values)), np.nan, dtype=np.float32)
    out[src >= 0] = mat[src[src >= 0]]
    index = set(ids)
    report = EmbeddingReport(str(path), values, len(ids), df.height,
                             missing=[i for i, s in zip(ids, src) if s < 0],
                             unknown=[k for k in pos if k not in index])
    (log.warning if report.n_missing or report.n_unknown else log.info)("embeddings %s", report.summary())
    return out, report


# --- added (heterologous) genes -----------------------------------------------------------

ADDED_COLUMNS = {"id": ["id", "systematic_name"], "name": ["name", "standard_name"],
                 "sequence": ["sequence", "cds"]}
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$")
_NUCLEOTIDES = re.compile(r"^[ACGTUNRYKMSWBDHVacgtunrykmswbdhv]*$")


def added_genes(path: str | Path, genome: GeneIndex | pl.DataFrame | None = None) -> pl.DataFrame:
    """Read a table of heterologous genes: ``(id, name, sequence, added=True)`` in file order.

    Format: tab-separated (plain, ``.gz`` or one-file ``.zip``), lines starting with
    ``#`` before the header are comments, header names matched case-insensitively::

        # heterologous genes of strain collection X
        id          name   sequence
        GFP_yEGFP   yEGFP  ATGTCTAAAGGTGAAGAATTATTCACTGGTGTTGTCCC...
        KanMX       kanR   ATGGGTAAGGAAAAGACTCACGTTTCGAGGCCGCGATT...

    ``id`` (required): letters, digits and ``_ . : + -``, unique; ``name``
    (optional) a display name; ``sequence`` (optional) the coding sequence, IUPAC
    nucleotides, upper-cased on reading (``U`` as ``T``). Empty cells are null. Other
    columns are ignored: features other than the sequence's come as an embedding
    table keyed by the same ids (:func:`import_embeddings`). With ``genome``, ids
    that collide with it are an error naming the line (see :func:`append_added`).
    """
    path = Path(path)
    t = read_table(path, ADDED_COLUMNS, optional={"name", "sequence"}, comment_prefixes=("#",),
                   desc=f"added genes {path.name}")
    df = t.df.with_columns(pl.col(c).str.strip_chars() for c in t.df.columns)
    for c in ("name", "sequence"):
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    df = df.select("id", pl.col("name").replace("", None), pl.col("sequence").replace("", None))
    seen: dict[str, int] = {}
    for row, (gid, seq) in enumerate(zip(df["id"].to_list(), df["sequence"].to_list())):
        if not _ID_OK.match(gid):
            raise t.error(row, "an id of letters, digits and _ . : + - (column 'id')", gid)
        if gid in seen:
            raise t.error(row, f"unique ids (first on line {t.line_of(seen[gid])})", gid)
        seen[gid] = row
        if seq is not None and not _NUCLEOTIDES.match(seq):
            bad = next(ch for ch in seq if not _NUCLEOTIDES.match(ch))
            raise t.error(row, f"a nucleotide sequence for {gid} (IUPAC letters)", f"character {bad!r}")
    df = df.with_columns(pl.col("sequence").str.to_uppercase().str.replace_all("U", "T"),
                         pl.lit(True).alias("added"))
    if genome is not None:
        clash = _collisions(genome, df["id"])
        if clash:
            gid, what = clash[0]
            raise t.error(seen[gid], "added gene ids distinct from the genome's ids, standard names and aliases",
                          f"{gid} ({what}; {len(clash)} collisions in all)")
    return df


def _collisions(genome: GeneIndex | pl.DataFrame, ids: pl.Series) -> list[tuple[str, str]]:
    """``(added id, what it collides with)``, case-insensitive: an added id equal to a genome
    standard name or alias would capture that name in every source that uses it."""
    t = genome.table if isinstance(genome, GeneIndex) else conform(genome)
    taken: dict[str, str] = {}
    for a in t["aliases"].explode().drop_nulls().to_list():
        taken[a.upper()] = f"an alias of a genome gene ({a})"
    for n in t["name"].drop_nulls().to_list():
        taken[n.upper()] = f"the standard name of a genome gene ({n})"
    for i in t["id"].to_list():
        taken[i.upper()] = f"a genome systematic name ({i})"
    return [(g, taken[g.upper()]) for g in ids.to_list() if g.upper() in taken]


def append_added(gene_table: pl.DataFrame, added: pl.DataFrame,
                 source: str = "added genes") -> pl.DataFrame:
    """The gene table with the added genes after it and a boolean ``added`` column.

    Genome genes come first, sorted by systematic name, then the added genes sorted
    by id: a genome gene's index is the same with or without added genes (stores,
    masks and models computed over the genome alone stay valid) and the same set of
    added genes always gets the same indices. Added genes carry only ``id`` and
    ``name`` (no chromosome, coordinates, GO terms); ids that collide with the
    genome's ids, standard names or aliases are a :class:`SourceFormatError`
    naming them. Rows of ``gene_table`` already flagged ``added`` stay added.
    """
    prior = (gene_table["added"].fill_null(False) if "added" in gene_table.columns
             else pl.Series("added", [False] * gene_table.height))
    genome = conform(gene_table.filter(~prior)).sort("id")
    old = conform(gene_table.filter(prior))
    clash = _collisions(pl.concat([genome, old]), added["id"])
    if clash:
        raise SourceFormatError(source, None, "added gene ids distinct from the genome's ids, standard names "
                                "and aliases", "; ".join(f"{g} ({w})" for g, w in clash[:5])
                                + (f"; {len(clash)} in all" if len(clash) > 5 else ""))
    if (dup := added["id"].is_duplicated()).any():
        raise SourceFormatError(source, None, "unique added gene ids", str(added["id"].filter(dup)[0]))
    new = conform(added.select("id", "name"))
    extra = pl.concat([old, new]).sort("id")
    return pl.concat([genome.with_columns(pl.lit(False).alias("added")),
                      extra.with_columns(pl.lit(True).alias("added"))]).select(list(GENE_SCHEMA))
