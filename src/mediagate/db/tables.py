"""Piccolo tables. The DDL they mirror (enum type, CHECKs) lives in piccolo_migrations/."""

from __future__ import annotations

from piccolo.columns import (
    UUID,
    BigInt,
    DoublePrecision,
    ForeignKey,
    Integer,
    OnDelete,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from mediagate.domain.status import MediaStatus


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    organization_id = UUID(null=False)
    created_at = Timestamptz()


class UploadSession(Table, tablename="garage_sessions"):
    """A product's unit of uploads (a listing, a ticket; the spec's garage visit). The
    table keeps the spec's name: renaming it would cost a migration and buy nothing."""

    id = UUID(primary_key=True)
    organization_id = UUID(null=False, index=True)
    created_at = Timestamptz()
    # Items the session ever had (rows go only with their session): MAX_SESSION_ITEMS.
    item_count = Integer(default=0, null=False)


class SessionMedia(Table, tablename="session_media"):
    id = UUID(primary_key=True)
    session_id = ForeignKey(references=UploadSession, on_delete=OnDelete.cascade, null=False)
    file_key = Varchar(length=500, unique=True, null=False)
    original_filename = Varchar(length=255, null=False)
    content_type = Varchar(length=100, null=False)
    file_size = BigInt(null=True, default=None)
    stage = Varchar(length=50, null=True, default=None)
    alt_text = Text(null=True, default=None)
    status = Varchar(length=20, choices=MediaStatus, default=MediaStatus.PENDING_UPLOAD)
    rejection_reason = Text(null=True, default=None)
    uploaded_by = ForeignKey(references=User, null=False)
    uploaded_at = Timestamptz(null=True, default=None)
    processed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    upload_expires_at = Timestamptz(null=False)
    checksum_sha256 = Varchar(length=64, null=True, default=None)
    processed_key = Varchar(length=500, null=True, default=None)
    processed_content_type = Varchar(length=100, null=True, default=None)
    poster_key = Varchar(length=500, null=True, default=None)
    width = Integer(null=True, default=None)
    height = Integer(null=True, default=None)
    duration_seconds = DoublePrecision(null=True, default=None)
    crashed_attempts = Integer(default=0)
    # Multipart uploads only: the store's upload id, the declared size, the part size.
    upload_id = Text(null=True, default=None)
    declared_size = BigInt(null=True, default=None)
    part_size = BigInt(null=True, default=None)
    # What the item counts against its organization's usage (set by trigger) and its
    # poster's size (part of that once COMPLETED).
    charged_bytes = BigInt(default=0, null=False)
    poster_size = BigInt(null=True, default=None)
    # The last writer, copied into audit_events by trigger (see piccolo_migrations).
    changed_by = Text(null=True, default=None)
    change_ref = Text(null=True, default=None)


class AuditEvent(Table, tablename="audit_events"):
    id = BigInt(primary_key=True)
    occurred_at = Timestamptz()
    organization_id = UUID(null=False)
    session_id = UUID(null=False)
    media_id = UUID(null=False)
    action = Text(null=False)
    from_status = Text(null=True, default=None)
    to_status = Text(null=False)
    reason = Text(null=True, default=None)
    actor = Text(null=False)
    reference = Text(null=True, default=None)


class OrganizationQuota(Table, tablename="organization_quotas"):
    """An organization's own quota (NULL: none); without a row, the default applies."""

    organization_id = UUID(primary_key=True)
    quota_bytes = BigInt(null=True, default=None)


class UsageShard(Table, tablename="usage_shards"):
    """Part of an organization's usage, kept by triggers (see piccolo_migrations)."""

    organization_id = UUID(null=False)
    shard = SmallInt(null=False)
    used_bytes = BigInt(default=0, null=False)
    updated_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (
    User,
    UploadSession,
    SessionMedia,
    AuditEvent,
    OrganizationQuota,
    UsageShard,
)
