"""`mediagate storage setup`: make the bucket ready. Running it twice changes nothing.

Works against any S3 endpoint for the bucket, default encryption, lifecycle and policy.
The bucket-event rule uses MinIO's AMQP target ARN and is MinIO-only.

MinIO's community edition has no bucket CORS API and rejects lifecycle rules with
AbortIncompleteMultipartUpload: CORS comes from MINIO_API_CORS_ALLOW_ORIGIN and stale
multipart uploads are cleaned by MINIO_API_STALE_UPLOADS_EXPIRY (see deploy/compose).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig
from minio.sseconfig import Rule as SSERule
from minio.sseconfig import SSEConfig

from mediagate.config import Settings
from mediagate.domain.keys import UPLOADS_PREFIX
from mediagate.storage.object_store import ObjectStore

ABANDONED_UPLOAD_DAYS = 1
LIFECYCLE_RULE_ID = "expire-abandoned-uploads"
NOTIFICATION_ID = "mediagate-uploads"
# MinIO names an AMQP target "arn:minio:sqs::<target id>:amqp"; MINIO_NOTIFY_AMQP_*
# without a suffix configures the target whose id is "_".
MINIO_AMQP_ARN = "arn:minio:sqs::_:amqp"


def desired_lifecycle() -> LifecycleConfig:
    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=UPLOADS_PREFIX),
                rule_id=LIFECYCLE_RULE_ID,
                expiration=Expiration(days=ABANDONED_UPLOAD_DAYS),
            )
        ]
    )


def desired_notification() -> NotificationConfig:
    """Only uploads (sessions/) raise events; processed copies (processed/) never do."""
    return NotificationConfig(
        queue_config_list=[
            QueueConfig(
                queue=MINIO_AMQP_ARN,
                events=["s3:ObjectCreated:*"],
                config_id=NOTIFICATION_ID,
                prefix_filter_rule=PrefixFilterRule(UPLOADS_PREFIX),
            )
        ]
    )


def desired_policy(bucket: str) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _bucket(client: Minio, bucket: str) -> str:
    if client.bucket_exists(bucket):
        return "bucket: exists"
    client.make_bucket(bucket)
    return "bucket: created"


def _encryption(client: Minio, bucket: str) -> str:
    try:
        current = client.get_bucket_encryption(bucket)
    except S3Error as error:
        if error.code != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        current = None
    if current is not None and current.rule.sse_algorithm == "AES256":
        return "encryption: SSE-S3 unchanged"
    client.set_bucket_encryption(bucket, SSEConfig(SSERule.new_sse_s3_rule()))
    return "encryption: SSE-S3 set"


def _converge(
    label: str, current: object, desired: object, apply: Callable[[], None], done: str
) -> str:
    if repr(current) == repr(desired):
        return f"{label}: unchanged"
    apply()
    return f"{label}: {done}"


def _lifecycle(client: Minio, bucket: str) -> str:
    desired = desired_lifecycle()
    return _converge(
        "lifecycle",
        client.get_bucket_lifecycle(bucket),
        desired,
        lambda: client.set_bucket_lifecycle(bucket, desired),
        f"uploads expire after {ABANDONED_UPLOAD_DAYS} day",
    )


def _notification(client: Minio, bucket: str) -> str:
    desired = desired_notification()
    return _converge(
        "notification",
        client.get_bucket_notification(bucket),
        desired,
        lambda: client.set_bucket_notification(bucket, desired),
        f"{UPLOADS_PREFIX}* -> {MINIO_AMQP_ARN}",
    )


def _policy(client: Minio, bucket: str) -> str:
    desired = desired_policy(bucket)
    try:
        current = json.loads(client.get_bucket_policy(bucket))
    except S3Error as error:
        if error.code != "NoSuchBucketPolicy":
            raise
        current = None
    if current == desired:
        return "policy: deny-insecure-transport unchanged"
    client.set_bucket_policy(bucket, json.dumps(desired))
    return "policy: deny-insecure-transport set"


def setup_storage(
    settings: Settings, *, minio_notifications: bool, require_tls: bool | None
) -> list[str]:
    """Apply each step; returns one report line per step."""
    client = ObjectStore(settings, pool_size=2).client
    bucket = settings.s3_bucket
    if require_tls is None:
        require_tls = urlsplit(settings.s3_endpoint).scheme == "https"
    steps: list[Callable[[Minio, str], str]] = [_bucket, _lifecycle]
    if settings.s3_sse:
        steps.append(_encryption)
    if minio_notifications:
        steps.append(_notification)
    # Last: once it is in place, plain-HTTP requests (ours included) are refused.
    if require_tls:
        steps.append(_policy)
    return [step(client, bucket) for step in steps]
