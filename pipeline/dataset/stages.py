"""The dataset stage of a build: phenotype tables -> one Parquet dataset over the graph's genes.

Stage functions (run by :func:`pipeline.sequence.run_build`, from the CLI and the
flow alike): ``plan_dataset`` (find and hash inputs, decide whether the dataset is
current) -> ``build_dataset`` (read lazily, encode over the graph store's gene
index, aggregate replicates, assign ids and splits, publish atomically).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.buildkey import build_key, is_current
from pipeline.core.errors import SourceFormatError, SourceMissingError
from pipeline.core.inputs import describe_input
from pipeline.core.paths import SAMPLE_DIR, Workspace
from pipeline.core.runner import default_workers
from pipeline.core.version import __version__
from pipeline.dataset import labels as vector_labels
from pipeline.dataset.config import DatasetConfig
from pipeline.dataset.encode import (
    UNKNOWN,
    aggregate,
    assign_ids_and_splits,
    collect_observations,
    encode,
    extra_labels,
    split_long,
)
from pipeline.dataset.onepass import read_encoded
from pipeline.dataset.sources import DATASETS, find_dataset_files, packaged_input
from pipeline.dataset.store import FORMAT_VERSION, open_dataset, write_dataset
from pipeline.graph.store import open_graph
from pipeline.sources.download import verify_input

log = logging.getLogger("pipeline.build")


@dataclass
class DatasetPlan:
    names: list[str]
    graph_store: Path
    store: Path
    inputs: dict[str, list[Any]]  # name -> [InputFile]
    parameters: dict[str, Any]
    key: str
    up_to_date: bool


def _dataset_files(raw: Path, name: str, allow_samples: bool = True,
                   cache: Path | None = None) -> tuple[list[Path], str]:
    """The table files of dataset ``name`` and their origin: raw; else the real release file an
    installed package ships (``package``, copied under ``cache``); else (``allow_samples``: only
    for the default raw folder) the bundled samples; else a SourceMissingError naming the path."""
    ds = DATASETS[name]
    files = find_dataset_files(ds, raw)
    if files:
        return files, "raw"
    packaged = packaged_input(ds, cache if cache is not None else raw / ".package")
    if packaged is not None:
        log.info("no %s file in %s: using %s, shipped in the installed %s package (real data)", name,
                 raw / ds.subdir, packaged.name, ds.packaged.package if ds.packaged else "")
        return [packaged], "package"
    if not allow_samples:
        raise SourceMissingError(f"{name}: --raw {raw}: expected {ds.description} in {raw / ds.subdir}/")
    samples = [SAMPLE_DIR / s for s in ds.samples]
    if samples and all(p.exists() for p in samples):
        log.warning("no real %s table in %s: using the SYNTHETIC sample %s (put %s there)", name,
                    raw / ds.subdir, ", ".join(str(p) for p in samples), ds.description)
        return samples, "sample"
    hint = f" (or install the {ds.packaged.package} package, which ships it)" if ds.packaged else ""
    raise SourceMissingError(f"{name}: no input found; put {ds.description} in {raw / ds.subdir}/{hint}")


def plan_dataset(cfg: DatasetConfig, ws: Workspace) -> DatasetPlan:
    """Resolve and hash the phenotype tables; the dataset is current if its key matches."""
    graph_store = ws.graph_store
    names = sorted(dict.fromkeys(cfg.datasets))
    inputs = {}
    for name in names:
        files, origin = _dataset_files(ws.raw, name, ws.samples, ws.root / ".inputs")
        # hashed on parallel threads (hashlib releases the GIL): the Costanzo tables are 1.9 GB
        with ThreadPoolExecutor(max(1, min(len(files), default_workers()))) as ex:
            described = list(ex.map(lambda f, n=name, o=origin: describe_input(n, f, o), files))
        inputs[name] = [verify_input(f, ws.raw, dict(DATASETS[name].releases)) for f in described]
    graph_fp = open_graph(graph_store).fingerprint
    params = {"datasets": names, "replicates": cfg.replicates, "on_unknown_allele": cfg.on_unknown_allele,
              "on_bad_value": cfg.on_bad_value,
              "split_seed": cfg.split_seed,
              "split_fractions": list(cfg.split_fractions), "format_version": FORMAT_VERSION}
    if any(n in vector_labels.VECTOR_SOURCES for n in names):  # the label store's layout is part of the key
        params["vector_labels_format"] = vector_labels.FORMAT_VERSION
    key = build_key({"params": params, "genes": graph_fp, "version": __version__,
                     "inputs": {k: [f.sha256 for f in v] for k, v in inputs.items()}})
    store = ws.dataset_store
    current = is_current(store, key, lambda p: open_dataset(p).manifest, ws.force)
    return DatasetPlan(names, graph_store, store, inputs, params, key, current)


def build_dataset(plan: DatasetPlan) -> Path:
    """Read, encode, aggregate, split and publish the dataset; counts go to the log and manifest."""
    t0 = time.perf_counter()
    genes = open_graph(plan.graph_store).id_index  # the graph's own index: both artifacts agree by construction
    policy, bad = plan.parameters["on_unknown_allele"], plan.parameters["on_bad_value"]
    reader_stats: dict[str, dict[str, int]] = {n: {} for n in plan.names}
    parts, long_sides = [], []
    for i, n in enumerate(plan.names):
        fmt = DATASETS[n].table_format()
        lazy = []
        for f in plan.inputs[n]:
            # text tables in one pass (pipeline.dataset.onepass); the rest through the reader
            done = read_encoded(f.path, fmt, genes, i, on_unknown=policy, stats=reader_stats[n],
                                on_bad_value=bad) if fmt else None
            if done is None:
                lazy.append(Path(f.path))
            else:
                parts.append(done)
        if lazy:  # scores parsed once, by the collect below; the validation pass checks strains only
            enc = encode(DATASETS[n].reader(lazy, policy, reader_stats[n], False, bad), genes, tag=i,
                         long=DATASETS[n].long_strains)
            try:
                part, side = split_long(collect_observations(enc))
            except pl.exceptions.PolarsError as e:  # the reader's own message names file, line, column
                raise (_value_error(plan, policy) or e) from None
            parts.append(part)
            if side is not None:
                long_sides.append(side)
    obs = _concat_observations(parts)
    del parts
    long_strains = (pl.concat(long_sides).unique("key", maintain_order=True) if long_sides else None)
    agg = aggregate(obs, plan.parameters["replicates"])
    del obs
    # aggregate() puts the unknown-gene keys last: the known ones are a zero-copy slice
    n_known = int(np.searchsorted(agg["key"].to_numpy() >= UNKNOWN, True))
    unknown = agg.slice(n_known)
    dropped = dict.fromkeys(plan.names, 0)
    for k, n_rows in zip(unknown["key"].to_list(), unknown["n_rows"].to_list()):
        dropped[plan.names[k - int(UNKNOWN)]] += int(n_rows)
    agg = agg.slice(0, n_known)
    samples = assign_ids_and_splits(agg, len(genes), plan.parameters["split_seed"],
                                    tuple(plan.parameters["split_fractions"]), sources=plan.names,
                                    long_strains=long_strains)
    del agg
    per_source = {n: {**reader_stats[n], "dropped_unknown_gene": dropped[n]} for n in plan.names}
    rows_kept = sum(v.get("rows", 0) - v["dropped_unknown_gene"] for v in per_source.values())
    split_counts = {c: {lab: int((samples[c] == code).sum()) for lab, code in (("train", 0), ("val", 1), ("test", 2))}
                    for c in samples.columns if c.startswith("split_")}
    manifest = {
        "build_key": plan.key,
        "parameters": plan.parameters,
        "inputs": {k: [asdict(f) for f in v] for k, v in plan.inputs.items()},
        "synthetic_inputs": any(f.synthetic or f.origin == "sample" for v in plan.inputs.values() for f in v),
        "graph_store": str(plan.graph_store),
        "counts": {"sources": per_source, "rows_kept": rows_kept, "samples": samples.height,
                   "merged_replicate_rows": rows_kept - samples.height, "splits": split_counts,
                   "labels": label_counts(samples, _label_names(plan.names, samples.columns))},
        "labels": label_provenance(plan.names, samples.columns),
    }
    for src, c in per_source.items():
        log.info("%s: read %d rows; skipped %d with an unparseable strain, %d naming a gene outside the gene "
                 "index; HO marker removed from %d queries", src, c.get("rows_read", 0), c.get("skipped_unparsed", 0),
                 c["dropped_unknown_gene"], c.get("markers_removed", 0))
    log.info("dataset: %d samples from %d rows (%d replicate rows merged, policy %s); splits %s",
             samples.height, rows_kept, rows_kept - samples.height, plan.parameters["replicates"], split_counts)
    tables = vector_labels.vector_tables(plan.names, plan.inputs)  # read by the pass above: cached
    path = write_dataset(plan.store, samples, genes, manifest, extra=lambda tmp: {
        "vector_labels": vector_labels.write_labels(
            tmp, samples.select("sample_id", "gene_idx", "types", pl.col("^split_.*$")), tables, genes)}
        if tables else {})
    log.info("published %s (%.1fs)", path, time.perf_counter() - t0)
    return path


def _concat_observations(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """One frame of every input's observations. Inputs of datasets with other labels have other
    columns: the union, a label absent from an input null there (a strain measured by several
    datasets then gets every dataset's labels when its replicates merge)."""
    if len(parts) == 1:
        return parts[0]
    same = all(p.columns == parts[0].columns for p in parts)
    if same:
        return pl.concat(parts, how="vertical", rechunk=False)
    cols = [c for c in parts[0].columns if c not in set(extra_labels(parts[0].columns))]
    labels = list(dict.fromkeys(c for p in parts for c in extra_labels(p.columns)))
    return pl.concat([p.with_columns(pl.lit(None, dtype=pl.Float32).alias(c) for c in labels if c not in p.columns)
                      .select(*cols, *labels) for p in parts], how="vertical", rechunk=False)


def _label_names(names: list[str], columns: list[str]) -> list[str]:
    """The label columns of the built samples, in registry order (each dataset's declared labels)."""
    seen = [lab.name for n in names for lab in DATASETS[n].labels]
    return [c for c in dict.fromkeys(seen) if c in columns]


def label_provenance(names: list[str], columns: list[str]) -> dict[str, Any]:
    """Per label column of the samples: unit, meaning and the datasets that supply it (the
    ``labels`` section of the manifest; a sample's own contributors are its ``source``)."""
    out: dict[str, Any] = {}
    for n in names:
        for lab in DATASETS[n].labels:
            if lab.name in columns:
                entry = out.setdefault(lab.name, {"unit": lab.unit, "meaning": lab.meaning, "datasets": []})
                entry["datasets"].append(n)
    return out


def label_counts(samples: pl.DataFrame, labels: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """Per label: samples measuring it (non-null) per split column and label (train/val/test)."""
    splits = [c for c in samples.columns if c.startswith("split_")]
    if not labels or not splits:
        return {}
    # numpy bincounts over the measured rows of each label: a few small temporaries, no hash table
    codes = {sp: samples[sp].to_numpy() for sp in splits}
    out: dict[str, dict[str, dict[str, int]]] = {}
    for lab in labels:
        col = samples[lab]
        measured = None if col.null_count() == 0 else col.is_not_null().to_numpy()
        out[lab] = {}
        for sp, c in codes.items():
            got = np.bincount(c if measured is None else c[measured], minlength=3)
            out[lab][sp] = {name: int(got[code]) for name, code in (("train", 0), ("val", 1), ("test", 2))}
    return out


def _value_error(plan: DatasetPlan, policy: str) -> Exception | None:
    """The readers' own error for a value that does not parse (file, line, column), found by
    reading each input again with its scores checked; None if none of them fails."""
    for n in plan.names:
        for f in plan.inputs[n]:
            try:
                DATASETS[n].reader([Path(f.path)], policy, {}, True, plan.parameters["on_bad_value"])
            except SourceFormatError as err:
                return err
    return None


def summarize_dataset(path: Path) -> str:
    """Samples per source and per split, for the end of a build."""
    m = open_dataset(path).manifest
    c = m["counts"]
    lines = [f"{path}  samples: {c['samples']:,}" + ("  (SYNTHETIC inputs)" if m.get("synthetic_inputs") else "")]
    synthetic = {k for k, files in m["inputs"].items() if any(f.get("synthetic") for f in files)}
    for src, v in c["sources"].items():
        lines.append(f"  {src:14s} rows read {v.get('rows_read', 0):>12,}  dropped (bad value) "
                     f"{v.get('dropped_bad_value', 0):>8,}  skipped (strain unparseable) "
                     f"{v.get('skipped_unparsed', 0):>8,}  (gene not in index) {v['dropped_unknown_gene']:>8,}"
                     + ("  SYNTHETIC" if src in synthetic else ""))
    lines.append(f"  replicate rows merged {c['merged_replicate_rows']:,} (policy {m['parameters']['replicates']})")
    for name, sc in c["splits"].items():
        lines.append(f"  {name:20s} " + "  ".join(f"{k} {sc[k]:,}" for k in ("train", "val", "test")))
    lines += vector_labels.summary_lines(m.get("vector_labels") or {})
    labels = c.get("labels") or {}
    if labels:
        split = "split_random" if any("split_random" in v for v in labels.values()) else None
        lines.append(f"  labels (samples measured per {split or 'split'} label; datasets):")
        for lab, per in labels.items():
            sc = per.get(split) if split else next(iter(per.values()))
            src = ",".join(m.get("labels", {}).get(lab, {}).get("datasets", []))
            lines.append(f"    {lab:22s} " + "  ".join(f"{k} {sc[k]:>9,}" for k in ("train", "val", "test"))
                         + f"  ({src})")
    return "\n".join(lines)
