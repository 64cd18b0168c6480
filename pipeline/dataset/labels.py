"""Vector labels of a dataset: per-sample vectors (expression profiles, morphology parameters) in Zarr.

A *vector label* is one float32 vector of a fixed width per labelled sample (a deletion
mutant's log-ratios over ~6,200 genes; ~500 CalMorph parameters). Readers
(:mod:`pipeline.sources.phenotypes.kemmeren`, ``sameith``, ``ohya``) return a
:class:`VectorTable` per label: strains (systematic names + type codes) and their rows.
:func:`write_labels` aligns the rows with the dataset's ``sample_id`` and writes them
inside the dataset's staging directory (so they are published, and checksummed in its
manifest, with the samples); :func:`open_labels` reads them back by row windows.

Layout (``storage_layout.md``, "dataset/labels.zarr")::

    labels.zarr/                 attributes: format, format_version, labels {name: spec}
      <name>/row        int32 [n_samples]       row of sample i below, -1: no vector for sample i
      <name>/sample_id  int64 [m]               sample id of each row, ascending
      <name>/values     float32 [m, w]          0.0 where not measured
      <name>/mask       uint8 [m, ceil(w / 8)]  measured: bit j % 8 of byte j // 8 (little bit order)
      <name>/pvalue     float32 [m, w]          (labels with p-values) in [0, 1], 0.0 where not measured
      <name>/columns    string [w]              column names as released
      <name>/column_gene int32 [w]              gene index of a column naming a gene, else -1
      <name>/reference/{mean,sd,n}  [w]         (labels with a wild-type reference) per column

Rows are chunked by whole rows (``chunk_rows`` rows of full width, ~4 MB), so a reader of
a window of samples decodes only the chunks of that window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import zarr
from zarr.codecs import BloscCodec

from pipeline.core.errors import StoreError
from pipeline.core.genes import GeneIndex
from pipeline.core.zarr_store import put_array

log = logging.getLogger("pipeline.build")

FORMAT = "yeast-pipeline.labels"
FORMAT_VERSION = 1
#: the folder inside ``dataset/``
STORE_NAME = "labels.zarr"
#: bytes of one values chunk (whole rows): ~4 MB decodes in a few ms and streams by windows
CHUNK_BYTES = 4 << 20
#: float data is stored raw: measured on the Kemmeren-sized benchmark input, lz4 + byte shuffle saved 9% of
#: the bytes and read 2.5x slower (450-600 MB/s against ~1.5 GB/s); the stream reads every labelled row
#: of its window once per epoch
FLOAT_CODEC = None
MASK_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")


@dataclass
class VectorTable:
    """One vector label as a reader returns it: a row per observed strain.

    ``genes[i]`` / ``types[i]``: the strain of row ``i`` (systematic names, type codes of
    :data:`pipeline.core.perturbations.CODES`); ``values`` float32 [m, w] with NaN where not
    measured; ``pvalue`` the same shape or None; ``columns`` the w column names; ``column_genes``:
    the columns are systematic gene names (mapped to the gene index on write); ``reference``:
    per-column arrays of a wild-type reference (``mean``, ``sd``, ``n``) or empty; ``stats``: the
    reader's counts (``rows_read``, dropped ...), copied to the manifest.
    """

    name: str
    kind: str
    unit: str
    meaning: str
    columns: list[str]
    genes: list[list[str]]
    types: list[list[int]]
    values: np.ndarray
    pvalue: np.ndarray | None = None
    column_genes: bool = False
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.columns)


def chunk_rows(width: int) -> int:
    """Rows per values chunk: the largest power of two with at most :data:`CHUNK_BYTES` of float32.

    >>> chunk_rows(6200), chunk_rows(501), chunk_rows(10**7)
    (128, 2048, 1)
    """
    rows = max(1, CHUNK_BYTES // max(1, 4 * width))
    return min(1 << 12, 1 << (rows.bit_length() - 1))


def pack_mask(measured: np.ndarray) -> np.ndarray:
    """bool [m, w] -> uint8 [m, ceil(w/8)], value j = bit j % 8 of byte j // 8.

    >>> pack_mask(np.array([[True, False, True]])).tolist()
    [[5]]
    """
    return np.packbits(np.asarray(measured, bool), axis=1, bitorder="little")


def unpack_mask(packed: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`pack_mask`: bool [m, width].

    >>> unpack_mask(np.array([[5]], np.uint8), 3).tolist()
    [[True, False, True]]
    """
    return np.unpackbits(packed, axis=1, count=width, bitorder="little").view(bool)


