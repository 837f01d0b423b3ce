"""A graphql-transport-ws client for the tests, on the `websockets` library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"

MEDIA_UPDATED = """
subscription Follow($sessionId: UUID!, $stage: String) {
  mediaUpdated(sessionId: $sessionId, stage: $stage) {
    id sessionId fileKey status stage originalFilename rejectionReason url width height
  }
}
"""


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/graphql"


class GraphQLSocket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            message: dict[str, Any] = json.loads(await self.connection.recv())
        return message

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(
        self, operation_id: str, query: str = MEDIA_UPDATED, **variables: Any
    ) -> None:
        await self.send(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables},
            }
        )

    async def updates_until(
        self, operation_id: str, done: Any, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """`next` payloads of one operation until `done(media)` holds for the last one."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                assert message.get("id") == operation_id, message
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                media = message["payload"]["data"]["mediaUpdated"]
                seen.append(media)
                if done(media):
                    return seen

    async def close_code(self, timeout: float = 30.0) -> int | None:
        """The code the server closed with (reading and discarding what is still queued)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.connection.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


@asynccontextmanager
async def graphql_socket(
    http_url: str, subprotocols: tuple[str, ...] = (PROTOCOL,), **options: Any
) -> AsyncIterator[GraphQLSocket]:
    async with connect(
        ws_url(http_url),
        subprotocols=list(subprotocols),  # type: ignore[arg-type]
        open_timeout=30,
        **options,
    ) as connection:
        yield GraphQLSocket(connection)
