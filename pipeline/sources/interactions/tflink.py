"""TFLink transcription factor -> target interactions (simple format), directed.

Format: ``TFLink_Saccharomyces_cerevisiae_interactions_All_simpleFormat_v1.0.tsv``,
plain or ``.gz``; tab-separated, no quoting, header::

    UniprotID.TF  UniprotID.Target  NCBI.GeneID.TF  NCBI.GeneID.Target  Name.TF  Name.Target
    Detection.method  PubmedID  Organism  Source.database  Small-scale.evidence

Columns used: ``Name.TF`` and ``Name.Target``, mapped with
:meth:`GeneIndex.lookup_names` (standard names such as ``ABF1``, sometimes
systematic names; a cell holding several names joined by ``;`` maps to the first
that is known). Every row is one edge TF -> target of weight 1.0; no row is filtered
by evidence. Stats: ``rows_read``, ``dropped_unknown_gene`` (either end unknown).
Duplicates and self-loops are left to :func:`pipeline.graph.csr.build_csr`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.core.edges import EdgeTable, keep_known
from pipeline.core.genes import GeneIndex
from pipeline.sources._table import lookup_names, read_table

log = logging.getLogger(__name__)

COLUMNS = {"tf": ["Name.TF"], "target": ["Name.Target"]}


def read_tflink(path: str | Path, genes: GeneIndex) -> dict[str, EdgeTable]:
    """Read a TFLink simple-format file into ``{"tflink": EdgeTable}`` (directed TF -> target)."""
    path = Path(path)
    df = read_table(path, COLUMNS, desc=f"tflink {path.name}").df
    src = lookup_names(df["tf"], genes, split=";")
    dst = lookup_names(df["target"], genes, split=";")
    out = keep_known("tflink", src, dst, np.ones(df.height, dtype=np.float32), directed=True,
                     source=str(path), stats={"rows_read": df.height})
    log.info("read %s: %s", path, out.stats)
    return {"tflink": out}
