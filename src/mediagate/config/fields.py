"""How a setting is declared: once, on its section's field, with its variable's name, its
default, its parser and its meaning. The loader, the masked view and the documentation
all read these declarations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it in one line."""


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Derived:
    """A default computed from the variables read before it (by name) and the raw
    environment; `shown` is how the documentation states it."""

    compute: Callable[[Mapping[str, Any], Mapping[str, str]], Any]
    shown: str


def same_as(name: str) -> Derived:
    return Derived(lambda loaded, _env: loaded[name], f"`{name}`")


@dataclass(frozen=True, slots=True)
class Parser(Generic[T]):
    parse: Callable[[str], T]
    # Completes "X must be …" in the error naming a bad value.
    expected: str


@dataclass(frozen=True, slots=True)
class Declaration:
    variable: str
    default: Any
    parser: Parser[Any]
    meaning: str
    secret: bool


def setting(
    variable: str, default: Any, parser: Parser[Any], meaning: str, *, secret: bool = False
) -> Any:
    """A section's field: read from `variable`, else `default` (REQUIRED, a value, or
    Derived), parsed by `parser`."""
    declaration = Declaration(variable, default, parser, meaning, secret)
    return dataclasses.field(metadata={"setting": declaration})


def declarations(section: type) -> list[tuple[str, Declaration]]:
    return [(f.name, f.metadata["setting"]) for f in dataclasses.fields(section)]


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(value)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError(value)
    return number


def _delays(value: str) -> tuple[int, ...]:
    delays = tuple(_positive_int(item) for item in _csv(value))
    if not delays:
        raise ValueError(value)
    return delays


def _seconds_list(value: str) -> tuple[float, ...]:
    seconds = tuple(float(item) for item in _csv(value))
    if not seconds or any(not 0 <= second < float("inf") for second in seconds):
        raise ValueError(value)
    return seconds


TEXT = Parser(str, "text")
POSITIVE_INT = Parser(_positive_int, "a positive integer")
POSITIVE_FLOAT = Parser(_positive_float, "a positive number")
FLAG = Parser(_flag, "true or false")
CSV = Parser(_csv, "comma-separated")
PORT = Parser(_port, "a TCP port (1-65535)")
DELAYS = Parser(_delays, "comma-separated positive ms")
UPPER = Parser(str.upper, "text")
SECONDS_LIST = Parser(_seconds_list, "comma-separated seconds (0 or more)")


def bounded_int(low: int, high: int | None, expected: str) -> Parser[int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ValueError(value)
        return number

    return Parser(parse, expected)


def one_of(*choices: str) -> Parser[str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(value)
        return value

    return Parser(parse, f"{', '.join(choices[:-1])} or {choices[-1]}")


def url(*schemes: str) -> Parser[str]:
    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(value)
        return value.rstrip("/")

    return Parser(parse, f"a {'/'.join(schemes)} URL")


def url_list(*schemes: str) -> Parser[str]:
    """One URL, or several comma-separated (the nodes of a cluster, in order of preference)."""
    one = url(*schemes).parse

    def parse(value: str) -> str:
        return ",".join(one(part.strip()) for part in value.split(","))

    return Parser(parse, f"{'/'.join(schemes)} URLs, comma-separated")
