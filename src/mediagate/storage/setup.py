"""`mediagate storage setup`: make the bucket ready. Running it twice changes nothing.

Works against any S3 endpoint for the bucket, default encryption, lifecycle, CORS and
policy. The bucket-event rule uses MinIO's AMQP target ARN and is MinIO-only.

A store may lack a feature: MinIO's community edition has no bucket CORS API (CORS
comes from MINIO_API_CORS_ALLOW_ORIGIN, see deploy/compose) and rejects lifecycle rules
with AbortIncompleteMultipartUpload (MINIO_API_STALE_UPLOADS_EXPIRY cleans those; the
lifecycle is then left without rules, since no object may expire by rule);
other stores refuse MinIO's notification ARN or SSE-S3. Such a step is skipped with one
line saying why, and every other step still runs. Any other error stops the setup.

The minio SDK has no bucket CORS call: it is sent through the client's own request
method (signing, retries, errors), pinned with the SDK's major version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule
from minio.minioadmin import MinioAdmin
from minio.notificationconfig import (
    NotificationConfig,
    PrefixFilterRule,
    QueueConfig,
    TopicConfig,
)
from minio.sseconfig import Rule as SSERule
from minio.sseconfig import SSEConfig

from mediagate.config import Settings
from mediagate.domain.keys import UPLOADS_PREFIX
from mediagate.storage.object_store import ObjectStore

ABANDONED_UPLOAD_DAYS = 1
LIFECYCLE_RULE_ID = "abort-abandoned-multipart-uploads"
# Earlier versions expired every object under sessions/ after a day, originals kept for
# review or waiting out a scanner outage included: removed wherever it is found.
RETIRED_RULE_IDS = frozenset({"expire-abandoned-uploads"})
NOTIFICATION_ID = "mediagate-uploads"
# MinIO names an AMQP target "arn:minio:sqs::<target id>:amqp"; MINIO_NOTIFY_AMQP_*
# without a suffix configures the target whose id is "_".
MINIO_AMQP_ARN = "arn:minio:sqs::_:amqp"


def desired_lifecycle() -> LifecycleConfig:
    """Multipart uploads under sessions/ left incomplete are aborted; no object expires:
    an original is removed only once no row needs it (the worker, the reconciler)."""
    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=UPLOADS_PREFIX),
                rule_id=LIFECYCLE_RULE_ID,
                abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                    days_after_initiation=ABANDONED_UPLOAD_DAYS
                ),
            )
        ]
    )


def desired_notification(topic_arn: str | None = None) -> NotificationConfig:
    """Only uploads (sessions/) raise events; processed copies (processed/) never do.
    To MinIO's AMQP target, or to an RGW topic when its ARN is given."""
    events, scope = ["s3:ObjectCreated:*"], PrefixFilterRule(UPLOADS_PREFIX)
    if topic_arn is not None:
        topic = TopicConfig(
            topic=topic_arn, events=events, config_id=NOTIFICATION_ID, prefix_filter_rule=scope
        )
        return NotificationConfig(topic_config_list=[topic])
    queue = QueueConfig(
        queue=MINIO_AMQP_ARN, events=events, config_id=NOTIFICATION_ID, prefix_filter_rule=scope
    )
    return NotificationConfig(queue_config_list=[queue])


