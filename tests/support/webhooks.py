"""Webhooks as the tests drive them: the GraphQL of endpoints, and waiting for arrivals."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.support.api import graphql
from tests.support.receiver import Received, Receiver

CREATE_ENDPOINT = """
mutation Create($url: String!, $events: [String!]) {
  createWebhookEndpoint(url: $url, events: $events) { secret endpoint { id url events enabled } }
}
"""
ROTATE = """
mutation Rotate($id: UUID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }
"""
ENDPOINTS = "query { webhookEndpoints { id url events enabled } }"
DELETE_ENDPOINT = "mutation Delete($id: UUID!) { deleteWebhookEndpoint(id: $id) { id } }"
DELIVERIES = """
query Deliveries($id: UUID!, $first: Int, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { node { deliveryId eventId type attempt httpStatus error occurredAt durationMs } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
REDELIVER = "mutation Again($id: ID!) { redeliverWebhook(deliveryId: $id) }"
DELETE_MEDIA = "mutation Delete($id: UUID!) { deleteMedia(id: $id) { status } }"


async def create_endpoint(
    api: httpx.AsyncClient, token: str, url: str, events: list[str] | None = None
) -> tuple[str, str]:
    """The new endpoint's id and secret."""
    body = await graphql(api, CREATE_ENDPOINT, {"url": url, "events": events}, token)
    assert "errors" not in body, body
    created = body["data"]["createWebhookEndpoint"]
    return created["endpoint"]["id"], created["secret"]


async def deliveries(api: httpx.AsyncClient, token: str, endpoint_id: str) -> list[dict[str, Any]]:
    body = await graphql(api, DELIVERIES, {"id": endpoint_id, "first": 100}, token)
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["webhookDeliveries"]["edges"]]


async def arrivals(
    receiver: Receiver, count: int, timeout: float = 60.0, **where: str
) -> list[Received]:
    """Wait until `count` requests whose JSON body has these `data` fields arrived."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [r for r in receiver.snapshot() if _matches(r, where)]
        if len(matching) >= count:
            return matching
        assert time.monotonic() < deadline, f"{len(matching)} of {count} arrived"
        await asyncio.sleep(0.05)


def _matches(received: Received, where: dict[str, str]) -> bool:
    data = verified_unsafely(received).get("data", {})
    return all(data.get(name) == value for name, value in where.items())


def verified_unsafely(received: Received) -> dict[str, Any]:
    """The body as JSON, signature unchecked (to find a test's own events)."""
    try:
        body: dict[str, Any] = json.loads(received.body)
    except ValueError:
        return {}
    return body


def verify(secret: str, received: Received) -> Any:
    """What the reference verifier makes of the request; raises if it refuses it."""
    return Webhook(secret).verify(received.body, received.headers)
