"""pipeline.sources.download.fetch against a local HTTP server, and ``--download`` end to end."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline.build import main
from pipeline.core.errors import PipelineError
from pipeline.graph import sources as registry
from pipeline.graph.store import open_graph
from pipeline.sources.download import ChecksumMismatchError, DownloadError, fetch

pytestmark = pytest.mark.timeout(60)

PAYLOAD = np.random.default_rng(0).integers(0, 256, 2_500_000, dtype=np.uint8).tobytes()  # several 1 MiB blocks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
SLOW_S = 1.0  # how long /slow stalls before its body; fetch is given a shorter timeout


@dataclass
class Server:
    url: str
    routes: dict[str, bytes] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        routes: dict[str, bytes] = self.server.routes  # type: ignore[attr-defined]
        try:
            if self.path == "/slow":
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                time.sleep(SLOW_S)
                self.wfile.write(b"0123456789")
            elif self.path == "/truncated":  # promises more than it sends, then closes
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD[:1000])
                self.close_connection = True
            elif self.path in routes:
                body = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404, "Not Found")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    """An HTTP server on 127.0.0.1 (ephemeral port) serving ``routes``; 404 for anything else."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    srv = Server(f"http://127.0.0.1:{httpd.server_address[1]}", {"/data.bin": PAYLOAD})
    httpd.routes = srv.routes  # type: ignore[attr-defined]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name) if folder.exists() else []


def test_fetch_streams_the_bytes_into_place(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "data.bin"  # the folder is created
    assert fetch(f"{server.url}/data.bin", dest, timeout=5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == []


def test_matching_sha256_passes_and_is_logged(server: Server, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "data.bin"
    with caplog.at_level(logging.INFO, logger="pipeline"):
        fetch(f"{server.url}/data.bin", dest, sha256=PAYLOAD_SHA.upper(), timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert any(PAYLOAD_SHA in r.getMessage() and f"{server.url}/data.bin" in r.getMessage()
               for r in caplog.records)


def test_wrong_sha256_raises_and_saves_nothing(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    url = f"{server.url}/data.bin"
    with pytest.raises(ChecksumMismatchError) as ei:
        fetch(url, dest, sha256="0" * 64, timeout=5)
    msg = str(ei.value)
    assert url in msg and "0" * 64 in msg and PAYLOAD_SHA in msg
    assert isinstance(ei.value, PipelineError)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_failed_download_leaves_an_existing_file_alone(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumMismatchError):
        fetch(f"{server.url}/data.bin", dest, sha256="f" * 64, timeout=5)
    assert dest.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_http_404_names_the_url_and_status(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/missing.txt.gz"
    with pytest.raises(DownloadError, match="404") as ei:
        fetch(url, tmp_path / "x", timeout=5)
    assert url in str(ei.value)
    assert os.listdir(tmp_path) == []


def test_timeout_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/slow"
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out") as ei:
        fetch(url, tmp_path / "x", timeout=0.2)
    assert url in str(ei.value) and time.perf_counter() - t0 < SLOW_S
    assert os.listdir(tmp_path) == []


def test_truncated_body_is_an_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="truncated|IncompleteRead"):
        fetch(f"{server.url}/truncated", tmp_path / "x", timeout=5)
    assert os.listdir(tmp_path) == []


def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x"
    with pytest.raises(DownloadError) as ei:
        fetch(url, tmp_path / "x", timeout=2)
    assert url in str(ei.value)


def test_cli_download_fetches_the_missing_source_and_builds(server: Server, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, tiny_string) -> None:
    server.routes[f"/download/{tiny_string.file_name}"] = tiny_string.data
    digest = hashlib.sha256(tiny_string.data).hexdigest()
    monkeypatch.setitem(registry.SOURCES, "string12", replace(
        registry.SOURCES["string12"], url=f"{server.url}/download/{tiny_string.file_name}", sha256=digest))
    raw, out = tmp_path / "raw", tmp_path / "out"
    argv = ["--graphs", "string12", "--raw", str(raw), "--out", str(out), "--genes", str(tiny_string.genes), "-q"]

    assert main(argv + ["--download"]) == 0

    saved = raw / "string" / tiny_string.file_name
    assert saved.read_bytes() == tiny_string.data
    assert leftovers(saved.parent) == []
    g = open_graph(out / "string12" / "graph.zarr")
    (inp,) = [i for i in g.manifest["inputs"] if i["role"] == "string12"]
    assert inp["origin"] == "download" and inp["sha256"] == digest
    assert g.gene_ids.tolist() == ["YAL001C", "YAL002W", "YAL003W", "YBR010W"]
    assert {t: g.csr(t).nnz for t in g.edge_types} == {
        "string12_coexpression": 4, "string12_cooccurence": 0, "string12_database": 2,
        "string12_experimental": 2, "string12_fusion": 2, "string12_neighborhood": 2}

    # the next build finds the file in raw/ and nothing has changed
    server.routes.clear()
    assert main(argv) == 0
