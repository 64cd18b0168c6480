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
from pathlib import Path

from pipeline.core.digests import damaged_files
from pipeline.core.errors import PipelineError
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a build folder (OUT/NAME) or one of its stores")
    p.add_argument("--samples", type=int, default=64, help="precomputed samples to recompute (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed choosing them")
    p.add_argument("--graph", type=Path, help="graph store to check a precomputed store against (default: its own)")
    args = p.parse_args(argv)
    status = 0
    for store in stores_of(args.path):
        try:
            problems = verify_store(store, args.samples, args.seed, args.graph)
        except (PipelineError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if problems:
            print(f"{store}: {len(problems)} problem(s)", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            status = 1
        else:
            deep = _zarr_format(store) == PRECOMPUTED
            print(f"{store}: ok (every file as published"
                  + (f", every chunk decoded, {args.samples} samples recomputed)" if deep else ")"))
    return status


if __name__ == "__main__":
    sys.exit(main())
