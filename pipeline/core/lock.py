"""One build per output store at a time: an ``flock``-held lock file beside the store.

:func:`store_lock` holds ``.<store>.lock`` (next to ``<store>``) for the whole life of a
stage's write: planning, staging and publish. The file holds JSON ``{pid, host, since}``
of the holder, for the message a second build gets. The kernel releases the lock when
its holder exits, however it exits (``kill -9`` included), so a lock file left behind is
never stale: the next build simply takes it. The file itself is never removed (removing
it would let two builds lock two different files of the same name).

>>> import tempfile
>>> store = Path(tempfile.mkdtemp()) / "graph.zarr"
>>> with store_lock(store):
...     try:
...         with store_lock(store):
...             pass
...     except BuildLockedError as e:
...         print(str(e).split(" (")[0])
another build of graph.zarr is running
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import PipelineError

log = logging.getLogger("pipeline.build")


class BuildLockedError(PipelineError):
    """Another live build holds the lock of the store this build would write."""


def lock_path(store: Path) -> Path:
    """The lock file of ``store``: ``.<name>.lock`` beside it."""
    return store.parent / f".{store.name}.lock"


def _holder(fd: int) -> str:
    """The holder's record, as words for the error message."""
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
    return "holder unknown"


@contextlib.contextmanager
def store_lock(store: str | Path, wait: bool = False) -> Iterator[Path]:
    """Hold the lock of ``store`` for the block; yields the lock file's path.

    Raises :class:`BuildLockedError` at once if another build holds it, or waits for it with
    ``wait``. Two holders in one process conflict too (each call opens the file anew).
    """
    store = Path(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(store)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            if not wait:
                raise BuildLockedError(f"another build of {store.name} is running ({who}); wait for it or pass "
                                       f"--wait (lock {path})") from None
            log.info("waiting for another build of %s (%s)", store, who)
            fcntl.flock(fd, fcntl.LOCK_EX)
        since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, body, 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
