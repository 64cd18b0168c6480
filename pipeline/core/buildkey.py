"""Build keys: a digest of everything a store depends on, so that a rebuild with the
same inputs and parameters can be recognised and skipped."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.digests import damaged_files
from pipeline.core.errors import StoreError

log = logging.getLogger("pipeline.build")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(1 << 22):
            h.update(b)
    return h.hexdigest()


def build_key(spec: dict[str, Any]) -> str:
    """sha256 of ``spec`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def is_current(store: Path, key: str, manifest_of: Callable[[Path], dict[str, Any]], force: bool = False) -> bool:
    """True if ``store`` exists, opens, was built with ``key`` and every file it stored is as
    published (never when ``force``); a damaged store is logged and rebuilt."""
    if force or not store.exists():
        return False
    try:
        manifest = manifest_of(store)
    except StoreError:  # incomplete or foreign: rebuild
        return False
    if manifest.get("build_key") != key:
        return False
    problems = damaged_files(store, manifest["files"]) if "files" in manifest else []
    if problems:
        log.warning("%s is damaged (%d file(s): %s): rebuilding it", store, len(problems), "; ".join(problems[:3]))
        return False
    return True
