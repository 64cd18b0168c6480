"""Compare two build folders store by store: every Zarr array and attribute, every Parquet
table, every LMDB key and value.

    python scripts/compare_builds.py /tmp/before/string12 /tmp/after/string12

Exits 1 and lists the differences when there are any. Values that name when or where a
build ran (``created``, ``code_version``, timings, absolute paths of the build folder) are
compared after masking them; everything else must be equal byte for byte (arrays by value,
dtype, shape, chunking and codecs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pyarrow.parquet as pq
import zarr

VOLATILE = {"created", "code_version", "seconds", "compute_seconds"}


def _mask(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in VOLATILE else _mask(v, roots)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, roots) for v in value]
    if isinstance(value, str):
        for r in roots:
            value = value.replace(r, "<build>")
    return value


def _zarr(a: Path, b: Path, roots: tuple[str, ...], out: list[str]) -> None:
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")

    def walk(x: zarr.Group, y: zarr.Group, path: str) -> None:
        if _mask(dict(x.attrs), roots) != _mask(dict(y.attrs), roots):
            out.append(f"{a.name}/{path}: attributes differ")
        xa, ya = dict(x.arrays()), dict(y.arrays())
        xg, yg = dict(x.groups()), dict(y.groups())
        if set(xa) != set(ya) or set(xg) != set(yg):
            out.append(f"{a.name}/{path}: members differ: {sorted(set(xa) ^ set(ya) | set(xg) ^ set(yg))}")
        for k in sorted(set(xa) & set(ya)):
            p, q = xa[k], ya[k]
            meta = lambda z: (z.dtype, z.shape, z.chunks, z.shards, str(z.compressors), str(z.filters),  # noqa: E731
                              z.fill_value, _mask(dict(z.attrs), roots))
            if meta(p) != meta(q):
                out.append(f"{a.name}/{path}{k}: metadata differ")
            elif not np.array_equal(p[...], q[...], equal_nan=p.dtype.kind == "f"):
                out.append(f"{a.name}/{path}{k}: values differ")
        for k in sorted(set(xg) & set(yg)):
            walk(xg[k], yg[k], f"{path}{k}/")

    walk(ga, gb, "")


def _lmdb(a: Path, b: Path, roots: tuple[str, ...], out: list[str]) -> None:
    def items(p: Path) -> dict[tuple[bytes, bytes], bytes]:
        env = lmdb.open(str(p), readonly=True, lock=False, max_dbs=2)
        res = {}
        for db in (b"samples", b"meta"):
            with env.begin(db=env.open_db(db, create=False)) as txn:
                res.update({(db, k): v for k, v in txn.cursor()})
        env.close()
        return res

    x, y = items(a), items(b)
    if set(x) != set(y):
        out.append(f"{a.name}: keys differ ({len(set(x) ^ set(y))})")
    for k in sorted(set(x) & set(y)):
        if k == (b"meta", b"manifest"):
            if _mask(json.loads(x[k]), roots) != _mask(json.loads(y[k]), roots):
                out.append(f"{a.name}: manifest differs")
        elif x[k] != y[k]:
            out.append(f"{a.name}: {k[0].decode()}/{k[1]!r} differs")


def compare(a: Path, b: Path) -> list[str]:
    roots = tuple(sorted((str(a), str(b)), key=len, reverse=True))  # the longer first: one may prefix the other
    out: list[str] = []
    # dot files are a build's locks and debris, not stores
    names = sorted({p.name for p in (*a.iterdir(), *b.iterdir()) if not p.name.startswith(".")})
    for name in names:
        x, y = a / name, b / name
        if not (x.exists() and y.exists()):
            out.append(f"{name}: only in {'first' if x.exists() else 'second'}")
        elif name.endswith(".zarr"):
            _zarr(x, y, roots, out)
        elif name.endswith(".lmdb"):
            _lmdb(x, y, roots, out)
        else:  # the dataset folder: Parquet tables and a manifest
            for f in sorted(p.name for p in x.iterdir()):
                if f.endswith(".parquet"):
                    if not pq.read_table(x / f).equals(pq.read_table(y / f)):
                        out.append(f"{name}/{f}: tables differ")
                elif f.endswith(".json"):
                    if _mask(json.loads((x / f).read_text()), roots) != _mask(json.loads((y / f).read_text()), roots):
                        out.append(f"{name}/{f}: differs")
                elif (x / f).read_bytes() != (y / f).read_bytes():
                    out.append(f"{name}/{f}: differs")
    return out


def main(argv: list[str]) -> int:
    a, b = Path(argv[0]), Path(argv[1])
    diffs = compare(a, b)
    for d in diffs:
        print(d)
    print(f"{a} vs {b}: {'identical' if not diffs else f'{len(diffs)} difference(s)'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
