"""Announce every status transition on the `media_updated` channel.

A trigger rather than a NOTIFY beside each UPDATE: whichever process (API, worker,
operator) changes a row, the change is announced, and only when its transaction
commits. The payload names the row and its session; listeners read the row itself.
New rows (getUploadUrl) are not announced: PostgreSQL serializes the commits of
notifying transactions, which cost the hot path a sixth to a quarter of its throughput
(measured), and an item nobody has uploaded to yet is news to no one. It appears at its
first transition (confirmUpload, or its bucket event).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-28T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "NOTIFY media_updated on status change"

STATEMENTS = (
    """
    CREATE FUNCTION notify_media_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify(
        'media_updated',
        json_build_object('id', NEW.id, 'session_id', NEW.session_id)::text
      );
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER session_media_status_changed AFTER UPDATE OF status ON session_media
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_media_updated()
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)

    manager.add_raw(ddl(*STATEMENTS))
    return manager
