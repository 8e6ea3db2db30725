"""Parse-time value checks shared by the command-line tools, so bad values fail at parse time with one line:
argparse `type=` parsers, and the check of a recipe value against its dataclass field's type."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

_BOOL_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n", "1", "0"}  # transformers' string_to_bool


def at_least(kind: type, minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """A parser of `kind` (int or float) that refuses values below `minimum` (or equal to it, if not inclusive)."""
    noun, op = ("an integer" if kind is int else "a number"), (">=" if inclusive else ">")

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if v < minimum or (not inclusive and v == minimum):
            raise argparse.ArgumentTypeError(f"must be {op} {minimum} (got {text})")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid … value" message
    return parse


def field_types(dataclass_type: type) -> dict[str, Any]:
    """Field name -> its resolved type annotation (the raw annotation where it cannot be resolved)."""
    try:
        hints = typing.get_type_hints(dataclass_type)
    except (NameError, TypeError):
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(dataclass_type) if f.init}


def check_field_value(kind: Any, value: Any) -> str | None:
    """None when `value` (as YAML parsed it) fits the annotation `kind`, else `expected <type>, got <value>`.

    An int fits a float; a bool fits only bool; a string fits wherever the command-line parser converts it (a
    number, a boolean word, an enum or choice value), so recipe strings are checked with the same rules."""
    if _fits(kind, value):
        return None
    return f"expected {type_name(kind)}, got {value!r}"


def type_name(kind: Any) -> str:
    """A readable name of an annotation: `int`, `float or None`, `list of str`, `one of 'k1', 'k3'`."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is type(None) or kind is None:
        return "None"
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(type_name(a) for a in args))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple, set, frozenset, typing.Sequence):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict or kind is dict:
        return "mapping"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        values = [repr(m.value) for m in kind]
        return "one of " + ", ".join(values[:6]) + (f", … ({len(values)} values)" if len(values) > 6 else "")
    return getattr(kind, "__name__", str(kind))


def _fits(kind: Any, value: Any) -> bool:
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any or kind is object or isinstance(kind, (str, typing.TypeVar)):
        return True  # unresolved or open annotation: nothing to check against
    if kind is type(None) or kind is None:
        return value is None
    if origin in (Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args) or str(value) in map(str, args)
    if origin in (list, tuple, set, frozenset, typing.Sequence):
        item = args[0] if args else Any
        if isinstance(value, list):
            return all(_fits(item, v) for v in value)
        return isinstance(value, str) and _fits(item, value)  # one word on the command line is a one-item list
    if origin is dict or kind is dict:
        return isinstance(value, (dict, str))  # a string is parsed as JSON by the trainer's arguments
    if kind is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOL_WORDS)
    if kind is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and _parses(int, value))
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and _parses(float, value))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return isinstance(value, kind) or value in {m.value for m in kind}
    if kind is str:
        return isinstance(value, str)
    if isinstance(kind, type) and origin is None:
        return isinstance(value, kind) or isinstance(value, str)
    return True


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True
