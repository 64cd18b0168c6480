"""SynLethDB 2.0 yeast synthetic lethality and synthetic rescue pairs -> observations.

``Yeast_SL.csv`` (14,000 rows, sha256 ``091e04db...``) and ``Yeast_SR.csv`` (6,948 rows,
sha256 ``d84fba78...``): comma-separated with a header::

    n1.name | n1.identifier | n2.name | n2.identifier | r.cell_line | r.pubmed_id | r.source |
    r.statistic_score

Each row is one gene pair reported synthetic lethal (SL) or synthetic rescue (SR):
``genes = [n1, n2]``, labels ``synthetic_lethal`` (1) and ``sl_score`` (SynLethDB's
normalised confidence score, defined for SL pairs only) from ``Yeast_SL.csv``,
``synthetic_rescue`` (1) from ``Yeast_SR.csv`` (its score has no published definition
and is not stored). SynLethDB does not say how either gene was perturbed: both are
recorded as deletions (loss of function), so a pair meets the same genotype of the SGA
tables (Costanzo 2016 ``_sn`` x ``_dma``) in a multi-dataset build. The names are gene
names (standard or systematic) mapped to systematic names with the bundled gene table's
names and aliases (``data/sample/genes.tsv``); a name it does not know stays as written
and its rows are counted as naming a gene outside the index. A row naming one gene on
both sides (3 in ``Yeast_SL.csv``) is an unparseable strain (skipped and counted, or an
error with ``--on-unknown-allele error``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.genes import GeneIndex, read_gene_table_tsv
from pipeline.core.paths import SAMPLE_DIR
from pipeline.core.perturbations import CODES
from pipeline.sources.phenotypes.rows import read_delimited, read_each, require_columns, strain_observations
from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile
from pipeline.sources.phenotypes.tables import Located, OnBadValue, OnUnknown

SL_FILE, SL_SHA256 = "Yeast_SL.csv", "091e04dbab80044324970feea4a5fc933df0ab7c887042fd87419173129c56ca"
SR_FILE, SR_SHA256 = "Yeast_SR.csv", "d84fba780cfa55d59f4844324f5c203f85f09bcfe50bfff6de06169ade2a18f4"
HEADER = ["n1.name", "n1.identifier", "n2.name", "n2.identifier", "r.cell_line", "r.pubmed_id", "r.source",
          "r.statistic_score"]
COLUMNS = {"n1": ("n1.name",), "n2": ("n2.name",), "score": ("r.statistic_score",), "source": ("r.source",)}
SL_LABELS = (Label("synthetic_lethal", "0/1", "1: the pair is reported synthetic lethal (SynLethDB 2.0)"),
             Label("sl_score", "0..1", "SynLethDB's normalised confidence score of the SL pair"))
SR_LABELS = (Label("synthetic_rescue", "0/1", "1: the pair is reported synthetic rescue (SynLethDB 2.0)"),)


@cache
def _names() -> GeneIndex:
    return GeneIndex.from_table(read_gene_table_tsv(SAMPLE_DIR / "genes.tsv"))


def systematic_names(names: pl.Series) -> pl.Series:
    """Systematic names for gene names (standard, alias or systematic; case-insensitive) by the
    bundled gene table; a name it does not know is returned upper-cased, as written."""
    index = _names()
    idx = index.lookup_names(names)
    ids = index.table["id"].to_numpy()
    up = names.cast(pl.String).str.strip_chars().str.to_uppercase()
    return pl.Series(np.where(idx >= 0, ids[np.maximum(idx, 0)], up.fill_null("").to_numpy()), dtype=pl.String)


def read_synlethdb(path: str | Path, kind: str, *, on_unknown: OnUnknown = "error",
                   stats: MutableMapping[str, int] | None = None, on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of ``Yeast_SL.csv`` (``kind="sl"``) or ``Yeast_SR.csv`` (``"sr"``); see the module doc."""
    if kind not in ("sl", "sr"):
        raise ValueError(f"kind must be 'sl' or 'sr', got {kind!r}")
    path = str(path)
    raw = read_delimited(path, ",")
    cols = require_columns(path, 1, [c for c in raw.columns if c != "_row"], COLUMNS, "SynLethDB Yeast_SL/SR.csv")
    g1, g2 = systematic_names(raw[cols["n1"]]), systematic_names(raw[cols["n2"]])
    df = pl.DataFrame({"_row": raw["_row"], "_g1": g1, "_g2": g2}).select(
        "_row",
        pl.concat_list("_g1", "_g2").alias("genes"),
        pl.concat_list(pl.lit(CODES["deletion"], dtype=pl.UInt8), pl.lit(CODES["deletion"], dtype=pl.UInt8))
        .alias("types"),
        pl.when((pl.col("_g1") == "") | (pl.col("_g2") == "")).then(pl.lit("an empty gene name"))
        .when(pl.col("_g1") == pl.col("_g2")).then(pl.format("one gene ({}) on both sides of the pair", "_g1"))
        .alias("problem"),
        pl.lit(None, dtype=pl.String).alias("screen"))
    if kind == "sl":
        df = df.with_columns(pl.lit("1").alias("synthetic_lethal"), raw[cols["score"]].alias("sl_score"))
        labels = {"synthetic_lethal": "(every row)", "sl_score": "r.statistic_score"}
    else:
        df = df.with_columns(pl.lit("1").alias("synthetic_rescue"))
        labels = {"synthetic_rescue": "(every row)"}
    return strain_observations(df, f"synlethdb_{kind}", Located(path, 1), labels, source_file=path,
                               strain_column="n1.name / n2.name", strain_expected="two different gene names",
                               on_unknown=on_unknown, on_bad_value=on_bad_value, stats=stats)


def _reader(kind: str) -> Any:
    return partial(read_each, read_synlethdb, kind=kind)


_OBTAIN = "SynLethDB 2.0 website, download page, species S. cerevisiae"
DATASETS = (
    PhenotypeDataset("synlethdb_sl", "synlethdb", (SL_FILE,), _reader("sl"), labels=SL_LABELS,
                     samples=("synlethdb/Yeast_SL.sample.csv",),
                     description=f"SynLethDB 2.0 yeast synthetic lethal pairs, {SL_FILE} (14,000 rows)",
                     citation="Wang et al. 2022, Nucleic Acids Res 50:D1256 (SynLethDB 2.0)", one_file=True,
                     files=(ReleaseFile(SL_FILE, SL_SHA256, _OBTAIN),)),
    PhenotypeDataset("synlethdb_sr", "synlethdb", (SR_FILE,), _reader("sr"), labels=SR_LABELS,
                     samples=("synlethdb/Yeast_SR.sample.csv",),
                     description=f"SynLethDB 2.0 yeast synthetic rescue pairs, {SR_FILE} (6,948 rows)",
                     citation="Wang et al. 2022, Nucleic Acids Res 50:D1256 (SynLethDB 2.0)", one_file=True,
                     files=(ReleaseFile(SR_FILE, SR_SHA256, _OBTAIN),)),
)
