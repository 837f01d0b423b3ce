"""The audit log: one `audit_events` row per new upload and per change of its status
(and its confirmation), written by a trigger in the same transaction as the change.

Who made the change travels with it: every UPDATE mediagate makes sets
`session_media.changed_by` ("user:<id>", "worker:<host>:<pid>", "operator:<name>") and
`change_ref` (the API request's or the worker job's id), and the trigger copies them.
A rolled-back change leaves no event. Events keep the organization, session and media
ids by value: they outlive what they describe. No foreign keys, so deleting a session
(or purging one) keeps its history until the retention period ends.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-28T10:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_events, written by trigger"

STATEMENTS = (
    "ALTER TABLE session_media ADD COLUMN changed_by TEXT, ADD COLUMN change_ref TEXT",
    """
    CREATE TABLE audit_events (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      organization_id UUID NOT NULL,
      session_id UUID NOT NULL,
      media_id UUID NOT NULL,
      action TEXT NOT NULL CHECK (
        action IN ('url_issued', 'confirmed', 'status_changed', 'requeued', 'deleted')
      ),
      from_status TEXT,
      to_status TEXT NOT NULL,
      reason TEXT,
      actor TEXT NOT NULL,
      reference TEXT
    )
    """,
    "CREATE INDEX idx_audit_events_session ON audit_events (organization_id, session_id, id)",
    "CREATE INDEX idx_audit_events_media ON audit_events (organization_id, media_id, id)",
    # Append-only, so time follows the heap order: a BRIN index finds what retention
    # drops for almost nothing on each insert.
    "CREATE INDEX idx_audit_events_occurred ON audit_events USING brin (occurred_at)",
    """
    CREATE FUNCTION record_media_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      what TEXT;
      previous TEXT;
    BEGIN
      IF TG_OP = 'INSERT' THEN
        what := 'url_issued';
      ELSE
        previous := OLD.status::text;
        IF NEW.status::text = 'DELETED' THEN
          what := 'deleted';
        ELSIF OLD.uploaded_at IS NULL AND NEW.uploaded_at IS NOT NULL THEN
          what := 'confirmed';
        ELSIF OLD.status = 'SCAN_FAILED' AND NEW.status = 'UPLOADED' THEN
          what := 'requeued';
        ELSE
          what := 'status_changed';
        END IF;
      END IF;
      INSERT INTO audit_events (
        organization_id, session_id, media_id, action, from_status, to_status, reason,
        actor, reference
      )
      SELECT s.organization_id, NEW.session_id, NEW.id, what, previous, NEW.status::text,
             CASE WHEN NEW.status IN ('REJECTED', 'SCAN_FAILED') THEN NEW.rejection_reason END,
             COALESCE(NEW.changed_by, 'user:' || NEW.uploaded_by), NEW.change_ref
      FROM garage_sessions s WHERE s.id = NEW.session_id;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER session_media_audit_insert AFTER INSERT ON session_media
    FOR EACH ROW EXECUTE FUNCTION record_media_audit()
    """,
    """
    CREATE TRIGGER session_media_audit_update AFTER UPDATE ON session_media
    FOR EACH ROW WHEN (
      OLD.status IS DISTINCT FROM NEW.status
      OR (OLD.uploaded_at IS NULL AND NEW.uploaded_at IS NOT NULL)
    )
    EXECUTE FUNCTION record_media_audit()
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
