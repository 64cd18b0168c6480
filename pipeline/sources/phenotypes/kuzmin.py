"""Kuzmin et al. digenic and trigenic interaction tables -> phenotype observations.

- **Kuzmin 2018** (Science 360:eaao1729), Data S1, ``aao1729_data_s1.tsv``: tab-separated,
  one header line, 501,510 rows (410,399 digenic, 91,111 trigenic). :func:`scan_kuzmin2018`
  (plain or gzip).
- **Kuzmin 2020** (Science 368:eaaz5667), Tables S1 and S3 (``aaz5667-Table-S1.xlsx``,
  ``-S3.xlsx``; 934,595 rows together): one title row ("Table S1. Raw genetic
  interaction dataset ...") above the header, first sheet. :func:`read_kuzmin2020`,
  one workbook per call (fastexcel/calamine; the sheet is read into memory, which
  at ~800 k rows is a few hundred MB).

Columns (header spellings accepted, case-insensitive; 2020 writes ``Double/triple``
where 2018 writes ``Combined``)::

    Query strain ID | Query allele name | Array strain ID | Array allele name |
    Combined mutant type (digenic / trigenic) |
    Raw genetic interaction score (epsilon)              -> interaction_raw (optional column)
    Adjusted genetic interaction score (epsilon or tau)  -> interaction
    P-value                                              -> interaction_p
    Query single/double mutant fitness                   -> smf_query
    Array single mutant fitness                          -> smf_array
    Combined mutant fitness | Double/triple mutant fitness                     -> fitness
    Combined mutant fitness standard deviation | Double/triple ... deviation   -> fitness_std
    Screen ID (2020, optional)                           -> screen

Query strains are ``SINGLE+YDL227C_<kind><n>`` (a single mutant carrying the HO
marker: digenic rows) or ``GENE1+GENE2_tm<n>`` (a double mutant: trigenic rows); the
marker is removed and each gene typed by :mod:`pipeline.core.perturbations` (``Δ`` in the
allele name = deletion, otherwise the ts allele of an essential gene). The number of
genes left must be 2 for ``digenic`` and 3 for ``trigenic`` rows.

``screen``: the ``Screen ID`` column where the table has one; otherwise, for 2020,
the table named in the title row (``S1``, ``S3``; the file stem if there is no
title), and null for 2018. Output: :data:`pipeline.core.perturbations.OBSERVATION_SCHEMA`,
lazily; validation, errors and counts as in :mod:`pipeline.sources.phenotypes.tables`.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import VALUE_COLUMNS
from pipeline.sources.phenotypes.rows import read_each
from pipeline.sources.phenotypes.spec import INTERACTION_LABELS, PhenotypeDataset, ReleaseFile
from pipeline.sources.phenotypes.tables import (
    NULL_VALUES,
    Located,
    OnBadValue,
    OnUnknown,
    TableFormat,
    observations,
    pick_header,
    scan_table,
)

_COLUMNS = {
    "query_id": ("Query strain ID",),
    "query_allele": ("Query allele name",),
    "array_id": ("Array strain ID",),
    "array_allele": ("Array allele name",),
    "mutant_type": ("Combined mutant type",),
    "interaction_raw": ("Raw genetic interaction score (epsilon)", "Raw genetic interaction score (epsilon, tau)"),
    "interaction": ("Adjusted genetic interaction score (epsilon or tau)",),
    "interaction_p": ("P-value", "P value", "Pvalue"),
    "smf_query": ("Query single/double mutant fitness",),
    "smf_array": ("Array single mutant fitness",),
    "fitness": ("Combined mutant fitness", "Double/triple mutant fitness"),
    "fitness_std": ("Combined mutant fitness standard deviation", "Double/triple mutant fitness standard deviation"),
    "screen": ("Screen ID", "Screen", "Screen name"),
}
KUZMIN2018 = TableFormat("kuzmin2018", "Kuzmin 2018 Data S1", _COLUMNS,
                         optional=frozenset({"interaction_raw", "screen"}))
KUZMIN2020 = TableFormat("kuzmin2020", "Kuzmin 2020 Table S1/S3",
                         {**_COLUMNS, "fitness": _COLUMNS["fitness"][::-1],
                          "fitness_std": _COLUMNS["fitness_std"][::-1]},
                         optional=frozenset({"interaction_raw", "screen"}))
_HEADER_SEARCH_ROWS = 6


def scan_kuzmin2018(path: str | Path, *, on_unknown: OnUnknown = "error",
                    stats: MutableMapping[str, int] | None = None, check_values: bool = True,
                    on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of Kuzmin 2018 Data S1 (``aao1729_data_s1.tsv[.gz]``), lazily.

    ``on_unknown``: ``"error"`` (default) raises on a strain that does not parse,
    naming file, line and strain; ``"skip"`` drops its rows. ``stats``: a dict the
    counts are added to (``rows_read``, ``skipped_unparsed``, ``markers_removed``, ``rows``).
    ``check_values``: parse the scores in the validation pass; ``on_bad_value``: ``"error"``
    (default) or ``"drop"`` (counted) for a non-finite or out-of-range value (see
    :mod:`pipeline.sources.phenotypes.tables`).
    """
    return scan_table(path, KUZMIN2018, on_unknown=on_unknown, stats=stats, check_values=check_values,
                      on_bad_value=on_bad_value)


