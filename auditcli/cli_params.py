"""Option values converted without pydantic, for the plain types the commands declare.

Typer converts every option through a pydantic TypeAdapter built on first use: importing
pydantic and building the adapters costs more than the rest of a short command (`audit query
--count`, `audit record` in a shell loop). The values auditcli's options take (text, whole
numbers, numbers, paths, choices, lists and pairs of these) convert here directly. Anything
this module is not sure of (a malformed number, a choice not spelled exactly, a value that is
not text) goes to Typer's own conversion, which gives the answer or the error it always gave:
this path only ever accepts what that one accepts, with the same result.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

from typer._coercion import RuntimeParam, build_runtime_param
from typer._param_types import coerce_cli_path

#: Whole numbers and decimals as typed on a command line; anything else (`+5`, `1_000`, `1e3`,
#: ` 5`, leading zeros, other scripts' digits) is left to pydantic's rules.
_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")

Convert = Callable[[Any, Any, Any], Any]


class _Unsure(Exception):
    """The value is not one this module converts: Typer's own conversion decides."""


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """Typer's runtime conversion of one parameter, done by `convert` when it is sure."""

    convert: Convert

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.convert(value, param, ctx)
        except _Unsure:
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param, ctx)


def plain_param(param: Any) -> PlainParam | None:
    """The pydantic-free conversion of a Typer parameter, or None when its type is not one of
    the plain ones (Typer then converts it as usual)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or descriptor.file_annotation is not None:
        return None
    info = descriptor.parameter_info
    if info.parser is not None or info.clamp or getattr(info, "path_type", None) is not None:
        return None
    annotation = descriptor.annotation
    origin = get_origin(annotation)
    if origin is list:
        (item,) = get_args(annotation)
        one = _leaf(item, info)
        if one is None:
            return None
        return PlainParam(info, annotation, _list_of(one))
    if origin is tuple:
        items = [_leaf(item, info) for item in get_args(annotation)]
        if any(one is None for one in items):
            return None
        return PlainParam(info, annotation, _tuple_of(items))
    one = _leaf(annotation, info)
    return None if one is None else PlainParam(info, annotation, one)


def _leaf(annotation: Any, info: Any) -> Convert | None:
    if annotation is str:
        return _text
    if annotation is bool:
        return _bool
    if annotation is int:
        return _number(int, _WHOLE, info.min, info.max)
    if annotation is float:
        return _number(float, _DECIMAL, info.min, info.max)
    if annotation is Path and not info.resolve_path and not info.allow_dash:
        return _path
    if isinstance(annotation, type) and issubclass(annotation, Enum) and info.case_sensitive:
        return _choice({str(member.value): member for member in annotation})
    return None


def _text(value: Any, param: Any, ctx: Any) -> str:
    if type(value) is not str:
        raise _Unsure
    return value


def _bool(value: Any, param: Any, ctx: Any) -> bool:
    if type(value) is not bool:
        raise _Unsure
    return value


def _number(kind: type, shape: re.Pattern[str], low: Any, high: Any) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if type(value) is kind:
            number = value
        elif type(value) is str and shape.fullmatch(value):
            number = kind(value)
        else:
            raise _Unsure
        if (low is not None and number < low) or (high is not None and number > high):
            raise _Unsure  # out of range: the error message is Typer's
        return number

    return convert


def _path(value: Any, param: Any, ctx: Any) -> Any:
    if type(value) is not str or not value or "\x00" in value:
        raise _Unsure
    # Typer's own checks (exists, file/dir, readable) for a value already a Path.
    return coerce_cli_path(
        Path(value), param.type_descriptor.parameter_info, path_type=Path, param=param, ctx=ctx
    )


def _choice(members: dict[str, Enum]) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, Enum) and value in members.values():
            return value
        if type(value) is not str or value not in members:
            raise _Unsure
        if ctx is not None and ctx.token_normalize_func is not None:
            raise _Unsure
        return members[value]

    return convert


def _list_of(one: Convert) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> list[Any]:
        items = value if isinstance(value, list | tuple) else [value]
        return [one(item, param, ctx) for item in items]

    return convert


def _tuple_of(items: list[Any]) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise _Unsure
        return tuple(one(item, param, ctx) for one, item in zip(items, value, strict=True))

    return convert
