"""An organization's storage: what it holds (its usage counter) and what it may hold."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mediagate.config.sections import UploadSettings
from mediagate.db import usage_rows
from mediagate.domain.principal import Principal
from mediagate.errors import BadUserInput
from mediagate.services.sessions import require_service


@dataclass(frozen=True, slots=True)
class OrganizationUsage:
    organization_id: uuid.UUID
    used_bytes: int
    # None: no quota.
    quota_bytes: int | None
    # Whether the organization has a quota of its own, not ORG_STORAGE_QUOTA_BYTES.
    quota_is_own: bool


async def usage_of(organization_id: uuid.UUID, settings: UploadSettings) -> OrganizationUsage:
    record = await usage_rows.usage(organization_id)
    return OrganizationUsage(
        organization_id,
        record.used_bytes,
        record.quota(settings.org_quota_bytes),
        record.quota_is_own,
    )


async def set_quota(
    organization_id: uuid.UUID, quota_bytes: int | None, own: bool, settings: UploadSettings
) -> OrganizationUsage:
    """Its own quota (`own`; None: no quota at all), or back to the default."""
    if quota_bytes is not None and quota_bytes < 0:
        raise BadUserInput("the quota must be 0 bytes or more", field="bytes")
    await usage_rows.set_quota(organization_id, own, quota_bytes if own else None)
    return await usage_of(organization_id, settings)


async def organization_usage(principal: Principal, settings: UploadSettings) -> OrganizationUsage:
    require_service(principal)
    return await usage_of(principal.organization_id, settings)


async def set_organization_quota(
    principal: Principal, quota_bytes: int | None, use_default: bool, settings: UploadSettings
) -> OrganizationUsage:
    require_service(principal)
    return await set_quota(principal.organization_id, quota_bytes, not use_default, settings)
