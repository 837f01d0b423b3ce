"""The pre-accept hook, a real receiver on loopback: its acceptance completes, its
refusal rejects, and anything else (a timeout, an error, garbage, an answer past 64 KiB)
is no verdict: retried like a scanner outage, never COMPLETED."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.domain.status import MediaStatus
from mediagate.domain.webhooks import new_secret
from mediagate.outbound.http import MAX_ANSWER_BYTES, OutboundClient
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import Done, Retry
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.readback import row, stage
from tests.support.receiver import Receiver, Reply, receiving
from tests.support.webhooks import verify

PHOTO = media.fixture("landscape_3.jpg")
SECRET = new_secret()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as listening:
        yield listening


@pytest.fixture
async def hooked(
    env: dict[str, str],
    receiver: Receiver,
    store: ObjectStore,
    clamd: daemons.Clamd,
    decoders: DecoderPool,
    scratch_root: Path,
) -> AsyncIterator[MediaPipeline]:
    settings = load_settings(
        {
            **env,
            "VALIDATION_HOOK_URL": receiver.url,
            "VALIDATION_HOOK_SECRET": SECRET,
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "WEBHOOK_TIMEOUT": "2",
        }
    )
    scanner = ClamdScanner(settings.scanner.host, settings.scanner.port, settings.scanner.timeout)
    client = OutboundClient(settings.outbound)
    yield MediaPipeline(settings, store, scanner, decoders, client, scratch_root=scratch_root)
    await client.close()


def _outputs(store: ObjectStore, key: str) -> list[str]:
    stem = key.removeprefix("sessions/").rsplit(".", 1)[0]
    listed = store.client.list_objects(store.bucket, prefix=f"processed/{stem}", recursive=True)
    return [item.object_name for item in listed]


async def test_acceptance_completes_and_the_hook_can_fetch_the_copy(
    hooked: MediaPipeline, receiver: Receiver, api: httpx.AsyncClient, tenant: Tenant
) -> None:
    receiver.default = Reply(200, body=b'{"accept": true}')
    key = await stage(api, tenant, PHOTO, "p.jpg", "image/jpeg")
    outcome = await hooked.handle(key, 0)
    assert isinstance(outcome, Done) and (await row(key)).status is MediaStatus.COMPLETED
    (asked,) = receiver.snapshot()
    payload = verify(SECRET, asked)
    assert payload["type"] == "media.validate"
    data = payload["data"]
    assert data["id"] == str((await row(key)).id) and data["status"] == "PROCESSING"
    assert data["contentType"] == "image/jpeg" and data["posterUrl"] is None
    async with httpx.AsyncClient() as client:
        fetched = await client.get(data["url"])
    assert fetched.status_code == 200 and fetched.content[:2] == b"\xff\xd8"
    assert len(fetched.content) == data["fileSize"]


async def test_refusal_rejects_with_the_reason_and_leaves_no_copy(
    hooked: MediaPipeline,
    receiver: Receiver,
    api: httpx.AsyncClient,
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    reason = "classifier: not a vehicle " + "x" * 500
    receiver.default = Reply(200, body=json.dumps({"accept": False, "reason": reason}).encode())
    key = await stage(api, tenant, PHOTO, "p.jpg", "image/jpeg")
    await hooked.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.REJECTED
    assert record.rejection_reason == reason[:200]
    assert _outputs(store, key) == [], "the sanitized copy went with the refusal"
    assert await store.head(key) is None, "and so did the original"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, body=b'{"accept": true}', hold=5.0),  # past WEBHOOK_TIMEOUT (2 s)
        Reply(500, body=b'{"accept": true}'),
        Reply(302, {"Location": "http://127.0.0.1:9/"}),
        Reply(200, body=b"<html>yes</html>"),
        Reply(200, body=b'{"accept": "yes"}'),
        Reply(200, body=b'{"accept": true, "pad": "' + b"x" * MAX_ANSWER_BYTES + b'"}'),
    ],
    ids=["timeout", "500", "redirect", "garbage", "not-a-boolean", "past-64KiB"],
)
async def test_no_valid_answer_is_never_acceptance(
    hooked: MediaPipeline,
    receiver: Receiver,
    api: httpx.AsyncClient,
    tenant: Tenant,
    store: ObjectStore,
    settings: Settings,
    reply: Reply,
) -> None:
    receiver.default = reply
    key = await stage(api, tenant, PHOTO, "p.jpg", "image/jpeg")
    outcome = await hooked.handle(key, 0)
    assert isinstance(outcome, Retry), outcome
    assert (await row(key)).status is not MediaStatus.COMPLETED
    assert _outputs(store, key) == [], "no copy is left without a verdict"
    assert await store.head(key) is not None, "the original is kept for the retry"

    last = len(settings.retry.delays_ms)
    final = await hooked.handle(key, last)
    record = await row(key)
    assert isinstance(final, Done) and record.status is MediaStatus.SCAN_FAILED, final
    assert "validation hook unavailable" in (record.rejection_reason or "")
    assert _outputs(store, key) == [] and await store.head(key) is not None
