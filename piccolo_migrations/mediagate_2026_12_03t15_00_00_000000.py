"""Bounded sessions: each session counts the items it ever had (a row is never removed
but with its session), so getUploadUrl refuses an item past MAX_SESSION_ITEMS in the
same statement that inserts it; and the session's index orders its items the way pages
of sessionMedia read them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-12-03T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "garage_sessions item_count, session_media paging index"

STATEMENTS = (
    "ALTER TABLE garage_sessions ADD COLUMN item_count INTEGER NOT NULL DEFAULT 0"
    " CHECK (item_count >= 0)",
    """
    UPDATE garage_sessions s
    SET item_count = (SELECT count(*) FROM session_media m WHERE m.session_id = s.id)
    """,
    "CREATE INDEX idx_session_media_session_order ON session_media(session_id, created_at, id)",
    "DROP INDEX idx_session_media_session",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
