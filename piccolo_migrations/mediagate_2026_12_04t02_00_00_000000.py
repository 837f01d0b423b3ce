"""The quota shared out among an organization's usage shards, so that a reservation reads
and updates one row instead of summing 64.

Each shard holds a budget: its share of the quota (`basis`) that it was shared out for.
A reservation takes any shard that nobody holds (`SKIP LOCKED`: it never waits on
another request's shard) whose budget has room for its charge, and charges it. The
budgets add up to the quota, and no shard holds more than its budget, so the usage
stays within the quota without anyone reading the sum. When no shard has room (near
the quota, or when the quota changed), the reservation takes every shard in order,
waiting for the ones held (so every reservation before it has committed), checks the
exact sum, and shares out what is left of the quota anew.

What processing adds to a file already stored (a copy larger than its original, a
poster) is charged with its budget raised by as much: the file exists, so it is never
refused, and no shard's room grows from it.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-12-04T02:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "the quota shared out among usage shards"

STATEMENTS = (
    """
    ALTER TABLE usage_shards
      -- The quota these budgets were shared out for; NULL: none yet (or set aside).
      ADD COLUMN basis BIGINT,
      ADD COLUMN budget_bytes BIGINT NOT NULL DEFAULT 0
    """,
    """
    ALTER TABLE users ADD COLUMN pending_uploads INTEGER NOT NULL DEFAULT 0
    """,
    """
    UPDATE users u SET pending_uploads = m.items
    FROM (
      SELECT uploaded_by, count(*) AS items FROM session_media
      WHERE status = 'PENDING_UPLOAD' GROUP BY uploaded_by
    ) AS m
    WHERE m.uploaded_by = u.id
    """,
    """
    CREATE FUNCTION count_pending() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE users SET pending_uploads = pending_uploads - 1 WHERE id = OLD.uploaded_by;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER session_media_pending_left AFTER UPDATE OF status ON session_media
    FOR EACH ROW WHEN (OLD.status = 'PENDING_UPLOAD' AND NEW.status <> 'PENDING_UPLOAD')
    EXECUTE FUNCTION count_pending()
    """,
    """
    CREATE TRIGGER session_media_pending_deleted AFTER DELETE ON session_media
    FOR EACH ROW WHEN (OLD.status = 'PENDING_UPLOAD') EXECUTE FUNCTION count_pending()
    """,
    """
    INSERT INTO usage_shards (organization_id, shard)
    SELECT o.organization_id, s.shard
    FROM (SELECT DISTINCT organization_id FROM usage_shards) AS o,
      generate_series(0, 63) AS s(shard)
    ON CONFLICT DO NOTHING
    """,
    """
    CREATE OR REPLACE FUNCTION add_usage(p_organization UUID, p_shard INTEGER, p_delta BIGINT)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE usage_shards SET used_bytes = used_bytes + p_delta,
        budget_bytes = budget_bytes + GREATEST(p_delta, 0), updated_at = clock_timestamp()
      WHERE organization_id = p_organization AND shard = p_shard & 63;
      IF NOT FOUND THEN
        PERFORM add_shards(p_organization);
        PERFORM add_usage(p_organization, p_shard, p_delta);
      END IF;
    END
    $$
    """,
    """
    CREATE FUNCTION add_shards(p_organization UUID) RETURNS void LANGUAGE sql AS $$
      INSERT INTO usage_shards (organization_id, shard)
      SELECT p_organization, generate_series(0, 63)
      ON CONFLICT DO NOTHING
    $$
    """,
    """
    CREATE FUNCTION reserve_usage(p_organization UUID, p_quota BIGINT, p_charge BIGINT)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
      chosen SMALLINT;
      total BIGINT;
      spare BIGINT;
    BEGIN
      -- A row that changed since this statement began is locked before its room is
      -- checked again, and stays locked if it has none left: each try runs in a block of
      -- its own, so that a try that fails gives back what it locked before the next one
      -- waits (holding it could close a circle with the requests that take every shard).
      BEGIN
        UPDATE usage_shards SET used_bytes = used_bytes + p_charge,
          updated_at = clock_timestamp()
        WHERE (organization_id, shard) = (
          SELECT organization_id, shard FROM usage_shards
          WHERE organization_id = p_organization
            AND (p_quota IS NULL OR (basis = p_quota AND used_bytes + p_charge <= budget_bytes))
          LIMIT 1 FOR UPDATE SKIP LOCKED
        );
        IF FOUND THEN
          RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'MG003';
      EXCEPTION WHEN SQLSTATE 'MG003' THEN
        NULL;
      END;
      -- Those with room are all held: wait for one (taking every shard instead would
      -- make each request behind it do the same, one at a time).
      BEGIN
        SELECT shard INTO chosen FROM usage_shards
        WHERE organization_id = p_organization
          AND (p_quota IS NULL OR (basis = p_quota AND used_bytes + p_charge <= budget_bytes))
        ORDER BY random() LIMIT 1;
        UPDATE usage_shards SET used_bytes = used_bytes + p_charge,
          updated_at = clock_timestamp()
        WHERE organization_id = p_organization AND shard = chosen
          AND (p_quota IS NULL OR (basis = p_quota AND used_bytes + p_charge <= budget_bytes));
        IF FOUND THEN
          RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'MG003';
      EXCEPTION WHEN SQLSTATE 'MG003' THEN
        NULL;
      END;
      IF NOT EXISTS (
        SELECT 1 FROM usage_shards WHERE organization_id = p_organization AND shard = 63
      ) THEN
        PERFORM add_shards(p_organization);  -- all 64 at once, in order
      END IF;
      IF p_quota IS NULL THEN  -- the organization's first charge
        PERFORM add_usage(p_organization, 0, p_charge);
        RETURN;
      END IF;
      PERFORM 1 FROM usage_shards WHERE organization_id = p_organization
      ORDER BY shard FOR UPDATE;
      SELECT sum(used_bytes) INTO total FROM usage_shards
      WHERE organization_id = p_organization;
      IF total + p_charge > p_quota THEN
        RAISE EXCEPTION USING ERRCODE = 'MG002', MESSAGE = 'storage quota exceeded',
          DETAIL = p_quota::text;
      END IF;
      spare := p_quota - total - p_charge;
      UPDATE usage_shards
      SET used_bytes = used_bytes + CASE WHEN shard = 0 THEN p_charge ELSE 0 END,
        budget_bytes = used_bytes + CASE WHEN shard = 0 THEN p_charge + spare % 64 ELSE 0 END
          + spare / 64,
        basis = p_quota, updated_at = clock_timestamp()
      WHERE organization_id = p_organization;
    END
    $$
    """,
    "DROP FUNCTION check_quota(UUID, BIGINT, BIGINT)",
    "DROP FUNCTION add_pending_upload(UUID, UUID, TEXT, TEXT, TEXT, TEXT, UUID, TIMESTAMPTZ,"
    " TEXT, TEXT, BIGINT, BIGINT, INTEGER, INTEGER, INTERVAL, BIGINT, BIGINT, BIGINT)",
    """
    CREATE FUNCTION add_pending_upload(
      p_session UUID, p_organization UUID, p_key TEXT, p_filename TEXT, p_type TEXT,
      p_stage TEXT, p_user UUID, p_expires TIMESTAMPTZ, p_request TEXT, p_upload_id TEXT,
      p_declared BIGINT, p_part BIGINT, p_max_items INTEGER, p_max_pending INTEGER,
      p_late INTERVAL, p_charge BIGINT, p_default_quota BIGINT
    ) RETURNS UUID LANGUAGE plpgsql AS $$
    DECLARE
      quota BIGINT;
      inserted UUID;
      outstanding INTEGER;
      oldest TIMESTAMPTZ;
    BEGIN
      SELECT CASE WHEN q.organization_id IS NULL THEN p_default_quota ELSE q.quota_bytes END
      INTO quota
      FROM (SELECT 1) AS one
      LEFT JOIN organization_quotas q ON q.organization_id = p_organization;

      -- Locks in one order everywhere (the session, the user, a shard, every shard in
      -- order), as a status change takes the item, then its user and a shard: no two
      -- calls can wait on each other in a circle.
      WITH place AS (
        UPDATE garage_sessions SET item_count = item_count + 1
        WHERE id = p_session AND organization_id = p_organization
          AND item_count < p_max_items AND closed_at IS NULL
        RETURNING id
      )
      INSERT INTO session_media (
        session_id, file_key, original_filename, content_type, stage, uploaded_by,
        upload_expires_at, changed_by, change_ref, upload_id, declared_size, part_size,
        charged_bytes
      )
      SELECT place.id, p_key, p_filename, p_type, p_stage, p_user, p_expires,
        'user:' || p_user::text, p_request, p_upload_id, p_declared, p_part, p_charge
      FROM place
      RETURNING id INTO inserted;
      IF inserted IS NULL THEN
        RETURN NULL;  -- no place in the session, and nothing was written
      END IF;

      -- The user's PENDING_UPLOAD items, this one included; expired ones count until
      -- they are closed, so only past the limit are the live ones counted exactly (up to
      -- the limit: the work is bounded by it), under the user's row lock.
      UPDATE users SET pending_uploads = pending_uploads + 1 WHERE id = p_user
      RETURNING pending_uploads INTO outstanding;
      IF outstanding > p_max_pending THEN
        SELECT count(*) INTO outstanding FROM (
          SELECT 1 FROM session_media
          WHERE uploaded_by = p_user AND status = 'PENDING_UPLOAD'
            AND upload_expires_at > clock_timestamp() - p_late
          LIMIT p_max_pending::bigint + 1
        ) AS counted;
        IF outstanding > p_max_pending THEN
          SELECT min(upload_expires_at) INTO oldest FROM session_media
          WHERE uploaded_by = p_user AND status = 'PENDING_UPLOAD'
            AND upload_expires_at > clock_timestamp() - p_late AND id <> inserted;
          RAISE EXCEPTION USING ERRCODE = 'MG001', MESSAGE = 'too many outstanding uploads',
            DETAIL = extract(epoch FROM oldest + p_late)::text;
        END IF;
      END IF;

      IF p_charge <> 0 THEN
        PERFORM reserve_usage(p_organization, quota, p_charge);
      END IF;
      RETURN inserted;
    END
    $$
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
