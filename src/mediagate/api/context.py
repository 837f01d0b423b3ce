"""Per-request context: the caller's token (verified lazily, once) and the services.

Over WebSocket, one context serves every operation of the connection: `feed` is set,
and `on_overflow` drops the connection when a subscriber falls behind."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from mediagate.auth.tokens import TokenVerifier
from mediagate.domain.principal import Principal
from mediagate.errors import Unauthenticated
from mediagate.services.live_updates import MediaFeed
from mediagate.services.uploads import UploadService
from mediagate.services.webhooks import WebhookService


@dataclass(slots=True)
class RequestContext:
    uploads: UploadService
    webhooks: WebhookService
    verifier: TokenVerifier
    authorization: str | None
    feed: MediaFeed | None = None
    on_overflow: Callable[[], None] | None = None
    # Recorded with the changes the request makes (audit log) and sent back as X-Request-Id.
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _principal: Principal | None = field(default=None, init=False)

    async def principal(self) -> Principal:
        if self._principal is None:
            self._principal = await self.verifier.verify(self.bearer_token())
        return self._principal

    def bearer_token(self) -> str:
        if not self.authorization:
            raise Unauthenticated("authentication required")
        scheme, _, token = self.authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return token.strip()


async def authenticate(context: RequestContext) -> None:
    await context.principal()
