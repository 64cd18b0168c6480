"""The one configuration model of a build: :class:`BuildConfig` = where + graph + dataset + precompute.

Each stage package owns its config (:class:`~pipeline.graph.config.GraphConfig`,
:class:`~pipeline.dataset.config.DatasetConfig`,
:class:`~pipeline.precompute.config.PrecomputeConfig`); every field is declared once with
its CLI option (:mod:`pipeline.core.options`). From those declarations come

- the CLI options of ``python -m pipeline.build`` (:meth:`BuildConfig.add_arguments`,
  :meth:`BuildConfig.from_args`),
- the nested JSON form (:meth:`BuildConfig.to_dict` / :meth:`BuildConfig.from_dict`), and
- the flat parameters of the Prefect flow (:meth:`BuildConfig.parameters`,
  :meth:`BuildConfig.to_params` / :meth:`BuildConfig.from_params`): one parameter per
  field, named like the field.

>>> cfg = BuildConfig.from_params({"graphs": ["string12"], "datasets": ["kuzmin2018"]})
>>> cfg.dataset.datasets, cfg.precompute is None, cfg.build_name
(('kuzmin2018',), True, 'string12')
>>> BuildConfig.from_params(cfg.to_params()) == cfg
True
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core import options
from pipeline.core.errors import check_plain_name
from pipeline.core.options import option
from pipeline.core.paths import Workspace
from pipeline.core.remote import is_url, join, location, staging_root
from pipeline.dataset.config import DatasetConfig
from pipeline.graph.config import GraphConfig
from pipeline.graph.sources import resolve
from pipeline.precompute.config import PrecomputeConfig

#: Where raw inputs are read from when ``--raw`` is not given (relative to the working directory).
DEFAULT_RAW = Path("data/raw")

@dataclass(frozen=True)
class Where:
    """Where a build reads and writes, and whether it rebuilds what is current."""

    # str | Path: the option takes a string, so that a URL never goes through pathlib.Path
    raw: str | Path | None = option(None, help="folder of raw inputs; given, every input the build reads must be "
                                               "there (default: data/raw, where a missing input falls back to the "
                                               "bundled SYNTHETIC sample)")
    out: str | Path = option(Path("data/processed"), help="folder of built stores, or an fsspec URL (s3://bucket/"
                                                          "builds: built locally, then published there; see "
                                                          "pipeline.core.remote) (default: data/processed)")
    name: str | None = option(None, help="build name: the stores go to OUT/NAME/ (default: the sources)")
    force: bool = option(False, help="rebuild even if the store is up to date")
    wait: bool = option(False, help="if another build of a store is running, wait for it (default: fail at once)")

    def __post_init__(self) -> None:
        if self.raw is not None:
            raw = location(self.raw, "--raw")
            if isinstance(raw, str):
                raise ValueError(f"--raw {raw}: raw inputs are read from a local folder; copy them there first")
            object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "out", location(self.out, "--out"))
        if self.name is not None:  # OUT/NAME must stay inside OUT
            check_plain_name("--name", self.name)

    @property
    def raw_dir(self) -> Path:
        """The folder inputs are read from: ``raw``, or ``data/raw`` when none was given."""
        return DEFAULT_RAW if self.raw is None else self.raw


# (section, config class, the field whose value switches the stage on in the flat form)
_SECTIONS: tuple[tuple[str, type, str | None], ...] = (
    ("where", Where, None), ("graph", GraphConfig, None), ("dataset", DatasetConfig, "datasets"),
    ("precompute", PrecomputeConfig, "artifacts"))


@dataclass(frozen=True)
class BuildConfig:
    """A whole build: the graph stage always, the dataset and precompute stages when configured."""

    graph: GraphConfig
    dataset: DatasetConfig | None = None
    precompute: PrecomputeConfig | None = None
    where: Where = Where()

    def __post_init__(self) -> None:
        if self.precompute is not None and self.dataset is None:
            raise ValueError("--precompute needs the perturbation dataset: add --dataset NAME")
        if is_url(self.where.out) and self.precompute is not None and self.precompute.lmdb:
            raise ValueError(f"--lmdb with --out {self.where.out}: LMDB records are memory-mapped from a local file "
                             "system and are not published to object stores; drop --lmdb or use a local --out")

    @classmethod
    def create(cls, *, graphs: Any, datasets: Any = (), precompute: PrecomputeConfig | dict | None = None,
               **flat: Any) -> BuildConfig:
        """A config from keyword settings named like the CLI options' fields (``raw``, ``genes``,
        ``replicates``, ...); ``precompute`` as a config or its dict.

        >>> BuildConfig.create(graphs=["physical"], out="/tmp/x").where.out
        PosixPath('/tmp/x')
        """
        params: dict[str, Any] = {"graphs": graphs, "datasets": list(datasets), **flat}
        if isinstance(precompute, PrecomputeConfig):
            params.update(precompute.to_dict())
        elif precompute is not None:
            params.update({"artifacts": list(PrecomputeConfig().artifacts), **precompute})
        return cls.from_params(params)

    @property
    def workspace(self) -> Workspace:
        out = self.where.out
        if isinstance(out, str):  # a URL: built in a local staging folder, then published (pipeline.sequence)
            return Workspace(self.where.raw_dir, staging_root(out) / self.build_name, self.where.force,
                             self.where.wait, samples=self.where.raw is None, remote=str(join(out, self.build_name)))
        return Workspace(self.where.raw_dir, out / self.build_name, self.where.force, self.where.wait,
                         samples=self.where.raw is None)

    @property
    def build_name(self) -> str:
        return self.where.name or "+".join(sorted(resolve(list(self.graph.graphs))))

    def replace(self, **sections: Any) -> BuildConfig:
        return replace(self, **sections)

    # --- nested JSON -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {name: (None if getattr(self, name) is None else getattr(self, name).to_dict()
                       if name != "where" else options.to_dict(self.where)) for name, _, _ in _SECTIONS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        unknown = sorted(set(d) - {n for n, _, _ in _SECTIONS})
        if unknown:
            raise ValueError(f"build config: unknown section(s) {unknown}")
        made = {name: options.from_dict(kind, d[name], f"{name} config")
                for name, kind, _ in _SECTIONS if d.get(name) is not None}
        return cls(**made)

    # --- flat: CLI options and flow parameters -------------------------------------------

    @classmethod
    def parameters(cls) -> inspect.Signature:
        """The flow's signature: one keyword parameter per field; a stage's switch field
        (``datasets``, ``artifacts``) defaults to off."""
        params = []
        for _, kind, switch in _SECTIONS:
            params += options.parameters(kind, defaults={switch: None} if switch else None)
        return inspect.Signature(params, return_annotation=str)

    def to_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, _, switch in _SECTIONS:
            sub = getattr(self, name)
            if sub is None:
                out[switch] = None  # the stage is off; its other fields keep their defaults
            else:
                out.update(options.to_dict(sub))
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BuildConfig:
        known = {f.name for _, kind, _ in _SECTIONS for f in options.fields_of(kind)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {', '.join(sorted(known))}")
        made: dict[str, Any] = {}
        for name, kind, switch in _SECTIONS:
            sub = {f.name: params[f.name] for f in options.fields_of(kind) if params.get(f.name) is not None}
            if switch and not sub.get(switch):
                _unused(kind, switch, {k: v for k, v in sub.items()
                                       if k != switch and v != options.plain_default(kind, k)})
                continue
            made[name] = options.from_dict(kind, sub, f"{name} config")
        return cls(**made)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        options.add_arguments(parser, GraphConfig)
        options.add_arguments(parser, Where)
        options.add_arguments(parser.add_argument_group("dataset"), DatasetConfig)
        options.add_arguments(parser.add_argument_group("precompute (needs --dataset)"), PrecomputeConfig)

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> BuildConfig:
        sub = {}
        for name, kind, switch in _SECTIONS:
            if switch and not getattr(ns, switch, None):
                _unused(kind, switch, {f.name: v for f in options.fields_of(kind) if (v := getattr(ns, f.name, None))
                                       is not None})
                continue
            sub[name] = options.from_namespace(kind, ns)
        return cls(**sub)


def _unused(kind: type, switch: str, given: dict[str, Any]) -> None:
    """A stage's settings given while the stage is off would be dropped silently: refuse them."""
    if given:
        flags = {f.name: options.flag(f) for f in options.fields_of(kind)}
        raise ValueError(f"{', '.join(flags[k] for k in given)} given without {flags[switch]}: "
                         f"add {flags[switch]} or drop {'them' if len(given) > 1 else 'it'}")
