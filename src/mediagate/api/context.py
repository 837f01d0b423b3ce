"""Per-request context: the caller's token (verified lazily, once) and the services."""

from __future__ import annotations

from dataclasses import dataclass, field

from mediagate.auth.tokens import Principal, TokenVerifier
from mediagate.errors import Unauthenticated
from mediagate.services.uploads import UploadService


@dataclass(slots=True)
class RequestContext:
    uploads: UploadService
    verifier: TokenVerifier
    authorization: str | None
    _principal: Principal | None = field(default=None, init=False)

    async def principal(self) -> Principal:
        if self._principal is None:
            self._principal = await self.verifier.verify(self._bearer_token())
        return self._principal

    def _bearer_token(self) -> str:
        if not self.authorization:
            raise Unauthenticated("authentication required")
        scheme, _, token = self.authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return token.strip()


async def authenticate(context: RequestContext) -> None:
    await context.principal()
