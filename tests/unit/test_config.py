from pathlib import Path

import pytest

from mediagate.config import SettingsError, load_settings
from mediagate.config.fields import REQUIRED, declarations
from mediagate.config.reference import markdown_table, variables
from mediagate.config.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "DATABASE_URL": "postgresql://u@db:5432/mediagate",
    "AMQP_URL": "amqp://guest:guest@mq:5672/",
    "S3_ENDPOINT": "http://minio:9000",
    "S3_ACCESS_KEY": "key",
    "S3_SECRET_KEY": "secret",
    "S3_UPLOAD_ACCESS_KEY": "upload-key",
    "S3_UPLOAD_SECRET_KEY": "upload-secret",
    "S3_BUCKET": "media",
    "JWT_SECRET": "x" * 32,
}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.uploads.max_image_bytes == 50 * 1024 * 1024
    assert settings.uploads.max_video_bytes == 2 * 1024**3
    assert settings.uploads.upload_url_ttl == 300
    assert settings.uploads.download_url_ttl == 86400
    assert settings.s3.public_endpoint == "http://minio:9000"
    assert settings.s3.region == "us-east-1"
    assert settings.http.cors_allowed_origins == ()
    assert settings.graphql.introspection is False


def test_aws_region_is_accepted_and_s3_region_wins() -> None:
    assert load_settings({**BASE, "AWS_REGION": "eu-west-1"}).s3.region == "eu-west-1"
    both = {**BASE, "AWS_REGION": "eu-west-1", "S3_REGION": "us-west-2"}
    assert load_settings(both).s3.region == "us-west-2"


def test_lists_are_parsed() -> None:
    settings = load_settings(
        {**BASE, "CORS_ALLOWED_ORIGINS": "https://a.example, http://localhost:3002"}
    )
    assert settings.http.cors_allowed_origins == ("https://a.example", "http://localhost:3002")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", None),
        ("DATABASE_URL", "mysql://x/y"),
        ("S3_ENDPOINT", "minio:9000"),
        ("S3_BUCKET", None),
        ("MAX_UPLOAD_BYTES", "fifty"),
        ("MAX_UPLOAD_BYTES", "-1"),
        ("UPLOAD_URL_TTL", "0"),
        ("DOWNLOAD_URL_TTL", "604801"),
        ("GRAPHQL_INTROSPECTION", "maybe"),
        ("JWT_SECRET", "short"),
        ("BUCKET_EVENTS_EXCHANGE_TYPE", "headers"),
        ("RETRY_DELAYS_MS", "1,x"),
        ("WORKER_METRICS_PORT", "70000"),
        ("WS_STALL_TIMEOUT", "0"),
        ("DEMO_PAGE", "sometimes"),
    ],
)
def test_a_missing_or_malformed_setting_is_named(name: str, value: str | None) -> None:
    env = {k: v for k, v in BASE.items() if k != name}
    if value is not None:
        env[name] = value
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert name in str(caught.value)
    assert "\n" not in str(caught.value)


def test_secrets_are_masked_in_the_public_view() -> None:
    public = load_settings(BASE).public()
    assert public["S3_SECRET_KEY"] == "***" and public["JWT_SECRET"] == "***"
    assert public["S3_ACCESS_KEY"] == "key"


def test_settings_are_frozen() -> None:
    settings = load_settings(BASE)
    with pytest.raises(AttributeError):
        settings.s3 = settings.s3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.s3.bucket = "other"  # type: ignore[misc]


def test_upload_credentials_equal_to_the_services_are_refused_unless_allowed() -> None:
    shared = {k: v for k, v in BASE.items() if not k.startswith("S3_UPLOAD_")}
    with pytest.raises(SettingsError, match="S3_UPLOAD_ACCESS_KEY must differ"):
        load_settings(shared)
    with pytest.raises(SettingsError, match="S3_UPLOAD_ACCESS_KEY must differ"):
        load_settings({**BASE, "S3_UPLOAD_ACCESS_KEY": BASE["S3_ACCESS_KEY"]})
    allowed = load_settings({**shared, "S3_ALLOW_SHARED_UPLOAD_CREDENTIALS": "true"})
    assert allowed.s3.upload_access_key == "key" and allowed.s3.upload_secret_key == "secret"
    assert load_settings(BASE).public()["S3_UPLOAD_SECRET_KEY"] == "***"


