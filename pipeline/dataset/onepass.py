"""One pass from a text phenotype table to encoded observations (the dataset stage's fast path).

The readers (:mod:`pipeline.sources.phenotypes.tables`) validate a table in one streaming
pass over its strains and then re-read it lazily in
:data:`~pipeline.core.perturbations.OBSERVATION_SCHEMA` (gene names in lists), which
:func:`pipeline.dataset.encode.encode` maps to the gene index: two parses of the file and
hash joins on strings for every row. :func:`read_encoded` reads the file once with
the strain and screen columns as categoricals (each distinct string hashed once per
chunk, one integer code per row), checks and parses the distinct strains with the
readers' own code (:func:`~pipeline.sources.phenotypes.tables.vet_strains`), maps each
strain to its (gene index, type) slots, and builds every row's packed key with
numpy gathers from per-strain tables of a few thousand entries.

The result equals ``collect_observations(encode(reader(...), genes, tag))`` row for
row (the tests compare both); so do the errors, the skip policy, the bad-value policy
(``on_bad_value``: the rows dropped and the error for the first) and the counts. It
applies when every strain id has one allele name (and, with ``Combined mutant type``,
one mutant type) throughout the file, as in every published table; otherwise
:func:`read_encoded` returns None and the caller takes the lazy path.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.core.perturbations import VALUE_COLUMNS
from pipeline.core.ragged import indptr_from_lengths, owner
from pipeline.dataset.encode import MAX_GENES, UNKNOWN, pack_keys, slot_values
from pipeline.sources.phenotypes.tables import (
    CODED_COLUMNS,
    Located,
    OnBadValue,
    OnUnknown,
    TableFormat,
    any_bad_value,
    bad_value_error,
    find_header,
    report_counts,
    scan_table,
    scan_text,
    vet_strains,
)

log = logging.getLogger(__name__)

_NONE = np.uint32(0xFFFFFFFF)  # code of a null cell


def _codes(col: pl.Series) -> tuple[np.ndarray, pl.DataFrame]:
    """(uint32 code per row, null = ``_NONE``; table of the codes present: code, value)."""
    phys = col.to_physical()
    codes = (phys.fill_null(int(_NONE)) if phys.null_count() else phys).to_numpy().astype(np.uint32, copy=False)
    u = col.unique().drop_nulls()
    return codes, pl.DataFrame({"code": u.to_physical().cast(pl.UInt32), "value": u.cast(pl.String)})


def _per_code(idx: np.ndarray, size: int, values: np.ndarray) -> np.ndarray | None:
    """``lut[i] = value`` for ids ``idx`` in ``0..size`` when each id has one value (else None):
    e.g. an id's allele code."""
    lut = np.full(size + 1, _NONE, dtype=np.uint32)
    lut[idx] = values  # one of each id's values (which one is unspecified); then every row must agree
    return lut if bool(np.all(lut[idx] == values)) else None


def _strain_table(id_codes: np.ndarray, rows: np.ndarray, cols: dict[str, tuple[np.ndarray, pl.DataFrame]],
                  id_key: str, other: dict[str, np.ndarray]) -> tuple[pl.DataFrame, np.ndarray] | None:
    """One row per strain id present: its id and the other columns' strings, row count and
    first data row; plus each row's strain number. None if an id has several values of another column."""
    present = id_codes != _NONE
    size = int(id_codes[present].max(initial=0)) + 1
    idx = np.where(present, id_codes, size)
    n = np.bincount(idx, minlength=size + 1)
    first = np.full(size + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, idx, rows)  # the first data row of each id
    ids = np.flatnonzero(n)  # the ids present (and size: rows without an id, if any)
    table = {"_code": ids.astype(np.uint32), "n": n[ids].astype(np.uint32), "first": first[ids]}
    out = pl.DataFrame(table)
    for key, codes in {id_key: id_codes, **other}.items():
        lut = codes if key == id_key else _per_code(idx, size, codes)
        if lut is None:
            return None
        per_id = ids.astype(np.uint32) if key == id_key else lut[ids]
        per_id = np.where(ids == size, _NONE, per_id)
        names = cols[key][1]
        out = out.with_columns(pl.DataFrame({"code": per_id}).join(names, on="code", how="left",
                                                                   maintain_order="left")["value"].alias(key))
    number = np.zeros(size + 1, dtype=np.int64)
    number[ids] = np.arange(len(ids))
    return out, number[idx]


