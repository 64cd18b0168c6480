"""Vector labels: ingest of a Kemmeren-sized expression release, and the stream with a 6,200-wide label.

``python -m benchmarks labels [--strains 1500] [--genes 6200] [--seconds 3] [--rounds 5] [--json PATH]``

- Input: a SYNTHETIC GEO family SOFT file in Kemmeren 2014's layout (``synth.vectors``,
  cached under ``--workdir``): ``--strains`` deletion mutants x 2 dye-swapped arrays x
  ``--genes`` probes (``ID_REF``, ``VALUE``, ``Signal Norm_Cy5``, ``Signal Norm_Cy3``; ~76 MB
  gzip, ~0.9 GB of text) and its Table S1 workbook.
- INGEST, OURS (a fresh process): :func:`pipeline.sources.phenotypes.kemmeren.read_kemmeren2014`
  (the file streamed a block at a time, tables parsed by polars in batches of 256 arrays,
  per-strain log-ratios and t-test p-values) and :func:`pipeline.dataset.labels.write_labels`
  (aligned with the strains' samples, the Zarr label matrices written): wall time and peak RSS.
  Targets: < 10 s, < 2 GiB.
- INGEST, BASELINE (a fresh process, same file, same run): the research-code way (GEOparse's):
  the text read line by line, each sample table parsed by ``pandas.read_csv``, ratios per array in
  pandas, per-strain statistics by ``pandas.concat`` + ``groupby`` (same p-value formula; no store
  written).
- STREAM: a build of the ``kemmeren2014`` dataset from the same file (graph ``string12_fusion``, the
  bundled genes, masks precomputed, default chunks), ``PerturbationStream(fmt="graph", batch_size=64)``
  over the train split, in process, with ``vector_labels=()`` (none), with the 6,200-wide
  ``kemmeren2014.expression`` (default label cache) and with it uncached (``vector_cache_bytes=0``:
  every epoch decodes the rows again); rounds alternate, the median of each is kept. Target: with the
  label >= 50% of the rate without.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import Record, format_table, run_metadata, write_json

DEFAULT_WORKDIR = Path("data/bench")
TARGET_SECONDS = 10.0
TARGET_GIB = 2.0
TARGET_STREAM_RATIO = 0.5


def ensure_input(workdir: Path, strains: int, genes: int) -> Path:
    """The folder holding the Kemmeren-sized SOFT file and Table S1 (generated once)."""
    from synth.vectors import kemmeren_bench

    d = workdir / f"kemmeren-{strains}x{genes}"
    if not (d / "GSE42527_family.soft.gz").exists() or not (d / "kemmeren2014_table_s1.xlsx").exists():
        kemmeren_bench(d, strains, genes)
    return d


def _ours(folder: Path) -> dict[str, Any]:
    import polars as pl

    from pipeline.core.genes import GeneIndex
    from pipeline.dataset.labels import VectorTable, write_labels
    from pipeline.sources.phenotypes.kemmeren import read_kemmeren2014

    t0 = time.perf_counter()
    f = read_kemmeren2014(sorted(p for p in folder.iterdir() if p.suffix in (".gz", ".xlsx")), {})
    t_read = time.perf_counter() - t0
    # the gene index of this synthetic input: its platform's names (the stage uses the graph's)
    ids = sorted(set(f["columns"]) | {g for s in f["genes"] for g in s})
    genes = GeneIndex.from_table(pl.DataFrame({"id": ids}))
    idx = genes.lookup(pl.Series([s[0] for s in f["genes"]]))
    order = np.argsort(idx)
    samples = pl.DataFrame({"sample_id": np.arange(len(idx), dtype=np.int64),
                            "gene_idx": [[int(i)] for i in idx[order]], "types": [[1]] * len(idx)},
                           schema={"sample_id": pl.Int64, "gene_idx": pl.List(pl.Int32), "types": pl.List(pl.UInt8)})
    table = VectorTable("kemmeren2014.expression", "expression", "log2", "", list(f["columns"]), f["genes"],
                        f["types"], f["values"], f["pvalue"], column_genes=True, stats=f["stats"])
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_labels(Path(tmp), samples, [table], genes)
        stored = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return {"seconds": time.perf_counter() - t0, "read_seconds": t_read, "strains": len(f["genes"]),
            "width": len(f["columns"]), "rows_stored": spec[table.name]["rows"], "stored_bytes": stored}


def _baseline(folder: Path) -> dict[str, Any]:
    """GEOparse-style: line iteration, one pandas.read_csv per sample table, pandas groupby."""
    import gzip

    import pandas as pd

    from pipeline.sources.phenotypes.kemmeren import t_pvalue, title_tokens

    t0 = time.perf_counter()
    import fastexcel
    table = fastexcel.read_excel(str(folder / "kemmeren2014_table_s1.xlsx")).load_sheet(0).to_pandas()
    names = dict(zip(table["gene"].str.upper(), table["orf name"].str.upper(), strict=True))
    platform, per_array = None, []
    meta: dict[str, str] = {}
    lines: list[str] = []
    in_table = None
    with gzip.open(folder / "GSE42527_family.soft.gz", "rt") as fh:
        for line in fh:
            if in_table is not None:
                if line.startswith(("!platform_table_end", "!sample_table_end")):
                    df = pd.read_csv(io.StringIO("".join(lines)), sep="\t")
                    if in_table == "platform":
                        platform = df.set_index("ID")["ORF"]
                    else:
                        ref_ch1 = meta["source_name_ch1"].startswith("ref")
                        test, ref = ("Signal Norm_Cy3", "Signal Norm_Cy5") if ref_ch1 else \
                            ("Signal Norm_Cy5", "Signal Norm_Cy3")
                        df["gene"] = df["ID_REF"].map(platform)
                        df = df[(df[test] > 0) & (df[ref] > 0)]
                        ratio = np.log2(df[test] / df[ref]).groupby(df["gene"]).mean()
                        orf = names.get(title_tokens(meta["title"])[0])
                        per_array.append(ratio.rename(orf))
                    in_table, lines = None, []
                else:
                    lines.append(line)
            elif line.startswith("!platform_table_begin"):
                in_table = "platform"
            elif line.startswith("!sample_table_begin"):
                in_table = "sample"
            elif line.startswith("^SAMPLE"):
                meta = {}
            elif line.startswith("!Sample_"):
                k, _, v = line[8:].partition(" = ")
                meta.setdefault(k, v.strip())
    wide = pd.concat(per_array, axis=1).T  # arrays x genes
    g = wide.groupby(level=0)
    mean, sd, n = g.mean(), g.std(), g.count()
    p = t_pvalue((mean / (sd / np.sqrt(n))).fillna(0).to_numpy(), np.maximum(n.to_numpy() - 1, 1))
    return {"seconds": time.perf_counter() - t0, "strains": int(mean.shape[0]), "width": int(mean.shape[1]),
            "p_cells": int(p.size)}


def _child(which: str, folder: str, out: str) -> int:
    res = (_ours if which == "ours" else _baseline)(Path(folder))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_rss_mib"] = ru.ru_maxrss / 1024
    res["cpu_seconds"] = ru.ru_utime + ru.ru_stime  # all threads: on a shared machine, what the run needed
    Path(out).write_text(json.dumps(res))
    return 0


def run_child(which: str, folder: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        r = subprocess.run([sys.executable, "-m", "benchmarks.labels", "--child", which, str(folder), str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{which} failed:\n{r.stdout}\n{r.stderr}")
        return json.loads(out.read_text())


def ensure_build(workdir: Path, folder: Path) -> Path | None:
    """A build of ``kemmeren2014`` from ``folder`` with masks (None if this tree's dataset stage has no
    vector-label datasets registered)."""
    from pipeline.dataset.sources import DATASETS

    if "kemmeren2014" not in DATASETS:
        return None
    from pipeline.config import BuildConfig
    from pipeline.core.paths import SAMPLE_DIR
    from pipeline.sequence import run_build

    raw = workdir / f"{folder.name}-raw"
    if not (raw / "kemmeren2014").exists():
        (raw / "kemmeren2014").mkdir(parents=True)
        for p in folder.iterdir():
            (raw / "kemmeren2014" / p.name).symlink_to(p.resolve())
        (raw / "string").mkdir()  # the bundled SYNTHETIC STRING sample, under its released name
        (raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz").symlink_to(
            (SAMPLE_DIR / "string" / "4932.protein.links.detailed.v12.0.sample.txt.gz").resolve())
    cfg = BuildConfig.create(graphs=["string12_fusion"], raw=raw, out=workdir / "labels-builds",
                             name=folder.name, datasets=["kemmeren2014"],
                             artifacts=["masks"], dask_processes=False)
    run_build(cfg)
    return workdir / "labels-builds" / folder.name


def stream_rate(build: Path, labels: tuple[str, ...] | None, seconds: float, cache_bytes: int | None = None) -> float:
    """Samples/s of graph batches of 64 over the train split, in process, for ``seconds`` (``cache_bytes``:
    the stream's vector-label cache; None: its default)."""
    from pipeline.stream import PerturbationStream

    kw = {} if cache_bytes is None else {"vector_cache_bytes": cache_bytes}
    ds = PerturbationStream(build, fmt="graph", batch_size=64, seed=0, vector_labels=labels, **kw)
    n, epoch, t0 = 0, 0, None
    while True:
        ds.set_epoch(epoch)
        for b in ds:
            if t0 is None:
                t0 = time.perf_counter()  # after the first batch: the stores are open, the first window read
                continue
            n += len(b)
            if time.perf_counter() - t0 >= seconds:
                return n / (time.perf_counter() - t0)
        epoch += 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks labels", description=__doc__.splitlines()[0])
    ap.add_argument("--strains", type=int, default=1500)
    ap.add_argument("--genes", type=int, default=6200)
    ap.add_argument("--seconds", type=float, default=3.0, help="per stream round (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating stream rounds of each kind (default 5)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--json", type=Path, default=Path("bench-results/labels.json"))
    ap.add_argument("--skip-stream", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(*argv[1:4])
    args = parser().parse_args(argv)
    folder = ensure_input(args.workdir, args.strains, args.genes)
    ours, base = run_child("ours", folder), run_child("baseline", folder)
    rows, records = [], []
    speed = base["seconds"] / ours["seconds"]
    ok_t, ok_m = ours["seconds"] < TARGET_SECONDS, ours["peak_rss_mib"] / 1024 < TARGET_GIB
    rows.append(["ingest: ours (stream-parse SOFT + Table S1, write Zarr labels)",
                 f"{ours['seconds']:.2f} ({ours['cpu_seconds']:.1f} CPU)",
                 f"{ours['peak_rss_mib']:,.0f}", f"{speed:.1f}x baseline",
                 f"<{TARGET_SECONDS:g} s {'PASS' if ok_t else 'FAIL'}; "
                 f"<{TARGET_GIB:g} GiB {'PASS' if ok_m else 'FAIL'}"])
    rows.append(["ingest: baseline (line loop + pandas.read_csv per array, groupby)",
                 f"{base['seconds']:.2f} ({base['cpu_seconds']:.1f} CPU)",
                 f"{base['peak_rss_mib']:,.0f}", "1x", ""])
    records += [Record("labels.ingest.ours.seconds", round(ours["seconds"], 3), "s"),
                Record("labels.ingest.ours.read_seconds", round(ours["read_seconds"], 3), "s"),
                Record("labels.ingest.ours.peak_rss", round(ours["peak_rss_mib"], 1), "MiB"),
                Record("labels.ingest.ours.cpu_seconds", round(ours["cpu_seconds"], 2), "s"),
                Record("labels.ingest.baseline.cpu_seconds", round(base["cpu_seconds"], 2), "s"),
                Record("labels.ingest.ours.stored_bytes", ours["stored_bytes"], "B"),
                Record("labels.ingest.baseline.seconds", round(base["seconds"], 3), "s"),
                Record("labels.ingest.baseline.peak_rss", round(base["peak_rss_mib"], 1), "MiB"),
                Record("labels.ingest.speedup", round(speed, 2), "x"),
                Record("labels.ingest.target_seconds_pass", int(ok_t), "bool"),
                Record("labels.ingest.target_memory_pass", int(ok_m), "bool")]
    stream = None
    if not args.skip_stream:
        build = ensure_build(args.workdir, folder)
        if build is None:
            print("stream: skipped (kemmeren2014 is not a registered dataset in this tree)")
        else:
            without, with_, uncached = [], [], []
            lab = ("kemmeren2014.expression",)
            for _ in range(args.rounds):
                without.append(stream_rate(build, (), args.seconds))
                with_.append(stream_rate(build, lab, args.seconds))
                uncached.append(stream_rate(build, lab, args.seconds, cache_bytes=0))
            a, b, c = statistics.median(without), statistics.median(with_), statistics.median(uncached)
            stream = b / a
            ok = stream >= TARGET_STREAM_RATIO
            rows.append(["stream graph/64, no vector label (samples/s)", f"{a:,.0f}", "", "1x", ""])
            rows.append([f"stream graph/64, + kemmeren2014.expression [{args.genes}] (samples/s)", f"{b:,.0f}", "",
                         f"{stream:.2f}x", f">={TARGET_STREAM_RATIO}x {'PASS' if ok else 'FAIL'}"])
            rows.append(["  the same, label cache off (vector_cache_bytes=0: decoded every epoch)", f"{c:,.0f}", "",
                         f"{c / a:.2f}x", ""])
            records += [Record("labels.stream.without.samples_per_s", round(a, 1), "samples/s"),
                        Record("labels.stream.with.samples_per_s", round(b, 1), "samples/s"),
                        Record("labels.stream.with_uncached.samples_per_s", round(c, 1), "samples/s"),
                        Record("labels.stream.ratio", round(stream, 3), "x"),
                        Record("labels.stream.ratio_uncached", round(c / a, 3), "x"),
                        Record("labels.stream.target_pass", int(ok), "bool"),
                        Record("labels.stream.peak_rss", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                / 1024, 1), "MiB")]
            print("stream rounds (samples/s): without", [round(x) for x in without], "with", [round(x) for x in with_],
                  "uncached", [round(x) for x in uncached])
    meta = run_metadata("labels", {"strains": args.strains, "genes": args.genes, "arrays_per_strain": 2,
                                   "seconds": args.seconds, "rounds": args.rounds,
                                   "load_average": round(os.getloadavg()[0], 2)})
    print(f"vector labels benchmark, {meta['date']} ({meta['machine']['cores']} cores; input SYNTHETIC, "
          f"{args.strains} strains x 2 arrays x {args.genes} genes)")
    print(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(format_table(["what", "s (CPU s) or samples/s", "peak MiB", "ratio", "target"], rows))
    write_json(args.json, records, meta)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
