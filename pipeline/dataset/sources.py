"""The registry of phenotype datasets ``--dataset`` names: :data:`DATASETS`.

Each entry is a :class:`~pipeline.sources.phenotypes.spec.PhenotypeDataset` (files under
``data/raw/<subdir>/``, reader, labels, samples); a new dataset is one module under
``pipeline/sources/phenotypes/`` exposing ``DATASET`` (or ``DATASETS``), listed in
:data:`_MODULES`. ``python -m pipeline.build --list-datasets`` prints the registry.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from pathlib import Path

from pipeline.core.errors import AmbiguousSourceError, SourceFormatError
from pipeline.sources.phenotypes.spec import PhenotypeDataset

#: Dataset modules under pipeline.sources.phenotypes, each exposing DATASET or DATASETS.
_MODULES = ("kuzmin", "costanzo", "essentiality", "smf", "synlethdb", "costanzo2021", "kemmeren", "sameith", "ohya")


def _registry() -> dict[str, PhenotypeDataset]:
    out: dict[str, PhenotypeDataset] = {}
    for m in _MODULES:
        mod = importlib.import_module(f"pipeline.sources.phenotypes.{m}")
        for d in getattr(mod, "DATASETS", None) or (mod.DATASET,):
            if d.name in out:
                raise ValueError(f"dataset {d.name!r} registered twice")
            out[d.name] = d
    return out


DATASETS: dict[str, PhenotypeDataset] = _registry()


def find_dataset_files(ds: PhenotypeDataset, raw: Path) -> list[Path]:
    """The table files of ``ds`` under ``raw/<subdir>`` (hidden files excluded), sorted; for a
    ``one_file`` source, two matches are an :class:`~pipeline.core.errors.AmbiguousSourceError`."""
    base = raw / ds.subdir
    if not base.is_dir():
        return []
    hits = sorted({p for pat in ds.patterns for p in base.glob(pat) if not p.name.startswith(".")})
    if ds.one_file and len(hits) > 1:
        raise AmbiguousSourceError(base, f"{ds.name} table ({ds.description})", hits)
    return hits


def _write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def packaged_input(ds: PhenotypeDataset, cache: Path) -> Path | None:
    """The release file ``ds`` ships inside an installed package (:attr:`PhenotypeDataset.packaged`),
    copied once to ``cache/<name>/<file>`` (a zip member extracted, atomically), or None if the
    package is not installed."""
    pf = ds.packaged
    src = pf.locate() if pf else None
    if pf is None or src is None:
        return None
    if pf.member is None:
        return src
    dest = cache / ds.name / Path(pf.member).name
    stamp = f"{src.stat().st_size}:{src.stat().st_mtime_ns}"
    marker = dest.with_name(dest.name + ".from")
    if dest.is_file() and marker.is_file() and marker.read_text() == f"{src}:{stamp}":
        return dest
    try:
        with zipfile.ZipFile(src) as zf:
            data = zf.read(pf.member)
    except (zipfile.BadZipFile, KeyError) as e:
        raise SourceFormatError(src, None, f"a zip holding {pf.member} ({ds.description})", str(e)) from e
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(dest, data)
    _write_atomic(marker, f"{src}:{stamp}".encode())
    return dest


def describe_registry() -> str:
    """The registry as text: per dataset its description, labels with units, files and sample kind
    (``python -m pipeline.build --list-datasets``)."""
    lines = []
    for d in DATASETS.values():
        lines.append(f"{d.name}: {d.description}" + (f" [{d.citation}]" if d.citation else ""))
        for lab in d.labels:
            lines.append(f"    label {lab.describe()}")
        for f in d.files:
            lines.append(f"    file  {f.name}  sha256 {f.sha256 or '(none published)'}"
                         + (f"  ({f.obtain})" if f.obtain else ""))
        lines.append(f"    under data/raw/{d.subdir}/: {', '.join(d.patterns)}")
        kind = d.sample_kind()
        where = {"package": f"none needed: the installed {d.packaged.package if d.packaged else ''} package "
                            "ships the real file",
                 "none": "none (put the release files under data/raw)"}.get(kind, f"{kind}: {', '.join(d.samples)}")
        lines.append(f"    sample {where}")
    return "\n".join(lines)
