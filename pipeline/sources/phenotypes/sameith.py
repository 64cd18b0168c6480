"""Sameith et al. 2015 (BMC Biology 13:112) expression profiles of GSTF single and double deletion mutants.

Released files (facts from TorchCell 1.8.4's loader): GEO ``GSE42536_family.soft.gz`` (287
arrays: 144 single-deletion titles such as ``dot6-del-1-a`` and 143 double-deletion titles
joining the genes with ``+``, ``rpn4-del+ydr026c-del``; the same two-colour SOFT layout as
Kemmeren 2014, see :mod:`pipeline.sources.phenotypes.kemmeren`) and Additional file 1,
``12915_2015_222_MOESM1_ESM.xlsx``, whose sheets pair every gene symbol of a title with its
systematic name: "List of 215 GSTFs" and "Single mutants - info" (``systematic name``,
``gene symbol``), "Double mutants - info" (``GSTF1,           systematic name`` /
``GSTF1,           gene symbol`` and the GSTF2 pair, spaced as released; names written
``Yil130W`` / ``Asg1``, compared upper-cased).

Stored as label ``sameith2015.expression``: one vector per strain (single or double
deletion), the same statistics as Kemmeren's (mean within-array log2 ratio over the
strain's arrays, two-sided t-test p-value).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import partial
from pathlib import Path

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import CODES
from pipeline.sources.phenotypes.kemmeren import (
    crosswalk_resolver,
    read_crosswalk,
    read_expression_soft,
    vector_reader,
)

WORKBOOK = "12915_2015_222_MOESM1_ESM.xlsx"
_SPACE = " " * 11
#: (sheet, orf column, symbol column) of the release's workbook
WORKBOOK_SHEETS = (
    ("List of 215 GSTFs", "systematic name", "gene symbol"),
    ("Single mutants - info", "systematic name", "gene symbol"),
    ("Double mutants - info", f"GSTF1,{_SPACE}systematic name", f"GSTF1,{_SPACE}gene symbol"),
    ("Double mutants - info", f"GSTF2,{_SPACE}systematic name", f"GSTF2,{_SPACE}gene symbol"),
)


def read_sameith2015(paths: list[Path], stats: MutableMapping[str, int] | None = None):
    """The ``sameith2015.expression`` fields (columns, strains, types, values, p-values, stats)."""
    stats = {} if stats is None else stats
    books = [p for p in paths if p.name.lower().endswith(".xlsx")]
    softs = [p for p in paths if p not in books]
    if not softs:
        raise SourceFormatError(paths[0] if paths else "sameith2015", None, "GEO family SOFT file "
                                                                            "GSE42536_family.soft.gz")
    names: dict[str, str] = {}
    for b in books:
        names.update(read_crosswalk(b, WORKBOOK_SHEETS))
    genes, strains, values, p = read_expression_soft(softs, crosswalk_resolver(names), stats)
    stats["double_mutants"] = sum(len(s) == 2 for s in strains)
    return {"columns": genes, "genes": strains, "types": [[CODES["deletion"]] * len(s) for s in strains],
            "values": values, "pvalue": p, "stats": dict(stats)}


_reader = partial(vector_reader, read_sameith2015, "sameith2015")


def _dataset():
    from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile

    return PhenotypeDataset(
        "sameith2015", "sameith2015", ("GSE42536_family.soft*", "12915_2015_222_MOESM1_ESM*.xlsx"), _reader,
        labels=(Label("sameith2015.expression", "log2(mutant / reference pool), per gene",
                      "vector label (dataset/labels.zarr, one column per platform gene, with p-values): single and "
                      "double GSTF deletion mutants, computed as kemmeren2014.expression"),),
        samples=("sameith2015/GSE42536_family.sample.soft.gz", "sameith2015/12915_2015_222_MOESM1_ESM.sample.xlsx"),
        description="Sameith et al. 2015 GSTF single and double deletion expression (GEO GSE42536 family SOFT "
                    "file and Additional file 1): vector label sameith2015.expression [log2 ratio, p-values]",
        citation="Sameith et al. 2015, BMC Biology 13:112", long_strains=False,
        files=(ReleaseFile("GSE42536_family.soft.gz",
                           "f8842af9768043fde560fa7cab737cde2fca0463c4b655511d54678d7b85cc7d",
                           "GEO: ftp.ncbi.nlm.nih.gov/geo/series/GSE42nnn/GSE42536/soft/"),
               ReleaseFile(WORKBOOK, None, "BMC Biology Additional file 1")))


DATASET = _dataset()
