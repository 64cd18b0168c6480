"""Plot helpers shared by the notebooks: where things are, figure checks, and the benchmark records.

Every figure a notebook makes goes through :func:`save`, which refuses an unlabelled plot (an axes
without a title or an axis label) and writes ``<figures>/<name>.png``. Paths come from the
environment so that ``python -m notebooks`` and the tests can point the notebooks elsewhere:

- ``PIPELINE_BUILD``: the build folder (default ``data/processed/string12``, what ``make demo`` writes);
- ``NOTEBOOK_FIGURES``: where PNGs go (default ``notebooks/figures``, the committed copies);
- ``PIPELINE_BENCH_RESULTS``: the benchmark JSON records (default ``bench-results``).

Relative paths are taken from the repository root, whatever the kernel's working directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # a script or a test: no display. A kernel keeps its backend
    matplotlib.use("Agg")            # (inline in Jupyter; Agg under python -m notebooks: MPLBACKEND=Agg)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILD_ENV, FIGURES_ENV, BENCH_ENV = "PIPELINE_BUILD", "NOTEBOOK_FIGURES", "PIPELINE_BENCH_RESULTS"
DEFAULT_BUILD = Path("data/processed/string12")
DEFAULT_FIGURES = Path("notebooks/figures")
DEFAULT_BENCH = Path("bench-results")
#: The benchmarks of ``python -m benchmarks`` with a figure of their own (any other JSON file: a generic one).
KNOWN_BENCHMARKS = ("build", "dataset", "precompute", "stream")


def _from_env(var: str, default: Path) -> Path:
    p = Path(os.environ.get(var) or default)
    return p if p.is_absolute() else REPO / p


def build_dir() -> Path:
    """The build folder the notebooks read (``$PIPELINE_BUILD``, else ``data/processed/string12``)."""
    return _from_env(BUILD_ENV, DEFAULT_BUILD)


def figures_dir() -> Path:
    """Where :func:`save` writes PNGs (``$NOTEBOOK_FIGURES``, else ``notebooks/figures``); created."""
    d = _from_env(FIGURES_ENV, DEFAULT_FIGURES)
    d.mkdir(parents=True, exist_ok=True)
    return d


def bench_dir() -> Path:
    """The benchmark records (``$PIPELINE_BENCH_RESULTS``, else ``bench-results``)."""
    return _from_env(BENCH_ENV, DEFAULT_BENCH)


def unlabelled(fig: plt.Figure) -> list[str]:
    """What a figure lacks: every visible axes with data needs a title and both axis labels.

    >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1]); _ = ax.set_title("t"); _ = ax.set_xlabel("x (s)")
    >>> unlabelled(fig)
    ['axes 0 ("t"): no y label']
    >>> plt.close(fig)
    """
    problems = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.has_data():
            continue
        name = f'axes {i} ("{ax.get_title()}")'
        if not ax.get_title():
            problems.append(f"axes {i}: no title")
        if not ax.get_xlabel():
            problems.append(f"{name}: no x label")
        if not ax.get_ylabel():
            problems.append(f"{name}: no y label")
    return problems


def save(fig: plt.Figure, name: str) -> Path:
    """Check the figure is labelled (ValueError naming what is missing), write ``<figures>/<name>.png``.

    The PNG carries no software or date metadata, so that rerunning on the same data rewrites the same bytes.
    """
    problems = unlabelled(fig)
    if problems:
        raise ValueError(f"figure {name!r} is not labelled: " + "; ".join(problems))
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    print(f"saved {path.name}")
    return path


# --- graph ---------------------------------------------------------------------------------------

def ccdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct positive values ascending, fraction of all entries >= each): a complementary CDF.

    >>> x, p = ccdf(np.array([0, 1, 1, 4]))
    >>> x.tolist(), p.tolist()
    ([1, 4], [0.75, 0.25])
    """
    values = np.asarray(values)
    x, counts = np.unique(values[values > 0], return_counts=True)
    tail = np.cumsum(counts[::-1])[::-1]
    return x, tail / max(len(values), 1)


# --- precomputed store ---------------------------------------------------------------------------

def split_stored_bytes(stored: Mapping[str, int], n_samples: int) -> tuple[dict[str, float], dict[str, int]]:
    """The manifest's ``stored_bytes`` split into per-sample arrays (bytes per sample) and fixed ones
    (per gene or per training step: ``khop_genes``, ``adjacency/*``; total bytes), as the build summary does.

    >>> split_stored_bytes({"node_mask/dense": 400, "khop_genes": 90, "adjacency/t": 10}, 100)
    ({'node_mask/dense': 4.0}, {'khop_genes': 90, 'adjacency/t': 10})
    """
    per_sample = {k: v / n_samples for k, v in stored.items() if not k.startswith(("khop_genes", "adjacency"))}
    fixed = {k: v for k, v in stored.items() if k.startswith(("khop_genes", "adjacency"))}
    return per_sample, fixed


def set_sizes(bits: np.ndarray) -> np.ndarray:
    """Members per bit-packed row (the k-hop sets of ``PrecomputedStore.khop_bits``), int64 [rows].

    >>> set_sizes(np.array([[0b1011, 0], [255, 1]], dtype=np.uint8)).tolist()
    [3, 9]
    """
    return np.bitwise_count(bits).sum(axis=1, dtype=np.int64)


# --- benchmark records ---------------------------------------------------------------------------

def load_bench(folder: Path | None = None, expect: Iterable[str] = KNOWN_BENCHMARKS) -> dict[str, dict[str, Any]]:
    """Every ``<folder>/*.json`` benchmark record file (``benchmarks/_report.py`` format), by benchmark name:
    ``{"figures": {name: (value, unit)}, "meta": the first record's meta}``. An expected benchmark without
    its file, or a file that does not parse, is a printed note, not an error (the notebook plots the rest).
    """
    folder = bench_dir() if folder is None else Path(folder)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records = json.loads(path.read_text())
            figures = {r["name"]: (r["value"], r["unit"]) for r in records}
            meta = records[0]["meta"] if records else {}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            print(f"note: {path.name}: not a benchmark record file ({type(e).__name__}: {e}); skipped")
            continue
        out[path.stem] = {"figures": figures, "meta": meta}
    for name in expect:
        if name not in out:
            print(f"note: no {folder.name}/{name}.json; run `python -m benchmarks {name} --json "
                  f"{folder.name}/{name}.json` for its figure")
    return out


def value(figures: Mapping[str, tuple[Any, str]], name: str) -> float:
    """One figure's value (NaN when absent or not measured)."""
    v = figures.get(name, (None, ""))[0]
    return float("nan") if v is None else float(v)


def run_label(meta: Mapping[str, Any]) -> str:
    """``measured 2026-11-24 on 2 cores (AMD EPYC), git 687dd76``: where a benchmark figure comes from."""
    m = meta.get("machine", {})
    git = (meta.get("pipeline") or {}).get("git")
    return (f"measured {str(meta.get('date', '?'))[:10]} on {m.get('cores_available', m.get('cores', '?'))} cores"
            f" ({m.get('cpu', '?')})" + (f", git {git}" if git else ""))


def bar_labels(ax: plt.Axes, bars: Any, fmt: str = "{:,.0f}") -> None:
    """Write each vertical bar's height above it (NaN bars: nothing)."""
    heights = [b.get_height() for b in bars]
    ax.bar_label(bars, labels=["" if np.isnan(h) else fmt.format(h) for h in heights], fontsize=7, padding=2)
