"""The shared core of readers whose rows each name one strain (or one gene pair) and its labels.

Essentiality, single-mutant fitness, SynLethDB pairs and condition fitness tables are
not query x array screens: each row names its perturbed genes directly. A reader of
such a table parses its own strain column into ``genes`` / ``types`` lists (and a
``problem`` text where it cannot) and hands :func:`strain_observations` a frame of

    _row       Int64        1-based data row (errors add the header offset of ``where``)
    genes      List(String) systematic names (any number, any order)
    types      List(UInt8)  type codes (:data:`pipeline.core.perturbations.CODES`), aligned
    problem    String       null if the strain parsed, else why not
    screen     String       condition / screen, or null
    <label>    String       each label's cell as written (null where empty)

which returns the observations (:data:`~pipeline.core.perturbations.OBSERVATION_SCHEMA`
plus one Float64 column per label that is not a value column there), with the contract
of :mod:`pipeline.sources.phenotypes.tables`: a label cell that is not a number is an
error naming file, line, column and text; a bad value (non-finite, beyond float32) is an
error or, with ``on_bad_value="drop"``, its row is dropped and counted; a strain that
does not parse is an error or (``on_unknown="skip"``) skipped and counted. Counts are
added to ``stats`` as the other readers do (``rows_read``, ``dropped_bad_value``,
``skipped_unparsed``, ``markers_removed`` (0), ``rows``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import OBSERVATION_SCHEMA, VALUE_COLUMNS, sorted_members
from pipeline.sources.phenotypes.tables import NULL_VALUES, Located, OnBadValue, OnUnknown, bad_value

log = logging.getLogger(__name__)


def clean_text(col: str) -> pl.Expr:
    """A text cell stripped, with the null spellings (:data:`NULL_VALUES`) as null."""
    c = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(c.is_in(NULL_VALUES)).then(None).otherwise(c).alias(col)


def strain_observations(df: pl.DataFrame, name: str, where: Located, labels: Mapping[str, str], *,
                        source_file: str, strain_column: str, strain_expected: str,
                        on_unknown: OnUnknown = "error", on_bad_value: OnBadValue = "error",
                        stats: MutableMapping[str, int] | None = None) -> pl.LazyFrame:
    """Observations of one table (see the module doc). ``labels``: label key -> the column's
    name as released (for messages); ``strain_column`` / ``strain_expected``: what an error
    about an unparseable strain names and expects."""
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
    if on_bad_value not in ("error", "drop"):
        raise ValueError(f"on_bad_value must be 'error' or 'drop', got {on_bad_value!r}")
    rows_read = df.height
    if rows_read == 0:
        raise SourceFormatError(where.path, None, "data rows after the header", "none")
    text = df.select("_row", *[clean_text(k) for k in labels])
    parsed = text.with_columns(pl.col(k).cast(pl.Float64, strict=False) for k in labels)
    for k, col in labels.items():  # a cell that is not a number: always an error (the table is not this format)
        wrong = parsed[k].is_null() & text[k].is_not_null()
        if wrong.any():
            i = int(wrong.arg_max())
            raise where.error(int(text["_row"][i]), f"a number (or an empty cell) in column {col!r}", text[k][i])
    bad = parsed.select(pl.any_horizontal(*[bad_value(k) for k in labels]) if labels else pl.lit(False))
    bad = bad.to_series()
    n_bad = int(bad.sum())
    if n_bad and on_bad_value == "error":
        i = int(bad.arg_max())
        k = next(k for k in labels if parsed.select(bad_value(k))[k][i])
        raise where.error(int(text["_row"][i]), f"a finite number within float32's range (|x| < 3.4e38) in column "
                                                f"{labels[k]!r} (--on-bad-value drop drops such rows and counts them)",
                          text[k][i])
    df = df.drop(*labels).hstack(parsed.drop("_row"))
    if n_bad:
        df = df.filter(~bad)
    problem = df["problem"].is_not_null()
    skipped = int(problem.sum())
    if skipped and on_unknown == "error":
        i = int(problem.arg_max())
        more = (f" ({skipped} rows in all; on_unknown='skip' drops them and counts them)" if skipped > 1
                else " (on_unknown='skip' drops such rows and counts them)")
        raise where.error(int(df["_row"][i]), f"{strain_expected} in column {strain_column!r}{more}",
                          df["problem"][i])
    if skipped:
        log.warning("%s: skipped %d of %d rows naming a strain that does not parse", where.path, skipped, rows_read)
        df = df.filter(~problem)
    if n_bad:
        log.warning("%s: dropped %d of %d rows with a bad value (non-finite or beyond float32)", where.path, n_bad,
                    rows_read)
    log.info("%s: %d rows read, %d kept", where.path, rows_read, df.height)
    if stats is not None:
        for k, v in {"rows_read": rows_read, "dropped_bad_value": n_bad, "skipped_unparsed": skipped,
                     "markers_removed": 0, "rows": df.height}.items():
            stats[k] = stats.get(k, 0) + v
    g, t = sorted_members(pl.col("genes"), pl.col("types"))
    extra = [k for k in labels if k not in VALUE_COLUMNS]
    out = df.lazy().with_columns(g.alias("genes"), t.alias("types")).select(
        pl.lit(name).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.col("_row").cast(pl.Int64).alias("source_row"),
        pl.col("screen").cast(pl.String),
        "genes", "types",
        *[(pl.col(v) if v in labels else pl.lit(None, dtype=pl.Float64)).alias(v) for v in VALUE_COLUMNS],
        pl.col("genes").list.len().cast(pl.UInt8).alias("n_perturbed"),
        *[pl.col(k).cast(pl.Float64) for k in extra],
    )
    return out.cast(OBSERVATION_SCHEMA)  # type: ignore[arg-type]


def read_delimited(path: str, sep: str, header_row: int = 0, skip_after_header: int = 0) -> pl.DataFrame:
    """Every cell of a delimited text table as text (header names stripped), plus ``_row``
    (1-based data row). UTF-8, no quoting unless ``sep`` is a comma (CSV quoting)."""
    from pipeline.sources.phenotypes.tables import text_problem

    try:
        df = pl.read_csv(path, separator=sep, infer_schema=False, quote_char='"' if sep == "," else None,
                         skip_rows=header_row, skip_rows_after_header=skip_after_header,
                         truncate_ragged_lines=True)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise (text_problem(path) or SourceFormatError(path, None, "a readable delimited text table",
                                                       str(e).split("\n")[0])) from e
    df = df.rename({c: c.strip() for c in df.columns})
    return df.with_row_index("_row", offset=1).with_columns(pl.col("_row").cast(pl.Int64))


def read_sheet(path: str, sheet: str | int = 0, header_row: int | None = 0) -> pl.DataFrame:
    """One sheet of a workbook (.xlsx, .xls) as text cells, header names stripped, plus ``_row``
    (1-based data row); an unreadable workbook or a missing sheet is a SourceFormatError."""
    import fastexcel  # noqa: PLC0415 - only the workbook readers need it

    try:
        book = fastexcel.read_excel(str(path))
        if isinstance(sheet, str) and sheet not in book.sheet_names:
            raise SourceFormatError(path, None, f"a sheet named {sheet!r}", ", ".join(map(repr, book.sheet_names)))
        df = book.load_sheet(sheet, header_row=header_row, dtypes="string").to_polars()
    except FileNotFoundError:
        raise
    except SourceFormatError:
        raise
    except Exception as e:  # fastexcel raises its own error classes for anything unreadable
        raise SourceFormatError(path, None, "a readable .xlsx/.xls workbook", f"{type(e).__name__}: {e}") from e
    df = df.rename({c: str(c).strip() for c in df.columns})
    return df.with_row_index("_row", offset=1).with_columns(pl.col("_row").cast(pl.Int64))


def require_columns(path: str, line: int | None, header: list[str], wanted: Mapping[str, tuple[str, ...]],
                    title: str) -> dict[str, str]:
    """key -> the header's name for each wanted column (spellings compared case-insensitively,
    spaces collapsed); one SourceFormatError listing every missing one."""
    norm = {" ".join(h.lower().split()): h for h in header}
    found, missing = {}, []
    for key, spellings in wanted.items():
        hit = next((norm[s] for s in (" ".join(x.lower().split()) for x in spellings) if s in norm), None)
        if hit is None:
            missing.append(spellings[0])
        else:
            found[key] = hit
    if missing:
        raise SourceFormatError(path, line, f"a {title} header with column(s) {', '.join(map(repr, missing))}",
                                "\t".join(header))
    return found


def read_each(read: Callable[..., pl.LazyFrame], paths: list[Path], on_unknown: str, stats: dict,
              check_values: bool = True, on_bad_value: str = "error", *, takes_check_values: bool = False,
              **fixed: Any) -> pl.LazyFrame:
    """The dataset reader (:class:`~pipeline.sources.phenotypes.spec.PhenotypeDataset` ``reader``) of a
    one-table-per-file reader: ``read(path, **fixed, on_unknown=, stats=, on_bad_value=)`` (and
    ``check_values=`` when ``takes_check_values``) per file, concatenated. Bind ``read`` (and ``fixed``)
    with ``functools.partial``: ``partial(read_each, read_essentiality)``."""
    kw = {**fixed, "on_unknown": on_unknown, "stats": stats, "on_bad_value": on_bad_value}
    if takes_check_values:
        kw["check_values"] = check_values
    return pl.concat([read(p, **kw) for p in paths], how="vertical")

