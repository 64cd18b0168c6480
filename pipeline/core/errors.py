"""Errors raised on bad input. Each names the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base class of errors this package raises on purpose."""


class SourceFormatError(PipelineError, ValueError):
    """A source file does not have the expected form.

    ``line`` is 1-based and counts the header; ``None`` when the problem is the
    whole file (empty, truncated gzip, missing header columns).
    """

    def __init__(self, path: str | Path, line: int | None, expected: str, got: str | None = None):
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.got = got
        where = f"{self.path}, line {line}" if line is not None else self.path
        msg = f"{where}: expected {expected}"
        if got is not None:
            shown = got if len(got) <= 200 else got[:200] + "..."
            msg += f", got {shown!r}"
        super().__init__(msg)


class StoreError(PipelineError):
    """A store is missing, incomplete, or disagrees with what it is opened against."""


class SourceMissingError(PipelineError, FileNotFoundError):
    """A raw source file is not where it should be (and no fallback applies)."""
