"""Standard Webhooks 1.0 headers, computed by its reference implementation."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks.webhooks import Webhook


def signed_headers(
    message_id: str, body: str, secrets: tuple[str, ...], now: datetime
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and one `v1,` signature per secret (two while a
    rotated secret's overlap lasts), space-separated as the specification has them."""
    signatures = " ".join(Webhook(secret).sign(message_id, now, body) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }
