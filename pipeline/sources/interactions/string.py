"""STRING ``protein.links.detailed`` files for S. cerevisiae (taxon 4932): v9.1, v11.0, v12.0.

Format: space-separated, one header line::

    protein1 protein2 neighborhood fusion cooccurence coexpression experimental database textmining combined_score
    4932.YAL001C 4932.YAL002W 0 0 0 62 0 0 166 200

Scores are integers in [0, 1000]. STRING lists every pair in both orientations.
Each channel in :data:`CHANNELS` with score > 0 becomes one undirected edge type
``<prefix>_<channel>`` with weight score/1000 (textmining and combined_score are
not used, as in the reference research code). Ids lose their ``4932.`` prefix and
are looked up in the gene index; rows naming a gene outside it are dropped and
counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.edges import EdgeTable
from pipeline.core.errors import SourceFormatError
from pipeline.core.genes import GeneIndex
from pipeline.sources._io import read_source_bytes

log = logging.getLogger(__name__)

HEADER = ["protein1", "protein2", "neighborhood", "fusion", "cooccurence", "coexpression",
          "experimental", "database", "textmining", "combined_score"]
#: The six evidence channels that become edge types.
CHANNELS = ["neighborhood", "fusion", "cooccurence", "coexpression", "experimental", "database"]
TAXON_PREFIX = "4932."

#: Version tag -> file name on the STRING download server.
FILE_NAMES = {
    "string9_1": "4932.protein.links.detailed.v9.1.txt.gz",
    "string11": "4932.protein.links.detailed.v11.0.txt.gz",
    "string12": "4932.protein.links.detailed.v12.0.txt.gz",
}
URLS = {
    "string9_1": "http://string91.embl.de/newstring_download/protein.links.detailed.v9.1/"
                 "4932.protein.links.detailed.v9.1.txt.gz",
    "string11": "https://stringdb-static.org/download/protein.links.detailed.v11.0/"
                "4932.protein.links.detailed.v11.0.txt.gz",
    "string12": "https://stringdb-downloads.org/download/protein.links.detailed.v12.0/"
                "4932.protein.links.detailed.v12.0.txt.gz",
}


def _first_bad_line(data: bytes, path: Path) -> SourceFormatError:
    """Slow path, only after the fast parser failed: find the first malformed line."""
    for i, raw in enumerate(data.split(b"\n")[1:], start=2):
        if not raw.strip():
            continue
        f = raw.split()
        if len(f) != len(HEADER):
            return SourceFormatError(path, i, f"{len(HEADER)} space-separated fields", raw.decode("utf-8", "replace"))
        for name, v in zip(HEADER[2:], f[2:]):
            if not v.isdigit():
                return SourceFormatError(path, i, f"an integer score in [0, 1000] for {name}",
                                         v.decode("utf-8", "replace"))
    return SourceFormatError(path, None, "a parseable STRING detailed links table")


def read_string(path: str | Path, genes: GeneIndex, prefix: str = "string12",
                channels: list[str] | None = None) -> dict[str, EdgeTable]:
    """Read one STRING detailed links file into one :class:`EdgeTable` per channel.

    ``channels`` defaults to all of :data:`CHANNELS`; edge types are named
    ``f"{prefix}_{channel}"``. Stats per type: ``rows_read`` (data lines in the
    file), ``dropped_zero_score`` (score 0 in this channel), ``dropped_unknown_gene``.
    """
    path = Path(path)
    channels = list(channels or CHANNELS)
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown STRING channels {sorted(unknown)}; known: {CHANNELS}")
    data = read_source_bytes(path, desc=f"{prefix} {path.name}")
    if not data or data.isspace():  # isspace stops at the first other byte: no copy, no full scan
        raise SourceFormatError(path, None, "a header line: " + " ".join(HEADER), "an empty file")
    header = data[: data.find(b"\n")].decode("utf-8", "replace").split()
    if header != HEADER:
        missing = [c for c in HEADER if c not in header]
        raise SourceFormatError(path, 1, "the header " + " ".join(HEADER)
                                + (f" (missing: {', '.join(missing)})" if missing else ""), " ".join(header))
    schema = {"protein1": pl.String, "protein2": pl.String, **{c: pl.Int32 for c in HEADER[2:]}}
    try:
        df = pl.read_csv(data, separator=" ", has_header=True, schema=schema, quote_char=None)
    except pl.exceptions.PolarsError as e:
        raise _first_bad_line(data, path) from e
    del data
    n = df.height
    if df.null_count().sum_horizontal().item():  # polars pads a short line with nulls
        short = df.select(pl.any_horizontal(pl.all().is_null())).to_series()
        row = int(short.arg_max())
        raise SourceFormatError(path, row + 2, f"{len(HEADER)} space-separated fields",
                                " ".join("" if v is None else str(v) for v in df.row(row)).strip())
    for c in HEADER[2:]:
        col = df[c]
        if n == 0 or (col.min() >= 0 and col.max() <= 1000):  # the common case: no mask
            continue
        bad = (col < 0) | (col > 1000)
        if bad.any():
            row = int(bad.arg_max())
            raise SourceFormatError(path, row + 2, f"an integer score in [0, 1000] for {c}",
                                    str(col[row]) if col[row] is not None else "nothing")
    # Map ids once per distinct id (a few thousand), not once per row.
    ids = pl.concat([df["protein1"], df["protein2"]]).unique()
    idx = genes.lookup(ids.str.strip_prefix(TAXON_PREFIX))
    mapping = pl.DataFrame({"key": ids, "idx": idx})
    ends = df.select(pl.col(c).replace_strict(mapping["key"], mapping["idx"], return_dtype=pl.Int32)
                     for c in ("protein1", "protein2"))
    src, dst = ends["protein1"].to_numpy(), ends["protein2"].to_numpy()
    known = (src >= 0) & (dst >= 0)
    out: dict[str, EdgeTable] = {}
    for c in channels:
        score = df[c].to_numpy()
        pos = score > 0
        keep = pos & known  # one mask, one gather per array
        n_pos, n_keep = int(pos.sum()), int(keep.sum())
        name = f"{prefix}_{c}"
        stats = {"rows_read": n, "dropped_zero_score": n - n_pos, "dropped_unknown_gene": n_pos - n_keep}
        out[name] = EdgeTable(name, src[keep], dst[keep], score[keep].astype(np.float32) / np.float32(1000),
                              directed=False, source=str(path), stats=stats)
    n_unknown_ids = int((idx < 0).sum())
    log.info("read %s: %d rows, %d distinct ids (%d not in the gene index)", path, n, len(ids), n_unknown_ids)
    return out
