"""Shared machinery of the phenotype-table readers (Kuzmin 2018/2020, Costanzo 2016).

A reader describes its table by a :class:`TableFormat` (accepted header spellings of
each column) and hands a LazyFrame of the raw columns to :func:`observations`,
which returns the frame in :data:`pipeline.core.perturbations.OBSERVATION_SCHEMA`.

Contract:

- **Header check on open.** Columns are found by name with the source readers'
  :func:`~pipeline.sources._table.match_header` (case-insensitive, spaces
  collapsed; a spelling also matches a header that differs only in a trailing
  ``(...)``, e.g. ``(epsilon)`` vs ``(epsilon, tau)``). Missing columns are one
  :class:`~pipeline.core.errors.SourceFormatError` listing all of them and, when the
  header is that of another known table (:data:`KNOWN_TABLES`), naming it.
- **One validation pass, then lazy.** Before returning, one streaming pass groups the
  rows by query strain and by array strain (a few thousand groups): it parses every
  distinct strain (:func:`pipeline.core.perturbations.parse_strains`), checks the number
  of perturbed genes against ``Combined mutant type`` where the table has one,
  counts rows and marker removals, and forces the parse of every score column, so
  that a non-numeric score fails here. Only on that error path is the file scanned
  again to find the first bad row. The frame returned re-reads the file lazily:
  nothing of the table is held in memory by the reader. ``check_values=False``
  leaves the scores out of that pass (parsing them is 40% of it): a caller that
  collects the frame anyway, like the dataset stage, parses them once, and on a
  polars error calls the reader again with ``check_values=True`` for the message.
- **Values.** Score columns are float64; empty fields, ``NA``, ``N/A``, ``NaN``,
  ``nan`` and ``-`` are null (not measured). A value that is stored wrong is a *bad
  value* (:func:`bad_value`): any other spelling of NaN, ``inf``/``-inf``, a magnitude
  beyond float32 (``1e39``: the dataset stores float32), a P-value outside [0, 1], a
  negative standard deviation. ``on_bad_value="error"`` (default) raises naming the
  file, line, column and value of the first; ``"drop"`` drops those rows (before the
  strains are vetted) and counts them as ``dropped_bad_value``. Text tables: UTF-8
  (a byte that is not is an error naming its line and byte offset), no quoting,
  ``\n`` or ``\r\n`` line ends, plain or gzip (a truncated stream is an error naming
  the file); a row's fields beyond the header's are ignored (trailing tabs) and
  missing trailing fields are null. Blank lines are skipped but counted in the line
  numbers of errors.
- **Unparseable strains** (unknown allele kind, no allele suffix, empty id, a ``tm``
  query without a matching allele name, a gene count that disagrees with
  ``Combined mutant type``): ``on_unknown="error"`` raises naming the file, the line
  (sheet row for xlsx) and the strain; ``"skip"`` drops those rows and counts them.
- **Counts** go to the log and, when the caller passes a dict as ``stats``, are
  added to it: ``rows_read``, ``dropped_bad_value`` (rows), ``skipped_unparsed`` (rows),
  ``markers_removed`` (rows whose query lost a marker), ``rows`` (rows the frame yields).
"""

from __future__ import annotations

import codecs
import gzip
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import (
    OBSERVATION_SCHEMA,
    VALUE_COLUMNS,
    known_kinds_text,
    parse_strains,
    sorted_members,
    sorted_pair,
    sorted_upto3,
)
from pipeline.sources._table import match_header, missing_columns, normalise_header

log = logging.getLogger(__name__)

OnUnknown = Literal["error", "skip"]
OnBadValue = Literal["error", "drop"]
#: Cell values read as "not measured".
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "-"]
#: ``Combined mutant type`` value -> number of perturbed genes.
MUTANT_TYPES = {"digenic": 2, "trigenic": 3}
_STRAIN_KEYS = ("query_id", "query_allele", "array_id", "array_allele")
#: What a value column must hold, for messages (default: a number float32 holds, not NaN or infinite).
_VALUE_EXPECTED = {"interaction_p": "a P-value in [0, 1]", "fitness_std": "a finite standard deviation >= 0"}


