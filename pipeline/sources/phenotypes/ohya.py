"""Ohya et al. 2005 (PNAS 102:19015) CalMorph morphology of the haploid deletion collection (SCMD).

Released files (SCMD; facts from TorchCell 1.8.4's loader, which pins their sha256):

- ``mt4718data.tsv``: tab-separated, a header line, one row per deletion strain (4,718),
  ID column ``ORF`` (2005 systematic names, any case), then 501 CalMorph parameters
  (281 base parameters such as ``C101_A1B``, ``A101_A``, ``D102_A1B`` and 220
  coefficients of variation prefixed ``CCV``/``ACV``/``DCV``): per-strain population averages.
- ``wt122data.tsv``: the wild-type reference, 122 independent ``his3`` replicate averages, ID
  column ``NAME``, the same parameter columns.

Stored as label ``ohya2005.morphology``: each strain's raw parameter values (a blank cell is
not measured: masked, counted), with the wild-type reference per parameter (mean, standard
deviation and replicate count over the 122 rows) beside it, so z-scores are one subtraction
and division away. A row with a blank ``ORF`` names no strain and is dropped (counted); a
strain listed twice is merged by the dataset's replicate rule (counted there).
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import CODES
from pipeline.sources._io import read_source_bytes
from pipeline.sources.phenotypes.kemmeren import vector_reader

MUTANTS = "mt4718data.tsv"
WILDTYPE = "wt122data.tsv"
_NULLS = ["", "NA", "N/A", "NaN", "nan", "-"]


def _read_matrix(path: Path, id_column: str) -> tuple[list[str], list[str | None], np.ndarray, int]:
    """(parameter names, ids, float32 [rows, params] with NaN for blanks, blank cells) of one CalMorph
    matrix; a cell that is not a number is an error naming its line and column."""
    data = read_source_bytes(path)
    try:
        raw = pl.read_csv(io.BytesIO(data), separator="\t", infer_schema=False, quote_char=None,
                          null_values=_NULLS, truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(path, None, "a tab-separated CalMorph matrix with one header line",
                                str(e)[:160]) from None
    if raw.width == 0 or raw.columns[0].strip() != id_column:
        raise SourceFormatError(path, 1, f"a header starting with the id column {id_column!r}",
                                "\t".join(raw.columns[:4]))
    params = [c.strip() for c in raw.columns[1:]]
    if not params:
        raise SourceFormatError(path, 1, "CalMorph parameter columns after the id column", "\t".join(raw.columns))
    cols = []
    for c in raw.columns[1:]:
        s = raw[c].str.strip_chars()
        num = s.cast(pl.Float64, strict=False)
        bad = (num.is_null() & s.is_not_null()) | ~num.is_finite().fill_null(True)
        if bad.any():
            i = int(bad.arg_max())
            raise SourceFormatError(path, i + 2, f"a finite number (or an empty cell) in column {c.strip()!r}",
                                    str(s[i]))
        cols.append(num.to_numpy())
    f64 = np.stack(cols, axis=1)
    values = f64.astype(np.float32)
    too_big = np.isinf(values) & np.isfinite(f64)  # beyond float32: values are stored as float32
    if too_big.any():
        i, j = (int(x[0]) for x in np.nonzero(too_big))
        raise SourceFormatError(path, i + 2, f"a value within float32 range in column {params[j]!r}",
                                str(raw[raw.columns[j + 1]][i]))
    ids = raw[raw.columns[0]].str.strip_chars().str.to_uppercase().to_list()
    return params, ids, values, int(np.isnan(values).sum())


def read_ohya2005(paths: list[Path], stats: MutableMapping[str, int] | None = None):
    """The ``ohya2005.morphology`` fields (columns, strains, types, values, reference, stats) of
    ``mt4718data.tsv`` and ``wt122data.tsv`` among ``paths``."""
    stats = {} if stats is None else stats
    # the released names, or a variant of them (a bundled ``.sample.tsv``, gzip)
    by_name = {n: p for p in paths for n in (MUTANTS, WILDTYPE) if p.name.startswith(n.split(".")[0])}
    if MUTANTS not in by_name or WILDTYPE not in by_name:
        raise SourceFormatError(paths[0].parent if paths else "ohya2005", None,
                                f"both {MUTANTS} and {WILDTYPE}", ", ".join(sorted(by_name)))
    params, ids, values, blanks = _read_matrix(by_name[MUTANTS], "ORF")
    wparams, _, wt, _ = _read_matrix(by_name[WILDTYPE], "NAME")
    if wparams != params:
        missing = [c for c in params if c not in wparams]
        raise SourceFormatError(by_name[WILDTYPE], 1, "the parameter columns of " + MUTANTS +
                                (f" (missing {missing[:5]})" if missing else " in the same order"),
                                "\t".join(wparams[:5]) + " ...")
    keep = np.array([bool(i) for i in ids], bool)
    stats.update(rows_read=len(ids), dropped_blank_orf=int((~keep).sum()), values_blank=blanks,
                 parameters=len(params), wildtype_rows=len(wt))
    strains = [[i] for i, k in zip(ids, keep, strict=True) if k]
    ok = ~np.isnan(wt)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(wt, axis=0) / np.maximum(n, 1), np.nan)
        sd = np.sqrt(np.where(n > 1, np.nansum((wt - mean) ** 2, axis=0) / np.maximum(n - 1, 1), np.nan))
    return {"columns": params, "genes": strains, "types": [[CODES["deletion"]]] * len(strains),
            "values": values[keep], "pvalue": None, "stats": dict(stats),
            "reference": {"mean": mean.astype(np.float32), "sd": sd.astype(np.float32), "n": n.astype(np.int32)}}


_reader = partial(vector_reader, read_ohya2005, "ohya2005")


def _dataset():
    from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile

    return PhenotypeDataset(
        "ohya2005", "ohya2005", ("mt4718data*.tsv", "wt122data*.tsv"), _reader,
        labels=(Label("ohya2005.morphology", "CalMorph parameter values (501)",
                      "vector label (dataset/labels.zarr): the strain's CalMorph population averages as released, "
                      "with the wild-type mean / sd / n per parameter (wt122data.tsv)"),),
        samples=("ohya2005/mt4718data.sample.tsv", "ohya2005/wt122data.sample.tsv"),
        description="Ohya et al. 2005 CalMorph morphology of deletion mutants (SCMD mt4718data.tsv + "
                    "wt122data.tsv wild-type reference): vector label ohya2005.morphology [501 parameters]",
        citation="Ohya et al. 2005, PNAS 102:19015",
        files=(ReleaseFile(MUTANTS, "c4ba1e84b4ea6273f0162ef9230e15634933c8c0c4910dd7546a21c6293e0fc0",
                           "SCMD: www.yeast.ib.k.u-tokyo.ac.jp/SCMD/download.php?path=mt4718data.tsv"),
               ReleaseFile(WILDTYPE, "ab2c31b5150b2a33c15b5d22f1bef8687719975223559a740ea233c1f67b27c3",
                           "SCMD: www.yeast.ib.k.u-tokyo.ac.jp/SCMD/download.php?path=wt122data.tsv")))


DATASET = _dataset()
