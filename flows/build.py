"""Prefect flow ``build-graph``: the build of :func:`pipeline.sequence.run_build`, one task run per step.

The flow's parameters are derived from :class:`pipeline.config.BuildConfig`: one keyword
parameter per configuration field, named like the field (``graphs``, ``datasets``,
``on_unknown_allele``, ``artifacts`` for ``--precompute``, ``khop``, ...), so every CLI
option is a flow parameter and a new option cannot reach one and miss the other.
:func:`build_graph` turns them back into the same ``BuildConfig`` the CLI makes and calls
:func:`~pipeline.sequence.run_build` with :data:`run_as_task`: the flow builds exactly the
stores the CLI builds. It returns the graph store's path (a str) and logs the summary
tables. While it runs, records of the ``pipeline`` loggers go to the run's logs too.

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
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_LEVEL

from pipeline.build import error_line, parser, summaries
from pipeline.config import BuildConfig, Where
from pipeline.core.errors import PipelineError
from pipeline.sequence import run_build

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


def _build_graph(**params: Any) -> str:
    """Build the stores of a :class:`~pipeline.config.BuildConfig` given by its flat parameters
    (as ``python -m pipeline.build``); returns the graph store's path.

    Parameters mean what the CLI options of the same field names mean (``datasets`` is
    ``--dataset``, ``artifacts`` is ``--precompute``); relative paths resolve against the
    working directory (the repository root for the deployment). The precompute chunk tasks
    run on dask (a LocalCluster, or ``dask_address``) from the ``run_precompute_tasks`` task.
    """
    cfg = BuildConfig.from_params(params)
    with pipeline_logs_to_run():
        res = run_build(cfg, run=run_as_task)
    get_run_logger().info("\n".join(summaries(res)))
    return str(res.graph)


# The signature Prefect reads (parameter schema, validation, deployment defaults) is the config's.
_build_graph.__signature__ = BuildConfig.parameters()  # type: ignore[attr-defined]
_build_graph.__annotations__ = {**{p.name: p.annotation for p in BuildConfig.parameters().parameters.values()},
                                "return": str}
build_graph = flow(name="build-graph")(_build_graph)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.build``: run the flow once with the options of ``python -m pipeline.build``."""
    p = parser("python -m flows.build")
    p.description = "Run the build-graph Prefect flow once, in this process: " + (p.description or "")
    args = p.parse_args(argv)
    if args.quiet:
        logging.getLogger("pipeline").setLevel(logging.WARNING)
    try:
        store = build_graph(**BuildConfig.from_args(args).to_params())
    except (PipelineError, ValueError, OSError) as e:  # the flow run logged the traceback
        print(error_line(e, args.out or Where().out), file=sys.stderr)
        return 2
    print(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
