"""The dataset stage: phenotype tables -> one Parquet dataset of samples over the graph's genes.

``config`` (:class:`DatasetConfig`), ``sources`` (the registry of what ``--dataset`` names:
:class:`~pipeline.sources.phenotypes.spec.PhenotypeDataset` records, one module each under
``pipeline/sources/phenotypes/``), ``onepass`` (the one-pass reader of text tables), ``encode`` (genes to indices,
replicate merging, ids and splits), ``splits/`` (one module per split algorithm),
``stages`` (plan and build), ``store`` (the writer and :func:`open_dataset`).
"""
