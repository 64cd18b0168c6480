"""The precompute beyond a LocalCluster: a real external dask cluster (``dask scheduler`` and two
``dask worker`` processes) gives a build content-identical to the LocalCluster's; ``--dask-cluster
slurm|pbs`` writes the job script dask-jobqueue would submit, and with a stand-in batch system
that runs each submitted script at once its workers build the same store; dask's logs stay at
WARNING unless ``-v``, and a long stage reports its progress as four lines in a log.

Inputs: the bundled samples (``--graphs string12_fusion --dataset kuzmin2018``: 2,300 samples in
9 chunks of 256), builds in a fresh working directory each (``default_layout``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.build import parser
from pipeline.config import BuildConfig
from pipeline.precompute.cluster import BatchJobs
from pipeline.precompute.config import PrecomputeConfig
from pipeline.sequence import run_build
from tests.helpers import default_layout

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--precompute", "masks,khop,adjacency-rows",
        "--lmdb", "--chunk-samples", "256", "--adjacency-steps", "4", "--adjacency-rows", "8",
        "--adjacency-negatives", "4", "-q"]
BUILD = Path("data/processed/string12")

_spec = importlib.util.spec_from_file_location("compare_builds", REPO / "scripts" / "compare_builds.py")
compare_builds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_builds)


def _build(cwd: Path, *extra: str) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    with default_layout(cwd):
        res = run_build(BuildConfig.from_args(parser().parse_args([*ARGS, *extra])))
    assert res.precomputed_built
    return cwd / BUILD


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build on a LocalCluster of two worker processes (the default kind of cluster)."""
    return _build(tmp_path_factory.mktemp("local"), "--workers", "2")


@pytest.mark.slow
def test_external_scheduler_and_two_workers_build_the_local_store(tmp_path: Path, local_reference: Path) -> None:
    """``dask scheduler`` + two ``dask worker --nworkers 1 --nthreads 1`` processes on 127.0.0.1,
    started in another directory: the build through ``--dask-address`` equals the LocalCluster's."""
    from distributed import Client

    from benchmarks.cluster import external_cluster

    with external_cluster(2, cwd=tmp_path / "cluster") as address:
        out = _build(tmp_path / "ext", "--dask-address", address)
        with Client(address) as client:  # both workers took part
            done = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(done) == 2 and all(n > 0 for n in done.values()), done
    assert compare_builds.compare(out, local_reference) == []


def _batch_args(system: str) -> list[str]:
    return [*ARGS, "--dask-cluster", system, "--dask-jobs", "2", "--dask-cores", "1", "--dask-memory", "2GB",
            "--dask-walltime", "00:30:00", "--dask-queue", "short", "--dask-account", "yeastlab",
            "--dask-interface", "lo", "--dask-job-directive=--constraint=avx2"]


@pytest.mark.parametrize("system, lines", [
    ("slurm", ["#SBATCH -p short", "#SBATCH -A yeastlab", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=",
               "#SBATCH -t 00:30:00", "#SBATCH --constraint=avx2"]),
    ("pbs", ["#PBS -q short", "#PBS -A yeastlab", "#PBS -l select=1:ncpus=1:mem=", "#PBS -l walltime=00:30:00",
             "#PBS --constraint=avx2"])])
def test_batch_cluster_job_script(system: str, lines: list[str]) -> None:
    """The job script ``--dask-cluster`` would submit, from the CLI's options: the queue, account,
    cores, memory and wall time as directives, and one single-threaded worker process per core
    of this Python, connecting to the scheduler in this process over the interface asked for."""
    cfg = BuildConfig.from_args(parser().parse_args(_batch_args(system))).precompute
    batch = BatchJobs.from_config(cfg)
    assert batch is not None and batch.jobs == 2
    psutil = pytest.importorskip("psutil")

    def sockets() -> set:
        return {c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}

    before = sockets()
    with batch.cluster() as cluster:
        script = cluster.job_script()
        address = cluster.scheduler_address
        listening = sockets() - before  # the cluster's
    # the scheduler on the interface asked for, dask's HTTP server on loopback: nothing on 8787 or elsewhere
    assert listening and all(a.ip == "127.0.0.1" for a in listening) and 8787 not in {a.port for a in listening}
    for line in lines:
        assert any(s.startswith(line) for s in script.splitlines()), (line, script)
    worker = next(s for s in script.splitlines() if "distributed.cli.dask_worker" in s)
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker {address} ")
    assert address.startswith("tcp://127.0.0.1:")  # --dask-interface lo
    assert "--nthreads 1" in worker
    assert "--interface lo" in worker


