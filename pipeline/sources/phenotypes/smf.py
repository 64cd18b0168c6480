"""Single-mutant fitness tables -> observations: Costanzo 2016 and Baryshnikova 2010.

- **Costanzo 2016** (Science 353:aaf1420), ``strain_ids_and_single_mutant_fitness.xlsx``
  (in the Data File S1 archive of thecellmap.org; sha256 ``3b9d3351...``), first sheet,
  one header row::

      Strain ID | Systematic gene name | Allele/Gene name |
      Single mutant fitness (26°) | Single mutant fitness (26°) stddev |   -> smf_26, smf_26_std
      Single mutant fitness (30°) | Single mutant fitness (30°) stddev     -> smf_30, smf_30_std

  Strain ids as in the SGA tables (``YAL001C_tsq508``, ``YAL002W_dma1``, ``..._sn``,
  ``..._damp``), typed by :func:`pipeline.core.perturbations.parse_strains`. The two
  temperatures are two labels, not replicates: only ts alleles differ between them.
  20,484 (strain, temperature) cells state both a fitness and a stddev.
- **Baryshnikova 2010** (Nat Methods 7:1017), Supplementary Data 1
  ``SupplementaryData1_SMF.xls`` (sha256 ``086bfadf...``), sheet ``S1_SMF_standard_100209``,
  or its text export ``S1_SMF_standard_100209.txt`` (tab-separated): 6,023 rows, three
  columns, NO header: strain id (a bare ORF = deletion, ``<ORF>_damp``, ``<ORF>_tsq<n>``),
  fitness (mode-normalised, WT = 1) -> ``smf``, bootstrap standard error -> ``smf_se``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import CODES, known_kinds_text, parse_strains
from pipeline.sources.phenotypes.rows import read_each, read_sheet, require_columns, strain_observations
from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile
from pipeline.sources.phenotypes.tables import Located, OnBadValue, OnUnknown

COSTANZO_FILE = "strain_ids_and_single_mutant_fitness.xlsx"
COSTANZO_SHA256 = "3b9d3351cdde8ee90832797193a1e8838be3ce6778b3761a9e57db2d3a6a9ccc"
COSTANZO_COLUMNS = {
    "strain": ("Strain ID",),
    "allele": ("Allele/Gene name", "Allele name"),
    "smf_26": ("Single mutant fitness (26°)", "Single mutant fitness (26)"),
    "smf_26_std": ("Single mutant fitness (26°) stddev", "Single mutant fitness (26) stddev"),
    "smf_30": ("Single mutant fitness (30°)", "Single mutant fitness (30)"),
    "smf_30_std": ("Single mutant fitness (30°) stddev", "Single mutant fitness (30) stddev"),
}
_REL = "relative to wild type (1 = WT)"
COSTANZO_LABELS = (
    Label("smf_26", _REL, "single mutant fitness at 26 °C (SGA colony size)"),
    Label("smf_26_std", _REL, "its standard deviation"),
    Label("smf_30", _REL, "single mutant fitness at 30 °C (SGA colony size)"),
    Label("smf_30_std", _REL, "its standard deviation"),
)
BARYSHNIKOVA_FILES = ("SupplementaryData1_SMF.xls", "S1_SMF_standard_100209.txt")
BARYSHNIKOVA_SHA256 = "086bfadf2684f28940500dd87e3be74c53a957448d2016f7a02370540da8a04e"
BARYSHNIKOVA_SHEET = "S1_SMF_standard_100209"
BARYSHNIKOVA_LABELS = (
    Label("smf", "relative to wild type (distribution mode = 1)",
          "single mutant fitness, SGA control screens (deletions, DAmP at 30 °C; ts alleles at 26 °C)"),
    Label("smf_se", "same as smf", "bootstrap standard error of smf"),
)
_STRAIN_EXPECTED = f"a strain id SYSTEMATIC_<allele kind><number> with a known allele kind ({known_kinds_text()})"


def read_costanzo2016_smf(path: str | Path, *, on_unknown: OnUnknown = "error",
                          stats: MutableMapping[str, int] | None = None,
                          on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of ``strain_ids_and_single_mutant_fitness.xlsx`` (see the module doc)."""
    path = str(path)
    sheet = read_sheet(path, 0)
    cols = require_columns(path, 1, [c for c in sheet.columns if c != "_row"], COSTANZO_COLUMNS,
                           "Costanzo 2016 single mutant fitness")
    sheet = sheet.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols.values()))  # blank rows
    strains = parse_strains(sheet[cols["strain"]], sheet[cols["allele"]])
    df = sheet.select("_row", *[pl.col(cols[k]).alias(k) for k in ("smf_26", "smf_26_std", "smf_30", "smf_30_std")])
    df = df.hstack(strains.select("genes", "types", "problem")).with_columns(pl.lit(None, dtype=pl.String)
                                                                            .alias("screen"))
    labels = {k: COSTANZO_COLUMNS[k][0] for k in ("smf_26", "smf_26_std", "smf_30", "smf_30_std")}
    return strain_observations(df, "costanzo2016_smf", Located(f"{path} (sheet 1)", 1), labels, source_file=path,
                               strain_column="Strain ID", strain_expected=_STRAIN_EXPECTED, on_unknown=on_unknown,
                               on_bad_value=on_bad_value, stats=stats)


