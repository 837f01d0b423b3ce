"""Webhooks from the outbox to a real receiver on loopback: signed per Standard Webhooks
(checked by its reference verifier), retried, ordered, disabled by 410, bounded. The
dispatcher runs in this process with a schedule of zeros: no test waits for a backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from mediagate.config import Settings, load_settings
from mediagate.db.engine import pool
from mediagate.domain.webhooks import AllowedNetworks
from mediagate.outbound.http import OutboundClient
from mediagate.services.webhooks import WebhookService
from mediagate.worker.metrics import WorkerMetrics
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.webhooks import WebhookDispatcher
from tests.support import media
from tests.support.api import Tenant, error_codes, graphql
from tests.support.api import service_token as backend_token
from tests.support.daemons import ServedApi, serve_api
from tests.support.readback import row, stage
from tests.support.receiver import Receiver, Reply, receiving
from tests.support.webhooks import (
    CREATE_ENDPOINT,
    DELETE_ENDPOINT,
    DELETE_MEDIA,
    ENDPOINTS,
    REDELIVER,
    ROTATE,
    arrivals,
    create_endpoint,
    deliveries,
    verified_unsafely,
    verify,
)

LOOPBACK_ONLY = "127.0.0.1/32"


@pytest.fixture(scope="module")
def hook_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_ONLY,
        "WEBHOOK_RETRY_SCHEDULE": "0,0,0",
        "WEBHOOK_TIMEOUT": "2",
    }


@pytest.fixture(scope="module")
def hook_settings(hook_env: dict[str, str]) -> Settings:
    return load_settings(hook_env)


@pytest.fixture(scope="module")
def served(hook_env: dict[str, str], api: httpx.AsyncClient) -> Iterator[ServedApi]:
    """`mediagate serve` as a deployment that lets webhooks reach 127.0.0.1 runs it."""
    with serve_api(hook_env) as process:
        yield process


@pytest.fixture
async def hook_api(served: ServedApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def dispatching(hook_settings: Settings, served: ServedApi) -> AsyncIterator[None]:
    client = OutboundClient(hook_settings.outbound)
    running = asyncio.create_task(WebhookDispatcher(hook_settings, client, WorkerMetrics()).run())
    yield
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as listening:
        yield listening


async def _pending_item(api: httpx.AsyncClient, tenant: Tenant) -> str:
    """A PENDING_UPLOAD item's id: deleting it makes one media.deleted event."""
    body = await graphql(
        api,
        """mutation U($s: UUID!) { getUploadUrl(sessionId: $s, filename: "a.jpg",
           contentType: "image/jpeg") { fileKey } }""",
        {"s": str(tenant.session_id)},
        tenant.token,
    )
    return str((await row(body["data"]["getUploadUrl"]["fileKey"])).id)


async def _delete(api: httpx.AsyncClient, tenant: Tenant, media_id: str) -> None:
    body = await graphql(api, DELETE_MEDIA, {"id": media_id}, tenant.token)
    assert body["data"]["deleteMedia"]["status"] == "DELETED", body


async def test_outcomes_are_signed_as_the_reference_verifier_accepts(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
) -> None:
    backend = backend_token(hook_settings, tenant)
    _endpoint, secret = await create_endpoint(hook_api, backend, receiver.url)
    photo = await stage(hook_api, tenant, media.fixture("landscape_3.jpg"), "p.jpg", "image/jpeg")
    virus = await stage(hook_api, tenant, media.eicar(), "v.jpg", "image/jpeg")
    for key in (photo, virus):
        await pipeline.handle(key, 0)
    photo_id, virus_id = str((await row(photo)).id), str((await row(virus)).id)

    (completed,) = await arrivals(receiver, 1, id=photo_id)
    (rejected,) = await arrivals(receiver, 1, id=virus_id)
    for received, kind in ((completed, "media.completed"), (rejected, "media.rejected")):
        payload = verify(secret, received)
        assert payload["type"] == kind
        assert received.headers["webhook-signature"].startswith("v1,")
        assert len(received.body) < 2048, "thin: no URLs, a few fields"
        assert "url" not in json.dumps(payload).lower().replace("urlsafe", "")
        tampered = dataclasses.replace(received, body=received.body.replace(b"media", b"mediA"))
        with pytest.raises(WebhookVerificationError):
            verify(secret, tampered)
    data = verify(secret, completed)["data"]
    assert data["status"] == "COMPLETED" and data["sessionId"] == str(tenant.session_id)
    assert data["contentType"] == "image/jpeg" and data["width"] and data["fileSize"]
    assert data["rejectionReason"] is None
    reason = verify(secret, rejected)["data"]["rejectionReason"]
    assert "virus" in reason.lower()
    other_secret = (await create_endpoint(hook_api, backend, receiver.url))[1]
    with pytest.raises(WebhookVerificationError):
        verify(other_secret, completed)


