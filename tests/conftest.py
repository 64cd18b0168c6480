"""Shared fixtures: an isolated Prefect test server, and the real DANGO data when present.

Telemetry is switched off at import time, before any test module imports Prefect:
the machines running the tests have no internet and must not try to phone home.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

#: ../shared/data/dango_string9_1 next to the repository (not part of it).
REAL_DANGO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dango_string9_1"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect server and database for the session (~10 s to start; ask for it only where needed).

    Runs under a temporary ``PREFECT_HOME`` and without the per-flow heartbeat
    (which makes every flow run wait ~1 s at its end; it cannot be unset through
    the environment, hence ``temporary_settings``).
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect_home")
    with pytest.MonkeyPatch.context() as mp:
        # the environment too: the harness's server runs in a subprocess
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with temporary_settings(updates={PREFECT_HOME: home, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                                         PREFECT_SERVER_ANALYTICS_ENABLED: False}):
            # 120 s: on a loaded 2-core machine the server took more than the default 30 s to start
            with prefect_test_harness(server_startup_timeout=120):
                yield


@pytest.fixture
def real_dango() -> Path:
    """The DANGO STRING v9.1 folder in ../shared/data; the test is skipped when it is absent."""
    if not (REAL_DANGO / "yeast_string_genes.txt").is_file():
        pytest.skip(f"real DANGO data not found at {REAL_DANGO} (it lives outside the repository)")
    return REAL_DANGO


@dataclass(frozen=True)
class TinyString:
    """A small valid STRING v12 detailed file (gzipped bytes) and the gene list it refers to."""

    genes: Path  # a gene list .txt (one systematic name per line)
    data: bytes  # 4932.protein.links.detailed.v12.0.txt.gz content
    file_name: str = "4932.protein.links.detailed.v12.0.txt.gz"


_STRING_HEADER = ("protein1 protein2 neighborhood fusion cooccurence coexpression experimental database "
                  "textmining combined_score")
# Both orientations, as STRING lists them; one gene outside the list (YZZ999W) and some zero scores.
_STRING_ROWS = [
    ("YAL001C", "YAL002W", "0 0 0 62 120 0 166 200"),
    ("YAL002W", "YAL001C", "0 0 0 62 120 0 166 200"),
    ("YAL001C", "YBR010W", "310 0 0 0 0 900 0 905"),
    ("YBR010W", "YAL001C", "310 0 0 0 0 900 0 905"),
    ("YAL003W", "YBR010W", "0 450 0 80 0 0 50 470"),
    ("YBR010W", "YAL003W", "0 450 0 80 0 0 50 470"),
    ("YAL003W", "YZZ999W", "0 0 0 300 0 0 0 300"),
    ("YZZ999W", "YAL003W", "0 0 0 300 0 0 0 300"),
]


@pytest.fixture
def tiny_string(tmp_path: Path) -> TinyString:
    """Inputs of a build that takes well under a second: 4 genes, 8 STRING rows."""
    genes = tmp_path / "genes.txt"
    genes.write_text("YAL001C\nYAL002W\nYAL003W\nYBR010W\n")
    lines = [_STRING_HEADER] + [f"4932.{a} 4932.{b} {scores}" for a, b, scores in _STRING_ROWS]
    return TinyString(genes, gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
