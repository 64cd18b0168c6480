"""The phenotype tables ``--dataset`` names: their files under ``data/raw/<name>/``, readers and samples."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (files, on_unknown_allele, stats dict to fill, check_values) -> observations
# (pipeline.core.perturbations.OBSERVATION_SCHEMA); check_values: see pipeline.sources.phenotypes.tables
DatasetReader = Callable[[list[Path], str, dict, bool], "pl.LazyFrame"]  # noqa: F821 - polars imported lazily


@dataclass(frozen=True)
class DatasetSource:
    name: str
    subdir: str
    patterns: tuple[str, ...]  # globs under raw/<subdir>; every match is read
    reader: DatasetReader
    samples: tuple[str, ...] = ()  # paths relative to data/sample
    description: str = ""
    #: "module:NAME" of the TableFormat of a text table (the dataset stage's one-pass reader,
    #: pipeline.dataset.onepass); None for other formats (xlsx), read by ``reader`` only
    text_format: str | None = None

    def table_format(self) -> Any:
        if self.text_format is None:
            return None
        module, name = self.text_format.split(":")
        return getattr(importlib.import_module(module), name)


def _kuzmin2018(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True):
    import polars as pl

    from pipeline.sources.phenotypes.kuzmin import scan_kuzmin2018
    return pl.concat([scan_kuzmin2018(p, on_unknown=on_unknown, stats=stats, check_values=check_values)
                      for p in paths], how="vertical")


def _kuzmin2020(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True):
    import polars as pl

    from pipeline.sources.phenotypes.kuzmin import read_kuzmin2020
    return pl.concat([read_kuzmin2020(p, on_unknown=on_unknown, stats=stats, check_values=check_values)
                      for p in paths], how="vertical")


def _costanzo2016(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True):
    from pipeline.sources.phenotypes.costanzo import scan_costanzo2016
    return scan_costanzo2016(paths, on_unknown=on_unknown, stats=stats, check_values=check_values)


DATASETS: dict[str, DatasetSource] = {d.name: d for d in [
    DatasetSource("kuzmin2018", "kuzmin2018", ("aao1729_data_s1.tsv", "aao1729_data_s1.tsv.gz"), _kuzmin2018,
                  samples=("kuzmin2018/aao1729_data_s1.sample.tsv",),
                  description="Kuzmin et al. 2018 (Science) Data S1, aao1729_data_s1.tsv",
                  text_format="pipeline.sources.phenotypes.kuzmin:KUZMIN2018"),
    DatasetSource("kuzmin2020", "kuzmin2020", ("*.xlsx",), _kuzmin2020,
                  description="Kuzmin et al. 2020 (Science) Tables S1 and S3 (xlsx)"),
    DatasetSource("costanzo2016", "costanzo2016",
                  ("SGA_ExE.txt", "SGA_NxN.txt", "SGA_ExN_NxE.txt", "SGA_DAmP.txt"), _costanzo2016,
                  samples=tuple(f"costanzo2016/SGA_{k}.sample.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")),
                  description="Costanzo et al. 2016 (Science) SGA tables SGA_ExE/NxN/ExN_NxE/DAmP.txt",
                  text_format="pipeline.sources.phenotypes.costanzo:COSTANZO2016"),
]}


def find_dataset_files(ds: DatasetSource, raw: Path) -> list[Path]:
    base = raw / ds.subdir
    if not base.is_dir():
        return []
    return sorted({p for pat in ds.patterns for p in base.glob(pat) if not p.name.startswith(".")})