async def test_a_receiver_failing_twice_gets_the_same_id_three_times(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
) -> None:
    backend = backend_token(hook_settings, tenant)
    endpoint, secret = await create_endpoint(hook_api, backend, receiver.url)
    receiver.script = [Reply(500), Reply(500)]
    media_id = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, media_id)

    received = await arrivals(receiver, 3, id=media_id)
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert all(verify(secret, r)["type"] == "media.deleted" for r in received)
    log = await deliveries(hook_api, backend, endpoint)
    assert [(n["attempt"], n["httpStatus"]) for n in log] == [(1, 500), (2, 500), (3, 200)]
    assert {n["eventId"] for n in log} == {received[0].headers["webhook-id"]}
    assert all(n["durationMs"] >= 0 and n["error"] is None for n in log)

    # Replayed on request: the same event once more, with the same id.
    assert (await graphql(hook_api, REDELIVER, {"id": log[0]["deliveryId"]}, backend))["data"]
    again = await arrivals(receiver, 4, id=media_id)
    assert again[-1].headers["webhook-id"] == received[0].headers["webhook-id"]


async def test_a_receiver_out_of_retries_leaves_the_delivery_failed_and_kept(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    env: dict[str, str],
    tenant: Tenant,
) -> None:
    started = datetime.now(UTC)
    backend = backend_token(hook_settings, tenant)
    endpoint, _secret = await create_endpoint(hook_api, backend, receiver.url)
    receiver.default = Reply(500)
    media_id = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, media_id)
    # The first try and one per step of the schedule (three), then no more.
    await arrivals(receiver, 4, id=media_id)

    async def failed() -> bool:
        state = await pool().fetchval(
            "SELECT state FROM webhook_deliveries WHERE endpoint_id = $1", endpoint
        )
        return bool(state == "failed")

    while not await failed():
        await asyncio.sleep(0.05)
    assert len(await arrivals(receiver, 4, id=media_id)) == 4
    assert len(await deliveries(hook_api, backend, endpoint)) == 4

    # Back up: the operator replays what failed since the outage began.
    receiver.default = Reply(200)
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "mediagate.cli",
            "webhooks",
            "redeliver",
            "--since",
            started.isoformat(),
            "--endpoint",
            endpoint,
        ],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert replay.stdout.strip() == "1"
    fifth = (await arrivals(receiver, 5, id=media_id))[-1]
    assert (
        fifth.headers["webhook-id"] == (await deliveries(hook_api, backend, endpoint))[0]["eventId"]
    )


async def test_410_disables_the_endpoint(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
) -> None:
    backend = backend_token(hook_settings, tenant)
    endpoint, _secret = await create_endpoint(hook_api, backend, receiver.url)
    receiver.default = Reply(410)
    first = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, first)
    await arrivals(receiver, 1, id=first)

    async def enabled() -> bool:
        listed = (await graphql(hook_api, ENDPOINTS, {}, backend))["data"]["webhookEndpoints"]
        return bool(next(e for e in listed if e["id"] == endpoint)["enabled"])

    while await enabled():
        await asyncio.sleep(0.05)
    second = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, second)
    queued = await pool().fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", endpoint
    )
    assert queued == 1, "a disabled endpoint is given no new deliveries"
    assert len(await deliveries(hook_api, backend, endpoint)) == 1


async def test_retry_after_of_a_503_is_honoured(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
) -> None:
    await create_endpoint(hook_api, backend_token(hook_settings, tenant), receiver.url)
    receiver.script = [Reply(503, {"Retry-After": "2"}), Reply(429, {"Retry-After": "1"})]
    media_id = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, media_id)
    first, second, third = await arrivals(receiver, 3, id=media_id)
    # The schedule says 0 s: only the receiver's Retry-After makes these waits.
    assert second.at - first.at >= 1.9
    assert third.at - second.at >= 0.9


async def test_events_of_one_item_arrive_in_order_despite_retries(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
) -> None:
    await create_endpoint(hook_api, backend_token(hook_settings, tenant), receiver.url)
    receiver.script = [Reply(500), Reply(500)]
    key = await stage(hook_api, tenant, media.fixture("landscape_3.jpg"), "p.jpg", "image/jpeg")
    await pipeline.handle(key, 0)
    media_id = str((await row(key)).id)
    await _delete(hook_api, tenant, media_id)
    received = await arrivals(receiver, 4, id=media_id)
    types = [verified_unsafely(r)["type"] for r in received]
    assert types == ["media.completed"] * 3 + ["media.deleted"], types


