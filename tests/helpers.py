"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

from pipeline.core.genes import GeneIndex, conform
from pipeline.sources.interactions.string import HEADER

GENE_IDS = ["YAL001C", "YAL002W", "YAL003W", "YBR001C", "YCR002C", "Q0010"]


def gene_index(ids=GENE_IDS) -> GeneIndex:
    return GeneIndex.from_table(conform(pl.DataFrame({"id": list(ids)})))


def write_gene_list(path: Path, ids=GENE_IDS) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


def string_rows() -> list[list]:
    """A tiny STRING v12 detailed table: both orientations, an unknown id, zero scores."""
    rows = [
        # p1 p2 neighborhood fusion cooccurence coexpression experimental database textmining combined
        ["YAL001C", "YAL002W", 0, 0, 0, 62, 0, 0, 166, 200],
        ["YAL002W", "YAL001C", 0, 0, 0, 62, 0, 0, 166, 200],
        ["YAL001C", "YBR001C", 150, 0, 0, 0, 900, 0, 0, 910],
        ["YBR001C", "YAL001C", 150, 0, 0, 0, 900, 0, 0, 910],
        ["YAL003W", "YNOTAGENE", 0, 0, 0, 0, 300, 0, 0, 300],
        ["YNOTAGENE", "YAL003W", 0, 0, 0, 0, 300, 0, 0, 300],
        ["YCR002C", "Q0010", 0, 1000, 0, 0, 0, 720, 0, 999],
        ["Q0010", "YCR002C", 0, 1000, 0, 0, 0, 720, 0, 999],
    ]
    return [[f"4932.{r[0]}", f"4932.{r[1]}", *r[2:]] for r in rows]


def write_string(path: Path, rows=None, header=HEADER, gz=True) -> Path:
    rows = string_rows() if rows is None else rows
    text = " ".join(header) + "\n" + "".join(" ".join(map(str, r)) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path
