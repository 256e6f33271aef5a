"""The in-process bus (layer 1): tells stream subscribers about committed events.

One :class:`Feed` per session with subscribers holds the events published since the
oldest subscriber joined, in publish order, and one ``asyncio.Event`` that wakes every
subscriber at once. A publish costs one append and one wake-up however many clients
watch the session; each subscriber keeps only its position in the feed. Events are
published after their transaction committed (persist, then notify), so anything a
subscriber receives is already in ``events.list``.

Across processes (PostgreSQL ``LISTEN/NOTIFY``) the same feed will be filled from the
log by sequence number; within one process the appender hands the events over directly.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agenthost.schemas.common import JSON

FEED_SIZE = 10_000


@dataclass(slots=True)
class Published:
    """One published event, shared by every subscriber of its session.

    ``encoded`` lets the first subscriber that frames the event keep the bytes for the others,
    so an event is serialised once however many streams carry it.
    """

    seq: int
    event: JSON
    encoded: bytes | None = None


@dataclass
class Feed:
    """Recently published events of one session, shared by its subscribers."""

    items: deque[Published] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    first_position: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: int = 0
    closed: bool = False

    @property
    def end(self) -> int:
        return self.first_position + len(self.items)


class FeedOverrun(Exception):
    """A subscriber fell so far behind that events it had not read were dropped from the feed."""


class Bus:
    """Publish/subscribe of committed session events within one process."""

    def __init__(self) -> None:
        self._feeds: dict[str, Feed] = {}

    def publish(self, session_id: str, events: list[tuple[int, JSON]]) -> None:
        """Hand committed events (with their sequence numbers) to the session's subscribers, if any."""
        feed = self._feeds.get(session_id)
        if feed is None or not events:
            return
        for seq, event in events:
            if len(feed.items) == feed.items.maxlen:
                feed.first_position += 1
            feed.items.append(Published(seq, event))
        feed.changed.set()
        feed.changed = asyncio.Event()

    def close(self, session_id: str) -> None:
        """End every subscription of a session (it was deleted)."""
        feed = self._feeds.get(session_id)
        if feed is not None:
            feed.closed = True
            feed.changed.set()

    def subscribe(self, session_id: str) -> Subscription:
        """Start receiving the session's events published from this call on; close it when done."""
        feed = self._feeds.get(session_id)
        if feed is None or feed.closed:
            feed = self._feeds[session_id] = Feed()
        feed.subscribers += 1
        subscription = Subscription(self, session_id, feed)
        # A stream dropped before its generator ever ran never reaches its own `finally`: leave on collection.
        subscription._finalizer = weakref.finalize(subscription, self._leave, session_id, feed)
        return subscription

    def _leave(self, session_id: str, feed: Feed) -> None:
        feed.subscribers -= 1
        if feed.subscribers == 0 and self._feeds.get(session_id) is feed:
            del self._feeds[session_id]


class Subscription:
    """One subscriber's position in a session feed: ``drain`` what is there, ``wait`` for more."""

    def __init__(self, bus: Bus, session_id: str, feed: Feed):
        self._bus = bus
        self._session_id = session_id
        self._feed = feed
        self._position = feed.end
        self._open = True
        self._finalizer: weakref.finalize[Any, Any]

    def drain(self) -> list[Published]:
        """Every event published since the last drain, in publish order."""
        feed = self._feed
        if self._position < feed.first_position:
            raise FeedOverrun(self._session_id)
        start = self._position - feed.first_position
        items = [feed.items[index] for index in range(start, len(feed.items))]
        self._position = feed.end
        return items

    async def wait(self) -> None:
        """Return when something was published (or the feed closed); no task is created per wait."""
        feed = self._feed
        if self._position >= feed.end and not feed.closed and self._open:
            await feed.changed.wait()

    @property
    def ended(self) -> bool:
        """True when the session was deleted and every published event was read."""
        return self._feed.closed and self._position >= self._feed.end

    def close(self) -> None:
        if self._open:
            self._open = False
            self._finalizer()
