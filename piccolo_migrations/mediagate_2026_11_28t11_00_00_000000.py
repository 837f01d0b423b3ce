"""DELETED: a media item deleteMedia removed (its objects are gone; the row stays so its
history and its id keep meaning something), and its audit action."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-28T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "media_status DELETED"

# Alone in its migration: a value added to an enum cannot be used in the transaction
# that adds it. The audit trigger (previous migration) already names it 'deleted'.
STATEMENTS = ("ALTER TYPE media_status ADD VALUE IF NOT EXISTS 'DELETED'",)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
