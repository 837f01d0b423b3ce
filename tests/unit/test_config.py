import pytest

from mediagate.config import SettingsError, load_settings

BASE = {
    "DATABASE_URL": "postgresql://u@db:5432/mediagate",
    "AMQP_URL": "amqp://guest:guest@mq:5672/",
    "S3_ENDPOINT": "http://minio:9000",
    "S3_ACCESS_KEY": "key",
    "S3_SECRET_KEY": "secret",
    "S3_BUCKET": "media",
    "JWT_SECRET": "x" * 32,
}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.upload_url_ttl == 300
    assert settings.download_url_ttl == 86400
    assert settings.s3_public_endpoint == "http://minio:9000"
    assert settings.s3_region == "us-east-1"
    assert settings.cors_allowed_origins == ()
    assert settings.graphql_introspection is False


def test_aws_region_is_accepted_and_s3_region_wins() -> None:
    assert load_settings({**BASE, "AWS_REGION": "eu-west-1"}).s3_region == "eu-west-1"
    both = {**BASE, "AWS_REGION": "eu-west-1", "S3_REGION": "us-west-2"}
    assert load_settings(both).s3_region == "us-west-2"


def test_lists_are_parsed() -> None:
    settings = load_settings(
        {**BASE, "CORS_ALLOWED_ORIGINS": "https://a.example, http://localhost:3002"}
    )
    assert settings.cors_allowed_origins == ("https://a.example", "http://localhost:3002")


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
    assert public["s3_secret_key"] == "***" and public["jwt_secret"] == "***"
    assert public["s3_access_key"] == "key"


def test_settings_are_frozen() -> None:
    settings = load_settings(BASE)
    with pytest.raises(AttributeError):
        settings.s3_bucket = "other"  # type: ignore[misc]
