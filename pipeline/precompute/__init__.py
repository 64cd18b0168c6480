"""The precompute stage: (graph store, dataset) -> per-sample masks, k-hop sets and adjacency rows.

Algorithms (pure numpy): ``masks``, ``khop``, ``adjacency``. ``config``
(:class:`PrecomputeConfig`), ``stages`` (plan, prepare, run the tasks, records, publish;
the stage's step sequence), ``tasks`` (what runs on dask workers), ``cluster`` (the dask
client), ``store`` (the Zarr layout's writer helpers and :func:`open_precomputed`),
``records/`` (the LMDB record format: format, writer, reader), ``verify`` (checksums and
recomputed samples of a published store).
"""
