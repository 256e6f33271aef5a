"""The bus (layer 1): tells stream subscribers about committed events, in one process or many.

Every showing of an event has an emission number (``store.sessions.Logged``), allocated in
the transaction that shows it, in commit order and without gaps. One :class:`Feed` per
session with subscribers in this process holds what was shown since its oldest subscriber
joined, up to its *watermark* (the newest number it holds), and calls each subscriber's
listener when it changes, there and then: a publish costs one append and no task wake-up,
however many clients watch the session (``api.event_stream`` writes from its listener).

Feeds are filled two ways, both after commit (persist, then notify):

- **Directly**: the process that committed hands its events over (``publish``). Numbers that
  follow the watermark are appended as they are.
- **From the log**: when numbers skip ahead (another process wrote in between), when
  PostgreSQL ``NOTIFY`` says another process showed something (``on_notification``; the
  notification carries only the session and a number), or when a periodic check finds a
  session further on than its feed (``heal``), the feed reads the log's showings after its
  watermark. A lost or late notification costs latency, never an event.

Notifications are sent inside the writing transaction (``store.notifications.announce``), so PostgreSQL delivers
them exactly when the write commits, and never for a write that rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.schemas.events import event_json
from agenthost.store.db import Database
from agenthost.store.notifications import ORIGIN, Notification
from agenthost.store.tables import events, sessions

log = logging.getLogger("agenthost.bus")

FEED_SIZE = 10_000
CATCH_UP_ROWS = 2_000

Shown = tuple[int, JSON]
"""One showing of an event: its emission number and its wire form (``store.sessions.Logged``)."""


# -- reading showings back from the log -----------------------------------------------------------


def emissions_after(conn: sa.Connection, session_id: str, watermark: int, limit: int = CATCH_UP_ROWS) -> list[Shown]:
    """The session's showings numbered ``watermark + 1`` to ``watermark + limit``, in order, rebuilt from the log.

    A queued event later taken was shown twice: as queued (``emit_first``, no ``processed_at``) and
    as processed (``emit_last``); each showing in the range is rebuilt. Numbers have no gaps, so the
    range holds at most ``limit`` showings.
    """
    high = watermark + limit
    query = sa.select(
        events.c.id, events.c.payload, events.c.processed_at, events.c.emit_first, events.c.emit_last
    ).where(events.c.session_id == session_id, events.c.emit_last > watermark, events.c.emit_first <= high)
    shown: list[Shown] = []
    for row in conn.execute(query):
        if watermark < row.emit_first < row.emit_last:
            shown.append((row.emit_first, event_json(row.id, row.payload, None)))
        if row.emit_last <= high:
            shown.append((row.emit_last, event_json(row.id, row.payload, ts(row.processed_at))))
    shown.sort(key=lambda item: item[0])
    return shown


# -- feeds and subscriptions ----------------------------------------------------------------------


@dataclass(slots=True)
class Published:
    """One showing in a feed, shared by every subscriber of its session.

    ``encoded`` lets the first subscriber that frames the event keep the bytes for the others,
    so an event is serialised once however many streams carry it.
    """

    number: int
    event: JSON
    encoded: bytes | None = None


@dataclass
class Feed:
    """Recently shown events of one session, shared by its subscribers in this process."""

    items: deque[Published] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    first_position: int = 0
    listeners: list[Callable[[], None]] = field(default_factory=list)
    preview_listeners: list[Callable[[JSON, bool], None]] = field(default_factory=list)
    subscribers: int = 0
    closed: bool = False
    watermark: int | None = None  # None until the feed read where the session's showings stand
    early: list[Shown] = field(default_factory=list)  # handed over before the watermark was known
    behind: bool = False  # the log holds showings past the watermark: read them
    reading: asyncio.Task[None] | None = None
    ready: asyncio.Future[None] | None = None  # the read of the watermark, awaited by every joiner

    @property
    def end(self) -> int:
        return self.first_position + len(self.items)

    def offer(self, shown: list[Shown]) -> None:
        """Append the showings that follow the watermark; mark the feed behind when numbers skip ahead."""
        if self.closed:
            return
        if self.watermark is None:
            self.early.extend(shown)
            return
        added = False
        for number, event in shown:
            if number <= self.watermark:
                continue  # already here (read from the log before it was handed over)
            if number != self.watermark + 1:
                self.behind = True
                break
            self.append(number, event)
            self.watermark = number
            added = True
        if added:
            self._wake()

    def append(self, number: int, event: JSON) -> None:
        if len(self.items) == self.items.maxlen:
            self.first_position += 1  # the oldest showing drops out; subscribers still on it overrun
        self.items.append(Published(number, event))

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        for listener in tuple(self.listeners):  # a listener may leave while it is called
            try:
                listener()
            except Exception:
                log.exception("a subscriber of a session feed failed to take its events")


class FeedOverrun(Exception):
    """A subscriber fell so far behind that events it had not read were dropped from the feed."""


class Bus:
    """Publish/subscribe of committed session events for the streams of this process."""

    def __init__(self, db: Database):
        self._db = db
        self._feeds: dict[str, Feed] = {}
        self._observers: list[Callable[[str, list[Shown]], None]] = []

    # publishing

    def observe(self, observer: Callable[[str, list[Shown]], None]) -> None:
        """Also hand every batch this process commits to ``observer`` (metrics, say), after the streams."""
        self._observers.append(observer)

    def publish(self, session_id: str, shown: list[Shown]) -> None:
        """Hand over events this process just committed (with their emission numbers): to the session's
        streams in this process, then to the observers."""
        if shown:
            self._to_feed(session_id, shown)
            for observer in self._observers:
                try:
                    observer(session_id, shown)
                except Exception:
                    log.exception("an observer of committed events failed")

    def _to_feed(self, session_id: str, shown: list[Shown]) -> None:
        feed = self._feeds.get(session_id)
        if feed is None:
            return
        feed.offer(shown)
        self._read_if_behind(session_id, feed)

    def preview(self, session_id: str, preview: JSON) -> None:
        """A live preview of an event still being written (``event_start``/``event_delta``): handed to the
        session's streams in this process that asked for previews, there and then; never stored.

        Best effort: a feed that is catching up with the log shows no previews meanwhile, so a preview
        never overtakes an event committed before it; its listeners are told that this one was skipped
        (``in_order=False``), so that they stop that preview instead of showing it with a gap.
        """
        feed = self._feeds.get(session_id)
        if feed is None or feed.closed:
            return
        in_order = not (feed.behind or feed.reading is not None or feed.watermark is None)
        for listener in tuple(feed.preview_listeners):
            try:
                listener(preview, in_order)
            except Exception:
                log.exception("a subscriber of a session feed failed to take a preview")

    def deleted(self, session_id: str) -> None:
        """The session was deleted: every stream gets ``session.deleted`` (never persisted) and ends."""
        feed = self._feeds.get(session_id)
        if feed is None or feed.closed:
            return
        gone = {"id": new_id("sevt"), "type": "session.deleted", "processed_at": ts(now_us())}
        feed.append(sys.maxsize, gone)
        feed.close()

    def on_notification(self, note: Notification) -> None:
        """Another process committed something for ``note.session_id``."""
        if note.origin == ORIGIN:
            return
        feed = self._feeds.get(note.session_id)
        if feed is None:
            return
        if note.kind == "d":
            self.deleted(note.session_id)
        elif note.kind == "e" and (feed.watermark is None or note.number > feed.watermark):
            feed.behind = True
            self._read_if_behind(note.session_id, feed)

    def resync(self) -> None:
        """Notifications may have been lost (the listener reconnected): check every feed against the log."""
        for session_id, feed in self._feeds.items():
            feed.behind = True
            self._read_if_behind(session_id, feed)

    async def heal(self) -> None:
        """Compare every feed with its session's newest showing; read what a lost notification left out."""
        watched = [(sid, feed) for sid, feed in self._feeds.items() if feed.watermark is not None]
        for start in range(0, len(watched), 500):
            chunk = dict(watched[start : start + 500])
            query = sa.select(sessions.c.id, sessions.c.last_emit).where(sessions.c.id.in_(list(chunk)))
            newest = dict(await self._db.run_read(lambda conn, query=query: conn.execute(query).all()))
            for session_id, feed in chunk.items():
                if session_id not in newest:
                    self.deleted(session_id)
                elif feed.watermark is not None and newest[session_id] > feed.watermark:
                    feed.behind = True
                    self._read_if_behind(session_id, feed)

    # subscribing

    async def subscribe(self, session_id: str) -> Subscription:
        """Start receiving the session's showings from now on; close the subscription when done.

        A new feed first reads where the session's showings stand (its watermark); everyone who
        joins meanwhile waits for that read, so no subscriber starts from a feed without one.
        """
        feed = self._feeds.get(session_id)
        if feed is None or feed.closed:
            feed = self._feeds[session_id] = Feed()
            feed.ready = asyncio.ensure_future(self._start(session_id, feed))
        feed.subscribers += 1
        subscription = Subscription(session_id, feed)
        # A stream dropped before its generator ever ran never reaches its own `finally`: leave on collection,
        # which may happen on any thread.
        loop = asyncio.get_running_loop()
        subscription._finalizer = weakref.finalize(subscription, self._leave_from_any_thread, session_id, feed, loop)
        try:
            assert feed.ready is not None
            await asyncio.shield(feed.ready)
        except BaseException:
            subscription.close()
            raise
        return subscription

    async def _start(self, session_id: str, feed: Feed) -> None:
        try:
            newest = await self._db.run_read(
                lambda conn: conn.execute(sa.select(sessions.c.last_emit).where(sessions.c.id == session_id)).scalar()
            )
        except BaseException:
            if self._feeds.get(session_id) is feed:
                del self._feeds[session_id]  # the next subscriber starts a new feed
            feed.close()
            raise
        if newest is None:
            self.deleted(session_id)
            return
        feed.watermark = int(newest)
        early, feed.early = feed.early, []
        feed.offer(sorted(early, key=lambda item: item[0]))
        self._read_if_behind(session_id, feed)

    def _leave_from_any_thread(self, session_id: str, feed: Feed, loop: asyncio.AbstractEventLoop) -> None:
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._leave(session_id, feed)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is left to tidy
                loop.call_soon_threadsafe(self._leave, session_id, feed)

    def _leave(self, session_id: str, feed: Feed) -> None:
        feed.subscribers -= 1
        if feed.subscribers == 0 and self._feeds.get(session_id) is feed:
            del self._feeds[session_id]
            if feed.reading is not None:
                feed.reading.cancel()

    def close(self) -> None:
        """Stop every read from the log (the database is about to close)."""
        for feed in self._feeds.values():
            for task in (feed.reading, feed.ready):
                if task is not None:
                    task.cancel()

    # catching up from the log

    def _read_if_behind(self, session_id: str, feed: Feed) -> None:
        if feed.behind and feed.watermark is not None and feed.reading is None and not feed.closed:
            feed.reading = asyncio.create_task(self._read_log(session_id, feed), name=f"feed-{session_id}")

    async def _read_log(self, session_id: str, feed: Feed) -> None:
        try:
            while feed.behind and not feed.closed and feed.watermark is not None:
                feed.behind = False
                watermark = feed.watermark
                try:
                    shown = await self._db.run_read(
                        lambda conn, after=watermark: emissions_after(conn, session_id, after)
                    )
                except Exception:
                    log.exception("reading the log of %s for its streams failed; retrying", session_id)
                    feed.behind = True
                    await asyncio.sleep(1.0)
                    continue
                feed.offer(shown)
                if len(shown) >= CATCH_UP_ROWS:
                    feed.behind = True
        finally:
            feed.reading = None


