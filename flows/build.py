"""Prefect flow ``build-graph``: the graph build of :mod:`pipeline.stages`, one task per stage.

:func:`build_graph` makes a :class:`~pipeline.stages.BuildConfig` and calls
:func:`~pipeline.stages.run_build` with :func:`run_as_task`, so the order of
the stages is defined in one place only and the flow builds exactly the store the
CLI builds. It returns the store path (a str) and logs the summary table. While
it runs, records of the ``pipeline`` loggers go to the run's logs too.

Run it once, in this process, with the CLI's arguments::

    python -m flows.build --graphs string12

Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run
(several seconds). To deploy it to a ``process`` work pool see ``prefect.yaml``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_LEVEL

from pipeline.build import parser
from pipeline.errors import PipelineError
from pipeline.dataset_stages import summarize_dataset
from pipeline.stages import BuildConfig, run_build, summarize

T = TypeVar("T")


def _as_task(fn: Callable[..., T]) -> Any:
    # No cache policy: ``plan_build`` already decides from the inputs' hashes whether
    # anything needs building. Results are not persisted: they are large in-memory
    # arrays passed straight to the next stage.
    return task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)


class PrefectRunner:
    """The flow's runner for :func:`run_build`: each stage is a Prefect task run;
    ``each`` submits independent stages to the flow's task runner (threads by default)
    and waits for all of them."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return _as_task(fn)(*args)

    def each(self, calls: Sequence[tuple[Callable[..., Any], tuple]]) -> list[Any]:
        futures = [_as_task(fn).submit(*a) for fn, a in calls]
        return [f.result() for f in futures]


run_as_task = PrefectRunner()


@contextmanager
def pipeline_logs_to_run() -> Iterator[None]:
    """Send ``pipeline.*`` records to the current run's logs, for the duration of the block.

    Attached only while the flow runs because the API handler warns about every
    record logged outside a run (e.g. a CLI build later in the same process).
    Nothing is added when ``PREFECT_LOGGING_EXTRA_LOGGERS`` already names
    ``pipeline``, and a level the user set on the logger is kept.
    """
    logger = logging.getLogger("pipeline")
    added = None
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        added = APILogHandler()
        logger.addHandler(added)
    level = logger.level
    if level == logging.NOTSET:  # else Prefect's root level (WARNING) would hide the stages' INFO lines
        logger.setLevel(PREFECT_LOGGING_LEVEL.value())
    try:
        yield
    finally:
        if added is not None:
            logger.removeHandler(added)
        logger.setLevel(level)


@flow(name="build-graph")
def build_graph(graphs: list[str], raw: str = "data/raw", out: str = "data/processed", name: str | None = None,
                genes: str | None = None, download: bool = False, force: bool = False,
                go_max_term_size: int = 300, sequences: str | None = None, added_genes: str | None = None,
                embeddings: list[str] | None = None, datasets: list[str] | None = None, replicates: str = "mean",
                split_seed: int = 0, split_fractions: list[float] | None = None,
                precompute: dict[str, Any] | None = None) -> str:
    """Build the multigraph store of ``graphs`` (as ``python -m pipeline.build``); returns its path.

    Parameters mean what the CLI options of the same names mean; relative paths
    resolve against the working directory (the repository root for the deployment).
    ``precompute`` holds the fields of :class:`pipeline.precompute.PrecomputeConfig`
    (e.g. ``{"artifacts": ["masks", "khop"], "chunk_samples": 4096}``); the chunk tasks
    run on dask (a LocalCluster, or ``dask_address``) from the ``run_precompute_tasks`` task.
    """
    from pipeline.precompute import PrecomputeConfig

    cfg = BuildConfig(graphs=list(graphs), raw=Path(raw), out=Path(out), name=name,
                      genes=Path(genes) if genes else None, download=download, force=force,
                      go_max_term_size=go_max_term_size, sequences=sequences, added_genes=added_genes,
                      embeddings=list(embeddings or []), datasets=list(datasets or []), replicates=replicates,
                      split_seed=split_seed, split_fractions=tuple(split_fractions or (0.8, 0.1, 0.1)),
                      precompute=PrecomputeConfig(**precompute) if precompute else None)
    with pipeline_logs_to_run():
        res = run_build(cfg, run=run_as_task)
    logger = get_run_logger()
    logger.info("%s %s\n%s", "built" if res.graph_built else "up to date:", res.graph, summarize(res.graph))
    if res.dataset is not None:
        logger.info("%s %s\n%s", "built" if res.dataset_built else "up to date:", res.dataset,
                    summarize_dataset(res.dataset))
    if res.precomputed is not None:
        from pipeline.precompute import summarize_precompute
        logger.info("%s %s\n%s", "built" if res.precomputed_built else "up to date:", res.precomputed,
                    summarize_precompute(res.precomputed))
    return str(res.graph)


def _precompute_dict(args: Any) -> dict[str, Any] | None:
    from dataclasses import asdict

    from pipeline.build import precompute_config
    cfg = precompute_config(args)
    return None if cfg is None else asdict(cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.build``: run the flow once with the arguments of ``python -m pipeline.build``."""
    p = parser()
    p.prog = "python -m flows.build"
    p.description = "Run the build-graph Prefect flow once, in this process: " + (p.description or "")
    args = p.parse_args(argv)
    if args.quiet:
        logging.getLogger("pipeline").setLevel(logging.WARNING)
    try:
        store = build_graph(graphs=args.graphs, raw=str(args.raw), out=str(args.out), name=args.name,
                            genes=str(args.genes) if args.genes else None, download=args.download,
                            force=args.force, go_max_term_size=args.go_max_term_size,
                            sequences=str(args.sequences) if args.sequences else None,
                            added_genes=str(args.added_genes) if args.added_genes else None,
                            embeddings=args.embeddings, datasets=args.dataset,
                            replicates=args.replicates, split_seed=args.split_seed,
                            split_fractions=list(args.split_fractions), precompute=_precompute_dict(args))
    except (PipelineError, ValueError, FileNotFoundError) as e:  # the flow run logged the traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
