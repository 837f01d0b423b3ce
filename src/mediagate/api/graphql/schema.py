"""The schema from its SDL, with our scalars and resolvers bound, and the directive that
guards a field (@authenticated)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
)

from mediagate.api.graphql.scalars import bind_scalars

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")


Resolver = Callable[..., Awaitable[Any]]


@lru_cache(maxsize=256)
def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def default_field_resolver(source: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
    """camelCase GraphQL fields read snake_case attributes of our dataclasses."""
    return getattr(source, _snake_case(info.field_name), None)


def load_schema(
    resolvers: dict[str, Resolver],
    authenticate: Callable[[Any], Awaitable[None]],
    subscriptions: dict[str, Resolver],
) -> GraphQLSchema:
    """Build the schema from the SDL and attach resolvers ('Type.field' -> function), and
    for subscription fields the function that returns their event stream.

    Fields marked @authenticated run `authenticate(context)` first.
    """
    schema = build_schema(SCHEMA_PATH.read_text())
    bind_scalars(schema)
    for path, resolver in resolvers.items():
        field = _field(schema, path)
        field.resolve = _guarded(resolver, authenticate) if _is_authenticated(field) else resolver
    for path, source in subscriptions.items():
        field = _field(schema, path)
        field.subscribe = _guarded(source, authenticate) if _is_authenticated(field) else source
    return schema


def _field(schema: GraphQLSchema, path: str) -> GraphQLField:
    type_name, field_name = path.split(".")
    owner = schema.type_map[type_name]
    assert isinstance(owner, GraphQLObjectType), path
    field: GraphQLField = owner.fields[field_name]
    return field


def _is_authenticated(field: GraphQLField) -> bool:
    node = field.ast_node
    return node is not None and any(d.name.value == "authenticated" for d in node.directives)


def _guarded(resolver: Resolver, authenticate: Callable[[Any], Awaitable[None]]) -> Resolver:
    async def guarded(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        await authenticate(info.context)
        return await resolver(source, info, **args)

    return guarded
