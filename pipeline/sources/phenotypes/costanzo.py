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

from pipeline.sources.phenotypes.spec import INTERACTION_LABELS, PhenotypeDataset, ReleaseFile
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


def _reader(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True,
            on_bad_value: str = "error") -> pl.LazyFrame:
    return scan_costanzo2016(paths, on_unknown=on_unknown, stats=stats, check_values=check_values,  # type: ignore[arg-type]
                             on_bad_value=on_bad_value)  # type: ignore[arg-type]


_SHA256 = (
    ("SGA_ExE.txt", "84dfe41a09192479842dc0055373c35afcb5246c8e11bb9724326615f5162f7d"),
    ("SGA_ExN_NxE.txt", "d8b183a80da1d52bbf66c134d4707c1c243c2cf1689859aee72c28e4d4adffca"),
    ("SGA_NxN.txt", "c413d1bfab7e79a2db142ba3e43572411216f24c23df71bb1e180163da1304ae"),
    ("SGA_DAmP.txt", "581eafbc7a30155f5af7777101e6f94cfd03fcf0242ee76ecce47aa88d75ebc8"))

DATASET = PhenotypeDataset(
    "costanzo2016", "costanzo2016", FILE_NAMES, _reader,
    samples=tuple(f"costanzo2016/SGA_{k}.sample.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")),
    description="Costanzo et al. 2016 (Science) SGA tables SGA_ExE/NxN/ExN_NxE/DAmP.txt",
    text_format="pipeline.sources.phenotypes.costanzo:COSTANZO2016",
    labels=tuple(lab for lab in INTERACTION_LABELS if lab.name != "interaction_raw"),
    citation="Costanzo et al. 2016, Science 353:aaf1420",
    files=tuple(ReleaseFile(n, h, "thecellmap.org Data File S1 (pair-wise interaction format zip)")
                for n, h in _SHA256))
