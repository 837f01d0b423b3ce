"""Webhook endpoints, the outbox the status trigger fills, and its delivery log.

Deliveries are leased, not locked: a worker takes due ones by setting `leased_until`,
sends them without holding a transaction open, then records the attempt. A worker
that dies mid-send leaves its lease to expire, and another sends the event again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mediagate.db.engine import pool


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: uuid.UUID
    organization_id: uuid.UUID | None
    url: str
    events: tuple[str, ...]
    enabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> EndpointRecord:
        return cls(
            row["id"],
            row["organization_id"],
            row["url"],
            tuple(row["events"]),
            row["enabled"],
            row["created_at"],
        )


_ENDPOINT_COLUMNS = "id, organization_id, url, events, enabled, created_at"


async def add_endpoint(
    organization_id: uuid.UUID, url: str, events: tuple[str, ...], secret: str, most: int
) -> EndpointRecord | None:
    """The new endpoint, or None when the organization has `most` already."""
    async with pool().acquire() as connection, connection.transaction():
        # One creation per organization at a time: the count cannot be passed by a race.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", f"webhooks:{organization_id}"
        )
        row = await connection.fetchrow(
            f"""
            INSERT INTO webhook_endpoints (organization_id, url, events, secret)
            SELECT $1, $2, $3, $4
            WHERE (SELECT count(*) FROM webhook_endpoints WHERE organization_id = $1) < $5
            RETURNING {_ENDPOINT_COLUMNS}
            """,
            organization_id,
            url,
            list(events),
            secret,
            most,
        )
    return None if row is None else EndpointRecord.from_row(row)


async def endpoints(organization_id: uuid.UUID) -> list[EndpointRecord]:
    rows = await pool().fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1"
        " ORDER BY created_at, id",
        organization_id,
    )
    return [EndpointRecord.from_row(row) for row in rows]


async def endpoint(organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> EndpointRecord | None:
    row = await pool().fetchrow(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND organization_id = $2",
        endpoint_id,
        organization_id,
    )
    return None if row is None else EndpointRecord.from_row(row)


async def rotate_secret(
    organization_id: uuid.UUID, endpoint_id: uuid.UUID, secret: str, overlap: timedelta
) -> EndpointRecord | None:
    """The new secret signs from now on; the one it replaces beside it until `overlap` ends."""
    row = await pool().fetchrow(
        f"""
        UPDATE webhook_endpoints
        SET previous_secret = secret, previous_secret_until = now() + $4, secret = $3
        WHERE id = $1 AND organization_id = $2 RETURNING {_ENDPOINT_COLUMNS}
        """,
        endpoint_id,
        organization_id,
        secret,
        overlap,
    )
    return None if row is None else EndpointRecord.from_row(row)


async def delete_endpoint(
    organization_id: uuid.UUID, endpoint_id: uuid.UUID
) -> EndpointRecord | None:
    row = await pool().fetchrow(
        f"DELETE FROM webhook_endpoints WHERE id = $1 AND organization_id = $2"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        organization_id,
    )
    return None if row is None else EndpointRecord.from_row(row)


async def configure_endpoint_for_all(url: str | None, secret: str | None) -> None:
    """The one endpoint every organization's events go to (WEBHOOK_URL), as configured;
    none when unset."""
    if url is None or secret is None:
        await pool().execute("DELETE FROM webhook_endpoints WHERE organization_id IS NULL")
        return
    await pool().execute(
        """
        INSERT INTO webhook_endpoints (organization_id, url, secret) VALUES (NULL, $1, $2)
        ON CONFLICT ((organization_id IS NULL)) WHERE organization_id IS NULL
        DO UPDATE SET url = $1, secret = $2, enabled = true, disabled_reason = NULL
        WHERE webhook_endpoints.url <> $1 OR webhook_endpoints.secret <> $2
        """,
        url,
        secret,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """A due delivery, leased to this worker: what to send and where."""

    id: int
    attempt: int
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    type: str
    body: str
    url: str
    secrets: tuple[str, ...]


# Due deliveries oldest first, at most `$3` per endpoint minus those this process is
# sending already (`$1`, `$2`), and only the first pending one of each media item at
# each endpoint: its events arrive in order.
_CLAIM = """
WITH busy AS (
  SELECT * FROM unnest($1::uuid[], $2::int[]) AS b(endpoint_id, n)
), due AS (
  SELECT d.id, d.endpoint_id,
         row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.id) AS place
  FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
  WHERE d.state = 'pending' AND d.next_attempt_at <= clock_timestamp()
    AND (d.leased_until IS NULL OR d.leased_until < clock_timestamp())
    AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries p
      WHERE p.endpoint_id = d.endpoint_id AND p.media_id = d.media_id
        AND p.state = 'pending' AND p.id < d.id
    )
), chosen AS (
  SELECT due.id FROM due LEFT JOIN busy USING (endpoint_id)
  WHERE due.place <= $3 - COALESCE(busy.n, 0)
  ORDER BY due.id LIMIT $4
)
UPDATE webhook_deliveries d
SET leased_until = clock_timestamp() + make_interval(secs => $5), attempts = d.attempts + 1
FROM chosen, webhook_events ev, webhook_endpoints e
WHERE d.id = chosen.id AND ev.id = d.event_id AND e.id = d.endpoint_id
  AND d.state = 'pending' AND (d.leased_until IS NULL OR d.leased_until < clock_timestamp())
