"""Errors raised on bad input. Each names the file, the line and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


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


def decode_utf8(data: bytes, path: str | Path) -> str:
    """``data`` as UTF-8 text without a leading byte-order mark (never part of the first id);
    a byte that is not UTF-8 is a :class:`SourceFormatError` naming its line and byte offset.

    >>> decode_utf8(b"\\xef\\xbb\\xbfYAL001C\\n", "genes.txt")
    'YAL001C\\n'
    >>> decode_utf8(b"YAL001C\\nYAL\\xff002W\\n", "genes.txt")
    Traceback (most recent call last):
    pipeline.core.errors.SourceFormatError: genes.txt, line 2: expected UTF-8 text (byte 0xff at byte offset 11 is not)
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceFormatError(path, line, f"UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start} "
                                            f"is not)") from None


class AmbiguousSourceError(PipelineError, ValueError):
    """Several files match where one is expected: reading one and ignoring the others would be a guess."""

    def __init__(self, folder: str | Path, expected: str, hits: list[Path]):
        self.folder, self.hits = str(folder), [str(h) for h in hits]
        names = ", ".join(Path(h).name for h in hits)
        super().__init__(f"{folder}: {len(hits)} files match where one {expected} is expected: {names}; "
                         f"keep one there (move the others out of the folder)")


class StoreError(PipelineError):
    """A store is missing, incomplete, or disagrees with what it is opened against."""


class SourceMissingError(PipelineError, FileNotFoundError):
    """A raw source file is not where it should be (and no fallback applies)."""


def check_plain_name(option: str, value: str) -> str:
    """``value`` if it is a plain name (it becomes one path component), else a ValueError naming the option.

    A plain name starts with a letter or digit, continues with letters, digits and
    ``. _ + -``, and has no ``..``: never a path, absolute or relative.

    >>> check_plain_name("--name", "string12+physical")
    'string12+physical'
    >>> check_plain_name("--name", "../../x")
    Traceback (most recent call last):
    ValueError: --name ../../x: expected a plain name (letters, digits, . _ + -)
    """
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{option} {value}: expected a plain name (letters, digits, . _ + -)")
    return value