def bad_value(key: str, col: pl.Expr | None = None) -> pl.Expr:
    """True where value column ``key`` (float64 or float32) holds a value that would be stored
    wrong: NaN, +-inf, one that is infinite as float32 (the dataset's dtype: ``1e39``), a
    P-value outside [0, 1], a negative deviation. Null (not measured) is not bad.

    >>> df = pl.DataFrame({"interaction_p": [0.5, 1.5, None, float("inf")]})
    >>> df.select(bad_value("interaction_p"))["interaction_p"].to_list()
    [False, True, False, True]
    """
    c = pl.col(key) if col is None else col
    bad = ~c.cast(pl.Float32).is_finite()  # one test for NaN, inf and float32 overflow (a no-op cast on float32)
    if key == "interaction_p":
        bad = bad | (c < 0) | (c > 1)
    elif key == "fitness_std":
        bad = bad | (c < 0)
    return bad.fill_null(False)


def any_bad_value(keys: Sequence[str]) -> pl.Expr:
    """True on rows where any of the value columns ``keys`` holds a bad value (:func:`bad_value`)."""
    return pl.any_horizontal(*[bad_value(k) for k in keys]) if keys else pl.lit(False)


def _fail_on_bad_value(key: str) -> pl.Expr:
    """Column ``key`` unchanged, but a bad value makes the collect fail inside polars (a strict
    cast of text to Int8): for frames whose values the validation pass did not parse; their
    caller reads again with ``check_values=True`` for the located error."""
    fail = pl.when(bad_value(key)).then(pl.lit(f"a bad value in {key}")).otherwise(pl.lit("0"))
    return (pl.col(key) + fail.cast(pl.Int8, strict=True)).alias(key)


def bad_value_error(where: Located, fmt: TableFormat, strings: pl.LazyFrame, row: int) -> SourceFormatError:
    """The error for data row ``row``, which holds a bad value: its first bad column, with the
    text as written (``strings``: the raw frame, value columns as text, and ``_row``)."""
    got = strings.filter(pl.col("_row") == row).collect()
    for k in (v for v in VALUE_COLUMNS if v in got.columns):
        text = got[k][0]
        if text is None:
            continue
        parsed = pl.DataFrame({k: [str(text)]}).select(pl.col(k).str.strip_chars().cast(pl.Float64, strict=False))
        if parsed.select(bad_value(k))[k][0]:
            expected = _VALUE_EXPECTED.get(k, "a finite number within float32's range (|x| < 3.4e38)")
            return where.error(row, f"{expected} in column {fmt.canonical(k)!r} "
                                    f"(--on-bad-value drop drops such rows and counts them)", text)
    raise AssertionError(f"{where.path}: row {row} was flagged but holds no bad value")  # pragma: no cover


@dataclass(frozen=True)
class TableFormat:
    """The columns of one published table: output key -> accepted header spellings (first = canonical)."""

    name: str  #: source tag written to ``source`` (kuzmin2018, costanzo2016, ...)
    title: str  #: human-readable, for messages
    columns: Mapping[str, Sequence[str]]
    optional: frozenset[str] = field(default_factory=frozenset)

    def canonical(self, key: str) -> str:
        return self.columns[key][0]