RETURNING d.id, d.attempts, d.endpoint_id, ev.id AS event_id, ev.type, ev.body, e.url,
  e.secret, CASE WHEN e.previous_secret_until > clock_timestamp() THEN e.previous_secret END
  AS previous_secret
"""


async def claim_due(
    busy: dict[uuid.UUID, int], per_endpoint: int, most: int, lease: float
) -> list[Delivery]:
    rows = await pool().fetch(_CLAIM, list(busy), list(busy.values()), per_endpoint, most, lease)
    return [
        Delivery(
            row["id"],
            row["attempts"],
            row["endpoint_id"],
            row["event_id"],
            row["type"],
            row["body"],
            row["url"],
            tuple(s for s in (row["secret"], row["previous_secret"]) if s),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    http_status: int | None
    error: str | None
    duration_ms: int
    # Where the delivery goes next: delivered, failed, or pending again at `retry_at`.
    state: str
    retry_at: datetime | None = None
    disable_endpoint: bool = False


async def record_attempt(delivery: Delivery, result: AttemptResult) -> None:
    """The attempt in the log and the delivery's next state, in one transaction; an
    endpoint that answered 410 is disabled, and what it still had pending fails."""
    async with pool().acquire() as connection, connection.transaction():
        await connection.execute(
            """
            INSERT INTO webhook_attempts
              (delivery_id, endpoint_id, attempt, http_status, error, duration_ms)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            delivery.id,
            delivery.endpoint_id,
            delivery.attempt,
            result.http_status,
            result.error,
            result.duration_ms,
        )
        await connection.execute(
            """
            UPDATE webhook_deliveries
            SET state = $3, next_attempt_at = COALESCE($4, next_attempt_at), leased_until = NULL
            WHERE id = $1 AND attempts = $2
            """,
            delivery.id,
            delivery.attempt,
            result.state,
            result.retry_at,
        )
        if result.disable_endpoint:
            await connection.execute(
                """
                UPDATE webhook_endpoints SET enabled = false, disabled_reason = '410 Gone'
                WHERE id = $1
                """,
                delivery.endpoint_id,
            )
            await connection.execute(
                "UPDATE webhook_deliveries SET state = 'failed', leased_until = NULL"
                " WHERE endpoint_id = $1 AND state = 'pending'",
                delivery.endpoint_id,
            )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    delivery_id: int
    event_id: uuid.UUID
    type: str
    attempt: int
    http_status: int | None
    error: str | None
    occurred_at: datetime
    duration_ms: int


async def attempts(endpoint_id: uuid.UUID, after_id: int, limit: int) -> list[AttemptRecord]:
    rows = await pool().fetch(
        """
        SELECT a.id, a.delivery_id, d.event_id, ev.type, a.attempt, a.http_status, a.error,
               a.occurred_at, a.duration_ms
        FROM webhook_attempts a
        JOIN webhook_deliveries d ON d.id = a.delivery_id
        JOIN webhook_events ev ON ev.id = d.event_id
        WHERE a.endpoint_id = $1 AND a.id > $2 ORDER BY a.id LIMIT $3
        """,
        endpoint_id,
        after_id,
        limit,
    )
    return [AttemptRecord(**dict(row)) for row in rows]


async def redeliver(organization_id: uuid.UUID, delivery_id: int) -> bool:
    """The delivery pending again, due now, with a fresh schedule; False if it is not
    the organization's."""
    row = await pool().fetchval(
        """
        UPDATE webhook_deliveries d
        SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp()
        FROM webhook_endpoints e
        WHERE d.id = $1 AND e.id = d.endpoint_id AND e.organization_id = $2
        RETURNING d.id
        """,
        delivery_id,
        organization_id,
    )
    return row is not None


async def redeliver_since(
    since: datetime, endpoint_id: uuid.UUID | None, include_delivered: bool
) -> int:
    """Every failed (or also delivered) delivery of an event since `since`, pending again."""
    states = ["failed", "delivered"] if include_delivered else ["failed"]
    done = await pool().execute(
        """
        UPDATE webhook_deliveries
        SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp()
        WHERE created_at >= $1 AND state = ANY($2::text[])
          AND ($3::uuid IS NULL OR endpoint_id = $3)
        """,
        since,
        states,
        endpoint_id,
    )
    return int(done.rsplit(" ", 1)[1])


async def purge_events(older_than: datetime) -> int:
    """Events past retention whose every delivery is done (delivered or failed)."""
    done = await pool().execute(
        """
        DELETE FROM webhook_events ev WHERE ev.created_at < $1 AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.state = 'pending'
        )
        """,
        older_than,
    )
    return int(done.rsplit(" ", 1)[1])


async def backlog() -> tuple[float, int]:
    """Seconds the oldest pending delivery has waited (0: none), and disabled endpoints."""
    row = await pool().fetchrow(
        """
        SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - (
                 SELECT min(created_at) FROM webhook_deliveries WHERE state = 'pending')), 0)
                 AS oldest,
               (SELECT count(*) FROM webhook_endpoints WHERE NOT enabled) AS disabled
        """
    )
    return float(row["oldest"]), int(row["disabled"])
