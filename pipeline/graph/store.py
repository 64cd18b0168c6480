"""The graph store: gene index + per-edge-type CSR + incidence, in one Zarr v3 group.

Layout (exact contract in ``storage_layout.md``)::

    graph.zarr/
      zarr.json                     attributes: format, format_version, manifest
      genes/                        attributes: n_genes, fingerprint, chromosomes
        id, name                    string [n]
        added                       uint8 [n]
        features                    float32 [n, d]  attributes: feature_names, source
        embeddings/<name>           float32 [n, w]  (optional)
        chromosome, strand          int8 [n]
        start, end, length          int64 [n]
        go_indptr, go_terms         int64 [n+1], string [m]
        alias_indptr, aliases       int64 [n+1], string [k]
      edges/<type>/                 attributes: directed, pairs, nnz, fingerprint, source, stats
        indptr                      int64 [n+1]
        indices                     int32 [nnz]
        weights                     float32 [nnz]
        mirror                      int32 [nnz]       (undirected types only)
        incidence_indptr            int64 [n+1]
        incidence_edges             int32 [2*nnz]

The manifest is written last; a group without it is not a graph store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import zarr

from pipeline.core.errors import StoreError
from pipeline.core.genes import CHROMOSOMES, GENE_SCHEMA, GeneIndex, conform
from pipeline.core.ragged import indptr_from_lengths
from pipeline.core.remote import ChunkCache, location
from pipeline.core.zarr_store import ZSTD1, PublishedStore, open_versioned_group, put_array
from pipeline.graph.csr import CSR, incidence, mirror_edges

FORMAT = "yeast-pipeline.graph"
FORMAT_VERSION = 2


def edge_fingerprint(gene_fingerprint: str, csr: CSR) -> str:
    """sha256 of the gene index fingerprint, directedness and the CSR arrays' bytes."""
    h = hashlib.sha256()
    h.update(gene_fingerprint.encode())
    h.update(b"directed" if csr.directed else b"undirected")
    for a in (csr.indptr.astype("<i8"), csr.indices.astype("<i4"), csr.weights.astype("<f4")):
        h.update(a.tobytes())
    return h.hexdigest()


def _strings(arr: zarr.Array) -> list[str]:
    """A string array as a Python list (zarr returns numpy's variable-width StringDType)."""
    return [str(x) for x in arr[:].tolist()]


