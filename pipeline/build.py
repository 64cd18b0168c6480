"""Command line: ``python -m pipeline.build --graphs string12 [--dataset NAME] [--precompute ART,...]``.

Every option is a field of :class:`pipeline.config.BuildConfig` (declared once, with its
help); the stages run in this process through :func:`pipeline.sequence.run_build`, and a
summary table per store is printed. ``python -m flows.build`` runs the same build as a
Prefect flow, with the same options.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import time

from pipeline.config import BuildConfig, Where
from pipeline.core.errors import PipelineError
from pipeline.core.remote import join
from pipeline.dataset.stages import summarize_dataset
from pipeline.graph.sources import SOURCES
from pipeline.graph.stages import summarize
from pipeline.precompute.stages import summarize_precompute
from pipeline.sequence import BuildResult, run_build


def parser(prog: str = "python -m pipeline.build") -> argparse.ArgumentParser:
    known = ", ".join(f"{s.name} ({', '.join(s.edge_types)})" for s in SOURCES.values())
    p = argparse.ArgumentParser(
        prog=prog, description="Build a versioned multigraph store (Zarr v3) from raw source files, and "
                               "optionally its perturbation dataset and precomputed per-sample artifacts.",
        epilog=f"Graphs: a source name selects all its edge types; an edge type selects one. Known: {known}. "
               "--list-datasets prints every dataset --dataset can name (labels with units, release files, "
               "sample) and exits.")
    BuildConfig.add_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also the pipeline's DEBUG lines and dask's INFO lines (default: dask at WARNING)")
    return p


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Log to stderr: INFO (``quiet``: WARNING); ``verbose``: the ``pipeline`` loggers at DEBUG,
    which also lets dask's INFO lines through (:func:`pipeline.precompute.cluster.dask_log_level`)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    if verbose:
        logging.getLogger("pipeline").setLevel(logging.DEBUG)


def summaries(res: BuildResult) -> list[str]:
    """A table per store of the build, each followed by whether it was built or up to date."""
    out = []
    for path, built, summary in ((res.graph, res.graph_built, summarize),
                                 (res.dataset, res.dataset_built, summarize_dataset),
                                 (res.precomputed, res.precomputed_built, summarize_precompute)):
        if path is not None:
            where = path if res.remote is None else f"{join(res.remote, path.name)} (published; built in {path})"
            out += [summary(path), f"{'built' if built else 'up to date'}: {where}"]
    return out


def error_line(e: BaseException, out: object) -> str:
    """The one ``error:`` line for a failed build. An OSError names its path (``out``, the
    output folder, when the OS named none, as for a full disk on write).

    >>> error_line(OSError(errno.ENOSPC, "No space left on device"), "data/processed")
    'error: data/processed: no space left on device; free space and rerun (the build resumes)'
    >>> error_line(PermissionError(errno.EACCES, "Permission denied", "o/graph.zarr"), "o")
    'error: o/graph.zarr: Permission denied'
    """
    if isinstance(e, OSError) and not isinstance(e, PipelineError) and e.errno is not None:
        path = e.filename if e.filename is not None else out
        if e.errno == errno.ENOSPC:
            return f"error: {path}: no space left on device; free space and rerun (the build resumes)"
        return f"error: {path}: {e.strerror}"
    return f"error: {e}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--list-datasets" in argv:  # before parsing (needs no --graphs; not a build option: see the epilog)
        from pipeline.dataset.sources import describe_registry
        print(describe_registry())
        return 0
    args = parser().parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    t0 = time.perf_counter()
    try:
        res = run_build(BuildConfig.from_args(args))
    except (PipelineError, ValueError, OSError) as e:  # OSError: a read-only or full disk, --out a file
        print(error_line(e, args.out or Where().out), file=sys.stderr)
        return 2
    print("\n".join(summaries(res)))
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
