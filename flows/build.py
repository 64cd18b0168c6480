"""Prefect flow ``build-graph``: the build of :func:`pipeline.sequence.run_build`, one task run per step.

The flow's parameters are derived from :class:`pipeline.config.BuildConfig`: one keyword
parameter per configuration field, named like the field (``graphs``, ``datasets``,
``on_unknown_allele``, ``artifacts`` for ``--precompute``, ``khop``, ...), so every CLI
option is a flow parameter and a new option cannot reach one and miss the other.
:func:`build_graph` turns them back into the same ``BuildConfig`` the CLI makes and calls
:func:`~pipeline.sequence.run_build` with :data:`run_as_task`: the flow builds exactly the
stores the CLI builds. It returns the graph store's path (a str) and logs the summary
tables. While it runs, records of the ``pipeline`` loggers go to the run's logs too (a long
step's progress as four lines, :mod:`pipeline.core.progress`).

What a run shows in Prefect besides its logs:

- **artifacts**: per stage a markdown artifact (key ``<build>-<stage>``: the summary table and
  whether it was built or up to date) and one table artifact ``<build>-stages`` (one row per
  stage: status, build key, store, figures such as samples and samples/s);
- **progress**: a progress artifact per long step (the precompute's chunk tasks, the LMDB
  records: the UI's progress bar), and four progress lines each in the run's logs;
- **up-to-date stages as Cached**: a stage whose store is current ends at its plan step, and
  that task run's state is ``Cached`` (type COMPLETED) with the message ``... is up to date
  (build key ...): skipped``; the build key is the pipeline's own (inputs' hashes, parameters,
  code version), not a Prefect cache key, so the CLI and the flow agree on what is current;
- **retries on downloads**: the step that may fetch sources (``plan_build`` with
  ``download=true``) is retried :data:`DOWNLOAD_RETRIES` times with exponential backoff
  (:data:`DOWNLOAD_BACKOFF_S` x 1, 2, 4 s) after a transient network failure (a 5xx, 408 or
  429 answer, a reset, a timeout, a truncated body); a 404, a digest mismatch or bad input is not.

Run it once, in this process, with the CLI's arguments::

    python -m flows.build --graphs string12

Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run
(several seconds). To deploy it to a ``process`` work pool see ``prefect.yaml``.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_LEVEL
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from pipeline.build import error_line, parser, summaries
from pipeline.config import BuildConfig, Where
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Progress, lines_too, reporting_to
from pipeline.sequence import BuildResult, run_build
from pipeline.sources.download import ChecksumMismatchError, DownloadError

T = TypeVar("T")

#: steps that may download a source (``download=true``): retried after a network failure
DOWNLOADING = frozenset({"plan_build"})
DOWNLOAD_RETRIES = 3
DOWNLOAD_BACKOFF_S = 10.0  # waits of 10, 20, 40 s


def _retry_download(_task: Any, _task_run: Any, state: State) -> bool:
    """Retry a transient failure of a download (a 5xx, 408 or 429 answer, a reset, a timeout, a
    truncated body); not a client error such as 404 (the URL is wrong), wrong bytes (a digest
    mismatch would be downloaded again just as wrong) or any other error."""
    exc = state.result(raise_on_failure=False)
    if not isinstance(exc, DownloadError) or isinstance(exc, ChecksumMismatchError):
        return False
    status = re.search(r": HTTP (\d{3}) ", str(exc))  # DownloadError's "URL: HTTP 503 Service Unavailable"
    return status is None or not status.group(1).startswith("4") or status.group(1) in ("408", "429")


def _cached_when_up_to_date(fn: Callable[..., T]) -> Callable[..., Any]:
    """``fn``, but a plan whose store is current ends its task run as a ``Cached`` state (type
    COMPLETED) carrying the plan, named and explained in the UI."""

    @functools.wraps(fn)
    def step(*args: Any) -> Any:
        out = fn(*args)
        if getattr(out, "up_to_date", None) is True:
            key = getattr(out, "key", None) or getattr(out, "build_key", "")
            return Completed(name="Cached", data=out,
                             message=f"{out.store} is up to date (build key {key[:12]}): skipped")
        return out

    return step


def _as_task(fn: Callable[..., T]) -> Any:
    # No Prefect cache policy: each stage's plan already decides from its build key (the
    # inputs' hashes, parameters and code version) whether its store is current, and says so
    # (a Cached state). Results are not persisted: they are large in-memory arrays passed
    # straight to the next stage.
    retry: dict[str, Any] = {}
    if fn.__name__ in DOWNLOADING:
        retry = {"retries": DOWNLOAD_RETRIES, "retry_condition_fn": _retry_download,
                 "retry_delay_seconds": exponential_backoff(backoff_factor=DOWNLOAD_BACKOFF_S)(DOWNLOAD_RETRIES)}
    return task(_cached_when_up_to_date(fn), name=fn.__name__, cache_policy=NO_CACHE, persist_result=False,
                **retry)


def _value(out: Any) -> Any:
    return out.result() if isinstance(out, State) else out


class PrefectRunner:
    """The flow's runner for :func:`run_build`: each stage is a Prefect task run;
    ``each`` submits independent stages to the flow's task runner (threads by default)
    and waits for all of them."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return _value(_as_task(fn)(*args))

    def each(self, calls: Sequence[tuple[Callable[..., Any], tuple]]) -> list[Any]:
        futures = [_as_task(fn).submit(*a) for fn, a in calls]
        return [_value(f.result()) for f in futures]


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
    run on dask (a LocalCluster, ``dask_address`` or ``dask_cluster``) from the ``run_precompute_tasks`` task.
    """
    cfg = BuildConfig.from_params(params)
    with pipeline_logs_to_run(), lines_too(), reporting_to(ProgressArtifacts()):
        res = run_build(cfg, run=run_as_task)
    get_run_logger().info("\n".join(summaries(res)))
    publish_artifacts(res, cfg.build_name)
    return str(res.graph)


class ProgressArtifacts:
    """A Prefect progress artifact per long step of the run (the UI's progress bar: the chunk
    tasks, the LMDB records), created at 0% and updated at each whole percent."""

    def __init__(self) -> None:
        self.ids: weakref.WeakKeyDictionary[Progress, Any] = weakref.WeakKeyDictionary()

    def __call__(self, progress: Progress, percent: int) -> None:
        art = self.ids.get(progress)
        if art is None:
            self.ids[progress] = create_progress_artifact(
                float(percent), description=f"{progress.what}: {progress.total:,} {progress.unit}(s)")
        else:
            update_progress_artifact(art, float(percent))


def _slug(name: str) -> str:
    """An artifact key part: lowercase letters, digits and dashes (Prefect's rule for keys).

    >>> _slug("string12+physical")
    'string12-physical'
    """
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "build"


def stage_rows(res: BuildResult) -> list[dict[str, Any]]:
    """One row per stage of the build: status, build key, store, size and what it holds (from its manifest)."""
    from pipeline.dataset.store import open_dataset
    from pipeline.graph.store import open_graph
    from pipeline.precompute.store import open_precomputed

    rows: list[dict[str, Any]] = []

    def row(stage: str, path: Any, built: bool, manifest: dict[str, Any], **figures: Any) -> None:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        rows.append({"stage": stage, "status": "built" if built else "up to date (skipped)",
                     "build_key": str(manifest.get("build_key", ""))[:12], "store": str(path),
                     "stored_mb": round(size / 1e6, 2), "genes": None, "edge_types": None, "pairs": None,
                     "samples": None, "compute_s": None, "samples_per_s": None, **figures})

    g = open_graph(res.graph).manifest
    row("graph", res.graph, res.graph_built, g, genes=g["genes"]["n"], edge_types=len(g["edge_types"]),
        pairs=sum(int(e["pairs"]) for e in g["edge_types"].values()))
    if res.dataset is not None:
        d = open_dataset(res.dataset).manifest
        row("dataset", res.dataset, res.dataset_built, d, samples=d["n_samples"])
    if res.precomputed is not None:
        m = open_precomputed(res.precomputed).manifest
        secs = m.get("seconds", {}).get("compute_seconds")
        row("precompute", res.precomputed, res.precomputed_built, m, samples=m["n_samples"], compute_s=secs,
            samples_per_s=round(m["n_samples"] / secs) if secs else None)
    return rows


def publish_artifacts(res: BuildResult, build_name: str) -> None:
    """The run's artifacts: a markdown summary per stage (key ``<build>-<stage>``) and the table of
    every stage (key ``<build>-stages``); see the module docstring."""
    from pipeline.dataset.stages import summarize_dataset
    from pipeline.graph.stages import summarize
    from pipeline.precompute.stages import summarize_precompute

    slug = _slug(build_name)
    text = {"graph": summarize, "dataset": summarize_dataset, "precompute": summarize_precompute}
    rows = stage_rows(res)
    for r in rows:
        md = (f"### {r['stage']}: {r['status']}\n\n`{r['store']}` (build key `{r['build_key']}`, "
              f"{r['stored_mb']:,} MB)\n\n```text\n{text[r['stage']](Path(r['store']))}\n```\n")
        create_markdown_artifact(md, key=f"{slug}-{r['stage']}", description=f"{build_name}: the {r['stage']} store")
    create_table_artifact(rows, key=f"{slug}-stages", description=f"{build_name}: every stage of the build")


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
    if args.quiet or args.verbose:  # -v: the pipeline's DEBUG lines, and dask's INFO ones
        logging.getLogger("pipeline").setLevel(logging.WARNING if args.quiet else logging.DEBUG)
    try:
        store = build_graph(**BuildConfig.from_args(args).to_params())
    except (PipelineError, ValueError, OSError) as e:  # the flow run logged the traceback
        print(error_line(e, args.out or Where().out), file=sys.stderr)
        return 2
    print(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
