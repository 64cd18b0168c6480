"""The deep checks of a published precomputed store (run by ``python -m pipeline.verify``).

Three checks, each reported with what differs:

1. identity: the graph store named in the manifest still has the gene index and
   edge types (fingerprints) the store was computed from;
2. checksums: every chunk and adjacency shard re-read and hashed against the
   manifest (and the LMDB records beside it, if any);
3. recomputation: a random sample of samples recomputed by plain per-sample code
   that shares nothing with the vectorised stage (node and edge masks from the
   edge list, k-hop sets by frontier expansion as PyG's ``k_hop_subgraph``), and a
   few adjacency steps checked against the graph (rows eligible, negatives neither
   neighbours nor the row, no added gene), once the packing recorded for the negatives is
   the one the store's gene count and parameters call for (a wrong one would unpack other genes).

The checksums are compared as the chunk tasks compare them
(:func:`pipeline.precompute.tasks.verify_sample_chunk`, ``verify_adjacency``); the store is
read through :class:`pipeline.precompute.store.PrecomputedStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.digests import damaged_files
from pipeline.core.errors import PipelineError
from pipeline.core.perturbations import CODES
from pipeline.graph.store import GraphStore, open_graph
from pipeline.precompute.adjacency import NegativePacking
from pipeline.precompute.khop import unpack
from pipeline.precompute.store import PrecomputedStore, open_precomputed
from pipeline.precompute.tasks import AdjacencyShardDone, SampleChunkDone, verify_adjacency, verify_sample_chunk


def naive_khop(edge_index: np.ndarray, seeds: list[int], k: int, n: int) -> set[int]:
    """PyG's ``k_hop_subgraph`` node set (flow source_to_target) by frontier expansion."""
    src, dst = edge_index
    subset = set(seeds)
    frontier = np.zeros(n, dtype=bool)
    frontier[seeds] = True
    for _ in range(k):
        new = src[frontier[dst]]
        subset.update(new.tolist())
        frontier[:] = False
        frontier[new] = True
    return subset


