"""The pre-accept hook: after a clean scan and the sanitized copy are stored, and before
COMPLETED, the product's service is asked (signed as webhooks are) whether to accept."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from mediagate.config import Settings
from mediagate.db import session_rows
from mediagate.db.media_rows import MediaRecord
from mediagate.domain.validation_hook import EVENT_TYPE, HookVerdict, MalformedAnswer, parse_answer
from mediagate.outbound.http import AddressRefused, NoAnswer, OutboundClient
from mediagate.outbound.signing import signed_headers
from mediagate.storage.object_store import ObjectStore

# Long enough for a classifier to fetch the copy, short enough to be no lasting link.
URL_TTL = timedelta(minutes=10)


class HookUnavailable(Exception):
    """No valid answer (timeout, refused address, non-2xx, malformed): tried again later,
    like a scanner that does not answer."""


class ValidationHook:
    def __init__(
        self,
        settings: Settings,
        client: OutboundClient,
        store: ObjectStore,
        clock: Callable[[], datetime],
    ) -> None:
        hook = settings.validation_hook
        assert hook.url is not None and hook.secret is not None
        self._url, self._secret = hook.url, hook.secret
        self._client = client
        self._store = store
        self._clock = clock

    async def ask(
        self,
        record: MediaRecord,
        processed_key: str,
        poster_key: str | None,
        shape: dict[str, object],
    ) -> HookVerdict:
        now = self._clock()
        body = json.dumps(
            {
                "type": EVENT_TYPE,
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": {
                    "id": str(record.id),
                    "sessionId": str(record.session_id),
                    "externalSessionId": await session_rows.session_external_id(record.session_id),
                    "status": record.status.value,
                    **shape,
                    "rejectionReason": None,
                    "url": self._store.presign_get(processed_key, URL_TTL, now),
                    "posterUrl": poster_key and self._store.presign_get(poster_key, URL_TTL, now),
                },
            },
            separators=(",", ":"),
        )
        message_id = f"validate_{record.id}_{int(now.timestamp() * 1000)}"
        headers = signed_headers(message_id, body, (self._secret,), now)
        try:
            answer = await self._client.post(self._url, body.encode(), headers)
        except (AddressRefused, NoAnswer) as error:
            raise HookUnavailable(str(error)) from None
        if not 200 <= answer.status < 300:
            raise HookUnavailable(f"the hook answered HTTP {answer.status}")
        try:
            return parse_answer(answer.body)
        except MalformedAnswer as error:
            raise HookUnavailable(str(error)) from None
