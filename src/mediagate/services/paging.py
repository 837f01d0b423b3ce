"""Cursor pages in the shape of a GraphQL connection, and the opaque cursors they hand out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mediagate.errors import BadUserInput

T = TypeVar("T")
_MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Edge(Generic[T]):
    cursor: str
    node: T


@dataclass(frozen=True, slots=True)
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def connection(items: list[T], first: int, cursor_of: Callable[[T], str]) -> Connection[T]:
    """The page of `first` items out of `items`, read one past the page to tell whether
    another follows."""
    edges = [Edge(cursor_of(item), item) for item in items[:first]]
    end_cursor = edges[-1].cursor if edges else None
    return Connection(edges, PageInfo(len(items) > first, end_cursor))


def encode_cursor(kind: str, position: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_cursor(kind: str, cursor: str) -> str:
    """The position a cursor of this kind holds; BAD_USER_INPUT for anything else."""
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    prefix = f"{kind}:"
    if not decoded.startswith(prefix):
        raise BadUserInput("after is not a cursor this API issued", field="after")
    return decoded.removeprefix(prefix)


def decode_id_cursor(kind: str, cursor: str | None) -> int:
    """A cursor holding a bigint id (0 before the first)."""
    if cursor is None:
        return 0
    digits = decode_cursor(kind, cursor)
    if digits.isascii() and digits.isdigit() and len(digits) <= 19 and int(digits) <= _MAX_BIGINT:
        return int(digits)
    raise BadUserInput("after is not a cursor this API issued", field="after")