#: source tag -> (description, distinctive header columns): names the table a user handed to the wrong reader.
KNOWN_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "kuzmin2018": ("a Kuzmin et al. 2018 Data S1 table (read it with scan_kuzmin2018)",
                   ("Combined mutant type", "Adjusted genetic interaction score (epsilon or tau)",
                    "Combined mutant fitness", "Query single/double mutant fitness", "Array single mutant fitness")),
    "kuzmin2020": ("a Kuzmin et al. 2020 Table S1/S3 (read it with read_kuzmin2020)",
                   ("Combined mutant type", "Adjusted genetic interaction score (epsilon or tau)",
                    "Double/triple mutant fitness", "Query single/double mutant fitness",
                    "Array single mutant fitness")),
    "costanzo2016": ("a Costanzo et al. 2016 SGA table (read it with scan_costanzo2016)",
                     ("Arraytype/Temp", "Genetic interaction score (ε)", "Query single mutant fitness (SMF)",
                      "Array SMF", "Double mutant fitness")),
    "string": ("a STRING protein.links file", ("protein1", "protein2", "combined_score", "coexpression")),
    "biogrid": ("a BioGRID TAB3 file", ("#BioGRID Interaction ID", "Systematic Name Interactor A",
                                         "Experimental System")),
    "genes": ("a gene table", ("id", "name", "chromosome", "start", "end", "strand")),
}


def looks_like(header: Sequence[str], expected: str | None = None) -> str | None:
    """The known table a header resembles (2+ distinctive columns) better than the ``expected`` one, if any."""
    norm = {normalise_header(h) for h in header}
    scores = {tag: sum(normalise_header(c) in norm for c in cols) for tag, (_, cols) in KNOWN_TABLES.items()}
    own = scores.pop(expected, 0) if expected else 0
    tag = max(scores, key=lambda t: scores[t])
    return KNOWN_TABLES[tag][0] if scores[tag] >= 2 and scores[tag] > own else None


def header_error(path: str | Path, line: int | None, fmt: TableFormat, header: Sequence[str],
                 missing: Sequence[str]) -> SourceFormatError:
    """The error for a header without the ``missing`` keys of ``fmt``, naming the table it looks like."""
    other = looks_like(header, expected=fmt.name)
    hint = f"; this looks like {other}" if other else ""
    return SourceFormatError(path, line, missing_columns(fmt.columns, missing, f"a {fmt.title} header") + hint,
                             "\t".join(header))


@dataclass(frozen=True)
class Located:
    """Where rows come from: turns a 1-based data row into the line (or sheet row) of an error."""

    path: str
    offset: int  #: line of data row r = r + offset

    def error(self, row: int, expected: str, got: str | None) -> SourceFormatError:
        return SourceFormatError(self.path, row + self.offset, expected, got)


# --- plain / gzip text tables -----------------------------------------------------------

