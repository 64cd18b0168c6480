"""What a build read: every input file with its sha256, size and origin (for manifests and
build keys), and the code version that read it."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.buildkey import sha256_file
from pipeline.core.paths import REPO_ROOT, SAMPLE_DIR
from pipeline.core.version import __version__

log = logging.getLogger("pipeline.build")


@dataclass
class InputFile:
    role: str
    path: str
    sha256: str
    bytes: int
    origin: str  # raw | sample | download | argument
    synthetic: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)  # per file, for folders
    #: "verified": the published release (its pinned sha256); "local variant": a file of a known
    #: release that differs from it (edited, recompressed); None: no release digest is known
    release: str | None = None


def _sample_synthetic() -> set[str]:
    """Paths (relative to data/sample) that data/sample/MANIFEST.json marks synthetic."""
    mf = SAMPLE_DIR / "MANIFEST.json"
    if not mf.is_file():
        return set()
    return {f["path"] for f in json.loads(mf.read_text())["files"] if f.get("synthetic")}


def describe_input(role: str, path: Path, origin: str) -> InputFile:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    synthetic = set()
    if origin == "sample":
        synthetic = _sample_synthetic()
    recs = []
    for f in files:
        rel = f.relative_to(SAMPLE_DIR).as_posix() if origin == "sample" else f.name
        recs.append({"path": str(f), "sha256": sha256_file(f), "bytes": f.stat().st_size,
                     "synthetic": rel in synthetic})
    digest = recs[0]["sha256"] if len(recs) == 1 else hashlib.sha256(
        "".join(r["sha256"] for r in recs).encode()).hexdigest()
    return InputFile(role, str(path), digest, sum(r["bytes"] for r in recs), origin,
                     synthetic=any(r["synthetic"] for r in recs), files=recs if len(recs) > 1 else [])


def mark_release(inp: InputFile, known: Mapping[str, str]) -> InputFile:
    """Set ``inp.release`` from ``known`` (release file name -> sha256; a ``.gz`` of it counts as
    the same file, recompressed) and return ``inp``. A local variant is a WARNING naming the
    file, not an error: users may edit tables.

    >>> f = InputFile("kuzmin2018", "raw/kuzmin2018/aao1729_data_s1.tsv", "0" * 64, 3, "raw")
    >>> mark_release(f, {"aao1729_data_s1.tsv": "0" * 64}).release
    'verified'
    """
    name = Path(inp.path).name
    if name not in known:
        name = name.removesuffix(".gz")
    expected = known.get(name)
    if expected is None:
        inp.release = None
    elif expected == inp.sha256:
        inp.release = "verified"
    else:
        inp.release = "local variant"
        log.warning("%s: not the published release %s (sha256 %s, expected %s): building from this local "
                    "variant", inp.path, name, inp.sha256, expected)
    return inp


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}" + (f"+g{sha}" if sha else "")
