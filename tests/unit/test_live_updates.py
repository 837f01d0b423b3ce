"""A subscriber's queue: a change that arrives again after the first state already sent
the same row state is not sent twice; a real change always is."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from mediagate.config.sections import WebSocketSettings
from mediagate.domain.status import MediaStatus
from mediagate.services.live_updates import _Follower
from mediagate.services.media_view import MediaView

SESSION = uuid.uuid4()


def _view(status: MediaStatus, url: str) -> MediaView:
    return MediaView(
        id=uuid.UUID(int=1),
        session_id=SESSION,
        file_key="sessions/x/general/y.jpg",
        status=status,
        original_filename="p.jpg",
        content_type="image/jpeg",
        stage="general",
        alt=None,
        file_size=100,
        rejection_reason=None,
        url=url,
        poster_url=None,
        width=None,
        height=None,
        duration_seconds=None,
        uploaded_at=None,
        processed_at=None,
        created_at=datetime(2026, 12, 4, tzinfo=UTC),
    )


def _follower() -> _Follower:
    limits = WebSocketSettings(
        max_connections=10,
        init_timeout=10.0,
        max_operations=20,
        queue_limit=1000,
        stall_timeout=30.0,
    )
    return _Follower(SESSION, None, lambda: None, limits)


async def test_a_change_the_first_state_already_sent_is_not_sent_again() -> None:
    follower = _follower()
    follower.start_with([_view(MediaStatus.UPLOADED, "signed-at-the-first-read")])
    assert (await follower.take()).status is MediaStatus.UPLOADED
    # The change's own read: the same state, its URL signed again.
    follower.offer([_view(MediaStatus.UPLOADED, "signed-at-the-change")])
    assert not follower.pending
    follower.offer([_view(MediaStatus.COMPLETED, "signed-later")])
    assert (await follower.take()).status is MediaStatus.COMPLETED
    # Past the first state, every change is sent, the same one again included.
    follower.offer([_view(MediaStatus.COMPLETED, "signed-again")])
    assert [v.status for v in follower.pending.values()] == [MediaStatus.COMPLETED]


async def test_a_change_before_the_first_state_is_taken_replaces_it() -> None:
    follower = _follower()
    first = _view(MediaStatus.UPLOADED, "a")
    follower.start_with([first])
    follower.offer([replace(first, status=MediaStatus.SCANNING)])
    assert [v.status for v in follower.pending.values()] == [MediaStatus.SCANNING]
