"""The publisher: sends outbox taps over a Transport and deletes each one only on its ack.

The outbox is the only record of what is in flight: a tap published within
the last `resend_after` seconds and not yet acked counts against the
`max_inflight` window; one published longer ago is due again. Resending is
safe because the server answers a repeated `event_id` as a duplicate.

Threads: the transport calls `on_connected`, `on_disconnected` and
`on_message` from its own thread; those only queue work and wake the
publisher. Everything else happens in `step`, on the agent's main thread.
"""

import logging
import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Final
from uuid import UUID

from protocol import Ack, Config, MalformedMessage, ReaderState, Status, decode_as, encode, topics
from reader_agent import __version__
from reader_agent.clock import Clock
from reader_agent.outbox import Outbox
from reader_agent.transport import Outgoing, Transport

log = logging.getLogger(__name__)

# Without a wake-up, look for taps whose resend time has come this often.
PUMP_EVERY_SECONDS: Final = 1.0
# A status for a change in outbox depth (other than to or from empty) waits this long.
STATUS_MIN_SPACING_SECONDS: Final = 1.0
# The wall clock may move against the monotonic one by this much before we call it a step.
CLOCK_STEP_TOLERANCE_SECONDS: Final = 2.0


class Publisher:
    """Publishes taps oldest first, handles acks and config, and keeps the status topic current."""

    def __init__(
        self,
        *,
        reader_id: str,
        boot_id: UUID,
        source_name: str,
        outbox: Outbox,
        transport: Transport,
        clock: Clock,
        clock_synced: Callable[[], bool],
        on_ack: Callable[[Ack], None],
        on_config: Callable[[Config], None],
        max_inflight: int = 100,
        resend_after_seconds: float = 20.0,
        status_interval_seconds: float = 30.0,
    ) -> None:
        self._reader_id = reader_id
        self._boot_id = boot_id
        self._source_name = source_name
        self._outbox = outbox
        self._transport = transport
        self._clock = clock
        self._clock_synced = clock_synced
        self._on_ack = on_ack
        self._on_config = on_config
        self._max_inflight = max_inflight
        self._resend_after = timedelta(seconds=resend_after_seconds)
        self._status_interval = status_interval_seconds
        self._taps_topic = topics.taps(reader_id)
        self._acks_topic = topics.acks(reader_id)
        self._config_topic = topics.config(reader_id)
        self._status_topic = topics.status(reader_id)

        self._wake = threading.Event()
        self._incoming: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._connects = 0  # bumped by the transport thread; compared in step()
        self._connects_handled = 0
        self._next_pump = 0.0
        self._next_status = 0.0
        self._last_status_at: float | None = None
        self._last_status_depth: int | None = None
        # Set on every wake-up (a tap stored, an ack arrived): only then can the
        # outbox depth differ from the last status, so idle steps skip the query.
        self._depth_may_differ = False
        self._clock_offset: float | None = None

    # Transport handlers: any thread, quick.

    def on_connected(self) -> None:
        """The broker accepted a connection: step() will subscribe, announce and resend."""
        self._connects += 1
        self._wake.set()

    def on_disconnected(self, reason: str) -> None:
        """The connection dropped; the transport reconnects by itself."""
        self._wake.set()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Queue an incoming ack or config for step()."""
        self._incoming.put((topic, payload))
        self._wake.set()

    # Main thread.

    def wake(self) -> None:
        """Ask step() to run now: a tap was stored, or the agent wants to stop."""
        self._wake.set()

    def start(self) -> None:
        """Start the transport, with the offline status as its last will."""
        # outbox_depth None: the broker sends the will long after it was written.
        will = self._status(ReaderState.OFFLINE, depth=None)
        self._transport.start(self, will)

    def step(self, timeout: float) -> None:
        """Wait up to `timeout` for something to do, then do all that is due."""
        if timeout > 0:
            self._wake.wait(timeout)
        woken = self._wake.is_set()
        self._wake.clear()
        self._depth_may_differ = self._depth_may_differ or woken
        now = self._clock.monotonic()
        self._notice_clock_step(now)
        if self._connects != self._connects_handled:
            self._connects_handled = self._connects
            # Gone again already: the next on_connected brings us back here.
            if self._transport.connected:
                self._announce()
        self._handle_incoming()
        if self._transport.connected and (woken or now >= self._next_pump):
            self._next_pump = now + PUMP_EVERY_SECONDS
            self._pump()
        self._publish_status_if_due(now)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish the offline status (with the outbox depth) and disconnect."""
        final = None
        if self._transport.connected:
            final = self._status(ReaderState.OFFLINE, self._outbox.depth())
        self._transport.stop(final, timeout)

    def _announce(self) -> None:
        """On each (re)connection: subscribe, publish online status, make every tap due."""
        self._transport.subscribe(self._acks_topic)
        self._transport.subscribe(self._config_topic)
        # The broker may have lost what we sent before the connection dropped.
        self._outbox.reset_sent()
        self._publish_status()
        log.info("online; %d taps waiting", self._last_status_depth or 0)

    def _notice_clock_step(self, now: float) -> None:
        """Make every tap due if the wall clock stepped back (its send times are in the future)."""
        offset = self._clock.now().timestamp() - now
        previous, self._clock_offset = self._clock_offset, offset
        if previous is not None and offset < previous - CLOCK_STEP_TOLERANCE_SECONDS:
            log.warning("system clock stepped back %.0f s; resending taps", previous - offset)
            self._outbox.reset_sent()
            self._next_pump = now

    def _handle_incoming(self) -> None:
        while True:
            try:
                topic, payload = self._incoming.get_nowait()
            except queue.Empty:
                return
            if topic == self._acks_topic:
                self._handle_ack(payload)
            elif topic == self._config_topic:
                self._handle_config(payload)
            else:
                log.warning("ignoring a message on unexpected topic %s", topic)

    def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = decode_as(payload, Ack)
        except MalformedMessage as exc:
            log.warning("ignoring a malformed ack: %s", exc)
            return
        if not self._outbox.remove(ack.event_id):
            # An answer to a resent copy of a tap already acked.
            log.debug("ack for tap %s, which is no longer waiting", ack.event_id)
            return
        log.info("ack %s: %s %+d", ack.event_id, ack.result.value, ack.points)
        try:
            self._on_ack(ack)
        except Exception:
            log.exception("showing the ack for %s failed", ack.event_id)

    def _handle_config(self, payload: bytes) -> None:
        if not payload:
            log.info("the server cleared this reader's config; keeping the current one")
            return
        try:
            config = decode_as(payload, Config)
        except MalformedMessage as exc:
            log.warning("ignoring a malformed config: %s", exc)
            return
        try:
            self._on_config(config)
        except Exception:
            log.exception("applying the config failed")

    def _pump(self) -> None:
        """Publish due taps, oldest first, as far as the in-flight window allows."""
        now = self._clock.now()
        cutoff = now - self._resend_after
        room = self._max_inflight - self._outbox.in_flight(sent_since=cutoff)
        if room <= 0:
            return
        due = self._outbox.pending(limit=room, sent_before=cutoff)
        for tap in due:
            if tap.attempts:
                log.info(
                    "resending tap seq=%d event=%s (try %d)",
                    tap.seq,
                    tap.event_id,
                    tap.attempts + 1,
                )
            self._transport.publish(Outgoing(self._taps_topic, tap.payload))
        # Recorded after publishing: the timestamp only schedules a resend, and
        # publishing first keeps this write off the tap's path to the server.
        self._outbox.mark_sent((tap.event_id for tap in due), at=now)

    def _publish_status_if_due(self, now: float) -> None:
        if not self._transport.connected:
            return
        if now >= self._next_status:
            self._publish_status()
            return
        if not self._depth_may_differ:
            return
        depth = self._outbox.depth()
        last = self._last_status_depth
        if last is None or depth == last:
            self._depth_may_differ = False
            return
        emptiness_changed = (depth == 0) != (last == 0)
        big_change = abs(depth - last) >= max(10, last // 10)
        spaced = (
            self._last_status_at is None or now - self._last_status_at >= STATUS_MIN_SPACING_SECONDS
        )
        # To or from empty goes out at once: the server waits for empty outboxes
        # before it decides absences.
        if emptiness_changed or (big_change and spaced):
            self._publish_status(depth)
        # Otherwise the change stays pending and is looked at again next step.

    def _publish_status(self, depth: int | None = None) -> None:
        """Publish the online status; `depth` when the caller has just read it."""
        if depth is None:
            depth = self._outbox.depth()
        self._transport.publish(self._status(ReaderState.ONLINE, depth))
        now = self._clock.monotonic()
        self._depth_may_differ = False
        self._last_status_depth = depth
        self._last_status_at = now
        self._next_status = now + self._status_interval

    def _status(self, state: ReaderState, depth: int | None) -> Outgoing:
        """A retained status message; `depth` None means unknown (and no oldest tap either)."""
        status = Status(
            state=state,
            boot_id=self._boot_id,
            agent_version=__version__,
            source=self._source_name,
            outbox_depth=depth,
            oldest_pending_at=self._outbox.oldest_pending_at() if depth else None,
            clock_synced=self._clock_synced(),
        )
        return Outgoing(self._status_topic, encode(status), retain=True)
