"""How the dataset stage reads and splits phenotype tables: :class:`DatasetConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core import options
from pipeline.core.errors import check_plain_name
from pipeline.core.options import option
from pipeline.dataset.sources import DATASETS


@dataclass(frozen=True)
class DatasetConfig:
    """The dataset stage's settings; validated on construction.

    >>> DatasetConfig(datasets=("kuzmin2018",)).split_fractions
    (0.8, 0.1, 0.1)
    """

    datasets: tuple[str, ...] = option(
        flag="--dataset", style="repeat", metavar="NAME",
        help=f"phenotype table to build the perturbation dataset from; repeatable ({', '.join(DATASETS)})")
    replicates: str = option("mean", choices=("mean", "first"),
                             help="how replicate measurements of one strain are merged (default: mean)")
    on_unknown_allele: str = option(
        "skip", choices=("skip", "error"),
        help="a strain id or allele that does not parse: skip its rows (counted) or stop (default: skip)")
    on_bad_value: str = option(
        "error", choices=("error", "drop"),
        help="a non-finite or out-of-range value (inf, nan, beyond float32, a P-value outside [0, 1], a negative "
             "deviation): stop naming file, line and column, or drop its row (counted) (default: error)")
    split_seed: int = option(0, help="seed of the split assignment (default: 0)")
    split_fractions: tuple[float, float, float] = option(
        (0.8, 0.1, 0.1), style="nargs", metavar=("TRAIN", "VAL", "TEST"),
        help="expected split fractions (default: 0.8 0.1 0.1)")

    def __post_init__(self) -> None:
        names = (self.datasets,) if isinstance(self.datasets, str) else tuple(self.datasets)
        object.__setattr__(self, "datasets", names)
        for n in names:
            check_plain_name("--dataset", n)
        unknown = [n for n in names if n not in DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; known: {', '.join(DATASETS)}")
        for name, allowed in (("replicates", ("mean", "first")), ("on_unknown_allele", ("skip", "error")),
                              ("on_bad_value", ("error", "drop"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')}: expected one of {allowed}, got {getattr(self, name)!r}")
        fr = tuple(float(x) for x in self.split_fractions)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-9:
            raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fr}")
        object.__setattr__(self, "split_fractions", fr)

    def to_dict(self) -> dict[str, Any]:
        return options.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetConfig:
        return options.from_dict(cls, d, "dataset config")
