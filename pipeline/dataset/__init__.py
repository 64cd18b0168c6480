"""The dataset stage: phenotype tables -> one Parquet dataset of samples over the graph's genes.

``config`` (:class:`DatasetConfig`), ``sources`` (what ``--dataset`` names: tables, readers,
samples), ``onepass`` (the one-pass reader of text tables), ``encode`` (genes to indices,
replicate merging, ids and splits), ``splits/`` (one module per split algorithm),
``stages`` (plan and build), ``store`` (the writer and :func:`open_dataset`).
"""
