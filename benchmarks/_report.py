"""Benchmark output shared by every benchmark: a console table and ``--json`` records.

JSON contract (``--json PATH``): a list with one object per reported figure::

    {"name": "build.ours.wall", "value": 9.81, "unit": "s", "meta": {...}}

``value`` is a number (``null`` when not measured); ``meta`` is the same run
metadata on every record (benchmark, date, machine, Python and package versions,
parameters), so that records stay self-describing when files are concatenated.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded with every result.
PACKAGES = ("numpy", "polars", "pyarrow", "zarr", "numcodecs", "pandas", "networkx", "psutil", "torch")


@dataclass(frozen=True)
class Record:
    """One measured figure."""

    name: str
    value: float | int | None
    unit: str


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_sha() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parents[1])
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(benchmark: str, params: Mapping[str, Any], packages: Iterable[str] = PACKAGES) -> dict[str, Any]:
    """Where and with what a benchmark ran: date, machine, Python, package versions, parameters."""
    import pipeline

    versions = {}
    for p in packages:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    mem = None
    try:
        import psutil
        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {
        "benchmark": benchmark,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "cores_available": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "cpu": _cpu_model(), "memory_gib": mem, "platform": platform.platform()},
        "python": sys.version.split()[0],
        "packages": versions,
        "pipeline": {"version": pipeline.__version__, "git": _git_sha()},
        "params": dict(params),
    }


def verdict(ok: bool) -> str:
    """A target's outcome in a benchmark table."""
    return "PASS" if ok else "FAIL"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = enumerate(zip(r, widths))
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in cells)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def write_json(path: str | Path, records: Iterable[Record], meta: Mapping[str, Any]) -> Path:
    """Write the records as a JSON list (see the module docstring); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [{"name": r.name, "value": r.value, "unit": r.unit, "meta": dict(meta)} for r in records]
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path
