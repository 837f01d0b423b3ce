"""The product's backend: sessions it names and closes, and webhooks that tell it outcomes.

Sessions gain the product's own key (`external_id`, unique within an organization),
its metadata and a close time. Webhooks are an outbox: a trigger writes one
`webhook_events` row per final status change (COMPLETED, REJECTED, SCAN_FAILED,
DELETED), with the body as it will be sent, and one `webhook_deliveries` row per
endpoint that wants it, in the transaction of the change itself: a change that
rolls back sends nothing, and one that commits cannot be lost. Nothing is written
while no endpoint wants the event, so a deployment without webhooks pays nothing.
Workers poll for due deliveries (worker/webhooks.py) rather than LISTEN: a NOTIFY would
serialize the commits of every final transition. Each attempt is kept in
`webhook_attempts`.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from mediagate.db.engine import ddl

ID = "2026-12-03T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "service-owned sessions, webhook endpoints and their outbox"

STATEMENTS = (
    """
    ALTER TABLE garage_sessions
      ADD COLUMN external_id TEXT CHECK (char_length(external_id) <= 200),
      ADD COLUMN metadata JSONB,
      ADD COLUMN closed_at TIMESTAMPTZ
    """,
    """
    CREATE UNIQUE INDEX idx_garage_sessions_external ON garage_sessions
      (organization_id, external_id) WHERE external_id IS NOT NULL
    """,
    "CREATE INDEX idx_garage_sessions_org_order ON garage_sessions (organization_id, created_at, id)",
    "DROP INDEX idx_garage_sessions_organization",
    """
    CREATE TABLE webhook_endpoints (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      -- NULL: the configured endpoint (WEBHOOK_URL), which hears every organization.
      organization_id UUID,
      url TEXT NOT NULL,
      -- Empty: every event type.
      events TEXT[] NOT NULL DEFAULT '{}',
      enabled BOOLEAN NOT NULL DEFAULT true,
      disabled_reason TEXT,
      secret TEXT NOT NULL,
      previous_secret TEXT,
      previous_secret_until TIMESTAMPTZ,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX idx_webhook_endpoints_org ON webhook_endpoints (organization_id, created_at)",
    """
    CREATE UNIQUE INDEX idx_webhook_endpoints_configured ON webhook_endpoints
      ((organization_id IS NULL)) WHERE organization_id IS NULL
    """,
    """
    CREATE TABLE webhook_events (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      organization_id UUID NOT NULL,
      media_id UUID NOT NULL,
      type TEXT NOT NULL,
      body TEXT NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )
    """,
    "CREATE INDEX idx_webhook_events_created ON webhook_events USING brin (created_at)",
    """
    CREATE TABLE webhook_deliveries (
      -- Ascending in commit order, near enough: a media item's events go out in this order.
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      event_id UUID NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
      endpoint_id UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
      media_id UUID NOT NULL,
      state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      -- While set and in the future, one worker is sending it: no other takes it.
      leased_until TIMESTAMPTZ,
      created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
      WHERE state = 'pending'
    """,
    """
    CREATE INDEX idx_webhook_deliveries_order ON webhook_deliveries (endpoint_id, media_id, id)
      WHERE state = 'pending'
    """,
    "CREATE INDEX idx_webhook_deliveries_event ON webhook_deliveries (event_id)",
    "CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at)",
    """
    CREATE TABLE webhook_attempts (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
      endpoint_id UUID NOT NULL,
      attempt INTEGER NOT NULL,
      http_status INTEGER,
      error TEXT,
      occurred_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      duration_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX idx_webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id)",
    "CREATE INDEX idx_webhook_attempts_delivery ON webhook_attempts (delivery_id)",
    """
    CREATE FUNCTION record_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      event_type TEXT := 'media.' || lower(NEW.status::text);
      organization UUID;
      external TEXT;
      event UUID;
    BEGIN
      SELECT s.organization_id, s.external_id INTO organization, external
      FROM garage_sessions s WHERE s.id = NEW.session_id;
      IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e
        WHERE e.enabled AND (e.organization_id = organization OR e.organization_id IS NULL)
          AND (cardinality(e.events) = 0 OR event_type = ANY (e.events))
      ) THEN
        RETURN NULL;
      END IF;
      INSERT INTO webhook_events (organization_id, media_id, type, body)
      VALUES (organization, NEW.id, event_type, jsonb_build_object(
        'type', event_type,
        'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_build_object(
          'id', NEW.id,
          'sessionId', NEW.session_id,
          'externalSessionId', external,
          'status', NEW.status::text,
          'contentType', COALESCE(NEW.processed_content_type, NEW.content_type),
          'fileSize', NEW.file_size,
          'width', NEW.width,
          'height', NEW.height,
          'durationSeconds', NEW.duration_seconds,
          'rejectionReason', CASE WHEN NEW.status IN ('REJECTED', 'SCAN_FAILED')
                                  THEN NEW.rejection_reason END
        )
      )::text)
      RETURNING id INTO event;
      INSERT INTO webhook_deliveries (event_id, endpoint_id, media_id)
      SELECT event, e.id, NEW.id FROM webhook_endpoints e
      WHERE e.enabled AND (e.organization_id = organization OR e.organization_id IS NULL)
        AND (cardinality(e.events) = 0 OR event_type = ANY (e.events));
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER session_media_webhook AFTER UPDATE OF status ON session_media
    FOR EACH ROW WHEN (
      OLD.status IS DISTINCT FROM NEW.status
      AND NEW.status IN ('COMPLETED', 'REJECTED', 'SCAN_FAILED', 'DELETED')
    )
    EXECUTE FUNCTION record_webhook_event()
    """,
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mediagate", description=DESCRIPTION)
    manager.add_raw(ddl(*STATEMENTS))
    return manager
