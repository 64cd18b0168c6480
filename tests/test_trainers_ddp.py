"""``torchrun --nproc-per-node 2 -m trainers``: DDP over gloo on the CPU, the stream sharding batches by
rank. The two ranks train on disjoint batches that together are the whole training split, and
keep identical weights (DDP averages the gradients)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.stream import PerturbationStream
from tests.test_trainers import ROOT, planted  # noqa: F401  (the session fixture)


@pytest.mark.slow
def test_two_ranks_see_disjoint_complete_batches(planted, tmp_path):  # noqa: F811
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not found next to the interpreter")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "trainers", "--build", str(planted),
           "--model", "index", "--epochs", "2", "--batch-size", "32", "--workers", "0", "--threads", "1",
           "--device", "cpu", "--hp", "d=16", "--out", str(out), "--record-batches"]
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "HOME": str(tmp_path)}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    rank1 = [ln for ln in res.stderr.splitlines() if "[rank1]" in ln]
    assert res.returncode == 0, "\n".join(rank1[-30:]) or res.stderr[-3000:]
    train_ids = set(PerturbationStream(planted, split="train", fmt="index").ids.tolist())
    recs = {r: [json.loads(x) for x in (out / f"batches-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    assert len(recs[0]) == len(recs[1]) > 0  # equal batch counts per rank
    for epoch in (0, 1):
        seen = {r: [i for b in recs[r] if b["epoch"] == epoch for i in b["ids"]] for r in (0, 1)}
        steps = {r: {b["step"] for b in recs[r] if b["epoch"] == epoch} for r in (0, 1)}
        assert all(s % 2 == r for r in (0, 1) for s in steps[r])  # global batch b goes to rank b % 2
        assert not set(seen[0]) & set(seen[1])  # disjoint ...
        assert set(seen[0]) | set(seen[1]) == train_ids  # ... and complete
        assert len(seen[0]) + len(seen[1]) == len(train_ids)  # every real sample once (padding excluded)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1] and "val/gene_interaction/Pearson" in metrics[-1]
