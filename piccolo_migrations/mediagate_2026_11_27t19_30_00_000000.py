"""Count the jobs on an upload that died mid-way (worker killed, decoder crash).

A file that crashes the worker every time would otherwise be redelivered forever.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-27T19:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "session_media.crashed_attempts"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)

    manager.add_raw(
        ddl(
            "ALTER TABLE session_media ADD COLUMN crashed_attempts INTEGER NOT NULL DEFAULT 0 "
            "CHECK (crashed_attempts >= 0)"
        )
    )
    return manager
