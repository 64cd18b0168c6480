"""BioGRID TAB3 interaction files: physical and genetic interactions, undirected.

Format: ``BIOGRID-ORGANISM-Saccharomyces_cerevisiae_S288c-4.4.xxx.tab3.txt`` (or
BIOGRID-ALL), plain, ``.gz`` or a ``.zip`` holding the one ``.tab3.txt``;
tab-separated, no quoting (BioGRID has stray ``"``), 37 columns, header line
starting with ``#BioGRID Interaction ID``, ``-`` for a missing value.

Columns used: ``Systematic Name Interactor A/B``, ``Official Symbol Interactor A/B``,
``Experimental System Type`` (``physical`` or ``genetic``; anything else is an
error) and ``Organism ID Interactor A/B``. All experimental systems and both
throughputs are kept; every row is one edge of weight 1.0.

Rows go to the table of their type. Within a type: rows where either interactor is
not of ``organism_id`` are dropped (``dropped_other_organism``); an interactor maps
by systematic name (exact), else by official symbol (any name the gene index knows,
case-insensitive); rows with an interactor that maps neither way are dropped
(``dropped_unknown_gene``). ``rows_read`` counts the rows of that type, so
``rows_read == len(table) + dropped_other_organism + dropped_unknown_gene``.
Duplicates and self-loops are left to :func:`pipeline.graph.csr.build_csr`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.edges import EdgeTable, keep_known
from pipeline.core.genes import GeneIndex
from pipeline.sources._table import MISSING, read_table

#: The 37 columns of BioGRID TAB3, in order.
TAB3_COLUMNS = [
    "#BioGRID Interaction ID", "Entrez Gene Interactor A", "Entrez Gene Interactor B",
    "BioGRID ID Interactor A", "BioGRID ID Interactor B", "Systematic Name Interactor A",
    "Systematic Name Interactor B", "Official Symbol Interactor A", "Official Symbol Interactor B",
    "Synonyms Interactor A", "Synonyms Interactor B", "Experimental System", "Experimental System Type",
    "Author", "Publication Source", "Organism ID Interactor A", "Organism ID Interactor B", "Throughput",
    "Score", "Modification", "Qualifications", "Tags", "Source Database",
    "SWISS-PROT Accessions Interactor A", "TREMBL Accessions Interactor A", "REFSEQ Accessions Interactor A",
    "SWISS-PROT Accessions Interactor B", "TREMBL Accessions Interactor B", "REFSEQ Accessions Interactor B",
    "Ontology Term IDs", "Ontology Term Names", "Ontology Term Categories", "Ontology Term Qualifier IDs",
    "Ontology Term Qualifier Names",
    "Ontology Term Types", "Organism Name Interactor A", "Organism Name Interactor B",
]

log = logging.getLogger(__name__)

#: S. cerevisiae S288C in the NCBI taxonomy, as BioGRID writes it.
YEAST_ORGANISM_ID = 559292
#: The edge types, as values of ``Experimental System Type``.
TYPES = ("physical", "genetic")

COLUMNS = {
    "sys_a": ["Systematic Name Interactor A"],
    "sys_b": ["Systematic Name Interactor B"],
    "sym_a": ["Official Symbol Interactor A"],
    "sym_b": ["Official Symbol Interactor B"],
    "type": ["Experimental System Type"],
    "org_a": ["Organism ID Interactor A"],
    "org_b": ["Organism ID Interactor B"],
}


def _map_interactor(sys: pl.Series, sym: pl.Series, genes: GeneIndex) -> np.ndarray:
    """Index by systematic name, else by symbol; looked up once per distinct (name, symbol)."""
    pairs = pl.DataFrame({"sys": sys, "sym": sym})
    uniq = pairs.unique()
    known = [uniq[c].set(uniq[c].is_in(MISSING), None) for c in ("sys", "sym")]
    by_sys, by_sym = genes.lookup(known[0]), genes.lookup_names(known[1])
    uniq = uniq.with_columns(pl.Series("idx", np.where(by_sys >= 0, by_sys, by_sym), dtype=pl.Int32))
    out = pairs.join(uniq, on=["sys", "sym"], how="left", maintain_order="left")["idx"]
    return out.to_numpy().astype(np.int32, copy=False)


def read_biogrid(path: str | Path, genes: GeneIndex, organism_id: int = YEAST_ORGANISM_ID) -> dict[str, EdgeTable]:
    """Read a BioGRID TAB3 file into ``{"physical": EdgeTable, "genetic": EdgeTable}`` (undirected)."""
    path = Path(path)
    table = read_table(path, COLUMNS, desc=f"biogrid {path.name}")
    df = table.df
    typ = df["type"].str.strip_chars().str.to_lowercase()
    bad = ~typ.is_in(TYPES)
    if bad.any():
        row = int(bad.arg_max())
        raise table.error(row, f"Experimental System Type {' or '.join(map(repr, TYPES))}", df["type"][row])
    org = str(organism_id)
    same = ((df["org_a"].str.strip_chars() == org) & (df["org_b"].str.strip_chars() == org)).to_numpy()
    # Map only the rows of the organism: BIOGRID-ALL is mostly other species.
    ours = df.filter(pl.Series(same))
    src = np.full(df.height, -1, dtype=np.int32)
    dst = np.full(df.height, -1, dtype=np.int32)
    src[same] = _map_interactor(ours["sys_a"], ours["sym_a"], genes)
    dst[same] = _map_interactor(ours["sys_b"], ours["sym_b"], genes)
    typ_np = typ.to_numpy()
    out: dict[str, EdgeTable] = {}
    for t in TYPES:
        of_type = typ_np == t
        keep = of_type & same
        stats = {"rows_read": int(of_type.sum()), "dropped_other_organism": int((of_type & ~same).sum())}
        out[t] = keep_known(t, src[keep], dst[keep], np.ones(int(keep.sum()), dtype=np.float32),
                            directed=False, source=str(path), stats=stats)
        log.info("read %s %s: %s", path, t, out[t].stats)
    return out
