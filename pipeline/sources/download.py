"""Download one source file, verified and atomically placed; the digest lock of the raw folder.

Contract of :func:`fetch`: ``dest`` either does not change or ends up holding the
complete file. The body is streamed (urllib, no extra dependency) to
``dest.parent/.<dest.name>.part-<random>`` in the same folder, with a progress bar
by bytes; when ``sha256`` is given the digest must match, else
:class:`ChecksumMismatchError` names the url and both digests. Only then is the
file renamed onto ``dest`` (atomic on one filesystem), and :class:`Fetched` (path,
sha256, size) returned. On any failure the partial
file is removed. HTTP errors, network errors, timeouts and truncated bodies raise
:class:`DownloadError` naming the url and the status or reason. The url, size and
sha256 of every download are logged so that the digest can be pinned in
:mod:`pipeline.graph.sources`. Only https URLs are fetched (plain http only from a
loopback host: a local mirror or a test server); any other is a :class:`DownloadError`.

:func:`download_source` is what ``--download`` calls: :func:`fetch`, then the digest lock.
The **digest lock** (:class:`DigestLock`, ``<raw>/.digests.json``, plain JSON) records,
per file (its path relative to the raw folder), the sha256, size and URL of its first
verified download; every later download of that file must match it
(:class:`ChecksumMismatchError`), and so must the file a build finds there, downloaded
or dropped in by hand (:meth:`DigestLock.check`, :class:`DigestMismatchError` naming
both digests). To accept a changed file on purpose, delete its entry.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import http.client
import json
import logging
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipeline.core.errors import PipelineError
from pipeline.core.inputs import InputFile, mark_release
from pipeline.core.version import __version__

log = logging.getLogger(__name__)

_BLOCK = 1 << 20
# Some servers refuse urllib's default agent; name the project instead.
_USER_AGENT = f"yeast-perturbation-pipeline/{__version__} (python urllib)"


class DownloadError(PipelineError):
    """A download failed: HTTP status, network error, timeout or truncated body."""


class DigestMismatchError(PipelineError):
    """A raw file differs from the digest the lock recorded at its first verified download."""

    def __init__(self, path: Path, lock: Path, entry: dict[str, Any], actual: str):
        self.path, self.expected, self.actual = str(path), entry["sha256"], actual
        super().__init__(
            f"{path}: sha256 {actual} differs from {entry['sha256']}, recorded in {lock} at its first verified "
            f"download (from {entry.get('url')}); restore that file, or delete its entry from {lock} to accept "
            f"this one")


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not have the pinned sha256."""

    def __init__(self, url: str, expected: str, actual: str):
        self.url, self.expected, self.actual = url, expected, actual
        super().__init__(f"{url}: sha256 mismatch: expected {expected}, got {actual} "
                         f"(the file changed upstream or the download is corrupt; nothing was saved)")


def _network_error(url: str, e: BaseException, timeout: float, received: int) -> DownloadError:
    """One clear message per kind of network failure, naming the url."""
    if isinstance(e, urllib.error.HTTPError):
        e.close()  # it holds the error response's connection
        return DownloadError(f"{url}: HTTP {e.code} {e.reason}")
    if isinstance(e, urllib.error.URLError):  # before the body: DNS, refused, TLS, connect timeout
        e = e.reason if isinstance(e.reason, BaseException) else e
    got = f" after {received:,} bytes" if received else ""
    if isinstance(e, TimeoutError):
        return DownloadError(f"{url}: timed out (no data for {timeout:g}s){got}")
    return DownloadError(f"{url}: {type(e).__name__}: {e}{got}")


