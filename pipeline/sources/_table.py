"""Read a delimited text table with a header into all-string columns, strictly.

Shared by the interaction readers (BioGRID, TFLink, regulatory tables). Contract:

- Input is plain, gzip or a ``.zip`` holding exactly one file, read by
  :func:`pipeline.sources._io.read_source_bytes` (detected by magic bytes). Empty,
  truncated or corrupt archives are a :class:`~pipeline.core.errors.SourceFormatError`
  naming the file.
- The header is the first non-blank line not starting with one of ``comment_prefixes``.
  Columns are found by name (:func:`match_header`, shared with the phenotype
  tables), each from a list of accepted spellings; missing required columns are one
  error listing all of them (:func:`missing_columns`).
- Every data row must have as many fields as the header (pyarrow's CSV parser checks
  this for every row, including the columns not read; polars silently pads short
  rows). Blank lines are skipped. No quoting: a ``"`` is an ordinary character.
- Values are strings, ``""`` for an empty field (never null).

Line numbers in errors are 1-based and count every line of the (decompressed) file.
They are found by a slow re-scan, only on the error path; the happy path is
vectorised. Reading shows a tqdm bar by bytes (``disable=None``: off when not a
terminal); inside a zip only for members over 5 MB.

:func:`lookup_names` is the name-column to gene-index mapping the readers share.
:func:`match_header` is the one header matcher of the source readers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.sources._io import read_source_bytes

# Line ends as pyarrow's parser and bytes.splitlines() see them.
_EOL = re.compile(rb"\r\n|\r|\n")
_NON_BLANK = re.compile(rb"\S")
#: Cell values that mean "no value" in the sources read here.
MISSING = ("", "-")


def normalise_header(name: str) -> str:
    """A header name as :func:`match_header` compares it: no BOM, spaces collapsed, lower case.

    >>> normalise_header("\ufeffQuery  strain ID ")
    'query strain id'
    """
    return " ".join(name.replace("\ufeff", "").split()).lower()


def _bare(name: str) -> str:
    """Without a trailing parenthetical: 'raw genetic interaction score (epsilon)' -> '... score'."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", name)


def match_header(header: Sequence[str], columns: Mapping[str, Sequence[str]], optional: Collection[str] = (),
                 *, bare: bool = False) -> tuple[dict[str, int], list[str]]:
    """Find ``columns`` (output key -> accepted spellings, first = canonical) among the ``header`` names.

    Returns (key -> column position for the keys found, in ``columns`` order; the
    required keys, not in ``optional``, that were not found). Names compare after
    :func:`normalise_header` (case, surrounding and repeated spaces ignored); of
    duplicated header names the first wins; of a key's spellings the first present
    wins; a column serves one key at most (a later key naming a taken column is not
    found). ``bare``: a key none of whose spellings is present also matches a name
    that differs only in a trailing ``(...)``, e.g. ``(epsilon)`` vs ``(epsilon, tau)``.

    >>> match_header(["ID", "Gene  Name", "Score (raw)"], {"id": ["id"], "name": ["name", "gene name"],
    ...              "score": ["score (adjusted)"], "w": ["weight"]}, optional={"w"}, bare=True)
    ({'id': 0, 'name': 1, 'score': 2}, [])
    >>> match_header(["ID", "Score (raw)"], {"id": ["id"], "score": ["score (adjusted)"]})
    ({'id': 0}, ['score'])
    """
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    for i in reversed(range(len(header))):  # reversed: the first of duplicated names wins
        name = normalise_header(header[i])
        exact[name] = i
        if bare:
            loose[_bare(name)] = i
    found: dict[str, int] = {}
    for key, spellings in columns.items():
        names = [normalise_header(s) for s in spellings]
        hit = next((exact[n] for n in names if n in exact), None)
        if hit is None and bare:
            hit = next((loose[_bare(n)] for n in names if _bare(n) in loose), None)
        if hit is not None and hit not in found.values():
            found[key] = hit
    return found, [k for k in columns if k not in found and k not in optional]


def missing_columns(columns: Mapping[str, Sequence[str]], missing: Sequence[str], what: str = "a header") -> str:
    """The ``expected`` text of the error for a header without the ``missing`` keys of ``columns``.

    >>> missing_columns({"a": ["A"], "t": ["target", "Gene"]}, ["a", "t"])
    "a header with the required columns (missing: 'A', 'target'; 'target' may also be spelled 'Gene')"
    """
    hint = "".join(f"; {columns[k][0]!r} may also be spelled {', '.join(map(repr, columns[k][1:]))}"
                   for k in missing if len(columns[k]) > 1)
    return f"{what} with the required columns (missing: {', '.join(repr(columns[k][0]) for k in missing)}{hint})"


@dataclass(frozen=True)
class Table:
    """The requested columns of a table, and where it came from (to point at lines in errors)."""

    path: Path
    df: pl.DataFrame  #: one String column per requested key that was found
    header: list[str]  #: all header fields, as written
    header_line: int  #: 1-based line number of the header

    def line_of(self, row: int) -> int:
        """1-based file line of data row ``row`` (0-based). Slow: re-reads the file."""
        lines = read_source_bytes(self.path).splitlines()
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
    start = 0  # byte offset of line i (split on \n only, so offsets stay exact; a \r is stripped)
    for i, line in enumerate(data.split(b"\n"), start=1):
        at, start = start, start + len(line) + 1
        raw = line.removesuffix(b"\r")
        if i <= header_line or not raw:
            continue
        k = raw.count(sep) + 1
        if k != n_fields:
            return SourceFormatError(path, i, f"{n_fields} {_sep_name(sep)}-separated fields as in the header",
                                     f"{k} fields: {raw.decode('utf-8', 'replace')}")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return SourceFormatError(path, i, f"UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset "
                                              f"{at + e.start}, column {e.start + 1}, is not)")
    return SourceFormatError(path, None, f"a {_sep_name(sep)}-separated table", str(cause))


def _sep_name(sep: bytes) -> str:
    return {b"\t": "tab", b",": "comma", b" ": "space"}.get(sep, repr(sep.decode()))


def read_table(path: str | Path, columns: Mapping[str, Sequence[str]], *, optional: Collection[str] = (),
               sep: str = "\t", comment_prefixes: Sequence[str] = (), desc: str | None = None) -> Table:
    """Read the columns named in ``columns`` from a delimited table with a header.

    ``columns`` maps an output name to the accepted header spellings, in order of
    preference, matched by :func:`match_header` (case and spaces ignored). Keys in
    ``optional`` may be absent from the header (and then from ``Table.df``).
    """
    path = Path(path)
    data = read_source_bytes(path, desc=desc)
    header_line, body_start, raw_header = _find_header(data, tuple(p.encode() for p in comment_prefixes))
    wanted = ", ".join(repr(v[0]) for k, v in columns.items() if k not in optional)
    if not header_line:
        raise SourceFormatError(path, None, f"a header line with columns {wanted}",
                                "an empty file" if not data.strip() else "only comment lines")
    bsep = sep.encode()
    header = raw_header.decode("utf-8", "replace").split(sep)
    found, missing = match_header(header, columns, optional)
    if missing:
        raise SourceFormatError(path, header_line, missing_columns(columns, missing),
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
