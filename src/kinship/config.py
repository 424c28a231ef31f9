"""A typed loader for YAML sections: dataclasses in, clear errors out.

`from_mapping(Cls, data, "folds")` builds a dataclass from a mapping, checking every key and type.
An unknown key is an error that names its full path and suggests the closest valid key; a value of
the wrong type names its path, the expected type and what it got. Range checks live in each
dataclass's `__post_init__` and raise `ValueError` the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


def did_you_mean(name: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_error(path: str, key: str, valid: typing.Iterable[str]) -> ValueError:
    valid = sorted(valid)
    where = f"{path}.{key}" if path else key
    return ValueError(
        f"unknown key {where!r}{did_you_mean(key, valid)}; valid keys here: {', '.join(valid)}"
    )


def from_mapping(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass `cls` from `data`, validating keys and types; `path` names it in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a mapping, got {type(data).__name__}: {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(path, str(key), fields)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing key {key_path!r} ({type_name(hints[name])} expected)")
    return cls(**kwargs)


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check (and where lossless, convert) `value` against type annotation `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            with contextlib.suppress(ValueError):  # try the next type of the union
                return convert(option, value, path)
        raise _type_error(path, tp, value)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(path, tp, value)
        return [convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _type_error(path, tp, value)
        return tuple(
            convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(path, tp, value)
        return {
            convert(args[0], k, path): convert(args[1], v, f"{path}.{k}") for k, v in value.items()
        }
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ValueError(
                f"{path} must be one of {choices}, got {value!r}{did_you_mean(str(value), args)}"
            )
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(path, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(path, tp, value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(path, tp, value)
        return value
    raise TypeError(f"config type {tp!r} at {path} is not supported")  # a programming error


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "a mapping"
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    return getattr(tp, "__name__", str(tp))


def _type_error(path: str, tp: Any, value: Any) -> ValueError:
    return ValueError(f"{path} must be {type_name(tp)}, got {type(value).__name__}: {value!r}")


def check(condition: bool, path: str, expected: str, value: Any) -> None:
    """Raise a ValueError naming `path` unless `condition` holds."""
    if not condition:
        raise ValueError(f"{path} must be {expected}, got {value!r}")
