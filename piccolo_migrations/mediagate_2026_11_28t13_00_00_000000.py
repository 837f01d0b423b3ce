"""Multipart uploads: the store's upload id, the size the client declared and the part
size the service chose. A multipart row is PENDING_UPLOAD until the service completes
the upload; the status machine is the single PUT's."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-28T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "session_media multipart columns"

STATEMENTS = (
    """
    ALTER TABLE session_media
      ADD COLUMN upload_id TEXT CHECK (length(upload_id) <= 1024),
      ADD COLUMN declared_size BIGINT CHECK (declared_size > 0),
      ADD COLUMN part_size BIGINT CHECK (part_size > 0),
      ADD CONSTRAINT session_media_multipart_complete CHECK (
        (upload_id IS NULL) = (declared_size IS NULL) AND (upload_id IS NULL) = (part_size IS NULL)
      )
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
