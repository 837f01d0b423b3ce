"""DELETED: a media item deleteMedia removed (its objects are gone; the row stays so its
history and its id keep meaning something), and its audit action."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-28T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "media_status DELETED"

STATEMENTS = (
    "ALTER TYPE media_status ADD VALUE IF NOT EXISTS 'DELETED'",
    """
    CREATE OR REPLACE FUNCTION record_media_audit() RETURNS trigger LANGUAGE plpgsql AS $$
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
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
