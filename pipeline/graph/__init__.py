"""The graph stage: raw interaction sources -> one versioned multigraph store (``graph.zarr``).

``config`` (:class:`GraphConfig`), ``sources`` (what ``--graphs`` names: sources, edge
types, files), ``csr`` (deduplicated CSR, incidence, mirrors), ``features`` (per-gene
features, embeddings, added genes), ``stages`` (plan, read, write, publish; the graph
stage's step sequence), ``store`` (the writer and :func:`open_graph`, the only reader of
its paths).
"""
