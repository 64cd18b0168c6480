"""Dataset stage: rows/s and peak memory on the full-scale trigenic and (scaled) digenic tables.

``python -m benchmarks dataset [--costanzo-scales 0.25 1] [--baseline-rows 20000] [--json PATH]``

- Inputs: synthetic tables in the real formats (``synth.phenotypes``, cached
  under ``--workdir``): the Kuzmin-2018-style table at full scale (332,313 distinct
  triples, ~753k rows) and Costanzo-style SGA tables at the given scales of their
  20.7 million rows.
- OURS: the dataset stage (``plan_dataset`` + ``build_dataset``: read, validate,
  encode over the gene index, aggregate replicates, split, publish Parquet) in a
  fresh process pinned to ``--cores`` CPUs; rows/s over the input rows, peak RSS.
  By default the larger scale is the full 20.7M rows (measured); with smaller scales the
  20.7M-row figures are extrapolated linearly from the two (the slope is shown).
- BASELINE, same run: what research code does with such a table: ``pandas.read_csv``
  and a Python loop over ``iterrows()`` building one record per row (strain ids split
  into genes and allele kinds, genes looked up in the gene set), on the first
  ``--baseline-rows`` rows of the Kuzmin table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import Record, format_table, run_metadata, write_json
from pipeline.core.paths import SAMPLE_DIR

DEFAULT_WORKDIR = Path("data/bench")
COSTANZO_FULL_ROWS = 20_705_612
TARGET_ROWS_PER_S = 1_000_000
TARGET_PEAK_GIB = 4.0


def ensure_tables(workdir: Path, table: str, scale: float, seed: int = 0) -> Path:
    """The folder (laid out like data/raw) holding ``table`` at ``scale``; generated once."""
    from pipeline.dataset.sources import DATASETS
    from synth import phenotypes

    raw = workdir / f"phenotypes-seed{seed}-scale{scale:g}"
    ds = DATASETS[table]
    if not all((raw / ds.subdir / p).exists() for p in ds.patterns[:1]) or not list((raw / ds.subdir).glob("*")):
        phenotypes.main(["--out", str(raw), "--scale", str(scale), "--seed", str(seed), "--only", table])
    return raw


def _child(spec_path: str) -> int:
    """Child side: build a tiny graph (untimed), then time the dataset stage alone."""
    spec = json.loads(Path(spec_path).read_text())
    import logging

    from pipeline.config import BuildConfig
    from pipeline.dataset.stages import build_dataset, plan_dataset
    from pipeline.dataset.store import open_dataset
    from pipeline.graph.stages import run_graph_build

    logging.basicConfig(level=logging.WARNING)
    cfg = BuildConfig.create(graphs=["string12_fusion"], raw=Path(spec["raw"]), out=Path(spec["out"]),
                      genes=SAMPLE_DIR / "genes.tsv", datasets=[spec["table"]], force=True)
    graph, _ = run_graph_build(cfg.graph, cfg.workspace)
    t0 = time.perf_counter()
    path = build_dataset(plan_dataset(cfg.dataset, cfg.workspace))
    seconds = time.perf_counter() - t0
    m = open_dataset(path).manifest
    src = m["counts"]["sources"][spec["table"]]
    Path(spec["result"]).write_text(json.dumps({
        "seconds": seconds, "rows": src["rows_read"], "samples": m["n_samples"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


def run_ours(raw: Path, table: str, workdir: Path, cores: int) -> dict[str, Any]:
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cpus = have[:cores] if cores > 0 else have
    env = {**os.environ, "POLARS_MAX_THREADS": str(len(cpus)),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    # the graph stage wants a STRING file: the sample, under the name the registry looks for
    string_dir = raw / "string"
    string_dir.mkdir(parents=True, exist_ok=True)
    target = string_dir / "4932.protein.links.detailed.v12.0.txt.gz"
    if not target.exists():
        target.write_bytes((SAMPLE_DIR / "string" / "4932.protein.links.detailed.v12.0.sample.txt.gz").read_bytes())
    with tempfile.TemporaryDirectory(dir=workdir, prefix="dataset-") as tmp:
        spec = {"raw": str(raw), "out": str(Path(tmp) / "out"), "table": table, "result": str(Path(tmp) / "r.json")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.dataset", "--child", str(Path(tmp) / "spec.json")],
                              env=env, capture_output=True, text=True,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if hasattr(os, "sched_setaffinity")
                              else None)
        if proc.returncode != 0:
            raise RuntimeError(f"the dataset stage failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        out = json.loads(Path(spec["result"]).read_text())
    out["rows_per_s"] = out["rows"] / out["seconds"]
    return out


def run_baseline(path: Path, genes_tsv: Path, nrows: int) -> dict[str, Any]:
    """pandas read_csv + iterrows, one Python record per row, as research code builds its datasets."""
    import pandas as pd

    gene_set = {ln.split("\t", 1)[0] for ln in genes_tsv.read_text().splitlines() if ln and not ln.startswith("#")}
    t0 = time.perf_counter()
    df = pd.read_csv(path, sep="\t", nrows=nrows)
    records = []
    for _, row in df.iterrows():
        genes, kinds = [], []
        for sid in (row["Query strain ID"], row["Array strain ID"]):
            names, _, allele = str(sid).partition("_")
            for g in names.split("+"):
                if g != "YDL227C":
                    genes.append(g)
                    kinds.append("".join(ch for ch in allele if ch.isalpha()))
        if all(g in gene_set for g in genes):
            records.append({"genes": sorted(genes), "kinds": kinds,
                            "fitness": row["Combined mutant fitness"],
                            "interaction": row["Adjusted genetic interaction score (epsilon or tau)"]})
    seconds = time.perf_counter() - t0
    return {"rows": len(df), "seconds": seconds, "rows_per_s": len(df) / seconds, "records": len(records)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--costanzo-scales", type=float, nargs=2, default=[0.25, 1.0],
                   help="two scales of the 20.7M-row Costanzo tables to measure (default: a quarter and the "
                        "full size, ~1 min once generated); below 1, the 20.7M-row figures are extrapolated")
    p.add_argument("--kuzmin-scale", type=float, default=1.0)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--baseline-rows", type=int, default=20_000)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    kz_raw = ensure_tables(args.workdir, "kuzmin2018", args.kuzmin_scale)
    kz = run_ours(kz_raw, "kuzmin2018", args.workdir, args.cores)
    cz = []
    for s in sorted(args.costanzo_scales):
        raw = ensure_tables(args.workdir, "costanzo2016", s)
        cz.append(run_ours(raw, "costanzo2016", args.workdir, args.cores))
    (a, b) = cz
    slope_s = (b["seconds"] - a["seconds"]) / (b["rows"] - a["rows"]) * 1e6  # s per million rows
    slope_mem = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["rows"] - a["rows"]) * 1e6  # MiB per million rows
    full_s = b["seconds"] + slope_s * (COSTANZO_FULL_ROWS - b["rows"]) / 1e6
    full_mem = b["peak_rss_mib"] + slope_mem * (COSTANZO_FULL_ROWS - b["rows"]) / 1e6
    base = run_baseline(kz_raw / "kuzmin2018" / "aao1729_data_s1.tsv", SAMPLE_DIR / "genes.tsv", args.baseline_rows)

    how = "measured" if b["rows"] >= COSTANZO_FULL_ROWS else "extrapolated"

    def rate(r: dict[str, Any]) -> str:
        return f"{r['rows_per_s']:,.0f}"

    rows = [
        ["Kuzmin-style trigenic+digenic (full scale)", f"{kz['rows']:,}", f"{kz['samples']:,}", f"{kz['seconds']:.2f}",
         rate(kz), f"{kz['peak_rss_mib']:,.0f}", f"{kz['rows_per_s'] / base['rows_per_s']:,.0f}x"],
        *[[f"Costanzo-style digenic (scale {s:g})", f"{r['rows']:,}", f"{r['samples']:,}", f"{r['seconds']:.2f}",
           rate(r), f"{r['peak_rss_mib']:,.0f}", f"{r['rows_per_s'] / base['rows_per_s']:,.0f}x"]
          for s, r in zip(sorted(args.costanzo_scales), cz)],
        [f"Costanzo 20.7M rows ({how}: slope {slope_s:.2f} s and {slope_mem:,.0f} MiB per M rows)",
         f"{COSTANZO_FULL_ROWS:,}", "", f"{full_s:.1f}", f"{COSTANZO_FULL_ROWS / full_s:,.0f}", f"{full_mem:,.0f}", ""],
        [f"baseline: pandas iterrows, first {base['rows']:,} Kuzmin rows", f"{base['rows']:,}", "",
         f"{base['seconds']:.2f}", rate(base), "", "1x"],
    ]
    table = format_table(["input", "rows", "samples", "s", "rows/s", "peak RSS MiB", "vs baseline"], rows)
    ok_rate = min(kz["rows_per_s"], b["rows_per_s"]) >= TARGET_ROWS_PER_S
    ok_mem = full_mem / 1024 < TARGET_PEAK_GIB
    table += (f"\ntargets (2 cores): >= {TARGET_ROWS_PER_S:,} rows/s: {'PASS' if ok_rate else 'FAIL'}; "
              f"peak < {TARGET_PEAK_GIB:g} GiB at 20.7M rows: {'PASS' if ok_mem else 'FAIL'} "
              f"({full_mem / 1024:.1f} GiB {how})")
    print(table)
    if args.json:
        recs = [Record("dataset.kuzmin.rows_per_s", round(kz["rows_per_s"]), "rows/s"),
                Record("dataset.kuzmin.peak_rss", round(kz["peak_rss_mib"]), "MiB"),
                Record("dataset.kuzmin.seconds", round(kz["seconds"], 3), "s"),
                *[Record(f"dataset.costanzo.scale{s:g}.{k}", round(r[k], 3), u)
                  for s, r in zip(sorted(args.costanzo_scales), cz)
                  for k, u in (("rows_per_s", "rows/s"), ("peak_rss_mib", "MiB"), ("seconds", "s"))],
                Record("dataset.costanzo.full.seconds_extrapolated", round(full_s, 1), "s"),
                Record("dataset.costanzo.full.peak_rss_extrapolated", round(full_mem), "MiB"),
                Record("dataset.baseline.rows_per_s", round(base["rows_per_s"]), "rows/s")]
        meta = run_metadata("dataset", {"costanzo_scales": args.costanzo_scales, "kuzmin_scale": args.kuzmin_scale,
                                        "cores": args.cores, "synthetic_input": True})
        print(f"wrote {write_json(args.json, recs, meta)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2]))
    sys.exit(main())
