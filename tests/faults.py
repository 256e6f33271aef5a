"""A TCP proxy that can play a database going away: every connection dropped, new ones refused, then back.

It runs in threads of its own, so it serves a server running in another thread or process.
"""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; :meth:`cut` drops and refuses, :meth:`restore` accepts again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._serve(self._listener)

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        return listener

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self._lock:
            self._open.discard(end)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones (the port stays this proxy's: nothing else listens there)."""
        self._cut = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); a bare close() would not
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            ends = list(self._open)
        for end in ends:
            self._close(end)

    def restore(self) -> None:
        """Accept connections again, on the same port (nothing when it was not cut)."""
        if not self._cut:
            return
        self._cut = False
        self._listener = self._listen(self.port)
        self._serve(self._listener)

    def close(self) -> None:
        self.cut()