def _strain_keys(gene_idx: pl.Expr, types: pl.Expr) -> pl.Expr:
    """A text key of a strain, ``"g,g|t,t"`` over its (gene index, type) pairs as stored (ascending)."""
    return pl.concat_str([gene_idx.cast(pl.List(pl.String)).list.join(","), pl.lit("|"),
                          types.cast(pl.List(pl.String)).list.join(",")])


def _table_keys(table: VectorTable, genes: GeneIndex) -> tuple[np.ndarray, np.ndarray]:
    """(key text per row, whether every gene of the row is in the index); pairs sorted like the dataset."""
    flat = [g for gs in table.genes for g in gs]
    idx = genes.lookup(pl.Series(flat, dtype=pl.String)) if flat else np.zeros(0, np.int32)
    keys, known, at = [], np.ones(len(table.genes), bool), 0
    for i, (gs, ts) in enumerate(zip(table.genes, table.types, strict=True)):
        pairs = sorted(zip(idx[at:at + len(gs)].tolist(), ts, strict=True))
        at += len(gs)
        if not gs or any(g < 0 for g, _ in pairs):
            known[i] = False
            keys.append("")
            continue
        keys.append(",".join(str(g) for g, _ in pairs) + "|" + ",".join(str(t) for _, t in pairs))
    return np.array(keys, dtype=object), known


def align(table: VectorTable, samples: pl.DataFrame, genes: GeneIndex) -> tuple[np.ndarray, np.ndarray, dict]:
    """The sample id of each row of ``table`` (-1: none) and the rows to keep, one per sample.

    Rows naming a gene outside the index are dropped (``dropped_unknown_gene``); rows whose
    strain is no sample of the dataset (``dropped_no_sample``); replicate rows of one strain
    are merged by the caller (``merged_replicate_rows``). Returns (sample id per row, the
    order of the kept rows by sample id, counts).
    """
    keys, known = _table_keys(table, genes)
    firsts = {int(k.split(",", 1)[0].split("|", 1)[0]) for k in keys[known]}
    cand = samples.lazy().select("sample_id", "gene_idx", "types").filter(
        pl.col("gene_idx").list.first().is_in(sorted(firsts))).select(
        "sample_id", _strain_keys(pl.col("gene_idx"), pl.col("types")).alias("key")).collect()
    lookup = dict(zip(cand["key"].to_list(), cand["sample_id"].to_list(), strict=True))
    sid = np.array([lookup.get(k, -1) if ok else -1 for k, ok in zip(keys, known, strict=True)], np.int64)
    counts = {"dropped_unknown_gene": int((~known).sum()), "dropped_no_sample": int(((sid < 0) & known).sum())}
    return sid, np.argsort(sid, kind="stable"), counts


