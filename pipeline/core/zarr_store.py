"""Zarr v3 helpers every store uses: writing a whole array, opening a published store (present,
readable, of the expected format and version)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.core import remote
from pipeline.core.errors import StoreError
from pipeline.core.remote import ChunkCache, is_url

#: ~4 MB of int32 per chunk: above zarr's ~1 MB guidance, small enough to stream.
CHUNK_ELEMS = 1 << 20
# zstd level 1: within ~10% of level 3's size and ~1.5x faster to write (benchmarked).
ZSTD1 = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")


def put_array(group: zarr.Group, name: str, data: np.ndarray, codec: BloscCodec = ZSTD1) -> None:
    """Write ``data`` as ``group/name``, chunked by ~CHUNK_ELEMS rows (strings: zarr's vlen-utf8)."""
    data = np.asarray(data)
    chunks = (max(1, min(len(data), CHUNK_ELEMS)),) + data.shape[1:]
    if data.dtype.kind in "UOT":
        arr = group.create_array(name, shape=data.shape, dtype=str, chunks=chunks)
    else:
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, compressors=codec)
    if data.size:
        arr[...] = data


def open_versioned_group(path: Path | str, fmt: str, version: int, kind: str, remedy: str,
                         cache: ChunkCache | None = None) -> zarr.Group:
    """The root group of a published store, or a :class:`StoreError` that says what is wrong.

    ``kind`` names the store in messages ("graph store"); ``remedy`` is the verb to fix
    it ("rebuild", "recompute"). A store without a manifest is incomplete (its writer
    died before publishing) and is refused. ``path`` may be a URL (:mod:`pipeline.core.remote`:
    read-only through fsspec, files cached in ``cache`` when given).
    """
    if is_url(path):
        try:
            root = remote.open_zarr_group(str(path), kind, cache)
        except StoreError:
            raise
        except Exception as e:  # zarr and fsspec raise several types for a damaged or unreachable group
            raise StoreError(f"{path}: not a readable Zarr v3 group: {type(e).__name__}: {e}") from e
    elif not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no {kind} here (no zarr.json)")
    else:
        try:
            root = zarr.open_group(str(path), mode="r")
        except Exception as e:  # zarr raises several types for a damaged group
            raise StoreError(f"{path}: not a readable Zarr v3 group: {e}") from e
    attrs = root.attrs.asdict()
    if attrs.get("format") != fmt or "manifest" not in attrs:
        raise StoreError(f"{path}: incomplete or foreign store (no {fmt} manifest); {remedy} it")
    if attrs.get("format_version") != version:
        raise StoreError(f"{path}: format version {attrs.get('format_version')}, this code reads {version}; "
                         f"{remedy} it")
    return root


@dataclass
class PublishedStore:
    """A published Zarr store opened read-only: its path, root group and manifest."""

    path: Path | str  # a URL for a remote store
    root: zarr.Group

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.root.attrs["manifest"])