class Subscription:
    """One subscriber's position in a session feed: ``drain`` what is there; ``listen`` to hear of more."""

    def __init__(self, session_id: str, feed: Feed):
        self._session_id = session_id
        self._feed = feed
        self._position = feed.end
        self._open = True
        self._listener: Callable[[], None] | None = None
        self._preview_listener: Callable[[JSON, bool], None] | None = None
        self._finalizer: weakref.finalize[Any, Any]

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously, on the loop) whenever the feed changes, until closed."""
        if self._open and self._listener is None:
            self._listener = listener
            self._feed.listeners.append(listener)

    def listen_previews(self, listener: Callable[[JSON, bool], None]) -> None:
        """Call ``listener(preview, in_order)`` (synchronously, on the loop) for each live preview, until closed."""
        if self._open and self._preview_listener is None:
            self._preview_listener = listener
            self._feed.preview_listeners.append(listener)

    def drain(self) -> list[Published]:
        """Every showing since the last drain, in order."""
        feed = self._feed
        if self._position < feed.first_position:
            raise FeedOverrun(self._session_id)
        start = self._position - feed.first_position
        count = len(feed.items) - start
        self._position = feed.end
        if count == 1:  # the usual case: one event was shown since the last drain
            return [feed.items[-1]]
        return [feed.items[index] for index in range(start, start + count)]

    @property
    def ended(self) -> bool:
        """True when the session was deleted and every shown event was read."""
        return self._feed.closed and self._position >= self._feed.end

    def close(self) -> None:
        if self._open:
            self._open = False
            if self._listener is not None:
                self._feed.listeners.remove(self._listener)
                self._listener = None
            if self._preview_listener is not None:
                self._feed.preview_listeners.remove(self._preview_listener)
                self._preview_listener = None
            self._finalizer()