def baryshnikova_strains(ids: pl.Series) -> pl.DataFrame:
    """genes / types / problem of Baryshnikova's ids: a bare systematic name is its deletion;
    ``<ORF>_<kind><n>`` is parsed as the SGA ids are.

    >>> baryshnikova_strains(pl.Series(["yml062c", "YAL001C_damp", "YBR156C_tsq236"]))["types"].to_list()
    [[1], [3], [2]]
    """
    sid = ids.cast(pl.String).str.strip_chars().fill_null("")
    parsed = parse_strains(sid, None).select("genes", "types", "problem")
    bare = ~sid.str.contains("_") & (sid != "")
    return pl.DataFrame({"_id": sid, "_bare": bare}).hstack(parsed).select(
        pl.when("_bare").then(pl.concat_list(pl.col("_id").str.to_uppercase())).otherwise("genes").alias("genes"),
        pl.when("_bare").then(pl.concat_list(pl.lit(CODES["deletion"], dtype=pl.UInt8))).otherwise("types")
        .alias("types"),
        pl.when("_bare").then(None).otherwise("problem").alias("problem"))


def read_baryshnikova2010(path: str | Path, *, on_unknown: OnUnknown = "error",
                          stats: MutableMapping[str, int] | None = None,
                          on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of Baryshnikova 2010 Supplementary Data 1 (``.xls``/``.xlsx`` sheet
    ``S1_SMF_standard_100209``, or its tab-separated text export; see the module doc)."""
    path = str(path)
    if path.lower().endswith((".xls", ".xlsx")):
        raw = read_sheet(path, BARYSHNIKOVA_SHEET, header_row=None)
        where = Located(f"{path} (sheet {BARYSHNIKOVA_SHEET})", 0)
    else:
        raw = pl.read_csv(path, separator="\t", has_header=False, infer_schema=False, quote_char=None,
                          truncate_ragged_lines=True).with_row_index("_row", offset=1).with_columns(
            pl.col("_row").cast(pl.Int64))
        where = Located(path, 0)
    cells = [c for c in raw.columns if c != "_row"]
    if len(cells) < 3:
        raise SourceFormatError(path, 1, "three columns (strain id, fitness, standard error), no header",
                                f"{len(cells)} column(s)")
    raw = raw.filter(pl.col(cells[0]).is_not_null())
    first = raw[cells[1]][0] if raw.height else None
    if first is not None and pl.Series([first]).str.strip_chars().cast(pl.Float64, strict=False)[0] is None:
        raise SourceFormatError(path, 1, "a data row (Baryshnikova's table has no header): a number in column 2",
                                str(first))
    df = raw.select("_row", pl.col(cells[1]).alias("smf"), pl.col(cells[2]).alias("smf_se"))
    df = df.hstack(baryshnikova_strains(raw[cells[0]])).with_columns(pl.lit(None, dtype=pl.String).alias("screen"))
    return strain_observations(df, "baryshnikova2010", where, {"smf": "column 2 (fitness)",
                                                                "smf_se": "column 3 (standard error)"},
                               source_file=path, strain_column="column 1 (strain id)",
                               strain_expected="a systematic name, or " + _STRAIN_EXPECTED[2:],
                               on_unknown=on_unknown, on_bad_value=on_bad_value, stats=stats)


_costanzo_reader = partial(read_each, read_costanzo2016_smf)


_baryshnikova_reader = partial(read_each, read_baryshnikova2010)


DATASETS = (
    PhenotypeDataset(
        "costanzo2016_smf", "costanzo2016_smf", (COSTANZO_FILE,), _costanzo_reader, labels=COSTANZO_LABELS,
        samples=("costanzo2016_smf/strain_ids_and_single_mutant_fitness.sample.xlsx",),
        description=f"Costanzo et al. 2016 single mutant fitness at 26 and 30 °C, {COSTANZO_FILE}",
        citation="Costanzo et al. 2016, Science 353:aaf1420", one_file=True,
        files=(ReleaseFile(COSTANZO_FILE, COSTANZO_SHA256, "thecellmap.org Costanzo 2016 Data File S1 archive"),)),
    PhenotypeDataset(
        "baryshnikova2010", "baryshnikova2010", BARYSHNIKOVA_FILES, _baryshnikova_reader, labels=BARYSHNIKOVA_LABELS,
        samples=("baryshnikova2010/S1_SMF_standard_100209.sample.txt",),
        description="Baryshnikova et al. 2010 single mutant fitness, Supplementary Data 1 "
                    "(SupplementaryData1_SMF.xls or its text export S1_SMF_standard_100209.txt)",
        citation="Baryshnikova et al. 2010, Nat Methods 7:1017", one_file=True,
        files=(ReleaseFile(BARYSHNIKOVA_FILES[0], BARYSHNIKOVA_SHA256, "Nature Methods supplementary MOESM168"),)),
)
