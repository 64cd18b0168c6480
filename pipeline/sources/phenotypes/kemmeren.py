"""Kemmeren et al. 2014 (Cell 157:740) deletion-mutant expression profiles, from GEO family SOFT files.

Released files (GEO; names as GEO serves them, facts from TorchCell 1.8.4's loader):

- ``GSE42527_family.soft.gz`` (responsive mutants) and ``GSE42526_family.soft.gz``
  (non-responsive mutants): one ``^PLATFORM`` block (its table maps probe ``ID`` to a
  systematic name in ``ORF``, or ``SystematicName`` / ``Gene``...) and one ``^SAMPLE`` block
  per two-colour array: ``!Sample_title`` (``bck1-del-1-a``, ``[HS1991] cup9-del-a``),
  ``!Sample_source_name_ch1/ch2`` (the common reference pool is the channel whose source
  name starts with ``ref``: ``refpool``, ``ref1``), ``!Sample_label_ch1/ch2`` (``Cy5``,
  ``Cy3``) and a table between ``!sample_table_begin`` / ``!sample_table_end`` with
  ``ID_REF``, ``VALUE``, ``Signal Norm_Cy5``, ``Signal Norm_Cy3``.
- Table S1 (``kemmeren2014_table_s1.xlsx``, the paper's ``mmc1.xlsx``; 1,484 rows, columns
  ``gene``, ``orf name``, ``mating type``): the release's crosswalk from the common name in a
  title to the ORF.

What is stored (label ``kemmeren2014.expression``): per deletion mutant and gene, the mean
over the mutant's arrays of log2(deletion signal / reference-pool signal), each array's
ratio taken within the array from the ``Signal Norm`` columns by the channels GEO names
(``VALUE``'s orientation is not consistent across arrays, so it is not used); a gene with
several probes averages them within the array. The p-value is the two-sided one-sample
t-test of the mutant's per-array log-ratios (df = arrays - 1); a gene measured on one array
gets p = 1 (no evidence). Arrays whose title names no ``-del`` gene are wild-type arrays
and skipped; a title token Table S1 does not resolve (and not ORF-shaped) is skipped; both
counted.

Reading: a file is streamed a 32 MB block at a time (the next block inflated on a thread), its
sample tables parsed by one polars read per 256 arrays and reduced to per-strain sums by numpy
(no loop over rows); memory is a few blocks plus the per-strain sums, not the file.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.errors import SourceFormatError
from pipeline.core.perturbations import CODES

#: platform columns that hold the systematic name of a probe, in order of preference
PLATFORM_GENE_COLUMNS = ("ORF", "SystematicName", "Systematic_Name", "SYSTEMATIC_NAME", "Gene", "GENE_SYMBOL")
SIGNAL = {"Cy5": "Signal Norm_Cy5", "Cy3": "Signal Norm_Cy3"}
SYSTEMATIC = re.compile(r"^(Y[A-P][LR]\d{3}[WC](-[A-Z])?|Q\d{4}|YNC[A-Q]\d{4}[WC])$")
_NULLS = ["", "null", "NULL", "NA", "NaN", "nan", "-"]
#: arrays parsed together: bounds the parsed text to ~256 x 6,200 rows at a time
_BATCH = 256


#: decompressed bytes read at a time: the parser holds about one block (never the whole file)
_BLOCK = 32 << 20


@dataclass
class Entity:
    """One ``^KIND = accession`` block of a SOFT file: its ``!`` metadata and its table (header line
    and rows, bytes) with the line numbers of the block and of the table's header line."""

    kind: str
    acc: str
    line: int
    meta: dict[str, list[str]]
    table: bytes | memoryview | None = None
    table_line: int = 0
    rows: int = 0  # lines of the table (its header line included)

    def first(self, key: str) -> str:
        v = self.meta.get(key)
        return v[0].strip() if v else ""