def read_kuzmin2020(path: str | Path, *, on_unknown: OnUnknown = "error",
                    stats: MutableMapping[str, int] | None = None, check_values: bool = True,
                    on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of one Kuzmin 2020 table workbook (Table S1 or S3, ``.xlsx``).

    Same arguments as :func:`scan_kuzmin2018`. Errors name the sheet row (1-based,
    as a spreadsheet shows it) as the line. The sheet is read whole, so its scores are
    always checked here (``check_values`` is accepted for a uniform signature).
    """
    import fastexcel  # noqa: PLC0415 - only this reader needs it

    path = Path(path)
    try:
        book = fastexcel.read_excel(str(path))
        peek = book.load_sheet(0, header_row=None, skip_rows=0, n_rows=_HEADER_SEARCH_ROWS,
                               dtypes="string").to_polars()
    except FileNotFoundError:
        raise
    except Exception as e:  # fastexcel raises its own error classes for anything unreadable
        raise SourceFormatError(path, None, "a readable .xlsx workbook", f"{type(e).__name__}: {e}") from e
    rows = [["" if v is None else str(v) for v in r] for r in peek.iter_rows()]
    nonblank = [(i + 1, cells) for i, cells in enumerate(rows) if any(c.strip() for c in cells)]
    header_row, _, found = pick_header(path, KUZMIN2020, nonblank[:3])  # 1-based sheet row
    header_idx = header_row - 1
    title = " ".join(c for r in rows[:header_idx] for c in r if c.strip())
    m = re.search(r"\bTable\s+(S\d+)\b", title, re.IGNORECASE)
    screen = m.group(1).upper() if m else path.stem

    try:
        sheet = book.load_sheet(0, header_row=header_idx, dtypes="string").to_polars()
    except Exception as e:
        raise SourceFormatError(path, None, "a readable .xlsx workbook", f"{type(e).__name__}: {e}") from e
    where = Located(f"{path} (sheet 1)", header_idx + 1)
    raw = sheet.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_row"),
                       *[pl.col(sheet.columns[i]).alias(k) for k, i in found.items()])
    # the sheet is read as text: empty markers become null, then value columns must parse as numbers
    raw = raw.with_columns(pl.when(pl.col(k).str.strip_chars().is_in(NULL_VALUES)).then(None)
                           .otherwise(pl.col(k).str.strip_chars()).alias(k) for k in found)
    values = [k for k in found if k in VALUE_COLUMNS]
    parsed = raw.with_columns(pl.col(k).cast(pl.Float64, strict=False) for k in values)
    for k in values:
        bad = parsed[k].is_null() & raw[k].is_not_null()
        if bad.any():
            r = int(bad.arg_max())
            raise where.error(int(raw["_row"][r]), f"a number (or an empty cell) in column "
                                                   f"{KUZMIN2020.canonical(k)!r}", raw[k][r])
    return observations(parsed.lazy(), KUZMIN2020, where, source_file=str(path),
                        screen=None if "screen" in found else screen, on_unknown=on_unknown, stats=stats,
                        on_bad_value=on_bad_value, strings=raw.lazy)


_kuzmin2018 = partial(read_each, scan_kuzmin2018, takes_check_values=True)


_kuzmin2020 = partial(read_each, read_kuzmin2020, takes_check_values=True)


DATASETS = (
    PhenotypeDataset("kuzmin2018", "kuzmin2018", ("aao1729_data_s1.tsv", "aao1729_data_s1.tsv.gz"), _kuzmin2018,
                     samples=("kuzmin2018/aao1729_data_s1.sample.tsv",),
                     description="Kuzmin et al. 2018 (Science) Data S1, aao1729_data_s1.tsv",
                     text_format="pipeline.sources.phenotypes.kuzmin:KUZMIN2018", one_file=True,
                     labels=INTERACTION_LABELS, citation="Kuzmin et al. 2018, Science 360:eaao1729",
                     files=(ReleaseFile("aao1729_data_s1.tsv",
                                        "c82b60f98590071fcb07b74b672958a5863b58e03b78631e6235cb664ee82afb",
                                        "Science supplementary Data S1"),)),
    PhenotypeDataset("kuzmin2020", "kuzmin2020", ("*.xlsx",), _kuzmin2020,
                     description="Kuzmin et al. 2020 (Science) Tables S1 and S3 (xlsx)",
                     labels=INTERACTION_LABELS, citation="Kuzmin et al. 2020, Science 368:eaaz5667",
                     files=(ReleaseFile("aaz5667-Table-S1.xlsx",
                                        "4180577d53d5012c6c747227cbeca8a2d09f59bd8028d3bb2f5fd84601c77def",
                                        "Science supplementary Table S1"),
                            ReleaseFile("aaz5667-Table-S3.xlsx",
                                        "625420bed5de3563c9f1b4f1909a627aa4d8dd1b629c3f8a3596eb99e132c54f",
                                        "Science supplementary Table S3"))),
)
