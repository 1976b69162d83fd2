"""The ingest worker: MQTT taps in, one transaction per batch, acks out after commit.

Everything happens on paho's network thread: after each burst of packets is
read (everything the socket had, see `_IngestClient`), the messages it brought
are recorded with `record_taps` in one transaction per batch (up to the batch
size), committed, and only then is each ack published and the incoming message
acknowledged to the broker (manual PUBACK). A second thread would only hand the
messages over: measured with bench/tapstorm.py, a worker thread beside paho's
spent as much CPU on the two threads contending for the GIL and paho's locks as
on publishing the acks, and added a hand-over to every tap's latency.

Batches form by themselves: a lone tap is recorded as soon as it is read, and
what arrives while a batch is being recorded waits in the socket and makes the
next one. Recording blocks reading, which is what bounds memory: the broker's
per-client in-flight limit (`max_inflight_messages`, set at or above the batch
size) is all this worker ever holds unanswered. In the other direction, no new
taps are recorded while more than MAX_UNCONFIRMED_ACKS of our acks wait for the
broker's PUBACK: found by the tap storm's 100,000-tap backlog, where the broker
fell behind and paho, out of packet ids, refused (dropped) the acks beyond 65,535.

Acknowledging the broker only after the commit means a message in flight when
the worker dies is delivered again to its persistent session (fixed client id,
clean_session=False) and answered as a duplicate.

Between batches the same thread keeps each registered reader's retained config
topic as the database says (`configsync`), and the taps' transactions all run on
one connection kept between them (`HeldConnection`).

A failed batch is retried one tap at a time, so one poison message cannot
block the others: a tap that fails for a reason other than the database being
unavailable is stored as rejected; taps that fail because the database is
unavailable are held, never acknowledged, and retried with back-off from the
network loop (which goes on answering the broker's keepalives meanwhile); what
arrives in the meantime waits behind them.
"""

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from protocol import MalformedMessage, encode, topics
from server.db.engine import Database
from server.domain.clock import SYSTEM_CLOCK, Clock
from server.errors import StorageError
from server.ingest.configsync import ReaderConfigSync
from server.ingest.counters import IngestCounters
from server.ingest.endpoint import MqttEndpoint
from server.ingest.inbound import reader_status, tap_submission
from server.services.readers import StatusReport, record_statuses
from server.services.reference import ReferenceCache
from server.services.taps import (
    DEFAULT_POLICY,
    Outcome,
    RejectedPayload,
    Submission,
    TapPolicy,
    record_taps,
)
from server.services.unit_of_work import HeldConnection, UnitOfWork

log = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# Acks published and not yet acknowledged by the broker, past which no new taps
# are recorded until it catches up. paho tracks QoS 1 messages by packet id and
# refuses a publish whose id (1-65,535, wrapping) is still unacknowledged: a
# broker slower than the worker (a backlog of 100,000 taps drained on a busy
# 2-core machine) would otherwise see acks dropped.
MAX_UNCONFIRMED_ACKS = 10_000
# Bytes paho reads from the broker's socket at once (it asks for a few at a time).
READ_SIZE = 65536
# Bytes of queued packets joined into one send() (paho sends each packet on its own).
WRITE_SIZE = 65536
# What paho makes for every MQTT 3.1.1 PUBACK, made once (see _handle_pubackcomp).
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
# The command of packets joined for writing: no MQTT packet type, so paho does nothing more.
_JOINED = 0
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class _IngestClient(mqtt.Client):
    """paho's client with cheaper reads and writes for a high message rate.

    paho reads every packet with several small `recv` calls and goes back to
    `select()` after each packet unless it has messages of its own in flight;
    here a read takes up to READ_SIZE bytes at once and `loop_read` goes on
    while any are buffered, so a burst of taps costs one `select()` and a few
    `recv` calls. After each such burst `after_read` runs (the worker records
    what it brought), and after each turn of the loop `after_turn` (retries).
    paho also writes a byte to a socket pair for every packet queued, to wake
    its loop for writing: inside `one_wakeup()` the packets of the thread in it
    are only queued, and leaving it wakes the loop once for the whole batch of
    acks and PUBACKs. Packets queued by any other thread are untouched.

    paho then writes every queued packet with its own `send()`: a batch of 500
    taps meant 1,000 system calls (acks and PUBACKs) here and as many reads in the
    broker. Queued packets that need nothing done once written are joined and
    sent together (`_packet_write`).

    These override paho 2.x methods (`_sock_recv`, `_sock_close`, `loop_read`,
    `loop_misc`, `_handle_pubackcomp`, `_packet_queue`, `_packet_write`) with their
    signatures and behaviour unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called in the network thread after each burst of packets is read, and
        # after each turn of its loop (see IngestWorker: where batches are recorded).
        self.after_read: Callable[[], None] | None = None
        self.after_turn: Callable[[], None] | None = None
        self._read_buffer = b""
        self._read_pos = 0
        self._holder: int | None = None  # the thread inside one_wakeup()
        self._wake_due = False  # it queued packets without waking the network thread

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_pos >= len(self._read_buffer):
            data = super()._sock_recv(READ_SIZE)
            if len(data) <= bufsize:
                return data  # all of it wanted (or b"" at end of stream)
            self._read_buffer, self._read_pos = data, 0
        start = self._read_pos
        self._read_pos = min(start + bufsize, len(self._read_buffer))
        return self._read_buffer[start : self._read_pos]

    def _sock_close(self) -> None:
        # What was buffered belongs to the old connection.
        self._read_buffer, self._read_pos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read packets, and go on while any bytes are buffered (select() cannot see them)."""
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._read_pos < len(self._read_buffer)
        ):
            rc = super().loop_read(max_packets)
        if self.after_read is not None:
            self.after_read()
        return rc

    def loop_misc(self) -> MQTTErrorCode:
        """paho's housekeeping (keepalive), then this client's own (retries)."""
        rc = super().loop_misc()
        if self.after_turn is not None:
            self.after_turn()
        return rc

    @contextmanager
    def one_wakeup(self) -> Iterator[None]:
        """Queue this thread's packets in the block, then write them (or wake the loop) once.

        Inside another such block of the same thread, the outer one writes them.
        """
        if self._holder == threading.get_ident():
            yield
            return
        self._holder = threading.get_ident()
        try:
            yield
        finally:
            self._holder = None
            if self._wake_due:
                self._wake_due = False
                if self._thread is threading.current_thread():
                    # The network thread itself (recording a batch): write now rather
                    # than on the loop's next turn; what the socket does not take yet
                    # stays queued and the loop writes it when it can.
                    self.loop_write()
                elif (wake := self._sockpairW) is not None:
                    # A full socket pair means the network thread is awake anyway.
                    with suppress(BlockingIOError):
                        wake.send(b"0")

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """The broker's PUBACK of one of our acks, without paho's objects per packet.

        paho decodes every PUBACK into a reason code and an (always empty, in MQTT
        3.1.1) properties object: 12 % of the ingest's CPU under load. Same
        bookkeeping, with shared success values; anything else goes to paho.
        """
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol == mqtt.MQTTv5 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        (mid,) = struct.unpack("!H", packet)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> MQTTErrorCode:
        """Join the packets at the head of the queue into one, then let paho write as ever.

        Only packets paho does nothing with once written are joined: not a QoS 0
        PUBLISH (its `on_publish` fires on writing) nor a DISCONNECT. The joined
        packet is written as any other: partly, with the rest kept for the next
        turn. Other threads only append to the queue; only this one takes from it.
        """
        queue = self._out_packet
        if len(queue) < 2:
            return super()._packet_write()
        parts: list[bytes | bytearray] = []
        size = 0
        while queue and size < WRITE_SIZE and _joinable(queue[0]):
            packet = queue.popleft()
            part = packet["packet"]
            if packet["pos"]:
                part = part[packet["pos"] :]
            parts.append(part)
            size += len(part)
        if parts:
            joined = parts[0] if len(parts) == 1 else b"".join(parts)
            queue.appendleft(
                {
                    "command": _JOINED,
                    "mid": 0,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(joined),
                    "packet": joined,
                    "info": None,
                }
            )
        return super()._packet_write()

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if self._holder is None or self._holder != threading.get_ident():
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        self._wake_due = True
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _joinable(packet: Mapping[str, Any]) -> bool:
    """Whether paho does nothing with this queued packet once it is written."""
    kind = int(packet["command"]) & 0xF0
    if kind == mqtt.PUBLISH:
        return bool(packet["qos"])
    return bool(kind != mqtt.DISCONNECT)


@dataclass(frozen=True)
class IngestOptions:
    """How the worker subscribes and batches."""

    client_id: str = "rollcall-ingest"
    shared: bool = False
    batch_size: int = 500
    keepalive: int = 30
    policy: TapPolicy = DEFAULT_POLICY


@dataclass(frozen=True)
class _Inbound:
    """One MQTT message as taken off the network thread."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    generation: int


@dataclass
class _Work:
    """An inbound message with what it became."""

    inbound: _Inbound
    reader_id: str | None = None
    submission: Submission | None = None
    status: StatusReport | None = None


def _is_transient(exc: BaseException) -> bool:
    """Whether a failure is the database being unavailable, rather than this data."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if isinstance(cause, DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, OperationalError | InterfaceError)