def desired_policy(
    bucket: str,
    *,
    deny_insecure: bool,
    upload_principal: str | None,
    service_principal: str | None = None,
) -> dict[str, object]:
    statements: list[dict[str, object]] = []
    if deny_insecure:
        statements.append(
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        )
    if upload_principal is not None:
        assert service_principal is not None, "the settings require both"
        principal = {"AWS": [upload_principal]}
        # Uploads belong to the credential that wrote them (Ceph RGW): the service
        # reads, scans and deletes them by this grant.
        statements.append(
            {
                "Sid": "ServiceHandlesUploads",
                "Effect": "Allow",
                "Principal": {"AWS": [service_principal]},
                "Action": ["s3:GetObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{UPLOADS_PREFIX}*"],
            }
        )
        statements.append(
            {
                "Sid": "UploadCredentialPutsUnderSessions",
                "Effect": "Allow",
                "Principal": principal,
                "Action": ["s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{UPLOADS_PREFIX}*"],
            }
        )
        # A store with object ownership (Ceph RGW) lets a writer read what it wrote,
        # so a copy from another upload would pass: denied outright. Listed one by
        # one, because RGW 16 does not honour NotAction.
        statements.append(
            {
                "Sid": "UploadCredentialReadsNothing",
                "Effect": "Deny",
                "Principal": principal,
                "Action": list(_UPLOAD_CREDENTIAL_DENIED),
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


# What a store answers for a feature it does not have (or a form of it it refuses).
UNSUPPORTED_CODES = frozenset(
    {"NotImplemented", "InvalidArgument", "MalformedXML", "InvalidRequest", "XNotImplemented"}
)
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
CORS_MAX_AGE_SECONDS = 3000

Step = Callable[[Minio, str], str]


def desired_cors(origins: tuple[str, ...]) -> bytes:
    """Browsers PUT uploads and GET processed copies from these origins."""
    root = ET.Element("CORSConfiguration", xmlns=_S3_NS)
    rule = ET.SubElement(root, "CORSRule")
    for origin in origins:
        ET.SubElement(rule, "AllowedOrigin").text = origin
    for method in ("GET", "HEAD", "PUT"):
        ET.SubElement(rule, "AllowedMethod").text = method
    ET.SubElement(rule, "AllowedHeader").text = "*"
    ET.SubElement(rule, "ExposeHeader").text = "ETag"
    ET.SubElement(rule, "MaxAgeSeconds").text = str(CORS_MAX_AGE_SECONDS)
    return ET.tostring(root)


def _cors_rules(document: bytes) -> list[tuple[tuple[str, frozenset[str]], ...]]:
    """A CORS document reduced to what matters, for comparison."""
    root = ET.fromstring(document)  # noqa: S314 - from our own store, small
    rules = []
    for rule in root.iter(f"{{{_S3_NS}}}CORSRule"):
        fields: dict[str, set[str]] = {}
        for child in rule:
            name = child.tag.removeprefix(f"{{{_S3_NS}}}")
            fields.setdefault(name, set()).add((child.text or "").strip())
        rules.append(tuple(sorted((k, frozenset(v)) for k, v in fields.items())))
    return rules


UPLOAD_POLICY_NAME = "mediagate-upload"
_UPLOAD_CREDENTIAL_DENIED = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAcl",
    "s3:PutObjectAcl",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
)
# What a store without MinIO's admin API answers on its path.
_NOT_AN_ADMIN_API = frozenset({"400", "404", "405", "501"})


def desired_upload_policy(bucket: str) -> dict[str, object]:
    """What an upload URL may do: put objects under sessions/ (multipart parts
    included, which S3 counts as PutObject), nothing else: no read, so no copy."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{UPLOADS_PREFIX}*"],
            }
        ],
    }


def _upload_credential(settings: Settings) -> Step:
    def step(_client: Minio, bucket: str) -> str:
        if settings.s3.upload_access_key == settings.s3.access_key:
            return "shared with the service (S3_ALLOW_SHARED_UPLOAD_CREDENTIALS), not created"
        if settings.s3.upload_principal is not None:
            return f"{settings.s3.upload_principal}: granted by the bucket policy below"
        parts = urlsplit(settings.s3.endpoint)
        admin = MinioAdmin(
            endpoint=parts.netloc,
            credentials=StaticProvider(settings.s3.access_key, settings.s3.secret_key),
            region=settings.s3.region,
            secure=parts.scheme == "https",
        )
        try:
            admin.policy_add(UPLOAD_POLICY_NAME, policy=desired_upload_policy(bucket))
        except MinioAdminException as error:
            # The exception keeps the HTTP status only in a private field.
            if error._code not in _NOT_AN_ADMIN_API:
                raise
            return (
                "skipped, the store has no MinIO admin API: give "
                f"{settings.s3.upload_access_key} only s3:PutObject on "
                f"{bucket}/{UPLOADS_PREFIX}* with the store's own tools"
            )
        # Each call sets the same state again: running setup twice changes nothing.
        admin.user_add(settings.s3.upload_access_key, settings.s3.upload_secret_key)
        admin.policy_set(UPLOAD_POLICY_NAME, user=settings.s3.upload_access_key)
        return f"{settings.s3.upload_access_key} may only put objects under {UPLOADS_PREFIX}"

    return step


def _bucket(client: Minio, bucket: str) -> str:
    if client.bucket_exists(bucket):
        return "exists"
    client.make_bucket(bucket)
    return "created"


def _encryption(client: Minio, bucket: str) -> str:
    try:
        current = client.get_bucket_encryption(bucket)
    except S3Error as error:
        if error.code != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        current = None
    except ValueError:  # an answer without a rule (Ceph RGW): nothing is set
        current = None
    if current is not None and current.rule.sse_algorithm == "AES256":
        return "SSE-S3 unchanged"
    client.set_bucket_encryption(bucket, SSEConfig(SSERule.new_sse_s3_rule()))
    return "SSE-S3 set"


def _converge(current: object, desired: object, apply: Callable[[], None], done: str) -> str:
    if repr(current) == repr(desired):
        return "unchanged"
    apply()
    return done


def _lifecycle(client: Minio, bucket: str) -> str:
    current, desired = client.get_bucket_lifecycle(bucket), desired_lifecycle()
    if repr(current) == repr(desired):
        return "unchanged"
    try:
        client.set_bucket_lifecycle(bucket, desired)
    except S3Error as error:
        retired = current is not None and any(r.rule_id in RETIRED_RULE_IDS for r in current.rules)
        if error.code not in UNSUPPORTED_CODES or not retired:
            raise
        # The store refuses the abort rule (MinIO's community edition: its stale-upload
        # expiry does that job), but the old expiry of originals must still go.
        client.delete_bucket_lifecycle(bucket)
        return (
            f"the expiry of uploads was removed; the store refuses to abort multipart "
            f"uploads by rule ({error.code})"
        )
    return f"multipart uploads left for {ABANDONED_UPLOAD_DAYS} day are aborted; no object expires"


def _notification(client: Minio, bucket: str) -> str:
    desired = desired_notification()
    return _converge(
        client.get_bucket_notification(bucket),
        desired,
        lambda: client.set_bucket_notification(bucket, desired),
        f"{UPLOADS_PREFIX}* -> {MINIO_AMQP_ARN}",
    )


def _policy(settings: Settings, deny_insecure: bool) -> Step:
    upload_principal = settings.s3.upload_principal
    parts = (["deny-insecure-transport"] if deny_insecure else []) + (
        [f"{upload_principal} may put under {UPLOADS_PREFIX}"] if upload_principal else []
    )

    def step(client: Minio, bucket: str) -> str:
        desired = desired_policy(
            bucket,
            deny_insecure=deny_insecure,
            upload_principal=upload_principal,
            service_principal=settings.s3.service_principal,
        )
        try:
            current = json.loads(client.get_bucket_policy(bucket))
        except S3Error as error:
            if error.code != "NoSuchBucketPolicy":
                raise
            current = None
        if current == desired:
            return f"{', '.join(parts)} unchanged"
        client.set_bucket_policy(bucket, json.dumps(desired))
        return f"{', '.join(parts)} set"

    return step


def _rgw_notification(settings: Settings) -> Step:
    """Ceph RGW: an SNS-style topic pushing to RabbitMQ, and the bucket's rule using it.

    The minio SDK has no topic API; boto3 makes that one call. RGW publishes to the
    exchange with the topic's name as routing key, so the topic is named after
    BUCKET_EVENTS_ROUTING_KEY. Acked by the broker, not persistent: RGW's persistent
    topics deliver late (a retry queue of their own), and the worker re-checks
    everything an event says anyway.
    """

    def step(client: Minio, bucket: str) -> str:
        import boto3

        topics = boto3.client(
            "sns",
            endpoint_url=settings.s3.endpoint,
            region_name=settings.s3.region,
            aws_access_key_id=settings.s3.access_key,
            aws_secret_access_key=settings.s3.secret_key,
        )
        topic_arn: str = topics.create_topic(
            Name=settings.broker.events_routing_key,
            Attributes={
                "push-endpoint": settings.broker.events_amqp_url,
                "amqp-exchange": settings.broker.events_exchange,
                "amqp-ack-level": "broker",
            },
        )["TopicArn"]
        desired = desired_notification(topic_arn)
        return _converge(
            client.get_bucket_notification(bucket),
            desired,
            lambda: client.set_bucket_notification(bucket, desired),
            f"{UPLOADS_PREFIX}* -> {topic_arn} -> exchange {settings.broker.events_exchange}",
        )

    return step


def _cors(origins: tuple[str, ...]) -> Step:
    def step(client: Minio, bucket: str) -> str:
        try:
            current = client._execute("GET", bucket, query_params={"cors": ""}).data
        except S3Error as error:
            if error.code != "NoSuchCORSConfiguration":
                raise
            current = None
        if not origins:
            if current is None:
                return "none (CORS_ALLOWED_ORIGINS is empty)"
            client._execute("DELETE", bucket, query_params={"cors": ""})
            return "removed (CORS_ALLOWED_ORIGINS is empty)"
        desired = desired_cors(origins)
        if current is not None and _cors_rules(current) == _cors_rules(desired):
            return "unchanged"
        digest = base64.b64encode(hashlib.md5(desired).digest()).decode()  # noqa: S324 - S3's
        client._execute(
            "PUT", bucket, body=desired, headers={"Content-MD5": digest}, query_params={"cors": ""}
        )
        return ", ".join(origins)

    return step


def _run_step(label: str, step: Step, client: Minio, bucket: str) -> str:
    try:
        return f"{label}: {step(client, bucket)}"
    except S3Error as error:
        if error.code not in UNSUPPORTED_CODES:
            raise
        return f"{label}: skipped, the store does not support it ({error.code}: {error.message})"


def setup_storage(
    settings: Settings, *, bucket_events: bool, require_tls: bool | None
) -> list[str]:
    """Apply each step; returns one report line per step."""
    client = ObjectStore(settings, pool_size=2).client
    bucket = settings.s3.bucket
    if require_tls is None:
        require_tls = urlsplit(settings.s3.endpoint).scheme == "https"
    steps: list[tuple[str, Step]] = [
        ("bucket", _bucket),
        ("lifecycle", _lifecycle),
        ("cors", _cors(settings.http.cors_allowed_origins)),
    ]
    if settings.s3.sse:
        steps.append(("encryption", _encryption))
    if bucket_events and settings.broker.events_source == "minio":
        steps.append(("notification", _notification))
    if bucket_events and settings.broker.events_source == "rgw":
        steps.append(("notification", _rgw_notification(settings)))
    steps.append(("upload credential", _upload_credential(settings)))
    # Last: once it denies plain HTTP, requests of ours over it are refused too.
    if require_tls or settings.s3.upload_principal:
        steps.append(("policy", _policy(settings, require_tls)))
    return [_run_step(label, step, client, bucket) for label, step in steps]
