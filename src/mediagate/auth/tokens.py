"""Verifying and issuing JWTs. Algorithms are pinned; `exp` is required."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import OrderedDict
from typing import Any

import jwt

from mediagate.config import Settings
from mediagate.domain.principal import SERVICE_ROLE, Principal
from mediagate.errors import Unauthenticated

HS256 = "HS256"
RS256 = "RS256"
VERIFIED_CACHE_SIZE = 10_000


class TokenVerifier:
    """HS256 tokens signed with JWT_SECRET and/or RS256 tokens from an OIDC provider's JWKS."""

    def __init__(self, settings: Settings) -> None:
        # A prepared key: PyJWT otherwise re-checks a raw secret's format on every call.
        self._secret = (
            jwt.PyJWK({"kty": "oct", "k": _b64url(settings.auth.jwt_secret)}, algorithm=HS256)
            if settings.auth.jwt_secret
            else None
        )
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._jwks = jwt.PyJWKClient(settings.auth.jwks_url) if settings.auth.jwks_url else None
        self._audience = settings.auth.audience
        self._issuer = settings.auth.issuer
        self._user_claim = settings.auth.user_claim
        self._org_claim = settings.auth.org_claim
        self._role_claim = settings.auth.role_claim

    async def verify(self, token: str) -> Principal:
        """The token's principal; a token seen before is not decoded again until it expires."""
        principal, _expires_at = await self.verify_until(token)
        return principal

    async def verify_until(self, token: str) -> tuple[Principal, float]:
        """The token's principal and when the token expires (Unix time)."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        verified = await self._decode(token)
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            algorithm = str(jwt.get_unverified_header(token).get("alg"))
            key = await self._key_for(algorithm, token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        principal = Principal(
            user_id=_uuid_claim(claims, self._user_claim),
            organization_id=_uuid_claim(claims, self._org_claim),
            is_service=claims.get(self._role_claim) == SERVICE_ROLE,
        )
        return principal, float(claims["exp"])

    async def _key_for(self, algorithm: str, token: str) -> Any:
        if algorithm == HS256 and self._secret is not None:
            return self._secret
        if algorithm == RS256 and self._jwks is not None:
            # PyJWKClient fetches (then caches) the JWKS with blocking I/O.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            return signing_key.key
        raise jwt.InvalidAlgorithmError(f"algorithm {algorithm!r} is not accepted")


def _b64url(secret: str) -> str:
    return base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()


def _uuid_claim(claims: dict[str, Any], name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims[name]))
    except (KeyError, ValueError):
        raise Unauthenticated(f"token claim {name!r} must be a UUID") from None


def issue_token(settings: Settings, principal: Principal, ttl_seconds: int) -> str:
    """An HS256 token for local use (CLI, development, tests)."""
    if settings.auth.jwt_secret is None:
        raise ValueError("JWT_SECRET is needed to issue tokens")
    now = int(time.time())
    claims = {
        settings.auth.user_claim: str(principal.user_id),
        settings.auth.org_claim: str(principal.organization_id),
        **({settings.auth.role_claim: SERVICE_ROLE} if principal.is_service else {}),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.auth.audience:
        claims["aud"] = settings.auth.audience
    if settings.auth.issuer:
        claims["iss"] = settings.auth.issuer
    return jwt.encode(claims, settings.auth.jwt_secret, algorithm=HS256)
