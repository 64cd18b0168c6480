"""Where the precompute tasks run: :func:`dask_client` (a ``dask.distributed`` client: to a
LocalCluster, to an existing scheduler, or to workers started as SLURM/PBS batch jobs through
dask-jobqueue, :class:`BatchJobs`) and :func:`gather` (results as they complete, with one
progress report).

dask's own logs (``distributed.*``) are kept at WARNING while a client is open, in this
process and in the LocalCluster's workers, unless the ``pipeline`` loggers are at DEBUG
(``python -m pipeline.build -v``): then dask's INFO lines show too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import PipelineError
from pipeline.core.progress import Progress

#: how long a connection to ``--dask-address`` may take before the build gives up
CONNECT_TIMEOUT_S = 5
#: dask starts an HTTP server in every scheduler and worker, dashboard or not: give it no routes
#: (and a loopback port the OS picks, below) rather than 8787 on every interface
NO_ROUTES = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}

log = logging.getLogger("pipeline.precompute")


class ClusterUnreachableError(PipelineError):
    """The dask scheduler at ``--dask-address`` does not answer."""


def dask_log_level() -> int:
    """The level of dask's loggers: WARNING, or INFO when the pipeline logs at DEBUG (``-v``)."""
    return logging.INFO if logging.getLogger("pipeline").isEnabledFor(logging.DEBUG) else logging.WARNING


def _not_a_shutdown_kill(record: logging.LogRecord) -> bool:
    # A LocalCluster's nanny kills a worker process that takes over 4 s to exit at shutdown (a
    # loaded machine), once every result is in: dask's designed fallback, not a problem of the build.
    return not record.getMessage().startswith("Worker process still alive after")


@contextlib.contextmanager
def _dask_logs_at(level: int) -> Iterator[None]:
    """``distributed`` (and its children) at ``level`` in this process, for the block; below
    INFO (no ``-v``) without the nannies' shutdown-kill warnings."""
    logger, nanny = logging.getLogger("distributed"), logging.getLogger("distributed.nanny")
    old = logger.level
    logger.setLevel(level)
    quiet = level > logging.INFO
    if quiet:
        nanny.addFilter(_not_a_shutdown_kill)
    try:
        yield
    finally:
        logger.setLevel(old)
        if quiet:
            nanny.removeFilter(_not_a_shutdown_kill)


@dataclass(frozen=True)
class BatchJobs:
    """dask workers started as batch jobs (``--dask-cluster slurm|pbs``): ``jobs`` jobs of
    ``cores`` single-threaded worker processes each, sharing ``memory``. A setting left None
    takes dask-jobqueue's configuration (``~/.config/dask/jobqueue.yaml``, section ``slurm`` or
    ``pbs``); ``cores`` and ``memory`` must come from one of the two.

    >>> BatchJobs("slurm", cores=4, memory="16GB").kwargs()["processes"]
    4
    """

    system: str  # slurm | pbs
    jobs: int = 1
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    interface: str | None = None
    directives: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> BatchJobs | None:
        """The batch jobs of a :class:`~pipeline.precompute.config.PrecomputeConfig` (None: no ``--dask-cluster``)."""
        if cfg.dask_cluster is None:
            return None
        return cls(cfg.dask_cluster, cfg.dask_jobs, cfg.dask_cores, cfg.dask_memory, cfg.dask_walltime,
                   cfg.dask_queue, cfg.dask_account, cfg.dask_interface, tuple(cfg.dask_job_directives))

    def kwargs(self) -> dict[str, Any]:
        """dask-jobqueue's keyword arguments (only the settings given: the rest is its configuration)."""
        given = {"cores": self.cores, "memory": self.memory, "walltime": self.walltime, "queue": self.queue,
                 "account": self.account, "interface": self.interface}
        kw: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if self.cores is not None:
            kw["processes"] = self.cores  # the chunk tasks are single-threaded numpy: one process per core
        if self.directives:
            kw["job_extra_directives"] = list(self.directives)
        return kw

    def cluster(self) -> Any:
        """A new ``SLURMCluster`` / ``PBSCluster`` (its scheduler runs in this process, listening
        where the jobs' workers can reach it; its HTTP server on 127.0.0.1 with no routes; no job
        submitted yet: ``cluster.job_script()`` is the script each job would run)."""
        import dask
        from dask_jobqueue import PBSCluster, SLURMCluster

        kind = {"slurm": SLURMCluster, "pbs": PBSCluster}[self.system]
        try:
            # dask's logs at this build's level (jobqueue's own default is "error")
            with dask.config.set(NO_ROUTES):
                return kind(**self.kwargs(), scheduler_options={"dashboard_address": "127.0.0.1:0"},
                            silence_logs=dask_log_level())
        except ValueError as e:  # jobqueue: "You must specify how much cores and memory per job ..." (2 lines)
            if "cores and memory" not in str(e):
                raise
            raise ValueError(f"--dask-cluster {self.system}: cores and memory per job unknown: pass --dask-cores "
                             f"and --dask-memory, or set cores and memory in jobqueue.yaml's {self.system} "
                             "section") from None


@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None, processes: bool = True,
                batch: BatchJobs | None = None) -> Iterator[Any]:
    """A dask.distributed client: to ``address`` if given (:class:`ClusterUnreachableError`
    after :data:`CONNECT_TIMEOUT_S` seconds without an answer), to batch-job workers with
    ``batch`` (jobs submitted now, cancelled when the block ends; tasks start as workers
    join), else to a new LocalCluster.

    The LocalCluster listens on loopback only, on ports the OS picks: the scheduler, the
    nannies and workers on 127.0.0.1 (threads or processes), no dashboard, and the HTTP servers
    dask always starts bound to 127.0.0.1 with no routes (the scheduler's would otherwise take
    port 8787).
    """
    import dask
    from distributed import Client, LocalCluster

    level = dask_log_level()
    with _dask_logs_at(level):
        if address:
            try:
                client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as e:  # distributed raises OSError (or TimeoutError) on connect
                raise ClusterUnreachableError(f"--dask-address {address}: no dask scheduler answered within "
                                              f"{CONNECT_TIMEOUT_S} s ({type(e).__name__}); start one there or "
                                              "omit --dask-address for a local cluster") from None
            with client:
                yield client
            return
        if batch is not None:
            with batch.cluster() as cluster, Client(cluster) as client:
                cluster.scale(jobs=batch.jobs)
                log.info("submitted %d %s job(s) for dask workers (scheduler %s); tasks start as workers join",
                         batch.jobs, batch.system, cluster.scheduler_address)
                yield client
            return
        from pipeline.core.runner import default_workers
        n = max(1, workers or default_workers())
        with dask.config.set(NO_ROUTES), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                             # tcp on loopback with threads too: dask's in-process comms leave the
                             # workers' HTTP servers without a host, and they then listen on every interface
                             protocol="tcp://", host="127.0.0.1",
                             dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                             silence_logs=level) as cluster, Client(cluster) as client:
            yield client


def gather(client: Any, futures: list[Any], what: str) -> list[Any]:
    """The futures' results in the order they complete; a task's exception is raised here."""
    from distributed import as_completed

    out = []
    bar = Progress(len(futures), what, "task")
    try:
        for fut in as_completed(futures):
            out.append(fut.result())  # raises the task's exception here
            bar.update(1)
    finally:
        bar.close()
    return out
