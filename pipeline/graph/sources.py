"""What ``--graphs`` names mean: sources, the edge types they give, where their files live.

A selector is a source name (``string12``: all its edge types) or one edge type
(``string12_fusion``, ``physical``). Each source knows its raw file names under
``data/raw/<subdir>/``, its public URL (for ``--download``) and, for the embedded
default, a synthetic sample under ``data/sample/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.edges import EdgeTable
from pipeline.core.errors import AmbiguousSourceError
from pipeline.core.genes import GeneIndex

# A reader: (path, genes, edge types wanted, parameters) -> edge tables by type name.
Reader = Callable[[Path, GeneIndex, list[str], dict], dict[str, EdgeTable]]


@dataclass(frozen=True)
class Source:
    name: str
    edge_types: tuple[str, ...]
    directed: bool
    subdir: str
    patterns: tuple[str, ...]  # globs under raw/<subdir>, first match wins
    reader: Reader
    url: str | None = None
    file_name: str | None = None  # name to save a download as
    sha256: str | None = None  # pinned digest of the download, when known
    sample: str | None = None  # path relative to data/sample
    derived: bool = False  # computed from the gene table, no file of its own
    description: str = ""
    params: tuple[str, ...] = field(default=())  # build parameters the reader uses


def _string_reader(prefix: str) -> Reader:
    def read(path: Path, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
        from pipeline.sources.interactions.string import read_string
        return read_string(path, genes, prefix=prefix, channels=[t[len(prefix) + 1:] for t in types])
    return read


def _dango_reader(path: Path, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
    import logging

    from pipeline.sources.interactions.dango import available_channels, read_dango
    prefix = "dango_string9_1"
    wanted = [t[len(prefix) + 1:] for t in types]
    have = [c for c in wanted if c in available_channels(path)]
    missing = [c for c in wanted if c not in have]
    if missing:  # the DANGO repository ships without the two largest channels
        logging.getLogger("pipeline.build").warning(
            "%s: channels %s absent from %s; building the %d present", prefix, missing, path, len(have))
    return read_dango(path, genes, prefix=prefix, channels=have or wanted)


def _biogrid_reader(path: Path, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
    from pipeline.sources.interactions.biogrid import read_biogrid
    return {k: v for k, v in read_biogrid(path, genes).items() if k in types}


def _tflink_reader(path: Path, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
    from pipeline.sources.interactions.tflink import read_tflink
    return read_tflink(path, genes)


def _regulatory_reader(path: Path, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
    from pipeline.sources.interactions.regulatory import read_regulatory
    return read_regulatory(path, genes)


def _go_reader(path: Path | None, genes: GeneIndex, types: list[str], params: dict) -> dict[str, EdgeTable]:
    from pipeline.sources.interactions.go import go_coannotation
    return {"go_coannotation": go_coannotation(genes, max_term_size=int(params["go_max_term_size"]))}


_CH = ("neighborhood", "fusion", "cooccurence", "coexpression", "experimental", "database")


def _string(tag: str, version: str) -> Source:
    from pipeline.sources.interactions.string import FILE_NAMES, URLS
    return Source(
        name=tag, edge_types=tuple(f"{tag}_{c}" for c in _CH), directed=False, subdir="string",
        patterns=(f"4932.protein.links.detailed.v{version}.txt.gz", f"4932.protein.links.detailed.v{version}.txt"),
        reader=_string_reader(tag), url=URLS[tag], file_name=FILE_NAMES[tag],
        sample="string/4932.protein.links.detailed.v12.0.sample.txt.gz" if tag == "string12" else None,
        description=f"STRING v{version} protein.links.detailed, S. cerevisiae (taxon 4932)",
    )


SOURCES: dict[str, Source] = {s.name: s for s in [
    _string("string9_1", "9.1"),
    _string("string11", "11.0"),
    _string("string12", "12.0"),
    Source("dango_string9_1", tuple(f"dango_string9_1_{c}" for c in _CH), False, "dango_string9_1",
           ("yeast_string_genes.txt",), _dango_reader,
           description="DANGO's processed STRING v9.1 networks (gene list + i j score per channel)"),
    Source("biogrid", ("physical", "genetic"), False, "biogrid",
           ("BIOGRID-ORGANISM-Saccharomyces_cerevisiae_S288c-*.tab3.txt*", "*.tab3.txt*", "*.tab3.zip"),
           _biogrid_reader,
           sample="biogrid/BIOGRID-ORGANISM-Saccharomyces_cerevisiae_S288c-sample.tab3.txt",
           description="BioGRID TAB3, S. cerevisiae S288c (physical and genetic interactions)"),
    Source("tflink", ("tflink",), True, "tflink",
           ("TFLink_Saccharomyces_cerevisiae_interactions_All_simpleFormat_v1.0.tsv*",),
           _tflink_reader,
           url="https://cdn.netbiol.org/tflink/download_files/"
               "TFLink_Saccharomyces_cerevisiae_interactions_All_simpleFormat_v1.0.tsv",
           file_name="TFLink_Saccharomyces_cerevisiae_interactions_All_simpleFormat_v1.0.tsv",
           sample="tflink/TFLink_Saccharomyces_cerevisiae_sample.tsv",
           description="TFLink simple format, S. cerevisiae (TF -> target)"),
    Source("regulatory", ("regulatory",), True, "regulatory", ("*.tsv", "*.tsv.gz", "*.txt"),
           _regulatory_reader, sample="regulatory/regulatory_sample.tsv",
           description="TF-target table (regulator -> target)"),
    Source("go", ("go_coannotation",), False, "", (), _go_reader, derived=True,
           description="genes sharing a GO term annotated to at most go_max_term_size genes",
           params=("go_max_term_size",)),
]}

#: sha256 of published gene annotations (SGD's GFF3 inside S288C_reference_genome_R64-4-1_20230830.tgz):
#: a build records whether its gene annotation is this release or a local variant.
GENE_RELEASES: dict[str, str] = {
    "saccharomyces_cerevisiae_R64-4-1_20230830.gff": "64f61e3153083a8ef6d853721c9e83e4469cdc120883ec281e51a0df4ba390fa",
}


def releases(source: Source) -> dict[str, str]:
    """Release file name -> sha256 of ``source`` (its pinned download digest), for
    :func:`pipeline.core.inputs.mark_release`."""
    return {source.file_name: source.sha256} if source.file_name and source.sha256 else {}


def edge_type_source() -> dict[str, Source]:
    return {t: s for s in SOURCES.values() for t in s.edge_types}


def resolve(selectors: list[str]) -> dict[str, list[str]]:
    """Selectors -> {source name: [edge types]}, in a stable order.

    >>> resolve(["string12_fusion", "physical"])
    {'biogrid': ['physical'], 'string12': ['string12_fusion']}
    >>> resolve(["string12"])["string12"][:2]
    ['string12_neighborhood', 'string12_fusion']
    """
    by_type = edge_type_source()
    chosen: dict[str, list[str]] = {}
    for sel in selectors:
        for part in (p.strip() for p in sel.split(",")):
            if not part:
                continue
            if part in SOURCES:
                types = list(SOURCES[part].edge_types)
                src = part
            elif part in by_type:
                types, src = [part], by_type[part].name
            else:
                known = sorted(set(SOURCES) | set(by_type))
                raise ValueError(f"unknown graph {part!r}; known: {', '.join(known)}")
            have = chosen.setdefault(src, [])
            have.extend(t for t in types if t not in have)
    # keep each source's own edge-type order
    return {s: [t for t in SOURCES[s].edge_types if t in chosen[s]] for s in sorted(chosen)}


def find_raw(source: Source, raw: Path) -> Path | None:
    """The source's file (or folder, for DANGO) under ``raw/<subdir>``, if present.

    Every pattern is looked at: two matching files (``x.txt`` and ``x.txt.gz``, two
    releases) are an :class:`~pipeline.core.errors.AmbiguousSourceError` naming both.
    Hidden files (``.x.part-*`` of a download) are not inputs.
    """
    base = raw / source.subdir
    if not base.is_dir():
        return None
    hits = sorted({p for pat in source.patterns for p in base.glob(pat) if not p.name.startswith(".")})
    if not hits:
        return None
    if source.name == "dango_string9_1":
        return base
    if len(hits) > 1:
        raise AmbiguousSourceError(base, f"{source.name} file ({source.description})", hits)
    return hits[0]
