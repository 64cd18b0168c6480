"""Costanzo et al. 2016 (Science 353:aaf1420) SGA digenic tables -> phenotype observations.

Data File S1 ("Raw genetic interaction datasets: pair-wise interaction format"): four
tab-separated files, one header line each, 20,705,612 rows together::

    SGA_NxN.txt      12,698,939   nonessential deletion query x deletion array
    SGA_ExN_NxE.txt   5,796,145   essential (ts / DAmP) x nonessential, both ways
    SGA_DAmP.txt      1,391,958   DAmP alleles of essential genes
    SGA_ExE.txt         818,570   essential x essential (ts x ts)

Columns (spellings accepted, case-insensitive)::

    Query Strain ID | Query allele name | Array Strain ID | Array allele name |
    Arraytype/Temp                              -> screen (e.g. DMA30, TSA26)
    Genetic interaction score (ε)               -> interaction  (also "(epsilon)")
    P-value                                     -> interaction_p
    Query single mutant fitness (SMF)           -> smf_query
    Array SMF                                   -> smf_array
    Double mutant fitness                       -> fitness
    Double mutant fitness standard deviation    -> fitness_std

``interaction_raw`` is null (the files publish one score). Strain ids
(``YAL001C_tsq508``, ``YBL023C_tsa111``, ``YAL002W_sn1``, ``YAL002W_dma1``,
``YAL001C_damp174``, ``YAL007C_S1``) are typed by :mod:`pipeline.core.perturbations`;
every strain is one gene, so rows take the fast path (ids mapped to gene and type,
the pair ordered by two comparisons).

:func:`scan_costanzo2016` streams: one validation pass per file (grouping by strain,
bounded memory), then a lazy ``scan_csv`` per file, concatenated. Nothing is
materialised by the reader. Output: :data:`pipeline.core.perturbations.OBSERVATION_SCHEMA`;
errors and counts as in :mod:`pipeline.sources.phenotypes.tables`.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from pathlib import Path

import polars as pl

from pipeline.sources.phenotypes.tables import OnBadValue, OnUnknown, TableFormat, scan_table

#: The four files of Data S1.
FILE_NAMES = ("SGA_ExE.txt", "SGA_NxN.txt", "SGA_ExN_NxE.txt", "SGA_DAmP.txt")

COSTANZO2016 = TableFormat("costanzo2016", "Costanzo 2016 SGA", {
    "query_id": ("Query Strain ID",),
    "query_allele": ("Query allele name",),
    "array_id": ("Array Strain ID",),
    "array_allele": ("Array allele name",),
    "screen": ("Arraytype/Temp", "Arraytype/Temperature"),
    "interaction": ("Genetic interaction score (ε)", "Genetic interaction score (epsilon)"),
    "interaction_p": ("P-value", "P value", "Pvalue"),
    "smf_query": ("Query single mutant fitness (SMF)", "Query SMF"),
    "smf_array": ("Array SMF", "Array single mutant fitness (SMF)"),
    "fitness": ("Double mutant fitness", "Double mutant fitness (DMF)"),
    "fitness_std": ("Double mutant fitness standard deviation",),
})


def scan_costanzo2016(paths: str | Path | Sequence[str | Path], *, on_unknown: OnUnknown = "error",
                      stats: MutableMapping[str, int] | None = None, check_values: bool = True,
                      on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of the Costanzo 2016 SGA files (any subset of :data:`FILE_NAMES`), lazily.

    ``paths``: one file or several (read in the order given; ``source_row`` counts
    per file). ``on_unknown``: ``"error"`` (default) raises on a strain that does not
    parse, naming file, line and strain; ``"skip"`` drops its rows. ``stats``: a dict
    the counts are added to (``rows_read``, ``skipped_unparsed``, ``markers_removed``, ``rows``).
    ``check_values``: parse the scores in the validation pass; ``on_bad_value``: ``"error"``
    (default) or ``"drop"`` (counted) for a non-finite or out-of-range value (see
    :mod:`pipeline.sources.phenotypes.tables`).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("scan_costanzo2016 needs at least one file")
    frames = [scan_table(p, COSTANZO2016, on_unknown=on_unknown, stats=stats, check_values=check_values,
                         on_bad_value=on_bad_value) for p in paths]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