def _list_csr(col: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    indptr = indptr_from_lengths(col.list.len().fill_null(0).to_numpy().astype(np.int64))
    values = col.explode().drop_nulls().to_numpy().astype(str) if indptr[-1] else np.array([], dtype=str)
    return indptr, values


@dataclass
class GeneFeatures:
    """Per-gene feature matrices stored with the gene index (rows in gene-index order)."""

    matrix: np.ndarray  # float32 [n, d]; NaN where unknown
    names: list[str]
    source: dict[str, Any]  # what the sequence features were computed from
    embeddings: dict[str, tuple[np.ndarray, dict[str, Any]]]  # name -> (float32 [n, w], attributes)


def write_features(root: zarr.Group, features: GeneFeatures) -> None:
    """``genes/features`` and ``genes/embeddings/<name>`` (written beside the gene index)."""
    g = root["genes"]
    f = g.create_array("features", shape=features.matrix.shape, dtype=np.float32,
                       chunks=features.matrix.shape, compressors=ZSTD1)
    f[:] = features.matrix
    f.attrs.update({"feature_names": features.names, "source": features.source})
    if features.embeddings:
        eg = g.create_group("embeddings")
        for name, (mat, attrs) in features.embeddings.items():
            e = eg.create_array(name, shape=mat.shape, dtype=np.float32, chunks=mat.shape,
                                compressors=ZSTD1)
            e[:] = mat
            e.attrs.update(attrs)


def write_genes(root: zarr.Group, genes: GeneIndex) -> None:
    t = genes.table
    g = root.create_group("genes")
    put_array(g, "id", t["id"].to_numpy().astype(str))
    put_array(g, "name", t["name"].fill_null("").to_numpy().astype(str))
    put_array(g, "added", genes.added.astype(np.uint8))
    chrom_code = {c: i for i, c in enumerate(CHROMOSOMES)}
    put_array(g, "chromosome", np.array([chrom_code.get(c, -1) if c else -1 for c in t["chromosome"].to_list()],
                                        dtype=np.int8))
    strand = t["strand"].to_list()
    put_array(g, "strand", np.array([1 if s == "+" else -1 if s == "-" else 0 for s in strand], dtype=np.int8))
    for c in ("start", "end", "length"):
        put_array(g, c, t[c].fill_null(-1).to_numpy().astype(np.int64))
    for col, prefix in (("go_terms", "go"), ("aliases", "alias")):
        ip, vals = _list_csr(t[col])
        put_array(g, f"{prefix}_indptr", ip)
        put_array(g, "go_terms" if prefix == "go" else "aliases", vals)
    g.attrs.update({"n_genes": len(genes), "fingerprint": genes.fingerprint,
                    "chromosomes": CHROMOSOMES, "source": genes.source})


def write_edge_type(root: zarr.Group, name: str, csr: CSR, gene_fingerprint: str,
                    meta: dict[str, Any]) -> dict[str, Any]:
    """Write one edge type under ``edges/<name>``; returns its attributes."""
    g = root.require_group("edges").create_group(name)
    put_array(g, "indptr", csr.indptr.astype(np.int64))
    put_array(g, "indices", csr.indices.astype(np.int32))
    put_array(g, "weights", csr.weights.astype(np.float32))
    if not csr.directed:
        put_array(g, "mirror", mirror_edges(csr).astype(np.int32))
    inc_ptr, inc_ids = incidence(csr)
    put_array(g, "incidence_indptr", inc_ptr)
    put_array(g, "incidence_edges", inc_ids.astype(np.int32))
    attrs = {"directed": csr.directed, "pairs": csr.n_pairs, "nnz": csr.nnz,
             "fingerprint": edge_fingerprint(gene_fingerprint, csr), **meta}
    g.attrs.update(attrs)
    return attrs


def write_manifest(root: zarr.Group, manifest: dict[str, Any]) -> None:
    """Written last: its presence marks the store complete."""
    root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest})


