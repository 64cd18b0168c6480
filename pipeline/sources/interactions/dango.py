"""The DANGO repository's processed STRING v9.1 networks.

Format: a folder with ``yeast_string_genes.txt`` (one systematic name per line;
line k is gene k, 1-based) and per channel ``yeast_string_<channel>_adjacency.txt``
with whitespace-separated ``i j score`` lines (1-based gene numbers, score in [0, 1]).
Pairs are listed in both orientations. Each present channel becomes one undirected
edge type ``<prefix>_<channel>`` with weight = score.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.edges import EdgeTable, keep_known
from pipeline.core.errors import SourceFormatError, SourceMissingError
from pipeline.core.genes import GeneIndex, read_gene_list
from pipeline.sources._io import nth_line, read_source_bytes
from pipeline.sources.interactions.string import CHANNELS

log = logging.getLogger(__name__)

GENES_FILE = "yeast_string_genes.txt"


def channel_file(folder: Path, channel: str) -> Path:
    return folder / f"yeast_string_{channel}_adjacency.txt"


def available_channels(folder: str | Path) -> list[str]:
    folder = Path(folder)
    return [c for c in CHANNELS if channel_file(folder, c).is_file()]


def _read_triples(path: Path, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    data = read_source_bytes(path)
    if not data or data.isspace():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), 0
    try:
        df = pl.read_csv(data, has_header=False, separator="\t",
                         schema={"i": pl.Int64, "j": pl.Int64, "score": pl.Float64})
    except pl.exceptions.PolarsError:
        df = None
    if df is None or df.null_count().sum_horizontal().item():
        # slow path: report the first malformed line
        for ln, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            f = raw.split()
            try:
                if len(f) != 3:
                    raise ValueError
                int(f[0]), int(f[1]), float(f[2])
            except ValueError:
                raise SourceFormatError(path, ln, "three fields 'i j score' (integers, then a float)",
                                        raw.decode("utf-8", "replace")) from None
        raise SourceFormatError(path, None, "tab-separated 'i j score' lines")
    i, j, s = df["i"].to_numpy(), df["j"].to_numpy(), df["score"].to_numpy()
    for arr, what in ((i, "i"), (j, "j")):
        bad = (arr < 1) | (arr > n_genes)
        if bad.any():
            row = int(np.argmax(bad))
            raise SourceFormatError(path, row + 1, f"a gene number {what} in [1, {n_genes}]", nth_line(data, row + 1))
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise SourceFormatError(path, row + 1, "a score in [0, 1]", nth_line(data, row + 1))
    return i, j, s.astype(np.float32), len(df)


def read_dango(folder: str | Path, genes: GeneIndex, prefix: str = "dango_string9_1",
               channels: list[str] | None = None) -> dict[str, EdgeTable]:
    """Read the DANGO STRING v9.1 folder: one undirected :class:`EdgeTable` per present channel.

    Stats per type: ``rows_read``, ``dropped_zero_score``, ``dropped_unknown_gene``
    (a DANGO gene that is not in the build's gene index).
    """
    folder = Path(folder)
    gfile = folder / GENES_FILE
    if not gfile.is_file():
        raise SourceMissingError(f"{folder}: no {GENES_FILE}; expected the DANGO STRING v9.1 folder")
    dango_ids = read_gene_list(gfile)["id"]
    to_index = genes.lookup(dango_ids)  # DANGO gene k (1-based) -> build index, -1 unknown
    channels = channels or available_channels(folder)
    if not channels:
        raise SourceMissingError(f"{folder}: no yeast_string_<channel>_adjacency.txt files")
    out: dict[str, EdgeTable] = {}
    for c in channels:
        path = channel_file(folder, c)
        if not path.is_file():
            raise SourceMissingError(f"{path}: channel file missing")
        i, j, s, n = _read_triples(path, len(dango_ids))
        pos = s > 0
        stats = {"rows_read": n, "dropped_zero_score": int(n - pos.sum())}
        name = f"{prefix}_{c}"
        out[name] = keep_known(name, to_index[i[pos] - 1], to_index[j[pos] - 1], s[pos],
                               directed=False, source=str(path), stats=stats)
    log.info("read DANGO folder %s: %d genes listed (%d not in the gene index), channels %s",
             folder, len(dango_ids), int((to_index < 0).sum()), channels)
    return out
