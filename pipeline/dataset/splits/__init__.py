"""Split assignment, one small module per algorithm behind one signature.

Each algorithm maps a frame of samples (``gene_idx`` list, ``sample_key`` uint64)
to a column of split labels (``train``/``val``/``test``), deterministically from
a seed and independent of row order: the same sample gets the same label in every
build, whatever else is in the dataset.
"""

from pipeline.core.splitmix import uniform01
from pipeline.dataset.splits.gene_holdout import gene_holdout_split
from pipeline.dataset.splits.random import random_split

SPLITS = {"random": random_split, "gene_holdout": gene_holdout_split}

__all__ = ["SPLITS", "gene_holdout_split", "random_split", "uniform01"]
