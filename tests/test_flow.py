"""The Prefect flow ``build-graph`` builds the same store as the CLI, one task run per stage.

The flow tests share the session's Prefect test server (``prefect_harness``). The
``slow`` test deploys ``prefect.yaml`` to a real local server and runs the
deployment on a ``process`` worker, as the README describes (~20 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from prefect.client.schemas.objects import TaskRun

from flows.build import build_graph
from pipeline.build import main
from pipeline.core.paths import REPO_ROOT
from pipeline.graph.store import open_graph
from tests.helpers import default_layout

pytestmark = pytest.mark.timeout(120)
harness = pytest.mark.usefixtures("prefect_harness")


def _raw(tmp_path: Path, tiny_string) -> Path:
    raw = tmp_path / "raw"
    (raw / "string").mkdir(parents=True)
    (raw / "string" / tiny_string.file_name).write_bytes(tiny_string.data)
    return raw


def _task_runs(flow_run_id: UUID) -> list[TaskRun]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _logs(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # logs are sent in the background
    with get_client(sync_client=True) as client:
        return [f"{r.name}: {r.message}" for r in
                client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]


@harness
def test_flow_builds_the_cli_store_with_one_task_per_stage(tmp_path: Path, tiny_string) -> None:
    raw = _raw(tmp_path, tiny_string)
    common = dict(graphs=["string12"], raw=str(raw), genes=str(tiny_string.genes))

    state = build_graph(**common, out=str(tmp_path / "flow"), return_state=True)
    assert state.is_completed(), state
    store = Path(state.result())
    assert store == tmp_path / "flow" / "string12" / "graph.zarr"
    assert main(["--graphs", "string12", "--raw", str(raw), "--out", str(tmp_path / "cli"),
                 "--genes", str(tiny_string.genes), "-q"]) == 0

    flow_g, cli_g = open_graph(store), open_graph(tmp_path / "cli" / "string12" / "graph.zarr")
    assert flow_g.manifest["build_key"] == cli_g.manifest["build_key"]
    assert flow_g.gene_ids.tolist() == cli_g.gene_ids.tolist()
    assert flow_g.edge_types == cli_g.edge_types and len(flow_g.edge_types) == 6
    for t in flow_g.edge_types:
        a, b = flow_g.csr(t), cli_g.csr(t)
        for arr in ("indptr", "indices", "weights"):
            np.testing.assert_array_equal(getattr(a, arr), getattr(b, arr), err_msg=f"{t} {arr}")
    assert sum(flow_g.csr(t).nnz for t in flow_g.edge_types) > 0

    runs = _task_runs(state.state_details.flow_run_id)
    assert Counter(r.name.rsplit("-", 1)[0] for r in runs) == {
        "plan_build": 1, "load_genes": 1, "read_source": 1, "compute_gene_features": 1, "open_staging": 1,
        "store_gene_features": 1, "store_edge_type": 6,
        "publish_graph": 1}
    assert all(r.state.is_completed() for r in runs)
    logs = _logs(state.state_details.flow_run_id)
    assert any(m.startswith("pipeline.build: published") for m in logs), logs  # a stage's own log line
    assert any("total pairs" in m for m in logs), logs  # the summary

    # same inputs again: only the plan runs, and the store is reported up to date
    again = build_graph(**common, out=str(tmp_path / "flow"), return_state=True)
    assert Path(again.result()) == store
    assert [r.name.rsplit("-", 1)[0] for r in _task_runs(again.state_details.flow_run_id)] == ["plan_build"]


@harness
def test_flow_failure_names_the_problem(tmp_path: Path) -> None:
    state = build_graph(graphs=["string12"], raw=str(tmp_path / "empty"), out=str(tmp_path / "out"),
                        genes=str(tmp_path / "no-such-genes.txt"), return_state=True)
    assert state.is_failed()
    with pytest.raises(FileNotFoundError, match="no-such-genes.txt"):
        state.result()


@harness
def test_flow_runs_the_dataset_stage_like_the_cli(tmp_path: Path) -> None:
    """The flow's dataset stage is the CLI's: same samples and splits from the bundled samples."""
    from pipeline.dataset.store import open_dataset

    kw = {"graphs": ["string12_fusion"], "datasets": ["kuzmin2018"]}
    with default_layout(tmp_path):
        state = build_graph(out=str(tmp_path / "flow"), return_state=True, **kw)
    assert state.is_completed()
    runs = _task_runs(state.state_details.flow_run_id)
    assert {"plan_dataset", "build_dataset"} <= {r.name.rsplit("-", 1)[0] for r in runs}
    with default_layout(tmp_path):
        assert main(["--graphs", "string12_fusion", "--out", str(tmp_path / "cli"), "--dataset", "kuzmin2018",
                     "-q"]) == 0
    a = open_dataset(tmp_path / "flow" / "string12" / "dataset").read()
    b = open_dataset(tmp_path / "cli" / "string12" / "dataset").read()
    assert a.height > 0
    cols = ["sample_id", "gene_idx", "types", "fitness", "split_random", "split_gene_holdout"]
    assert a.select(cols).equals(b.select(cols))


@harness
def test_flow_runs_the_precompute_stage_like_the_cli(tmp_path: Path) -> None:
    """Same stage definitions: the flow's precomputed store has the CLI's checksums, chunk by chunk."""
    from pipeline.precompute.store import open_precomputed

    pre = {"artifacts": ["masks", "khop", "adjacency-rows"], "khop": [1, 2], "chunk_samples": 512,
           "adjacency_steps": 4, "adjacency_rows": 8, "adjacency_negatives": 4, "dask_processes": False}
    kw = {"graphs": ["string12_fusion"], "datasets": ["kuzmin2018"]}
    with default_layout(tmp_path):
        state = build_graph(out=str(tmp_path / "flow"), return_state=True, **pre, **kw)
    assert state.is_completed()
    names = {r.name.rsplit("-", 1)[0] for r in _task_runs(state.state_details.flow_run_id)}
    assert {"plan_precompute", "prepare_precompute", "run_precompute_tasks", "publish_precompute"} <= names
    with default_layout(tmp_path):
        assert main(["--graphs", "string12_fusion", "--out", str(tmp_path / "cli"),
                     "--dataset", "kuzmin2018", "--precompute", "masks,khop,adjacency-rows", "--khop", "1,2",
                     "--chunk-samples", "512", "--adjacency-steps", "4", "--adjacency-rows", "8",
                     "--adjacency-negatives", "4", "--workers", "1", "-q"]) == 0
    a = open_precomputed(tmp_path / "flow" / "string12" / "precomputed.zarr").manifest
    b = open_precomputed(tmp_path / "cli" / "string12" / "precomputed.zarr").manifest
    assert a["build_key"] == b["build_key"] and a["chunks"] == b["chunks"] and a["adjacency"] == b["adjacency"]


#: A valid non-default value of every option of ``python -m pipeline.build``, as argv words.
NON_DEFAULT = {
    "graphs": ["--graphs", "physical"], "genes": ["--genes", "g.txt"], "sequences": ["--sequences", "s.fa"],
    "added_genes": ["--added-genes", "a.tsv"], "embeddings": ["--embeddings", "esm=e.tsv"],
    "download": ["--download"], "go_max_term_size": ["--go-max-term-size", "301"], "raw": ["--raw", "r"],
    "out": ["--out", "o"], "name": ["--name", "n"], "force": ["--force"], "wait": ["--wait"],
    "datasets": ["--dataset", "kuzmin2020"], "replicates": ["--replicates", "first"],
    "on_unknown_allele": ["--on-unknown-allele", "error"], "on_bad_value": ["--on-bad-value", "drop"],
    "split_seed": ["--split-seed", "7"],
    "split_fractions": ["--split-fractions", "0.7", "0.2", "0.1"], "artifacts": ["--precompute", "masks"],
    "khop": ["--khop", "2"], "khop_modes": ["--khop-mode", "union"], "mask_types": ["--mask-types", "deletion"],
    "dense_edge_masks": ["--dense-edge-masks"], "lmdb": ["--lmdb"], "chunk_samples": ["--chunk-samples", "128"],
    "adjacency_graphs": ["--adjacency-graphs", "physical"], "adjacency_epochs": ["--adjacency-epochs", "2"],
    "adjacency_steps": ["--adjacency-steps", "3"], "adjacency_batch_size": ["--adjacency-batch-size", "32"],
    "adjacency_rows": ["--adjacency-rows", "9"], "adjacency_negatives": ["--adjacency-negatives", "5"],
    "adjacency_sampling": ["--adjacency-sampling", "degree"], "adjacency_seed": ["--adjacency-seed", "4"],
    "dask_address": ["--dask-address", "tcp://127.0.0.1:1"], "workers": ["--workers", "3"],
    "dask_processes": ["--dask-threads"], "dask_cluster": ["--dask-cluster", "pbs"],
    **{f: ["--dask-cluster", "slurm", flag, value] for f, flag, value in (
        ("dask_jobs", "--dask-jobs", "3"), ("dask_cores", "--dask-cores", "8"),
        ("dask_memory", "--dask-memory", "32GB"),
        ("dask_walltime", "--dask-walltime", "04:00:00"), ("dask_queue", "--dask-queue", "short"),
        ("dask_account", "--dask-account", "lab"), ("dask_interface", "--dask-interface", "ib0"))},
    "dask_job_directives": ["--dask-cluster", "slurm", "--dask-job-directive=--constraint=cpu"],
}


def test_every_cli_option_reaches_the_flow() -> None:
    """Each CLI option is a flow parameter of the same field name, and an option set to a
    non-default value on the command line arrives in the flow's config unchanged (through
    Prefect's own parameter validation)."""
    from pipeline.build import parser
    from pipeline.config import BuildConfig

    dests = {a.dest for a in parser()._actions if a.dest not in ("help", "quiet", "verbose", "list_datasets")}
    assert dests == set(NON_DEFAULT), f"give every option a non-default value here: {dests ^ set(NON_DEFAULT)}"
    assert set(build_graph.parameters.properties) == dests
    base = ["--graphs", "string12", "--dataset", "kuzmin2018", "--precompute", "masks,khop"]
    plain = BuildConfig.from_args(parser().parse_args(base))
    for dest, words in NON_DEFAULT.items():
        cli = BuildConfig.from_args(parser().parse_args(base + words))
        assert cli != plain, f"{words} changed nothing"
        params = build_graph.validate_parameters(cli.to_params())
        assert BuildConfig.from_params(params) == cli, dest


