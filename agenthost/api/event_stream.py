"""The response of ``/events/stream`` (layer 4): frames are written by whoever publishes them.

A subscriber does not wait for each event in a task of its own. When a session's feed is
shown something it calls every stream's :meth:`EventStream.pump` there and then, and the
pump frames what is new (an event is serialised once for all its streams) and hands it to
the ASGI ``send``. With 100 subscribers that spares, per event, a hundred task wake-ups, a
hundred timers and a hundred trips through a generator and Starlette's streaming loop
(docs/benchmarks.md, "Delivery (b) without a task per subscriber").

uvicorn's ``send`` writes to the socket and returns without suspending unless the client has
stopped reading and the buffer is full, so the pump steps ``send`` by hand
(:func:`run_until_suspended`): it nearly always completes in that one step. When it
suspends, a task finishes it and then pumps again; nothing else is written to that stream
meanwhile, so frames keep their order and a slow reader holds up nobody else.

The response's own coroutine only waits for the end (the client left, the session was
deleted, the stream fell behind the feed) and sends a ``ping`` after ``ping_seconds``
without a frame. A write or a framing that fails is raised there, after the fact, so that
uvicorn aborts the connection: the client sees a broken stream, not a finished one, and
resumes with ``Last-Event-ID``.

The first step of each write runs in the publisher's task (an engine run, or the request
that changed the session). That is sound while every ``send`` wrapper only passes messages
on, as the app's pure ASGI middleware does; one that awaits something on every call (a
``BaseHTTPMiddleware``, say) would make every write a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from agenthost.api.sse import PING, error_frame, frame, preview_frame
from agenthost.schemas.common import JSON
from agenthost.store.notify import FeedOverrun, Subscription

log = logging.getLogger("agenthost.stream")
OVERRUN = "this stream fell too far behind; reconnect and list events to catch up"


def run_until_suspended(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` in the caller up to its first suspension: None if it finished there, else a task finishing it.

    Exceptions raised before the first suspension reach the caller.
    """
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.ensure_future(_resume(coro, waiting))
    # Closed whatever becomes of the task, even cancelled before its first step: a no-op once it returned.
    task.add_done_callback(lambda _: coro.close())
    return task


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Go on with a coroutine stepped by hand, as a task would: wait for what it yielded, then step it again."""
    while True:
        if asyncio.isfuture(waiting):
            waiting._asyncio_future_blocking = False
            await asyncio.wait((waiting,))
        elif waiting is None:
            await asyncio.sleep(0)  # a bare yield: give the loop one turn
        else:
            raise RuntimeError(f"a stream write yielded {waiting!r}, not a future")
        try:
            waiting = coro.send(None)
        except StopIteration:
            return


async def _disconnected(receive: Receive) -> None:
    """Return when the client is gone (a failing ``receive`` counts as gone)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        log.debug("reading a stream's request failed; taking the client as gone", exc_info=True)


def _body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


class EventStream(Response):
    """Server-Sent Events for one subscription; ``backlog`` (already framed) goes first. Made on the event loop."""

    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: Subscription,
        backlog: bytes,
        replayed: int,
        ping_seconds: float,
        on_end: Callable[[], None] = lambda: None,
        previews: frozenset[str] = frozenset(),
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._subscription = subscription
        self._backlog = backlog
        # Showings up to this number were seen by the client or are in the backlog: not sent again.
        self._replayed = replayed
        self._ping_seconds = ping_seconds
        self._on_end = on_end
        self._send: Send | None = None  # set once the backlog is out: from then on the feed may pump
        self._writing: asyncio.Task[None] | None = None  # a write that suspended, being finished
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[None] = self._loop.create_future()
        self._failed: BaseException | None = None  # raised by the response, so the connection is aborted
        self._last_write = 0.0
        self._previews = previews  # the event types this client asked to see previews of
        self._previewing: set[str] = set()  # ids whose preview began here and is not closed yet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop, ended = self._loop, self._ended
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if self._backlog:
                await send(_body(self._backlog))
            self._send = send
            self._last_write = loop.time()
            self._subscription.listen(self.pump)
            if self._previews:
                self._subscription.listen_previews(self.preview)
            self.pump()  # what was shown while the backlog went out
            while not ended.done() and not gone.done():
                quiet_until = self._last_write + self._ping_seconds
                if loop.time() < quiet_until:
                    await asyncio.wait((ended, gone), timeout=quiet_until - loop.time(), return_when=FIRST_COMPLETED)
                elif self._writing is None:
                    self._write(PING)
                else:
                    self._last_write = loop.time()  # a write is under way: the stream is not idle
            if self._writing is not None and not gone.done():
                await asyncio.wait((self._writing, gone), return_when=FIRST_COMPLETED)
            if self._failed is not None:
                raise self._failed
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._send = None
            self._subscription.close()
            self._on_end()
            gone.cancel()
            if self._writing is not None:
                self._writing.cancel()

    def pump(self) -> None:
        """Send what the feed holds past this stream's position, now (called by the feed on every change)."""
        if self._send is None or self._writing is not None or self._ended.done():
            return
        chunk: list[bytes] = []
        end = False
        try:
            for item in self._subscription.drain():
                if item.number <= self._replayed:
                    continue  # already in the backlog (the resume raced with a publish)
                if item.encoded is None:
                    item.encoded = frame(item.event)
                chunk.append(item.encoded)
                kind = item.event["type"]
                end = end or kind == "session.deleted"
                if self._previewing:
                    if kind == "span.model_request_end":
                        self._previewing.clear()  # the call is over: whatever it previewed is closed
                    else:
                        self._previewing.discard(item.event["id"])  # the event itself closes its preview
        except FeedOverrun:
            chunk.append(error_frame("api_error", OVERRUN))
            end = True
        except Exception as exc:  # what was drained cannot be sent: the client must resume from its last event
            self._fail(exc)
            return
        if chunk:
            self._write(b"".join(chunk))  # everything ready goes out in one write
        if end or self._subscription.ended:
            self._end()

    def preview(self, preview: JSON, in_order: bool = True) -> None:
        """A live preview (called by the feed): sent now, or dropped when it cannot be sent in order.

        Previews are best effort. A preview that begins while a write is waiting for the client (or
        while the feed catches up, ``in_order`` false) is not shown at all; one that cannot take its
        next piece stops there, so what the client saw of it is a prefix of the event. Either way the
        event itself follows, complete.
        """
        if self._send is None or self._ended.done():
            return
        if preview["type"] == "event_start":
            event_id = preview["event"]["id"]
            if preview["event"]["type"] not in self._previews or self._writing is not None or not in_order:
                return
            self._previewing.add(event_id)
        else:
            event_id = preview["event_id"]
            if event_id not in self._previewing:
                return
            if self._writing is not None or not in_order:
                self._previewing.discard(event_id)
                return
        self._write(preview_frame(preview))

    def _write(self, data: bytes) -> None:
        assert self._send is not None
        self._last_write = self._loop.time()
        try:
            writing = run_until_suspended(self._send(_body(data)))
        except Exception as exc:
            self._fail(exc)
            return
        if writing is not None:
            self._writing = writing
            writing.add_done_callback(self._written)

    def _written(self, writing: asyncio.Task[None]) -> None:
        self._writing = None
        if writing.cancelled():
            self._end()  # only the response's own end cancels a write
        elif (exc := writing.exception()) is not None:
            self._fail(exc)
        else:
            self.pump()  # what was shown while the write waited for the client

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
        self._end()

    def _end(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
