"""Live media status for subscribers: one feed per API process, fanned out in memory.

Every subscriber of a session gets the current state of the session's first page of
media first, then each change as it is committed. A change is read from the database
once, however many subscribe to its session, and the same view is handed to each of
them. What a subscriber has not taken yet, the first state included, is kept per media
item, newest state only: one that reads slowly skips intermediate states rather than
queueing them. A subscriber that leaves items waiting longer than the stall timeout
(whether or not anything changes meanwhile: a watchdog looks), or lets more than
`WS_QUEUE_LIMIT` pile up, is dropped (its `on_overflow` runs): memory never grows with a
slow reader.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mediagate.config import WebSocketSettings
from mediagate.db.media_changes import MediaChange
from mediagate.domain import validation
from mediagate.domain.principal import Principal
from mediagate.services.media_view import MediaView
from mediagate.services.uploads import UploadService


@dataclass(eq=False, slots=True)
class _Follower:
    session_id: uuid.UUID
    stage: str | None
    on_overflow: Callable[[], None]
    limits: WebSocketSettings
    pending: OrderedDict[uuid.UUID, MediaView] = field(default_factory=OrderedDict)
    # The first state's views, until a change of the item comes: a change committed
    # while the first state was read arrives again afterwards, and is not sent twice.
    first: dict[uuid.UUID, MediaView] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # When the reader last made progress, while something is waiting.
    waiting_since: float | None = None
    dropped: bool = False

    def offer(self, views: list[MediaView]) -> None:
        if self.dropped:
            return
        for view in views:
            already_sent = view.id not in self.pending and _same_state(
                self.first.pop(view.id, None), view
            )
            if (self.stage is None or view.stage == self.stage) and not already_sent:
                self.pending.pop(view.id, None)
                self.pending[view.id] = view
        self._settle(time.monotonic())

    def start_with(self, current: list[MediaView]) -> None:
        """The first state goes ahead of any change offered meanwhile; a change's view is
        kept over the first state's (a later change would bring the latest anyway)."""
        offered = self.pending
        self.pending = OrderedDict((view.id, view) for view in current)
        self.first = dict(self.pending)
        self.offer(list(offered.values()))

    def check_stall(self, now: float) -> None:
        if self.waiting_since is not None and not self.dropped and self._over(now):
            self._drop()

    def _settle(self, now: float) -> None:
        if not self.pending:
            return
        if self.waiting_since is None:
            self.waiting_since = now
        if self._over(now):
            self._drop()
        else:
            self.arrived.set()

    def _over(self, now: float) -> bool:
        assert self.waiting_since is not None
        stalled = now - self.waiting_since > self.limits.stall_timeout
        return stalled or len(self.pending) > self.limits.queue_limit

    def _drop(self) -> None:
        self.dropped = True
        self.pending.clear()
        self.on_overflow()

    async def take(self) -> MediaView:
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        view = self.pending.popitem(last=False)[1]
        self.waiting_since = time.monotonic() if self.pending else None
        return view


def _same_state(sent: MediaView | None, view: MediaView) -> bool:
    """The same row state (URLs aside: each read signs its own)."""
    return sent is not None and replace(sent, url=None, poster_url=None) == replace(
        view, url=None, poster_url=None
    )


class MediaFeed:
    def __init__(self, uploads: UploadService, limits: WebSocketSettings) -> None:
        self._uploads = uploads
        self._limits = limits
        self._followers: defaultdict[uuid.UUID, set[_Follower]] = defaultdict(set)
        self.dropped_count = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(followers) for followers in self._followers.values())

    async def follow(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        stage: str | None,
        on_overflow: Callable[[], None],
    ) -> FollowerStream:
        """The session's media now, then as it changes. Raises as sessionMedia does when
        the session is not the caller's organization's."""
        stage_name = validation.normalise_stage(stage) if stage is not None else None
        follower = _Follower(session_id, stage_name, self._overflowed(on_overflow), self._limits)
        # Registered before the current state is read: a change committed in between
        # is delivered (perhaps twice), never lost.
        self._followers[session_id].add(follower)
        try:
            current = await self._uploads.session_media(principal, session_id, stage_name)
        except BaseException:
            self.forget(follower)
            raise
        follower.start_with(current)
        return FollowerStream(self, follower)

    async def watch_stalls(self) -> None:
        """Drop subscribers that stopped reading even while nothing changes: runs until
        cancelled, looking a few times per stall timeout."""
        while True:
            await asyncio.sleep(self._limits.stall_timeout / 4)
            now = time.monotonic()
            for followers in tuple(self._followers.values()):
                for follower in tuple(followers):
                    follower.check_stall(now)

    def _overflowed(self, on_overflow: Callable[[], None]) -> Callable[[], None]:
        def count_and_drop() -> None:
            self.dropped_count += 1
            on_overflow()

        return count_and_drop

    def forget(self, follower: _Follower) -> None:
        followers = self._followers.get(follower.session_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._followers[follower.session_id]

    async def deliver(self, changes: list[MediaChange]) -> None:
        followed = [change.media_id for change in changes if change.session_id in self._followers]
        if followed:
            self._fan_out(await self._uploads.views_of_media(followed))

    async def resync(self) -> None:
        """After changes may have gone unheard: every followed session's media again."""
        if self._followers:
            self._fan_out(await self._uploads.views_in_sessions(list(self._followers)))

    def _fan_out(self, views: list[MediaView]) -> None:
        by_session: defaultdict[uuid.UUID, list[MediaView]] = defaultdict(list)
        for view in views:
            by_session[view.session_id].append(view)
        for session_id, changed in by_session.items():
            for follower in tuple(self._followers.get(session_id, ())):
                follower.offer(changed)


class FollowerStream:
    """An async iterator of MediaView; `aclose` unsubscribes, whether iterated or not."""

    def __init__(self, feed: MediaFeed, follower: _Follower) -> None:
        self._feed = feed
        self._follower = follower

    def __aiter__(self) -> FollowerStream:
        return self

    async def __anext__(self) -> MediaView:
        return await self._follower.take()

    async def aclose(self) -> None:
        self._feed.forget(self._follower)
