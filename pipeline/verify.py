"""``python -m pipeline.verify PATH``: check a build folder or one of its stores, every stored byte.

``PATH`` is a build folder (``OUT/NAME``: each store in it is checked), a graph store, a
dataset folder or a precomputed store. Each store's files are compared with the CRC-32
digests its manifest recorded at publish (:mod:`pipeline.core.digests`); a precomputed
store is also decoded chunk by chunk and sampled against independent recomputation, and
its LMDB records verified (:mod:`pipeline.precompute.verify`). Exit status 0: sound;
1: problems, one line each naming the file, array and rows; 2: not a store.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pipeline.core import remote
from pipeline.core.digests import damaged_files
from pipeline.core.errors import PipelineError, StoreError
from pipeline.dataset.store import open_dataset
from pipeline.graph.store import open_graph
from pipeline.precompute import verify as precomputed
from pipeline.precompute.store import FORMAT as PRECOMPUTED


def verify_store(path: Path, samples: int = 64, seed: int = 0, graph: Path | None = None) -> list[str]:
    """Problems of one store (empty: sound); raises :class:`PipelineError` when ``path`` is no store."""
    if (path / "manifest.json").is_file():
        manifest = open_dataset(path).manifest
    elif _zarr_format(path) == PRECOMPUTED:
        return precomputed.verify(path, samples, seed, graph)
    else:
        manifest = open_graph(path).manifest
    if "files" not in manifest:
        return [f"{path}: no file checksums (published by an older version): rebuild it with --force"]
    return damaged_files(path, manifest["files"])


def _zarr_format(path: Path) -> str | None:
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {}).get("format")
    except (OSError, ValueError):
        return None


def stores_of(path: Path) -> list[Path]:
    """The stores of a build folder, in build order; or ``[path]`` for a store."""
    found = [path / n for n in ("graph.zarr", "dataset", "precomputed.zarr") if (path / n).exists()]
    return found if found and not (path / "zarr.json").exists() else [path]


def _remote_copy(url: str, tmp: Path, graph: Path | None) -> tuple[list[tuple[str, Path]], Path | None]:
    """Download the stores of a remote build folder (or one store, and the graph beside a precomputed
    store) into ``tmp``: the checks read every byte anyway. Returns (URL, local copy) per store and
    the graph to check against."""
    markers = (remote.ZARR_MARKER, remote.DATASET_MARKER)
    names = ("graph.zarr", "dataset", "precomputed.zarr")
    inside = [str(remote.join(url, n)) for n in names if remote.exists(str(remote.join(url, n)))]
    one = not inside or any(remote.exists(str(remote.join(url, m))) for m in markers)
    urls = [url] if one else inside
    if one and not remote.exists(url):
        raise StoreError(f"nothing stored at {url}")
    pairs = []
    for u in urls:
        local = tmp / str(len(pairs)) / u.rsplit("/", 1)[-1]
        local.mkdir(parents=True)
        remote.download_tree(u, local)
        pairs.append((u, local))
    if graph is None:
        graph = next((p for u, p in pairs if u.endswith("/graph.zarr")), None)
        if graph is None and _zarr_format(pairs[0][1]) == PRECOMPUTED:  # the graph beside it
            sibling = url.rsplit("/", 1)[0] + "/graph.zarr"
            graph = tmp / "graph" / "graph.zarr"
            graph.mkdir(parents=True)
            remote.download_tree(sibling, graph)
    return pairs, graph


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a build folder (OUT/NAME) or one of its stores; a URL (s3://...) is downloaded "
                                "to a temporary folder and checked there")
    p.add_argument("--samples", type=int, default=64, help="precomputed samples to recompute (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed choosing them")
    p.add_argument("--graph", type=Path, help="graph store to check a precomputed store against (default: its own)")
    args = p.parse_args(argv)
    try:
        where = remote.location(args.path, "PATH")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(where, Path):
        return _check([(str(s), s) for s in stores_of(where)], args, args.graph)
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        try:
            pairs, graph = _remote_copy(where, Path(tmp), args.graph)
        except (PipelineError, OSError) as e:
            print(f"error: {where}: {e}", file=sys.stderr)
            return 2
        return _check(pairs, args, graph)


def _check(stores: list[tuple[str, Path]], args: argparse.Namespace, graph: Path | None) -> int:
    """Verify each (name, local path) store; lines name the store as given (a URL for a remote copy)."""
    status = 0
    for name, store in stores:
        def named(text: str, store: Path = store, name: str = name) -> str:
            return text.replace(str(store), name)
        try:
            problems = verify_store(store, args.samples, args.seed, graph)
        except (PipelineError, FileNotFoundError) as e:
            print(f"error: {named(str(e))}", file=sys.stderr)
            return 2
        if problems:
            print(f"{name}: {len(problems)} problem(s)", file=sys.stderr)
            for line in problems:
                print(f"  {named(line)}", file=sys.stderr)
            status = 1
        else:
            deep = _zarr_format(store) == PRECOMPUTED
            print(f"{name}: ok (every file as published"
                  + (f", every chunk decoded, {args.samples} samples recomputed)" if deep else ")"))
    return status


if __name__ == "__main__":
    sys.exit(main())
