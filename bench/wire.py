"""A lean MQTT 3.1.1 client pool: many connections, one thread, non-blocking sockets.

The tap storm's load generator stands in for N readers that in production are N
separate devices, so whatever it costs on the server's machine is a bench
artefact. paho gives every client its own network thread; twenty of them
fighting over the GIL cost about as much CPU as the server's ingest and delay
the moment an ack's arrival is noted. This module speaks just what the
generator needs, by hand, on `selectors`:

- CONNECT (clean session, a client id each, keepalive with PINGREQ when idle)
  and the CONNACK check;
- SUBSCRIBE and SUBACK (a refused subscription is an error);
- PUBLISH at QoS 0 or 1 with packet ids 1…65535, wrapping, never reusing one
  the broker has not PUBACKed yet;
- PUBACK of our own publishes (who was acknowledged: `on_puback`);
- incoming PUBLISH at QoS 0/1 (`on_message`, stamped with `time.perf_counter()`
  as soon as the read that carried it returned), answered with PUBACK at QoS 1;
- partial reads and writes, TCP_NODELAY.

No QoS 2, no retained-message or will handling, no reconnect: a connection the
broker closes is an error, which is what a benchmark wants.

The packet codec (the functions and `PacketReader`) is pure and has no state
beyond a read buffer; `Pool` owns the sockets.
"""

import contextlib
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

# Control packet types (MQTT 3.1.1, section 2.2.1).
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

MAX_REMAINING_LENGTH: Final = 268_435_455  # four bytes of varint
MAX_PACKET_ID: Final = 65_535
SUBACK_FAILURE: Final = 0x80

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"

READ_SIZE: Final = 65_536

# (packet type, flags of the fixed header, body after the remaining length)
Packet = tuple[int, int, bytes]


class ProtocolError(Exception):
    """The broker sent something this client cannot accept."""


