"""The overlay for more than one box (compose.ha.yaml), checked without Docker: what each
engine needs to survive a node, and the file as `docker compose config` resolves it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_compose import COMPOSE, COMPOSE_COMMAND, ENV_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
HA = ROOT / "deploy" / "compose" / "compose.ha.yaml"
CLUSTER_CONF = ROOT / "deploy" / "rabbitmq" / "cluster.conf"
HAPROXY = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


@pytest.fixture(scope="module")
def overlay() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(HA.read_text())
    return document


def test_three_rabbitmq_nodes_find_each_other_and_mediagate_names_all_three(
    overlay: dict[str, Any],
) -> None:
    services = overlay["services"]
    nodes = {services[name]["hostname"] for name in ("rabbitmq", "rabbitmq-2", "rabbitmq-3")}
    assert nodes == {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"}
    conf = CLUSTER_CONF.read_text()
    assert "peer_discovery_backend = classic_config" in conf
    assert all(f"nodes.{n} = rabbit@rabbitmq-{n}" in conf for n in (1, 2, 3))
    for name in ("rabbitmq", "rabbitmq-2", "rabbitmq-3"):
        assert "RABBITMQ_ERLANG_COOKIE" in services[name]["environment"]
        assert any("cluster.conf" in volume for volume in services[name]["volumes"])
    environment = overlay["x-ha-environment"]
    assert [url.rsplit("@", 1)[1] for url in environment["AMQP_URL"].split(",")] == [
        f"rabbitmq-{n}:5672" for n in (1, 2, 3)
    ]
    assert environment["QUEUE_TYPE"] == "quorum"


def test_minio_runs_four_nodes_as_one_erasure_set_behind_the_balancer(
    overlay: dict[str, Any],
) -> None:
    services = overlay["services"]
    minio = [services[name] for name in ("minio", "minio-2", "minio-3", "minio-4")]
    assert {node["hostname"] for node in minio} == {f"minio-{n}" for n in (1, 2, 3, 4)}
    for node in minio:
        assert "minio server http://minio-{1...4}/data" in node["command"][0]
        # MinIO's AMQP target takes one URL: the balancer's; its queue_dir holds events.
        assert node["environment"]["MINIO_NOTIFY_AMQP_URL"].endswith("@lb:5672")
    balancer = HAPROXY.read_text()
    assert all(f"server rabbitmq-{n} rabbitmq-{n}:5672" in balancer for n in (1, 2, 3))
    assert all(f"server minio-{n} minio-{n}:9000" in balancer for n in (1, 2, 3, 4))
    assert overlay["x-ha-environment"]["S3_ENDPOINT"] == "http://lb:9000"


def test_api_and_workers_run_replicas_on_the_cluster(overlay: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        assert overlay["services"][name]["deploy"]["replicas"] >= 2
    for name in ("migrate", "storage-setup", "api", "worker"):
        assert overlay["services"][name]["environment"] == overlay["x-ha-environment"]


@pytest.mark.skipif(COMPOSE_COMMAND is None, reason="no docker compose to validate the file")
def test_docker_compose_accepts_the_overlay(tmp_path: Path) -> None:
    assert COMPOSE_COMMAND is not None
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("API_PORT=8000", "API_PORT=8000-8001"))
    command = [*COMPOSE_COMMAND, "--env-file", str(env_file), "-f", str(COMPOSE), "-f", str(HA)]
    result = subprocess.run([*command, "config"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"rabbitmq-2", "rabbitmq-3", "minio-2", "minio-3", "minio-4", "lb"} <= set(services)
    for name in ("api", "worker"):
        assert services[name]["environment"]["AMQP_URL"].count("amqp://") == 3