def _blocks(path: Path) -> Iterator[bytes]:
    """Decompressed blocks of a plain or gzip file, the next one inflated on a thread while this one is
    parsed (isal and zlib release the GIL); a truncated gzip is an error naming the file."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        from isal import igzip as gzip_mod
    except ImportError:  # pragma: no cover - isal is a dependency
        import gzip as gzip_mod  # type: ignore[no-redef]
    opener = gzip_mod.open if gz else open
    try:
        with opener(path, "rb") as fh, ThreadPoolExecutor(1, thread_name_prefix="soft-inflate") as ex:
            nxt = ex.submit(fh.read, _BLOCK)
            while block := nxt.result():
                nxt = ex.submit(fh.read, _BLOCK)
                yield block
    except (EOFError, OSError) as e:
        raise SourceFormatError(path, None, "a complete gzip file", f"a corrupt or truncated one ({e})") from None


def _entities(path: Path, text: bytes, stop: int, line0: int, last: list[int]) -> Iterator[Entity]:
    """The entities of ``text[:stop]`` (whole entities, starting at line ``line0``), scanned in order: an
    entity's end is the next ``\\n^`` outside its table (a table is skipped by finding its end line), so
    each byte is scanned about once and never copied: a table is a view of ``text``; its lines are
    counted once (``Entity.rows``). ``last[0]`` is set to the line after the last entity."""
    line, view = line0, memoryview(text)
    a = 0 if text.startswith(b"^") else text.find(b"\n^", 0, stop) + 1 or stop
    tb = -2  # the next "_table_begin" at or after a (-1: none before stop; -2: not searched yet)
    while a < stop:
        if tb != -1 and tb < a:
            tb = text.find(b"_table_begin", a, stop)
        nx = text.find(b"\n^", a, tb if tb >= 0 else stop)
        begin = -1 if nx >= 0 else tb  # this entity has a table only if no other entity starts before it
        nl = text.find(b"\n", a, stop)
        first = text[a + 1:nl if nl >= 0 else stop].decode("utf-8", "replace")
        kind, _, acc = first.partition(" = ")
        head_end = (nx + 1 if nx >= 0 else stop) if begin < 0 else text.rfind(b"\n", a, begin) + 1
        meta: dict[str, list[str]] = {}
        for ln in text[a:head_end].decode("utf-8", "replace").splitlines()[1:]:
            if ln.startswith("!") and " = " in ln:
                key, _, val = ln[1:].partition(" = ")
                key = key.strip()
                for pre in ("Sample_", "Platform_", "Series_"):
                    key = key.removeprefix(pre)
                meta.setdefault(key, []).append(val)
        ent = Entity(kind.strip(), acc.strip(), line, meta)
        if begin < 0:
            b = nx + 1 if nx >= 0 else stop
            line += text.count(b"\n", a, b)
        else:
            body = text.find(b"\n", begin, stop) + 1
            end = text.find(b"_table_end", body, stop)
            if body <= 0 or end < 0:
                raise SourceFormatError(path, line + text.count(b"\n", a, begin),
                                        f"a '!..._table_end' line closing the table of {ent.acc}")
            tail = text.rfind(b"\n", body, end) + 1
            nxt = text.find(b"\n^", end, stop)
            b = nxt + 1 if nxt >= 0 else stop
            ent.table = view[body:tail]
            ent.table_line = line + text.count(b"\n", a, body)
            ent.rows = text.count(b"\n", body, tail)
            line = ent.table_line + ent.rows + text.count(b"\n", tail, b)
            tb = -2
        yield ent
        a = b
    last[:] = [line]


def iter_soft(path: str | Path) -> Iterator[Entity]:
    """The entities of a GEO family SOFT file (plain or gzip), in order, read a block at a time (the
    text of about one block is held; an entity's table is a view of it, valid while it is in use).

    A file without a ``^`` entity line is a :class:`SourceFormatError`.
    """
    path = Path(path)
    rest, line0, seen = b"", [1], False
    for block in _blocks(path):
        text = rest + block if rest else block
        cut = text.rfind(b"\n^")
        if cut < 0:
            rest = text
            continue
        for e in _entities(path, text, cut + 1, line0[0], line0):
            seen = True
            yield e
        rest = text[cut + 1:]
    for e in _entities(path, rest, len(rest), line0[0], line0):
        seen = True
        yield e
    if not seen:
        raise SourceFormatError(path, None, "a GEO family SOFT file (lines '^SERIES = ...', '^SAMPLE = ...')")


def probe_genes(path: Path, platform: Entity) -> pl.DataFrame:
    """(``ID_REF`` text, systematic name) of a ``^PLATFORM`` table's probes with a systematic-shaped name
    in its gene column (``ORF``, ``SystematicName``, ...); a table without them is an error."""
    try:
        t = pl.read_csv(io.BytesIO(platform.table or b""), separator="\t", infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(path, platform.table_line, f"a tab-separated platform table of {platform.acc}",
                                str(e)[:120]) from None
    col = next((c for c in PLATFORM_GENE_COLUMNS if c in t.columns), None)
    if "ID" not in t.columns or col is None:
        raise SourceFormatError(path, platform.table_line, f"platform {platform.acc}'s table with columns 'ID' and "
                                                           f"one of {', '.join(PLATFORM_GENE_COLUMNS)}",
                                ", ".join(t.columns))
    out = t.select(pl.col("ID").str.strip_chars().alias("ID_REF"),
                   pl.col(col).str.strip_chars().str.to_uppercase().alias("gene"))
    return out.filter(pl.col("gene").str.contains(SYSTEMATIC.pattern).fill_null(False))


def channels(path: Path, s: Entity) -> tuple[str, str]:
    """(test dye, reference dye) of an array from GEO's channel metadata: the reference pool is the one
    channel whose source name starts with ``ref`` (and is not a ``-del`` culture)."""
    names = [s.first("source_name_ch1"), s.first("source_name_ch2")]
    dyes = [s.first("label_ch1"), s.first("label_ch2")]
    ref = [n.lower().startswith("ref") and "-del" not in n.lower() for n in names]
    if sum(ref) != 1 or set(dyes) != {"Cy5", "Cy3"}:
        raise SourceFormatError(path, s.line, f"sample {s.acc}: the reference pool ('ref...') in exactly one "
                                              "channel's !Sample_source_name and labels Cy5 and Cy3",
                                f"source names {names}, labels {dyes}")
    r = ref.index(True)
    return dyes[1 - r], dyes[r]


def title_tokens(title: str) -> list[str]:
    """The deleted-gene tokens of a title, upper-cased: the text before each ``-del`` of its
    ``+``-joined parts, any ``[...]`` prefix removed.

    >>> title_tokens("[HS1991] cup9-del-a"), title_tokens("rpn4-del+ydr026c-del"), title_tokens("wt-1")
    (['CUP9'], ['RPN4', 'YDR026C'], [])
    """
    out = []
    for part in title.split("+"):
        if "-del" not in part.lower():
            continue
        tok = part[:part.lower().index("-del")].split("]")[-1].strip().upper()
        if tok:
            out.append(tok)
    return out


def read_crosswalk(path: str | Path, sheets: tuple[tuple[str | int, str, str], ...]) -> dict[str, str]:
    """Symbol -> systematic name (both upper-cased) from an ``.xlsx`` workbook's (sheet, orf column,
    symbol column) triples; a systematic name maps to itself. A missing sheet or column is an error."""
    import fastexcel  # noqa: PLC0415 - only the crosswalks need it

    path = Path(path)
    try:
        book = fastexcel.read_excel(str(path))
    except Exception as e:  # fastexcel raises its own classes for anything unreadable
        raise SourceFormatError(path, None, "a readable .xlsx workbook", f"{type(e).__name__}: {e}") from e
    out: dict[str, str] = {}
    for sheet, orf_col, sym_col in sheets:
        try:
            t = book.load_sheet(sheet, dtypes="string").to_polars()
        except Exception as e:
            raise SourceFormatError(path, None, f"a sheet {sheet!r}", f"sheets {book.sheet_names}: {e}") from e
        cols = {c.strip().lower(): c for c in t.columns}
        for want in (orf_col, sym_col):
            if want.strip().lower() not in cols:
                raise SourceFormatError(path, 1, f"a column {want!r} in sheet {sheet!r}", ", ".join(t.columns))
        orf = t[cols[orf_col.strip().lower()]].str.strip_chars().str.to_uppercase()
        sym = t[cols[sym_col.strip().lower()]].str.strip_chars().str.to_uppercase()
        for o, s in zip(orf.to_list(), sym.to_list(), strict=True):
            if o:
                out.setdefault(o, o)
                if s:
                    out.setdefault(s, o)
    return out


def _parse_tables(path: Path, arrays: list[Entity], int_ids: bool = False) -> pl.DataFrame:
    """``_array``, ``ID_REF``, ``Cy5``, ``Cy3`` of every row of ``arrays``' tables: one polars read of
    their bodies joined (each header checked first); a signal that is not a number is an error
    naming its line, column and sample."""
    bodies: list[bytes | memoryview] = []
    lens: list[int] = []
    header = None
    need = ["ID_REF", *SIGNAL.values()]
    for s in arrays:
        t = s.table if s.table is not None else b""
        peek = 256  # the header line (a view has no find): a few hundred bytes
        while (nl := bytes(t[:peek]).find(b"\n")) < 0 and peek < len(t):
            peek *= 4
        cols = bytes(t[:nl if nl >= 0 else len(t)]).decode("utf-8", "replace").rstrip("\r").split("\t")
        if cols[:1] != ["ID_REF"] or any(c not in cols for c in need):
            raise SourceFormatError(path, s.table_line, f"sample {s.acc}'s table header with columns "
                                                        f"{', '.join(need)}", "\t".join(cols))
        if header is not None and cols != header:
            raise SourceFormatError(path, s.table_line, f"the same table columns as sample {arrays[0].acc}",
                                    "\t".join(cols))
        header = cols
        bodies.append(t[nl + 1:] if nl >= 0 else b"")
        lens.append(max(0, s.rows - 1))
    assert header is not None
    blob = b"".join(bodies)  # one allocation, one copy of the tables' text
    idx = [header.index(c) for c in need]
    names = [f"column_{i}" for i in idx]  # polars' names of header-less columns
    read = dict(separator="\t", has_header=False, columns=idx, quote_char=None, null_values=_NULLS)
    try:
        df = None
        if int_ids:  # integer probe ids (GEO's usual): parsed as numbers, mapped by a lookup table
            with contextlib.suppress(pl.exceptions.PolarsError):
                df = pl.read_csv(io.BytesIO(blob), schema_overrides={names[0]: pl.Int64, names[1]: pl.Float32,
                                                                     names[2]: pl.Float32}, **read)
        if df is None:
            df = pl.read_csv(io.BytesIO(blob), schema_overrides={names[0]: pl.String, names[1]: pl.Float32,
                                                                 names[2]: pl.Float32}, **read)
    except pl.exceptions.PolarsError:
        df = None  # a cell that is not a number, or a ragged row: find it below
    if df is None or df.height != sum(lens):
        _raise_bad_cell(path, arrays, lens, pl.read_csv(io.BytesIO(blob), infer_schema=False, **read), need)
    assert df is not None
    df = df.rename(dict(zip(df.columns, ["ID_REF", "Cy5", "Cy3"], strict=True))).with_columns(
        pl.col("Cy5", "Cy3").cast(pl.Float32))  # signals as float32: 7 digits, the stored ratios' precision
    return df.with_columns(pl.Series("_array", np.repeat(np.arange(len(arrays), dtype=np.int32), lens)))


def _raise_bad_cell(path: Path, arrays: list[Entity], lens: list[int], text: pl.DataFrame, need: list[str]) -> None:
    """The error for the first signal cell of ``text`` (the tables read as text) that is not a number."""
    ends = np.cumsum(lens)
    for j, name in zip((1, 2), need[1:], strict=True):
        col = text[text.columns[j]].str.strip_chars()
        bad = col.cast(pl.Float64, strict=False).is_null() & col.is_not_null()
        if bad.any():
            i = int(bad.arg_max())
            k = int(np.searchsorted(ends, i, side="right"))
            row = i - (int(ends[k - 1]) if k else 0)
            raise SourceFormatError(path, arrays[k].table_line + 1 + row,
                                    f"a number (or an empty cell) in column {name!r} of sample {arrays[k].acc}",
                                    str(col[i]))
    raise SourceFormatError(path, arrays[0].table_line, "tab-separated sample tables, one row per line",
                            f"{text.height} rows from {sum(lens)} lines")


class ArrayProfiles:
    """Per-strain statistics over arrays: sums of per-array log-ratios (float64 [strains, width]), of
    their squares, and counts, in arrays grown by doubling (no per-strain allocations)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.strains: dict[tuple[str, ...], int] = {}
        self.s1 = np.zeros((256, width))
        self.s2 = np.zeros((256, width))
        self.n = np.zeros((256, width), np.int32)

    def add(self, strains: list[tuple[str, ...]], arr: np.ndarray, gene: np.ndarray, ratio: np.ndarray) -> None:
        """A batch of arrays (``strains[a]``: array a's strain) given as entries (array, gene column,
        log-ratio; one per measured gene and array): summed per strain by three bincounts."""
        rows = np.array([self.strains.setdefault(s, len(self.strains)) for s in strains], np.int64)
        if len(self.strains) > len(self.s1):
            cap = max(len(self.strains), 2 * len(self.s1))
            self.s1, self.s2, self.n = (np.concatenate([a, np.zeros((cap - len(a), self.width), a.dtype)])
                                        for a in (self.s1, self.s2, self.n))
        u, inv = np.unique(rows, return_inverse=True)  # the batch's strains (a dye-swap pair shares one)
        flat = inv[arr] * self.width + gene
        size = len(u) * self.width
        self.s1[u] += np.bincount(flat, weights=ratio, minlength=size).reshape(len(u), -1)
        self.s2[u] += np.bincount(flat, weights=ratio * ratio, minlength=size).reshape(len(u), -1)
        self.n[u] += np.bincount(flat, minlength=size).reshape(len(u), -1).astype(np.int32)


