"""Build frozen dataclasses from TOML-like data, with one-line errors naming file and key.

Field metadata understood: `doc` (documentation), `min` / `max` (numeric bounds), `expected`
(overrides the generated "expected ..." text), `nonempty` (strings/lists), `key` (the TOML key
when it is no Python name, e.g. `from`), `choices` (the strings a str field accepts, e.g.
policy names), `name` (a str field holding a name; fields called `name` are names too),
`max_len` (strings, default `MAX_TEXT_LEN`).
Every value goes through collectors.validate's checks: numbers finite and bounded, strings of
bounded length without NUL, names of a sane charset, arrays and tables of bounded size.
Types understood: bool, int, float, str, Path, Literal[...], X | None, list[X], tuple[X, ...],
frozenset[X], dict[str, X] / Mapping[str, X], and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from collectors.errors import InputError
from collectors.validate import (
    MAX_INT,
    MAX_TEXT_LEN,
    NAME_EXPECTED,
    NAME_RE,
    check_text,
    user_path,
)

MAX_ITEMS = 100_000  # entries of one array or table
MAX_PATH_LEN = 4096

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def build(cls: type[T], data: Mapping[str, Any], *, source: str, prefix: str = "") -> T:
    """Validate `data` against dataclass `cls`; unknown keys are errors."""
    return typing.cast(T, _build_dataclass(cls, data, source, prefix))


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Every key path of a dataclass model (`nodes[].port`, `policies.idle.window_s`)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{_key(f)}"
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            cls_, is_list = inner
            out.extend(field_paths(cls_, f"{path}[]." if is_list else f"{path}."))
        else:
            out.append(path)
    return out


def present_paths(cls: type, data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The `field_paths` of `cls` that `data` sets (same spelling: `nodes[].port`)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    names = {_key(f): f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            continue
        path = f"{prefix}{key}"
        inner = _dataclass_in(hints[names[key]])
        if inner is None:
            out.append(path)
        elif inner[1] and isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    out.extend(present_paths(inner[0], item, f"{path}[]."))
        elif isinstance(value, Mapping):
            out.extend(present_paths(inner[0], value, f"{path}."))
    return out


def _key(f: dataclasses.Field[Any]) -> str:
    """A field's key in the file: its name, or metadata `key` (`from` is no Python name)."""
    return str(f.metadata.get("key", f.name))


def _dataclass_in(tp: Any) -> tuple[type, bool] | None:
    tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, False
    origin = get_origin(tp)
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            return args[0], True
    return None


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _build_dataclass(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise InputError(source, prefix.rstrip(".") or None, "a table", got=data)
    hints = typing.get_type_hints(cls)
    fields = {_key(f): f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise InputError(source, f"{prefix}{key}", f"one of the known keys ({known})",
                             got=f"unknown key {key!r}", has_got=False) from None
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        path = f"{prefix}{name}"
        if name in data:
            meta = {**f.metadata, "name": True} if f.name == "name" else f.metadata
            kwargs[f.name] = _convert(hints[f.name], data[name], source, path, meta)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise InputError(source, path, f"a value ({_describe(hints[f.name], f.metadata)})")
    try:
        return cls(**kwargs)
    except InputError:
        raise
    except (ValueError, TypeError) as e:
        raise InputError(source, prefix.rstrip(".") or None, str(e)) from None


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    if "expected" in meta:
        return str(meta["expected"])
    tp = _strip_optional(tp)
    lo, hi = meta.get("min"), meta.get("max")
    rng = ""
    if lo is not None and hi is not None:
        rng = f" {lo}-{hi}"
    elif lo is not None:
        rng = f" >= {lo}"
    elif hi is not None:
        rng = f" <= {hi}"
    if tp is bool:
        return "true or false"
    if tp is int:
        return f"an integer{rng}"
    if tp is float:
        return f"a number{rng}"
    if tp is str:
        if meta.get("choices"):
            return "one of " + ", ".join(f'"{c}"' for c in meta["choices"])
        if meta.get("name"):
            return NAME_EXPECTED
        return "a non-empty string" if meta.get("nonempty") else "a string"
    if tp is Path:
        return "a path string"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in get_args(tp))
    origin = get_origin(tp)
    if origin in (list, tuple, frozenset, set):
        args = tuple(a for a in get_args(tp) if a is not Ellipsis)
        return f"an array of {_plural(_describe(args[0], {}))}" if args else "an array"
    if origin in (dict, Mapping) or tp is dict:
        args = get_args(tp)
        return f"a table of {_plural(_describe(args[1], {}))}" if args else "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _plural(desc: str) -> str:
    for art in ("an ", "a "):
        if desc.startswith(art):
            return desc[len(art):] + "s"
    return desc


def _convert(tp: Any, value: Any, source: str, path: str, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value, source, path, meta)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, value, source, f"{path}.")

    def fail() -> typing.NoReturn:
        raise InputError(source, path, _describe(tp, meta), got=value)

    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
            fail()
        _check_range(value, source, path, tp, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail()
        if (isinstance(value, int) and abs(value) > MAX_INT) or not math.isfinite(value):
            raise InputError(source, path, "a finite " + _describe(tp, meta).removeprefix("a "),
                             got=value)
        _check_range(value, source, path, tp, meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str) or (meta.get("nonempty") and not value.strip()):
            fail()
        if meta.get("name") and not NAME_RE.fullmatch(value):
            fail()
        check_text(value, source=source, key=path, max_len=meta.get("max_len", MAX_TEXT_LEN))
        if meta.get("choices") and value not in meta["choices"]:
            fail()
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            fail()
        check_text(value, source=source, key=path, max_len=MAX_PATH_LEN)
        return user_path(value, source=source, key=path)
    if origin is Literal:
        if value not in get_args(tp):
            fail()
        return value
    if origin in (list, tuple, frozenset, set):
        if not isinstance(value, list):
            fail()
        if len(value) > MAX_ITEMS:
            raise InputError(source, path, f"at most {MAX_ITEMS} entries", got=value)
        elem_args = [a for a in get_args(tp) if a is not Ellipsis]
        elem = elem_args[0] if elem_args else Any
        items = [
            _convert(elem, v, source, f"{path}[{i}]", {}) if elem is not Any else v
            for i, v in enumerate(value)
        ]
        if meta.get("nonempty") and not items:
            fail()
        if origin is list:
            return items
        return tuple(items) if origin is tuple else frozenset(items)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            fail()
        if len(value) > MAX_ITEMS:
            raise InputError(source, path, f"at most {MAX_ITEMS} entries", got=value)
        for k in value:
            check_text(str(k), source=source, key=path, max_len=256)
        kv = get_args(tp)
        vt = kv[1] if len(kv) == 2 else Any
        return {
            str(k): (_convert(vt, v, source, f"{path}.{k}", {}) if vt is not Any else v)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _check_range(value: float, source: str, path: str, tp: Any,
                 meta: Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(source, path, _describe(tp, meta), got=value)


