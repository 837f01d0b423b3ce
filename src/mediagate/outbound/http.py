"""POSTing to a receiver: only to an address WEBHOOK_ALLOWED_NETWORKS allows, checked on
every call and then connected to (the name is not resolved twice: no DNS rebinding),
within WEBHOOK_TIMEOUT, redirects not followed, at most 64 KiB of the answer read."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from mediagate.config.sections import OutboundSettings
from mediagate.domain.webhooks import IPAddress

MAX_ANSWER_BYTES = 64 * 1024
_USER_AGENT = "mediagate-webhooks"


class AddressRefused(Exception):
    """The receiver's host is, or resolves to, an address that is not allowed."""


class NoAnswer(Exception):
    """The receiver could not be reached or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    # At most MAX_ANSWER_BYTES of it; the rest was never read.
    body: bytes
    seconds: float


class OutboundClient:
    def __init__(self, settings: OutboundSettings) -> None:
        self._allowed = settings.allowed_networks
        self._timeout = settings.timeout
        # No kept connections: one made for one host's name must not carry another's.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def check(self, url: str) -> IPAddress:
        """The address a call to `url` would connect to; AddressRefused if the host
        has any address that is not allowed, or none."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        addresses = await self._addresses(host, parts.port or _default_port(parts.scheme))
        refused = [address for address in addresses if not self._allowed.allows(address)]
        if refused or not addresses:
            shown = refused[0] if refused else "no address"
            raise AddressRefused(
                f"{host} is {shown}, which WEBHOOK_ALLOWED_NETWORKS ({self._allowed})"
                " does not allow"
            )
        return addresses[0]

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            # Bounded here, not only by post(): registration checks a name too, and a
            # resolver that never answers must not hold the API's request.
            async with asyncio.timeout(self._timeout):
                found = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise NoAnswer(f"{host} was not resolved within {self._timeout:g} s") from None
        except OSError as error:
            raise NoAnswer(f"{host} could not be resolved: {error}") from None
        unique = dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found)
        return list(unique)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body`; raises AddressRefused or NoAnswer, else the (bounded) answer."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                address = await self.check(url)
                return await self._send(url, address, body, headers, started)
        except TimeoutError:
            raise NoAnswer(f"no answer within {self._timeout:g} s") from None
        except httpx.HTTPError as error:
            raise NoAnswer(f"{type(error).__name__}: {error}"[:500]) from None

    async def _send(
        self, url: str, address: IPAddress, body: bytes, headers: dict[str, str], started: float
    ) -> Answer:
        parts = urlsplit(url)
        host = parts.hostname or ""
        shown = f"[{address}]" if address.version == 6 else str(address)
        port = parts.port or _default_port(parts.scheme)
        pinned = urlunsplit((parts.scheme, f"{shown}:{port}", parts.path or "/", parts.query, ""))
        request_headers = {
            **headers,
            "host": parts.netloc.rpartition("@")[2],
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            # Read as sent: a compressed answer could inflate past the bound in one chunk.
            "accept-encoding": "identity",
        }
        # TLS checks the certificate against the name, though the connection is to the address.
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._client.build_request(
            "POST", pinned, content=body, headers=request_headers, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        try:
            answer = await _read_at_most(response, MAX_ANSWER_BYTES)
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, answer, time.perf_counter() - started)


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
