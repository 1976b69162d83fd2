"""Embedded MQTT 3.1.1 broker (amqtt) so one command runs everything on a laptop.

The broker runs in its own thread with its own asyncio loop. We open the
listening socket ourselves and hand each connection to amqtt as an "external"
listener: that way port 0 works (the OS picks a free port and we read it back
from the socket) without reaching into amqtt's internals.

Clients are admitted without credentials from loopback addresses only, and
they are NOT marked anonymous: amqtt drops the persistent session of an
anonymous client, and the ingest worker relies on its persistent session
(clean_session=False) to have taps queued while it is down. Production uses
Mosquitto with per-reader credentials instead (see deploy/).
"""

import asyncio
import ipaddress
import logging
import threading
from types import TracebackType
from typing import Any, Self

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

from server.errors import BrokerError

log = logging.getLogger(__name__)

NOISY_LOGGERS = ("amqtt", "transitions")
LISTENER = "default"


def is_loopback(address: str | None) -> bool:
    """Whether an IP address (v4, v6 or v4-mapped v6) is a loopback address."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt authentication: admit connections from loopback, refuse all others."""

    async def authenticate(self, *, session: Any) -> bool:
        """True for a loopback peer; the broker answers others 'not authorised'."""
        allowed = is_loopback(session.remote_address)
        if not allowed:
            log.warning(
                "embedded broker refused %s: only loopback clients are admitted",
                session.remote_address,
            )
        return allowed


class EmbeddedBroker:
    """An amqtt broker on host:port (port 0: any free port), in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def host(self) -> str:
        """The address the broker listens on."""
        return self._bound[0] if self._bound else self._host

    @property
    def port(self) -> int:
        """The port the broker listens on (the real one once started)."""
        if self._bound is None:
            raise BrokerError("the embedded broker is not running")
        return self._bound[1]

    @property
    def url(self) -> str:
        """mqtt://host:port of the running broker."""
        host = self.host
        shown = f"[{host}]" if ":" in host else host
        return f"mqtt://{shown}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker is accepting connections."""
        return self._bound is not None

    def start(self) -> None:
        """Start the broker thread and wait until it listens; raise BrokerError if it cannot."""
        if self._thread is not None:
            raise BrokerError("the embedded broker is already started")
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="rollcall-broker", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), loop)
        try:
            future.result(self._timeout)
        except Exception as exc:
            future.cancel()
            self._halt_loop()
            raise BrokerError(
                f"embedded MQTT broker cannot listen on {self._host}:{self._port}: {exc}"
            ) from exc
        log.info("embedded MQTT broker listening at %s", self.url)

    def stop(self) -> None:
        """Disconnect every client, close the socket and end the thread."""
        loop = self._loop
        if loop is None:
            return
        if self._bound is not None:
            future = asyncio.run_coroutine_threadsafe(self._stop(), loop)
            try:
                future.result(self._timeout)
            except Exception as exc:
                log.warning("embedded broker did not shut down cleanly: %s", exc)
        self._halt_loop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- inside the broker thread

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Let every task start (one cancelled before starting skips its
            # `finally`), then cancel what is left and let the cancellations and
            # the close callbacks they schedule run before the loop closes.
            loop.run_until_complete(asyncio.sleep(0.01))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0.01))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _start(self) -> None:
        config = {
            "listeners": {LISTENER: {"type": "external"}},
            "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
        }
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        try:
            server = await asyncio.start_server(self._on_client, self._host, self._port)
        except OSError:
            await broker.shutdown()
            self._broker = None
            raise
        self._server = server
        sockname = server.sockets[0].getsockname()
        self._bound = (str(sockname[0]), int(sockname[1]))

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio turns TCP_NODELAY on for stream sockets, so replies are not held back.
        self._writers.add(writer)
        try:
            await self._broker.external_connected(
                StreamReaderAdapter(reader), StreamWriterAdapter(writer), LISTENER
            )
        finally:
            self._writers.discard(writer)
            # amqtt normally closes the stream itself; this covers its error paths.
            if not writer.is_closing():
                writer.close()

    async def _stop(self) -> None:
        server, self._server = self._server, None
        self._bound = None
        if server is not None:
            # On Python 3.11 a connection whose accept is still in flight when the
            # listener closes never gets its socket closed; let those finish first.
            await asyncio.sleep(0.01)
            server.close()
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        await self._close_connections()
        if server is not None:
            await server.wait_closed()

    async def _close_connections(self, timeout: float = 2.0) -> None:
        """Close connections amqtt has not taken over (no CONNECT read yet).

        A connection accepted just before the listener closed may not have
        reached _on_client yet; a task cancelled before it starts never runs its
        `finally`, so its socket would leak. Give such tasks a moment to start.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.sleep(0.01)
            lingering = list(self._writers)
            if not lingering or loop.time() >= deadline:
                return
            for writer in lingering:
                writer.close()
            closing = [asyncio.ensure_future(w.wait_closed()) for w in lingering]
            done, _ = await asyncio.wait(closing, timeout=max(0.0, deadline - loop.time()))
            for future in done:
                if not future.cancelled():
                    future.exception()  # a reset peer is expected here; retrieve it
            self._writers.difference_update(lingering)

    def _halt_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = None
        self._thread = None
        self._bound = None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(self._timeout)
