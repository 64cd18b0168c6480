"""Regenerate the synthetic phenotype-table samples under ``data/sample/`` and their MANIFEST entries.

Small, deterministic (seed 0), clearly synthetic tables in the real published formats,
over the real gene ids of ``data/sample/genes.tsv``, at the paths
``pipeline.dataset.sources.DATASETS[...].samples`` names:

- ``kuzmin2018/aao1729_data_s1.sample.tsv``: ~2,400 rows of Kuzmin 2018 Data S1
  (1,400 digenic rows with HO-marked single-mutant queries, trigenic rows over 900
  distinct triples, replicates, ~5% ts alleles);
- ``costanzo2016/SGA_{ExE,NxN,ExN_NxE,DAmP}.sample.txt``: 1,000 rows each;
- the single-strain and pair tables of :data:`SINGLES`: Costanzo 2016 single mutant fitness
  (``.xlsx``), Baryshnikova 2010 SMF (text export), SynLethDB SL / SR (``.csv``), Costanzo
  2021 condition fitness (``.xlsx``; fixed creation date, so the bytes repeat).

Generation is :mod:`synth.phenotypes` (the same code as the full-scale
benchmark tables). Usage::

    python scripts/make_sample_phenotypes.py [--check]

Re-running gives byte-identical files. ``--check`` regenerates into a temporary
folder and exits 1 if a file differs. MANIFEST.json: this script's entries are
replaced, every other generator's are kept.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.buildkey import sha256_file  # noqa: E402
from pipeline.core.paths import SAMPLE_DIR  # noqa: E402
from synth.phenotypes import (  # noqa: E402
    CostanzoSizes,
    KuzminSizes,
    gene_pool,
    write_baryshnikova2010,
    write_costanzo2016,
    write_costanzo2016_smf,
    write_costanzo2021,
    write_kuzmin2018,
    write_synlethdb,
)

SEED = 0
GENERATOR = "scripts/make_sample_phenotypes.py"
KUZMIN = "kuzmin2018/aao1729_data_s1.sample.tsv"
COSTANZO = {k: f"costanzo2016/SGA_{k}.sample.txt" for k in ("ExE", "NxN", "ExN_NxE", "DAmP")}
KUZMIN_SIZES = KuzminSizes(triples=900, digenic=1_400, arrays=40, rescreened=0.1)
COSTANZO_SIZES = CostanzoSizes.rows_each(1_000, arrays=30)
MAX_BYTES = 300_000
#: path -> (writer(path, pool, rows, seed), rows, description) of the single-strain and pair tables
SINGLES = {
    "costanzo2016_smf/strain_ids_and_single_mutant_fitness.sample.xlsx": (
        write_costanzo2016_smf, 600, "SYNTHETIC Costanzo 2016 strain_ids_and_single_mutant_fitness.xlsx format "
        "(7 columns: strain id, systematic name, allele, fitness and stddev at 26 and 30 °C)"),
    "baryshnikova2010/S1_SMF_standard_100209.sample.txt": (
        write_baryshnikova2010, 600, "SYNTHETIC Baryshnikova 2010 S1_SMF_standard_100209 text export format (3 "
        "tab-separated columns, no header: bare ORF / _damp / _tsq id, fitness, standard error)"),
    "synlethdb/Yeast_SL.sample.csv": (
        lambda p, pool, n, seed: write_synlethdb(p, pool, n, seed, "sl"), 800,
        "SYNTHETIC SynLethDB 2.0 Yeast_SL.csv format (8 comma-separated columns n1.name .. r.statistic_score)"),
    "synlethdb/Yeast_SR.sample.csv": (
        lambda p, pool, n, seed: write_synlethdb(p, pool, n, seed, "sr"), 300,
        "SYNTHETIC SynLethDB 2.0 Yeast_SR.csv format (8 comma-separated columns, no score)"),
    "costanzo2021/S1_Conditions_Strains_Fitness.sample.xlsx": (
        write_costanzo2021, 400, "SYNTHETIC Costanzo 2021 Data File S1 format (sheet 'Diff. Mutant "
        "fitness_Conditions': 4 strain columns x 14 condition columns, dma / tsa strains)"),
}


def make_samples(out: Path, genes_tsv: Path = SAMPLE_DIR / "genes.tsv") -> list[dict]:
    """Write the sample tables under ``out``; returns their manifest entries."""
    pool = gene_pool(genes_tsv, SEED)
    k = write_kuzmin2018(out / KUZMIN, pool, KUZMIN_SIZES, SEED)
    c = write_costanzo2016(out, pool, COSTANZO_SIZES, SEED, names=COSTANZO)
    entries = [(KUZMIN, k["rows"], f"SYNTHETIC Kuzmin 2018 Data S1 format (12 tab-separated columns): "
                f"{k['digenic']:,} digenic rows (single-mutant queries with the HO marker YDL227C), "
                f"{k['trigenic']:,} trigenic rows over {k['distinct_triples']:,} distinct triples "
                f"(GENE1+GENE2_tm queries), replicates, ~5% ts alleles")]
    what = {"ExE": "ts query x ts array, TSA26 / TSA30", "NxN": "deletion query (sn, a few S suppressors) x "
            "deletion array, DMA30", "ExN_NxE": "ts / DAmP query x deletion array (DMA26) and deletion query x "
            "ts array (TSA30)", "DAmP": "DAmP query x deletion array, DMA30"}
    entries += [(COSTANZO[key], c[COSTANZO[key]], f"SYNTHETIC Costanzo 2016 SGA_{key}.txt format (11 "
                 f"tab-separated columns, NaN for unmeasured): {what[key]}") for key in COSTANZO]
    for path, (write, rows, desc) in SINGLES.items():
        entries.append((path, write(out / path, pool, rows, SEED), desc))
    files = []
    for path, rows, desc in entries:
        p = out / path
        if p.stat().st_size > MAX_BYTES:
            raise RuntimeError(f"{p} is {p.stat().st_size:,} bytes, over the {MAX_BYTES:,} allowed for a sample")
        files.append({"path": path, "synthetic": True, "generator": GENERATOR, "seed": SEED,
                      "sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": rows, "description": desc})
    return files


def update_manifest(manifest: Path, mine: list[dict]) -> None:
    """Replace this generator's entries in MANIFEST.json, keeping every other entry in place."""
    doc = json.loads(manifest.read_text())
    doc["files"] = [f for f in doc["files"] if f.get("generator") != GENERATOR] + mine
    manifest.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=SAMPLE_DIR, help="folder to write (default: data/sample)")
    p.add_argument("--check", action="store_true", help="regenerate in a temporary folder and compare with --out")
    args = p.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            mine = make_samples(Path(tmp), args.out / "genes.tsv")
            differ = [f["path"] for f in mine if not (args.out / f["path"]).exists()
                      or not filecmp.cmp(Path(tmp) / f["path"], args.out / f["path"], shallow=False)]
        print("phenotype samples are up to date" if not differ else f"differ from a fresh run: {differ}")
        return 1 if differ else 0
    mine = make_samples(args.out)
    update_manifest(args.out / "MANIFEST.json", mine)
    for f in mine:
        print(f"{f['bytes']:>10,} B  {f['rows']:>6,} rows  synthetic  {f['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