@harness
def test_flow_command_takes_every_option(tmp_path: Path) -> None:
    """``python -m flows.build --on-unknown-allele error`` reaches the dataset stage (it was once dropped)."""
    from flows.build import main as flow_main
    from pipeline.dataset.store import open_dataset

    with default_layout(tmp_path):
        assert flow_main(["--graphs", "string12_fusion", "--out", str(tmp_path / "o"), "--dataset", "kuzmin2018",
                          "--on-unknown-allele", "error", "--split-seed", "3"]) == 0
    params = open_dataset(tmp_path / "o" / "string12" / "dataset").manifest["parameters"]
    assert params["on_unknown_allele"] == "error" and params["split_seed"] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # the server and the worker both stop on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deployment_runs_on_a_process_worker(tmp_path: Path) -> None:
    """The README's steps on a real server and ``process`` worker: ``prefect deploy --all`` (the three
    deployments of prefect.yaml), then the ``precompute`` deployment run on the bundled samples; the
    run's artifacts (a summary per stage, the stages table) are found through the client."""
    prefect = Path(sys.executable).with_name("prefect")
    if not prefect.is_file():
        pytest.skip(f"no prefect CLI next to {sys.executable}")
    raw = tmp_path / "raw"  # the bundled samples under their real names: --raw takes no fallback
    (raw / "string").mkdir(parents=True)
    (raw / "kuzmin2018").mkdir()
    sample = REPO_ROOT / "data" / "sample"
    (raw / "string" / "4932.protein.links.detailed.v12.0.txt.gz").write_bytes(
        (sample / "string" / "4932.protein.links.detailed.v12.0.sample.txt.gz").read_bytes())
    (raw / "kuzmin2018" / "aao1729_data_s1.tsv").write_bytes(
        (sample / "kuzmin2018" / "aao1729_data_s1.sample.tsv").read_bytes())
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect_home"),
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}

    def cli(*args: str, timeout: float = 120) -> str:
        r = subprocess.run([str(prefect), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"prefect {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen([str(prefect), *args], env=env, cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)

    procs: list[subprocess.Popen] = []
    try:
        # --no-services: with the scheduler etc. on, SQLite locking answers 503s and clients retry for seconds
        procs.append(start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                           "--analytics-off", "--no-services"))
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=1).close()
                break
            except OSError:
                assert procs[0].poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "prefect server not healthy after 90 s"
                time.sleep(0.2)
        # the README's steps, from the repository root (where prefect.yaml is)
        cli("work-pool", "create", "yeast-process", "--type", "process")
        deployed = cli("--no-prompt", "deploy", "--all")
        for name in ("build-graph/build-graph", "build-graph/build-dataset", "build-graph/precompute"):
            assert name in deployed, deployed
        procs.append(start("worker", "worker", "start", "--pool", "yeast-process"))
        params = {"raw": str(raw), "out": str(tmp_path / "out"), "graphs": ["string12_fusion"],
                  "artifacts": ["masks", "khop"], "chunk_samples": 1024, "dask_processes": False, "workers": 1}
        out = cli("deployment", "run", "build-graph/precompute", "--params", json.dumps(params),
                  "--watch", "--watch-timeout", "150", timeout=200)
        assert "Completed" in out, out
    finally:
        for p in reversed(procs[1:]):
            _stop(p)
        arts = _deployment_artifacts(api, "precompute") if procs and procs[0].poll() is None else []
        for p in procs[:1]:
            _stop(p)
    from pipeline.precompute.store import open_precomputed

    pre = open_precomputed(tmp_path / "out" / "string12" / "precomputed.zarr")  # datasets: the deployment's
    assert pre.manifest["n_samples"] == 2300
    assert "pipeline.build - published" in (tmp_path / "worker.log").read_text()
    assert [float(a.data) for a in arts if a.type == "progress"] == [100.0]  # the chunk tasks' progress bar
    arts = {a.key: a for a in arts if a.key}
    assert set(arts) == {"string12-graph", "string12-dataset", "string12-precompute", "string12-stages"}, arts
    rows = json.loads(arts["string12-stages"].data)
    assert [r["stage"] for r in rows] == ["graph", "dataset", "precompute"] and rows[2]["samples"] == 2300
    assert "### precompute: built" in arts["string12-precompute"].data


def _deployment_artifacts(api: str, deployment: str) -> list:
    """The artifacts of the latest run of ``deployment``, read through the client from the server at ``api``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        DeploymentFilter,
        DeploymentFilterName,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run.id])))
    return arts
