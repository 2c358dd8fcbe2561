"""The machinery under config.py: a documented field (`setting`), the coercion of YAML and command-line values to a
field's annotation, and `Group`, which validates every field of a config group on construction."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from typing import Any, Literal

from .errors import ConfigError


def setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None):
    """A documented field; mutable defaults are copied per instance."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    if annotation in names:
        return names[annotation]
    if origin is list:
        return "a list of " + describe(typing.get_args(annotation)[0]).removeprefix("a ").removeprefix("an ")
    if origin is dict:
        return "a mapping"
    return str(annotation)


def coerce(value: Any, annotation: Any) -> Any:
    """Return value converted to the annotation, or raise ValueError."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise ValueError
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return coerce(value, option)
            except ValueError:
                continue
        raise ValueError
    if annotation is type(None):
        if value is None:
            return None
        raise ValueError
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if origin is list:
        if isinstance(value, str):  # a single name where a list is expected: be forgiving
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError
        (item_type,) = typing.get_args(annotation)
        return [coerce(item, item_type) for item in value]
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError
    raise TypeError(f"unsupported config annotation {annotation}")


class Group:
    """Base for config groups: validates and normalises every field on construction."""

    section: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            where = f"{self.section}.{spec.name}"
            try:
                value = coerce(value, hints[spec.name])
            except ValueError:
                raise ConfigError(
                    f"{where}: got {value!r} ({type(value).__name__}); expected {describe(hints[spec.name])}"
                ) from None
            low, high = spec.metadata.get("minimum"), spec.metadata.get("maximum")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if (low is not None and value < low) or (high is not None and value > high):
                    raise ConfigError(f"{where}: got {value!r}; allowed range is [{low}, {high}]")
            setattr(self, spec.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules of a group."""
