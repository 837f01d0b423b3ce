"""Staging an upload the way a client does, and reading back what it left: its row, an
object's bytes."""

from __future__ import annotations

from typing import Any

import httpx

from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord
from mediagate.storage.object_store import ObjectStore
from tests.support.api import Tenant
from tests.support.flow import confirm, put_object, request_upload


async def stage(
    api: httpx.AsyncClient,
    tenant: Tenant,
    data: bytes,
    filename: str,
    content_type: str,
    *,
    confirmed: bool = True,
) -> str:
    """Presign, PUT the bytes, and (unless told not to) confirm; returns the upload key."""
    ticket = await request_upload(api, tenant, filename, content_type)
    await put_object(ticket["uploadUrl"], data, content_type)
    if confirmed:
        body = await confirm(api, tenant, ticket["fileKey"], alt="staged")
        assert body["data"]["confirmUpload"]["status"] == "UPLOADED", body
    key: str = ticket["fileKey"]
    return key


async def row(key: str) -> MediaRecord:
    record = await repo.find_by_key(key)
    assert record is not None
    return record


async def object_bytes(store: ObjectStore, key: str) -> tuple[bytes, Any]:
    response = store.client.get_object(store.bucket, key)
    try:
        return response.read(), response.headers
    finally:
        response.close()
        response.release_conn()
