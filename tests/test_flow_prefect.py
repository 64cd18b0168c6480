"""Prefect in earnest: a run's summaries as artifacts, up-to-date stages as Cached task runs, download
retries with backoff, and ``prefect.yaml`` checked by Prefect's own schema against the flow.

Flow runs share the session's Prefect test server (``prefect_harness``); the deployment on a
real server and worker is ``tests/test_flow.py::test_deployment_runs_on_a_process_worker``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

import pytest
import yaml

import flows.build as fb
from pipeline.core.paths import REPO_ROOT
from tests.helpers import default_layout, serving

pytestmark = pytest.mark.timeout(300)
harness = pytest.mark.usefixtures("prefect_harness")


def _task_runs(flow_run_id: UUID) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _all_artifacts(flow_run_id: UUID) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))


def _artifacts(flow_run_id: UUID) -> dict[str, object]:
    """The run's keyed artifacts by key."""
    return {a.key: a for a in _all_artifacts(flow_run_id) if a.key}


def test_prefect_yaml_is_valid_and_every_deployment_fits_the_flow() -> None:
    """Prefect's own schema of prefect.yaml accepts the file; each deployment's entrypoint loads,
    its parameters pass the flow's validation and make the build its name says."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    from pipeline.config import BuildConfig

    raw = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    deps = {d.name: d for d in model.deployments}
    assert set(deps) == {"build-graph", "build-dataset", "precompute"}
    stages = {}
    for name, d in deps.items():
        assert d.work_pool.name == "yeast-process", name
        fl = load_flow_from_entrypoint(str(REPO_ROOT / d.entrypoint))
        assert fl.name == "build-graph"
        cfg = BuildConfig.from_params(fl.validate_parameters(d.parameters))
        stages[name] = (cfg.dataset is not None, cfg.precompute is not None)
    assert stages == {"build-graph": (False, False), "build-dataset": (True, False), "precompute": (True, True)}


PRE = {"graphs": ["string12_fusion"], "datasets": ["kuzmin2018"], "artifacts": ["masks", "khop"], "khop": [1, 2],
       "chunk_samples": 512, "dask_processes": False, "workers": 1}


@harness
def test_a_run_publishes_stage_artifacts_and_shows_current_stages_as_cached(tmp_path: Path) -> None:
    with default_layout(tmp_path):
        first = fb.build_graph(out=str(tmp_path / "o"), return_state=True, **PRE)
        assert first.is_completed(), first
        again = fb.build_graph(out=str(tmp_path / "o"), return_state=True, **PRE)
    assert again.is_completed(), again

    arts = _artifacts(first.state_details.flow_run_id)
    assert set(arts) == {"string12-graph", "string12-dataset", "string12-precompute", "string12-stages"}
    assert arts["string12-precompute"].type == "markdown"
    md = arts["string12-precompute"].data
    assert md.startswith("### precompute: built") and "bytes/sample" in md and "samples: 2,300" in md, md
    table = arts["string12-stages"]
    assert table.type == "table"
    rows = {r["stage"]: r for r in (json.loads(table.data) if isinstance(table.data, str) else table.data)}
    assert [rows[s]["status"] for s in ("graph", "dataset", "precompute")] == ["built"] * 3
    assert rows["precompute"]["samples"] == 2300 and rows["precompute"]["samples_per_s"] > 0
    assert rows["graph"]["genes"] == 5989 and rows["graph"]["edge_types"] == 1
    [bar] = [a for a in _all_artifacts(first.state_details.flow_run_id) if a.type == "progress"]
    assert float(bar.data) == 100.0 and bar.description == "precompute: 5 task(s)", (bar.data, bar.description)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # one progress report of the chunk tasks in the run's logs: four lines
    with get_client(sync_client=True) as client:
        logs = [r.message for r in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[first.state_details.flow_run_id])))]
    progress = [m for m in logs if m.startswith("precompute: ") and " task(s) done (" in m]
    assert len(progress) == 4 and progress[-1].startswith("precompute: 5 of 5 task(s) done (100%"), logs

    # the second run: every stage current, each ends at its plan, whose task run is Cached
    runs = _task_runs(again.state_details.flow_run_id)
    by_name = {r.name.rsplit("-", 1)[0]: r for r in runs}
    assert set(by_name) == {"plan_build", "plan_dataset", "plan_precompute"}, sorted(by_name)
    for name, r in by_name.items():
        assert r.state.type.value == "COMPLETED" and r.state.name == "Cached", (name, r.state)
        assert "is up to date (build key " in r.state.message and "skipped" in r.state.message
    rows2 = json.loads(_artifacts(again.state_details.flow_run_id)["string12-stages"].data)
    assert {r["status"] for r in rows2} == {"up to date (skipped)"}
    assert {r["build_key"] for r in rows2} == {r["build_key"] for r in rows.values()}


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests of a path, then the file (``status`` forever if set)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.hits += 1  # type: ignore[attr-defined]
        if srv.status or srv.hits <= srv.fail:  # type: ignore[attr-defined]
            self.send_error(srv.status or 503)  # type: ignore[attr-defined]
            return
        body = srv.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server(tiny_string, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    """A loopback HTTP server as the string12 source's URL (unpinned); download backoff 0.05 s."""
    from pipeline.graph import sources as registry

    def configure(httpd: ThreadingHTTPServer) -> None:
        httpd.hits, httpd.fail, httpd.status, httpd.body = 0, 2, 0, tiny_string.data  # type: ignore[attr-defined]

    with serving(_Flaky, configure) as httpd:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{tiny_string.file_name}"
        monkeypatch.setitem(registry.SOURCES, "string12", replace(registry.SOURCES["string12"], url=url,
                                                                  sha256=None))
        monkeypatch.setattr(fb, "DOWNLOAD_BACKOFF_S", 0.05)
        yield httpd


@harness
def test_downloads_are_retried_with_backoff_and_client_errors_are_not(tmp_path: Path, tiny_string,
                                                                      flaky_server) -> None:
    kw = {"graphs": ["string12"], "download": True, "genes": str(tiny_string.genes)}
    state = fb.build_graph(raw=str(tmp_path / "raw"), out=str(tmp_path / "o"), return_state=True, **kw)
    assert state.is_completed(), state
    [plan] = [r for r in _task_runs(state.state_details.flow_run_id) if r.name.startswith("plan_build")]
    assert flaky_server.hits == 3 and plan.run_count == 3  # two 503s, retried, then the file
    assert (tmp_path / "raw" / "string" / tiny_string.file_name).read_bytes() == tiny_string.data

    flaky_server.status, flaky_server.hits = 404, 0  # a wrong URL: one try, the error as it was
    state = fb.build_graph(raw=str(tmp_path / "raw2"), out=str(tmp_path / "o2"), return_state=True, **kw)
    assert state.is_failed()
    assert flaky_server.hits == 1
    with pytest.raises(Exception, match="HTTP 404"):
        state.result()