def recompute_sample(graph: GraphStore, genes: list[int], types: list[int], params: dict[str, Any],
                     edge_index: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every per-sample artifact of one sample, by plain per-sample code."""
    n = graph.n_genes
    added = graph.added
    rem_types = set(params["removing_types"])
    node = np.where(added, 0, 1).astype(np.uint8)
    removed = []
    for g, t in zip(genes, types):
        if added[g]:
            if t in (CODES["addition"], CODES["overexpression"]):
                node[g] = 1
        elif t in rem_types:
            node[g] = 0
            removed.append(g)
    out: dict[str, Any] = {"node": node, "edges": {}, "khop": {}}
    rm = np.zeros(n, dtype=bool)
    rm[removed] = True
    for t, ei in edge_index.items():
        out["edges"][t] = np.flatnonzero(rm[ei[0]] | rm[ei[1]])
    for mode in params.get("khop_modes", []):
        for k in params["khop"]:
            if mode == "per_type":
                s: set[int] = set()
                for ei in edge_index.values():
                    s |= naive_khop(ei, genes, k, n)
            else:
                s = naive_khop(np.concatenate(list(edge_index.values()), axis=1), genes, k, n)
            out["khop"][(mode, k)] = s
    return out


def _check_samples(store: PrecomputedStore, graph: GraphStore, ids: np.ndarray) -> list[str]:
    m = store.manifest
    params = m["parameters"]
    ptr, genes, types = store.perturbations()
    ei = {t: graph.edge_index(t) for t in graph.edge_types}
    problems = []
    C = store.chunk_samples
    chunks: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for i in ids.tolist():
        g = genes[ptr[i]:ptr[i + 1]].tolist()
        ty = types[ptr[i]:ptr[i + 1]].tolist()
        want = recompute_sample(graph, g, ty, params, ei)
        if "masks" in params["artifacts"]:
            if not np.array_equal(store.node_mask_dense(slice(i, i + 1))[0], want["node"]):
                problems.append(f"sample {i}: dense node mask differs from the recomputation")
            for t in graph.edge_types:
                key = (t, i // C)
                if key not in chunks:  # each chunk's ids read once, not once per sample
                    chunks[key] = store.removed_edges(t, i // C, graph)
                eptr, eids = chunks[key]
                j = i % C
                if not np.array_equal(eids[eptr[j]:eptr[j + 1]], want["edges"][t]):
                    problems.append(f"sample {i}: removed edges of {t} differ from the recomputation")
        for (mode, k), s in want["khop"].items():
            have = set(np.flatnonzero(unpack(store.khop_bits(k, mode, slice(i, i + 1)), graph.n_genes)[0]).tolist())
            if have != s:
                problems.append(f"sample {i}: {k}-hop set ({mode}) differs: {len(have ^ s)} genes")
    return problems


def _check_packing(store: PrecomputedStore, a: dict[str, Any]) -> list[str]:
    """The packing attributes of the negatives against the store's gene count and negatives per row."""
    want = NegativePacking.for_genes(store.n_genes, a["negatives"])
    try:
        have = store.adjacency_packing
    except (KeyError, TypeError, ValueError) as e:  # missing or malformed attributes
        return [f"adjacency: no readable packing attributes ({type(e).__name__}: {e})"]
    if have != want:
        return [f"adjacency: negatives packed as {have}, but {store.n_genes} genes and {a['negatives']} "
                f"negatives a row call for {want}"]
    return []


def _missing_shards(store: PrecomputedStore) -> list[str]:
    """The (epoch, shard)s of adjacency steps the manifest has no checksum for (nothing would verify them)."""
    have = {(int(d["epoch"]), int(d["shard"])) for d in store.manifest["adjacency"]}
    missing = [k for k in store.adjacency_shards() if k not in have]
    return [f"adjacency: no checksum for (epoch, shard) {missing[:10]}"] if missing else []


def _check_adjacency(store: PrecomputedStore, graph: GraphStore, rng: np.random.Generator, n_steps: int) -> list[str]:
    a = store.manifest["parameters"].get("adjacency")
    if not a:
        return []
    problems = _check_packing(store, a)
    if problems:  # unpacking with another packing would report every step
        return problems
    added = graph.added
    for t in a["graphs"]:
        csr = graph.csr(t)
        deg = np.diff(csr.indptr)
        for step in rng.choice(a["steps"], size=min(n_steps, a["steps"]), replace=False).tolist():
            e = int(rng.integers(a["epochs"]))
            rows, negs = store.adjacency(t, e, step)
            for r, neg in zip(rows.tolist(), negs):
                if r < 0:
                    continue
                if added[r] or deg[r] == 0:
                    problems.append(f"{t} epoch {e} step {step}: row {r} is not eligible")
                nbr = set(csr.indices[csr.indptr[r]:csr.indptr[r + 1]].tolist())
                neg = [c for c in neg.tolist() if c >= 0]
                if r in neg or nbr & set(neg) or any(added[c] for c in neg) or len(set(neg)) != len(neg):
                    problems.append(f"{t} epoch {e} step {step}: bad negatives for row {r}")
            if len(set(rows[rows >= 0].tolist())) != int((rows >= 0).sum()):
                problems.append(f"{t} epoch {e} step {step}: repeated rows")
    return problems


def verify(path: str | Path, samples: int = 64, seed: int = 0, graph_path: str | Path | None = None) -> list[str]:
    """All checks of the module docstring; returns the problems found (empty: the store is sound)."""
    path = Path(path)
    store = open_precomputed(path)
    m = store.manifest
    graph = open_graph(graph_path or m["graph"]["path"])
    problems: list[str] = damaged_files(path, m["files"]) if "files" in m else []
    try:
        store.check_against(graph.fingerprint, {t: graph.edge_attrs(t)["fingerprint"] for t in graph.edge_types})
    except PipelineError as e:
        return [*problems, str(e)]
    for marker in m["chunks"]:
        problems += verify_sample_chunk(str(path), SampleChunkDone.from_dict(marker))
    for marker in m["adjacency"]:
        problems += verify_adjacency(str(path), AdjacencyShardDone.from_dict(marker))
    problems += _guarded("adjacency shards", _missing_shards, store)
    records = path.parent / "records.lmdb"
    if m["parameters"].get("lmdb") and records.exists():
        from pipeline.precompute.records import open_records
        rec = open_records(records)
        if rec.manifest.get("build_key") != m["build_key"]:
            problems.append(f"{records}: computed with another build key than {path}")
        problems += rec.verify()
        rec.close()
    rng = np.random.default_rng(seed)
    if {"masks", "khop"} & set(m["parameters"]["artifacts"]) and store.n_samples:
        ids = np.sort(rng.choice(store.n_samples, size=min(samples, store.n_samples), replace=False))
        problems += _guarded("recomputed samples", _check_samples, store, graph, ids)
    problems += _guarded("adjacency steps", _check_adjacency, store, graph, rng, 4)
    return problems


def _guarded(what: str, check: Any, *args: Any) -> list[str]:
    """A check's problems; a store too damaged to read gives a problem line, not a traceback."""
    try:
        return check(*args)
    except Exception as e:  # noqa: BLE001 - zarr and numcodecs raise many types on damaged bytes
        return [f"{what}: could not be read ({type(e).__name__}: {e})"]