def _merge(sid: np.ndarray, order: np.ndarray, values: np.ndarray, pvalue: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """One row per sample id: replicate rows averaged (NaN-aware), their p-values the largest."""
    order = order[sid[order] >= 0]
    s = sid[order]
    if len(s) == 0:
        return s, values[:0], None if pvalue is None else pvalue[:0], 0
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    if len(starts) == len(s):  # no replicates: one gather
        return s, values[order], None if pvalue is None else pvalue[order], 0
    v = values[order].astype(np.float64)
    ok = ~np.isnan(v)
    n = np.add.reduceat(ok.astype(np.int32), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.add.reduceat(np.where(ok, v, 0.0), starts, axis=0) / n).astype(np.float32)
    p = None
    if pvalue is not None:
        pp = pvalue[order]
        p = np.fmax.reduceat(pp, starts, axis=0)
    return s[starts], mean, p, int(len(s) - len(starts))


def write_labels(root: Path, samples: pl.DataFrame, tables: list[VectorTable], genes: GeneIndex) -> dict[str, Any]:
    """Write ``tables`` as ``root/labels.zarr`` aligned with ``samples`` (``sample_id``, ``gene_idx``,
    ``types``, and any ``split_*`` columns: labelled samples per split go to the specs); returns the
    manifest section ``{name: spec with counts}``. ``root`` is the dataset's staging directory: the
    files are checksummed and published with it."""
    if not tables:
        return {}
    n = samples.height
    grp = zarr.open_group(str(root / STORE_NAME), mode="w")
    specs: dict[str, Any] = {}
    for t in tables:
        sid, order, counts = align(t, samples, genes)
        s, values, pvalue, merged = _merge(sid, order, t.values, t.pvalue)
        measured = ~np.isnan(values)
        if pvalue is not None:
            measured &= ~np.isnan(pvalue)
        values = np.where(measured, values, np.float32(0))
        rows = chunk_rows(t.width)
        g = grp.create_group(t.name)
        row = np.full(n, -1, np.int32)
        row[s] = np.arange(len(s), dtype=np.int32)
        put_array(g, "row", row)
        put_array(g, "sample_id", s.astype(np.int64))
        m = len(s)
        arr = g.create_array("values", shape=(m, t.width), dtype=np.float32, chunks=(max(1, min(rows, m)), t.width),
                             compressors=FLOAT_CODEC)  # type: ignore[arg-type]
        if m:
            arr[...] = values
        packed = pack_mask(measured)
        arr = g.create_array("mask", shape=packed.shape, dtype=np.uint8,
                             chunks=(max(1, min(rows, m)), packed.shape[1]), compressors=MASK_CODEC)
        if m:
            arr[...] = packed
        if pvalue is not None:
            arr = g.create_array("pvalue", shape=(m, t.width), dtype=np.float32,
                                 chunks=(max(1, min(rows, m)), t.width), compressors=FLOAT_CODEC)  # type: ignore[arg-type]
            if m:
                arr[...] = np.where(measured, pvalue, np.float32(0))
        put_array(g, "columns", np.array(t.columns, dtype=str))
        col_gene = (genes.lookup(pl.Series(t.columns, dtype=pl.String)) if t.column_genes
                    else np.full(t.width, -1, np.int32))
        put_array(g, "column_gene", col_gene)
        for k, v in t.reference.items():
            put_array(g, f"reference/{k}", np.asarray(v))
        specs[t.name] = {
            "kind": t.kind, "unit": t.unit, "meaning": t.meaning, "width": t.width, "rows": m,
            "chunk_rows": rows, "pvalue": pvalue is not None, "reference": sorted(t.reference),
            "columns_are_genes": t.column_genes, "columns_in_gene_index": int((col_gene >= 0).sum()),
            "values_measured": int(measured.sum()),
            "splits": {c: {lab: int((samples[c].to_numpy()[s] == code).sum())
                           for lab, code in (("train", 0), ("val", 1), ("test", 2))}
                       for c in samples.columns if c.startswith("split_")},
            "counts": {**t.stats, **counts, "merged_replicate_rows": merged, "rows": m}}
        log.info("%s: %d rows read; %d vectors stored (width %d, %s); dropped %d naming a gene outside the "
                 "gene index, %d with no sample; %d replicate rows merged", t.name, len(t.genes), m, t.width,
                 "with p-values" if pvalue is not None else "no p-values", counts["dropped_unknown_gene"],
                 counts["dropped_no_sample"], merged)
    grp.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "labels": specs, "n_samples": n})
    return specs


def summary_lines(specs: dict[str, Any]) -> list[str]:
    """One line per vector label for the build summary."""
    out = []
    for name, s in specs.items():
        c = s["counts"]
        out.append(f"  vector label {name}: {s['rows']:,} samples x {s['width']:,} ({s['kind']}, "
                   f"{'p-values, ' if s['pvalue'] else ''}{s['values_measured']:,} values measured); rows read "
                   f"{c.get('rows_read', 0):,}, dropped (gene not in index) {c['dropped_unknown_gene']:,}, "
                   f"(no sample) {c['dropped_no_sample']:,}, replicate rows merged {c['merged_replicate_rows']:,}")
        sp = s.get("splits", {}).get("split_random")
        if sp:
            out[-1] += "; split_random " + "  ".join(f"{k} {sp[k]:,}" for k in ("train", "val", "test"))
    return out


