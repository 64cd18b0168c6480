"""The stream's read path: whole store chunks, decoded once per epoch window, read ahead of need.

Contract:

- A *chunk* is the ``chunk`` consecutive samples ``c * chunk ..`` of one store chunk; a
  :class:`Columns` holds the decoded per-sample data of one or more chunks (CSR columns +
  fixed-width rows), read with ONE store read per array (``read(c)``), never per sample.
- :func:`segments` cuts a process's sequence of blocks of batches (the chunks each needs) into
  runs whose chunks together number at most ``cap`` (the epoch's window of ``window_blocks``
  chunks plus the next window, which the blocks straddling a window boundary touch): memory
  stays bounded by ``2 x cap`` chunks whatever the dataset size.
- :class:`Prefetcher` builds the :class:`View` of segment ``k + 1`` (read, decode,
  concatenate) in a background thread while segment ``k`` is served: zarr's codecs and
  LMDB release the GIL, so no batch waits on I/O in steady state. A chunk that two
  consecutive segments share is read once.
- :meth:`View.gather`: the columns of a block of batches from the view, vectorised over its
  samples (one gather per array: no loop over samples, batches or chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.ragged import indptr_from_lengths


@dataclass
class Columns:
    """Decoded per-sample data of a run of samples: CSR columns by name (``ptr`` [n+1] from 0, values)
    and fixed-width rows by name ([n, w])."""

    n: int
    csr: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (ptr, values)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # extra arrays aligned with a csr's values
    rows: dict[str, np.ndarray] = field(default_factory=dict)


def concat(parts: list[Columns]) -> Columns:
    """The columns of ``parts`` one after the other (one concatenation per array)."""
    if len(parts) == 1:
        return parts[0]
    out = Columns(sum(p.n for p in parts))
    for name in parts[0].csr:
        lens = np.concatenate([np.diff(p.csr[name][0]) for p in parts])
        out.csr[name] = (indptr_from_lengths(lens), np.concatenate([p.csr[name][1] for p in parts]))
    for name in parts[0].values:
        out.values[name] = np.concatenate([p.values[name] for p in parts])
    for name in parts[0].rows:
        out.rows[name] = np.concatenate([p.rows[name] for p in parts])
    return out


@dataclass
class View:
    """The decoded chunks of one segment, concatenated; ``base[c]``: first row of chunk ``c`` (-1: absent)."""

    chunks: dict[int, Columns]
    cols: Columns
    base: np.ndarray
    chunk: int
    _lens: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, chunks: dict[int, Columns], n_chunks: int, chunk: int) -> View:
        order = sorted(chunks)
        base = np.full(n_chunks, -1, np.int64)
        first = 0
        for c in order:
            base[c] = first
            first += chunks[c].n
        cols = concat([chunks[c] for c in order]) if order else Columns(0)
        v = cls(chunks, cols, base, chunk)
        v._lens = {k: np.diff(p) for k, (p, _) in cols.csr.items()}  # once per view, not per batch
        return v

    def gather(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Columns of samples ``ids`` (all held): ``{name}_ptr``/``name`` per CSR, rows by name."""
        r = self.base[ids // self.chunk] + ids % self.chunk
        out: dict[str, np.ndarray] = {}
        for name, (ptr, vals) in self.cols.csr.items():
            lens = self._lens[name][r]
            new = indptr_from_lengths(lens)
            pos = np.arange(new[-1], dtype=np.int64)
            pos += np.repeat(ptr[r] - new[:-1], lens)
            out[f"{name}_ptr"], out[name] = new, vals[pos]
            for extra, v in self.cols.values.items():
                if extra.startswith(f"{name}:"):
                    out[extra.split(":", 1)[1]] = v[pos]
        for name, rows in self.cols.rows.items():
            out[name] = rows[r]
        return out


def segments(needs: list[np.ndarray], cap: int) -> list[tuple[int, int, list[int]]]:
    """Greedy runs ``(first item, end item, chunks)`` of consecutive items (blocks of batches) using
    at most ``cap`` chunks together (an item needing more forms its own run).

    >>> segments([np.array([0]), np.array([0, 1]), np.array([2]), np.array([2])], cap=2)
    [(0, 2, [0, 1]), (2, 4, [2])]
    """
    out: list[tuple[int, int, list[int]]] = []
    start, have = 0, set()
    for i, need in enumerate(needs):
        more = have.union(need.tolist())
        if have and len(more) > cap:
            out.append((start, i, sorted(have)))
            start, more = i, set(need.tolist())
        have = more
    if needs:
        out.append((start, len(needs), sorted(have)))
    return out


class Prefetcher:
    """Views of consecutive segments, the next one built in a background thread (see the module docstring).

    ``read(c)``: chunk ``c``'s :class:`Columns` (thread-safe: called from one thread at a time).
    """

    def __init__(self, read: Callable[[int], Columns], n_chunks: int, chunk: int) -> None:
        self.read, self.n_chunks, self.chunk = read, n_chunks, chunk
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-prefetch")

    def _build(self, chunks: list[int], prev: Future[View] | None) -> View:
        old = prev.result().chunks if prev is not None else {}
        return View.build({c: old[c] if c in old else self.read(c) for c in chunks}, self.n_chunks, self.chunk)

    def views(self, segs: list[tuple[int, int, list[int]]]) -> Iterator[tuple[int, int, View]]:
        """(first batch, end batch, view) per segment, in order; reads run one segment ahead."""
        try:
            nxt: Future[View] | None = self._pool.submit(self._build, segs[0][2], None) if segs else None
            for k, (a, b, _) in enumerate(segs):
                cur = nxt
                assert cur is not None
                nxt = self._pool.submit(self._build, segs[k + 1][2], cur) if k + 1 < len(segs) else None
                yield a, b, cur.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
