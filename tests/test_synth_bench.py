"""Synthetic data generator, the committed sample, and the build benchmark's command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core.genes import GeneIndex
from pipeline.core.paths import SAMPLE_DIR
from pipeline.graph.csr import build_csr
from pipeline.graph.sources import SOURCES
from pipeline.sources.genome.gff3 import read_gff3
from pipeline.sources.interactions.biogrid import read_biogrid
from pipeline.sources.interactions.regulatory import read_regulatory
from pipeline.sources.interactions.string import CHANNELS, read_string
from pipeline.sources.interactions.tflink import read_tflink
from synth.graph import FULL_SCALE_GENES, OUTPUTS, SynthSizes, assign_channels, generate, heavy_tailed_pairs

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.01


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "raw"
    generate(out, scale=SCALE, seed=0)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(synth, tmp_path):
    generate(tmp_path / "again", scale=SCALE, seed=0)
    assert _files(tmp_path / "again") == _files(synth)
    generate(tmp_path / "other", scale=SCALE, seed=1, only=["string12"])
    s = OUTPUTS["string12"]
    assert (tmp_path / "other" / s).read_bytes() != (synth / s).read_bytes()
    # --only writes the same bytes as a full run (one random stream per source)
    generate(tmp_path / "only", scale=SCALE, seed=0, only=["string12_fusion"])
    assert (tmp_path / "only" / s).read_bytes() == (synth / s).read_bytes()
    assert "SYNTHETIC" in (synth / "SYNTHETIC.txt").read_text()


def test_heavy_tailed_pairs_contract():
    rng = np.random.default_rng(0)
    a, b = heavy_tailed_pairs(2000, 30_000, rng)
    assert len(a) == 30_000 and np.all(a < b)
    assert len(np.unique(a.astype(np.int64) * 2000 + b)) == 30_000
    deg = np.bincount(np.concatenate([a, b]), minlength=2000)
    assert deg.max() > 5 * np.median(deg)  # hubs
    tfs = np.arange(0, 2000, 100)
    s, t = heavy_tailed_pairs(2000, 5_000, rng, sources=tfs)
    assert len(s) == 5_000 and set(np.unique(s)) <= set(tfs.tolist()) and not np.any(s == t)
    assert len(np.unique(s.astype(np.int64) * 2000 + t)) == 5_000


def test_channels_cover_the_base_set_exactly():
    sizes = {"x": 700, "y": 500, "z": 40}
    members = assign_channels(1000, sizes, np.random.default_rng(3))
    assert {c: len(m) for c, m in members.items()} == sizes
    assert len(np.unique(np.concatenate(list(members.values())))) == 1000


def test_counts_read_back_with_the_project_readers(synth):
    sizes = SynthSizes.at(SCALE)
    genes = GeneIndex.from_table(read_gff3(synth / OUTPUTS["genome"]))
    assert len(genes) == FULL_SCALE_GENES
    gff = (synth / OUTPUTS["genome"]).read_text()
    assert gff.count("Note=synthetic filler") == FULL_SCALE_GENES - 5989 == sum(
        i.startswith("YSYN") for i in genes.ids)

    tabs = read_string(synth / OUTPUTS["string12"], genes)
    for c in CHANNELS:
        t = tabs[f"string12_{c}"]
        assert t.stats["dropped_unknown_gene"] == 0
        assert build_csr(t, len(genes))[1]["pairs"] == sizes.pairs[f"string12_{c}"], c
    df = pl.read_csv(synth / OUTPUTS["string12"], separator=" ")
    assert df.height == 2 * sizes.string_union
    assert df.equals(df.sort("protein1", "protein2"))
    mirror = df.rename({"protein1": "protein2", "protein2": "protein1"}).select(df.columns)
    assert df.sort("protein1", "protein2").equals(mirror.sort("protein1", "protein2"))  # both orientations, same scores

    bg = read_biogrid(synth / OUTPUTS["biogrid"], genes)
    assert build_csr(bg["physical"], len(genes))[1]["pairs"] == sizes.pairs["physical"]
    assert len(bg["physical"]) > sizes.pairs["physical"]  # repeated evidence rows
    assert build_csr(bg["genetic"], len(genes))[1]["pairs"] == sizes.genetic
    header = (synth / OUTPUTS["biogrid"]).read_text().split("\n", 1)[0].split("\t")
    assert len(header) == 37 and header[0] == "#BioGRID Interaction ID"

    tf = read_tflink(synth / OUTPUTS["tflink"], genes)["tflink"]
    assert tf.stats["dropped_unknown_gene"] == 0
    assert build_csr(tf, len(genes))[1]["pairs"] == sizes.pairs["tflink"]
    reg = read_regulatory(synth / OUTPUTS["regulatory"], genes)["regulatory"]
    assert build_csr(reg, len(genes))[1]["pairs"] == sizes.pairs["regulatory"]
    assert set(np.unique(reg.src)) | set(np.unique(tf.src)) <= set(range(len(genes)))
    assert len(set(np.unique(tf.src))) <= sizes.n_tfs


def test_sample_files_match_manifest_and_generator():
    manifest = json.loads((SAMPLE_DIR / "MANIFEST.json").read_text())
    files = {f["path"]: f for f in manifest["files"]}
    assert files["genes.tsv"]["synthetic"] is False
    for name in ("string12", "biogrid", "tflink", "regulatory"):
        assert files[SOURCES[name].sample]["synthetic"] is True
    for path, f in files.items():
        data = (SAMPLE_DIR / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"], path
        assert len(data) == f["bytes"], path
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bench_build_writes_json_records(tmp_path):
    out = tmp_path / "build.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "benchmarks", "build", "--scale", "0.02", "--baseline-rows", "2000",
                        "--repeat", "1", "--workdir", str(tmp_path / "wd"), "--json", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "figure" in r.stdout and "baseline" in r.stdout
    recs = json.loads(out.read_text())
    assert isinstance(recs, list) and recs
    assert all({"name", "value", "unit"} <= set(rec) for rec in recs)
    by_name = {rec["name"]: rec for rec in recs}
    assert by_name["build.input_rows"]["value"] == 2 * SynthSizes.at(0.02).string_union
    assert by_name["build.ours.wall"]["unit"] == "s" and by_name["build.ours.wall"]["value"] > 0
    assert by_name["build.ours.peak_rss"]["unit"] == "MiB"
    assert recs[0]["meta"]["machine"]["cores"] >= 1 and recs[0]["meta"]["params"]["scale"] == 0.02


def test_bench_precompute_writes_json_records(tmp_path):
    from benchmarks.__main__ import main as bench_main

    out = tmp_path / "p.json"
    assert bench_main(["precompute", "--scale", "0.02", "--baseline-samples", "5", "--chunk-samples", "1024",
                       "--adjacency-steps", "20", "--workdir", str(tmp_path), "--json", str(out)]) == 0
    by_name = {rec["name"]: rec for rec in json.loads(out.read_text())}
    for name in ("precompute.masks_khop.samples_per_s", "precompute.masks_khop.samples_per_s_compute",
                 "precompute.masks_khop.peak_rss_tree_sum", "precompute.masks_khop.peak_rss_max_process",
                 "precompute.bytes_per_sample.total", "precompute.bytes_per_sample.khop.k3",
                 "precompute.adjacency.seconds", "precompute.records.records_per_s",
                 "precompute.chunk256.peak_rss_worker", "precompute.baseline.samples_per_s"):
        assert by_name[name]["value"] > 0, name
    assert by_name["precompute.masks_khop.samples"]["value"] > 10_000
    assert by_name["precompute.baseline.agrees"]["value"] == 1  # same k-hop sets and masked counts as PyG
    assert by_name["precompute.bytes_per_sample.total"]["value"] < by_name[
        "precompute.bytes_per_sample.dense_uint8"]["value"]
    assert by_name["precompute.masks_khop.samples"]["meta"]["params"]["scale"] == 0.02
    assert not list(tmp_path.glob("precompute-out/full/precomputed.zarr"))  # big outputs removed between runs
