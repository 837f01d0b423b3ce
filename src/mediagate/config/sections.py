"""The settings, by the part of the system that uses them: each section is handed whole
to that part. Each field is declared once, on one line: variable, default, parser,
meaning (the documentation's table is made from these lines)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from mediagate.config.fields import (
    CSV,
    DELAYS,
    FLAG,
    PORT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    REQUIRED,
    SECONDS_LIST,
    TEXT,
    UPPER,
    Derived,
    Parser,
    bounded_int,
    one_of,
    same_as,
    setting,
    url,
    url_list,
)
from mediagate.domain.media_types import MediaKind
from mediagate.domain.webhooks import AllowedNetworks, is_secret

MIB = 1024 * 1024
# clamd reads at most 4 GB of a stream; deploy/clamav/clamd.conf sets its limits here.
MAX_SCANNABLE_BYTES = 4000 * MIB
# S3's smallest part (but the last).
MIN_PART_BYTES = 5 * MIB
# SigV4 presigned URLs live at most seven days.
MAX_URL_TTL = 7 * 24 * 3600

_SIZE = bounded_int(1, MAX_SCANNABLE_BYTES, "a byte count from 1 to 4194304000 (clamd's limit)")
_TTL = bounded_int(1, MAX_URL_TTL, f"whole seconds from 1 to {MAX_URL_TTL}")
_PART = bounded_int(MIN_PART_BYTES, None, f"at least {MIN_PART_BYTES} bytes")
_HTTP_URL, _AMQP_URL = url("http", "https"), url("amqp", "amqps")
_AMQP_NODES = url_list("amqp", "amqps")
_NETWORKS = Parser(AllowedNetworks.parse, "comma-separated CIDRs and/or `public`")
_WEBHOOK_SECRET = Parser(lambda value: value if is_secret(value) else _refuse(value), "`whsec_` and base64 of 24 to 64 bytes")  # fmt: skip
_PRIVATE_AND_PUBLIC = AllowedNetworks.parse("public,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16")


def _refuse(value: str) -> str:
    raise ValueError(value)


def _without_credentials(address: str) -> str:
    """The broker as a store reaches it, by default: RGW refuses a password over plain AMQP."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_BROKER_AS_A_STORE_REACHES_IT = Derived(
    lambda loaded, _env: _without_credentials(loaded["AMQP_URL"].split(",")[0]),
    "`AMQP_URL` (its first node) without credentials",
)
_REGION = Derived(
    lambda _loaded, env: env.get("AWS_REGION") or "us-east-1", "`AWS_REGION`, else `us-east-1`"
)


def _legacy_or(default: int) -> Derived:
    return Derived(
        lambda loaded, _env: loaded["MAX_UPLOAD_BYTES"] or default,
        f"`MAX_UPLOAD_BYTES`, else `{default}`",
    )


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = setting("DATABASE_URL", REQUIRED, url("postgres", "postgresql"), "`postgresql://user:pass@host:5432/db`")  # fmt: skip
    pool_size: int = setting("DB_POOL_SIZE", 20, POSITIVE_INT, "API connections per process")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    url: str = setting("AMQP_URL", REQUIRED, _AMQP_NODES, "`amqp://user:pass@host:5672`; a cluster's nodes comma-separated, tried in order: each process connects to the first that answers and moves on when its node goes away")  # fmt: skip
    publish_timeout: float = setting("AMQP_PUBLISH_TIMEOUT", 10.0, POSITIVE_FLOAT, "how long publishing a job may keep trying, on the next node once its own goes away, before confirmUpload answers SERVICE_UNAVAILABLE (seconds)")  # fmt: skip
    queue_type: str = setting("QUEUE_TYPE", "quorum", one_of("quorum", "classic"), "the type the work, retry and dead-letter queues are declared with: `quorum` (replicated on a cluster; RabbitMQ 3.10+) or `classic`")  # fmt: skip
    media_queue: str = setting("MEDIA_QUEUE", "mediagate.media", TEXT, "the work queue (plus `.retry.<ms>ms` and `.dead`)")  # fmt: skip
    events_exchange: str = setting("BUCKET_EVENTS_EXCHANGE", "mediagate.bucket-events", TEXT, "exchange the store publishes to (durable)")  # fmt: skip
    events_exchange_type: str = setting("BUCKET_EVENTS_EXCHANGE_TYPE", "direct", one_of("direct", "fanout", "topic"), "its type")  # fmt: skip
    events_routing_key: str = setting("BUCKET_EVENTS_ROUTING_KEY", "uploads", TEXT, "routing key the store uses and the queue binds (on RGW: the topic's name)")  # fmt: skip
    events_source: str = setting("BUCKET_EVENTS_SOURCE", "minio", one_of("minio", "rgw", "none"), "who sends bucket events: `minio` (its AMQP target), `rgw` (a Ceph RGW topic that `storage setup` creates) or `none` (confirmUpload's job alone)")  # fmt: skip
    events_amqp_url: str = setting("BUCKET_EVENTS_AMQP_URL", _BROKER_AS_A_STORE_REACHES_IT, _AMQP_URL, "RabbitMQ as the store reaches it (RGW topics)")  # fmt: skip

    def nodes(self) -> list[str]:
        return self.url.split(",")


@dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint: str = setting("S3_ENDPOINT", REQUIRED, _HTTP_URL, "the store as mediagate reaches it, e.g. `http://minio:9000`")  # fmt: skip
    public_endpoint: str = setting("S3_PUBLIC_ENDPOINT", same_as("S3_ENDPOINT"), _HTTP_URL, "the host browsers reach; signed into every URL")  # fmt: skip
    access_key: str = setting("S3_ACCESS_KEY", REQUIRED, TEXT, "the service's store credential")
    secret_key: str = setting("S3_SECRET_KEY", REQUIRED, TEXT, "its secret", secret=True)
    upload_access_key: str = setting("S3_UPLOAD_ACCESS_KEY", same_as("S3_ACCESS_KEY"), TEXT, "the credential upload URLs are signed with: `s3:PutObject` under `sessions/` only")  # fmt: skip
    upload_secret_key: str = setting("S3_UPLOAD_SECRET_KEY", same_as("S3_SECRET_KEY"), TEXT, "its secret", secret=True)  # fmt: skip
    allow_shared_upload_credentials: bool = setting("S3_ALLOW_SHARED_UPLOAD_CREDENTIALS", False, FLAG, "start even though the upload credential is the service's own (not for production)")  # fmt: skip
    region: str = setting("S3_REGION", _REGION, TEXT, "signing region")
    bucket: str = setting("S3_BUCKET", REQUIRED, TEXT, "where uploads land (`sessions/`) and processed copies live (`processed/`)")  # fmt: skip
    sse: bool = setting("S3_SSE", True, FLAG, "SSE-S3 on processed copies and as the bucket default (MinIO needs its KMS key)")  # fmt: skip
    upload_principal: str | None = setting("S3_UPLOAD_PRINCIPAL", None, TEXT, "stores whose users are granted by bucket policy (Ceph RGW: `arn:aws:iam:::user/<uid>`): the upload credential's user")  # fmt: skip
    service_principal: str | None = setting("S3_SERVICE_PRINCIPAL", None, TEXT, "and the service's (required with the one above)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str | None = setting("JWT_SECRET", None, TEXT, "HS256 key, at least 32 bytes (required unless `JWT_JWKS_URL`)", secret=True)  # fmt: skip
    jwks_url: str | None = setting("JWT_JWKS_URL", None, _HTTP_URL, "RS256 tokens from an OIDC provider's JWKS")  # fmt: skip
    audience: str | None = setting("JWT_AUDIENCE", None, TEXT, "the audience tokens must name")
    issuer: str | None = setting("JWT_ISSUER", None, TEXT, "the issuer tokens must name")
    user_claim: str = setting("JWT_USER_CLAIM", "sub", TEXT, "where the user id is in the token")
    org_claim: str = setting("JWT_ORG_CLAIM", "org_id", TEXT, "where the organization id is")
    role_claim: str = setting("JWT_ROLE_CLAIM", "role", TEXT, "a token whose claim of this name is `service` acts as the organization's backend (sessions, webhooks)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScannerSettings:
    host: str = setting("CLAMAV_HOST", "127.0.0.1", TEXT, "clamd's host")
    port: int = setting("CLAMAV_PORT", 3310, POSITIVE_INT, "clamd's port")
    timeout: float = setting("CLAMAV_TIMEOUT", 600.0, POSITIVE_FLOAT, "seconds clamd may take to answer (a 2 GiB video is scanned after it is sent) before it counts as a scanner failure")  # fmt: skip


@dataclass(frozen=True, slots=True)
class UploadSettings:
    max_upload_bytes: int | None = setting("MAX_UPLOAD_BYTES", None, _SIZE, "deprecated: sets both limits below where they are not set, with a warning")  # fmt: skip
    max_image_bytes: int = setting("MAX_IMAGE_BYTES", _legacy_or(50 * MIB), _SIZE, "largest image accepted (at most 4000 MiB, clamd's limit)")  # fmt: skip
    max_video_bytes: int = setting("MAX_VIDEO_BYTES", _legacy_or(2048 * MIB), _SIZE, "largest video accepted (at most 4000 MiB, clamd's limit)")  # fmt: skip
    multipart_part_size: int = setting("MULTIPART_PART_SIZE", 16 * MIB, _PART, "part size of multipart uploads (at least 5 MiB; larger when a file needs more than 500 parts)")  # fmt: skip
    upload_url_ttl: int = setting("UPLOAD_URL_TTL", 300, _TTL, "seconds a presigned PUT is valid")
    download_url_ttl: int = setting("DOWNLOAD_URL_TTL", 86400, _TTL, "seconds a presigned GET is valid")  # fmt: skip
    max_session_items: int = setting("MAX_SESSION_ITEMS", 10_000, POSITIVE_INT, "items one session may ever hold; more get `LIMIT_EXCEEDED`")  # fmt: skip
    require_size: bool = setting("UPLOAD_REQUIRE_SIZE", False, FLAG, "getUploadUrl must be given `size` (signed into the URL: the store refuses any other length); production: `true`")  # fmt: skip
    max_pending_per_user: int = setting("MAX_PENDING_UPLOADS_PER_USER", 100, POSITIVE_INT, "a user's uploads whose URL is still valid (multipart included); more get `RATE_LIMITED`")  # fmt: skip
    org_quota_bytes: int | None = setting("ORG_STORAGE_QUOTA_BYTES", None, bounded_int(0, None, "a byte count (0 or more)"), "bytes one organization may hold (stored objects and outstanding uploads) unless `mediagate org quota` sets its own; unset: no quota")  # fmt: skip

    def max_bytes(self, kind: MediaKind) -> int:
        return self.max_image_bytes if kind is MediaKind.IMAGE else self.max_video_bytes


@dataclass(frozen=True, slots=True)
class GraphQLSettings:
    """Also the executor's document limits (api/graphql/limits.py)."""

    introspection: bool = setting("GRAPHQL_INTROSPECTION", False, FLAG, "allow schema introspection")  # fmt: skip
    max_depth: int = setting("GRAPHQL_MAX_DEPTH", 8, POSITIVE_INT, "depth of a document, fragments expanded")  # fmt: skip
    max_aliases: int = setting("GRAPHQL_MAX_ALIASES", 10, POSITIVE_INT, "aliases in a document, fragments expanded")  # fmt: skip
    max_selections: int = setting("GRAPHQL_MAX_SELECTIONS", 200, POSITIVE_INT, "fields one operation may select, fragments expanded")  # fmt: skip
    max_spreads: int = setting("GRAPHQL_MAX_FRAGMENT_SPREADS", 30, POSITIVE_INT, "fragment spreads written in one document")  # fmt: skip


@dataclass(frozen=True, slots=True)
class HttpSettings:
    header_timeout: float = setting("HTTP_HEADER_TIMEOUT", 10.0, POSITIVE_FLOAT, "seconds from a connection's first byte (or the previous response) to the end of the request headers")  # fmt: skip
    max_header_bytes: int = setting("HTTP_MAX_HEADER_BYTES", 32 * 1024, POSITIVE_INT, "bytes a request may send before its headers end (request line and headers); more gets a 400 and the connection closes")  # fmt: skip
    body_timeout: float = setting("HTTP_BODY_TIMEOUT", 10.0, POSITIVE_FLOAT, "seconds to receive a request body (64 KiB at most)")  # fmt: skip
    keepalive_timeout: int = setting("HTTP_KEEPALIVE_TIMEOUT", 5, POSITIVE_INT, "seconds an idle keep-alive connection is kept")  # fmt: skip
    max_connections: int = setting("HTTP_MAX_CONNECTIONS", 1000, POSITIVE_INT, "open HTTP connections per API process; more are closed at once")  # fmt: skip
    cors_allowed_origins: tuple[str, ...] = setting("CORS_ALLOWED_ORIGINS", (), CSV, "comma-separated origins allowed to call the API (and to PUT to the bucket)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    max_connections: int = setting("WS_MAX_CONNECTIONS", 10_000, POSITIVE_INT, "open WebSocket connections per API process; more are answered 503")  # fmt: skip
    init_timeout: float = setting("WS_INIT_TIMEOUT", 10.0, POSITIVE_FLOAT, "seconds a new WebSocket has to send `connection_init`")  # fmt: skip
    max_operations: int = setting("WS_MAX_OPERATIONS", 20, POSITIVE_INT, "operations (subscriptions) one WebSocket may run at once")  # fmt: skip
    queue_limit: int = setting("WS_QUEUE_LIMIT", 1000, POSITIVE_INT, "items a subscriber may have waiting (its first page included) before it is dropped; at least 100")  # fmt: skip
    stall_timeout: float = setting("WS_STALL_TIMEOUT", 30.0, POSITIVE_FLOAT, "seconds a subscriber may leave updates untaken before it is dropped")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ApiSettings:
    demo_page: bool = setting("DEMO_PAGE", False, FLAG, "serve the demo page at `/demo`")
    metrics_token: str | None = setting("METRICS_TOKEN", None, TEXT, "when set, `/metrics` answers only `Authorization: Bearer <METRICS_TOKEN>`", secret=True)  # fmt: skip
    metrics_cache_seconds: float = setting("METRICS_CACHE_SECONDS", 5.0, POSITIVE_FLOAT, "the database's figures behind `/metrics` are taken at most this often per process")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ImageSettings:
    time_limit: float = setting("IMAGE_TIME_LIMIT", 30.0, POSITIVE_FLOAT, "seconds (wall clock, and CPU) one image may take to decode and encode")  # fmt: skip
    memory_limit: int = setting("IMAGE_MEMORY_LIMIT", 1024 * MIB, POSITIVE_INT, "address space of the image decoder process")  # fmt: skip


@dataclass(frozen=True, slots=True)
class VideoSettings:
    time_limit: float = setting("VIDEO_TIME_LIMIT", 600.0, POSITIVE_FLOAT, "seconds one ffmpeg run may take, plus the next per second of video")  # fmt: skip
    time_per_second: float = setting("VIDEO_TIME_PER_SECOND", 3.0, POSITIVE_FLOAT, "seconds added per second of the video's duration")  # fmt: skip
    time_limit_max: float = setting("VIDEO_TIME_LIMIT_MAX", 4 * 3600.0, POSITIVE_FLOAT, "the most one ffmpeg run may take, whatever the duration (at least `VIDEO_TIME_LIMIT`)")  # fmt: skip
    max_height: int = setting("VIDEO_MAX_HEIGHT", 1080, POSITIVE_INT, "the output's shorter side at most (larger videos are scaled down)")  # fmt: skip
    memory_limit: int = setting("VIDEO_MEMORY_LIMIT", 4096 * MIB, POSITIVE_INT, "address space of the video step (ffmpeg's threads reserve much more than they touch)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetrySettings:
    delays_ms: tuple[int, ...] = setting("RETRY_DELAYS_MS", (1000, 5000, 30000, 120000), DELAYS, "backoff per retry; their count bounds the retries")  # fmt: skip


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    prefetch: int = setting("WORKER_PREFETCH", 2, POSITIVE_INT, "jobs in flight per worker process")  # fmt: skip
    metrics_host: str = setting("WORKER_METRICS_HOST", "127.0.0.1", TEXT, "address the worker's own `/metrics` listens on (compose: `0.0.0.0` on its network)")  # fmt: skip
    metrics_port: int | None = setting("WORKER_METRICS_PORT", None, PORT, "its port (unset: off; one per process on a host)")  # fmt: skip
    job_ack_after: float = setting("JOB_ACK_AFTER", 300.0, POSITIVE_FLOAT, "seconds after which a running job acks its message and holds its lease (below RabbitMQ's consumer timeout)")  # fmt: skip
    scratch_reserve_bytes: int = setting("SCRATCH_RESERVE_BYTES", 1024 * MIB, POSITIVE_INT, "scratch space a job must leave free; less and the job waits (retried)")  # fmt: skip
    shutdown_grace: float = setting("SHUTDOWN_GRACE", 30.0, POSITIVE_FLOAT, "seconds in-flight jobs get after SIGTERM before they go back to the queue")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    interval: float = setting("RECONCILE_INTERVAL", 300.0, POSITIVE_FLOAT, "seconds between reconciler runs (one worker at a time)")  # fmt: skip
    stuck_after: float = setting("RECONCILE_STUCK_AFTER", 1800.0, POSITIVE_FLOAT, "seconds an in-flight upload may go untouched before its job is queued again")  # fmt: skip
    grace: float = setting("RECONCILE_GRACE", 3600.0, POSITIVE_FLOAT, "seconds past a URL's expiry, or an object's age, before the reconciler closes or deletes")  # fmt: skip
    audit_retention_days: int = setting("AUDIT_RETENTION_DAYS", 400, POSITIVE_INT, "audit events older than this are deleted")  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Every call out to the product's backend: webhooks and the validation hook."""

    timeout: float = setting("WEBHOOK_TIMEOUT", 15.0, POSITIVE_FLOAT, "seconds a webhook or validation hook call may take, connecting included")  # fmt: skip
    allowed_networks: AllowedNetworks = setting("WEBHOOK_ALLOWED_NETWORKS", _PRIVATE_AND_PUBLIC, _NETWORKS, "where calls out may connect (checked on every connection): `public` (global unicast) and CIDRs; loopback, link-local, multicast and unspecified only when listed")  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str | None = setting("WEBHOOK_URL", None, _HTTP_URL, "one endpoint every organization's events go to (single-tenant deployments)")  # fmt: skip
    secret: str | None = setting("WEBHOOK_SECRET", None, _WEBHOOK_SECRET, "its `whsec_` secret (required with `WEBHOOK_URL`)", secret=True)  # fmt: skip
    retry_schedule: tuple[float, ...] = setting("WEBHOOK_RETRY_SCHEDULE", (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400), SECONDS_LIST, "seconds before each retry (±10% jitter); their count bounds the retries, then the delivery is failed and kept")  # fmt: skip
    rotation_overlap: float = setting("WEBHOOK_ROTATION_OVERLAP", 86400.0, POSITIVE_FLOAT, "seconds the old secret still signs beside the new one after `rotateWebhookSecret`")  # fmt: skip
    retention_days: int = setting("WEBHOOK_RETENTION_DAYS", 30, POSITIVE_INT, "events and their delivery log are deleted after this many days (none still pending)")  # fmt: skip
    concurrency: int = setting("WEBHOOK_CONCURRENCY", 16, POSITIVE_INT, "deliveries one worker process sends at once (apart from its media jobs)")  # fmt: skip
    endpoint_concurrency: int = setting("WEBHOOK_ENDPOINT_CONCURRENCY", 4, POSITIVE_INT, "of those, to one endpoint at once")  # fmt: skip
    max_endpoints: int = setting("WEBHOOK_MAX_ENDPOINTS", 10, POSITIVE_INT, "endpoints one organization may have")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ValidationHookSettings:
    url: str | None = setting("VALIDATION_HOOK_URL", None, _HTTP_URL, "asked to accept each clean, sanitized upload before it is COMPLETED (unset: off)")  # fmt: skip
    secret: str | None = setting("VALIDATION_HOOK_SECRET", None, _WEBHOOK_SECRET, "its `whsec_` secret (required with the URL)", secret=True)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = setting("LOG_LEVEL", "INFO", UPPER, "JSON log lines on stderr")


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "broker": BrokerSettings,
    "s3": S3Settings,
    "auth": AuthSettings,
    "scanner": ScannerSettings,
    "uploads": UploadSettings,
    "graphql": GraphQLSettings,
    "http": HttpSettings,
    "websocket": WebSocketSettings,
    "api": ApiSettings,
    "image": ImageSettings,
    "video": VideoSettings,
    "retry": RetrySettings,
    "worker": WorkerSettings,
    "reconciler": ReconcilerSettings,
    "outbound": OutboundSettings,
    "webhooks": WebhookSettings,
    "validation_hook": ValidationHookSettings,
    "logging": LogSettings,
}
