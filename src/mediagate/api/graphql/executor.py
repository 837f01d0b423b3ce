"""Explicit parse -> validate -> execute, with cached documents (errors: errors.py)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import msgspec
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import create_source_event_stream
from graphql.validation import NoSchemaIntrospectionCustomRule, ValuesOfCorrectTypeRule

from mediagate.api.graphql.errors import RequestError, bad_request, format_error
from mediagate.api.graphql.limits import DocumentMeter
from mediagate.api.graphql.schema import default_field_resolver
from mediagate.config import GraphQLSettings

log = logging.getLogger(__name__)

MAX_TOKENS = 2000
# No input type of ours nests deeper than a few levels; graphql-core coerces variables
# recursively, so depth is bounded before it sees them.
MAX_VARIABLES_DEPTH = 16
DOCUMENT_CACHE_SIZE = 256
# Responses to recent subscription events, one per (event, document, variables).
EVENT_RESPONSE_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None

    @classmethod
    def from_json(cls, payload: Any) -> GraphQLRequest:
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise bad_request("the body must be a JSON object with a 'query' string")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            raise bad_request("'variables' must be an object")
        if variables and _nesting(variables) > MAX_VARIABLES_DEPTH:
            raise bad_request(f"'variables' nest deeper than {MAX_VARIABLES_DEPTH} levels")
        if operation_name is not None and not isinstance(operation_name, str):
            raise bad_request("'operationName' must be a string")
        return cls(payload["query"], variables, operation_name)


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (iterative)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_VARIABLES_DEPTH:
                break
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return deepest


class GraphQLExecutor:
    def __init__(self, schema: GraphQLSchema, limits: GraphQLSettings) -> None:
        self._schema = schema
        self._limits = limits
        self._rules = [
            _ArgumentValuesRule if rule is ValuesOfCorrectTypeRule else rule
            for rule in specified_rules
        ]
        if not limits.introspection:
            self._rules.append(NoSchemaIntrospectionCustomRule)
        self._documents: OrderedDict[str, DocumentNode | list[GraphQLError]] = OrderedDict()
        self._event_responses: OrderedDict[
            tuple[int, tuple[str, bytes, str | None]], tuple[Any, asyncio.Future[bytes]]
        ] = OrderedDict()

    def document(self, query: str) -> DocumentNode:
        """The parsed and validated document, from the cache when this text was seen before."""
        cached = self._documents.get(query)
        if cached is None:
            cached = self._parse_and_validate(query)
            self._documents[query] = cached
            if len(self._documents) > DOCUMENT_CACHE_SIZE:
                self._documents.popitem(last=False)
        else:
            self._documents.move_to_end(query)
        if isinstance(cached, list):
            raise RequestError([format_error(error) for error in cached])
        return cached

    def _parse_and_validate(self, query: str) -> DocumentNode | list[GraphQLError]:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            error.extensions = {"code": "GRAPHQL_PARSE_FAILED"}
            return [error]
        # The budget first: the standard rules only see documents of bounded cost.
        failures = DocumentMeter(self._limits).check(document) or validate(
            self._schema, document, self._rules
        )
        for failure in failures:
            failure.extensions = failure.extensions or {"code": "GRAPHQL_VALIDATION_FAILED"}
            # Whatever a literal's parser raised, the document is at fault, not us.
            failure.original_error = None
        return failures or document

    async def run(self, request: GraphQLRequest, context: Any) -> dict[str, Any]:
        document = self.document(request.query)
        if _is_subscription(document, request.operation_name):
            raise bad_request("subscriptions are served over WebSocket (graphql-transport-ws)")
        return await self._execute(document, request, context)

    async def stream(self, request: GraphQLRequest, context: Any) -> AsyncGenerator[bytes, None]:
        """The responses of one operation, JSON-encoded: each event of a subscription, or
        the one result of a query or mutation. Errors found before execution raise
        RequestError.

        graphql-core's `subscribe` is `create_source_event_stream` followed by `execute`
        on each event; the two are called apart here so that an event's response is
        computed once for all who subscribed with the same document and variables (a
        status change reaches every subscriber of its session: a thousand executions of
        the same selection on the same view would otherwise be the whole cost). Sharing
        is sound because subscription events are only handed to subscribers authorized
        for them, and what the selected fields resolve to depends on the event alone."""
        document = self.document(request.query)
        if not _is_subscription(document, request.operation_name):
            yield msgspec.json.encode(await self._execute(document, request, context))
            return
        events = await create_source_event_stream(
            self._schema,
            document,
            context_value=context,
            variable_values=request.variables,
            operation_name=request.operation_name,
        )
        if isinstance(events, ExecutionResult):
            raise RequestError([format_error(error) for error in events.errors or ()])
        shape = (request.query, msgspec.json.encode(request.variables), request.operation_name)
        try:
            async for event in events:
                yield await self._event_response(event, document, request, context, shape)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def _event_response(
        self,
        event: Any,
        document: DocumentNode,
        request: GraphQLRequest,
        context: Any,
        shape: tuple[str, bytes, str | None],
    ) -> bytes:
        key = (id(event), shape)
        cached = self._event_responses.get(key)
        # The event is kept with its response: while cached, its id cannot be reused.
        # The response is a future: subscribers woken by the same event together wait
        # for the first one's execution rather than each starting one.
        if cached is not None and cached[0] is event:
            done = cached[1]
            return done.result() if done.done() else await asyncio.shield(done)
        response = asyncio.ensure_future(self._encoded_response(event, document, request, context))
        self._event_responses[key] = (event, response)
        if len(self._event_responses) > EVENT_RESPONSE_CACHE_SIZE:
            self._event_responses.popitem(last=False)
        return await asyncio.shield(response)

    async def _encoded_response(
        self, event: Any, document: DocumentNode, request: GraphQLRequest, context: Any
    ) -> bytes:
        return msgspec.json.encode(await self._execute(document, request, context, event))

    async def _execute(
        self,
        document: DocumentNode,
        request: GraphQLRequest,
        context: Any,
        root_value: Any = None,
    ) -> dict[str, Any]:
        result = execute(
            self._schema,
            document,
            root_value=root_value,
            context_value=context,
            variable_values=request.variables,
            operation_name=request.operation_name,
            field_resolver=default_field_resolver,
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return _response(result)


class _ArgumentValuesRule(ValuesOfCorrectTypeRule):
    """A literal argument of the wrong type or out of range is bad input, as the same
    value sent as a variable is."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {"code": "BAD_USER_INPUT"}
        super().report_error(error)


def _response(result: ExecutionResult) -> dict[str, Any]:
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [format_error(error) for error in result.errors]
    return response


def _is_subscription(document: DocumentNode, operation_name: str | None) -> bool:
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation is OperationType.SUBSCRIPTION
