"""Settings: read once from the environment at start-up, then passed around frozen."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mediagate.domain.media_types import MediaKind
from mediagate.domain.validation import MAX_PAGE

T = TypeVar("T")

MIB = 1024 * 1024
# clamd reads at most 4 GB of a stream; deploy/clamav/clamd.conf sets its limits here.
MAX_SCANNABLE_BYTES = 4000 * MIB
# S3's smallest part (but the last).
MIN_PART_BYTES = 5 * MIB


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it in one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    amqp_url: str
    s3_endpoint: str
    s3_public_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_upload_access_key: str
    s3_upload_secret_key: str
    s3_region: str
    s3_bucket: str
    s3_sse: bool
    jwt_secret: str | None
    jwt_jwks_url: str | None
    jwt_audience: str | None
    jwt_issuer: str | None
    jwt_user_claim: str
    jwt_org_claim: str
    clamav_host: str
    clamav_port: int
    clamav_timeout: float
    max_image_bytes: int
    max_video_bytes: int
    multipart_part_size: int
    upload_url_ttl: int
    download_url_ttl: int
    cors_allowed_origins: tuple[str, ...]
    graphql_introspection: bool
    graphql_max_depth: int
    graphql_max_aliases: int
    graphql_max_selections: int
    graphql_max_fragment_spreads: int
    db_pool_size: int
    http_header_timeout: float
    http_max_header_bytes: int
    http_body_timeout: float
    http_keepalive_timeout: int
    http_max_connections: int
    ws_max_connections: int
    ws_init_timeout: float
    ws_max_operations: int
    ws_queue_limit: int
    ws_stall_timeout: float
    max_session_items: int
    metrics_token: str | None
    metrics_cache_seconds: float
    demo_page: bool
    audit_retention_days: int
    reconcile_interval: float
    reconcile_stuck_after: float
    reconcile_grace: float
    media_queue: str
    bucket_events_exchange: str
    bucket_events_exchange_type: str
    bucket_events_routing_key: str
    bucket_events_source: str
    bucket_events_amqp_url: str
    s3_upload_principal: str | None
    s3_service_principal: str | None
    retry_delays_ms: tuple[int, ...]
    worker_prefetch: int
    worker_metrics_host: str
    worker_metrics_port: int | None
    video_time_limit: float
    video_time_per_second: float
    video_time_limit_max: float
    video_max_height: int
    job_ack_after: float
    scratch_reserve_bytes: int
    video_memory_limit: int
    image_time_limit: float
    image_memory_limit: int
    shutdown_grace: float
    log_level: str

    def max_bytes(self, kind: MediaKind) -> int:
        return self.max_image_bytes if kind is MediaKind.IMAGE else self.max_video_bytes

    def public(self) -> dict[str, Any]:
        """The settings with secrets masked, for logs and diagnostics."""
        secret = {"s3_secret_key", "s3_upload_secret_key", "jwt_secret", "metrics_token"}
        return {
            f.name: ("***" if f.name in secret and getattr(self, f.name) else getattr(self, f.name))
            for f in fields(self)
        }


class _Reader:
    """Reads typed values from an environment mapping, naming the variable on failure."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise SettingsError(f"{name} is required but not set")
        return value

    def optional(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def parsed(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            raise SettingsError(f"{name} must be {expected}, got {value!r}") from None

    def positive_int(self, name: str, default: int) -> int:
        return self.parsed(name, default, _positive_int, "a positive integer")

    def positive_float(self, name: str, default: float) -> float:
        return self.parsed(name, default, _positive_float, "a positive number")

    def flag(self, name: str, default: bool) -> bool:
        return self.parsed(name, default, _flag, "true or false")

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None) -> str:
        value = self.raw(name) or default
        if value is None:
            raise SettingsError(f"{name} is required but not set")
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise SettingsError(f"{name} must be a {'/'.join(schemes)} URL, got {value!r}")
        return value.rstrip("/")


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _port(value: str) -> int | None:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(value)
    return number


# SigV4 presigned URLs live at most seven days.
MAX_URL_TTL = 7 * 24 * 3600
_TTL_RULE = f"whole seconds from 1 to {MAX_URL_TTL}"


def _url_ttl(value: str) -> int:
    seconds = _positive_int(value)
    if seconds > MAX_URL_TTL:
        raise ValueError(value)
    return seconds


# Where bucket events come from: MinIO's AMQP target, a Ceph RGW topic, or nowhere
# (confirmUpload's job alone starts processing).
BUCKET_EVENT_SOURCES = ("minio", "rgw", "none")


def _without_credentials(url: str) -> str:
    """The broker as a store reaches it, by default: RGW refuses a password over plain AMQP."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _scannable_size(value: str) -> int:
    size = _positive_int(value)
    if size > MAX_SCANNABLE_BYTES:
        raise ValueError(value)
    return size


_SIZE_RULE = f"a byte count from 1 to {MAX_SCANNABLE_BYTES} (clamd scans at most 4 GB)"


def _part_size(value: str) -> int:
    size = _positive_int(value)
    if size < MIN_PART_BYTES:
        raise ValueError(value)
    return size


def _size_limits(env: _Reader) -> tuple[int, int]:
    """MAX_IMAGE_BYTES and MAX_VIDEO_BYTES; the deprecated MAX_UPLOAD_BYTES sets both
    where they are not set themselves."""
    legacy = env.parsed("MAX_UPLOAD_BYTES", None, _scannable_size, _SIZE_RULE)
    if legacy is not None:
        warnings.warn(
            "MAX_UPLOAD_BYTES is deprecated: set MAX_IMAGE_BYTES and MAX_VIDEO_BYTES",
            FutureWarning,
            stacklevel=3,
        )
    image = env.parsed("MAX_IMAGE_BYTES", legacy or 50 * MIB, _scannable_size, _SIZE_RULE)
    video = env.parsed("MAX_VIDEO_BYTES", legacy or 2048 * MIB, _scannable_size, _SIZE_RULE)
    return image, video


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(value)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _delays(value: str) -> tuple[int, ...]:
    delays = tuple(_positive_int(item) for item in _csv(value))
    if not delays:
        raise ValueError(value)
    return delays


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raises SettingsError naming the bad variable."""
    env = _Reader(os.environ if environ is None else environ)
    s3_endpoint = env.url("S3_ENDPOINT", ("http", "https"))
    jwt_secret = env.optional("JWT_SECRET")
    jwt_jwks_url = env.optional("JWT_JWKS_URL")
    if jwt_secret is None and jwt_jwks_url is None:
        raise SettingsError("JWT_SECRET is required but not set (or set JWT_JWKS_URL)")
    if jwt_secret is not None and len(jwt_secret.encode()) < 32:
        raise SettingsError("JWT_SECRET must be at least 32 bytes long")
    if jwt_jwks_url is not None:
        env.url("JWT_JWKS_URL", ("http", "https"))
    s3_access_key = env.required("S3_ACCESS_KEY")
    upload_access_key = env.optional("S3_UPLOAD_ACCESS_KEY") or s3_access_key
    if upload_access_key == s3_access_key and not env.flag(
        "S3_ALLOW_SHARED_UPLOAD_CREDENTIALS", False
    ):
        raise SettingsError(
            "S3_UPLOAD_ACCESS_KEY must differ from S3_ACCESS_KEY: presigned uploads would "
            "carry the service's full power (or set S3_ALLOW_SHARED_UPLOAD_CREDENTIALS=true)"
        )
    upload_principal = env.optional("S3_UPLOAD_PRINCIPAL")
    service_principal = env.optional("S3_SERVICE_PRINCIPAL")
    if upload_principal is not None and service_principal is None:
        raise SettingsError(
            "S3_SERVICE_PRINCIPAL is required with S3_UPLOAD_PRINCIPAL: on stores where the "
            "writer owns an object, the bucket policy must let the service read uploads"
        )
    events_source = env.text("BUCKET_EVENTS_SOURCE", "minio")
    if events_source not in BUCKET_EVENT_SOURCES:
        raise SettingsError(
            f"BUCKET_EVENTS_SOURCE must be minio, rgw or none, got {events_source!r}"
        )
    amqp_url = env.url("AMQP_URL", ("amqp", "amqps"))
    exchange_type = env.text("BUCKET_EVENTS_EXCHANGE_TYPE", "direct")
    if exchange_type not in {"direct", "fanout", "topic"}:
        raise SettingsError(
            f"BUCKET_EVENTS_EXCHANGE_TYPE must be direct, fanout or topic, got {exchange_type!r}"
        )
    max_image_bytes, max_video_bytes = _size_limits(env)
    ws_queue_limit = env.positive_int("WS_QUEUE_LIMIT", 1000)
    if ws_queue_limit < MAX_PAGE:
        # A subscription's first state is a page, and it waits in the same queue.
        raise SettingsError(f"WS_QUEUE_LIMIT must be at least {MAX_PAGE} (a page of media)")
    video_time_limit = env.positive_float("VIDEO_TIME_LIMIT", 600.0)
    return Settings(
        database_url=env.url("DATABASE_URL", ("postgres", "postgresql")),
        amqp_url=amqp_url,
        s3_endpoint=s3_endpoint,
        s3_public_endpoint=env.url("S3_PUBLIC_ENDPOINT", ("http", "https"), s3_endpoint),
        s3_access_key=s3_access_key,
        s3_secret_key=env.required("S3_SECRET_KEY"),
        s3_upload_access_key=upload_access_key,
        s3_upload_secret_key=env.optional("S3_UPLOAD_SECRET_KEY") or env.required("S3_SECRET_KEY"),
        s3_region=env.optional("S3_REGION") or env.text("AWS_REGION", "us-east-1"),
        s3_bucket=env.required("S3_BUCKET"),
        s3_sse=env.flag("S3_SSE", True),
        jwt_secret=jwt_secret,
        jwt_jwks_url=jwt_jwks_url,
        jwt_audience=env.optional("JWT_AUDIENCE"),
        jwt_issuer=env.optional("JWT_ISSUER"),
        jwt_user_claim=env.text("JWT_USER_CLAIM", "sub"),
        jwt_org_claim=env.text("JWT_ORG_CLAIM", "org_id"),
        clamav_host=env.text("CLAMAV_HOST", "127.0.0.1"),
        clamav_port=env.positive_int("CLAMAV_PORT", 3310),
        clamav_timeout=env.positive_float("CLAMAV_TIMEOUT", 600.0),
        max_image_bytes=max_image_bytes,
        max_video_bytes=max_video_bytes,
        multipart_part_size=env.parsed(
            "MULTIPART_PART_SIZE", 16 * MIB, _part_size, f"at least {MIN_PART_BYTES} bytes"
        ),
        upload_url_ttl=env.parsed("UPLOAD_URL_TTL", 300, _url_ttl, _TTL_RULE),
        download_url_ttl=env.parsed("DOWNLOAD_URL_TTL", 86400, _url_ttl, _TTL_RULE),
        cors_allowed_origins=env.parsed("CORS_ALLOWED_ORIGINS", (), _csv, "comma-separated"),
        graphql_introspection=env.flag("GRAPHQL_INTROSPECTION", False),
        graphql_max_depth=env.positive_int("GRAPHQL_MAX_DEPTH", 8),
        graphql_max_aliases=env.positive_int("GRAPHQL_MAX_ALIASES", 10),
        graphql_max_selections=env.positive_int("GRAPHQL_MAX_SELECTIONS", 200),
        graphql_max_fragment_spreads=env.positive_int("GRAPHQL_MAX_FRAGMENT_SPREADS", 30),
        db_pool_size=env.positive_int("DB_POOL_SIZE", 20),
        http_header_timeout=env.positive_float("HTTP_HEADER_TIMEOUT", 10.0),
        http_max_header_bytes=env.positive_int("HTTP_MAX_HEADER_BYTES", 32 * 1024),
        http_body_timeout=env.positive_float("HTTP_BODY_TIMEOUT", 10.0),
        http_keepalive_timeout=env.positive_int("HTTP_KEEPALIVE_TIMEOUT", 5),
        http_max_connections=env.positive_int("HTTP_MAX_CONNECTIONS", 1000),
        ws_max_connections=env.positive_int("WS_MAX_CONNECTIONS", 10_000),
        ws_init_timeout=env.positive_float("WS_INIT_TIMEOUT", 10.0),
        ws_max_operations=env.positive_int("WS_MAX_OPERATIONS", 20),
        ws_queue_limit=ws_queue_limit,
        ws_stall_timeout=env.positive_float("WS_STALL_TIMEOUT", 30.0),
        max_session_items=env.positive_int("MAX_SESSION_ITEMS", 10_000),
        metrics_token=env.optional("METRICS_TOKEN"),
        metrics_cache_seconds=env.positive_float("METRICS_CACHE_SECONDS", 5.0),
        demo_page=env.flag("DEMO_PAGE", False),
        audit_retention_days=env.positive_int("AUDIT_RETENTION_DAYS", 400),
        reconcile_interval=env.positive_float("RECONCILE_INTERVAL", 300.0),
        reconcile_stuck_after=env.positive_float("RECONCILE_STUCK_AFTER", 1800.0),
        reconcile_grace=env.positive_float("RECONCILE_GRACE", 3600.0),
        media_queue=env.text("MEDIA_QUEUE", "mediagate.media"),
        bucket_events_exchange=env.text("BUCKET_EVENTS_EXCHANGE", "mediagate.bucket-events"),
        bucket_events_exchange_type=exchange_type,
        bucket_events_routing_key=env.text("BUCKET_EVENTS_ROUTING_KEY", "uploads"),
        bucket_events_source=events_source,
        bucket_events_amqp_url=env.url(
            "BUCKET_EVENTS_AMQP_URL", ("amqp", "amqps"), _without_credentials(amqp_url)
        ),
        s3_upload_principal=upload_principal,
        s3_service_principal=service_principal,
        retry_delays_ms=env.parsed(
            "RETRY_DELAYS_MS", (1000, 5000, 30000, 120000), _delays, "comma-separated positive ms"
        ),
        worker_prefetch=env.positive_int("WORKER_PREFETCH", 2),
        worker_metrics_host=env.text("WORKER_METRICS_HOST", "127.0.0.1"),
        worker_metrics_port=env.parsed("WORKER_METRICS_PORT", None, _port, "a TCP port (1-65535)"),
        video_time_limit=video_time_limit,
        video_time_per_second=env.positive_float("VIDEO_TIME_PER_SECOND", 3.0),
        video_time_limit_max=max(
            video_time_limit, env.positive_float("VIDEO_TIME_LIMIT_MAX", 4 * 3600.0)
        ),
        video_max_height=env.positive_int("VIDEO_MAX_HEIGHT", 1080),
        job_ack_after=env.positive_float("JOB_ACK_AFTER", 300.0),
        scratch_reserve_bytes=env.positive_int("SCRATCH_RESERVE_BYTES", 1024 * MIB),
        video_memory_limit=env.positive_int("VIDEO_MEMORY_LIMIT", 4096 * MIB),
        image_time_limit=env.positive_float("IMAGE_TIME_LIMIT", 30.0),
        image_memory_limit=env.positive_int("IMAGE_MEMORY_LIMIT", 1024 * MIB),
        shutdown_grace=env.positive_float("SHUTDOWN_GRACE", 30.0),
        log_level=env.text("LOG_LEVEL", "INFO").upper(),
    )