def head_lines(path: Path, n: int = 8) -> list[str]:
    """The first ``n`` lines of a plain or gzip text file, decoded leniently, without line ends."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    out: list[str] = []
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for raw in fh:
                out.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if len(out) >= n:
                    break
    except (OSError, EOFError) as e:  # corrupt gzip
        raise SourceFormatError(path, None, "a readable text or gzip file", str(e)) from e
    if out:
        out[0] = out[0].removeprefix("\ufeff")
    return out


def text_problem(path: Path) -> SourceFormatError | None:
    """Slow path (after a failed read): a truncated or corrupt gzip stream, or the first byte
    that is not UTF-8, as an error naming the file, the line and the byte offset; else None.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "t.tsv"
    >>> _ = p.write_bytes(b"a\\tb\\nx\\xff\\t1\\n")
    >>> str(text_problem(p)).endswith("line 2: expected UTF-8 text (byte 0xff at byte offset 5 is not)")
    True
    """
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    dec = codecs.getincrementaldecoder("utf-8")()
    done, line = 0, 1  # bytes decoded before this block, newlines so far + 1
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            while True:
                block = fh.read(1 << 22)
                pending = dec.getstate()[0]  # an incomplete character carried over (no newline in it)
                data = pending + block
                try:
                    dec.decode(block, final=not block)
                except UnicodeDecodeError as e:
                    at = done - len(pending) + e.start
                    where = "uncompressed byte offset" if gz else "byte offset"
                    return SourceFormatError(path, line + data.count(b"\n", 0, e.start),
                                             f"UTF-8 text (byte 0x{data[e.start]:02x} at {where} {at} is not)")
                if not block:
                    return None
                done += len(block)
                line += block.count(b"\n")
    except (OSError, EOFError) as e:  # gzip: truncated or corrupt
        return SourceFormatError(path, None, "a complete gzip stream", f"a truncated or corrupt one ({e})")


def pick_header(path: str | Path, fmt: TableFormat,
                candidates: Sequence[tuple[int, list[str]]]) -> tuple[int, list[str], dict[str, int]]:
    """The first candidate (line, fields) with every required column: (line, fields, key -> position).

    Otherwise the header error for the candidate that matched most columns (a title
    line may precede the header).
    """
    best: tuple[int, list[str], list[str]] | None = None
    most = -1
    for line, fields in candidates:
        found, missing = match_header(fields, fmt.columns, fmt.optional, bare=True)
        if not missing:
            return line, fields, found
        if len(found) > most:
            best, most = (line, fields, missing), len(found)
    if best is None:
        raise SourceFormatError(path, None, f"a {fmt.title} header line", "an empty file")
    raise header_error(path, best[0], fmt, best[1], best[2])


def find_header(path: Path, fmt: TableFormat, sep: str = "\t") -> tuple[int, list[str], dict[str, int]]:
    """(1-based line of the header, its fields, key -> position), among the first three non-blank lines."""
    lines = head_lines(path)
    return pick_header(path, fmt, [(i + 1, ln.split(sep)) for i, ln in enumerate(lines) if ln.strip()][:3])


#: Text columns that name a strain or a screen: few distinct values over millions of rows.
CODED_COLUMNS = (*_STRAIN_KEYS, "mutant_type", "screen")


def scan_text(path: Path, fmt: TableFormat, header_line: int, header: Sequence[str], found: Mapping[str, int],
              sep: str = "\t", strings: bool = False, categorical: bool = False) -> pl.LazyFrame:
    """Lazy scan of the mapped columns by key, plus ``_row`` (1-based data row).

    Value columns are float64 unless ``strings`` (the slow path that looks for the bad value);
    with ``categorical``, the :data:`CODED_COLUMNS` are read as polars Categoricals (one
    integer code per row, the strings held once).
    """
    names = [f"_c{i}" for i in range(len(header))]
    schema = {n: pl.String for n in names}
    for key, i in found.items():
        if key in VALUE_COLUMNS and not strings:
            schema[names[i]] = pl.Float64
        elif key in CODED_COLUMNS and categorical:
            schema[names[i]] = pl.Categorical
    lf = pl.scan_csv(path, separator=sep, has_header=False, skip_lines=header_line, schema=schema,
                     quote_char=None, null_values=NULL_VALUES, encoding="utf8", truncate_ragged_lines=True,
                     row_index_name="_row", row_index_offset=1, raise_if_empty=False)
    return lf.select("_row", *[pl.col(names[i]).alias(k) for k, i in found.items()])


def scan_table(path: str | Path, fmt: TableFormat, *, on_unknown: OnUnknown = "error",
               stats: MutableMapping[str, int] | None = None, screen: str | None = None,
               sep: str = "\t", check_values: bool = True, on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """A plain or gzip delimited table with a header (optionally after a title line) -> observations."""
    path = Path(path)
    header_line, header, found = find_header(path, fmt, sep)
    where = Located(str(path), header_line)

    def locate(exc: Exception) -> SourceFormatError | None:
        problem = text_problem(path)  # truncated gzip, not UTF-8
        if problem is not None:
            return problem
        raw = scan_text(path, fmt, header_line, header, found, sep, strings=True)
        hit = first_bad_value(raw, [k for k in found if k in VALUE_COLUMNS])
        if hit is None:
            return None
        row, key, text = hit
        return where.error(row, f"a number (or an empty field) in column {fmt.canonical(key)!r}", text)

    raw = scan_text(path, fmt, header_line, header, found, sep)
    return observations(raw, fmt, where, source_file=str(path), screen=screen, on_unknown=on_unknown,
                        stats=stats, on_parse_error=locate, check_values=check_values, on_bad_value=on_bad_value,
                        strings=lambda: scan_text(path, fmt, header_line, header, found, sep, strings=True))


def first_bad_value(raw: pl.LazyFrame, value_keys: Sequence[str]) -> tuple[int, str, str] | None:
    """Slow path: (row, column key, text) of the first value that is not a number, or None."""
    hits = []
    for k in value_keys:
        bad = raw.filter(pl.col(k).is_not_null() & pl.col(k).str.strip_chars().cast(pl.Float64, strict=False)
                         .is_null()).select("_row", pl.col(k)).head(1).collect(engine="streaming")
        if bad.height:
            hits.append((int(bad["_row"][0]), k, str(bad[k][0])))
    return min(hits) if hits else None


# --- the shared core --------------------------------------------------------------------

def observations(raw: pl.LazyFrame, fmt: TableFormat, where: Located, *, source_file: str,
                 screen: str | None = None, on_unknown: OnUnknown = "error",
                 stats: MutableMapping[str, int] | None = None,
                 on_parse_error: Callable[[Exception], SourceFormatError | None] | None = None,
                 check_values: bool = True, on_bad_value: OnBadValue = "error",
                 strings: Callable[[], pl.LazyFrame] | None = None) -> pl.LazyFrame:
    """The observations of one table, in OBSERVATION_SCHEMA, lazily; validates first (see module doc).

    ``raw`` has the columns of ``fmt`` by key (those found), value columns float64, and
    ``_row``. ``screen`` is a constant screen id when the table has no screen column.
    ``on_parse_error(exc)`` is called when the validation pass fails inside polars
    (a non-numeric value, a truncated gzip stream, a byte that is not UTF-8); it must
    return a SourceFormatError to raise (or None). ``strings()``: ``raw`` with the value
    columns as text, for the message naming a bad value (default: ``raw``, formatted).
    ``check_values=False``: the validation pass does not parse the value columns (with
    ``on_bad_value="error"``; dropping needs their counts): a non-numeric or bad value
    then fails the collect of the frame returned, inside polars.
    """
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
    if on_bad_value not in ("error", "drop"):
        raise ValueError(f"on_bad_value must be 'error' or 'drop', got {on_bad_value!r}")
    cols = set(raw.collect_schema().names())
    present = [v for v in VALUE_COLUMNS if v in cols]
    values = present if check_values or on_bad_value == "drop" else []
    has_mt = "mutant_type" in cols
    # blank lines come through as rows of nulls: they are not data
    raw = raw.filter(pl.any_horizontal(pl.col(k).is_not_null() for k in _STRAIN_KEYS))
    raw = raw.with_columns(any_bad_value(values).alias("_bad"))
    good = ~pl.col("_bad")
    mt = [pl.col("mutant_type").str.strip_chars().str.to_lowercase().alias("mutant_type")] if has_mt else []
    qkeys = ["query_id", "query_allele"] + (["mutant_type"] if has_mt else [])
    # rows with a bad value are not counted for their strains (dropped first, or an error);
    # parsing the values here makes a non-numeric score fail here
    q_plan = (raw.with_columns(*mt).group_by(qkeys)
              .agg(pl.len().alias("_n_all"), good.sum().alias("n"), pl.col("_row").filter(good).min().alias("first"),
                   pl.col("_row").filter(pl.col("_bad")).min().alias("_first_bad")))
    a_plan = (raw.group_by("array_id", "array_allele")
              .agg(good.sum().alias("n"), pl.col("_row").filter(good).min().alias("first")))
    try:
        # no common-subplan elimination: it would cache (materialise) the shared scan for both plans
        q, a = pl.collect_all([q_plan, a_plan], engine="streaming",
                              optimizations=pl.QueryOptFlags(comm_subplan_elim=False))
    except (pl.exceptions.PolarsError, OSError) as e:  # OSError: a truncated gzip stream
        err = on_parse_error(e) if on_parse_error else None
        if err is not None:
            raise err from e
        raise SourceFormatError(where.path, None, f"a readable {fmt.title}", str(e).split("\n")[0]) from e
    rows_read = int(q["_n_all"].sum())
    if rows_read == 0:
        raise SourceFormatError(where.path, None, f"data rows after the {fmt.title} header", "none")
    n_bad = rows_read - int(q["n"].sum())
    if n_bad and on_bad_value == "error":
        text = strings() if strings is not None else raw.select("_row", *[pl.col(v).cast(pl.String) for v in present])
        raise bad_value_error(where, fmt, text, int(q["_first_bad"].min()))  # type: ignore[arg-type]
    q, a = q.filter(pl.col("n") > 0).drop("_n_all", "_first_bad"), a.filter(pl.col("n") > 0)
    raw = raw.filter(good)

    q, a, q_bad, a_bad = vet_strains(q, a, fmt, has_mt, where, on_unknown)
    skipped = 0
    if q_bad.height or a_bad.height:
        skipped = int(q_bad["n"].sum()) + int(a_bad["n"].sum())
        if q_bad.height and a_bad.height:  # rows bad on both sides were counted twice
            both = (raw.with_columns(*mt).join(q_bad.lazy().select(qkeys), on=qkeys, how="semi", nulls_equal=True)
                    .join(a_bad.lazy().select("array_id", "array_allele"), on=["array_id", "array_allele"],
                          how="semi", nulls_equal=True).select(pl.len()).collect(engine="streaming").item())
            skipped -= int(both)
    q_ok, a_ok = q.filter(pl.col("q_problem").is_null()), a.filter(pl.col("a_problem").is_null())
    report_counts(where, q, q_bad, a_bad, rows_read, skipped, stats, n_bad)

    bad_ids = pl.concat([q_bad["query_id"], a_bad["array_id"]])
    out = _genes_and_types(raw.with_columns(*mt), q_ok, a_ok, qkeys, bad_ids).select(
        pl.lit(fmt.name).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.col("_row").cast(pl.Int64).alias("source_row"),
        (pl.col("screen").cast(pl.String) if "screen" in cols else pl.lit(screen, dtype=pl.String)).alias("screen"),
        pl.col("_genes").alias("genes"),
        pl.col("_types").alias("types"),
        *[((pl.col(v) if values else _fail_on_bad_value(v)) if v in cols else pl.lit(None, dtype=pl.Float64))
          .alias(v) for v in VALUE_COLUMNS],
        pl.col("_genes").list.len().cast(pl.UInt8).alias("n_perturbed"),
    )
    return out.select(list(OBSERVATION_SCHEMA)).cast(OBSERVATION_SCHEMA)  # type: ignore[arg-type]


def check_strains(q: pl.DataFrame, a: pl.DataFrame, fmt: TableFormat,
                  has_mt: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse the distinct query strains ``q`` (query_id, query_allele[, mutant_type]) and array
    strains ``a`` (array_id, array_allele): adds ``q_``/``a_`` :data:`STRAIN_SCHEMA` columns,
    ``q_problem``/``a_problem`` saying why a strain cannot be used (null when it can)."""
    q = q.with_columns(parse_strains(q["query_id"], q["query_allele"]).select(
        pl.all().name.prefix("q_")))
    a = a.with_columns(parse_strains(a["array_id"], a["array_allele"]).select(
        pl.all().name.prefix("a_")))
    # checks beyond a single strain's syntax
    q_problem = pl.col("q_problem")
    if has_mt:
        expected_q = pl.col("mutant_type").replace_strict(MUTANT_TYPES, default=None, return_dtype=pl.Int64) - 1
        q_problem = (pl.when(pl.col("q_problem").is_not_null()).then(pl.col("q_problem"))
                     .when(pl.col("mutant_type").is_null() | expected_q.is_null())
                     .then(pl.format("a {} of {}", pl.lit(fmt.canonical("mutant_type")),
                                     pl.lit(" or ".join(MUTANT_TYPES))))
                     .when(pl.col("q_genes").list.len() != expected_q)
                     .then(pl.format("a query of {} gene(s) besides markers for a {} row", expected_q,
                                     pl.col("mutant_type"))))
    q = q.with_columns(q_problem.alias("q_problem"))
    a = a.with_columns(pl.when(pl.col("a_problem").is_null() & (pl.col("a_genes").list.len() != 1))
                       .then(pl.lit("an array strain of one gene")).otherwise(pl.col("a_problem"))
                       .alias("a_problem"))
    return q, a


