"""`mediagate storage setup` against the S3 test server: every call it supports, twice."""

from __future__ import annotations

import io
import json
import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace

import httpx
import pytest
from minio.commonconfig import ENABLED, Filter
from minio.error import InvalidResponseError
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.xml import marshal

from mediagate.config import Settings, load_settings
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import (
    LIFECYCLE_RULE_ID,
    MINIO_AMQP_ARN,
    desired_notification,
    desired_policy,
    setup_storage,
)

ABORTS_ONLY = "multipart uploads left for 1 day are aborted; no object expires"
UPLOAD_CREDENTIAL_SKIPPED = (
    "upload credential: skipped, the store has no MinIO admin API: give test-upload only "
    "s3:PutObject on {bucket}/sessions/* with the store's own tools"
)


def _report(settings: Settings, *, again: bool) -> list[str]:
    return [
        f"bucket: {'exists' if again else 'created'}",
        "lifecycle: "
        + (
            "unchanged"
            if again
            else "multipart uploads left for 1 day are aborted; no object expires"
        ),
        "cors: none (CORS_ALLOWED_ORIGINS is empty)",
        f"encryption: SSE-S3 {'unchanged' if again else 'set'}",
        UPLOAD_CREDENTIAL_SKIPPED.format(bucket=settings.s3.bucket),
    ]


def _fresh(env: dict[str, str], **more: str) -> Settings:
    return load_settings({**env, "S3_BUCKET": f"setup-{uuid.uuid4().hex[:10]}", **more})


def test_setup_creates_and_configures_the_bucket_then_changes_nothing(env: dict[str, str]) -> None:
    settings = _fresh(env)
    first = setup_storage(settings, bucket_events=False, require_tls=False)
    assert first == _report(settings, again=False)
    second = setup_storage(settings, bucket_events=False, require_tls=False)
    assert second == _report(settings, again=True)

    client = ObjectStore(settings).client
    _assert_only_aborts(client.get_bucket_lifecycle(settings.s3.bucket))
    encryption = client.get_bucket_encryption(settings.s3.bucket)
    assert encryption is not None and encryption.rule.sse_algorithm == "AES256"


def _assert_only_aborts(lifecycle: LifecycleConfig | None) -> None:
    """One rule, which aborts incomplete multipart uploads and expires no object."""
    assert lifecycle is not None
    (rule,) = lifecycle.rules
    assert rule.rule_filter is not None and rule.abort_incomplete_multipart_upload is not None
    assert (rule.rule_id, rule.rule_filter.prefix) == (LIFECYCLE_RULE_ID, "sessions/")
    assert rule.abort_incomplete_multipart_upload.days_after_initiation == 1
    assert rule.expiration is None


def test_the_retired_expiry_of_uploads_is_replaced(env: dict[str, str]) -> None:
    """A bucket set up by an earlier version expired every upload after a day."""
    settings = _fresh(env)
    client = ObjectStore(settings).client
    client.make_bucket(settings.s3.bucket)
    retired = Rule(
        ENABLED,
        rule_filter=Filter(prefix="sessions/"),
        rule_id="expire-abandoned-uploads",
        expiration=Expiration(days=1),
    )
    client.set_bucket_lifecycle(settings.s3.bucket, LifecycleConfig([retired]))
    setup_storage(settings, bucket_events=False, require_tls=False)
    _assert_only_aborts(client.get_bucket_lifecycle(settings.s3.bucket))


def test_require_tls_adds_the_deny_insecure_transport_policy(env: dict[str, str]) -> None:
    settings = _fresh(env)
    report = setup_storage(settings, bucket_events=False, require_tls=True)
    assert report[-1] == "policy: deny-insecure-transport set"
    store = ObjectStore(settings)
    assert json.loads(store.client.get_bucket_policy(settings.s3.bucket)) == desired_policy(
        settings.s3.bucket, deny_insecure=True, upload_principal=None
    )
    again = setup_storage(settings, bucket_events=False, require_tls=True)
    assert again[-1] == "policy: deny-insecure-transport unchanged"
    # The S3 test server enforces it: object writes over plain HTTP are now refused, which
    # is why setup applies the policy only when the endpoint speaks TLS.
    with pytest.raises(InvalidResponseError) as refused:
        store.client.put_object(settings.s3.bucket, "sessions/x", io.BytesIO(b"x"), 1)
    assert "Response code: 403" in str(refused.value)


def test_notification_rule_is_scoped_to_uploads() -> None:
    """MinIO-only call (the S3 test server refuses MinIO's ARN), checked as the XML sent."""
    xml = ET.fromstring(marshal(desired_notification()).decode())  # noqa: S314 - our own XML
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    queue = xml.find("s3:QueueConfiguration", ns)
    assert queue is not None
    assert queue.findtext("s3:Queue", namespaces=ns) == MINIO_AMQP_ARN == "arn:minio:sqs::_:amqp"
    assert [e.text for e in queue.findall("s3:Event", ns)] == ["s3:ObjectCreated:*"]
    rules = queue.findall(".//s3:FilterRule", ns)
    assert [
        (r.findtext("s3:Name", namespaces=ns), r.findtext("s3:Value", namespaces=ns)) for r in rules
    ] == [("prefix", "sessions/")]


def test_policy_document() -> None:
    policy = desired_policy("media", deny_insecure=True, upload_principal=None)
    statement = policy["Statement"][0]  # type: ignore[index]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == ["arn:aws:s3:::media", "arn:aws:s3:::media/*"]
    assert json.loads(json.dumps(policy)) == policy


def test_a_store_without_minios_notification_target_gets_everything_else(
    env: dict[str, str],
) -> None:
    """The S3 test server refuses MinIO's ARN: one line says so, nothing else is lost."""
    settings = _fresh(env)
    report = setup_storage(settings, bucket_events=True, require_tls=True)
    (notification,) = [line for line in report if line.startswith("notification:")]
    assert notification.startswith("notification: skipped, the store does not support it")
    assert report[-1] == "policy: deny-insecure-transport set", "steps after it still ran"


def _preflight(endpoint: str, bucket: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{endpoint}/{bucket}/sessions/x.jpg",
        headers={"Origin": origin, "Access-Control-Request-Method": "PUT"},
    )


def test_bucket_cors_follows_the_normalised_origin_list(env: dict[str, str]) -> None:
    # Spaces after commas: the form that once matched only the first origin on MinIO.
    origins = "https://a.example, http://localhost:3002"
    settings = _fresh(env, CORS_ALLOWED_ORIGINS=origins)
    report = setup_storage(settings, bucket_events=False, require_tls=False)
    assert "cors: https://a.example, http://localhost:3002" in report
    assert "cors: unchanged" in setup_storage(settings, bucket_events=False, require_tls=False)
    for origin in ("https://a.example", "http://localhost:3002"):
        allowed = _preflight(settings.s3.endpoint, settings.s3.bucket, origin)
        assert allowed.headers.get("access-control-allow-origin") == origin
    denied = _preflight(settings.s3.endpoint, settings.s3.bucket, "https://evil.example")
    assert denied.headers.get("access-control-allow-origin") != "https://evil.example"

    emptied = replace(settings, http=replace(settings.http, cors_allowed_origins=()))
    assert "cors: removed (CORS_ALLOWED_ORIGINS is empty)" in setup_storage(
        emptied, bucket_events=False, require_tls=False
    )
    gone = _preflight(settings.s3.endpoint, settings.s3.bucket, "https://a.example")
    assert gone.headers.get("access-control-allow-origin") != "https://a.example"
