"""Publish a directory atomically: build it under a temporary name, then rename.

A reader only ever opens the final name, and the final name only ever holds a
complete store: a killed writer leaves a ``.<name>.tmp-*`` directory behind, which
no reader opens and the next writer removes.

A temporary directory is *owned* while its writer lives: :func:`staging_dir` (and
:func:`own` for a staging folder made otherwise) holds an ``flock`` on the directory
itself until :func:`publish_dir` or :func:`discard` (the kernel drops it when the writer
dies). :func:`clean_stale` removes only debris that no live writer holds, so a build
never deletes another live build's staging.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import uuid
from pathlib import Path

from pipeline.core.errors import StoreError

# staging directory -> the descriptor holding its flock, while this process writes it
_owned: dict[Path, int] = {}
_owned_guard = threading.Lock()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def own(path: Path) -> None:
    """Hold ``path`` (a directory) as this process's live staging until :func:`release`.

    An ``flock`` on the directory's own descriptor: it survives the rename into place and
    ends with the process, so nothing is left to clean when a writer is killed.
    """
    path = Path(path)
    with _owned_guard:
        if path in _owned:
            return  # already ours (a rerun in the same process)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{path}: this staging directory is being written by another live process") from None
    with _owned_guard:
        _owned[path] = fd


def release(path: Path) -> None:
    """Let go of a directory held by :func:`own` (no-op if not held)."""
    with _owned_guard:
        fd = _owned.pop(Path(path), None)
    if fd is not None:
        os.close(fd)


def discard_own(final: Path) -> int:
    """Discard the staging directories of ``final`` that this process holds (a build that
    failed before it knew its staging's name); returns how many."""
    with _owned_guard:
        mine = [p for p in _owned if p.parent == final.parent and p.name.startswith(f".{final.name}.tmp-")]
    for p in mine:
        discard(p)
    return len(mine)


def is_live(path: Path) -> bool:
    """Whether a live writer (this process or another) holds the directory ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False  # gone, or not a directory: nobody writes it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False


def clean_stale(final: Path) -> int:
    """Remove temporaries of ``final`` that no live writer holds (left by killed or failed
    writers); returns how many."""
    n = 0
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for p in final.parent.glob(pattern):
            if is_live(p):
                continue  # another build's staging, being written right now
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def staging_dir(final: str | Path) -> Path:
    """A new empty temporary directory beside ``final``, to be published or discarded."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    own(tmp)
    return tmp


def discard(tmp: str | Path) -> None:
    """Remove a staging directory and let go of it."""
    shutil.rmtree(tmp, ignore_errors=True)
    release(Path(tmp))


def publish_dir(tmp: str | Path, final: str | Path) -> Path:
    """Replace ``final`` by the complete directory ``tmp`` (one rename for readers)."""
    tmp, final = Path(tmp), Path(final)
    _fsync_dir(tmp)
    if final.exists():
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    release(tmp)
    _fsync_dir(final.parent)
    return final