def vet_strains(q: pl.DataFrame, a: pl.DataFrame, fmt: TableFormat, has_mt: bool, where: Located,
                on_unknown: OnUnknown) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`check_strains`, then the strains that cannot be used: (q, a, q_bad, a_bad). With
    ``on_unknown="error"`` a bad strain raises, naming the first row (in file order) that has one."""
    q, a = check_strains(q, a, fmt, has_mt)
    q_bad, a_bad = q.filter(pl.col("q_problem").is_not_null()), a.filter(pl.col("a_problem").is_not_null())
    if on_unknown == "error" and (q_bad.height or a_bad.height):
        raise _strain_error(where, fmt, q_bad, a_bad)
    return q, a, q_bad, a_bad


def report_counts(where: Located, q: pl.DataFrame, q_bad: pl.DataFrame, a_bad: pl.DataFrame, rows_read: int,
                  skipped: int, stats: MutableMapping[str, int] | None, dropped_bad: int = 0) -> None:
    """Log a table's counts and add them to ``stats`` (rows_read, dropped_bad_value, skipped_unparsed,
    markers_removed, rows)."""
    markers = int(q.filter(pl.col("q_problem").is_null() & (pl.col("q_markers_removed") > 0))["n"].sum())
    if dropped_bad:
        log.warning("%s: dropped %d of %d rows with a bad value (non-finite, beyond float32, a P-value outside "
                    "[0, 1] or a negative deviation)", where.path, dropped_bad, rows_read)
    if skipped:
        log.warning("%s: skipped %d of %d rows naming a strain that does not parse (%d query, %d array strains)",
                    where.path, skipped, rows_read, q_bad.height, a_bad.height)
    log.info("%s: %d rows, %d with the marker removed from the query", where.path, rows_read, markers)
    if stats is not None:
        counts = {"rows_read": rows_read, "dropped_bad_value": dropped_bad, "skipped_unparsed": skipped,
                  "markers_removed": markers, "rows": rows_read - dropped_bad - skipped}
        for k, v in counts.items():
            stats[k] = stats.get(k, 0) + v


def _strain_error(where: Located, fmt: TableFormat, q_bad: pl.DataFrame, a_bad: pl.DataFrame) -> SourceFormatError:
    """The error for the first row (in file order) naming a strain that does not parse."""
    cands = []
    if q_bad.height:
        r = q_bad.sort("first").row(0, named=True)
        cands.append((r["first"], fmt.canonical("query_id"), r["query_id"], r["query_allele"], r["q_problem"]))
    if a_bad.height:
        r = a_bad.sort("first").row(0, named=True)
        cands.append((r["first"], fmt.canonical("array_id"), r["array_id"], r["array_allele"], r["a_problem"]))
    row, column, sid, allele, problem = min(cands, key=lambda c: c[0])
    n_bad = q_bad.height + a_bad.height
    more = f" ({n_bad} strains in all; on_unknown='skip' drops their rows and counts them)" if n_bad > 1 else \
        " (on_unknown='skip' drops such rows and counts them)"
    return where.error(int(row), f"a {column} SYSTEMATIC_<allele kind><number> with a known allele kind "
                                 f"({known_kinds_text()}) and an allele name that agrees{more}",
                       f"{sid} / {allele}: {problem}")


def _genes_and_types(raw: pl.LazyFrame, q_ok: pl.DataFrame, a_ok: pl.DataFrame, qkeys: list[str],
                     bad_ids: pl.Series) -> pl.LazyFrame:
    """``raw`` with ``_genes`` / ``_types`` (sorted), restricted to rows whose strains both parsed.

    Rows meet their strains through hash joins against the small per-strain tables
    (streaming, bounded memory; ``replace_strict`` is not streamed by polars 2.1 and
    holds whole columns). Fast paths, when a strain id alone fixes its genes and types
    (its allele name is the same on every row: all published tables): join on the id
    to scalar columns, up to two query genes and one array gene, ordered by
    comparisons (:func:`~pipeline.core.perturbations.sorted_pair` when every query is one
    gene, as in Costanzo; :func:`~pipeline.core.perturbations.sorted_upto3` for Kuzmin).
    Otherwise join on (id, allele[, mutant type]) to lists and sort the lists.
    """
    per_id = pl.concat([
        q_ok.select(pl.col("query_id").alias("id"), pl.col("q_genes").alias("genes"), pl.col("q_types").alias("types")),
        a_ok.select(pl.col("array_id").alias("id"), pl.col("a_genes").alias("genes"), pl.col("a_types").alias("types")),
    ]).unique(maintain_order=True)
    max_q = int(q_ok["q_genes"].list.len().max() or 1)
    # keyed by id only if no id is good on some rows and bad (skipped) on others
    by_id = per_id["id"].is_unique().all() and not per_id["id"].is_in(bad_ids.implode()).any()
    join = {"how": "inner", "maintain_order": "left"}  # inner: rows of skipped strains drop out
    if by_id and max_q <= 2:  # arrays are one gene (checked)
        def side(ok: pl.DataFrame, prefix: str, key: str, slots: dict[int, int]) -> pl.LazyFrame:
            cols = [pl.col(f"{prefix}_{what}").list.get(k, null_on_oob=True).alias(f"_{what[0]}{slot}")
                    for what in ("genes", "types") for k, slot in slots.items()]
            return ok.lazy().select(key, *cols).unique(key)

        out = raw.join(side(a_ok, "a", "array_id", {0: 2}), on="array_id", **join)
        if max_q == 1:
            out = out.join(side(q_ok, "q", "query_id", {0: 0}), on="query_id", **join)
            g, t = sorted_pair(pl.col("_g0"), pl.col("_t0"), pl.col("_g2"), pl.col("_t2"))
            return out.with_columns(g.alias("_genes"), t.alias("_types"))
        out = out.join(side(q_ok, "q", "query_id", {0: 0, 1: 1}), on="query_id", **join)
        return sorted_upto3(out)
    qtab = q_ok.lazy().select(*qkeys, pl.col("q_genes").alias("_qg"), pl.col("q_types").alias("_qt"))
    atab = a_ok.lazy().select("array_id", "array_allele", pl.col("a_genes").alias("_ag"),
                              pl.col("a_types").alias("_at"))
    out = (raw.join(qtab, on=qkeys, nulls_equal=True, **join)
           .join(atab, on=["array_id", "array_allele"], nulls_equal=True, **join))
    g, t = sorted_members(pl.concat_list("_qg", "_ag"), pl.concat_list("_qt", "_at"))
    return out.with_columns(g.alias("_genes"), t.alias("_types"))
