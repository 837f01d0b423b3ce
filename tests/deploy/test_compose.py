"""The compose stack, checked without Docker: structure, settings, and MinIO <-> worker wiring."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediagate.config import MAX_SCANNABLE_BYTES, load_settings
from mediagate.events.topology import BUCKET_EVENTS_EXCHANGE_FLAGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"
MINIO_ENV = ROOT / "deploy" / "minio" / "minio.env"
MEDIAGATE_SERVICES = ("migrate", "storage-setup", "api", "worker")
MONITORING_SERVICES = ("prometheus", "grafana")
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _dotenv(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def _interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} on strings."""
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, kind, argument = match.groups()
        current = variables.get(name, "")
        if current:
            return current
        if kind == "?":
            raise AssertionError(f"{name} is required: {argument}")
        return argument or ""

    return _VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def variables() -> dict[str, str]:
    return _dotenv(ENV_EXAMPLE)


def _environment(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    environment = dict(service.get("environment") or {})
    for env_file in service.get("env_file", []):
        environment = {**_dotenv(COMPOSE.parent / env_file), **environment}
    return {name: str(_interpolate(value, variables)) for name, value in environment.items()}


def test_every_mediagate_service_gets_every_setting_it_requires(
    compose: dict[str, Any], variables: dict[str, str]
) -> None:
    for name in MEDIAGATE_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "mediagate:latest" and service["build"]["context"] == "../.."
        settings = load_settings(_environment(service, variables))  # raises when one is missing
        assert settings.s3.endpoint == "http://minio:9000"
        assert settings.scanner.host == "clamav"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    long_running = [n for n, s in compose["services"].items() if s.get("restart") != "no"]
    assert set(long_running) == {
        *("postgres", "rabbitmq", "minio", "clamav", "api", "worker"),
        *MONITORING_SERVICES,
    }
    for name in long_running:
        assert "test" in compose["services"][name].get("healthcheck", {}), name


def test_start_order_converges_from_nothing(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["storage-setup"]["condition"] == "service_completed_successfully"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["clamav"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["storage-setup"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for condition in _all_conditions(services):
        assert condition in {"service_healthy", "service_completed_successfully"}


def _all_conditions(services: dict[str, Any]) -> list[str]:
    return [
        dependency["condition"]
        for service in services.values()
        for dependency in (service.get("depends_on") or {}).values()
    ]


def test_ports_are_bound_to_localhost_and_volumes_are_named(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in compose["volumes"] or source.startswith("../"), (name, mount)
    assert set(compose["volumes"]) == {
        "postgres-data",
        "rabbitmq-data",
        "minio-data",
        "minio-events",
        "clamav-db",
        "prometheus-data",
        "grafana-data",
        "worker-scratch",
    }


def test_secrets_come_from_the_env_file_only(compose: dict[str, Any]) -> None:
    secret_names = ("PASSWORD", "SECRET", "KMS")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in secret_names):
                assert "${" in str(value), f"{name}.{key} is hard-coded"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(SECRET|PASSWORD)", dockerfile)
    assert "USER mediagate" in dockerfile


def test_minio_publishes_where_the_worker_listens(
    compose: dict[str, Any], variables: dict[str, str]
) -> None:
    minio = _environment(compose["services"]["minio"], variables)
    worker = load_settings(_environment(compose["services"]["worker"], variables))
    assert minio["MINIO_NOTIFY_AMQP_ENABLE"] == "on"
    assert minio["MINIO_NOTIFY_AMQP_EXCHANGE"] == worker.broker.events_exchange
    assert minio["MINIO_NOTIFY_AMQP_EXCHANGE_TYPE"] == worker.broker.events_exchange_type
    assert minio["MINIO_NOTIFY_AMQP_ROUTING_KEY"] == worker.broker.events_routing_key
    assert minio["MINIO_NOTIFY_AMQP_URL"] == worker.broker.url
    flags = {
        "durable": minio["MINIO_NOTIFY_AMQP_DURABLE"] == "on",
        "auto_delete": minio["MINIO_NOTIFY_AMQP_AUTO_DELETED"] == "on",
        "internal": minio["MINIO_NOTIFY_AMQP_INTERNAL"] == "on",
    }
    assert flags == asdict(BUCKET_EVENTS_EXCHANGE_FLAGS)
    assert minio["MINIO_NOTIFY_AMQP_DELIVERY_MODE"] == "2"
    assert minio["MINIO_NOTIFY_AMQP_PUBLISHING_CONFIRMS"] == "on"
    queue_dir = minio["MINIO_NOTIFY_AMQP_QUEUE_DIR"]
    assert f"minio-events:{queue_dir}" in compose["services"]["minio"]["volumes"]
    assert minio["MINIO_API_STALE_UPLOADS_EXPIRY"]
    assert minio["MINIO_KMS_SECRET_KEY"], "SSE-S3 needs MinIO's KMS key"


def test_clamd_limits_sit_above_the_upload_limit(
    compose: dict[str, Any], variables: dict[str, str]
) -> None:
    conf = dict(
        line.split(" ", 1)
        for line in (ROOT / "deploy" / "clamav" / "clamd.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}

    def size(value: str) -> int:
        return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)

    worker = load_settings(_environment(compose["services"]["worker"], variables))
    for name in ("StreamMaxLength", "MaxFileSize", "MaxScanSize"):
        # Every limit the settings accept is one clamd scans whole.
        assert size(conf[name]) >= MAX_SCANNABLE_BYTES >= worker.uploads.max_video_bytes, name
        assert size(conf[name]) >= worker.uploads.max_image_bytes, name
    for name in ("AlertExceedsMax", "AlertEncrypted", "AlertEncryptedArchive"):
        assert conf[name] == "yes", name
    mounts = compose["services"]["clamav"]["volumes"]
    assert "../clamav/clamd.conf:/etc/clamav/clamd.conf:ro" in mounts


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) if installed, else Debian's `docker-compose`; both validate
    the file without an engine."""
    if (
        shutil.which("docker")
        and not subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


COMPOSE_COMMAND = _compose_command()


@pytest.mark.skipif(
    COMPOSE_COMMAND is None,
    reason="neither `docker compose` nor `docker-compose` is installed to validate the file",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    assert COMPOSE_COMMAND is not None
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    command = [*COMPOSE_COMMAND, "--env-file", str(env_file), "-f", str(COMPOSE), "config"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {
        "postgres",
        "rabbitmq",
        "minio",
        "clamav",
        "migrate",
        "storage-setup",
        "api",
        "worker",
        *MONITORING_SERVICES,
    }
    worker = resolved["services"]["worker"]
    assert (
        worker["environment"]["BUCKET_EVENTS_EXCHANGE"]
        == (resolved["services"]["minio"]["environment"]["MINIO_NOTIFY_AMQP_EXCHANGE"])
    )


@pytest.mark.parametrize(
    "origins", ["https://a.example, http://localhost:3002", " https://a.example ,,", ""]
)
def test_minio_allows_exactly_the_origins_the_api_allows(
    compose: dict[str, Any], variables: dict[str, str], origins: str
) -> None:
    """Runs the minio service's start-up line (minio itself replaced by `env`)."""
    minio = compose["services"]["minio"]
    script = (
        minio["command"][0]
        .replace("$$", "$")
        .replace("exec /usr/bin/docker-entrypoint.sh minio server", "exec env #")
    )
    environment = _environment(minio, {**variables, "CORS_ALLOWED_ORIGINS": origins})
    started = subprocess.run(
        [*minio["entrypoint"], script],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    exported = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    api = load_settings(
        {**_environment(compose["services"]["api"], variables), "CORS_ALLOWED_ORIGINS": origins}
    )
    allowed = exported["MINIO_API_CORS_ALLOW_ORIGIN"].split(",")
    if api.http.cors_allowed_origins:
        assert tuple(allowed) == api.http.cors_allowed_origins
    else:
        assert allowed == ["https://no-origin.invalid"], "empty must not mean '*' on MinIO"


def test_the_monitoring_profile_is_provisioned_from_deploy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in MONITORING_SERVICES:
        assert services[name]["profiles"] == ["monitoring"]
        for mount in services[name]["volumes"]:
            source = mount.split(":", 1)[0]
            if source.startswith("../"):
                assert (COMPOSE.parent / source).exists(), mount
    # Each worker replica serves its metrics on the port Prometheus looks for.
    worker = _environment(services["worker"], _dotenv(ENV_EXAMPLE))
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["mediagate-worker"]["dns_sd_configs"][0]["port"] == int(
        worker["WORKER_METRICS_PORT"]
    )
    assert worker["WORKER_METRICS_HOST"] == "0.0.0.0"
