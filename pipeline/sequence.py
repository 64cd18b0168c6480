"""The one stage sequence of a build: graph -> dataset -> precompute, for the CLI and the flow alike.

:func:`run_build` takes a ``run`` callable that executes one step
(:class:`pipeline.core.runner.LocalRunner` in the CLI, a Prefect task wrapper in
``flows/build.py``); each stage package sequences its own steps
(:func:`~pipeline.graph.stages.run_graph_build`, the dataset's plan/build,
:func:`~pipeline.precompute.stages.run_precompute`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import BuildConfig
from pipeline.core.errors import PipelineError, StoreError
from pipeline.core.lock import store_lock
from pipeline.core.remote import DATASET_MARKER, ZARR_MARKER, check_reachable, join, publish_tree
from pipeline.core.runner import LocalRunner, Runner
from pipeline.dataset.stages import build_dataset, plan_dataset
from pipeline.graph.stages import run_graph_build
from pipeline.precompute.stages import plan_precompute, run_precompute

log = logging.getLogger("pipeline.build")


@dataclass(frozen=True)
class BuildResult:
    """The stores of a build (None: stage not configured) and whether this run wrote each
    (False: it was up to date)."""

    graph: Path
    graph_built: bool
    dataset: Path | None = None
    dataset_built: bool = False
    precomputed: Path | None = None
    precomputed_built: bool = False
    remote: str | None = None  # --out URL: the stores were published to remote/<store>


def run_build(cfg: BuildConfig, run: Runner | None = None) -> BuildResult:
    """Run the configured stages in order; each skips itself when its store is current.

    Each stage holds its store's lock (:func:`pipeline.core.lock.store_lock`) from its plan
    to its publish: a second build of the same store fails at once, or waits with ``--wait``
    (and then usually finds the store up to date). With ``--out URL`` the stages build in a
    local staging folder (:func:`pipeline.core.remote.staging_root`) and each store is then
    published to the URL (:func:`publish_build`)."""
    run = run or LocalRunner()
    ws = cfg.workspace
    if ws.remote is not None:
        check_reachable(ws.remote)  # fail before building, not after
    res = _run_stages(cfg, run)
    return res if ws.remote is None else run(publish_build, res, ws.remote, ws.wait)


def publish_build(res: BuildResult, url: str, wait: bool = False) -> BuildResult:
    """Copy each store of ``res`` to ``url/<store>`` (:func:`pipeline.core.remote.publish_tree`: the
    marker last), in build order, so that a published precomputed store implies its graph and
    dataset are there; each under its local lock."""
    for path, marker in ((res.graph, ZARR_MARKER), (res.dataset, DATASET_MARKER), (res.precomputed, ZARR_MARKER)):
        if path is not None:
            target = str(join(url, path.name))
            with store_lock(path, wait=wait):
                try:
                    publish_tree(path, target, marker)
                except PipelineError:
                    raise
                except Exception as e:  # fsspec/botocore: credentials, endpoint, permissions, network
                    raise StoreError(f"{target}: publishing failed ({type(e).__name__}: {e}); it does not read as "
                                     "a store; rerun to publish it") from e
    return replace(res, remote=url)


def _run_stages(cfg: BuildConfig, run: Runner) -> BuildResult:
    ws = cfg.workspace
    graph, graph_built = run_graph_build(cfg.graph, ws, run)
    if cfg.dataset is None:
        return BuildResult(graph, graph_built)
    with store_lock(ws.dataset_store, wait=ws.wait):
        dplan = run(plan_dataset, cfg.dataset, ws)
        if dplan.up_to_date:
            log.info("%s is up to date (build key %s): nothing to do", dplan.store, dplan.key[:12])
            dataset, dataset_built = dplan.store, False
        else:
            dataset, dataset_built = run(build_dataset, dplan), True
    done = BuildResult(graph, graph_built, dataset, dataset_built)
    if cfg.precompute is None:
        return done
    with store_lock(ws.precomputed_store, wait=ws.wait):  # also covers records.lmdb, published with it
        pplan = run(plan_precompute, cfg.precompute, graph, dataset, ws.force)
        if pplan.up_to_date:
            log.info("%s is up to date (build key %s): nothing to do", pplan.store, pplan.key[:12])
            return replace(done, precomputed=pplan.store)
        return replace(done, precomputed=run_precompute(pplan, run), precomputed_built=True)
