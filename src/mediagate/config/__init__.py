"""Settings: read once from the environment at start-up, then passed around frozen, a
section to each part that uses it (`settings.graphql` to the executor, …)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mediagate.config.fields import REQUIRED, Derived, SettingsError, declarations
from mediagate.config.sections import (
    MAX_SCANNABLE_BYTES,
    MIN_PART_BYTES,
    SECTIONS,
    ApiSettings,
    AuthSettings,
    BrokerSettings,
    DatabaseSettings,
    GraphQLSettings,
    HttpSettings,
    ImageSettings,
    LogSettings,
    OutboundSettings,
    ReconcilerSettings,
    RetrySettings,
    S3Settings,
    ScannerSettings,
    UploadSettings,
    ValidationHookSettings,
    VideoSettings,
    WebhookSettings,
    WebSocketSettings,
    WorkerSettings,
)
from mediagate.domain.validation import MAX_PAGE

__all__ = [
    "MAX_SCANNABLE_BYTES",
    "MIN_PART_BYTES",
    "ApiSettings",
    "AuthSettings",
    "BrokerSettings",
    "DatabaseSettings",
    "GraphQLSettings",
    "HttpSettings",
    "ImageSettings",
    "LogSettings",
    "OutboundSettings",
    "ReconcilerSettings",
    "RetrySettings",
    "S3Settings",
    "ScannerSettings",
    "Settings",
    "SettingsError",
    "UploadSettings",
    "ValidationHookSettings",
    "VideoSettings",
    "WebSocketSettings",
    "WebhookSettings",
    "WorkerSettings",
    "load_settings",
]


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings
    broker: BrokerSettings
    s3: S3Settings
    auth: AuthSettings
    scanner: ScannerSettings
    uploads: UploadSettings
    graphql: GraphQLSettings
    http: HttpSettings
    websocket: WebSocketSettings
    api: ApiSettings
    image: ImageSettings
    video: VideoSettings
    retry: RetrySettings
    worker: WorkerSettings
    reconciler: ReconcilerSettings
    outbound: OutboundSettings
    webhooks: WebhookSettings
    validation_hook: ValidationHookSettings
    logging: LogSettings

    def public(self) -> dict[str, Any]:
        """Every setting by its variable's name, secrets masked: for logs and diagnostics."""
        shown: dict[str, Any] = {}
        for section_name in SECTIONS:
            section = getattr(self, section_name)
            for name, declaration in declarations(type(section)):
                value = getattr(section, name)
                shown[declaration.variable] = "***" if declaration.secret and value else value
        return shown


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raises SettingsError naming the bad variable."""
    env = {
        name: value.strip()
        for name, value in (os.environ if environ is None else environ).items()
        if value.strip()
    }
    loaded: dict[str, Any] = {}
    sections = {name: _load(section, env, loaded) for name, section in SECTIONS.items()}
    settings = Settings(**sections)
    for check in CHECKS:
        settings = check(settings) or settings
    return settings


def _load(section: type, env: Mapping[str, str], loaded: dict[str, Any]) -> Any:
    values = {}
    for name, declaration in declarations(section):
        raw = env.get(declaration.variable)
        if raw is not None:
            try:
                value = declaration.parser.parse(raw)
            except ValueError:
                raise SettingsError(
                    f"{declaration.variable} must be {declaration.parser.expected}, got {raw!r}"
                ) from None
        elif declaration.default is REQUIRED:
            raise SettingsError(f"{declaration.variable} is required but not set")
        elif isinstance(declaration.default, Derived):
            value = declaration.default.compute(loaded, env)
        else:
            value = declaration.default
        values[name] = loaded[declaration.variable] = value
    return section(**values)


# Cross-field rules: each takes the settings, raises SettingsError, or returns them
# amended (None: unchanged).
Check = Callable[[Settings], Settings | None]


def _a_token_verifier(settings: Settings) -> None:
    auth = settings.auth
    if auth.jwt_secret is None and auth.jwks_url is None:
        raise SettingsError("JWT_SECRET is required but not set (or set JWT_JWKS_URL)")
    if auth.jwt_secret is not None and len(auth.jwt_secret.encode()) < 32:
        raise SettingsError("JWT_SECRET must be at least 32 bytes long")


def _an_upload_credential_of_its_own(settings: Settings) -> None:
    s3 = settings.s3
    if s3.upload_access_key == s3.access_key and not s3.allow_shared_upload_credentials:
        raise SettingsError(
            "S3_UPLOAD_ACCESS_KEY must differ from S3_ACCESS_KEY: presigned uploads would "
            "carry the service's full power (or set S3_ALLOW_SHARED_UPLOAD_CREDENTIALS=true)"
        )


def _principals_in_pairs(settings: Settings) -> None:
    if settings.s3.upload_principal is not None and settings.s3.service_principal is None:
        raise SettingsError(
            "S3_SERVICE_PRINCIPAL is required with S3_UPLOAD_PRINCIPAL: on stores where the "
            "writer owns an object, the bucket policy must let the service read uploads"
        )


def _a_queue_that_holds_a_page(settings: Settings) -> None:
    if settings.websocket.queue_limit < MAX_PAGE:
        # A subscription's first state is a page, and it waits in the same queue.
        raise SettingsError(f"WS_QUEUE_LIMIT must be at least {MAX_PAGE} (a page of media)")


def _secrets_with_their_urls(settings: Settings) -> None:
    for url, secret, names in (
        (settings.webhooks.url, settings.webhooks.secret, ("WEBHOOK_URL", "WEBHOOK_SECRET")),
        (
            settings.validation_hook.url,
            settings.validation_hook.secret,
            ("VALIDATION_HOOK_URL", "VALIDATION_HOOK_SECRET"),
        ),
    ):
        if (url is None) != (secret is None):
            raise SettingsError(f"{names[0]} and {names[1]} are set together or not at all")


def _an_endpoint_share_within_the_process_share(settings: Settings) -> Settings:
    hooks = settings.webhooks
    share = min(hooks.endpoint_concurrency, hooks.concurrency)
    return dataclasses.replace(
        settings, webhooks=dataclasses.replace(hooks, endpoint_concurrency=share)
    )


def _warn_of_the_deprecated_size_limit(settings: Settings) -> None:
    if settings.uploads.max_upload_bytes is not None:
        warnings.warn(
            "MAX_UPLOAD_BYTES is deprecated: set MAX_IMAGE_BYTES and MAX_VIDEO_BYTES",
            FutureWarning,
            stacklevel=4,
        )


def _video_limit_max_at_least_the_limit(settings: Settings) -> Settings:
    video = settings.video
    longest = max(video.time_limit, video.time_limit_max)
    return dataclasses.replace(settings, video=dataclasses.replace(video, time_limit_max=longest))


CHECKS: tuple[Check, ...] = (
    _a_token_verifier,
    _an_upload_credential_of_its_own,
    _principals_in_pairs,
    _a_queue_that_holds_a_page,
    _secrets_with_their_urls,
    _an_endpoint_share_within_the_process_share,
    _warn_of_the_deprecated_size_limit,
    _video_limit_max_at_least_the_limit,
)