class IngestWorker:
    """Subscribes to every reader's taps and status, records them and answers taps."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        database: Database,
        options: IngestOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_committed: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.options = options or IngestOptions()
        # Told of each committed batch's outcomes, after its acks were queued (kiosk, live screen).
        self._on_committed = on_committed
        self.counters = IngestCounters()
        self._database = database
        # The taps' transactions, on one connection kept between batches (network thread).
        self._taps_uow = HeldConnection(database.writer)
        # Readers, sessions and rules kept between batches while unchanged.
        self.reference = ReferenceCache()
        self._clock = clock
        # Received and not yet handled; taps kept while the database is unavailable.
        # Both touched only by the network thread (len() is read by others).
        self._pending: list[_Inbound] = []
        self._held: list[_Work] = []
        self._retry_at = 0.0
        self._retry_delay = FIRST_BACKOFF_SECONDS
        # Recording stopped for the broker's PUBACKs (MAX_UNCONFIRMED_ACKS): counted once a pause.
        self._paused_for_broker = False
        self._started = False
        self._accepting = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._generation = 0
        self._subscribe_mid: int | None = None
        self._unconfirmed_acks = 0
        self._acks_lock = threading.Lock()
        self._client = self._make_client()
        # Each registered reader's retained config topic, kept as the database says.
        self.configs = ReaderConfigSync(database, self._publish_config)

    # ---- lifecycle

    @property
    def connected(self) -> bool:
        """Connected to the broker and subscribed."""
        return self._connected.is_set() and self._subscribed.is_set()

    @property
    def queued(self) -> int:
        """Messages received and not yet answered (taps held for the database included)."""
        return len(self._pending) + len(self._held)

    @property
    def unconfirmed_acks(self) -> int:
        """Acks published and not yet acknowledged by the broker (PUBACK)."""
        with self._acks_lock:
            return self._unconfirmed_acks

    def start(self) -> None:
        """Connect (in the background, retrying) and start paho's network thread."""
        if self._started:
            raise RuntimeError("the ingest worker is already started")
        self._started = True
        self._accepting.set()
        self._client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=self.options.keepalive
        )
        self._client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and subscribed; False on timeout."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, let the acks go out, then disconnect."""
        # New arrivals are left un-acknowledged: the broker keeps them for our session.
        self._accepting.clear()
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while (
            self._pending
            and not self._held
            and self._connected.is_set()
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        if self.queued:
            log.warning("stopping with %d messages unanswered; the broker keeps them", self.queued)
        self._wait_acks_confirmed(max(0.0, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._taps_uow.close()  # the network thread, its only user, has ended
        self._started = False

    def _wait_acks_confirmed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._connected.is_set() and time.monotonic() < deadline:
            with self._acks_lock:
                if self._unconfirmed_acks <= 0:
                    return
            time.sleep(0.01)

    # ---- paho callbacks (network thread: be quick, never raise)

    def _make_client(self) -> _IngestClient:
        client = _IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.options.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        # Our own acks are QoS 1 publishes. No client-side in-flight limit: with
        # one, paho scans every message in flight on each PUBACK it receives
        # (O(n) per ack), and it would not bound memory anyway (over the limit
        # paho queues them in the same table). What bounds our acks in flight
        # is the broker's max_inflight_messages towards us: we answer only the
        # taps it let us hold.
        client.max_inflight_messages = 0
        self.endpoint.configure(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.after_read = self._record_pending
        client.after_turn = self._on_turn
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.endpoint.url, reason_code)
            self.counters.add("connect_refused")
            return
        self._generation += 1
        self.configs.reset()
        self._connected.set()
        self.counters.add("connects")
        log.info(
            "connected to %s as %s (session present: %s)",
            self.endpoint.url,
            self.options.client_id,
            flags.session_present,
        )
        filters = [topics.all_readers("taps"), topics.all_readers("status")]
        if self.options.shared:
            filters = [topics.shared(f) for f in filters]
        result, mid = client.subscribe([(f, topics.QOS) for f in filters])
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._subscribe_mid = mid

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT broker refused our subscriptions: %s", refused)
            self.counters.add("subscribe_refused")
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from %s: %s; reconnecting", self.endpoint.url, reason_code)
            self.counters.add("disconnects")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._accepting.is_set():
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # paho keeps the raw topic bytes; a non-UTF-8 topic is then refused as foreign.
            topic = message._topic.decode("utf-8", "replace")
        self._pending.append(
            _Inbound(
                topic=topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                received_at=self._clock.now(),
                generation=self._generation,
            )
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        with self._acks_lock:
            self._unconfirmed_acks -= 1

    # ---- recording (network thread, after each burst of packets is read)

    def _record_pending(self) -> None:
        """Record what the last reads brought, a batch at a time."""
        if self._held:
            return  # the database is unavailable: wait for the retry
        limit = self.options.batch_size
        while self._pending:
            if self.unconfirmed_acks >= MAX_UNCONFIRMED_ACKS:
                # The broker is behind with our acks: go on reading its PUBACKs first.
                if not self._paused_for_broker:
                    self._paused_for_broker = True
                    self.counters.add("paused_for_broker")
                return
            self._paused_for_broker = False
            batch = self._pending[:limit]
            del self._pending[:limit]
            try:
                self._held = self._handle(batch)
            except Exception:
                # A bug must not end ingest; the messages stay un-acknowledged.
                log.exception("ingest batch of %d messages failed", len(batch))
                self.counters.add("worker_errors")
            if self._held:
                self._schedule_retry()
                return
            self._retry_delay = FIRST_BACKOFF_SECONDS

    def _on_turn(self) -> None:
        """After each turn of the network loop: retry held taps, or go on with pending ones."""
        if self._held:
            self._retry_held()
        elif self._pending:
            self._record_pending()
        if self._subscribed.is_set() and not self._stopping.is_set():
            try:
                self.configs.poll()
            except Exception:
                log.exception("publishing reader configs failed")
                self.counters.add("worker_errors")

    def _publish_config(self, topic: str, payload: bytes) -> bool:
        """Publish one reader's config, retained; False unless it went out now."""
        # Counted first, as acks are: whoever receives it also sees it counted.
        with self._acks_lock:
            self._unconfirmed_acks += 1  # its PUBACK comes back through _on_publish
        self.counters.add("configs_published")
        with self._client.one_wakeup():
            info = self._client.publish(topic, payload, qos=topics.QOS, retain=True)
        if info.rc not in {MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN}:
            # Not queued either: no PUBACK will come.
            log.warning("paho refused the config for %s (%s)", topic, info.rc)
            with self._acks_lock:
                self._unconfirmed_acks -= 1
            self.counters.add("configs_published", -1)
            return False
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _retry_held(self) -> None:
        """Once due, retry the taps the database could not take, then go on with the rest."""
        if not self._held or time.monotonic() < self._retry_at:
            return
        if self._stopping.is_set():
            return  # left un-acknowledged: the broker delivers them again
        try:
            self._held = self._record(self._held)
        except Exception:
            log.exception("retry of %d held taps failed", len(self._held))
            self.counters.add("worker_errors")
        if self._held:
            self._schedule_retry()
            return
        self._retry_delay = FIRST_BACKOFF_SECONDS
        self._record_pending()

    def _schedule_retry(self) -> None:
        log.warning(
            "database unavailable; %d taps kept, retrying in %.1fs",
            len(self._held),
            self._retry_delay,
        )
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, MAX_BACKOFF_SECONDS)

    def _handle(self, batch: Sequence[_Inbound]) -> list[_Work]:
        """Record one batch; return the taps the database could not take."""
        self.counters.add("received", len(batch))
        work = [self._classify(inbound) for inbound in batch]
        for item in work:
            if item.submission is None and item.status is None:
                self._ack_inbound(item.inbound)  # nothing to store
        statuses = [w for w in work if w.status is not None]
        if statuses:
            self._record_statuses(statuses)
        pending = [w for w in work if w.submission is not None]
        return self._record(pending) if pending else []

    def _classify(self, inbound: _Inbound) -> _Work:
        item = _Work(inbound)
        try:
            reader_id, channel = topics.parse(inbound.topic)
        except MalformedMessage as exc:
            self.counters.add("malformed")
            item.submission = RejectedPayload(
                reason=f"foreign topic: {exc}",
                received_at=inbound.received_at,
                raw=inbound.payload,
            )
            return item
        item.reader_id = reader_id
        if channel == "taps":
            item.submission = tap_submission(reader_id, inbound.payload, inbound.received_at)
            if isinstance(item.submission, RejectedPayload):
                self.counters.add("malformed")
        elif channel == "status":
            if not inbound.payload:
                return item  # a cleared retained status: nothing to record
            try:
                item.status = reader_status(reader_id, inbound.payload, inbound.received_at)
            except MalformedMessage as exc:
                log.warning("malformed status from %s: %s", reader_id, exc)
                self.counters.add("malformed_status")
        return item

    def _record_statuses(self, items: list[_Work]) -> None:
        reports = [w.status for w in items if w.status is not None]
        try:
            record_statuses(UnitOfWork(self._database.write_sessions), reports)
            self.counters.add("statuses", len(reports))
        except StorageError as exc:
            # Statuses are retained and repeated by readers; losing one is harmless.
            log.warning("reader statuses not recorded: %s", exc)
            self.counters.add("status_errors")
        with self._client.one_wakeup():
            for item in items:
                self._ack_inbound(item.inbound)

    def _record(self, items: list[_Work]) -> list[_Work]:
        """Record taps, answer the committed ones; return those the database could not take."""
        submissions = [w.submission for w in items if w.submission is not None]
        try:
            outcomes: list[Outcome | None] = list(self._record_taps(submissions))
            self.counters.batch(len(submissions))
        except Exception as exc:
            self.counters.add("db_errors")
            log.warning("batch of %d taps failed (%s); retrying one by one", len(items), exc)
            outcomes = [self._record_one(s) for s in submissions]
        kept: list[_Work] = []
        answered: list[tuple[_Work, Outcome]] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                kept.append(item)
            else:
                answered.append((item, outcome))
        self._answer(answered)
        return kept

    def _record_taps(self, submissions: Sequence[Submission]) -> list[Outcome]:
        return record_taps(
            self._taps_uow,
            submissions,
            self.options.policy,
            self.reference,
        )

    def _record_one(self, submission: Submission) -> Outcome | None:
        """Record one tap; store it as rejected if it is poison; None if the DB is down."""
        try:
            return self._record_taps([submission])[0]
        except Exception as exc:
            if _is_transient(exc):
                return None
            log.exception("tap could not be recorded; storing it as rejected")
            self.counters.add("poison")
            reason = f"server error while recording: {type(exc).__name__}: {exc}"
            rejected = _as_rejected(submission, reason)
        try:
            return self._record_taps([rejected])[0]
        except Exception:
            log.exception("could not even store the rejected tap; it stays unanswered")
            return None

    def _answer(self, answered: Sequence[tuple[_Work, Outcome]]) -> None:
        """Publish the acks of committed taps, then PUBACK their messages."""
        acks = [
            (item.reader_id, ack)
            for item, outcome in answered
            if item.reader_id is not None and (ack := outcome.ack()) is not None
        ]
        payloads = [(topics.acks(reader_id), encode(ack)) for reader_id, ack in acks]
        with self._acks_lock:
            self._unconfirmed_acks += len(acks)
        # Counted before the acks go out: whoever sees an ack also sees it counted.
        self.counters.results(outcome.result for _, outcome in answered)
        self.counters.add_all({"acks_published": len(acks)})
        offline = dropped = 0
        with self._client.one_wakeup():
            for topic, payload in payloads:
                info = self._client.publish(topic, payload, qos=topics.QOS)
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    # paho keeps QoS 1 messages and sends them after reconnecting.
                    offline += 1
                elif info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    dropped += 1  # the reader's outbox resends the tap: answered duplicate
            for item, _ in answered:
                self._ack_inbound(item.inbound)
            if self._on_committed is not None:
                # Its publishes (publish_event) go out in the same write as the acks.
                self._on_committed([outcome for _, outcome in answered])
        if dropped:
            log.error("paho refused %d acks (%s); their readers will resend", dropped, info.rc)
            with self._acks_lock:
                self._unconfirmed_acks -= dropped
        self.counters.add_all({"acks_queued_offline": offline, "acks_dropped": dropped})

    def publish_event(self, topic: str, payload: bytes) -> MQTTErrorCode:
        """Publish a QoS 0 message on the worker's connection (see EventRelay.send_through).

        From `on_committed` it goes out with the batch's acks; from another thread
        it wakes the network thread as any publish does.
        """
        with self._client.one_wakeup():
            return self._client.publish(topic, payload, qos=0).rc

    def _ack_inbound(self, inbound: _Inbound) -> None:
        # A PUBACK on a newer connection would name a packet id the broker reused.
        if inbound.qos > 0 and inbound.generation == self._generation:
            self._client.ack(inbound.mid, inbound.qos)


def _as_rejected(submission: Submission, reason: str) -> RejectedPayload:
    if isinstance(submission, RejectedPayload):
        return replace(submission, reason=reason)
    return RejectedPayload(
        reason=reason,
        received_at=submission.received_at,
        reader_id=submission.tap.reader_id,
        event_id=submission.tap.event_id,
        # Kept as it arrived (signature included) when it came off the wire.
        raw=submission.raw if submission.raw is not None else encode(submission.tap),
    )
