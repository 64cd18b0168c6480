"""One build per output store at a time: an ``flock``-held lock file beside the store.

:func:`store_lock` holds ``.<store>.lock`` (next to ``<store>``) for the whole life of a
stage's write: planning, staging and publish. The file holds JSON ``{pid, host, since}``
of the holder, for the message a second build gets. The kernel releases the lock when
its holder exits, however it exits (``kill -9`` included), so a lock file left behind by a
killed build is never stale: the next build simply takes it. A holder removes the file as
it lets go; a build that opened the old file meanwhile notices (:func:`_same_file`) and
locks the new one, so two builds never hold two files of one name.

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
import time
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
    """The holder's record, as words for the error message. A new lock file is empty until its
    first holder has written it (just after taking the lock): wait a moment for that."""
    for _ in range(50):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            info = json.loads(os.pread(fd, 4096, 0))
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        time.sleep(0.01)
    return "holder unknown"


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (its holder removes it at the end)."""
    try:
        st, here = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _acquire(store: Path, path: Path, wait: bool) -> int:
    """A descriptor of ``path`` holding its lock (see :func:`store_lock`)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _holder(fd)
                if not wait:
                    raise BuildLockedError(f"another build of {store.name} is running ({who}); wait for it or "
                                           f"pass --wait (lock {path})") from None
                log.info("waiting for another build of %s (%s)", store, who)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed the file as we took it: lock the one that names it now


@contextlib.contextmanager
def store_lock(store: str | Path, wait: bool = False) -> Iterator[Path]:
    """Hold the lock of ``store`` for the block; yields the lock file's path.

    Raises :class:`BuildLockedError` at once if another build holds it, or waits for it with
    ``wait``. Two holders in one process conflict too (each call opens the file anew). The
    holder removes the file when it lets go (a killed holder's file is taken over by the next
    build); a build that opened the file just before sees that and locks the new one.
    """
    store = Path(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(store)
    fd = _acquire(store, path, wait)
    try:
        since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()
        os.pwrite(fd, body, 0)  # then truncate: a file taken over from a killed build is never empty
        os.ftruncate(fd, len(body))
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: nobody else can have replaced it
        os.close(fd)  # releases the lock
