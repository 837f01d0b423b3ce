"""RS256 tokens from an OIDC provider (such as Keycloak), keys fetched from a real JWKS URL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mediagate.auth.tokens import TokenVerifier
from mediagate.config import load_settings
from mediagate.errors import Unauthenticated
from tests.unit.test_config import BASE

ISSUER = "https://sso.example/realms/garage"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()


def _verifier(jwks_url: str) -> TokenVerifier:
    env = {k: v for k, v in BASE.items() if k != "JWT_SECRET"}
    env.update(
        {
            "JWT_JWKS_URL": jwks_url,
            "JWT_AUDIENCE": "mediagate",
            "JWT_ISSUER": ISSUER,
            "JWT_ORG_CLAIM": "org",
        }
    )
    return TokenVerifier(load_settings(env))


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "sub": str(uuid.uuid4()),
        "org": str(uuid.uuid4()),
        "aud": "mediagate",
        "iss": ISSUER,
        "exp": int(time.time()) + 60,
    }
    claims.update(overrides)
    return claims


def _sign(claims: dict[str, Any], key: Any = KEY, kid: str = "k1") -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_rs256_token_from_the_jwks_is_accepted(jwks_url: str) -> None:
    claims = _claims()
    principal = await _verifier(jwks_url).verify(_sign(claims))
    assert (
        str(principal.user_id) == claims["sub"] and str(principal.organization_id) == claims["org"]
    )


@pytest.mark.parametrize(
    "token_factory",
    [
        lambda: _sign(_claims(aud="another-client")),
        lambda: _sign(_claims(iss="https://evil.example")),
        lambda: _sign(_claims(), key=OTHER_KEY),
        lambda: _sign(_claims(exp=int(time.time()) - 5)),
        lambda: jwt.encode(_claims(), "s" * 32, algorithm="HS256"),
    ],
    ids=["audience", "issuer", "foreign-key", "expired", "hs256-without-secret"],
)
async def test_rs256_tokens_that_do_not_verify_are_refused(
    jwks_url: str, token_factory: Any
) -> None:
    with pytest.raises(Unauthenticated):
        await _verifier(jwks_url).verify(token_factory())