def require_https(url: str, dest: Path) -> None:
    """A DownloadError unless ``url`` is https (or http from a loopback host: a local mirror, a test server)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")):
        return
    raise DownloadError(f"{url}: not an https URL: refusing to download it (plain http can be altered on the way); "
                        f"fetch the file over a channel you trust and put it at {dest}")


@dataclass(frozen=True)
class Fetched:
    """A completed download: where it was placed, its sha256 and size."""

    path: Path
    sha256: str
    bytes: int


def fetch(url: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> Fetched:
    """Download ``url`` to ``dest`` (replacing it); see the module docstring.

    ``timeout`` bounds the connection and each read, not the whole transfer.
    """
    dest = Path(dest)
    require_https(url, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / f".{dest.name}.part-{secrets.token_hex(4)}"
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    log.info("downloading %s -> %s", url, dest)
    h = hashlib.sha256()
    n = 0
    # Only network calls are wrapped: a local error (disk full, permissions) keeps its own message.
    net_errors = (OSError, http.client.HTTPException)  # URLError and TimeoutError are OSErrors
    try:
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except net_errors as e:
            raise _network_error(url, e, timeout, n) from e
        with resp, open(part, "xb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=None, leave=False) as bar:
                while True:
                    try:
                        block = resp.read(_BLOCK)
                    except net_errors as e:  # reset, timeout or IncompleteRead mid-body
                        raise _network_error(url, e, timeout, n) from e
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    n += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())  # the rename must not publish bytes still only in the page cache
        if total is not None and n != total:
            raise DownloadError(f"{url}: truncated: received {n:,} of {total:,} bytes")
        actual = h.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise ChecksumMismatchError(url, sha256.lower(), actual)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    if sha256 is None:
        log.info("downloaded %s: %d bytes, sha256 %s (not pinned: set it in pipeline/graph/sources.py to verify "
                 "future downloads)", url, n, actual)
    else:
        log.info("downloaded %s: %d bytes, sha256 %s (verified)", url, n, actual)
    return Fetched(dest, actual, n)


class DigestLock:
    """The digest lock of one raw folder (``<raw>/.digests.json``; see the module doc).

    >>> import tempfile
    >>> raw = Path(tempfile.mkdtemp())
    >>> lock = DigestLock(raw)
    >>> lock.record(raw / "string" / "x.txt.gz", "string12", "https://example.org/x.txt.gz", "ab" * 32, 10)
    >>> DigestLock(raw).entry(raw / "string" / "x.txt.gz")["url"]
    'https://example.org/x.txt.gz'
    """

    NAME = ".digests.json"

    def __init__(self, raw: Path):
        self.raw = Path(raw)
        self.path = self.raw / self.NAME

    def _key(self, file: Path) -> str:
        """The file's path relative to the raw folder (the lock holds no absolute paths)."""
        return Path(os.path.relpath(Path(file).absolute(), self.raw.absolute())).as_posix()

    def _entries(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise PipelineError(f"{self.path}: expected the digest lock's JSON ({{\"files\": {{...}}}}), "
                                f"got an unreadable file ({e}); restore it or delete it") from e

    def entry(self, file: Path) -> dict[str, Any] | None:
        """What the lock recorded for ``file``, or None."""
        return self._entries().get(self._key(file))

    def record(self, file: Path, source: str, url: str, sha256: str, size: int) -> None:
        """Record the first verified download of ``file`` (written atomically: temp file + rename)."""
        entries = self._entries()
        entries[self._key(file)] = {"source": source, "url": url, "sha256": sha256, "bytes": size,
                                    "recorded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        tmp = self.path.with_name(f"{self.NAME}.tmp-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps({"files": entries}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        log.info("%s: recorded %s (sha256 %s, %d bytes, from %s)", self.path, self._key(file), sha256, size, url)

    def check(self, file: Path, sha256: str) -> bool:
        """Whether the lock has an entry for ``file`` (then ``sha256`` matched it); a
        :class:`DigestMismatchError` naming both digests if it does not match."""
        e = self.entry(file)
        if e is None:
            return False
        if e["sha256"] != sha256:
            raise DigestMismatchError(Path(file), self.path, e, sha256)
        return True


def verify_input(inp: InputFile, raw: Path, releases: dict[str, str]) -> InputFile:
    """Check a described input before a build uses it, and return it: a file in the raw folder
    against the digest lock (:class:`DigestMismatchError`), and any input but a bundled
    sample against the known release digests (``inp.release``, a warning for a local variant)."""
    path = Path(inp.path)
    if inp.origin in ("raw", "download") and path.is_file():
        DigestLock(raw).check(path, inp.sha256)
    return mark_release(inp, releases) if inp.origin != "sample" else inp


def download_source(source: str, url: str, dest: Path, raw: Path, sha256: str | None = None,
                    timeout: float = 60) -> Path:
    """Download a source's file into the raw folder, verified against the registry's pinned
    ``sha256`` or else the digest lock's entry, and record it in the lock if it has none."""
    lock = DigestLock(raw)
    entry = lock.entry(dest)
    expected = sha256 or (entry["sha256"] if entry else None)
    got = fetch(url, Path(dest), expected, timeout)
    if entry is None:
        lock.record(got.path, source, url, got.sha256, got.bytes)
    return got.path