async def test_rotation_signs_with_both_secrets_while_the_overlap_lasts(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
) -> None:
    backend = backend_token(hook_settings, tenant)
    endpoint, old = await create_endpoint(hook_api, backend, receiver.url)
    rotated = await graphql(hook_api, ROTATE, {"id": endpoint}, backend)
    new = rotated["data"]["rotateWebhookSecret"]["secret"]
    assert new != old and new.startswith("whsec_")
    media_id = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, media_id)
    (received,) = await arrivals(receiver, 1, id=media_id)
    signatures = received.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        verify(secret, received)


async def test_an_address_left_out_of_the_allowed_list_is_never_connected_to(
    hook_api: httpx.AsyncClient,
    dispatching: None,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
) -> None:
    """Registered while allowed, then delivered by a process whose list leaves it out:
    checked again on every connection."""
    backend = backend_token(hook_settings, tenant)
    port = receiver.url.split(":")[2].split("/")[0]
    wide = dataclasses.replace(
        hook_settings.outbound, allowed_networks=AllowedNetworks.parse("127.0.0.0/8")
    )
    service = WebhookService(hook_settings.webhooks, OutboundClient(wide))
    principal = dataclasses.replace(tenant.principal, is_service=True)
    created = await service.create(principal, f"http://127.0.0.2:{port}/hooks", None)
    media_id = await _pending_item(hook_api, tenant)
    await _delete(hook_api, tenant, media_id)

    async def attempts() -> list[dict[str, object]]:
        return await deliveries(hook_api, backend, str(created.endpoint.id))

    while len(await attempts()) < 2:
        await asyncio.sleep(0.05)
    log = await attempts()
    assert all(n["httpStatus"] is None for n in log)
    assert all("WEBHOOK_ALLOWED_NETWORKS" in str(n["error"]) for n in log), log
    assert not receiver.of_event(str(log[0]["eventId"])), "nothing reached any receiver"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://localhost:9/hooks",
        "http://[::1]:9/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:9/",
        "http://224.0.0.1/",
        "http://[::ffff:127.0.0.1]:9/",
    ],
)
async def test_the_default_allowed_networks_refuse_loopback_and_link_local(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, url: str
) -> None:
    body = await graphql(api, CREATE_ENDPOINT, {"url": url}, backend_token(settings, tenant))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "WEBHOOK_ALLOWED_NETWORKS" in body["errors"][0]["message"]


async def test_endpoints_are_checked_bounded_and_the_organizations_own(
    hook_api: httpx.AsyncClient,
    receiver: Receiver,
    hook_settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    backend = backend_token(hook_settings, other_tenant)
    port = receiver.url.split(":")[2].split("/")[0]
    for bad in (
        f"http://127.0.0.2:{port}/hooks",  # loopback, but not the one address listed
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        "http://127.0.0.1/" + "x" * 2000,
        "not a url",
    ):
        body = await graphql(hook_api, CREATE_ENDPOINT, {"url": bad}, backend)
        assert error_codes(body) == ["BAD_USER_INPUT"], (bad, body)
    unknown = await graphql(
        hook_api, CREATE_ENDPOINT, {"url": receiver.url, "events": ["media.exploded"]}, backend
    )
    assert error_codes(unknown) == ["BAD_USER_INPUT"]
    user = await graphql(hook_api, CREATE_ENDPOINT, {"url": receiver.url}, other_tenant.token)
    assert error_codes(user) == ["FORBIDDEN"]

    made = [
        await create_endpoint(hook_api, backend, receiver.url, ["media.completed"])
        for _ in range(hook_settings.webhooks.max_endpoints)
    ]
    over = await graphql(hook_api, CREATE_ENDPOINT, {"url": receiver.url}, backend)
    assert error_codes(over) == ["LIMIT_EXCEEDED"], over
    listed = (await graphql(hook_api, ENDPOINTS, {}, backend))["data"]["webhookEndpoints"]
    assert len(listed) == hook_settings.webhooks.max_endpoints
    assert listed[0]["events"] == ["media.completed"] and "secret" not in listed[0]

    stranger = backend_token(hook_settings, tenant)
    mine = made[0][0]
    for query in (ROTATE, DELETE_ENDPOINT):
        assert error_codes(await graphql(hook_api, query, {"id": mine}, stranger)) == ["NOT_FOUND"]
    theirs = (await graphql(hook_api, ENDPOINTS, {}, stranger))["data"]["webhookEndpoints"]
    assert mine not in {e["id"] for e in theirs}
    deleted = await graphql(hook_api, DELETE_ENDPOINT, {"id": mine}, backend)
    assert deleted["data"]["deleteWebhookEndpoint"]["id"] == mine
