"""Fault injection: two builds into one ``--out``, ``kill -9`` at random points, a damaged staging
chunk, an unreachable or external dask cluster. Each ends content-identical to an uninterrupted
build, or with one ``error:`` line, a non-zero exit and nothing published.

Small inputs (the bundled samples: ``--graphs string12_fusion --dataset kuzmin2018``, 2,300
samples in 9 chunks), builds run as ``python -m pipeline.build`` processes from a fresh working
directory each (the default ``data/raw`` is absent there: the synthetic samples are used).
The counts (trials, survived) are in the README's "Failure behaviour" section:
``FAULT_TRIALS=10 python -m pytest -q tests/test_faults_concurrency.py -rP`` reproduces them
(each trial prints one line; the default is 3 trials, for CI time).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.build import parser
from pipeline.config import BuildConfig
from pipeline.core.atomic import clean_stale, is_live, staging_dir
from pipeline.core.lock import BuildLockedError, lock_path, store_lock
from pipeline.sequence import run_build

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--graphs", "string12_fusion", "--dataset", "kuzmin2018", "--precompute", "masks,khop", "--lmdb",
        "--chunk-samples", "256", "--workers", "1", "--dask-threads", "-q"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
BUILD = Path("data/processed/string12")  # under each run's working directory
TRIALS = int(os.environ.get("FAULT_TRIALS", "3"))
LOCKED = re.compile(r"^error: another build of (graph\.zarr|dataset|precomputed\.zarr) is running "
                    r"\(pid \d+ on \S+ since \S+\); wait for it or pass --wait")

_spec = importlib.util.spec_from_file_location("compare_builds", REPO / "scripts" / "compare_builds.py")
compare_builds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_builds)


def _start(cwd: Path, *extra: str) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "pipeline.build", *ARGS, *extra], cwd=cwd, env=ENV,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _build(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    p = _start(cwd, *extra)
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def _differences(a: Path, b: Path) -> list[str]:
    """``compare_builds.compare`` of two build folders, where the precompute manifest's counts of
    resumed and recomputed tasks (which say how a store was built, not what it holds) are masked."""
    import zarr

    diffs = [d for d in compare_builds.compare(a, b) if d != "precomputed.zarr/: attributes differ"]
    ma, mb = (dict(zarr.open_group(str(x / "precomputed.zarr"), mode="r").attrs["manifest"]) for x in (a, b))
    for m in (ma, mb):
        m.pop("resumed_tasks"), m.pop("recomputed_tasks")
    roots = (str(a), str(b))
    if compare_builds._mask(ma, roots) != compare_builds._mask(mb, roots):
        diffs.append("precomputed.zarr: manifest differs")
    return diffs


def _debris(build: Path) -> list[str]:
    """Temporaries and lock files left in a build folder (a finished build leaves none)."""
    return sorted(p.name for p in build.glob(".*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted build."""
    cwd = tmp_path_factory.mktemp("reference")
    r = _build(cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd / BUILD


# --- locks and staging ownership -------------------------------------------------------------

def test_store_lock_names_its_holder_and_waits(tmp_path: Path) -> None:
    store = tmp_path / "graph.zarr"
    with store_lock(store):
        with pytest.raises(BuildLockedError, match=rf"another build of graph.zarr is running \(pid {os.getpid()} "):
            with store_lock(store):
                pass
    assert not lock_path(store).exists()  # removed by its holder
    with store_lock(store):  # released: taken again
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pipeline.core.lock import store_lock\n"
                               f"with store_lock({str(store)!r}):\n print('held', flush=True); time.sleep(1.0)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    with store_lock(store, wait=True):  # waits for the other process to finish
        assert time.perf_counter() - t0 > 0.3
    holder.wait()


def test_store_lock_excludes_under_contention(tmp_path: Path) -> None:
    """Four processes taking one lock with --wait (each holder removes the file as it lets go):
    never two holders at once."""
    store, log = tmp_path / "dataset", tmp_path / "log"
    code = ("import os, sys, time; from pipeline.core.lock import store_lock\n"
            "for _ in range(5):\n"
            f" with store_lock({str(store)!r}, wait=True):\n"
            f"  open({str(log)!r}, 'a').write(f'+{{os.getpid()}}\\n'); time.sleep(0.005)\n"
            f"  open({str(log)!r}, 'a').write(f'-{{os.getpid()}}\\n')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=ENV) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    lines = log.read_text().split()
    assert len(lines) == 40
    assert all(a[0] == "+" and b == "-" + a[1:] for a, b in zip(lines[::2], lines[1::2])), lines
    assert not lock_path(store).exists()


def test_clean_stale_keeps_live_staging_and_removes_dead(tmp_path: Path) -> None:
    final = tmp_path / "graph.zarr"
    mine = staging_dir(final)  # held by this process
    dead = tmp_path / ".graph.zarr.tmp-0123456789ab"  # no holder: a killed build's
    dead.mkdir()
    assert is_live(mine) and not is_live(dead)
    assert clean_stale(final) == 1
    assert mine.exists() and not dead.exists()


def _trial(cwd: Path, *extra: str, second_after: str | None = None) -> tuple[list[subprocess.CompletedProcess], bool]:
    """Two identical builds into one folder: started together, or the second once the first
    has published ``second_after`` (then it meets the first at a later stage's lock)."""
    procs = [_start(cwd, *extra)]
    while second_after and procs[0].poll() is None and not (cwd / BUILD / second_after).exists():
        time.sleep(0.002)
    procs.append(_start(cwd, *extra))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done, any(r.returncode for r in done)


def test_two_builds_into_one_out(tmp_path: Path, reference: Path) -> None:
    """Started together (or the second once the first has published its graph): one runs, the
    other fails at once with one line naming the holder (or it came late and found the stores up
    to date); what is published equals an uninterrupted build, nothing is left behind, and a rerun
    is a no-op. With --wait both succeed."""
    refused = 0
    for trial in range(TRIALS):
        cwd = tmp_path / f"t{trial}"
        after = "graph.zarr" if trial % 3 == 2 else None
        runs, any_refused = _trial(cwd, second_after=after)
        refused += any_refused
        print(f"concurrent trial {trial} ({'second after the graph' if after else 'together'}): exit "
              f"{[r.returncode for r in runs]}", *(_error_lines(r.stderr)[0][:60] for r in runs if r.returncode))
        assert any(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
        for r in runs:
            assert "Traceback" not in r.stderr, r.stderr[-3000:]
            if r.returncode:
                assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, r.stderr[-2000:]
                assert LOCKED.match(_error_lines(r.stderr)[0]), r.stderr[-2000:]
        assert _differences(cwd / BUILD, reference) == []
        assert _debris(cwd / BUILD) == []
        if trial == 0:  # (once: a rerun costs a build's start-up)
            again = _build(cwd)
            assert again.returncode == 0 and again.stdout.count("up to date:") == 3, again.stderr[-2000:]
    print(f"concurrent builds: {TRIALS} trials, {TRIALS} survived (published stores identical to an "
          f"uninterrupted build, no debris, the first's rerun up to date); lock refused the second build in {refused}")
    assert refused >= 1  # the lock was contended at least once (not two builds one after the other)

    cwd = tmp_path / "wait"
    runs, _ = _trial(cwd, "--wait")
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert _differences(cwd / BUILD, reference) == [] and _debris(cwd / BUILD) == []
    print("concurrent builds with --wait: 1 trial, both exit 0, identical stores")


def _what(p: Path) -> str:
    """What a killed build left: a store's name, or a staging folder and its chunk markers."""
    if ".partial-" in p.name:
        return f"{p.name.split('.partial-')[0][1:]} staging ({len(list(p.glob('progress/samples-*')))} chunk markers)"
    return f"{p.name.split('.tmp-')[0][1:]} staging" if ".tmp-" in p.name else p.name


#: points of a build's life to kill it at (plus a random delay of up to 50 ms): every stage's
#: staging and publish
MILESTONES = (
    ("graph staging", lambda b: any(b.glob(".graph.zarr.tmp-*"))),
    ("graph published", lambda b: (b / "graph.zarr").exists()),
    ("dataset staging", lambda b: any(b.glob(".dataset.tmp-*"))),
    ("dataset published", lambda b: (b / "dataset").exists()),
    ("precompute prepared", lambda b: any(b.glob(".precomputed.zarr.partial-*/progress/prepared.json"))),
    ("3 precompute chunks done", lambda b: len(list(b.glob(".precomputed.zarr.partial-*/progress/samples-*"))) >= 3),
    ("records staging", lambda b: any(b.glob(".records.lmdb.partial-*"))),
)


def test_kill_at_random_points_then_rerun(tmp_path: Path, reference: Path) -> None:
    """kill -9 of the whole build at random points of every stage; the rerun equals an
    uninterrupted build and leaves nothing behind."""
    rng = random.Random(13)
    order = rng.sample(MILESTONES, len(MILESTONES))
    killed = 0
    for trial in range(TRIALS):
        name, reached = order[trial % len(order)]
        cwd = tmp_path / f"k{trial}"
        p = _start(cwd)
        deadline = time.monotonic() + 60
        while p.poll() is None and not reached(cwd / BUILD) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            killed += 1
        p.communicate()
        left = [_what(x) for x in sorted((cwd / BUILD).glob("*")) if not x.name.endswith(".lock")]
        r = _build(cwd)
        assert r.returncode == 0, r.stderr[-3000:]
        assert _differences(cwd / BUILD, reference) == []
        assert _debris(cwd / BUILD) == []
        print(f"kill -9 trial {trial} after '{name}' (left: {', '.join(left) or 'nothing'}): rerun identical")
    print(f"kill -9 at random points: {TRIALS} trials ({killed} killed, the others finished first), "
          f"{TRIALS} survived")


# --- damage in staging -----------------------------------------------------------------------

def _interrupted_staging(cfg: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run ``cfg`` in the current directory up to the precompute's publish, stop it there, and
    return the staging folder the run leaves."""
    from pipeline.precompute import stages

    def stop(*_: object) -> None:
        raise RuntimeError("interrupted before publish")

    with monkeypatch.context() as m:
        m.setattr(stages, "publish_precompute", stop)
        with pytest.raises(RuntimeError, match="interrupted"):
            run_build(cfg)
    [staging] = BUILD.glob(".precomputed.zarr.partial-*")
    return staging


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\xa5" * min(64, len(data) - mid)
    path.write_bytes(bytes(data))


def test_damaged_staging_chunk_is_recomputed(tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A run stopped before publish leaves its staging; undecodable shards in it (and a flipped
    byte) are found when the rerun re-verifies the earlier chunks, named in a warning, computed
    again, and the published stores equal an uninterrupted build."""
    monkeypatch.chdir(tmp_path)
    cfg = BuildConfig.from_args(parser().parse_args(ARGS))
    staging = _interrupted_staging(cfg, monkeypatch)
    _corrupt(staging / "node_mask" / "dense" / "c" / "1" / "0")  # chunk 1: samples 256..511
    _corrupt(staging / "khop" / "per_type" / "k2" / "c" / "2" / "0")
    (staging / "edge_mask" / "string12_fusion" / "values" / "c" / "0" / "0").write_bytes(b"\x00" * 7)
    with caplog.at_level(logging.WARNING, logger="pipeline.precompute"):
        res = run_build(cfg)
    assert res.precomputed_built
    assert "failed re-verification" in caplog.text
    assert "node_mask/dense: samples 256..511 do not decode" in caplog.text
    assert "khop/per_type/k2: samples 512..767" in caplog.text
    assert "edge_mask/string12_fusion: samples 0..255" in caplog.text
    assert _differences(tmp_path / BUILD, reference) == []
    assert _debris(tmp_path / BUILD) == []


def test_damaged_dense_edge_mask_in_staging_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The dense edge-mask view (``--dense-edge-masks``) has per-chunk checksums too: a shard of
    it damaged in an interrupted staging is found, recomputed, and the result equals an
    uninterrupted build."""
    args = [*ARGS, "--dense-edge-masks"]
    ref = tmp_path / "ref"
    assert _build(ref, "--dense-edge-masks").returncode == 0
    monkeypatch.chdir(tmp_path)
    cfg = BuildConfig.from_args(parser().parse_args(args))
    staging = _interrupted_staging(cfg, monkeypatch)
    _corrupt(staging / "edge_mask" / "string12_fusion" / "dense" / "c" / "3" / "0")
    with caplog.at_level(logging.WARNING, logger="pipeline.precompute"):
        assert run_build(cfg).precomputed_built
    assert "edge_mask/string12_fusion/dense: samples 768..1023" in caplog.text
    assert _differences(tmp_path / BUILD, ref / BUILD) == []


@pytest.mark.parametrize("meta", ["khop/per_type/k1/zarr.json", "zarr.json", "perturbation/genes/c/0"])
def test_damaged_prepared_staging_is_started_over(tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture, meta: str) -> None:
    """A file written at prepare (an array's metadata, the root group's, a whole array) damaged in
    an interrupted staging: the rerun names it, starts the staging over, and equals an
    uninterrupted build (before, an array's damaged zarr.json failed every task of the rerun)."""
    monkeypatch.chdir(tmp_path)
    cfg = BuildConfig.from_args(parser().parse_args(ARGS))
    staging = _interrupted_staging(cfg, monkeypatch)
    target = staging / meta
    assert target.is_file(), sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*"))[:40]
    _corrupt(target)
    with caplog.at_level(logging.WARNING, logger="pipeline.precompute"):
        res = run_build(cfg)
    assert res.precomputed_built
    assert "since it was prepared; starting it over" in caplog.text and meta.split("/c/")[0] in caplog.text
    assert _differences(tmp_path / BUILD, reference) == []
    assert _debris(tmp_path / BUILD) == []


def test_force_discards_an_interrupted_staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    args = [a for a in ARGS if a != "--lmdb"]
    cfg = BuildConfig.from_args(parser().parse_args(args))
    staging = _interrupted_staging(cfg, monkeypatch)
    (staging / "zarr.json").write_text("{not json")  # the staging store itself does not open
    with caplog.at_level(logging.INFO, logger="pipeline.precompute"):
        res = run_build(BuildConfig.from_args(parser().parse_args([*args, "--force"])))
    assert res.precomputed_built and "--force: discarding the staging" in caplog.text
    assert "resuming" not in caplog.text


# --- dask ------------------------------------------------------------------------------------

def test_unreachable_dask_address_fails_fast_with_one_line(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a closed local port: nothing listens there
    t0 = time.perf_counter()
    r = _build(tmp_path, "--dask-address", f"tcp://127.0.0.1:{port}")
    took = time.perf_counter() - t0
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    [line] = _error_lines(r.stderr)
    assert f"tcp://127.0.0.1:{port}" in line and "no dask scheduler answered" in line
    assert took < 20, took  # graph + dataset (~2 s) + the 5 s connect timeout
    assert not (tmp_path / BUILD / "precomputed.zarr").exists()


def test_local_cluster_listens_on_loopback_only() -> None:
    psutil = pytest.importorskip("psutil")
    from pipeline.precompute.cluster import dask_client

    for processes in (False, True):
        with dask_client(None, 1, processes) as client:
            assert client.submit(abs, -1).result() == 1
            me = psutil.Process()
            listening = [c.laddr for p in [me, *me.children(recursive=True)]
                         for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
        assert 8787 not in {a.port for a in listening}


def test_external_cluster_gets_absolute_paths(tmp_path: Path, reference: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers of an external cluster run in another directory: the default relative --out
    must reach them as absolute paths."""
    from distributed import LocalCluster

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the worker process starts here, and resolves relative paths here
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, host="127.0.0.1",
                      silence_logs=logging.WARNING) as cluster:
        monkeypatch.chdir(tmp_path)
        args = [a for a in ARGS if a != "--dask-threads"] + ["--dask-address", cluster.scheduler_address]
        res = run_build(BuildConfig.from_args(parser().parse_args(args)))
    assert res.precomputed_built
    assert _differences(tmp_path / BUILD, reference) == []
    shutil.rmtree(elsewhere)


# --- a real full disk and a real read-only file system (tmpfs; root only) ----------------------

def _mount_tmpfs(where: Path, size_kb: int) -> None:
    """Mount a ``size_kb`` tmpfs at ``where`` or skip the test with the reason."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount, which needs root")
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def _remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


def test_a_real_full_disk_fails_with_one_line_and_resumes(tmp_path: Path, reference: Path) -> None:
    """A 3 MB tmpfs holds the graph and the dataset but not the precomputed stores: the build
    ends with one ``error:`` line and exit 2, nothing incomplete is published, and once the file
    system is grown the rerun resumes and equals an uninterrupted build."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 3 * 1024)
    try:
        r = _build(disk)
        assert r.returncode == 2, r.stderr[-3000:]
        errors = _error_lines(r.stderr)
        assert len(errors) == 1 and "no space left on device; free space and rerun" in errors[0], r.stderr[-3000:]
        build = disk / BUILD
        published = sorted(p.name for p in build.iterdir() if not p.name.startswith("."))
        assert "records.lmdb" not in published
        for name in published:  # whatever was published reads as complete
            assert name in ("graph.zarr", "dataset", "precomputed.zarr"), published
        _remount(disk, "size=64m")
        r = _build(disk)
        assert r.returncode == 0, r.stderr[-3000:]
        assert _differences(build, reference) == []
        assert _debris(build) == []
        print(f"full tmpfs (3 MB): one error line, published before the rerun: {', '.join(published) or 'nothing'}; "
              "rerun after growing it: identical")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_real_read_only_file_system_is_one_error_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, 1024)
    try:
        _remount(disk, "ro")
        r = _build(disk)
        assert r.returncode == 2, r.stderr[-3000:]
        errors = _error_lines(r.stderr)
        assert len(errors) == 1 and "Read-only file system" in errors[0], r.stderr[-3000:]
        assert not any(disk.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
