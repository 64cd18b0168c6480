"""Read a whole source file into memory, transparently decompressing, with a progress bar.

:func:`read_source_bytes` is the one way the source readers read a file: plain, gzip
(detected by its magic bytes, concatenated members included) or a ``.zip`` holding
exactly one file (detected by its magic bytes). Whole-file reads let polars parse with
all cores; the bar follows the bytes read from disk (compressed bytes for ``.gz``;
inside a zip, the member's bytes, shown only for members over 5 MB). An empty,
truncated or corrupt archive is a :class:`~pipeline.core.errors.SourceFormatError`
naming the file.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

try:  # Intel ISA-L inflates ~3x faster than zlib; same API and errors
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is a dependency, but stay usable without it
    _inflate = zlib

from tqdm.auto import tqdm

from pipeline.core.errors import SourceFormatError

_BLOCK = 4 << 20
_BAR_MIN_BYTES = 5 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def read_source_bytes(path: str | Path, desc: str | None = None) -> bytes:
    """All bytes of ``path``: plain, gunzipped, or the single file inside a zip (see the module doc)."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic in _ZIP_MAGIC:
            return _read_zip(path, fh, desc)
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc or path.name,
                  disable=None, leave=False) as bar:
            if magic[:2] == _GZIP_MAGIC:
                return _read_gzip(path, fh, bar)
            return _read_plain(fh, bar)


def _read_plain(fh: BinaryIO, bar: tqdm) -> bytes:
    parts: list[bytes] = []  # joined once at the end: one copy of the data in all
    while block := fh.read(_BLOCK):
        parts.append(block)
        bar.update(len(block))
    return b"".join(parts)


def _read_gzip(path: Path, fh: BinaryIO, bar: tqdm) -> bytes:
    parts: list[bytes] = []
    d = _inflate.decompressobj(wbits=31)
    try:
        while block := fh.read(_BLOCK):
            bar.update(len(block))
            parts.append(d.decompress(block))
            while d.eof and d.unused_data:  # concatenated gzip members (bgzip, cat a.gz b.gz)
                rest = d.unused_data
                d = _inflate.decompressobj(wbits=31)
                parts.append(d.decompress(rest))
        parts.append(d.flush())
    except (zlib.error, _inflate.error) as e:
        raise SourceFormatError(path, None, "a valid gzip stream", f"corrupt data ({e})") from e
    if not d.eof:
        raise SourceFormatError(path, None, "a complete gzip stream", "a truncated file (ends mid-stream)")
    return b"".join(parts)


def _read_zip(path: Path, fh: BinaryIO, desc: str | None) -> bytes:
    try:
        with zipfile.ZipFile(fh) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if len(members) != 1:
                raise SourceFormatError(path, None, "a .zip archive holding exactly one file",
                                        f"{len(members)} files: {[m.filename for m in members][:5]}")
            info = members[0]
            with zf.open(info) as member, tqdm(total=info.file_size, unit="B", unit_scale=True, leave=False,
                                               desc=desc or info.filename,
                                               disable=None if info.file_size > _BAR_MIN_BYTES else True) as bar:
                return _read_plain(member, bar)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise SourceFormatError(path, None, "a complete, valid .zip archive",
                                f"a corrupt or truncated one ({e})") from e


def line_of_offset(data: bytes, offset: int) -> int:
    """1-based line number of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def nth_line(data: bytes, line: int) -> str:
    """Text of 1-based line ``line`` (for error messages)."""
    start = 0
    for _ in range(line - 1):
        start = data.find(b"\n", start) + 1
        if start == 0:
            return ""
    end = data.find(b"\n", start)
    return data[start:end if end >= 0 else len(data)].decode("utf-8", "replace")