def test_bucket_event_sources_and_the_url_a_store_reaches_the_broker_by() -> None:
    assert load_settings(BASE).broker.events_source == "minio"
    rgw = load_settings({**BASE, "BUCKET_EVENTS_SOURCE": "rgw"})
    # Credentials stay out: RGW refuses a password over plain AMQP.
    assert rgw.broker.events_amqp_url == "amqp://mq:5672"
    assert "guest" in rgw.broker.url
    given = {**BASE, "BUCKET_EVENTS_AMQP_URL": "amqps://u:p@mq.example:5671"}
    assert load_settings(given).broker.events_amqp_url == "amqps://u:p@mq.example:5671"
    with pytest.raises(SettingsError, match="BUCKET_EVENTS_SOURCE must be minio, rgw or none"):
        load_settings({**BASE, "BUCKET_EVENTS_SOURCE": "kafka"})


def test_an_upload_principal_needs_the_services_principal_too() -> None:
    with pytest.raises(SettingsError, match="S3_SERVICE_PRINCIPAL is required"):
        load_settings({**BASE, "S3_UPLOAD_PRINCIPAL": "arn:aws:iam:::user/up"})
    both = {
        **BASE,
        "S3_UPLOAD_PRINCIPAL": "arn:aws:iam:::user/up",
        "S3_SERVICE_PRINCIPAL": "arn:aws:iam:::user/svc",
    }
    assert load_settings(both).s3.service_principal == "arn:aws:iam:::user/svc"


def test_max_upload_bytes_is_a_deprecated_alias_for_both_limits() -> None:
    with pytest.warns(FutureWarning, match="MAX_UPLOAD_BYTES is deprecated"):
        both = load_settings({**BASE, "MAX_UPLOAD_BYTES": "1000"})
    assert (both.uploads.max_image_bytes, both.uploads.max_video_bytes) == (1000, 1000)
    with pytest.warns(FutureWarning):
        mixed = load_settings({**BASE, "MAX_UPLOAD_BYTES": "1000", "MAX_VIDEO_BYTES": "5000"})
    assert (mixed.uploads.max_image_bytes, mixed.uploads.max_video_bytes) == (1000, 5000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_VIDEO_BYTES", str(4000 * 1024 * 1024 + 1)),  # clamd scans at most 4 GB
        ("MAX_IMAGE_BYTES", "0"),
        ("MAX_UPLOAD_BYTES", "5G"),
        ("MULTIPART_PART_SIZE", str(5 * 1024 * 1024 - 1)),  # S3's smallest part
    ],
)
def test_sizes_out_of_range_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: value})


def test_the_documented_table_is_the_declarations() -> None:
    """docs/configuration.md's table is made by `mediagate settings --markdown`."""
    docs = (ROOT / "docs" / "configuration.md").read_text()
    between = docs.split("a test keeps it equal -->\n", 1)[1].split("<!-- end of the table -->")[0]
    assert between == markdown_table(), "run: mediagate settings --markdown"


def test_the_example_environment_names_declared_settings_and_every_required_one() -> None:
    example = (ROOT / ".env.example").read_text().splitlines()
    named = {line.lstrip("# ").split("=", 1)[0] for line in example if "=" in line}
    assert named <= set(variables())
    required = {
        d.variable
        for section in SECTIONS.values()
        for _, d in declarations(section)
        if d.default is REQUIRED
    }
    assert required <= named


def test_each_setting_is_declared_once() -> None:
    assert len(variables()) == len(set(variables()))


def test_a_cluster_is_its_nodes_in_order_and_queues_are_quorum_by_default() -> None:
    nodes = "amqp://u:p@mq1:5672/, amqp://u:p@mq2:5672/,amqps://u:p@mq3:5671/"
    broker = load_settings({**BASE, "AMQP_URL": nodes}).broker
    assert broker.nodes() == ["amqp://u:p@mq1:5672", "amqp://u:p@mq2:5672", "amqps://u:p@mq3:5671"]
    assert broker.queue_type == "quorum"
    # A store takes one URL: by default the first node's, without credentials.
    assert load_settings({**BASE, "AMQP_URL": nodes}).broker.events_amqp_url == "amqp://mq1:5672"
    assert load_settings({**BASE, "QUEUE_TYPE": "classic"}).broker.queue_type == "classic"
    for bad in ("amqp://mq1:5672,", "amqp://mq1:5672,http://mq2", "amqp://mq1:5672,,"):
        with pytest.raises(SettingsError, match="AMQP_URL must be amqp/amqps URLs"):
            load_settings({**BASE, "AMQP_URL": bad})
    with pytest.raises(SettingsError, match="QUEUE_TYPE must be quorum or classic"):
        load_settings({**BASE, "QUEUE_TYPE": "stream"})
