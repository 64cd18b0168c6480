"""pipeline.sources.download.fetch against a local HTTP server, and ``--download`` end to end."""

from __future__ import annotations

import hashlib
import logging
import os
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
from tests.helpers import serving

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
    routes = {"/data.bin": PAYLOAD}

    def configure(httpd: ThreadingHTTPServer) -> None:
        httpd.routes = routes  # type: ignore[attr-defined]

    with serving(_Handler, configure) as httpd:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name) if folder.exists() else []


def test_fetch_streams_the_bytes_into_place(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "data.bin"  # the folder is created
    got = fetch(f"{server.url}/data.bin", dest, timeout=5)
    assert got.path == dest and got.sha256 == PAYLOAD_SHA and got.bytes == len(PAYLOAD)
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


# --- https only, the digest lock ---------------------------------------------------------------

def test_plain_http_is_refused_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not an https URL: refusing to download it") as ei:
        fetch("http://example.org/x.txt.gz", tmp_path / "x.txt.gz", timeout=1)
    assert str(tmp_path / "x.txt.gz") in str(ei.value) and os.listdir(tmp_path) == []


def test_the_plain_http_source_is_refused_with_where_to_put_it(tmp_path: Path, capsys, tiny_string) -> None:
    assert registry.SOURCES["string9_1"].url.startswith("http://")  # no https mirror of STRING 9.1 is known
    raw = tmp_path / "raw"
    assert main(["--graphs", "string9_1", "--raw", str(raw), "--out", str(tmp_path / "out"),
                 "--genes", str(tiny_string.genes), "--download", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an https URL" in err[0]
    assert str(raw / "string" / "4932.protein.links.detailed.v9.1.txt.gz") in err[0]


def _unpinned(monkeypatch: pytest.MonkeyPatch, server: Server, tiny_string) -> str:
    url = f"{server.url}/download/{tiny_string.file_name}"
    server.routes[f"/download/{tiny_string.file_name}"] = tiny_string.data
    monkeypatch.setitem(registry.SOURCES, "string12", replace(registry.SOURCES["string12"], url=url, sha256=None))
    return url


def test_the_first_download_is_locked_and_a_changed_file_is_refused(server: Server, tmp_path: Path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tiny_string) -> None:
    import gzip
    import json

    url = _unpinned(monkeypatch, server, tiny_string)
    raw = tmp_path / "raw"
    argv = ["--graphs", "string12", "--raw", str(raw), "--out", str(tmp_path / "out"),
            "--genes", str(tiny_string.genes), "-q"]
    assert main(argv + ["--download"]) == 0
    digest = hashlib.sha256(tiny_string.data).hexdigest()
    lock = json.loads((raw / ".digests.json").read_text())["files"]
    key = f"string/{tiny_string.file_name}"
    assert lock[key]["sha256"] == digest and lock[key]["bytes"] == len(tiny_string.data) and lock[key]["url"] == url

    # a file dropped in by hand over it: checked against the lock, both digests named
    saved = raw / "string" / tiny_string.file_name
    other = gzip.compress(gzip.decompress(tiny_string.data) + b"4932.YAL001C 4932.YBR010W 0 0 0 0 0 0 0 9\n",
                          mtime=0)
    saved.write_bytes(other)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and digest in err[0] and hashlib.sha256(other).hexdigest() in err[0], err
    assert str(saved) in err[0] and ".digests.json" in err[0]

    # a later download is checked against the lock too: the server now sends other bytes
    saved.unlink()
    server.routes[f"/download/{tiny_string.file_name}"] = other
    assert main(argv + ["--download"]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and digest in err and not saved.exists()


def test_inputs_record_whether_they_are_the_published_release(server: Server, tmp_path: Path, caplog,
                                                             monkeypatch: pytest.MonkeyPatch, tiny_string) -> None:
    _unpinned(monkeypatch, server, tiny_string)
    pinned = hashlib.sha256(tiny_string.data).hexdigest()
    monkeypatch.setitem(registry.SOURCES, "string12", replace(registry.SOURCES["string12"], sha256=pinned))
    raw, out = tmp_path / "raw", tmp_path / "out"
    argv = ["--graphs", "string12", "--raw", str(raw), "--out", str(out), "--genes", str(tiny_string.genes), "-q"]
    assert main(argv + ["--download"]) == 0
    (inp,) = [i for i in open_graph(out / "string12" / "graph.zarr").manifest["inputs"] if i["role"] == "string12"]
    assert inp["release"] == "verified"

    # an edited copy (no lock entry: put there by hand) is built from, with a WARNING naming the file
    (raw / ".digests.json").unlink()
    import gzip
    saved = raw / "string" / tiny_string.file_name
    saved.write_bytes(gzip.compress(gzip.decompress(tiny_string.data), mtime=1))  # same rows, other bytes
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert main(argv) == 0
    (inp,) = [i for i in open_graph(out / "string12" / "graph.zarr").manifest["inputs"] if i["role"] == "string12"]
    assert inp["release"] == "local variant"
    assert any(str(saved) in r.getMessage() and "local variant" in r.getMessage() for r in caplog.records)
