"""Benchmarks of the pipeline, one module per benchmark: ``python -m benchmarks <name> [...]``.

A benchmark is a sibling module (``build``; later ``dataset``, ``precompute``,
``stream``) whose docstring's first line describes it and which defines
``main(argv: list[str] | None) -> int``. :mod:`benchmarks.__main__` finds them
by listing this package, so adding one needs no registration. Shared output
(console table, ``--json`` records with run metadata) is in :mod:`benchmarks._report`.

This package imports nothing heavy: benchmarks run the code under test in child
processes, which must start from a clean interpreter.
"""
