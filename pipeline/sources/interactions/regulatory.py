"""Regulator -> target tables (SGD regulation export, YEASTRACT-style lists), directed.

Format: tab-separated with a header line, plain, ``.gz`` or a one-file ``.zip``; no
quoting; leading lines starting with ``!`` are comments. Columns, matched
case-insensitively, the first listed spelling present wins:

- regulator: ``regulator``, ``Regulator systematic name``, ``TF``, ``Factor``
- target: ``target``, ``Target systematic name``, ``Gene``
- weight (optional): ``weight`` or ``score``; a float, finite (as float32) and
  >= 0, else an error with its line. Without the column every edge weighs 1.0.

Names map with :meth:`GeneIndex.lookup_names` (systematic, standard or alias); a
name that does not map is retried without a trailing ``p`` (YEASTRACT names the
protein, ``Abf1p``). Every row is one edge; stats: ``rows_read``,
``dropped_unknown_gene``. Duplicates and self-loops are left to
:func:`pipeline.graph.csr.build_csr`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.edges import EdgeTable, keep_known
from pipeline.core.genes import GeneIndex
from pipeline.sources._table import lookup_names, read_table

log = logging.getLogger(__name__)

COLUMNS = {
    "regulator": ["regulator", "Regulator systematic name", "TF", "Factor"],
    "target": ["target", "Target systematic name", "Gene"],
    "weight": ["weight", "score"],
}


def read_regulatory(path: str | Path, genes: GeneIndex) -> dict[str, EdgeTable]:
    """Read a regulator/target table into ``{"regulatory": EdgeTable}`` (directed regulator -> target)."""
    path = Path(path)
    table = read_table(path, COLUMNS, optional={"weight"}, comment_prefixes=["!"], desc=f"regulatory {path.name}")
    df = table.df
    if "weight" in df.columns:
        # checked as float32, as stored: 1e300 is finite only as a float64
        w = df["weight"].str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Float32)
        bad = (w.is_null() | w.is_nan() | w.is_infinite() | (w < 0)).fill_null(True)
        if bad.any():
            row = int(bad.arg_max())
            raise table.error(row, "a finite weight >= 0", df["weight"][row])
        weight = w.to_numpy()
    else:
        weight = np.ones(df.height, dtype=np.float32)
    src = lookup_names(df["regulator"], genes, strip_suffix="p")
    dst = lookup_names(df["target"], genes, strip_suffix="p")
    out = keep_known("regulatory", src, dst, weight, directed=True, source=str(path),
                     stats={"rows_read": df.height})
    log.info("read %s: %s", path, out.stats)
    return {"regulatory": out}
