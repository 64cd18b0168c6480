"""How a stage runs: in this process (the CLI's :class:`LocalRunner`) or as a Prefect task
(the flow's runner in ``flows/build.py``); both have one signature, ``run(fn, *args)``, and
``each`` for independent stages."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LocalRunner:
    """The CLI's runner: stages in this process; ``each`` runs independent stages on threads.

    Threads suffice: the heavy work (numpy sorts, polars, Blosc) releases the GIL.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or default_workers())

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def each(self, calls: Sequence[tuple[Callable[..., Any], tuple]]) -> list[Any]:
        """Run independent stages, concurrently when there are workers; results in call order."""
        if self.workers == 1 or len(calls) < 2:
            return [fn(*a) for fn, a in calls]
        with ThreadPoolExecutor(min(self.workers, len(calls))) as ex:
            futures = [ex.submit(fn, *a) for fn, a in calls]
            return [f.result() for f in futures]


Runner = Callable[..., Any]  # run(fn, *args); optionally .each([(fn, args), ...]) for independent stages


def each(run: Runner, calls: Sequence[tuple[Callable[..., Any], tuple]]) -> list[Any]:
    m = getattr(run, "each", None)
    return m(calls) if m is not None else [run(fn, *a) for fn, a in calls]