@dataclass
class GraphStore(PublishedStore):
    """A published graph store, opened read-only. Arrays are read on first use and cached.

    >>> g = open_graph("data/processed/string12/graph.zarr")   # doctest: +SKIP
    >>> g.edge_types, len(g.gene_ids), g.csr("string12_coexpression").nnz   # doctest: +SKIP
    """

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the gene index (see :func:`pipeline.core.genes.fingerprint_ids`)."""
        return str(self.root["genes"].attrs["fingerprint"])

    @cached_property
    def gene_ids(self) -> np.ndarray:
        return np.array(_strings(self.root["genes/id"]), dtype=str)

    @property
    def n_genes(self) -> int:
        return int(self.root["genes"].attrs["n_genes"])

    @cached_property
    def genes(self) -> GeneIndex:
        """The gene table, as the build read it."""
        g = self.root["genes"]
        chrom = [CHROMOSOMES[c] if c >= 0 else None for c in g["chromosome"][:].tolist()]
        strand = [{1: "+", -1: "-"}.get(s) for s in g["strand"][:].tolist()]

        def lists(ptr: str, vals: str) -> list[list[str]]:
            ip, v = g[ptr][:], _strings(g[vals])
            return [v[ip[i]:ip[i + 1]] for i in range(len(ip) - 1)]

        names = [s or None for s in _strings(g["name"])]
        nullable = lambda a: [None if x < 0 else int(x) for x in a.tolist()]  # noqa: E731
        df = pl.DataFrame({
            "id": self.gene_ids.tolist(), "name": names, "chromosome": chrom,
            "start": nullable(g["start"][:]), "end": nullable(g["end"][:]), "strand": strand,
            "length": nullable(g["length"][:]),
            "go_terms": lists("go_indptr", "go_terms"), "aliases": lists("alias_indptr", "aliases"),
            "added": g["added"][:].astype(bool).tolist(),
        }, schema=GENE_SCHEMA)
        return GeneIndex(conform(df), source=str(self.path))

    @cached_property
    def id_index(self) -> GeneIndex:
        """The gene index with ids and ``added`` flags only (no annotations): what stages that
        map names to indices need, without building the full table (0.1 s of Python lists)."""
        return GeneIndex(pl.DataFrame({"id": self.gene_ids.tolist(), "added": self.added}), source=str(self.path))

    @property
    def added(self) -> np.ndarray:
        """Boolean [n]: heterologous genes (no edges; excluded from graph-regularisation targets)."""
        return self.root["genes/added"][:].astype(bool)

    def features(self) -> tuple[np.ndarray, list[str]]:
        """The gene feature matrix (float32 [n, d], NaN where unknown) and its column names."""
        if "features" not in self.root["genes"]:
            raise KeyError(f"{self.path}: no gene features stored")
        a = self.root["genes/features"]
        return a[:], list(a.attrs["feature_names"])

    @property
    def embedding_names(self) -> list[str]:
        g = self.root["genes"]
        return sorted(g["embeddings"].array_keys()) if "embeddings" in g else []

    def embedding(self, name: str) -> np.ndarray:
        """An imported embedding matrix, float32 [n, w] (NaN rows for genes it lacks)."""
        if name not in self.embedding_names:
            raise KeyError(f"{self.path}: no embedding {name!r}; has {self.embedding_names}")
        return self.root[f"genes/embeddings/{name}"][:]

    @property
    def edge_types(self) -> list[str]:
        return sorted(self.manifest["edge_types"])

    def edge_attrs(self, name: str) -> dict[str, Any]:
        self._check_type(name)
        return dict(self.root[f"edges/{name}"].attrs)

    def _check_type(self, name: str) -> None:
        if name not in self.manifest["edge_types"]:
            raise KeyError(f"{self.path}: no edge type {name!r}; has {self.edge_types}")

    def csr(self, name: str) -> CSR:
        """The CSR of one edge type (reads its three arrays)."""
        self._check_type(name)
        g = self.root[f"edges/{name}"]
        directed = bool(g.attrs["directed"])
        return CSR(g["indptr"][:], g["indices"][:], g["weights"][:], directed,
                   mirror=None if directed else g["mirror"][:])

    def mirror(self, name: str) -> np.ndarray | None:
        """int32 [nnz]: the id of each edge's reverse orientation (undirected types); None if directed."""
        self._check_type(name)
        g = self.root[f"edges/{name}"]
        return None if g.attrs["directed"] else g["mirror"][:]

    def incidence(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(indptr int64 [n+1], edge ids int32): the edges of ``name`` touching each gene."""
        self._check_type(name)
        g = self.root[f"edges/{name}"]
        return g["incidence_indptr"][:], g["incidence_edges"][:]

    def edge_index(self, name: str) -> np.ndarray:
        """``[2, nnz]`` int64 in edge-id order (both orientations for undirected types)."""
        return self.csr(name).edge_index()

    def check_against(self, gene_fingerprint: str, edge_fingerprints: dict[str, str] | None = None) -> None:
        """Raise :class:`StoreError` naming what differs from the expected fingerprints."""
        if gene_fingerprint != self.fingerprint:
            raise StoreError(f"{self.path}: gene index differs (store {self.fingerprint[:12]}, "
                             f"expected {gene_fingerprint[:12]})")
        for name, fp in (edge_fingerprints or {}).items():
            have = self.edge_attrs(name)["fingerprint"]
            if have != fp:
                raise StoreError(f"{self.path}: edge type {name!r} differs (store {have[:12]}, expected {fp[:12]})")


def open_graph(path: str | Path, cache: ChunkCache | None = None) -> GraphStore:
    """Open a published graph store read-only; a missing or incomplete store is an error.

    ``path`` may be a URL (``s3://...``; files cached in ``cache`` when given: :mod:`pipeline.core.remote`)."""
    path = location(path, "graph store")
    root = open_versioned_group(path, FORMAT, FORMAT_VERSION, "graph store", "rebuild", cache=cache)
    return GraphStore(path, root)
