"""What the precompute stage computes and how: :class:`PrecomputeConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core import options
from pipeline.core.options import option
from pipeline.core.perturbations import CODE_NAMES, CODES
from pipeline.precompute.khop import MODES
from pipeline.precompute.masks import REMOVING_TYPES

ARTIFACTS = ("masks", "khop", "adjacency-rows")
#: batch systems ``--dask-cluster`` submits dask workers to (through dask-jobqueue)
CLUSTERS = ("slurm", "pbs")
#: the ``--dask-cluster`` settings, which mean nothing without it
BATCH_FIELDS = ("dask_jobs", "dask_cores", "dask_memory", "dask_walltime", "dask_queue", "dask_account",
                "dask_interface", "dask_job_directives")


@dataclass(frozen=True)
class PrecomputeConfig:
    """The precompute stage's settings; validated on construction.

    >>> cfg = PrecomputeConfig(artifacts=("masks",), chunk_samples=1024)
    >>> cfg.removing_types, cfg.khop
    ((1, 2, 3, 6), (1, 2, 3))
    """

    artifacts: tuple[str, ...] = option(
        ARTIFACTS, flag="--precompute", style="csv", metavar="ART[,ART]",
        help="precompute per-sample artifacts: masks, khop, adjacency-rows (comma-separated)")
    khop: tuple[int, ...] = option((1, 2, 3), style="csv", metavar="K[,K]",
                                   help="hop counts of the k-hop sets (default: 1,2,3)")
    khop_modes: tuple[str, ...] = option(
        ("per_type",), flag="--khop-mode", style="csv", metavar="MODE[,MODE]",
        help="per_type (union of per-edge-type k-hop sets, the reference) and/or union "
             "(k-hop over the union graph) (default: per_type)")
    mask_types: tuple[str, ...] = option(
        tuple(CODE_NAMES[c] for c in REMOVING_TYPES), style="csv", metavar="TYPE[,TYPE]",
        help="perturbation types that remove a gene (node mask 0) (default: "
             + ",".join(CODE_NAMES[c] for c in REMOVING_TYPES) + ")")
    dense_edge_masks: bool = option(
        False, help="also write dense uint8 [samples, edges] edge masks per edge type (large)")
    lmdb: bool = option(False, help="also write per-sample records to OUT/NAME/records.lmdb")
    chunk_samples: int = option(4096, help="samples per chunk task and shard (a power of two, default 4096)")
    adjacency_graphs: tuple[str, ...] | None = option(
        None, style="csv", metavar="TYPE[,TYPE]", help="edge types to sample rows of (default: all)")
    adjacency_epochs: int = option(1, help="epochs of sampled rows (default: 1)")
    adjacency_steps: int | None = option(
        None, help="training steps per epoch (default: train samples / --adjacency-batch-size)")
    adjacency_batch_size: int = option(64, help="batch size that sets the default steps")
    adjacency_rows: int = option(256, help="rows sampled per graph and step (default: 256)")
    adjacency_negatives: int = option(64, help="negative columns per row (default: 64)")
    adjacency_sampling: str = option("uniform", choices=("uniform", "degree"),
                                     help="row sampling: uniform or proportional to degree (default: uniform)")
    adjacency_seed: int = option(0, help="seed of the row and negative sampling")
    dask_address: str | None = option(
        None, help="scheduler of an existing dask cluster (default: a new LocalCluster)")
    workers: int | None = option(None, help="LocalCluster worker processes (default: one per core)")
    dask_processes: bool = option(
        True, flag="--dask-threads", invert=True,
        help="run the LocalCluster's workers as threads of this process (small builds, tests)")
    dask_cluster: str | None = option(
        None, choices=CLUSTERS,
        help="start the dask workers as batch jobs through dask-jobqueue: slurm or pbs (default: a "
             "LocalCluster, or --dask-address)")
    dask_jobs: int = option(1, help="batch jobs to submit with --dask-cluster (default: 1)")
    dask_cores: int | None = option(
        None, help="cores per batch job, one single-threaded worker process each (default: jobqueue.yaml's)")
    dask_memory: str | None = option(None, help="memory per batch job, e.g. 16GB (default: jobqueue.yaml's)")
    dask_walltime: str | None = option(None, help="wall-time limit per batch job, e.g. 02:00:00")
    dask_queue: str | None = option(None, help="batch queue (SLURM partition) of the jobs")
    dask_account: str | None = option(None, help="account (project) the jobs are charged to")
    dask_interface: str | None = option(
        None, help="network interface of the scheduler and workers, e.g. ib0 (default: the host name's)")
    dask_job_directives: tuple[str, ...] = option(
        (), flag="--dask-job-directive", style="repeat", metavar="DIRECTIVE",
        help="an extra #SBATCH / #PBS line of the job script, e.g. --dask-job-directive=--constraint=cpu "
             "(repeatable)")

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        arts = tuple(a for a in self.artifacts.split(",") if a) if isinstance(self.artifacts, str) \
            else tuple(self.artifacts)
        bad = [a for a in arts if a not in ARTIFACTS]
        if bad:
            raise ValueError(f"--precompute: unknown artifact(s) {bad}; known: {', '.join(ARTIFACTS)}")
        put("artifacts", arts)
        put("khop", tuple(sorted({int(k) for k in self.khop})))
        if not self.khop or self.khop[0] < 1:
            raise ValueError(f"--khop: hop counts must be >= 1, got {self.khop}")
        put("khop_modes", tuple(dict.fromkeys(self.khop_modes)))
        bad = [m for m in self.khop_modes if m not in MODES]
        if bad:
            raise ValueError(f"--khop-mode: unknown {bad}; known: {', '.join(MODES)}")
        put("mask_types", tuple(self.mask_types))
        bad = [t for t in self.mask_types if t not in CODES]
        if bad:
            raise ValueError(f"--mask-types: unknown {bad}; known: {', '.join(CODES)}")
        if self.adjacency_graphs is not None:
            put("adjacency_graphs", tuple(self.adjacency_graphs))
        c = int(self.chunk_samples)
        if c < 64 or c & (c - 1):
            raise ValueError(f"--chunk-samples must be a power of two >= 64, got {c}")
        if self.adjacency_sampling not in ("uniform", "degree"):
            raise ValueError(f"--adjacency-sampling: expected uniform or degree, got {self.adjacency_sampling!r}")
        for name in ("adjacency_epochs", "adjacency_rows", "adjacency_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.adjacency_negatives < 0 or (self.adjacency_steps is not None and self.adjacency_steps < 1):
            raise ValueError("--adjacency-negatives must be >= 0 and --adjacency-steps >= 1")
        self._check_cluster(put)

    def _check_cluster(self, put: Any) -> None:
        """Where the tasks run: a LocalCluster, ``--dask-address`` or ``--dask-cluster``, never two."""
        put("dask_job_directives", tuple(self.dask_job_directives))
        flags = {f.name: options.flag(f) for f in options.fields_of(type(self))}
        if self.dask_cluster is None:
            plain = options.to_dict(self)
            given = [flags[n] for n in BATCH_FIELDS if plain[n] != options.plain_default(type(self), n)]
            if given:
                raise ValueError(f"{', '.join(given)} given without --dask-cluster: add --dask-cluster slurm|pbs "
                                 f"or drop {'them' if len(given) > 1 else 'it'}")
            return
        if self.dask_cluster not in CLUSTERS:
            raise ValueError(f"--dask-cluster: expected one of {', '.join(CLUSTERS)}, got {self.dask_cluster!r}")
        if self.dask_address:
            raise ValueError("--dask-cluster and --dask-address both given: the first starts a cluster, the "
                             "second names a running one; give one")
        if int(self.dask_jobs) < 1 or (self.dask_cores is not None and int(self.dask_cores) < 1):
            raise ValueError("--dask-jobs and --dask-cores must be >= 1")

    @property
    def removing_types(self) -> tuple[int, ...]:
        """The type codes of :attr:`mask_types`, in their order."""
        return tuple(CODES[t] for t in self.mask_types)

    def to_dict(self) -> dict[str, Any]:
        return options.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrecomputeConfig:
        return options.from_dict(cls, d, "precompute config")
