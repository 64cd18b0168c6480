"""The stream's vector labels: read by row windows with each store chunk, gathered per batch.

Contract:

- :meth:`StreamLabels.attach` adds to a store chunk's :class:`~pipeline.stream.chunks.Columns`,
  for its samples ``first .. first + n - 1`` and each served label, the contiguous block of
  stored rows they span (``values["vec:<name>"]`` float32 [k, w], ``values["vecmask:<name>"]``
  bool [k, w], unpacked from the stored bits) and each sample's row in that block (``rows["vecrow:<name>"]``,
  -1: no vector): one read per array, in the stream's prefetch thread, never the whole
  matrix. A view of several chunks concatenates the blocks (in that thread, once per window),
  so memory is ~5 bytes per value of the labelled rows of the stream's window, twice.
- :meth:`StreamLabels.gather`: a batch's ``labels[name]`` float32 [B, w] and ``label_mask[name]``
  bool [B, w]: ONE gather from the view's block per array (no loop over samples or chunks);
  samples without a vector and padded samples (``pad``) are all-False, value 0.
- Decoded blocks are kept, per process, in an LRU cache of at most ``cache_bytes`` (default
  256 MiB; 0: none): a label matrix that fits is decoded once, not once per epoch (a Kemmeren-sized
  6,200-wide matrix of 1,500 rows is ~46 MB decoded); a larger one streams by windows as above.
- Served names: ``<label>`` (values) and ``<label>.p`` (p-values, labels that have them; the
  same mask). The label store is opened lazily in the process that reads (fork/spawn-safe).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from pipeline.dataset.labels import LabelStore, open_labels, unpack_mask
from pipeline.stream.chunks import Columns, View

#: suffix of a served p-value matrix
PVALUE_SUFFIX = ".p"
#: default bound of the decoded blocks kept across epochs, per process
CACHE_BYTES = 256 << 20


class StreamLabels:
    """Which vector labels a stream serves and how it reads them (see the module docstring)."""

    def __init__(self, dataset: str | Path, names: tuple[str, ...] | list[str] | None,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.path = Path(dataset)
        store = open_labels(self.path)
        have = {} if store is None else store.specs
        available = sorted(have) + sorted(n + PVALUE_SUFFIX for n, s in have.items() if s["pvalue"])
        if names is None:
            names = sorted(have)
        elif isinstance(names, str):
            names = [names]
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"vector_labels {unknown}: not in {self.path} (it has {available or 'none'})")
        self.names = list(dict.fromkeys(names))
        #: served name -> (stored label, whether it is the p-values)
        self.parts = {n: (n.removesuffix(PVALUE_SUFFIX), n.endswith(PVALUE_SUFFIX) and n not in have)
                      for n in self.names}
        self.widths = {n: int(have[lab]["width"]) for n, (lab, _) in self.parts.items()}
        self.cache_bytes = int(cache_bytes)
        self._store: LabelStore | None = None
        self._pid: int | None = None
        self._cache: OrderedDict[tuple[str, int, int], tuple[np.ndarray, ...]] = OrderedDict()
        self._cached = 0

    def __bool__(self) -> bool:
        return bool(self.names)

    def __getstate__(self) -> dict:
        s = dict(self.__dict__)
        s["_store"], s["_pid"], s["_cache"], s["_cached"] = None, None, OrderedDict(), 0
        return s

    def store(self) -> LabelStore:
        if self._pid != os.getpid() or self._store is None:
            self._store = open_labels(self.path)
            self._pid = os.getpid()
            self._cache, self._cached = OrderedDict(), 0
        assert self._store is not None
        return self._store

    def attach(self, cols: Columns, first: int) -> None:
        """Add each served label's block of the samples ``first .. first + cols.n - 1`` to ``cols``."""
        st = self.store()
        for name in self.names:
            values, mask, complete, local = self._block(st, name, first, cols.n)
            cols.values[f"vec:{name}"], cols.values[f"vecmask:{name}"] = values, mask
            cols.values[f"veccomplete:{name}"] = complete
            cols.rows[f"vecrow:{name}"] = local

    def _block(self, st: LabelStore, name: str, first: int, n: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(values [k, w], measured bool [k, w], whether each row is fully measured [k], row in them per
        sample (-1: none)) of samples first..first+n-1: from the cache, or read (one read per array) and
        cached within ``cache_bytes``."""
        key = (name, first, n)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        label, pvalue = self.parts[name]
        rows = st.rows_of(label, first, n).astype(np.int64)
        has = rows >= 0
        w = self.widths[name]
        if has.any():
            r0, r1 = int(rows[has].min()), int(rows[has].max()) + 1
            values, packed = st.block(label, r0, r1, pvalue)
            # unpacked here, in the prefetch thread: a batch then gathers bool rows (1/4 of the
            # values' bytes; unpacking per batch cost as much as gathering the values)
            mask = unpack_mask(packed, w)
        else:
            r0, values, mask = 0, np.zeros((0, w), np.float32), np.zeros((0, w), bool)
        out = (values, mask, mask.all(axis=1), np.where(has, rows - r0, -1))
        size = sum(a.nbytes for a in out)
        if size <= self.cache_bytes:
            self._cache[key] = out
            self._cached += size
            while self._cached > self.cache_bytes:
                self._cached -= sum(a.nbytes for a in self._cache.popitem(last=False)[1])
        return out

    def gather(self, ids: np.ndarray, d: dict[str, np.ndarray], view: View, pad: np.ndarray
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(``labels``, ``label_mask``) of the batch ``ids``, whose gathered columns are ``d``, from ``view``."""
        order = sorted(view.chunks)
        c_of = ids // view.chunk
        values: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for name in self.names:
            w = self.widths[name]
            block, measured = view.cols.values[f"vec:{name}"], view.cols.values[f"vecmask:{name}"]
            local = d[f"vecrow:{name}"]
            if len(order) > 1:  # the chunk's offset in the view's concatenated block
                sizes = np.array([len(view.chunks[c].values[f"vec:{name}"]) for c in order])
                start = np.zeros(len(view.base), np.int64)
                start[order] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
                pos = local + start[c_of]
            else:
                pos = local
            absent = (local < 0) | pad
            if len(block) == 0:
                values[name] = torch.zeros((len(ids), w), dtype=torch.float32)
                masks[name] = torch.zeros((len(ids), w), dtype=torch.bool)
                continue
            if absent.any():
                pos = np.where(absent, 0, pos)
            v = block[pos]
            if not absent.any() and view.cols.values[f"veccomplete:{name}"][pos].all():
                m = np.ones((len(ids), w), bool)  # fully measured rows (expression, usually): no gather
            else:
                m = measured[pos]
            if absent.any():
                v[absent], m[absent] = 0, False
            values[name] = torch.from_numpy(v)
            masks[name] = torch.from_numpy(m)
        return values, masks
