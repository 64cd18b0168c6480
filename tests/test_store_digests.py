"""Every stored byte is checksummed: ``pipeline.verify`` names each damaged file (array and rows),
and a build over a damaged store rebuilds it instead of saying "up to date"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.build import main as build_main
from pipeline.verify import main as verify_main
from tests.helpers import default_layout

ARGS = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--precompute", "masks,khop", "--khop", "1",
        "--chunk-samples", "1024", "--dask-threads", "--workers", "1", "-q"]

#: One file of each kind the per-chunk markers never covered (and a graph and dataset file).
DAMAGE = {
    "graph": "graph.zarr/genes/id/c/0",
    "dataset": "dataset/samples.parquet",
    "perturbation genes": "precomputed.zarr/perturbation/genes/c/0",
    "node mask genes": "precomputed.zarr/node_mask/genes/c/0",
    "node mask indptr": "precomputed.zarr/node_mask/indptr/c/0",
    "khop genes": "precomputed.zarr/khop_genes/per_type/k1/c/0/0",
}


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("digests")
    with default_layout(work):
        assert build_main([*ARGS, "--out", str(work / "out")]) == 0
    return work / "out" / "string12"


def _flip(path: Path, at: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[min(at, len(data) - 1)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_clean_build_verifies(clean_build: Path, capsys: pytest.CaptureFixture) -> None:
    assert verify_main([str(clean_build), "--samples", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == 3


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damage_is_named_and_rebuilt(kind: str, clean_build: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    build = tmp_path / "out" / "string12"
    shutil.copytree(clean_build, build)
    rel = DAMAGE[kind]
    assert (build / rel).is_file(), f"layout changed: no {rel}"
    _flip(build / rel)
    assert verify_main([str(build), "--samples", "8"]) == 1
    err = capsys.readouterr().err
    store, _, inside = rel.partition("/")
    assert f"{inside}: checksum differs" in err or f"({inside}): checksum differs" in err, err
    caplog.set_level("WARNING")
    with default_layout(tmp_path):
        assert build_main([*ARGS, "--out", str(tmp_path / "out")]) == 0
    assert f"{store} is damaged" in caplog.text
    assert verify_main([str(build), "--samples", "8"]) == 0
