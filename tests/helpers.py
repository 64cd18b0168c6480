"""Small builders shared by tests (not fixtures: plain functions)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.genes import GeneIndex, conform
from pipeline.graph.csr import CSR
from pipeline.sources.interactions.string import HEADER

GENE_IDS = ["YAL001C", "YAL002W", "YAL003W", "YBR001C", "YCR002C", "Q0010"]


@contextmanager
def default_layout(folder: Path) -> Iterator[Path]:
    """Build in the default layout (no ``--raw``): ``folder`` is the working directory, so the
    raw folder is ``folder/data/raw`` (yielded; absent until a test writes there) and every input
    missing there comes from its bundled sample. An explicit ``--raw`` never falls back."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder / "data" / "raw"


def gene_index(ids=GENE_IDS) -> GeneIndex:
    return GeneIndex.from_table(conform(pl.DataFrame({"id": list(ids)})))


def write_gene_list(path: Path, ids=GENE_IDS) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


def string_rows() -> list[list]:
    """A tiny STRING v12 detailed table: both orientations, an unknown id, zero scores."""
    rows = [
        # p1 p2 neighborhood fusion cooccurence coexpression experimental database textmining combined
        ["YAL001C", "YAL002W", 0, 0, 0, 62, 0, 0, 166, 200],
        ["YAL002W", "YAL001C", 0, 0, 0, 62, 0, 0, 166, 200],
        ["YAL001C", "YBR001C", 150, 0, 0, 0, 900, 0, 0, 910],
        ["YBR001C", "YAL001C", 150, 0, 0, 0, 900, 0, 0, 910],
        ["YAL003W", "YNOTAGENE", 0, 0, 0, 0, 300, 0, 0, 300],
        ["YNOTAGENE", "YAL003W", 0, 0, 0, 0, 300, 0, 0, 300],
        ["YCR002C", "Q0010", 0, 1000, 0, 0, 0, 720, 0, 999],
        ["Q0010", "YCR002C", 0, 1000, 0, 0, 0, 720, 0, 999],
    ]
    return [[f"4932.{r[0]}", f"4932.{r[1]}", *r[2:]] for r in rows]


def write_string(path: Path, rows=None, header=HEADER, gz=True) -> Path:
    rows = string_rows() if rows is None else rows
    text = " ".join(header) + "\n" + "".join(" ".join(map(str, r)) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def check_csr(csr: CSR) -> list[str]:
    """Invariants every stored CSR satisfies; returns the violated ones (empty = valid)."""
    bad = []
    ip, ix = csr.indptr, csr.indices
    if ip[0] != 0 or ip[-1] != len(ix) or np.any(np.diff(ip) < 0):
        bad.append("indptr is not a monotone 0..nnz offset array")
        return bad
    rows = csr.rows()
    if len(ix) and (ix.min() < 0 or ix.max() >= csr.n_nodes):
        bad.append("column index out of range")
    if np.any(rows == ix):
        bad.append("self-loop present")
    if len(ix) > 1:
        same_row = rows[1:] == rows[:-1]
        if np.any(same_row & (ix[1:] <= ix[:-1])):
            bad.append("columns not strictly increasing within a row (unsorted or duplicate)")
    if not csr.directed and len(ix):
        fwd = rows.astype(np.int64) * csr.n_nodes + ix
        rev = ix.astype(np.int64) * csr.n_nodes + rows
        order = np.argsort(rev, kind="stable")
        if not np.array_equal(fwd, rev[order]) or not np.array_equal(csr.weights, csr.weights[order]):
            bad.append("undirected CSR is not symmetric (structure or weights)")
    if csr.mirror is not None:
        m = csr.mirror
        if (len(m) != len(ix) or (len(m) and (m.min() < 0 or m.max() >= len(ix)))
                or not np.array_equal(rows[m], ix) or not np.array_equal(ix[m], rows)):
            bad.append("mirror does not map every edge to its reverse")
    return bad


@contextmanager
def serving(handler: type, configure=None) -> Iterator[object]:
    """A loopback ``ThreadingHTTPServer`` (ephemeral port) with ``handler``, served from a daemon thread
    for the ``with`` block, then shut down and closed. ``configure(httpd)`` (optional) sets attributes the
    handler reads before serving starts."""
    import threading
    from http.server import ThreadingHTTPServer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if configure is not None:
        configure(httpd)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)

