"""What a graph build reads: :class:`GraphConfig` (one field per ``python -m pipeline.build`` option)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import options
from pipeline.core.errors import check_plain_name
from pipeline.core.options import option
from pipeline.core.remote import local_path
from pipeline.graph.sources import SOURCES

_KNOWN = ", ".join(SOURCES)


@dataclass(frozen=True)
class GraphConfig:
    """The graph stage's settings; validated on construction.

    >>> GraphConfig(graphs=("string12",)).go_max_term_size
    300
    """

    graphs: tuple[str, ...] = option(
        help=f"source or edge type to include; repeatable (e.g. string12, string12_fusion, physical; known sources: "
             f"{_KNOWN})", style="repeat", required=True, metavar="NAME[,NAME]")
    genes: str | Path | None = option(
        None, help="gene universe: SGD GFF3, GenBank file/folder, gene table .tsv or gene list .txt "
                   "(default: RAW/genome/, else the bundled R64-2-1 gene table)")
    sequences: str | Path | None = option(
        None, help="coding sequences for gene features: FASTA, GenBank file/folder, or GFF3 with ##FASTA "
                   "(default: the gene annotation itself, RAW/genome/*.fa[.gz], or the bundled CDS)")
    added_genes: str | Path | None = option(
        None, metavar="TSV", help="heterologous genes to append to the gene index (columns id[, name, sequence])")
    embeddings: tuple[str, ...] = option(
        (), style="repeat", metavar="NAME=PATH",
        help="an external gene embedding table (CSV/TSV/Parquet keyed by systematic name); repeatable")
    download: bool = option(False, help="fetch missing sources from their public URLs")
    go_max_term_size: int = option(
        300, help="go_coannotation: ignore GO terms annotated to more genes than this (default: 300)")

    def __post_init__(self) -> None:
        graphs = (self.graphs,) if isinstance(self.graphs, str) else tuple(self.graphs)
        object.__setattr__(self, "graphs", graphs)
        if not graphs:
            raise ValueError("--graphs: name at least one source or edge type")
        for name in ("genes", "sequences", "added_genes"):
            v = getattr(self, name)
            object.__setattr__(self, name, local_path(v, "--" + name.replace("_", "-")) if v else None)
        object.__setattr__(self, "embeddings", tuple(self.embeddings))
        for e in self.embeddings:
            if "=" not in e or not e.split("=", 1)[0]:
                raise ValueError(f"--embeddings takes NAME=PATH, got {e!r}")
            check_plain_name("--embeddings name", e.split("=", 1)[0])  # a group of the store: not a path
            local_path(e.split("=", 1)[1], "--embeddings")

    def to_dict(self) -> dict[str, Any]:
        return options.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphConfig:
        return options.from_dict(cls, d, "graph config")
