"""Build keys: a digest of everything a store depends on, so that a rebuild with the
same inputs and parameters can be recognised and skipped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.errors import StoreError


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
    """True if ``store`` exists, opens, and was built with ``key`` (never when ``force``)."""
    if force or not store.exists():
        return False
    try:
        return manifest_of(store).get("build_key") == key
    except StoreError:  # incomplete or foreign: rebuild
        return False
