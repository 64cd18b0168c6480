"""Prefect flows over the pipeline's stages (see :mod:`flows.build`).

The stages themselves live in :mod:`pipeline.graph.stages` and do not import Prefect;
this package only wraps them, so ``pipeline`` stays usable without a Prefect server.
"""