class LabelStore:
    """The vector labels of a published dataset, read by row windows (never whole)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.root = zarr.open_group(str(self.path), mode="r")
        attrs = self.root.attrs.asdict()
        if attrs.get("format") != FORMAT or attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{self.path}: not a {FORMAT} v{FORMAT_VERSION} store; rebuild the dataset")
        self.specs: dict[str, Any] = dict(attrs["labels"])
        self.n_samples = int(attrs["n_samples"])

    @property
    def names(self) -> list[str]:
        return sorted(self.specs)

    @cached_property
    def _arrays(self) -> dict[tuple[str, str], zarr.Array]:
        out = {}
        for name, spec in self.specs.items():
            for part in ("row", "values", "mask", *(("pvalue",) if spec["pvalue"] else ())):
                out[(name, part)] = self.root[f"{name}/{part}"]
        return out

    def array(self, name: str, part: str) -> zarr.Array:
        """``part`` (row, values, mask, pvalue) of label ``name``; KeyError naming what exists."""
        try:
            return self._arrays[(name, part)]
        except KeyError:
            raise KeyError(f"{self.path}: no {part!r} of vector label {name!r} (labels: {self.names})") from None

    def columns(self, name: str) -> list[str]:
        return [str(c) for c in self.root[f"{name}/columns"][:]]

    def rows_of(self, name: str, first: int, count: int) -> np.ndarray:
        """int32 [count]: the stored row of samples ``first..first+count-1`` (-1: no vector)."""
        return np.asarray(self.array(name, "row")[first:first + count])

    def block(self, name: str, r0: int, r1: int, pvalue: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(values or p-values float32 [r1-r0, w], packed mask uint8 [r1-r0, ceil(w/8)]) of rows r0..r1-1."""
        v = self.array(name, "pvalue" if pvalue else "values")[r0:r1]
        return np.asarray(v), np.asarray(self.array(name, "mask")[r0:r1])

    def read(self, name: str, sample_ids: np.ndarray, pvalue: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [k, w], bool [k, w] measured) of these samples, 0/False where a sample has no vector:
        one read of the rows spanning them (for small selections; the stream reads by windows)."""
        ids = np.asarray(sample_ids, np.int64)
        w = int(self.specs[name]["width"])
        out, mask = np.zeros((len(ids), w), np.float32), np.zeros((len(ids), w), bool)
        if len(ids) == 0:
            return out, mask
        lo, hi = int(ids.min()), int(ids.max()) + 1
        r = self.rows_of(name, lo, hi - lo)[ids - lo]
        has = r >= 0
        if has.any():
            r0, r1 = int(r[has].min()), int(r[has].max()) + 1
            v, packed = self.block(name, r0, r1, pvalue)
            out[has] = v[r[has] - r0]
            mask[has] = unpack_mask(packed[r[has] - r0], w)
        return out, mask


def open_labels(dataset: str | Path) -> LabelStore | None:
    """The vector labels of the dataset at ``dataset`` (its folder), or None if it has none."""
    path = Path(dataset) / STORE_NAME
    if not (path / "zarr.json").is_file():
        return None
    return LabelStore(path)


# --- the datasets that carry vector labels ---------------------------------------------------

@dataclass(frozen=True)
class VectorSource:
    """A dataset whose samples carry one vector label: how to read it and what it means."""

    dataset: str
    label: str  # the label's name in the store and the stream: "<dataset>.<kind>"
    kind: str
    unit: str
    meaning: str
    reader: str  # "module:function" (paths, stats) -> fields of a VectorTable
    column_genes: bool = False

    def read(self, paths: list[Path]) -> VectorTable:
        """The table from ``paths``, through the readers' shared cache (the dataset's observation pass
        read the same files a moment before: they are parsed once)."""
        import importlib

        from pipeline.sources.phenotypes.kemmeren import cached

        module, fn = self.reader.split(":")
        f = cached(getattr(importlib.import_module(module), fn), list(paths), keep=False)
        return VectorTable(self.label, self.kind, self.unit, self.meaning, columns=list(f["columns"]),
                           genes=f["genes"], types=f["types"], values=f["values"], pvalue=f.get("pvalue"),
                           column_genes=self.column_genes, reference=f.get("reference") or {}, stats=dict(f["stats"]))


VECTOR_SOURCES: dict[str, VectorSource] = {s.dataset: s for s in [
    VectorSource("kemmeren2014", "kemmeren2014.expression", "expression", "log2(deletion / reference pool)",
                 "per gene: mean within-array log2 ratio of the deletion mutant's arrays (GEO Signal Norm "
                 "columns); pvalue: two-sided one-sample t-test over those arrays (1 with one array)",
                 "pipeline.sources.phenotypes.kemmeren:read_kemmeren2014", column_genes=True),
    VectorSource("sameith2015", "sameith2015.expression", "expression", "log2(mutant / reference pool)",
                 "per gene: mean within-array log2 ratio of the single or double GSTF deletion mutant's "
                 "arrays; pvalue: two-sided one-sample t-test over those arrays (1 with one array)",
                 "pipeline.sources.phenotypes.sameith:read_sameith2015", column_genes=True),
    VectorSource("ohya2005", "ohya2005.morphology", "morphology", "CalMorph parameter (as released)",
                 "per CalMorph parameter: the strain's population average (281 base parameters, 220 "
                 "coefficients of variation); reference/{mean,sd,n}: over the 122 wild-type replicates",
                 "pipeline.sources.phenotypes.ohya:read_ohya2005"),
]}

def vector_tables(names: list[str], inputs: dict[str, list[Any]]) -> list[VectorTable]:
    """The vector tables of the datasets among ``names`` that carry one (``inputs``: name -> InputFile s)."""
    return [VECTOR_SOURCES[n].read([Path(f.path) for f in inputs[n]]) for n in names if n in VECTOR_SOURCES]