def _slots(genes: list[list[str]] | None, types: list[list[int]] | None, index: GeneIndex,
           width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per strain: ``width`` slot values ((gene index + 1) * 8 + type, 0 = none) and an
    unknown-gene flag."""
    m = len(genes or [])
    slots = np.zeros((m, width), dtype=np.uint32)
    unknown = np.zeros(m, dtype=bool)
    flat = [g for gs in genes or [] for g in (gs or [])]
    if not flat:
        return slots, unknown
    idx = index.lookup(pl.Series(flat, dtype=pl.String))
    ptr = indptr_from_lengths(np.array([len(gs or []) for gs in genes], dtype=np.int64))
    strain = owner(ptr)
    unknown[strain[idx < 0]] = True
    slots[strain, np.arange(len(flat)) - ptr[strain]] = slot_values(idx, [t for ts in types for t in (ts or [])])
    return slots, unknown


def read_encoded(path: str | Path, fmt: TableFormat, genes: GeneIndex, tag: int, *,
                 on_unknown: OnUnknown = "error", stats: MutableMapping[str, int] | None = None,
                 screen: str | None = None, on_bad_value: OnBadValue = "error") -> pl.DataFrame | None:
    """Encoded observations of one text table (see the module doc), or None if the fast path does not apply."""
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
    if on_bad_value not in ("error", "drop"):
        raise ValueError(f"on_bad_value must be 'error' or 'drop', got {on_bad_value!r}")
    path = Path(path)
    header_line, header, found = find_header(path, fmt)
    where = Located(str(path), header_line)
    lf = scan_text(path, fmt, header_line, header, found, categorical=True)
    value_keys = [v for v in VALUE_COLUMNS if v in found]
    try:  # flagged after the float32 cast: one finiteness test covers NaN, inf and float32 overflow
        df = (lf.with_columns(pl.col(v).cast(pl.Float32) for v in value_keys)
              .with_columns(any_bad_value(value_keys).alias("_bad")).collect(engine="streaming"))
    except (pl.exceptions.PolarsError, OSError):  # OSError: a truncated gzip stream
        # raises the reader's error (a value that is not a number, not UTF-8, a truncated file)
        scan_table(path, fmt, on_unknown=on_unknown, stats={})
        raise
    cols = {k: _codes(df[k]) for k in CODED_COLUMNS if k in df.columns}
    # blank lines come through as rows of nulls: they are not data (filtered only if any:
    # a filter copies every column)
    blank = np.logical_and.reduce([cols[k][0] == _NONE for k in ("query_id", "query_allele", "array_id",
                                                                  "array_allele")])
    if blank.any():
        df = df.filter(pl.Series(~blank))
        cols = {k: (c[~blank], t) for k, (c, t) in cols.items()}
    if df.height == 0:
        raise SourceFormatError(where.path, None, f"data rows after the {fmt.title} header", "none")
    rows_read = df.height
    bad = df["_bad"].to_numpy()
    n_bad = int(bad.sum())
    if n_bad and on_bad_value == "error":  # the first in file order, as the readers report it
        strings = scan_text(path, fmt, header_line, header, found, strings=True)
        raise bad_value_error(where, fmt, strings, int(df["_row"].to_numpy()[bad][0]))
    if n_bad:  # dropped before the strains are vetted, as the readers do
        df = df.filter(pl.Series(~bad))
        cols = {k: (c[~bad], t) for k, (c, t) in cols.items()}
    df = df.drop("_bad")
    rows = df["_row"].to_numpy()
    has_mt = "mutant_type" in cols
    if has_mt:  # spelled as the readers compare it
        t = cols["mutant_type"][1]
        cols["mutant_type"] = (cols["mutant_type"][0],
                               t.with_columns(pl.col("value").str.strip_chars().str.to_lowercase()))
    q_other = {"query_allele": cols["query_allele"][0], **({"mutant_type": cols["mutant_type"][0]} if has_mt else {})}
    qt = _strain_table(cols["query_id"][0], rows, cols, "query_id", q_other)
    at = _strain_table(cols["array_id"][0], rows, cols, "array_id", {"array_allele": cols["array_allele"][0]})
    if qt is None or at is None:
        log.info("%s: a strain id with several allele names: the lazy path reads it", path)
        return None
    (q, q_num), (a, a_num) = qt, at
    q, a, q_bad, a_bad = vet_strains(q, a, fmt, has_mt, where, on_unknown)
    if int(q["q_genes"].list.len().max() or 0) > MAX_GENES - 1:
        return None  # the packed key holds three genes; the lazy path reports it
    keep = ~(q["q_problem"].is_not_null().to_numpy()[q_num] | a["a_problem"].is_not_null().to_numpy()[a_num])
    report_counts(where, q, q_bad, a_bad, rows_read, int((~keep).sum()), stats, n_bad)

    q_slots, q_unknown = _slots(q["q_genes"].to_list(), q["q_types"].to_list(), genes, MAX_GENES - 1)
    a_slots, a_unknown = _slots(a["a_genes"].to_list(), a["a_types"].to_list(), genes, 1)
    if not keep.all():
        df, q_num, a_num = df.filter(pl.Series(keep)), q_num[keep], a_num[keep]
    key = pack_keys([q_slots[q_num, 0], q_slots[q_num, 1], a_slots[a_num, 0]])
    unknown = q_unknown[q_num] | a_unknown[a_num]
    key[unknown] = UNKNOWN + np.uint64(tag)
    scr = (df["screen"] if "screen" in df.columns else pl.repeat(screen, df.height, dtype=pl.String, eager=True)
           .cast(pl.Categorical)).alias("screen")
    def value(v: str) -> pl.Series:  # NaN is a bad value: none is left here
        if v not in df.columns:
            return pl.repeat(None, df.height, dtype=pl.Float32, eager=True).alias(v)
        return df[v]

    values = [value(v) for v in VALUE_COLUMNS]  # the order of encode()'s frames
    return pl.DataFrame([df["_row"].cast(pl.Int32).alias("source_row"), scr, *values,
                         pl.Series("key", key), pl.Series("source_bits", np.full(df.height, 1 << tag, np.uint16))])