# -- codec --------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """The remaining-length encoding: 7 bits a byte, low first, top bit = more follows."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """(value, offset just after it), or None if `data` ends before the varint does."""
    value = 0
    shift = 0
    for i in range(offset, min(len(data), offset + 4)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if len(data) - offset >= 4:
        raise ProtocolError("malformed remaining length (more than four bytes)")
    return None


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def connect_packet(client_id: str, keepalive: int, *, clean_session: bool = True) -> bytes:
    """CONNECT, protocol level 4 (3.1.1), no will, no credentials."""
    flags = 0x02 if clean_session else 0x00
    body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + _string(client_id)
    return _packet(CONNECT << 4, body)


def subscribe_packet(packet_id: int, topic: str, qos: int) -> bytes:
    """SUBSCRIBE to one topic filter (fixed-header flags 0b0010 as the spec demands)."""
    return _packet(
        SUBSCRIBE << 4 | 0x02, struct.pack("!H", packet_id) + _string(topic) + bytes((qos,))
    )


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    """PUBLISH; a packet id only at QoS > 0."""
    first = PUBLISH << 4 | (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    header = _string(topic)
    if qos:
        if not 1 <= packet_id <= MAX_PACKET_ID:
            raise ValueError(f"QoS {qos} needs a packet id in 1…65535, not {packet_id}")
        header += struct.pack("!H", packet_id)
    return _packet(first, header + payload)


def puback_packet(packet_id: int) -> bytes:
    """PUBACK for an incoming QoS 1 PUBLISH."""
    return b"\x40\x02" + struct.pack("!H", packet_id)


def parse_connack(body: bytes) -> tuple[bool, int]:
    """(session present, return code)."""
    if len(body) != 2:
        raise ProtocolError(f"CONNACK of {len(body)} bytes")
    return bool(body[0] & 0x01), body[1]


def parse_puback(body: bytes) -> int:
    """The packet id a PUBACK acknowledges."""
    if len(body) != 2:
        raise ProtocolError(f"PUBACK of {len(body)} bytes")
    packet_id: int = struct.unpack("!H", body)[0]
    return packet_id


def parse_suback(body: bytes) -> tuple[int, list[int]]:
    """(packet id, one return code per filter: granted QoS or 0x80 = failure)."""
    if len(body) < 3:
        raise ProtocolError(f"SUBACK of {len(body)} bytes")
    return struct.unpack("!H", body[:2])[0], list(body[2:])


@dataclass(frozen=True, slots=True)
class Publish:
    """An incoming PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool


def parse_publish(flags: int, body: bytes) -> Publish:
    """Split a PUBLISH body into topic, packet id (QoS > 0) and payload."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise ProtocolError("PUBLISH too short for its topic length")
    end = 2 + (body[0] << 8 | body[1])
    topic = body[2:end].decode()
    packet_id = 0
    if qos:
        packet_id = body[end] << 8 | body[end + 1]
        end += 2
    if end > len(body):
        raise ProtocolError("PUBLISH shorter than its topic and packet id")
    return Publish(topic, body[end:], qos, packet_id, bool(flags & 0x08), bool(flags & 0x01))


class PacketReader:
    """Reassembles packets from a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole packet yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Add bytes; return every packet now complete, in order."""
        buf = self._buf
        buf += data
        packets: list[Packet] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = decode_varint(buf, pos + 1)
            if length is None:
                break
            remaining, start = length
            end = start + remaining
            if end > size:
                break
            first = buf[pos]
            packets.append((first >> 4, first & 0x0F, bytes(buf[start:end])))
            pos = end
        if pos:
            del buf[:pos]
        return packets


class PacketIds:
    """Packet ids 1…65535 in turn, wrapping, skipping those still in flight."""

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self.in_flight: dict[int, Any] = {}

    def take(self, token: Any) -> int | None:
        """A free id, now in flight with `token`; None if all 65,535 are in flight."""
        if len(self.in_flight) >= MAX_PACKET_ID:
            return None
        packet_id = self._next
        while packet_id in self.in_flight:
            packet_id = packet_id % MAX_PACKET_ID + 1
        self._next = packet_id % MAX_PACKET_ID + 1
        self.in_flight[packet_id] = token
        return packet_id

    def release(self, packet_id: int) -> Any:
        """The token of an id just acknowledged (KeyError if it was not in flight)."""
        return self.in_flight.pop(packet_id)


# -- the pool -------------------------------------------------------------------

# on_message(connection index, topic, payload, perf_counter time of the read)
MessageCallback = Callable[[int, str, bytes, float], None]
# on_puback(connection index, token given to publish)
PubackCallback = Callable[[int, Any], None]


@dataclass(eq=False)
class Connection:
    """One client's socket and protocol state."""

    index: int
    client_id: str
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    reader: PacketReader = field(default_factory=PacketReader)
    ids: PacketIds = field(default_factory=PacketIds)
    connected: bool = False
    subscribing: dict[int, str] = field(default_factory=dict)
    subscribed: list[str] = field(default_factory=list)
    last_sent: float = 0.0
    writing: bool = False  # registered for EVENT_WRITE
    publishes_acked: int = 0
    messages_received: int = 0

    @property
    def in_flight(self) -> int:
        """Our QoS 1 publishes the broker has not PUBACKed yet."""
        return len(self.ids.in_flight)


class Pool:
    """N MQTT connections served by one `selectors` loop in the caller's thread.

    Nothing happens behind the caller's back: bytes go out in `flush()` (or on
    `poll()` when a socket becomes writable again) and come in in `poll()`,
    which dispatches to `on_message` and `on_puback`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_ids: Iterable[str],
        *,
        keepalive: int = 60,
        on_message: MessageCallback | None = None,
        on_puback: PubackCallback | None = None,
        connect_timeout: float = 20.0,
    ) -> None:
        self.keepalive = keepalive
        self.on_message = on_message
        self.on_puback = on_puback
        # select(2), not epoll: epoll_wait rounds its timeout up to whole milliseconds, so
        # a tap due in 0.2 ms would go out up to 1 ms late; select takes microseconds.
        # A benchmark's few dozen sockets are far below FD_SETSIZE.
        self._selector: selectors.BaseSelector = selectors.SelectSelector()
        self._dirty: list[Connection] = []
        self._next_ping_check = 0.0
        self.connections: list[Connection] = []
        try:
            for index, client_id in enumerate(client_ids):
                sock = socket.create_connection((host, port), timeout=connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                conn = Connection(index, client_id, sock)
                self.connections.append(conn)
                self._selector.register(sock, selectors.EVENT_READ, conn)
                self._queue(conn, connect_packet(client_id, keepalive))
            self.flush()
            self._wait(
                lambda: all(c.connected for c in self.connections), connect_timeout, "CONNACK"
            )
        except BaseException:
            self.close(graceful=False)
            raise

    # -- sending --

    def _queue(self, conn: Connection, data: bytes) -> None:
        if not conn.out:
            self._dirty.append(conn)
        conn.out += data

    def subscribe(self, index: int, topic: str, qos: int = 1) -> None:
        """Queue a SUBSCRIBE; `wait_subscribed` waits for its SUBACK."""
        conn = self.connections[index]
        packet_id = conn.ids.take(("subscribe", topic))
        if packet_id is None:
            raise RuntimeError("no free packet id")
        conn.subscribing[packet_id] = topic
        self._queue(conn, subscribe_packet(packet_id, topic, qos))

    def wait_subscribed(self, timeout: float = 20.0) -> None:
        """Send what is queued and wait until every SUBSCRIBE is granted."""
        self.flush()
        self._wait(lambda: not any(c.subscribing for c in self.connections), timeout, "SUBACK")

    def publish(
        self, index: int, topic: str | bytes, payload: bytes, qos: int = 1, token: Any = None
    ) -> bool:
        """Queue a PUBLISH on connection `index` (sent by the next `flush()`).

        At QoS 1 the packet id stays taken until the broker's PUBACK, which calls
        `on_puback(index, token)`. False (nothing queued) if every packet id of
        the connection is in flight.
        """
        conn = self.connections[index]
        if qos == 0:
            self._queue(conn, publish_packet(topic, payload))
            return True
        packet_id = conn.ids.take(token)
        if packet_id is None:
            return False
        self._queue(conn, publish_packet(topic, payload, qos=qos, packet_id=packet_id))
        return True

    def flush(self) -> None:
        """Write what is queued as far as the sockets take it; the rest goes on `poll()`."""
        dirty, self._dirty = self._dirty, []
        now = time.perf_counter()
        for conn in dirty:
            self._write(conn, now)

    def _write(self, conn: Connection, now: float) -> None:
        out = conn.out
        try:
            while out:
                sent = conn.sock.send(out)
                del out[:sent]
                conn.last_sent = now
        except (BlockingIOError, InterruptedError):
            pass
        if out and not conn.writing:
            conn.writing = True
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        elif not out and conn.writing:
            conn.writing = False
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)

    # -- receiving --

    def poll(self, timeout: float | None) -> int:
        """Wait up to `timeout` s for sockets to be ready; read, dispatch, reply. Packets read."""
        count = 0
        for key, events in self._selector.select(timeout):
            conn: Connection = key.data
            if events & selectors.EVENT_READ:
                count += self._read(conn)
            if events & selectors.EVENT_WRITE:
                self._write(conn, time.perf_counter())
        if self._dirty:
            self.flush()  # PUBACKs for what came in
        if self.keepalive:
            self._ping_idle()
        return count

    def _read(self, conn: Connection) -> int:
        count = 0
        while True:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return count
            at = time.perf_counter()
            if not data:
                raise ConnectionError(f"{conn.client_id}: the broker closed the connection")
            packets = conn.reader.feed(data)
            count += len(packets)
            for kind, flags, body in packets:
                self._dispatch(conn, kind, flags, body, at)
            if len(data) < READ_SIZE:
                return count

    def _dispatch(self, conn: Connection, kind: int, flags: int, body: bytes, at: float) -> None:
        if kind == PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 1:
                # Inline parse_publish for the common case: the acks, QoS 1.
                end = 2 + (body[0] << 8 | body[1])
                packet_id = body[end] << 8 | body[end + 1]
                topic, payload = body[2:end].decode(), body[end + 2 :]
                self._queue(conn, puback_packet(packet_id))
            else:
                message = parse_publish(flags, body)
                if message.qos != 0:
                    raise ProtocolError(f"{conn.client_id}: QoS {message.qos} is not supported")
                topic, payload = message.topic, message.payload
            conn.messages_received += 1
            if self.on_message is not None:
                self.on_message(conn.index, topic, payload, at)
        elif kind == PUBACK:
            token = conn.ids.release(parse_puback(body))
            conn.publishes_acked += 1
            if self.on_puback is not None:
                self.on_puback(conn.index, token)
        elif kind == SUBACK:
            packet_id, codes = parse_suback(body)
            conn.ids.release(packet_id)
            topic = conn.subscribing.pop(packet_id)
            if any(code == SUBACK_FAILURE for code in codes):
                raise ProtocolError(f"{conn.client_id}: subscription to {topic} refused")
            conn.subscribed.append(topic)
        elif kind == CONNACK:
            _, code = parse_connack(body)
            if code != 0:
                raise ProtocolError(f"{conn.client_id}: connection refused, return code {code}")
            conn.connected = True
        elif kind != PINGRESP:
            raise ProtocolError(f"{conn.client_id}: unexpected packet type {kind}")

    def _ping_idle(self) -> None:
        now = time.perf_counter()
        if now < self._next_ping_check:
            return
        self._next_ping_check = now + 1.0
        for conn in self.connections:
            if now - conn.last_sent >= self.keepalive / 2:
                self._queue(conn, PINGREQ_PACKET)
        self.flush()

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} from the broker within {timeout:.0f} s")
            self.poll(min(left, 0.5))

    def drain(self, timeout: float, until: Callable[[], bool]) -> bool:
        """Poll until `until()` holds or `timeout` s pass; whether it held."""
        try:
            self._wait(until, timeout, "answer")
        except TimeoutError:
            return False
        return True

    # -- closing --

    def close(self, *, graceful: bool = True) -> None:
        """DISCONNECT (best effort) and close every socket."""
        for conn in self.connections:
            if graceful:
                with contextlib.suppress(OSError):
                    conn.sock.setblocking(True)
                    conn.sock.settimeout(2.0)
                    conn.sock.sendall(bytes(conn.out) + DISCONNECT_PACKET)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
            conn.sock.close()
        self.connections = []
        self._dirty = []
        self._selector.close()
