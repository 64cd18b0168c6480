"""Synthetic inputs in the real source formats, for benchmarks, tests and the embedded sample.

Everything here is deterministic given a seed and clearly marked synthetic
(``SYNTHETIC.txt`` beside full-scale output, ``data/sample/MANIFEST.json`` for the
sample). :mod:`synth.graph` generates heavy-tailed interaction graphs over
the real S. cerevisiae gene universe and writes them as STRING v12 detailed links,
BioGRID TAB3, TFLink, a regulator/target table and an SGD-style GFF3, at sizes
that match the real files (``scale=1``) or any fraction of them.
"""
