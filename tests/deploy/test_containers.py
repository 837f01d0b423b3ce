"""The real thing in containers: MinIO publishes a bucket event to RabbitMQ, the worker
consumes it. Needs a Docker engine; skips with the reason where there is none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.domain.status import MediaStatus
from mediagate.services.uploads import UploadService
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.worker_process import WorkerProcess, wait_for_status

MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
MINIO_ENV = Path(__file__).resolve().parents[2] / "deploy" / "minio" / "minio.env"


def _docker_missing() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:  # any failure means: no engine to run containers on
        return f"no Docker engine reachable, so MinIO and RabbitMQ containers cannot run ({error})"
    return None


REASON = _docker_missing()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def stack(env: dict[str, str]) -> Iterator[dict[str, str]]:
    from testcontainers.core.network import Network
    from testcontainers.minio import MinioContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    settings = load_settings(env)
    with Network() as network:
        rabbit = RabbitMqContainer(RABBITMQ_IMAGE, username="mediagate", password="mediagate")
        rabbit.with_network(network).with_network_aliases("rabbitmq")
        with rabbit:
            minio = MinioContainer(
                MINIO_IMAGE, access_key="mediagate", secret_key="mediagate-secret"
            )
            minio.with_env_file(str(MINIO_ENV)).with_network(network)
            minio.with_envs(
                MINIO_NOTIFY_AMQP_URL="amqp://mediagate:mediagate@rabbitmq:5672",
                MINIO_NOTIFY_AMQP_EXCHANGE=settings.broker.events_exchange,
                MINIO_NOTIFY_AMQP_EXCHANGE_TYPE=settings.broker.events_exchange_type,
                MINIO_NOTIFY_AMQP_ROUTING_KEY=settings.broker.events_routing_key,
                MINIO_KMS_SECRET_KEY="mediagate-key:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYiE=",
            )
            with minio:
                host = minio.get_container_host_ip()
                yield {
                    **env,
                    "AMQP_URL": f"amqp://mediagate:mediagate@{rabbit.get_container_host_ip()}:"
                    f"{rabbit.get_exposed_port(5672)}",
                    "S3_ENDPOINT": f"http://{host}:{minio.get_exposed_port(9000)}",
                    "S3_ACCESS_KEY": "mediagate",
                    "S3_SECRET_KEY": "mediagate-secret",
                    "S3_UPLOAD_ACCESS_KEY": "mediagate-upload",
                    "S3_UPLOAD_SECRET_KEY": "mediagate-upload-secret",
                }


async def test_a_real_put_to_minio_is_processed_through_its_bucket_event(
    stack: dict[str, str], tenant: Tenant, clamd: daemons.Clamd, database: None
) -> None:
    settings: Settings = load_settings(stack)
    report = setup_storage(settings, bucket_events=True, require_tls=False)
    assert "notification: sessions/* -> arn:minio:sqs::_:amqp" in report
    assert "upload credential: mediagate-upload may only put objects under sessions/" in report

    class NoJobs:
        async def publish(self, job: object) -> None:
            raise AssertionError("no confirmUpload here: the bucket event alone must do it")

    worker = WorkerProcess(stack)
    await worker.start(settings)
    try:
        uploads = UploadService(settings, ObjectStore(settings), NoJobs())
        ticket = await uploads.request_upload(
            tenant.principal, tenant.session_id, "car.jpg", "image/jpeg", None, "test"
        )
        async with httpx.AsyncClient() as client:
            response = await client.put(
                ticket.upload_url,
                content=media.fixture("landscape_5.jpg"),
                headers={"Content-Type": "image/jpeg"},
            )
        assert response.status_code == 200, response.text
        record = await wait_for_status(ticket.file_key, MediaStatus.COMPLETED, MediaStatus.REJECTED)
        assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    finally:
        worker.stop()
