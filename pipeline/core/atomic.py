"""Publish a directory atomically: build it under a temporary name, then rename.

A reader only ever opens the final name, and the final name only ever holds a
complete store: a killed writer leaves a ``.<name>.tmp-*`` directory behind, which
no reader opens and the next writer removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_stale(final: Path) -> int:
    """Remove temporaries left by killed writers of ``final``; returns how many."""
    n = 0
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    for p in final.parent.glob(f".{final.name}.old-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def staging_dir(final: str | Path) -> Path:
    """A new empty temporary directory beside ``final``, to be published or discarded."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


def discard(tmp: str | Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


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
    _fsync_dir(final.parent)
    return final


