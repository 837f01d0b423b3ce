"""Thin resolvers of the product's backend's fields (service tokens): sessions, webhooks."""

from __future__ import annotations

import uuid
from typing import Any

from graphql import GraphQLResolveInfo

from mediagate.api.context import RequestContext
from mediagate.api.graphql.schema import Resolver
from mediagate.api.resolvers import with_principal
from mediagate.db.webhook_rows import AttemptRecord, EndpointRecord
from mediagate.domain.principal import Principal
from mediagate.services import sessions, usage
from mediagate.services.paging import Connection
from mediagate.services.sessions import SessionView
from mediagate.services.usage import OrganizationUsage
from mediagate.services.webhooks import EndpointSecret


@with_principal
async def create_session(
    _context: RequestContext,
    principal: Principal,
    externalId: str | None = None,
    metadata: Any = None,
) -> SessionView:
    return await sessions.create_session(principal, externalId, metadata)


@with_principal
async def close_session(
    _context: RequestContext, principal: Principal, id: uuid.UUID
) -> SessionView:
    return await sessions.close_session(principal, id)


@with_principal
async def upload_session(
    _context: RequestContext, principal: Principal, id: uuid.UUID
) -> SessionView:
    return await sessions.session(principal, id)


@with_principal
async def upload_sessions(
    _context: RequestContext,
    principal: Principal,
    first: int,
    externalId: str | None = None,
    after: str | None = None,
) -> Connection[SessionView]:
    return await sessions.sessions(principal, externalId, first, after)


@with_principal
async def create_webhook_endpoint(
    context: RequestContext, principal: Principal, url: str, events: list[str] | None = None
) -> EndpointSecret:
    return await context.webhooks.create(principal, url, events)


@with_principal
async def rotate_webhook_secret(
    context: RequestContext, principal: Principal, id: uuid.UUID
) -> EndpointSecret:
    return await context.webhooks.rotate(principal, id)


@with_principal
async def delete_webhook_endpoint(
    context: RequestContext, principal: Principal, id: uuid.UUID
) -> EndpointRecord:
    return await context.webhooks.delete(principal, id)


@with_principal
async def webhook_endpoints(context: RequestContext, principal: Principal) -> list[EndpointRecord]:
    return await context.webhooks.endpoints(principal)


@with_principal
async def webhook_deliveries(
    context: RequestContext,
    principal: Principal,
    endpointId: uuid.UUID,
    first: int,
    after: str | None = None,
) -> Connection[AttemptRecord]:
    return await context.webhooks.deliveries(principal, endpointId, first, after)


@with_principal
async def redeliver_webhook(context: RequestContext, principal: Principal, deliveryId: str) -> bool:
    return await context.webhooks.redeliver(principal, deliveryId)


@with_principal
async def organization_usage(context: RequestContext, principal: Principal) -> OrganizationUsage:
    return await usage.organization_usage(principal, context.uploads.limits)


@with_principal
async def set_organization_quota(
    context: RequestContext, principal: Principal, useDefault: bool, bytes: int | None = None
) -> OrganizationUsage:
    return await usage.set_organization_quota(principal, bytes, useDefault, context.uploads.limits)


async def attempt_event_id(source: AttemptRecord, _info: GraphQLResolveInfo) -> str:
    return str(source.event_id)


SERVICE_RESOLVERS: dict[str, Resolver] = {
    "WebhookDelivery.eventId": attempt_event_id,
    "Query.organizationUsage": organization_usage,
    "Mutation.setOrganizationQuota": set_organization_quota,
    "Mutation.createSession": create_session,
    "Mutation.closeSession": close_session,
    "Query.uploadSession": upload_session,
    "Query.uploadSessions": upload_sessions,
    "Mutation.createWebhookEndpoint": create_webhook_endpoint,
    "Mutation.rotateWebhookSecret": rotate_webhook_secret,
    "Mutation.deleteWebhookEndpoint": delete_webhook_endpoint,
    "Mutation.redeliverWebhook": redeliver_webhook,
    "Query.webhookEndpoints": webhook_endpoints,
    "Query.webhookDeliveries": webhook_deliveries,
}
