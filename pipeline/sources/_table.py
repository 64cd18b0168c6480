"""Read a delimited text table with a header into all-string columns, strictly.

Shared by the interaction readers (BioGRID, TFLink, regulatory tables). Contract:

- Input is plain, gzip (detected by magic bytes; see :mod:`pipeline.sources._io`)
  or a ``.zip`` holding exactly one file. Empty, truncated or corrupt archives are a
  :class:`~pipeline.core.errors.SourceFormatError` naming the file.
- The header is the first non-blank line not starting with one of ``comment_prefixes``.
  Columns are found by name, case-insensitively, each from a list of accepted
  spellings; missing required columns are one error listing all of them.
- Every data row must have as many fields as the header (pyarrow's CSV parser checks
  this for every row, including the columns not read; polars silently pads short
  rows). Blank lines are skipped. No quoting: a ``"`` is an ordinary character.
- Values are strings, ``""`` for an empty field (never null).

Line numbers in errors are 1-based and count every line of the (decompressed) file.
They are found by a slow re-scan, only on the error path; the happy path is
vectorised. Reading shows a tqdm bar by bytes (``disable=None``: off when not a
terminal); inside a zip only for members over 5 MB.

:func:`lookup_names` is the name-column to gene-index mapping the readers share.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.sources._io import read_source_bytes

_BLOCK = 4 << 20
_BAR_MIN_BYTES = 5 << 20
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Line ends as pyarrow's parser and bytes.splitlines() see them.
_EOL = re.compile(rb"\r\n|\r|\n")
_NON_BLANK = re.compile(rb"\S")
#: Cell values that mean "no value" in the sources read here.
MISSING = ("", "-")


def read_bytes(path: Path, desc: str | None = None) -> bytes:
    """All bytes of ``path``: plain, gunzipped, or the single file inside a zip."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in _ZIP_MAGIC:
        return read_source_bytes(path, desc=desc)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if len(members) != 1:
                raise SourceFormatError(path, None, "a .zip archive holding exactly one file",
                                        f"{len(members)} files: {[m.filename for m in members][:5]}")
            info = members[0]
            chunks = []
            with zf.open(info) as fh, tqdm(total=info.file_size, unit="B", unit_scale=True, leave=False,
                                           desc=desc or info.filename,
                                           disable=None if info.file_size > _BAR_MIN_BYTES else True) as bar:
                while block := fh.read(_BLOCK):
                    chunks.append(block)
                    bar.update(len(block))
            return b"".join(chunks)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise SourceFormatError(path, None, "a complete, valid .zip archive",
                                f"a corrupt or truncated one ({e})") from e


@dataclass(frozen=True)
class Table:
    """The requested columns of a table, and where it came from (to point at lines in errors)."""

    path: Path
    df: pl.DataFrame  #: one String column per requested key that was found
    header: list[str]  #: all header fields, as written
    header_line: int  #: 1-based line number of the header

    def line_of(self, row: int) -> int:
        """1-based file line of data row ``row`` (0-based). Slow: re-reads the file."""
        lines = read_bytes(self.path).splitlines()
        seen = -1
        for i in range(self.header_line, len(lines)):  # lines[header_line] is the first line after the header
            if lines[i]:
                seen += 1
                if seen == row:
                    return i + 1
        raise IndexError(f"{self.path}: no data row {row}")

    def error(self, row: int, expected: str, got: str | None = None) -> SourceFormatError:
        """A :class:`SourceFormatError` pointing at the line of data row ``row``."""
        return SourceFormatError(self.path, self.line_of(row), expected, got)


def _find_header(data: bytes, comment_prefixes: tuple[bytes, ...]) -> tuple[int, int, bytes]:
    """(1-based line number, offset just past it, text) of the header line; line 0 if there is none."""
    pos, line = 0, 0
    while pos < len(data):
        m = _EOL.search(data, pos)
        end, nxt = (m.start(), m.end()) if m else (len(data), len(data))
        line += 1
        text = data[pos:end]
        if line == 1:
            text = text.removeprefix(b"\xef\xbb\xbf")  # UTF-8 BOM
        if text.strip() and not text.startswith(comment_prefixes):
            return line, nxt, text
        pos = nxt
    return 0, len(data), b""


def _first_bad_row(path: Path, data: bytes, header_line: int, n_fields: int, sep: bytes,
                   cause: Exception) -> SourceFormatError:
    """Slow path, only after the parser failed: the first line with a wrong field count or bad UTF-8."""
    for i, raw in enumerate(data.splitlines()[header_line:], start=header_line + 1):
        if not raw:
            continue
        k = raw.count(sep) + 1
        if k != n_fields:
            return SourceFormatError(path, i, f"{n_fields} {_sep_name(sep)}-separated fields as in the header",
                                     f"{k} fields: {raw.decode('utf-8', 'replace')}")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return SourceFormatError(path, i, "UTF-8 text", f"invalid byte at column {e.start + 1}")
    return SourceFormatError(path, None, f"a {_sep_name(sep)}-separated table", str(cause))