def t_pvalue(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-value of Student's t with integer ``df`` >= 1 (closed forms, Abramowitz & Stegun 26.7.3-4).

    >>> [round(float(x), 4) for x in t_pvalue(np.array([1.0, 2.0, 12.706]), np.array([1, 3, 1]))]
    [0.5, 0.1393, 0.05]
    """
    t = np.abs(np.asarray(t, np.float64))
    df = np.broadcast_to(np.asarray(df, np.int64), t.shape)
    out = np.ones(t.shape)
    present = np.flatnonzero(np.bincount(np.clip(df, 0, None).ravel()))
    only = len(present[present >= 1]) == 1 and bool((df >= 1).all())
    for v in present[present >= 1].tolist():
        sel = None if only else df == v
        x = t if sel is None else t[sel]
        if v <= 2:  # the common replicate counts (2 and 3 arrays) in closed forms without cancellation
            if v == 1:  # 1 - 2/pi atan(t) = 2/pi atan(1/t)
                with np.errstate(divide="ignore"):
                    p = (2 / np.pi) * np.arctan(1 / x)
            else:  # 1 - t / sqrt(t^2 + 2) = 2 / (r (r + t)), r = sqrt(t^2 + 2)
                r = np.sqrt(x * x + 2)
                p = 2 / (r * (r + x))
            if sel is None:
                out = p
            else:
                out[sel] = p
            continue
        th = np.arctan(x / np.sqrt(v))
        c2, sn = np.cos(th) ** 2, np.sin(th)
        if v % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + ... ))
            acc = np.zeros_like(th)
            if v > 1:
                term = np.ones_like(th)
                acc += term
                for k in range(1, (v - 1) // 2):
                    term = term * c2 * (2 * k) / (2 * k + 1)
                    acc += term
            a = 2 / np.pi * (th + sn * np.cos(th) * acc)
        else:  # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
            term, acc = np.ones_like(th), np.ones_like(th)
            for k in range(1, v // 2):
                term = term * c2 * (2 * k - 1) / (2 * k)
                acc += term
            a = sn * acc
        p = np.clip(1 - a, 0, 1)
        if sel is None:
            out = p
        else:
            out[sel] = p
    return out


def _array_ratios(df: pl.DataFrame, lookup: pl.DataFrame, test_is_cy5: np.ndarray, width: int,
                  stats: MutableMapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(array, gene column, log2(test / reference)) of every measured (array, gene) of a batch of parsed
    tables; a gene with several probes on an array gets their mean."""
    if df["ID_REF"].dtype == pl.Int64 and lookup["ID_REF"].dtype == pl.Int64:
        ids = df["ID_REF"].fill_null(-1).to_numpy()
        lut = np.full(int(max(lookup["ID_REF"].max(), ids.max(initial=0))) + 2, -1, np.int32)  # type: ignore[arg-type]
        lut[lookup["ID_REF"].to_numpy()] = lookup["col"].to_numpy()
        gi = lut[ids]
    else:
        gi = df.select(pl.col("ID_REF").cast(pl.String).str.strip_chars()).join(
            lookup.with_columns(pl.col("ID_REF").cast(pl.String)), on="ID_REF", how="left",
            maintain_order="left")["col"].fill_null(-1).to_numpy()
    mapped = gi >= 0
    stats["probes_unmapped"] += int((~mapped).sum())
    arr = df["_array"].to_numpy()
    t5 = test_is_cy5[arr]
    cy5, cy3 = df["Cy5"].to_numpy(), df["Cy3"].to_numpy()
    test, ref = np.where(t5, cy5, cy3), np.where(t5, cy3, cy5)
    with np.errstate(invalid="ignore"):
        pos = (test > 0) & (ref > 0)
    stats["values_nonpositive"] += int((mapped & ~pos & ~np.isnan(test) & ~np.isnan(ref)).sum())
    ok = mapped & pos
    ratio = np.log2(test[ok] / ref[ok]).astype(np.float64)
    arr, gi = arr[ok].astype(np.int64), gi[ok].astype(np.int64)
    flat = arr * width + gi
    cnt = np.bincount(flat, minlength=len(test_is_cy5) * width)
    if cnt.max(initial=0) > 1:  # several probes of one gene on an array: one value, their mean
        at = np.flatnonzero(cnt)
        ratio = np.bincount(flat, weights=ratio, minlength=len(cnt))[at] / cnt[at]
        arr, gi = np.divmod(at, width)
    return arr, gi, ratio


def _flush(path: Path, batch: list[tuple[Entity, tuple[str, ...], bool]], lookup: pl.DataFrame | None,
           prof: ArrayProfiles | None, stats: MutableMapping[str, int]) -> None:
    """Parse a batch of arrays (entity, strain, test dye is Cy5) and add their ratios to ``prof``."""
    if not batch:
        return
    if lookup is None or prof is None:
        raise SourceFormatError(path, batch[0][0].line, "a ^PLATFORM block before the first ^SAMPLE")
    df = _parse_tables(path, [e for e, _, _ in batch], lookup["ID_REF"].dtype == pl.Int64)
    arr, gene, ratio = _array_ratios(df, lookup, np.array([c for _, _, c in batch]), prof.width, stats)
    prof.add([strain for _, strain, _ in batch], arr, gene, ratio)


def read_expression_soft(paths: list[Path], resolve: Callable[[list[str]], list[str] | None],
                         stats: MutableMapping[str, int]) -> tuple[list[str], list[list[str]], np.ndarray, np.ndarray]:
    """Per deletion strain: (gene columns, strains, mean log-ratio float32 [m, w], p-value float32 [m, w]).

    Each file is read once, a block at a time: its platform first (the columns are the
    systematic names of the first file's platform), then its arrays in batches. ``resolve(tokens)``
    maps a title's deleted-gene tokens to systematic names, or None (the array is skipped,
    ``arrays_unresolved``). Counts: ``arrays_read``, ``arrays_wildtype``, ``arrays_unresolved``,
    ``arrays_used``, ``probes_unmapped``, ``values_nonpositive`` (a signal <= 0: no ratio),
    ``rows_read`` (strains).
    """
    for key in ("arrays_read", "arrays_wildtype", "arrays_unresolved", "arrays_used", "probes_unmapped",
                "values_nonpositive"):
        stats.setdefault(key, 0)
    genes: list[str] | None = None
    prof: ArrayProfiles | None = None
    for path in paths:
        lookup, batch = None, []
        for e in iter_soft(path):
            if e.kind == "PLATFORM" and e.table is not None:
                probes = probe_genes(path, e)
                if genes is None:
                    genes = sorted(set(probes["gene"].to_list()))
                    prof = ArrayProfiles(len(genes))
                col = pl.DataFrame({"gene": genes, "col": np.arange(len(genes), dtype=np.int32)})
                new = probes.join(col, on="gene", how="inner").select("ID_REF", "col")
                as_int = new["ID_REF"].cast(pl.Int64, strict=False)
                if as_int.null_count() == 0 and (as_int >= 0).all():
                    new = new.with_columns(as_int.alias("ID_REF"))
                if lookup is not None and lookup["ID_REF"].dtype != new["ID_REF"].dtype:
                    lookup, new = (x.with_columns(pl.col("ID_REF").cast(pl.String)) for x in (lookup, new))
                lookup = new if lookup is None else pl.concat([lookup, new]).unique("ID_REF", keep="last")
            elif e.kind == "SAMPLE":
                stats["arrays_read"] += 1
                if e.table is None:
                    raise SourceFormatError(path, e.line, f"a '!sample_table_begin' table in sample {e.acc}")
                toks = title_tokens(e.first("title"))
                if not toks:
                    stats["arrays_wildtype"] += 1
                    continue
                strain = resolve(toks)
                if strain is None:
                    stats["arrays_unresolved"] += 1
                    continue
                stats["arrays_used"] += 1
                batch.append((e, tuple(sorted(set(strain))), channels(path, e)[0] == "Cy5"))
                if len(batch) >= _BATCH:
                    _flush(path, batch, lookup, prof, stats)
                    batch = []
        _flush(path, batch, lookup, prof, stats)
    if genes is None or prof is None:
        raise SourceFormatError(paths[0], None, "a ^PLATFORM table mapping probe IDs to systematic names")
    strains = [list(k) for k in prof.strains]
    stats["rows_read"] = stats.get("rows_read", 0) + len(strains)
    m = len(strains)
    s1, s2, n = prof.s1[:m], prof.s2[:m], prof.n[:m]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n  # NaN where never measured
        # the t statistic in place in s2: var = (s2 - n mean^2) / (n - 1); t = mean / sqrt(var / n)
        s2 -= n * mean * mean
        s2 /= (n - 1) * n
        np.maximum(s2, 1e-300, out=s2)
        np.sqrt(s2, out=s2)
        np.divide(mean, s2, out=s2)
    np.nan_to_num(s2, copy=False, nan=0.0, posinf=1e300, neginf=1e300)
    p = t_pvalue(s2, np.maximum(n - 1, 1)).astype(np.float32)
    p[n <= 1] = 1.0
    p[n == 0] = np.nan
    return genes, strains, mean.astype(np.float32), p


#: Table S1 of the release: (sheet, orf column, symbol column)
TABLE_S1 = ((0, "orf name", "gene"),)


def crosswalk_resolver(names: dict[str, str]) -> Callable[[list[str]], list[str] | None]:
    """A title-token resolver through a release crosswalk: a symbol it lists, or a systematic-shaped
    token taken verbatim; None if any token of the title resolves to nothing."""
    def resolve(tokens: list[str]) -> list[str] | None:
        out = []
        for t in tokens:
            orf = names.get(t) or (t if SYSTEMATIC.match(t) else None)
            if orf is None:
                return None
            out.append(orf)
        return out
    return resolve


def read_kemmeren2014(paths: list[Path], stats: MutableMapping[str, int] | None = None):
    """The ``kemmeren2014.expression`` :class:`~pipeline.dataset.labels.VectorTable`-shaped fields from the
    SOFT files and Table S1 among ``paths`` (``.xlsx``: the crosswalk; the rest: SOFT)."""
    stats = {} if stats is None else stats
    books = [p for p in paths if p.name.lower().endswith(".xlsx")]
    softs = [p for p in paths if p not in books]
    if not softs:
        raise SourceFormatError(paths[0] if paths else "kemmeren2014", None,
                                "GEO family SOFT files GSE42527_family.soft.gz, GSE42526_family.soft.gz")
    names: dict[str, str] = {}
    for b in books:
        names.update(read_crosswalk(b, TABLE_S1))
    genes, strains, values, p = read_expression_soft(softs, crosswalk_resolver(names), stats)
    return {"columns": genes, "genes": strains, "types": [[CODES["deletion"]] * len(s) for s in strains],
            "values": values, "pvalue": p, "stats": dict(stats)}


# --- shared by the vector-label readers (kemmeren, sameith, ohya) --------------------------------

_last: dict[str, tuple[tuple, dict]] = {}


def cached(reader: Callable[..., dict], paths: list[Path], keep: bool = True) -> dict:
    """``reader(paths, stats)``'s fields, read once per build: the observation pass (the dataset's
    reader) and the label writer (:mod:`pipeline.dataset.labels`, ``keep=False``: the entry is
    released, so no matrix outlives the build) share the latest read of each reader, keyed by the
    files' paths, sizes and modification times."""
    paths = sorted(Path(p) for p in paths)
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    name = f"{reader.__module__}.{reader.__name__}"
    hit = _last.pop(name, None)
    if hit is None or hit[0] != key:
        hit = (key, reader(paths, {}))
    if keep:
        _last[name] = hit
    return hit[1]


def vector_observations(fields: dict, source: str, paths: list[Path], stats: MutableMapping[str, int]) -> pl.LazyFrame:
    """One observation per strain of a vector reader's ``fields`` (no scalar values: the vector is the
    label, stored by the dataset stage), so that every labelled strain becomes a sample."""
    from pipeline.core.perturbations import OBSERVATION_SCHEMA

    n = len(fields["genes"])
    for k, v in fields["stats"].items():
        stats[k] = stats.get(k, 0) + int(v)
    stats.update(rows=stats.get("rows", 0) + n, skipped_unparsed=stats.get("skipped_unparsed", 0),
                 markers_removed=0, dropped_bad_value=0)
    data = {"source": [source] * n, "source_file": [",".join(str(p) for p in paths)] * n,
            "source_row": list(range(1, n + 1)), "screen": [None] * n, "genes": fields["genes"],
            "types": fields["types"], "n_perturbed": [len(g) for g in fields["genes"]]}
    return pl.DataFrame({k: data.get(k, [None] * n) for k in OBSERVATION_SCHEMA}, schema=OBSERVATION_SCHEMA).lazy()


def vector_reader(read: Any, name: str, paths: list[Path], on_unknown: str, stats: dict, check_values: bool = True,
                  on_bad_value: str = "error") -> pl.LazyFrame:
    """The dataset reader of a vector-label dataset ``name`` whose files ``read(paths)`` parses (once per
    build: :func:`cached`); bind ``read`` and ``name`` with ``functools.partial``. The scalar readers'
    policies do not apply (a bad vector value is an error of ``read``)."""
    return vector_observations(cached(read, paths), name, paths, stats)


_reader = partial(vector_reader, read_kemmeren2014, "kemmeren2014")


_GEO = "ftp.ncbi.nlm.nih.gov/geo/series/GSE42nnn"


def _dataset():
    from pipeline.sources.phenotypes.spec import Label, PhenotypeDataset, ReleaseFile

    return PhenotypeDataset(
        "kemmeren2014", "kemmeren2014",
        ("GSE42527_family.soft*", "GSE42526_family.soft*", "kemmeren2014_table_s1*.xlsx", "mmc1.xlsx"), _reader,
        labels=(Label("kemmeren2014.expression", "log2(deletion / reference pool), per gene",
                      "vector label (dataset/labels.zarr, one column per platform gene, with p-values): the mean "
                      "within-array log2 ratio over the mutant's arrays; p: two-sided t-test over them"),),
        samples=("kemmeren2014/GSE42526_family.sample.soft.gz", "kemmeren2014/GSE42527_family.sample.soft.gz",
                 "kemmeren2014/kemmeren2014_table_s1.sample.xlsx"),
        description="Kemmeren et al. 2014 deletion-mutant expression (GEO GSE42527 + GSE42526 family SOFT files "
                    "and Table S1): vector label kemmeren2014.expression [log2 ratio, p-values]",
        citation="Kemmeren et al. 2014, Cell 157:740",
        files=(ReleaseFile("GSE42527_family.soft.gz", None, f"GEO: {_GEO}/GSE42527/soft/"),
               ReleaseFile("GSE42526_family.soft.gz", None, f"GEO: {_GEO}/GSE42526/soft/"),
               ReleaseFile("kemmeren2014_table_s1.xlsx", None, "Cell supplementary Table S1 (mmc1.xlsx)")))


DATASET = _dataset()
