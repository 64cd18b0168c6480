"""``python -m benchmarks <benchmark> [options]``: run one benchmark (``-h`` lists them)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks as _package


def benchmarks() -> dict[str, str]:
    """Benchmark name -> first line of its module docstring (every public sibling module)."""
    out = {}
    for m in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        doc = importlib.import_module(f"benchmarks.{m.name}").__doc__ or ""
        out[m.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks BENCHMARK [options]   (BENCHMARK -h for its options)\n\nbenchmarks:")
        for name, doc in known.items():
            print(f"  {name:12s} {doc}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in known:
        print(f"error: unknown benchmark {name!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"benchmarks.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
