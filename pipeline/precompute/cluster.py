"""Where the precompute tasks run: :func:`dask_client` (a ``dask.distributed`` client, to a
LocalCluster or an existing scheduler) and :func:`gather` (results as they complete, with a
progress bar)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None, processes: bool = True) -> Iterator[Any]:
    """A dask.distributed client: to ``address`` if given, else to a new LocalCluster."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    from pipeline.core.runner import default_workers
    n = max(1, workers or default_workers())
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
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
