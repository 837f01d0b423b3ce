"""Webhook endpoints as the product's backend manages them (service tokens only), and
their delivery log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mediagate.config import Settings, WebhookSettings
from mediagate.db import webhook_rows
from mediagate.db.webhook_rows import AttemptRecord, EndpointRecord
from mediagate.domain.principal import Principal
from mediagate.domain.validation import check_page_size
from mediagate.domain.webhooks import check_endpoint_url, check_events, new_secret
from mediagate.errors import BadUserInput, LimitExceeded, NotFound
from mediagate.outbound.http import AddressRefused, NoAnswer, OutboundClient
from mediagate.services.paging import Connection, connection, decode_id_cursor, encode_cursor
from mediagate.services.sessions import require_service

_CURSOR_KIND = "delivery"


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    endpoint: EndpointRecord
    secret: str


class WebhookService:
    def __init__(self, settings: WebhookSettings, client: OutboundClient) -> None:
        self._settings = settings
        self._client = client

    async def create(
        self, principal: Principal, url: str, events: list[str] | None
    ) -> EndpointSecret:
        require_service(principal)
        url = check_endpoint_url(url)
        wanted = check_events(events)
        await self._check_address(url)
        secret = new_secret()
        most = self._settings.max_endpoints
        endpoint = await webhook_rows.add_endpoint(
            principal.organization_id, url, wanted, secret, most
        )
        if endpoint is None:
            raise LimitExceeded(
                f"the organization has {most} webhook endpoints, the most it may have",
                limit="WEBHOOK_MAX_ENDPOINTS",
            )
        return EndpointSecret(endpoint, secret)

    async def _check_address(self, url: str) -> None:
        try:
            await self._client.check(url)
        except (AddressRefused, NoAnswer) as error:
            raise BadUserInput(str(error), field="url") from None

    async def rotate(self, principal: Principal, endpoint_id: uuid.UUID) -> EndpointSecret:
        require_service(principal)
        secret = new_secret()
        overlap = timedelta(seconds=self._settings.rotation_overlap)
        endpoint = await webhook_rows.rotate_secret(
            principal.organization_id, endpoint_id, secret, overlap
        )
        if endpoint is None:
            raise NotFound("webhook endpoint not found")
        return EndpointSecret(endpoint, secret)

    async def delete(self, principal: Principal, endpoint_id: uuid.UUID) -> EndpointRecord:
        require_service(principal)
        endpoint = await webhook_rows.delete_endpoint(principal.organization_id, endpoint_id)
        if endpoint is None:
            raise NotFound("webhook endpoint not found")
        return endpoint

    async def endpoints(self, principal: Principal) -> list[EndpointRecord]:
        require_service(principal)
        return await webhook_rows.endpoints(principal.organization_id)

    async def deliveries(
        self, principal: Principal, endpoint_id: uuid.UUID, first: int | None, after: str | None
    ) -> Connection[AttemptRecord]:
        """The endpoint's attempts, oldest first."""
        require_service(principal)
        first = check_page_size(first)
        if await webhook_rows.endpoint(principal.organization_id, endpoint_id) is None:
            raise NotFound("webhook endpoint not found")
        records = await webhook_rows.attempts(
            endpoint_id, decode_id_cursor(_CURSOR_KIND, after), first + 1
        )
        return connection(records, first, lambda node: encode_cursor(_CURSOR_KIND, str(node.id)))

    async def redeliver(self, principal: Principal, delivery_id: str) -> bool:
        require_service(principal)
        if not (delivery_id.isascii() and delivery_id.isdigit() and len(delivery_id) <= 18):
            raise BadUserInput("deliveryId is not a delivery's id", field="deliveryId")
        if not await webhook_rows.redeliver(principal.organization_id, int(delivery_id)):
            raise NotFound("webhook delivery not found")
        return True


async def configure_endpoint_for_all(settings: Settings) -> None:
    """WEBHOOK_URL's endpoint, as configured (gone when unset): every process that
    changes statuses sets it at start-up, before its first change."""
    await webhook_rows.configure_endpoint_for_all(settings.webhooks.url, settings.webhooks.secret)


async def purge_delivered(retention_days: int) -> int:
    """Events older than the retention period, none of whose deliveries is pending, and
    their delivery log; returns how many events."""
    return await webhook_rows.purge_events(datetime.now(UTC) - timedelta(days=retention_days))


async def redeliver_since(
    since: datetime, endpoint_id: uuid.UUID | None, include_delivered: bool
) -> int:
    """Deliveries of events since `since` pending again with a fresh schedule (failed
    ones; delivered ones too if asked); returns how many."""
    return await webhook_rows.redeliver_since(since, endpoint_id, include_delivered)
