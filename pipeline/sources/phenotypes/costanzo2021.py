"""Costanzo et al. 2021 environmental robustness: condition-specific single mutant fitness -> observations.

Data File S1, ``Costanzo et al_Data File S1_Conditions_Strains_Fitness.xlsx`` (sha256
``f6c313de...``), sheet ``Diff. Mutant fitness_Conditions``, one header row, 4,429
strains (rows) x 14 conditions (columns; 366 blank cells, so 61,640 values)::

    Systematic Name | Gene Name | Allele (Essential genes only) | Strain ID |
    Actinomycin D | Benomyl | Boretzeomib | Caspofungin | Concanmycin A | Cycloheximide |
    Fluconozole | Galactose | Geldenamycin | MMS | Monensin | Rapamycin | Sorbitol | Tunicamycin

(the condition headers as released, misspellings included; the correct spellings are
accepted too). ``Strain ID`` is a deletion-array (``dma<n>``) or ts-array (``tsa<n>``)
strain, so the genotype is ``[Systematic Name]`` typed deletion / temperature_sensitive.

**Conditions -> labels.** Each condition is its own label, ``env_<condition>`` (e.g.
``env_benomyl``): the *differential* fitness, the strain's fitness in the condition minus
its fitness in the matched reference condition (signed; 0 = unaffected, negative =
hypersensitive; 26 °C). One sample per strain carries all 14 (null where the cell is
blank), so a multi-task model sees the condition profile of a genotype in one row, and
the condition is never part of the genotype key (the same deletion in Costanzo 2016 is
the same sample).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

import polars as pl

from pipeline.core.perturbations import CODES
from pipeline.sources.phenotypes.rows import read_each, read_sheet, require_columns, strain_observations
from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile
from pipeline.sources.phenotypes.tables import Located, OnBadValue, OnUnknown

FILE_NAME = "Costanzo et al_Data File S1_Conditions_Strains_Fitness.xlsx"
SHA256 = "f6c313de416ce8cc6ae87e2020b4389bd4adeb07cdb6a438aecaf1e45e6228ad"
SHEET = "Diff. Mutant fitness_Conditions"
#: label -> (column as released, other accepted spellings...), concentration as in the Conditions sheet
CONDITIONS: dict[str, tuple[str, ...]] = {
    "env_actinomycin_d": ("Actinomycin D",),
    "env_benomyl": ("Benomyl",),
    "env_bortezomib": ("Boretzeomib", "Bortezomib"),
    "env_caspofungin": ("Caspofungin",),
    "env_concanamycin_a": ("Concanmycin A", "Concanamycin A"),
    "env_cycloheximide": ("Cycloheximide",),
    "env_fluconazole": ("Fluconozole", "Fluconazole"),
    "env_galactose": ("Galactose",),
    "env_geldanamycin": ("Geldenamycin", "Geldanamycin"),
    "env_mms": ("MMS",),
    "env_monensin": ("Monensin",),
    "env_rapamycin": ("Rapamycin",),
    "env_sorbitol": ("Sorbitol",),
    "env_tunicamycin": ("Tunicamycin",),
}
STRAIN_COLUMNS = {"orf": ("Systematic Name",), "strain": ("Strain ID",)}
LABELS = tuple(Label(k, "fitness difference (condition - reference; 0 = unaffected)",
                     "differential single mutant fitness on galactose (replacing glucose), 26 °C"
                     if k == "env_galactose" else f"differential single mutant fitness with {v[-1]} added, 26 °C")
               for k, v in CONDITIONS.items())
_KIND = {"dma": CODES["deletion"], "tsa": CODES["temperature_sensitive"]}


def strain_types(strain_ids: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(type code, problem) per ``Strain ID``: ``dma<n>`` deletion, ``tsa<n>`` ts allele (also
    written ``<ORF>_dma<n>``).

    >>> strain_types(pl.Series(["dma1", "tsa12", "YAL001C_tsa7", "x9"]))[0].to_list()
    [1, 2, 2, None]
    """
    kind = strain_ids.cast(pl.String).str.strip_chars().str.split("_").list.last().str.to_lowercase() \
        .str.extract(r"^([a-z]+)\d", 1)
    code = kind.replace_strict(_KIND, default=None, return_dtype=pl.UInt8)
    problem = pl.select(pl.when(code.is_null()).then(
        pl.format("a Strain ID dma<number> or tsa<number>, got '{}'", pl.lit(strain_ids.cast(pl.String)))))
    return code, problem.to_series()


def read_costanzo2021(path: str | Path, *, on_unknown: OnUnknown = "error",
                      stats: MutableMapping[str, int] | None = None,
                      on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of Costanzo 2021 Data File S1 (see the module doc): one per strain, 14 labels."""
    path = str(path)
    sheet = read_sheet(path, SHEET)
    header = [c for c in sheet.columns if c != "_row"]
    cols = require_columns(path, 1, header, {**STRAIN_COLUMNS, **CONDITIONS}, f"Costanzo 2021 {SHEET!r}")
    sheet = sheet.filter(pl.col(cols["orf"]).is_not_null() | pl.col(cols["strain"]).is_not_null())
    code, problem = strain_types(sheet[cols["strain"]])
    orf = sheet[cols["orf"]].cast(pl.String).str.strip_chars().str.to_uppercase()
    bad_orf = orf.is_null() | (orf == "") | ~orf.fill_null("").str.contains(r"^[A-Z0-9-]+$")
    df = pl.DataFrame({"_row": sheet["_row"], "_orf": orf, "_code": code,
                       "problem": pl.select(pl.when(pl.Series(bad_orf)).then(pl.lit("a systematic name in "
                                                                                    "'Systematic Name'"))
                                            .otherwise(pl.Series(problem))).to_series()}).select(
        "_row", pl.concat_list("_orf").alias("genes"), pl.concat_list("_code").alias("types"),
        pl.when(pl.col("_code").is_null() & pl.col("problem").is_null()).then(pl.lit("no strain kind"))
        .otherwise(pl.col("problem")).alias("problem"),
        pl.lit(None, dtype=pl.String).alias("screen"))
    df = df.hstack(sheet.select(pl.col(cols[k]).alias(k) for k in CONDITIONS))
    return strain_observations(df, "costanzo2021", Located(f"{path} (sheet {SHEET})", 1),
                               {k: cols[k] for k in CONDITIONS}, source_file=path, strain_column="Strain ID",
                               strain_expected="a deletion (dma<n>) or ts (tsa<n>) array strain",
                               on_unknown=on_unknown, on_bad_value=on_bad_value, stats=stats)


_reader = partial(read_each, read_costanzo2021)


DATASET = PhenotypeDataset(
    "costanzo2021", "costanzo2021", ("*S1_Conditions_Strains_Fitness.xlsx",), _reader, labels=LABELS,
    samples=("costanzo2021/S1_Conditions_Strains_Fitness.sample.xlsx",),
    description="Costanzo et al. 2021 environmental robustness: differential single mutant fitness in 14 "
                f"conditions, {FILE_NAME}",
    citation="Costanzo et al. 2021, Science 372:eabf8424", one_file=True,
    files=(ReleaseFile(FILE_NAME, SHA256, "Science supplementary Data File S1 (manual browser download)"),))
