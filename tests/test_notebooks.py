"""The notebooks run, as they are committed, on a fresh default build (what `make demo` writes), with nbclient.

Each notebook is executed in a kernel of this interpreter (a kernel spec written under a temporary prefix:
never whatever ``python3`` spec the machine has), with its figures written to a temporary folder: every
figure it reports must be a real PNG, labelled (``_plots.save`` refuses otherwise), and committed under
``notebooks/figures`` (regenerate them with ``python -m notebooks``). What a notebook prints is checked
against the package's own readers in this process. ~25 s on a 2-core machine (the build ~11 s of it).
"""

from __future__ import annotations

import doctest
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from notebooks import _execute, _plots

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "notebooks" / "figures"
BENCH = REPO / "bench-results"
NOTEBOOKS = {nb.stem: nb for nb in _execute.notebooks()}


def demo_args() -> list[str]:
    """The options `make demo` passes to ``pipeline.build`` (read from the Makefile: the notebooks run on
    what it builds, whatever it comes to build)."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "no demo target in the Makefile"
    words = shlex.split(next(line for line in recipe.group(1).splitlines() if "pipeline.build" in line))
    return words[words.index("pipeline.build") + 1:]


@pytest.fixture(scope="module")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make demo`'s build, by the same CLI, in the default layout (the bundled samples) under a temporary folder.

    With ``--dask-threads``: the same stores (the precompute is deterministic), without starting worker
    processes (11 s -> 7 s on an idle 2-core machine; 46 s -> 16 s on a loaded one).
    """
    out = tmp_path_factory.mktemp("nb-build")
    r = subprocess.run([sys.executable, "-m", "pipeline.build", *demo_args(), "--dask-threads", "--out", str(out),
                        "-q"],
                       cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "string12"


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    k = _execute.install_kernel(tmp_path_factory.mktemp("nb-kernel"))
    assert _execute.kernel_python(k) == sys.executable  # the project's interpreter, absolute
    return k


def _check_figures(run: _execute.Executed, folder: Path) -> None:
    """Every reported PNG exists, decodes and is not blank; nothing else was written; all are committed."""
    from matplotlib.image import imread

    assert run.figures, "the notebook saved no figure"
    assert sorted(run.figures) == sorted(p.name for p in folder.glob("*.png"))
    for name in run.figures:
        img = imread(folder / name)
        assert img.shape[0] > 200 and img.shape[1] > 300 and float(img[..., :3].std()) > 0.05, name
    missing = [n for n in run.figures if not (COMMITTED / n).is_file()]
    assert not missing, f"not committed under notebooks/figures: {missing}; run `python -m notebooks`"


def _run(name: str, build: Path, kernels: Path, figures: Path, bench: Path = BENCH) -> _execute.Executed:
    def listing() -> list[str]:
        return sorted(p.name for p in (REPO / "notebooks").iterdir() if p.name != "__pycache__")

    before = listing()
    run = _execute.execute(NOTEBOOKS[name], build=build, figures=figures, bench=bench, kernels=kernels)
    assert listing() == before, "the notebook wrote into notebooks/"
    return run


def test_notebooks_are_committed_clean() -> None:
    """No outputs or execution counts in the repository (figures live in notebooks/figures), and one
    committed PNG per figure the notebooks save (no stale ones: `python -m notebooks` removes those)."""
    assert set(NOTEBOOKS) >= {"01_explore_graph_store", "02_precomputed_store", "03_dataset_splits", "04_benchmarks"}
    saved = set()
    for nb in NOTEBOOKS.values():
        body = json.loads(nb.read_text())
        code = [c for c in body["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), nb.name
        saved |= {f"{n}.png" for c in code for n in _save_names("".join(c["source"]))}
    assert saved | _generic_bench() == {p.name for p in COMMITTED.glob("*.png")}


def _save_names(src: str) -> list[str]:
    return re.findall(r"_plots\.save\(fig, '([^'{]+)'\)", src)


def _generic_bench() -> set[str]:
    """Committed PNGs of the benchmark notebook's generic section (one per extra record file)."""
    return {f"04_bench_{p.stem}.png" for p in BENCH.glob("*.json") if p.stem not in _plots.KNOWN_BENCHMARKS}


def test_plot_helpers() -> None:
    """The helpers' doctests; an unlabelled figure is refused, naming what it lacks."""
    import matplotlib.pyplot as plt

    assert doctest.testmod(_plots).failed == 0
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set_xlabel("x (s)")
    with pytest.raises(ValueError, match="no title.*no y label"):
        _plots.save(fig, "unlabelled")
    plt.close(fig)


def test_load_bench_tolerates_missing_and_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(BENCH / "build.json", tmp_path / "build.json")
    (tmp_path / "broken.json").write_text("[{")
    bench = _plots.load_bench(tmp_path)
    out = capsys.readouterr().out
    assert list(bench) == ["build"] and bench["build"]["figures"]["build.input_rows"][1] == "rows"
    assert "broken.json: not a benchmark record file" in out
    for name in ("dataset", "precompute", "stream"):
        assert f"note: no {tmp_path.name}/{name}.json" in out
    assert _plots.load_bench(tmp_path / "absent", expect=("build",)) == {}


def test_cli_without_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _execute.main(["01", "--build", str(tmp_path / "none"), "--figures", str(tmp_path / "f")]) == 2
    assert "no build here (no graph.zarr); run `make demo` or pass --build" in capsys.readouterr().err
    assert _execute.main(["99"]) == 2


@pytest.mark.slow
def test_01_graph(default_build: Path, kernels: Path, tmp_path: Path) -> None:
    from pipeline import open_graph

    run = _run("01_explore_graph_store", default_build, kernels, tmp_path)
    _check_figures(run, tmp_path)
    g = open_graph(default_build / "graph.zarr")
    for t in g.edge_types:
        d = g.csr(t).degree()
        assert f"{t:28s} max {d.max():6d}  median {int(np.median(d)):4d}" in run.text()


@pytest.mark.slow
def test_02_precomputed(default_build: Path, kernels: Path, tmp_path: Path) -> None:
    from pipeline import open_precomputed
    from pipeline.precompute.khop import unpack

    run = _run("02_precomputed_store", default_build, kernels, tmp_path)
    _check_figures(run, tmp_path)
    text = run.text()
    s = open_precomputed(default_build / "precomputed.zarr")
    stored = s.manifest["stored_bytes"]
    # per-gene and per-step arrays are fixed costs, never "per sample" (the stale claim this notebook made)
    assert f"{'khop_genes':40s} {stored['khop_genes'] / 1e6:10.2f} MB (fixed)" in text
    assert "khop_genes" not in "".join(line for line in text.splitlines() if "B/sample" in line)
    per_sample = sum(v for k, v in stored.items() if not k.startswith(("khop_genes", "adjacency"))) / s.n_samples
    assert f"per-sample total {per_sample:,.1f} B" in text
    for mode, k in s.khop_sets():
        med = np.median(unpack(s.khop_bits(k, mode), s.n_genes).sum(axis=1))
        assert f"{mode:9s} k={k}: median {med:6.0f} genes" in text


@pytest.mark.slow
def test_03_dataset(default_build: Path, kernels: Path, tmp_path: Path) -> None:
    from pipeline import open_dataset

    run = _run("03_dataset_splits", default_build, kernels, tmp_path)
    _check_figures(run, tmp_path)
    df = open_dataset(default_build / "dataset").read()
    assert f"{df.height:,} samples, sources {sorted(df['source'].unique())}" in run.text()
    assert "labels ['fitness', 'interaction'" in run.text()


@pytest.mark.slow
def test_04_benchmarks(kernels: Path, tmp_path: Path) -> None:
    """On the committed records, then on a folder with one known file and one unknown: notes, no errors."""
    run = _run("04_benchmarks", tmp_path / "no-build", kernels, tmp_path / "all")
    _check_figures(run, tmp_path / "all")
    assert {"04_bench_build.png", "04_bench_dataset.png", "04_bench_precompute.png",
            "04_bench_stream.png"} <= set(run.figures)

    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(BENCH / "build.json", partial)
    meta = json.loads((BENCH / "build.json").read_text())[0]["meta"]
    (partial / "cluster.json").write_text(json.dumps([{"name": "cluster.external.samples_per_s", "value": 123.0,
                                                       "unit": "samples/s", "meta": meta}]))
    run = _run("04_benchmarks", tmp_path / "no-build", kernels, tmp_path / "partial-figs", bench=partial)
    assert sorted(run.figures) == ["04_bench_build.png", "04_bench_cluster.png"]
    for name in ("dataset", "precompute", "stream"):
        assert f"note: no partial/{name}.json" in run.text() and f"skipped: no {name} records" in run.text()
