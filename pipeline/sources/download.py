"""Download one source file, verified and atomically placed.

Contract of :func:`fetch`: ``dest`` either does not change or ends up holding the
complete file. The body is streamed (urllib, no extra dependency) to
``dest.parent/.<dest.name>.part-<random>`` in the same folder, with a progress bar
by bytes; when ``sha256`` is given the digest must match, else
:class:`ChecksumMismatchError` names the url and both digests. Only then is the
file renamed onto ``dest`` (atomic on one filesystem). On any failure the partial
file is removed. HTTP errors, network errors, timeouts and truncated bodies raise
:class:`DownloadError` naming the url and the status or reason. The url, size and
sha256 of every download are logged so that the digest can be pinned in
:mod:`pipeline.graph.sources`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.core.errors import PipelineError
from pipeline.core.version import __version__

log = logging.getLogger(__name__)

_BLOCK = 1 << 20
# Some servers refuse urllib's default agent; name the project instead.
_USER_AGENT = f"yeast-perturbation-pipeline/{__version__} (python urllib)"


class DownloadError(PipelineError):
    """A download failed: HTTP status, network error, timeout or truncated body."""


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


def fetch(url: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` (replacing it) and return ``dest``; see the module docstring.

    ``timeout`` bounds the connection and each read, not the whole transfer.
    """
    dest = Path(dest)
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
    return dest
