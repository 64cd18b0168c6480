"""File checksums of a store: every stored byte covered, checked without decoding anything.

A store's manifest records the CRC-32 of every file under the store (Zarr chunk and
shard files, group and array metadata, Parquet files) when it is published;
:func:`damaged_files` re-reads them and names each file that is missing, changed or
unexpected, with its array and the rows its chunk holds.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> _ = (d / "a.bin").write_bytes(b"abc")
>>> sums = file_digests(d)
>>> sums
{'a.bin': '352441c2'}
>>> _ = (d / "a.bin").write_bytes(b"abd")
>>> damaged_files(d, sums)
['a.bin: checksum differs (stored 352441c2, now ab40d461)']
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

#: Top-level files that hold the manifest itself (written after the digests are taken).
MANIFEST_FILES = ("zarr.json", "manifest.json")
_BLOCK = 1 << 22


def crc32(data: bytes | memoryview) -> str:
    """CRC-32 as the manifests record it (8 hex digits).

    >>> crc32(b"abc")
    '352441c2'
    """
    return f"{zlib.crc32(data):08x}"


def file_crc32(path: Path) -> str:
    """CRC-32 of one file, 8 hex digits, read in blocks (:func:`crc32` of its bytes)."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def _files(root: Path, skip: tuple[str, ...]) -> list[Path]:
    top = {*MANIFEST_FILES, *skip}
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not (len(rel.parts) == 1 and rel.name in top) and rel.parts[0] not in skip \
                and not rel.name.startswith("."):
            out.append(p)
    return out


def file_digests(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """CRC-32 (8 hex digits) of every file under ``root``, by POSIX path relative to it, except the
    top-level manifest files and the top-level entries named in ``skip``."""
    return {p.relative_to(root).as_posix(): file_crc32(p) for p in _files(root, skip)}


def _where(root: Path, rel: str) -> str:
    """``rel`` named by its array and the rows of its chunk, when it is a Zarr chunk file."""
    parts = rel.split("/")
    if "c" not in parts:
        return rel
    i = parts.index("c")
    array, key = "/".join(parts[:i]), parts[i + 1:]
    try:
        meta = json.loads((root / array / "zarr.json").read_text())
        rows = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        first = int(key[0]) * rows
        last = min(first + rows, int(meta["shape"][0])) - 1
    except (OSError, ValueError, KeyError, IndexError):
        return rel
    return f"{array} rows {first}..{last} ({rel})"


def damaged_files(root: Path, digests: dict[str, str], skip: tuple[str, ...] = ()) -> list[str]:
    """One problem per file of ``root`` that differs from ``digests`` (empty: every byte as published)."""
    have = {p.relative_to(root).as_posix() for p in _files(root, skip)}
    problems = []
    for rel, want in sorted(digests.items()):
        if rel not in have:
            problems.append(f"{_where(root, rel)}: missing")
            continue
        now = file_crc32(root / rel)
        if now != want:
            problems.append(f"{_where(root, rel)}: checksum differs (stored {want}, now {now})")
    problems += [f"{rel}: not part of the published store" for rel in sorted(have - set(digests))]
    return problems
