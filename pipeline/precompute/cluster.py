"""Where the precompute tasks run: :func:`dask_client` (a ``dask.distributed`` client, to a
LocalCluster or an existing scheduler) and :func:`gather` (results as they complete, with a
progress bar)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from pipeline.core.errors import PipelineError

#: how long a connection to ``--dask-address`` may take before the build gives up
CONNECT_TIMEOUT_S = 5


class ClusterUnreachableError(PipelineError):
    """The dask scheduler at ``--dask-address`` does not answer."""


@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None, processes: bool = True) -> Iterator[Any]:
    """A dask.distributed client: to ``address`` if given (:class:`ClusterUnreachableError`
    after :data:`CONNECT_TIMEOUT_S` seconds without an answer), else to a new LocalCluster.

    The LocalCluster listens on loopback only, on ports the OS picks: the scheduler, the
    nannies and workers on 127.0.0.1 (threads or processes), no dashboard, and the HTTP servers
    dask always starts bound to 127.0.0.1 with no routes (the scheduler's would otherwise take
    port 8787).
    """
    import dask
    from distributed import Client, LocalCluster

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
    from pipeline.core.runner import default_workers
    n = max(1, workers or default_workers())
    no_routes = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
    with dask.config.set(no_routes), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                         # tcp on loopback with threads too: dask's in-process comms leave the
                         # workers' HTTP servers without a host, and they then listen on every interface
                         protocol="tcp://", host="127.0.0.1",
                         dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                         silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        yield client


def gather(client: Any, futures: list[Any], what: str) -> list[Any]:
    """The futures' results in the order they complete; a task's exception is raised here."""
    from distributed import as_completed
    from tqdm import tqdm

    out = []
    with tqdm(total=len(futures), desc=what, unit="task", disable=None, leave=False) as bar:
        for fut in as_completed(futures):
            out.append(fut.result())  # raises the task's exception here
            bar.update(1)
    return out
