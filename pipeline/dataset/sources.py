"""The phenotype tables ``--dataset`` names: their files under ``data/raw/<name>/``, readers and samples."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import AmbiguousSourceError

# (files, on_unknown_allele, stats dict to fill, check_values, on_bad_value) -> observations
# (pipeline.core.perturbations.OBSERVATION_SCHEMA); check_values, on_bad_value: see pipeline.sources.phenotypes.tables
DatasetReader = Callable[[list[Path], str, dict, bool, str], "pl.LazyFrame"]  # noqa: F821 - polars imported lazily


@dataclass(frozen=True)
class DatasetSource:
    name: str
    subdir: str
    patterns: tuple[str, ...]  # globs under raw/<subdir>; every match is read (but see one_file)
    reader: DatasetReader
    samples: tuple[str, ...] = ()  # paths relative to data/sample
    description: str = ""
    #: "module:NAME" of the TableFormat of a text table (the dataset stage's one-pass reader,
    #: pipeline.dataset.onepass); None for other formats (xlsx), read by ``reader`` only
    text_format: str | None = None
    #: the patterns are spellings of one file (plain, gzip): two matches are an error, not two inputs
    one_file: bool = False
    #: (file name, sha256) of each published release file: an input is the verified release
    #: or a local variant (:func:`pipeline.core.inputs.mark_release`)
    releases: tuple[tuple[str, str], ...] = ()

    def table_format(self) -> Any:
        if self.text_format is None:
            return None
        module, name = self.text_format.split(":")
        return getattr(importlib.import_module(module), name)


def _kuzmin2018(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True,
                on_bad_value: str = "error"):
    import polars as pl

    from pipeline.sources.phenotypes.kuzmin import scan_kuzmin2018
    return pl.concat([scan_kuzmin2018(p, on_unknown=on_unknown, stats=stats, check_values=check_values,
                                      on_bad_value=on_bad_value) for p in paths], how="vertical")


def _kuzmin2020(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True,
                on_bad_value: str = "error"):
    import polars as pl

    from pipeline.sources.phenotypes.kuzmin import read_kuzmin2020
    return pl.concat([read_kuzmin2020(p, on_unknown=on_unknown, stats=stats, check_values=check_values,
                                      on_bad_value=on_bad_value) for p in paths], how="vertical")


def _costanzo2016(paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True,
                  on_bad_value: str = "error"):
    from pipeline.sources.phenotypes.costanzo import scan_costanzo2016
    return scan_costanzo2016(paths, on_unknown=on_unknown, stats=stats, check_values=check_values,
                             on_bad_value=on_bad_value)


DATASETS: dict[str, DatasetSource] = {d.name: d for d in [
    DatasetSource("kuzmin2018", "kuzmin2018", ("aao1729_data_s1.tsv", "aao1729_data_s1.tsv.gz"), _kuzmin2018,
                  samples=("kuzmin2018/aao1729_data_s1.sample.tsv",),
                  description="Kuzmin et al. 2018 (Science) Data S1, aao1729_data_s1.tsv",
                  text_format="pipeline.sources.phenotypes.kuzmin:KUZMIN2018", one_file=True,
                  releases=(("aao1729_data_s1.tsv",
                              "c82b60f98590071fcb07b74b672958a5863b58e03b78631e6235cb664ee82afb"),)),
    DatasetSource("kuzmin2020", "kuzmin2020", ("*.xlsx",), _kuzmin2020,
                  description="Kuzmin et al. 2020 (Science) Tables S1 and S3 (xlsx)",
                  releases=(
                      ("aaz5667-Table-S1.xlsx", "4180577d53d5012c6c747227cbeca8a2d09f59bd8028d3bb2f5fd84601c77def"),
                      ("aaz5667-Table-S3.xlsx", "625420bed5de3563c9f1b4f1909a627aa4d8dd1b629c3f8a3596eb99e132c54f"))),
    DatasetSource("costanzo2016", "costanzo2016",
                  ("SGA_ExE.txt", "SGA_NxN.txt", "SGA_ExN_NxE.txt", "SGA_DAmP.txt"), _costanzo2016,
                  samples=tuple(f"costanzo2016/SGA_{k}.sample.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")),
                  description="Costanzo et al. 2016 (Science) SGA tables SGA_ExE/NxN/ExN_NxE/DAmP.txt",
                  text_format="pipeline.sources.phenotypes.costanzo:COSTANZO2016",
                  releases=(("SGA_ExE.txt", "84dfe41a09192479842dc0055373c35afcb5246c8e11bb9724326615f5162f7d"),
                            ("SGA_ExN_NxE.txt", "d8b183a80da1d52bbf66c134d4707c1c243c2cf1689859aee72c28e4d4adffca"),
                            ("SGA_NxN.txt", "c413d1bfab7e79a2db142ba3e43572411216f24c23df71bb1e180163da1304ae"),
                            ("SGA_DAmP.txt", "581eafbc7a30155f5af7777101e6f94cfd03fcf0242ee76ecce47aa88d75ebc8"))),
]}


def find_dataset_files(ds: DatasetSource, raw: Path) -> list[Path]:
    """The table files of ``ds`` under ``raw/<subdir>`` (hidden files excluded), sorted; for a
    ``one_file`` source, two matches are an :class:`~pipeline.core.errors.AmbiguousSourceError`."""
    base = raw / ds.subdir
    if not base.is_dir():
        return []
    hits = sorted({p for pat in ds.patterns for p in base.glob(pat) if not p.name.startswith(".")})
    if ds.one_file and len(hits) > 1:
        raise AmbiguousSourceError(base, f"{ds.name} table ({ds.description})", hits)
    return hits
