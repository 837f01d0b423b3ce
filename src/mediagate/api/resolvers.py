"""Thin resolvers: unpack arguments, call the upload service, return its result."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from graphql import GraphQLResolveInfo

from mediagate.api.context import RequestContext
from mediagate.api.graphql.schema import Resolver
from mediagate.db.audit_rows import AuditRecord
from mediagate.domain.multipart import Part
from mediagate.domain.principal import Principal
from mediagate.errors import BadUserInput
from mediagate.services import audit
from mediagate.services.live_updates import FollowerStream
from mediagate.services.media_view import MediaView
from mediagate.services.multipart import MultipartTicket, PartUrl
from mediagate.services.paging import Connection
from mediagate.services.uploads import UploadPolicy, UploadTicket

T = TypeVar("T")


def _context(info: GraphQLResolveInfo) -> RequestContext:
    context = info.context
    assert isinstance(context, RequestContext)
    return context


def with_principal(handler: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A resolver of the caller's: `handler(context, principal, **arguments)`."""

    async def resolve(_source: Any, info: GraphQLResolveInfo, **arguments: Any) -> T:
        context = _context(info)
        return await handler(context, await context.principal(), **arguments)

    return resolve


@with_principal
async def get_upload_url(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    filename: str,
    contentType: str,
    stage: str | None = None,
    size: int | None = None,
) -> UploadTicket:
    return await context.uploads.request_upload(
        principal, sessionId, filename, contentType, stage, context.request_id, size
    )


@with_principal
async def confirm_upload(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    fileKey: str,
    stage: str | None = None,
    alt: str | None = None,
) -> MediaView:
    return await context.uploads.confirm_upload(
        principal, sessionId, fileKey, stage, alt, context.request_id
    )


@with_principal
async def start_multipart_upload(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    filename: str,
    contentType: str,
    size: int,
    stage: str | None = None,
) -> MultipartTicket:
    return await context.uploads.multipart.start(
        principal, sessionId, filename, contentType, size, stage, context.request_id
    )


@with_principal
async def upload_part_urls(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    fileKey: str,
    uploadId: str,
    partNumbers: list[int],
) -> list[PartUrl]:
    return await context.uploads.multipart.part_urls(
        principal, sessionId, fileKey, uploadId, partNumbers
    )


@with_principal
async def uploaded_parts(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    fileKey: str,
    uploadId: str,
) -> list[Part]:
    return await context.uploads.multipart.uploaded_parts(principal, sessionId, fileKey, uploadId)


async def uploaded_part_number(source: Part, _info: GraphQLResolveInfo) -> int:
    return source.number


@with_principal
async def complete_multipart_upload(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    fileKey: str,
    uploadId: str,
    parts: list[dict[str, Any]],
    stage: str | None = None,
    alt: str | None = None,
) -> MediaView:
    claimed = [Part(part["partNumber"], part["etag"]) for part in parts]
    return await context.uploads.multipart.complete(
        principal, sessionId, fileKey, uploadId, claimed, stage, alt, context.request_id
    )


@with_principal
async def abort_multipart_upload(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    fileKey: str,
    uploadId: str,
) -> MediaView:
    return await context.uploads.multipart.abort(
        principal, sessionId, fileKey, uploadId, context.request_id
    )


@with_principal
async def delete_media(
    context: RequestContext,
    principal: Principal,
    id: uuid.UUID,
) -> MediaView:
    return await context.uploads.delete_media(principal, id, context.request_id)


@with_principal
async def media(context: RequestContext, principal: Principal, id: uuid.UUID) -> MediaView:
    return await context.uploads.media(principal, id)


@with_principal
async def session_media(
    context: RequestContext,
    principal: Principal,
    sessionId: uuid.UUID,
    first: int | None,
    stage: str | None = None,
    after: uuid.UUID | None = None,
) -> list[MediaView]:
    return await context.uploads.session_media(principal, sessionId, stage, first, after)


async def upload_policy(_source: Any, info: GraphQLResolveInfo) -> UploadPolicy:
    return _context(info).uploads.policy


async def follow_media(
    _source: Any, info: GraphQLResolveInfo, sessionId: uuid.UUID, stage: str | None = None
) -> FollowerStream:
    context = _context(info)
    if context.feed is None or context.on_overflow is None:
        raise BadUserInput("subscriptions are served over WebSocket (graphql-transport-ws)")
    principal = await context.principal()
    return await context.feed.follow(principal, sessionId, stage, context.on_overflow)


async def media_updated(source: MediaView, _info: GraphQLResolveInfo, **_args: Any) -> MediaView:
    return source


@with_principal
async def audit_events(
    _context: RequestContext,
    principal: Principal,
    first: int,
    sessionId: uuid.UUID | None = None,
    mediaId: uuid.UUID | None = None,
    after: str | None = None,
) -> Connection[AuditRecord]:
    return await audit.audit_events(
        principal, session_id=sessionId, media_id=mediaId, first=first, after=after
    )


async def audit_action(source: AuditRecord, _info: GraphQLResolveInfo) -> str:
    return source.action.upper()


RESOLVERS: dict[str, Resolver] = {
    "Query.auditEvents": audit_events,
    "AuditEvent.action": audit_action,
    "Query.uploadPolicy": upload_policy,
    "Subscription.mediaUpdated": media_updated,
    "Mutation.getUploadUrl": get_upload_url,
    "Mutation.confirmUpload": confirm_upload,
    "Mutation.deleteMedia": delete_media,
    "Mutation.startMultipartUpload": start_multipart_upload,
    "Mutation.uploadPartUrls": upload_part_urls,
    "Mutation.completeMultipartUpload": complete_multipart_upload,
    "Mutation.abortMultipartUpload": abort_multipart_upload,
    "Query.uploadedParts": uploaded_parts,
    "UploadedPart.partNumber": uploaded_part_number,
    "Query.media": media,
    "Query.sessionMedia": session_media,
}

SUBSCRIPTIONS: dict[str, Resolver] = {"Subscription.mediaUpdated": follow_media}
