"""Custom scalars. Bad input raises GraphQLError so it is reported as BAD_USER_INPUT."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    StringValueNode,
    ValueNode,
    value_from_ast_untyped,
)


def _parse_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise GraphQLError("UUID must be a string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise GraphQLError(f"{value!r} is not a valid UUID") from None


def _parse_uuid_literal(node: ValueNode, _variables: Any = None) -> uuid.UUID:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("UUID must be a string")
    return _parse_uuid(node.value)


def _serialize_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        raise GraphQLError("DateTime must be a datetime")
    return value.isoformat()


_LONG_MAX = 2**63 - 1
# JSON numbers above 2^53 lose precision in JavaScript: a client may send a decimal string.
_DIGITS = frozenset("0123456789")


def _serialize_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError("Long must be an integer")
    return value


def _parse_long(value: Any) -> int:
    digits = value.removeprefix("-") if isinstance(value, str) else ""
    if 0 < len(digits) <= 19 and set(digits) <= _DIGITS:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _LONG_MAX:
        raise GraphQLError("Long must be a 64-bit integer (a number or a decimal string)")
    return value


def _parse_long_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode | StringValueNode):
        raise GraphQLError("Long must be a 64-bit integer (a number or a decimal string)")
    # An integer literal is a string of digits too: the same length check comes before
    # int(), which would otherwise refuse thousands of digits with a ValueError of its own.
    return _parse_long(node.value)


def _identity(value: Any) -> Any:
    return value


def bind_scalars(schema: GraphQLSchema) -> None:
    uuid_type = schema.type_map["UUID"]
    assert isinstance(uuid_type, GraphQLScalarType)
    uuid_type.serialize = str  # type: ignore[method-assign,assignment]
    uuid_type.parse_value = _parse_uuid  # type: ignore[method-assign]
    uuid_type.parse_literal = _parse_uuid_literal  # type: ignore[method-assign,assignment]
    datetime_type = schema.type_map["DateTime"]
    assert isinstance(datetime_type, GraphQLScalarType)
    datetime_type.serialize = _serialize_datetime  # type: ignore[method-assign]
    long_type = schema.type_map["Long"]
    assert isinstance(long_type, GraphQLScalarType)
    long_type.serialize = _serialize_long  # type: ignore[method-assign]
    long_type.parse_value = _parse_long  # type: ignore[method-assign]
    long_type.parse_literal = _parse_long_literal  # type: ignore[method-assign,assignment]
    # JSON: as decoded from the request; literals by graphql-core's untyped reading.
    json_type = schema.type_map["JSON"]
    assert isinstance(json_type, GraphQLScalarType)
    json_type.serialize = _identity  # type: ignore[method-assign]
    json_type.parse_value = _identity  # type: ignore[method-assign]
    json_type.parse_literal = value_from_ast_untyped  # type: ignore[method-assign,assignment]
