"""Bounded tenants: what each organization holds in the store, as a counter kept in the
transaction of every change, and the checks that refuse an upload before its URL exists.

`session_media.charged_bytes` is what an item counts against its organization now: its
declared size (or its type's limit when none was declared) while PENDING_UPLOAD, its
original's stored size until it is processed, its processed copy and poster once
COMPLETED, nothing once REJECTED or DELETED (their objects are gone). A trigger sets it
on every change of status or size and moves the organization's usage by the
difference; a purged session gives its items' charges back. Usage lives in 64 shards
per organization (their sum is the usage), so the changes of one busy organization do
not all queue on one row.

`add_pending_upload` is getUploadUrl's and startMultipartUpload's one statement: it
takes a place in the open session, checks the user's outstanding uploads (under a lock
per user, so concurrent requests are counted exactly), charges the session's usage
shard and inserts the row, then checks the quota when one applies (`check_quota`).
A refusal raises, so nothing of it stays: no row, no count, no usage.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-12-03T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "organization usage and quotas, outstanding uploads per user"

STATEMENTS = (
    # A single PUT may now declare its size too (signed into its URL); a multipart upload
    # still has all three.
    """
    ALTER TABLE session_media DROP CONSTRAINT session_media_multipart_complete,
      ADD CONSTRAINT session_media_multipart_complete CHECK (
        (upload_id IS NULL) = (part_size IS NULL)
        AND (upload_id IS NULL OR declared_size IS NOT NULL)
      )
    """,
    """
    ALTER TABLE session_media
      ADD COLUMN charged_bytes BIGINT NOT NULL DEFAULT 0 CHECK (charged_bytes >= 0),
      ADD COLUMN poster_size BIGINT CHECK (poster_size >= 0)
    """,
    """
    UPDATE session_media SET charged_bytes = CASE
      WHEN status IN ('REJECTED', 'DELETED') THEN 0
      ELSE COALESCE(file_size, declared_size, 0)
    END
    """,
    """
    CREATE TABLE organization_quotas (
      organization_id UUID PRIMARY KEY,
      -- NULL: no quota at all (the row exists only for an organization's own quota;
      -- without one, ORG_STORAGE_QUOTA_BYTES applies).
      quota_bytes BIGINT CHECK (quota_bytes >= 0)
    )
    """,
    # An organization's usage is the sum of its shards: concurrent changes of one
    # organization update different rows instead of queueing on one row's lock.
    """
    CREATE TABLE usage_shards (
      organization_id UUID NOT NULL,
      shard SMALLINT NOT NULL CHECK (shard BETWEEN 0 AND 63),
      used_bytes BIGINT NOT NULL DEFAULT 0,
      updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      PRIMARY KEY (organization_id, shard)
    )
    """,
    # An UPDATE first: an upsert's speculative insert cost getUploadUrl a quarter of its
    # database time (measured); the INSERT happens once per shard.
    """
    CREATE FUNCTION add_usage(p_organization UUID, p_shard INTEGER, p_delta BIGINT)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE usage_shards SET used_bytes = used_bytes + p_delta, updated_at = clock_timestamp()
      WHERE organization_id = p_organization AND shard = p_shard & 63;
      IF NOT FOUND THEN
        INSERT INTO usage_shards AS u (organization_id, shard, used_bytes)
        VALUES (p_organization, p_shard & 63, p_delta)
        ON CONFLICT (organization_id, shard) DO UPDATE
        SET used_bytes = u.used_bytes + p_delta, updated_at = clock_timestamp();
      END IF;
    END
    $$
    """,
    """
    SELECT add_usage(s.organization_id, 0, COALESCE(sum(m.charged_bytes), 0)::bigint)
    FROM garage_sessions s LEFT JOIN session_media m ON m.session_id = s.id
    GROUP BY s.organization_id
    """,
    """
    CREATE INDEX idx_session_media_pending_user ON session_media (uploaded_by, upload_expires_at)
      WHERE status = 'PENDING_UPLOAD'
    """,
    """
    CREATE FUNCTION charge_media() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      charge BIGINT;
      delta BIGINT;
    BEGIN
      IF TG_OP = 'DELETE' THEN
        delta := -OLD.charged_bytes;
      ELSE
        charge := CASE
          WHEN NEW.status = 'PENDING_UPLOAD' THEN OLD.charged_bytes
          WHEN NEW.status IN ('REJECTED', 'DELETED') THEN 0
          WHEN NEW.status = 'COMPLETED'
            THEN COALESCE(NEW.file_size, 0) + COALESCE(NEW.poster_size, 0)
          ELSE COALESCE(NEW.file_size, OLD.charged_bytes)
        END;
        NEW.charged_bytes := charge;
        delta := charge - OLD.charged_bytes;
      END IF;
      IF delta <> 0 THEN
        PERFORM add_usage(s.organization_id, hashtext(OLD.id::text), delta)
        FROM garage_sessions s WHERE s.id = OLD.session_id;
      END IF;
      RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END
    $$
    """,
    """
    CREATE TRIGGER session_media_charge BEFORE UPDATE OF status, file_size, poster_size
    ON session_media FOR EACH ROW EXECUTE FUNCTION charge_media()
    """,
    # A row deleted on its own gives its charge back here; a session's rows, deleted by
    # its cascade, find their session gone: the session's own trigger gave them back.
    """
    CREATE TRIGGER session_media_uncharge BEFORE DELETE ON session_media
    FOR EACH ROW EXECUTE FUNCTION charge_media()
    """,
    """
    CREATE FUNCTION uncharge_session() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM add_usage(OLD.organization_id, hashtext(OLD.id::text), -COALESCE(sum(charged_bytes), 0)::bigint)
      FROM session_media WHERE session_id = OLD.id;
      RETURN OLD;
    END
    $$
    """,
    """
    CREATE TRIGGER garage_sessions_uncharge BEFORE DELETE ON garage_sessions
    FOR EACH ROW EXECUTE FUNCTION uncharge_session()
    """,
    # Exact without queueing every reservation. One far enough below the quota takes one
    # of 8 slots of its organization (a free one, else it waits for one) and passes: what
    # it cannot see is what the others holding slots reserved, at most 8 of the largest
    # charge. Near the quota it takes every slot in order (so every reservation before it
    # has committed) and checks the exact sum. No call waits while holding a slot: no
    # deadlock. The check comes after the writes, so a slot is held only until the commit.
    """
    CREATE FUNCTION check_quota(p_organization UUID, p_quota BIGINT, p_max_charge BIGINT)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
      used BIGINT;
      first INTEGER := floor(random() * 8);
    BEGIN
      SELECT COALESCE(sum(used_bytes), 0) INTO used
      FROM usage_shards WHERE organization_id = p_organization;
      IF used + 8 * p_max_charge <= p_quota THEN
        FOR step IN 0..7 LOOP
          IF pg_try_advisory_xact_lock(
            hashtextextended('quota:' || p_organization::text, (first + step) % 8)
          ) THEN
            RETURN;
          END IF;
        END LOOP;
        -- All busy: wait for one (holding none, as the ordered path below does).
        PERFORM pg_advisory_xact_lock(hashtextextended('quota:' || p_organization::text, first));
        RETURN;
      END IF;
      FOR slot IN 0..7 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('quota:' || p_organization::text, slot));
      END LOOP;
      SELECT COALESCE(sum(used_bytes), 0) INTO used
      FROM usage_shards WHERE organization_id = p_organization;
      IF used > p_quota THEN
        RAISE EXCEPTION USING ERRCODE = 'MG002', MESSAGE = 'storage quota exceeded',
          DETAIL = p_quota::text;
      END IF;
    END
    $$
    """,
    """
    CREATE FUNCTION add_pending_upload(
      p_session UUID, p_organization UUID, p_key TEXT, p_filename TEXT, p_type TEXT,
      p_stage TEXT, p_user UUID, p_expires TIMESTAMPTZ, p_request TEXT, p_upload_id TEXT,
      p_declared BIGINT, p_part BIGINT, p_max_items INTEGER, p_max_pending INTEGER,
      p_late INTERVAL, p_charge BIGINT, p_default_quota BIGINT, p_max_charge BIGINT
    ) RETURNS UUID LANGUAGE plpgsql AS $$
    DECLARE
      outstanding INTEGER;
      oldest TIMESTAMPTZ;
      quota BIGINT;
      used BIGINT;
      inserted UUID;
      charged INTEGER;
    BEGIN
      -- Locks in one order everywhere (the user, the session, its shard, the quota): no
      -- two calls can wait on each other in a circle.
      SELECT CASE WHEN q.organization_id IS NULL THEN p_default_quota ELSE q.quota_bytes END
      INTO quota
      FROM (SELECT pg_advisory_xact_lock(hashtextextended('pending:' || p_user::text, 0))) AS l
      LEFT JOIN organization_quotas q ON q.organization_id = p_organization;

      -- Counted up to the limit only: the work is bounded by it, however many there are.
      SELECT count(*) INTO outstanding FROM (
        SELECT 1 FROM session_media
        WHERE uploaded_by = p_user AND status = 'PENDING_UPLOAD'
          AND upload_expires_at > clock_timestamp() - p_late
        LIMIT p_max_pending
      ) AS counted;
      IF outstanding >= p_max_pending THEN
        SELECT min(upload_expires_at) INTO oldest FROM session_media
        WHERE uploaded_by = p_user AND status = 'PENDING_UPLOAD'
          AND upload_expires_at > clock_timestamp() - p_late;
        RAISE EXCEPTION USING ERRCODE = 'MG001', MESSAGE = 'too many outstanding uploads',
          DETAIL = extract(epoch FROM oldest + p_late)::text;
      END IF;

      -- The place in the session, the charge on the session's shard (a request holding
      -- the session's row holds its shard too) and the row, in one statement.
      WITH place AS (
        UPDATE garage_sessions SET item_count = item_count + 1
        WHERE id = p_session AND organization_id = p_organization
          AND item_count < p_max_items AND closed_at IS NULL
        RETURNING id
      ), charge AS (
        UPDATE usage_shards SET used_bytes = used_bytes + p_charge,
          updated_at = clock_timestamp()
        WHERE organization_id = p_organization
          AND shard = hashtext(p_session::text) & 63 AND EXISTS (SELECT 1 FROM place)
        RETURNING 1
      ), added AS (
        INSERT INTO session_media (
          session_id, file_key, original_filename, content_type, stage, uploaded_by,
          upload_expires_at, changed_by, change_ref, upload_id, declared_size, part_size,
          charged_bytes
        )
        SELECT place.id, p_key, p_filename, p_type, p_stage, p_user, p_expires,
          'user:' || p_user::text, p_request, p_upload_id, p_declared, p_part, p_charge
        FROM place
        RETURNING id
      )
      SELECT (SELECT id FROM added), (SELECT count(*) FROM charge) INTO inserted, charged;
      IF inserted IS NOT NULL AND charged = 0 THEN  -- the shard's first charge
        PERFORM add_usage(p_organization, hashtext(p_session::text), p_charge);
      END IF;
      IF inserted IS NOT NULL AND quota IS NOT NULL THEN
        PERFORM check_quota(p_organization, quota, p_max_charge);
      END IF;
      RETURN inserted;  -- NULL: no place in the session, and nothing was written
    END
    $$
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
