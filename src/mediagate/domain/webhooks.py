"""The rules of webhooks: which events there are, what an endpoint may be, where we may
connect, and when to try again."""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

from mediagate.errors import BadUserInput

EVENT_TYPES = ("media.completed", "media.rejected", "media.scan_failed", "media.deleted")
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32
MAX_URL_CHARS = 2000
# A Retry-After longer than this is taken as this: a day, the schedule's longest step.
MAX_RETRY_AFTER = 86400.0
_JITTER = 0.1

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def is_secret(value: str) -> bool:
    """`whsec_` and the base64 of 24 to 64 bytes, as Standard Webhooks' secrets are."""
    if not value.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64


def check_events(events: list[str] | None) -> tuple[str, ...]:
    """The event types asked for (none: every one), each known, each once."""
    if not events:
        return ()
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise BadUserInput(
            f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}", field="events"
        )
    return tuple(dict.fromkeys(events))


def check_endpoint_url(url: str) -> str:
    """An http(s) URL with a host, no credentials and no fragment."""
    parts = urlsplit(url) if len(url) <= MAX_URL_CHARS else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        port, parts = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.fragment
        or port == 0
        or not url.isprintable()
        or " " in url
    ):
        raise BadUserInput(
            f"url must be an http or https URL of at most {MAX_URL_CHARS} characters,"
            " without credentials or fragment",
            field="url",
        )
    return url


@dataclass(frozen=True, slots=True)
class AllowedNetworks:
    """Where webhooks may connect: `public` (globally routable unicast) and/or CIDRs."""

    public: bool
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str) -> AllowedNetworks:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise ValueError(text)
        networks = tuple(ipaddress.ip_network(item) for item in items if item != "public")
        return cls("public" in items, networks)

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return self.public and address.is_global and not address.is_multicast

    def __str__(self) -> str:
        return ",".join(["public"] * self.public + [str(network) for network in self.networks])


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    # 410 Gone: the receiver asks never to be called again.
    GONE = "gone"


def verdict_of(status: int | None, attempt: int, schedule: tuple[float, ...]) -> Verdict:
    """Only a 2xx delivers; 410 disables; anything else tries again while the schedule
    lasts (its length bounds the retries)."""
    if status is not None and 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    return Verdict.RETRY if attempt <= len(schedule) else Verdict.FAILED


def retry_delay(
    attempt: int,
    schedule: tuple[float, ...],
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next try after failed attempt `attempt` (1 is the first): the
    receiver's Retry-After when it sent one (429, 503), else the schedule's step with
    ±10% jitter, so that receivers coming back are not hit by every sender at once."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    step = schedule[min(attempt, len(schedule)) - 1]
    return step * (rng or random).uniform(1 - _JITTER, 1 + _JITTER)


def parse_retry_after(status: int, value: str | None, now: datetime) -> float | None:
    """Retry-After of a 429 or 503 (seconds or an HTTP date); None otherwise."""
    if status not in (429, 503) or not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:9]), int(MAX_RETRY_AFTER)))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
