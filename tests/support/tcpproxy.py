"""A TCP proxy on loopback that a test can cut (drop every connection, refuse new ones) and restore.

It stands between a client and a server to stage a network cut: `cut()` closes
every proxied connection on both sides and stops listening, so the client sees
its connection drop and each reconnect refused until `restore()` listens again
on the same port.
"""

import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Self

from tests.support.ports import free_port

_CHUNK = 65536


class TcpProxy:
    """Forwards connections from 127.0.0.1:`port` to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        # Outside the ephemeral range, so the port is still free when restore() listens again.
        self.port = free_port(host)
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0  # accepted so far, for tests that want to see a reconnect

    @property
    def cut_off(self) -> bool:
        """Whether the proxy is cut (not listening)."""
        return self._listener is None

    def start(self) -> None:
        """Listen and forward."""
        self.restore()

    def restore(self) -> None:
        """Listen again after a cut; existing connections were dropped and stay dropped."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            self._listener = listener
        self._spawn(self._accept, listener)

    def cut(self) -> None:
        """Drop every connection and refuse new ones (connection refused) until restore()."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for sock in doomed:
            _close(sock)

    def close(self) -> None:
        """Cut and wait for the forwarding threads to end."""
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
                self.connections += 1
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        # One side ended: end the other, so neither end waits on a half-open pair.
        with self._lock:
            self._sockets.discard(source)
            self._sockets.discard(sink)
        _close(source)
        _close(sink)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
