"""Data pipeline for perturbation-graph machine learning on S. cerevisiae.

Public entry points:

- ``python -m pipeline.build``: build a multigraph store from raw sources.
- :func:`pipeline.graph.store.open_graph`: open a built graph without Prefect.
"""

__version__ = "0.1.0"
