"""Regenerate the synthetic sample inputs under ``data/sample/`` and its ``MANIFEST.json``.

The sample is the embedded default of ``python -m pipeline.build``: small,
deterministic (seed 0), clearly synthetic interaction files over the *real* gene ids
of ``data/sample/genes.tsv``, written at the paths ``pipeline.graph.sources.SOURCES[...].sample``
names. Generation is :mod:`synth.graph` (the same code as the full-scale
benchmark data), at the sizes of :data:`SAMPLE_SIZES`.

Usage::

    python scripts/make_sample.py [--check]

Re-running gives byte-identical files (gzip without mtime or file name). ``--check``
regenerates into a temporary folder and exits 1 if any file or the manifest differs.
``genes.tsv`` is real data (``scripts/make_gene_table.py``); it is listed in the
manifest (``synthetic: false``) but not rewritten here.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.buildkey import sha256_file  # noqa: E402
from pipeline.core.genes import read_gene_table_tsv  # noqa: E402
from pipeline.core.paths import SAMPLE_DIR  # noqa: E402
from pipeline.graph.sources import SOURCES  # noqa: E402
from synth.graph import STRING_UNION_FULL, SynthSizes, gene_universe, rng_for, write_sources  # noqa: E402

SEED = 0
GENERATOR = "scripts/make_sample.py"
GENES = "genes.tsv"
#: STRING: ~25,000 distinct pairs over the six channels (channel sizes in the real file's proportions);
#: BioGRID ~3,000 rows (physical with repeated evidence rows, some genetic); TFLink ~2,000 and
#: regulatory ~500 TF -> target pairs from a shared set of 40 TFs.
SAMPLE_SIZES = dataclasses.replace(
    SynthSizes.at(25_000 / STRING_UNION_FULL),
    pairs={**SynthSizes.at(25_000 / STRING_UNION_FULL).pairs, "physical": 1_900, "tflink": 2_000, "regulatory": 500},
    genetic=380, n_tfs=40,
)
SAMPLE_SOURCES = ["string12", "biogrid", "tflink", "regulatory"]
DESCRIPTIONS = {
    "string12": "STRING v12 protein.links.detailed format (gzip, both orientations, taxon prefix 4932.); "
                "~25,000 distinct heavy-tailed pairs over the six evidence channels",
    "biogrid": "BioGRID TAB3 format (37 columns); physical pairs with repeated evidence rows, some genetic rows",
    "tflink": "TFLink simple format; TF -> target pairs from a set of 40 TFs, names as standard names",
    "regulatory": "regulator/target/weight table; TF -> target pairs from the same 40 TFs",
}


def make_sample(out: Path, genes_tsv: Path = SAMPLE_DIR / GENES) -> dict:
    """Write the synthetic sample files and ``MANIFEST.json`` under ``out``; returns the manifest."""
    real = read_gene_table_tsv(genes_tsv)
    sizes = dataclasses.replace(SAMPLE_SIZES, n_genes=real.height)  # real genes only: no filler
    genes = gene_universe(real, real.height, rng_for(SEED, "genome"))
    paths = {s: SOURCES[s].sample for s in SAMPLE_SOURCES}
    report = write_sources(out, genes, sizes, SEED, paths=paths, sources=SAMPLE_SOURCES, gzip_level=9)
    files = []
    if (out / GENES).exists() or genes_tsv.exists():
        g = out / GENES if (out / GENES).exists() else genes_tsv
        files.append({"path": GENES, "synthetic": False, "generator": "scripts/make_gene_table.py", "seed": None,
                      "sha256": sha256_file(g), "bytes": g.stat().st_size,
                      "description": f"REAL gene table: {real.height:,} S288C genes (systematic and standard "
                                     "names, coordinates, GO terms) from the R64-2-1 GenBank files"})
    for s in SAMPLE_SOURCES:
        p = out / paths[s]
        files.append({"path": paths[s], "synthetic": True, "generator": GENERATOR, "seed": SEED,
                      "sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": report[s]["rows"],
                      "description": "SYNTHETIC " + DESCRIPTIONS[s]})
    # entries of the other generators (gene sequences, phenotype tables) are theirs to keep
    prev = genes_tsv.parent / "MANIFEST.json"
    if prev.exists():
        mine = {GENERATOR, "scripts/make_gene_table.py"}
        files += [f for f in json.loads(prev.read_text())["files"] if f["generator"] not in mine]
    manifest = {
        "description": "Embedded default inputs of python -m pipeline.build. Every file marked synthetic is "
                       "generated over the real gene ids of genes.tsv and carries no biological "
                       "information; genes.tsv and gene_cds.fa.gz are real (R64-2-1 reference genome). "
                       "Each file names its generator; all regenerate byte-identically.",
        "files": files,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=SAMPLE_DIR, help="folder to write (default: data/sample)")
    p.add_argument("--check", action="store_true", help="regenerate in a temporary folder and compare with --out")
    args = p.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = make_sample(Path(tmp), args.out / GENES)
            names = [f["path"] for f in manifest["files"] if f["synthetic"] and f["generator"] == GENERATOR] + [
                "MANIFEST.json"]
            differ = [n for n in names if not (args.out / n).exists()
                      or not filecmp.cmp(Path(tmp) / n, args.out / n, shallow=False)]
        print("sample is up to date" if not differ else f"differs from a fresh run: {differ}")
        return 1 if differ else 0
    manifest = make_sample(args.out)
    total = sum(f["bytes"] for f in manifest["files"])
    for f in manifest["files"]:
        print(f"{f['bytes']:>10,} B  {'synthetic' if f['synthetic'] else 'real     '}  {f['path']}")
    print(f"{total:>10,} B  total (+ MANIFEST.json, README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