def _sep_name(sep: bytes) -> str:
    return {b"\t": "tab", b",": "comma", b" ": "space"}.get(sep, repr(sep.decode()))


def read_table(path: str | Path, columns: Mapping[str, Sequence[str]], *, optional: Collection[str] = (),
               sep: str = "\t", comment_prefixes: Sequence[str] = (), desc: str | None = None) -> Table:
    """Read the columns named in ``columns`` from a delimited table with a header.

    ``columns`` maps an output name to the accepted header spellings, in order of
    preference, matched case-insensitively (surrounding spaces ignored). Keys in
    ``optional`` may be absent from the header (and then from ``Table.df``).
    """
    path = Path(path)
    data = read_bytes(path, desc=desc)
    header_line, body_start, raw_header = _find_header(data, tuple(p.encode() for p in comment_prefixes))
    wanted = ", ".join(repr(v[0]) for k, v in columns.items() if k not in optional)
    if not header_line:
        raise SourceFormatError(path, None, f"a header line with columns {wanted}",
                                "an empty file" if not data.strip() else "only comment lines")
    bsep = sep.encode()
    header = raw_header.decode("utf-8", "replace").split(sep)
    position = {}
    for i, h in reversed(list(enumerate(header))):  # reversed: the first of duplicated names wins
        position[h.strip().lower()] = i
    found: dict[str, int] = {}
    for key, spellings in columns.items():
        hit = next((position[s.lower()] for s in spellings if s.lower() in position), None)
        if hit is not None:
            found[key] = hit
    missing = [f"'{v[0]}'" for k, v in columns.items() if k not in found and k not in optional]
    if missing:
        alts = {k: v for k, v in columns.items() if k not in found and k not in optional and len(v) > 1}
        hint = "".join(f"; {columns[k][0]!r} may also be spelled {', '.join(map(repr, v[1:]))}"
                       for k, v in alts.items())
        raise SourceFormatError(path, header_line,
                                f"a header with the required columns (missing: {', '.join(missing)}{hint})",
                                raw_header.decode("utf-8", "replace"))

    if not _NON_BLANK.search(data, body_start):  # header only: pyarrow would call it an empty file
        df = pl.DataFrame(schema={k: pl.String for k in found})
        return Table(path, df, header, header_line)
    names = [f"f{i}" for i in range(len(header))]
    try:
        arrow = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data).slice(body_start)),
            read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False, double_quote=False,
                                              escape_char=False, newlines_in_values=False,
                                              ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(include_columns=[names[i] for i in found.values()],
                                                 column_types={names[i]: pa.string() for i in found.values()},
                                                 strings_can_be_null=False, null_values=[]),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _first_bad_row(path, data, header_line, len(header), bsep, e) from e
    del data
    df = pl.DataFrame(arrow).rename({names[i]: k for k, i in found.items()})
    return Table(path, df, header, header_line)


def lookup_names(names: pl.Series, genes: GeneIndex, *, split: str | None = None,
                 strip_suffix: str | None = None) -> np.ndarray:
    """Gene indices (int32, -1 unknown) of names in any form :meth:`GeneIndex.lookup_names` accepts.

    Works on the distinct values only. ``split``: a cell may hold several names
    joined by it; the first that maps wins. ``strip_suffix``: a name that does not
    map is retried without this suffix (YEASTRACT writes the protein ``Abf1p`` for
    the gene ``ABF1``). Cells in :data:`MISSING` map to -1.
    """
    uniq = names.cast(pl.String).unique().drop_nulls()
    parts = pl.DataFrame({"key": uniq})
    part = pl.col("key").str.split(split) if split else pl.concat_list(pl.col("key"))
    parts = (parts.with_columns(part.alias("part")).explode("part")
             .with_columns(pl.col("part").str.strip_chars(),
                           pl.int_range(pl.len()).over("key").alias("pos"))
             .filter(~pl.col("part").is_in(MISSING)))
    idx = genes.lookup_names(parts["part"])
    if strip_suffix:
        bare = parts["part"].str.strip_suffix(strip_suffix)
        retry = (idx < 0) & (bare != parts["part"]).to_numpy()
        if retry.any():
            idx = np.where(retry, genes.lookup_names(bare), idx)
    first = (parts.with_columns(pl.Series("idx", idx, dtype=pl.Int32)).filter(pl.col("idx") >= 0)
             .group_by("key").agg(pl.col("idx").sort_by("pos").first()))
    out = names.cast(pl.String).to_frame("key").join(first, on="key", how="left", maintain_order="left")["idx"]
    return out.fill_null(-1).to_numpy().astype(np.int32, copy=False)
