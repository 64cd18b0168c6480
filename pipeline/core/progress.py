"""One progress report per long step: a tqdm bar on a terminal, a few log lines everywhere else.

A bar on a terminal is for a person watching; a log (a file, a Prefect run's logs, CI) cannot
show a bar, so there the step logs ``what: done of total unit(s) (pct%, s)`` at each quarter
(four lines, not one per item). :func:`lines_too` asks for the lines even when a bar is shown
(a Prefect flow run started from a terminal: its logs get them, the terminal keeps its bar);
:func:`reporting_to` adds a listener called at each whole percent (a Prefect progress artifact).

>>> import logging
>>> p = Progress(4, "demo", "task", logging.getLogger("pipeline.progress"))
>>> for _ in range(4):
...     p.update()
>>> p.close()
>>> p.done
4
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from tqdm import tqdm

_forced = 0  # lines_too() blocks open in any thread (a flow's tasks may run on other threads)
_guard = threading.Lock()
#: listener(progress, percent): at the start (0) and at each whole percent reached
Listener = Callable[["Progress", int], None]
_listeners: list[Listener] = []

log = logging.getLogger("pipeline.progress")


@contextlib.contextmanager
def lines_too() -> Iterator[None]:
    """Within the block, progress is also logged as lines while a terminal shows the bar."""
    global _forced
    with _guard:
        _forced += 1
    try:
        yield
    finally:
        with _guard:
            _forced -= 1


@contextlib.contextmanager
def reporting_to(listener: Listener) -> Iterator[None]:
    """Within the block, every :class:`Progress` also reports to ``listener`` (its errors are
    logged, never raised: a report must not fail the step)."""
    with _guard:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _guard:
            _listeners.remove(listener)


class Progress:
    """``total`` items of a step called ``what``: a bar (terminals only) and quarter log lines."""

    def __init__(self, total: int, what: str, unit: str, logger: logging.Logger = log) -> None:
        self.total, self.what, self.unit, self.log = max(0, int(total)), what, unit, logger
        self.bar = tqdm(total=self.total, desc=what, unit=unit, disable=None, leave=False)
        self.lines = bool(self.bar.disable) or _forced > 0
        self.done, self._quarter, self._t0 = 0, 1, time.perf_counter()
        self._listeners, self._percent = list(_listeners), -1
        self._tell()

    def _tell(self) -> None:
        pct = 100 * self.done // self.total if self.total else 100
        if pct == self._percent:
            return
        self._percent = pct
        for fn in self._listeners:
            try:
                fn(self, pct)
            except Exception as e:  # noqa: BLE001 - a progress report never fails the step
                self.log.warning("%s: progress report failed (%s: %s)", self.what, type(e).__name__, e)

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)
        while self.lines and self.total and self._quarter <= 4 and 4 * self.done >= self._quarter * self.total:
            self.log.info("%s: %d of %d %s(s) done (%d%%, %.1fs)", self.what, self.done, self.total, self.unit,
                          25 * self._quarter, time.perf_counter() - self._t0)
            self._quarter += 1
        self._tell()

    def close(self) -> None:
        self.bar.close()
