"""How many event streams one API key holds open on this process (layer 4).

A stream costs the server a connection, a subscription and a little memory for as long as the
client likes; past ``max_streams_per_key`` a key's next stream is a 429 with ``retry-after``.
The count is per process: behind a load balancer each replica counts its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from agenthost.errors import RateLimited

RETRY_SECONDS = 5.0


class StreamLimits:
    """Open streams per key id; :meth:`take` one before a stream starts, and call what it returns when it ends."""

    def __init__(self, per_key: int):
        self.per_key = per_key
        self._open: Counter[str] = Counter()

    def open_streams(self) -> int:
        """How many streams are open on this server, whatever their key."""
        return sum(self._open.values())

    def take(self, key_id: str) -> Callable[[], None]:
        """Count a new stream of ``key_id``; 429 when the key already holds ``per_key``."""
        if self._open[key_id] >= self.per_key:
            raise RateLimited(
                f"this API key already holds {self.per_key} open event streams on this server; close one first",
                retry_after=RETRY_SECONDS,
            )
        self._open[key_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._open[key_id] -= 1
            if self._open[key_id] <= 0:
                del self._open[key_id]

        return release
