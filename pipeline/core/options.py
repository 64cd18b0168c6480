"""Configuration fields that know their command-line option: one declaration per setting.

A config is a frozen dataclass whose fields are declared with :func:`option`. From the
same fields come the CLI options (:func:`add_arguments`, :func:`from_namespace`), the
plain-JSON form (:func:`to_dict`, :func:`from_dict`) and the Prefect flow's parameters
(:func:`parameters`), so a new setting cannot reach one of them and miss another.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo:
...     names: tuple[str, ...] = option((), help="names", style="csv")
...     size: int = option(3, help="size")
>>> p = argparse.ArgumentParser()
>>> add_arguments(p, Demo)
>>> from_namespace(Demo, p.parse_args(["--names", "a,b"]))
Demo(names=('a', 'b'), size=3)
>>> to_dict(Demo(("x",), 4))
{'names': ['x'], 'size': 4}
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal

Style = Literal["repeat", "csv", "nargs"]


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line."""

    help: str
    flag: str | None = None  # default: --field-name
    metavar: str | tuple[str, ...] | None = None
    choices: tuple[str, ...] | None = None
    style: Style | None = None  # for tuples: --x A --x B | --x A,B | --x A B C
    required: bool = False
    invert: bool = False  # a bool that defaults to True, switched off by the flag


def option(default: Any = MISSING, *, help: str, **kw: Any) -> Any:  # noqa: A002 - argparse's name
    """A dataclass field with its CLI option (see :class:`Option`)."""
    return dataclasses.field(default=default, metadata={"option": Option(help=help, **kw)})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_none(tp: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` was allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _element(tp: Any) -> Any:
    """The element type of ``tuple[T, ...]`` / ``tuple[T, T, T]``; None for scalars."""
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0]
    return None


def flag(f: dataclasses.Field) -> str:
    """The field's command-line flag."""
    opt: Option = f.metadata["option"]
    return opt.flag or "--" + f.name.replace("_", "-")


def fields_of(cls: type) -> list[dataclasses.Field]:
    """The option fields of a config class, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "option" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """Add one argparse option per field of ``cls`` (dest = field name, default = None:
    :func:`from_namespace` applies the dataclass defaults)."""
    hints = _hints(cls)
    for f in fields_of(cls):
        opt: Option = f.metadata["option"]
        tp, _ = _strip_none(hints[f.name])
        elem = _element(tp)
        kw: dict[str, Any] = {"dest": f.name, "help": opt.help, "default": None}
        if tp is bool:
            kw["action"] = "store_false" if opt.invert else "store_true"
        else:
            kw.update(metavar=opt.metavar, choices=opt.choices, required=opt.required)
            if elem is None:
                kw["type"] = tp
            elif opt.style == "repeat":
                kw.update(action="append", type=elem)
            elif opt.style == "nargs":
                kw.update(nargs=len(typing.get_args(tp)), type=elem)
            else:  # csv: split in from_namespace
                kw["type"] = str
        if not kw.get("required"):
            kw.pop("required", None)
        parser.add_argument(flag(f), **{k: v for k, v in kw.items() if v is not None or k == "default"})


def _parse_csv(text: str, elem: Any) -> tuple[Any, ...]:
    return tuple(elem(x.strip()) for x in text.split(",") if x.strip())


def from_namespace(cls: type, ns: argparse.Namespace, **extra: Any) -> Any:
    """The config of the parsed options (unset options take the dataclass defaults)."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields_of(cls):
        v = getattr(ns, f.name, None)
        if v is None:
            continue
        tp, _ = _strip_none(hints[f.name])
        elem = _element(tp)
        opt: Option = f.metadata["option"]
        if tp is bool:
            v = bool(v)
        elif elem is not None:
            v = _parse_csv(v, elem) if opt.style not in ("repeat", "nargs") else tuple(v)
        values[f.name] = v
    return cls(**values, **extra)


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def plain_default(cls: type, name: str) -> Any:
    """The plain (JSON) form of a field's default."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _plain(f.default)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON values (paths as str, tuples as lists) of every option field."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in fields_of(type(cfg))}


def coerce(cls: type, name: str, value: Any) -> Any:
    """A plain value (JSON, Prefect parameter) as the field's type: str -> Path, list -> tuple."""
    tp, _ = _strip_none(_hints(cls)[name])
    if value is None:
        return None
    if tp is Path:
        return Path(value)
    if _element(tp) is not None:
        if isinstance(value, str):
            return _parse_csv(value, _element(tp))
        return tuple(value)
    return value


def from_dict(cls: type, d: dict[str, Any], what: str | None = None) -> Any:
    """The config of :func:`to_dict`'s output; unknown keys are an error naming them."""
    names = {f.name for f in fields_of(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{what or cls.__name__}: unknown setting(s) {unknown}; known: {', '.join(sorted(names))}")
    return cls(**{k: coerce(cls, k, v) for k, v in d.items()})


def _param_type(tp: Any) -> Any:
    """The Prefect parameter type of a field type: paths as str, tuples as lists."""
    base, optional = _strip_none(tp)
    elem = _element(base)
    out: Any = str if base is Path else (list[_param_type(elem)] if elem is not None else base)
    return out | None if optional else out


def parameters(cls: type, *, defaults: dict[str, Any] | None = None) -> list[inspect.Parameter]:
    """Keyword-only :class:`inspect.Parameter` objects of ``cls``'s fields (a flow signature)."""
    hints, out = _hints(cls), []
    for f in fields_of(cls):
        default = (defaults or {}).get(f.name, f.default)
        tp = _param_type(hints[f.name])
        if default is None:
            tp = tp | None
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=tp,
                                     default=inspect.Parameter.empty if default is MISSING else _plain(default)))
    return out