def test_batch_cluster_options_are_checked() -> None:
    with pytest.raises(ValueError, match="--dask-jobs, --dask-queue given without --dask-cluster"):
        PrecomputeConfig(dask_queue="short", dask_jobs=3)
    with pytest.raises(ValueError, match="--dask-cluster and --dask-address both given"):
        PrecomputeConfig(dask_cluster="slurm", dask_address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="expected one of slurm, pbs, got 'lsf'"):
        PrecomputeConfig(dask_cluster="lsf")
    with pytest.raises(SystemExit):  # argparse's choices
        parser().parse_args([*ARGS, "--dask-cluster", "lsf"])
    import dask

    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ValueError, match="cores and memory per job unknown: pass --dask-cores and --dask-memory"):
            BatchJobs("slurm").cluster()


_SBATCH = """#!/bin/sh
# A stand-in for SLURM's sbatch: keep the submitted script (dask-jobqueue deletes it once this returns),
# run it at once in its own session, and print the job id (its pid) the way sbatch does.
dir="{dir}"
job="$dir/job-$$.sh"
cp "$1" "$job"
setsid sh "$job" > "$job.log" 2>&1 < /dev/null &
echo $! >> "$dir/pids"
echo "Submitted batch job $!"
"""
_SCANCEL = """#!/bin/sh
for j in "$@"; do kill -TERM -- "-$j" 2>/dev/null; done
exit 0
"""


@pytest.mark.slow
def test_slurm_workers_started_from_the_job_script_build_the_local_store(
        tmp_path: Path, local_reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dask-cluster slurm`` end to end: the job scripts dask-jobqueue submits are run (by a
    stand-in ``sbatch``/``scancel`` on PATH that starts each script at once), their workers join
    the scheduler in the build process, and the build equals the LocalCluster's; the jobs are
    cancelled when the stage ends."""
    bin_, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_.mkdir()
    jobs.mkdir()
    for name, text in (("sbatch", _SBATCH.format(dir=jobs)), ("scancel", _SCANCEL), ("squeue", "#!/bin/sh\n")):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the workers import the pipeline
    out = tmp_path / "slurm"
    out.mkdir()
    with default_layout(out):
        res = run_build(BuildConfig.from_args(parser().parse_args(_batch_args("slurm"))))
    assert res.precomputed_built
    scripts = sorted(jobs.glob("job-*.sh"))
    assert len(scripts) == 2, scripts  # --dask-jobs 2
    assert "#SBATCH -p short" in scripts[0].read_text()
    assert compare_builds.compare(out / BUILD, local_reference) == []
    pids = [int(p) for p in (jobs / "pids").read_text().split()]
    deadline = time.monotonic() + 30
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"jobs not cancelled: {alive}"  # scancel'ed when the stage ended


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")  # a zombie has exited
    except (ProcessLookupError, FileNotFoundError):
        return False


def _cli(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    args = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--precompute", "masks", "--chunk-samples",
            "256", "--workers", "1"]
    return subprocess.run([sys.executable, "-m", "pipeline.build", *args, *extra], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_dask_logs_stay_at_warning_unless_verbose(tmp_path: Path) -> None:
    """A LocalCluster build logs no ``distributed.*`` line (they were ~30 INFO lines) and reports the
    chunk tasks' progress as four lines (stderr is not a terminal); ``-v`` lets dask's INFO through."""
    r = _cli(tmp_path / "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "distributed." not in r.stderr and "jupyter" not in r.stderr, r.stderr
    progress = re.findall(r"pipeline\.progress: precompute: (\d+) of (\d+) task\(s\) done \((\d+)%", r.stderr)
    assert [p[2] for p in progress] == ["25", "50", "75", "100"], r.stderr
    assert progress[-1][0] == progress[-1][1]
    v = _cli(tmp_path / "verbose", "-v")
    assert v.returncode == 0, v.stderr[-3000:]
    assert re.search(r"INFO +distributed\.scheduler: ", v.stderr), v.stderr[-3000:]
