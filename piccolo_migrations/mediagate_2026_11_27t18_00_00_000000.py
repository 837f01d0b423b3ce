"""Initial schema: users, garage_sessions and session_media as the spec describes it.

Written as DDL because Piccolo cannot express a PostgreSQL enum type or CHECK
constraints; the Piccolo tables in mediagate.db.tables mirror it column for column.
Beyond the spec: TIMESTAMPTZ instead of TIMESTAMP, the upload URL's expiry, the
processed copy's key/type/checksum/dimensions, and file_key kept as the original key
(processed_key holds the final one, derived from file_key and so unique with it) so a
client's fileKey stays valid. The spec's index on file_key is left out: UNIQUE already
makes one. Every index costs each getUploadUrl an insert, so there are no others.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-11-27T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "users, garage_sessions, session_media"

STATEMENTS = (
    """
    CREATE TYPE media_status AS ENUM (
      'PENDING_UPLOAD', 'UPLOADED', 'SCANNING', 'SCAN_FAILED',
      'PROCESSING', 'COMPLETED', 'REJECTED'
    )
    """,
    """
    CREATE TABLE users (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      organization_id UUID NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )
    """,
    """
    CREATE TABLE garage_sessions (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      organization_id UUID NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )
    """,
    "CREATE INDEX idx_garage_sessions_organization ON garage_sessions(organization_id)",
    """
    CREATE TABLE session_media (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      session_id UUID NOT NULL REFERENCES garage_sessions(id) ON DELETE CASCADE,
      file_key VARCHAR(500) NOT NULL UNIQUE,
      original_filename VARCHAR(255) NOT NULL,
      content_type VARCHAR(100) NOT NULL,
      file_size BIGINT CHECK (file_size >= 0),
      stage VARCHAR(50),
      alt_text TEXT,
      status media_status NOT NULL DEFAULT 'PENDING_UPLOAD',
      rejection_reason TEXT,
      uploaded_by UUID NOT NULL REFERENCES users(id),
      uploaded_at TIMESTAMPTZ,
      processed_at TIMESTAMPTZ,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      upload_expires_at TIMESTAMPTZ NOT NULL,
      checksum_sha256 CHAR(64),
      processed_key VARCHAR(500),
      processed_content_type VARCHAR(100),
      poster_key VARCHAR(500),
      width INTEGER CHECK (width > 0),
      height INTEGER CHECK (height > 0),
      duration_seconds DOUBLE PRECISION CHECK (duration_seconds >= 0),
      CONSTRAINT valid_content_type CHECK (
        content_type IN (
          'image/jpeg', 'image/png', 'image/gif', 'image/webp',
          'video/mp4', 'video/quicktime', 'video/webm'
        )
      ),
      CONSTRAINT valid_stage CHECK (
        stage IN ('intake', 'customerRequests', 'inspection', 'testDrive', 'initialReport', 'general')
      ),
      CONSTRAINT completed_has_output CHECK (
        status <> 'COMPLETED' OR (processed_key IS NOT NULL AND processed_at IS NOT NULL)
      ),
      CONSTRAINT rejected_has_reason CHECK (
        status NOT IN ('REJECTED', 'SCAN_FAILED') OR rejection_reason IS NOT NULL
      )
    )
    """,
    "CREATE INDEX idx_session_media_session ON session_media(session_id)",
    "CREATE INDEX idx_session_media_status ON session_media(status)",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)

    manager.add_raw(ddl(*STATEMENTS))
    return manager
