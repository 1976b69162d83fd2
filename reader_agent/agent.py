"""The reader agent: card presentations in, durable taps out, the server's answers shown.

Two threads do the work. The source thread turns each presentation into a
Tap, stores it in the outbox (durably, before anything else happens) and
wakes the publisher. The thread that calls `run` drives the publisher:
publishing, acks, status, and deciding when to stop.
"""

import enum
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from pydantic import ValidationError

from protocol import Ack, CardId, Config, Tap, TapMode, encode
from protocol.signing import sign
from reader_agent.clock import Clock, ClockSyncProbe, OffsetClock, SystemClock
from reader_agent.config import ReaderSettings
from reader_agent.debounce import Debouncer
from reader_agent.errors import CardSourceError, OutboxError
from reader_agent.feedback import Feedback
from reader_agent.outbox import Outbox
from reader_agent.publisher import Publisher
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.transport import Transport

log = logging.getLogger(__name__)

# Longest the run loop sleeps, so a stop event set without a wake-up is seen promptly.
LOOP_SECONDS: Final = 0.2
CLOCK_PROBE_SECONDS: Final = 60.0
SOURCE_JOIN_SECONDS: Final = 2.0


class RunOutcome(enum.Enum):
    """Why `Agent.run` returned."""

    STOPPED = "stopped"  # the stop event was set (SIGTERM, SIGINT)
    DRAINED = "drained"  # exit_when_drained: the source ended and every tap was acked
    DRAIN_TIMEOUT = "drain_timeout"  # the source ended but taps were still waiting
    SOURCE_FAILED = "source_failed"  # the card source failed for good
    OUTBOX_FAILED = "outbox_failed"  # a tap could not be stored or the outbox broke


class Agent:
    """Runs one reader: source thread, debounce, outbox, publisher and feedback."""

    def __init__(
        self,
        settings: ReaderSettings,
        source: CardSource,
        feedback: Feedback,
        *,
        outbox: Outbox,
        transport: Transport,
        clock: Clock | None = None,
        clock_sync: ClockSyncProbe | None = None,
        on_queued: Callable[[Tap], None] | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._feedback = feedback
        self._outbox = outbox
        # A configured offset stages a wrong clock: taps and status times move with it.
        self._clock_offset = timedelta(seconds=settings.clock_offset_seconds)
        base_clock = clock or SystemClock()
        self._clock = (
            OffsetClock(base_clock, self._clock_offset) if self._clock_offset else base_clock
        )
        self._clock_sync = clock_sync or ClockSyncProbe(settings.clock_synced)
        self._on_queued = on_queued
        self._sign_key = settings.sign_key_bytes()
        self._debouncer = Debouncer(settings.debounce_seconds, self._clock.monotonic)
        self._mode = settings.mode
        self.boot_id = uuid.uuid4()
        self._seq = 0
        # Feedback is called from the source thread and the run thread; a buzzer
        # driver or a terminal should not see the two interleave.
        self._feedback_lock = threading.Lock()
        self._source_stop = threading.Event()
        self._source_done = threading.Event()
        self._failure: RunOutcome | None = None
        self._publisher = Publisher(
            reader_id=settings.id,
            boot_id=self.boot_id,
            source_name=source.name,
            outbox=outbox,
            transport=transport,
            clock=self._clock,
            clock_synced=lambda: self._clock_sync.synced,
            on_ack=self._show,
            on_config=self._apply_config,
            max_inflight=settings.max_inflight,
            resend_after_seconds=settings.resend_after_seconds,
            status_interval_seconds=settings.status_interval_seconds,
        )

    def wake(self) -> None:
        """Make `run` look at its stop event now rather than at its next tick."""
        self._publisher.wake()

    @property
    def mode(self) -> TapMode:
        """The mode new taps get: from the settings, then from the server's config."""
        return self._mode

    def run(
        self,
        stop: threading.Event,
        *,
        exit_when_drained: bool = False,
        drain_timeout: float | None = None,
    ) -> RunOutcome:
        """Run the reader until stopped, a fatal failure, or (if asked) drained.

        With `exit_when_drained`, return once the source has ended and every tap
        is acked, waiting at most `drain_timeout` seconds after the source ends.
        Always publishes the offline status and disconnects before returning.
        """
        self._clock_sync.refresh()
        next_probe = self._clock.monotonic() + CLOCK_PROBE_SECONDS
        log.info(
            "reader %s starting: boot %s, source %s, mode %s, outbox %s (%d waiting)",
            self._settings.id,
            self.boot_id,
            self._source.name,
            self._mode.value,
            self._outbox.path,
            self._outbox.depth(),
        )
        self._publisher.start()
        reader = threading.Thread(target=self._read_cards, name="card-source", daemon=True)
        reader.start()
        drain_deadline: float | None = None
        try:
            while True:
                if stop.is_set():
                    return RunOutcome.STOPPED
                if self._failure is not None:
                    return self._failure
                try:
                    self._publisher.step(LOOP_SECONDS)
                except OutboxError:
                    log.exception("the outbox failed")
                    return RunOutcome.OUTBOX_FAILED
                now = self._clock.monotonic()
                if now >= next_probe:
                    self._clock_sync.refresh()
                    next_probe = now + CLOCK_PROBE_SECONDS
                if exit_when_drained and self._source_done.is_set() and self._failure is None:
                    if self._outbox.depth() == 0:
                        log.info("source finished and every tap acked")
                        return RunOutcome.DRAINED
                    if drain_deadline is None and drain_timeout is not None:
                        drain_deadline = now + drain_timeout
                    if drain_deadline is not None and now >= drain_deadline:
                        waiting = self._outbox.depth()
                        log.warning("%d taps still unacked after %.1f s", waiting, drain_timeout)
                        return RunOutcome.DRAIN_TIMEOUT
        finally:
            self._shut_down(reader)

    def _shut_down(self, reader: threading.Thread) -> None:
        self._source_stop.set()
        try:
            self._publisher.stop()
        except Exception:  # the process is ending; say why the goodbye failed, go on
            log.exception("could not announce going offline")
        # A source blocked on hardware or stdin may not notice the stop; it is a
        # daemon thread, so it cannot keep the process alive.
        reader.join(SOURCE_JOIN_SECONDS)
        try:
            self._source.close()
        except Exception:
            log.exception("closing card source %s failed", self._source.name)

    def _read_cards(self) -> None:
        try:
            for presentation in self._source.presentations(self._source_stop):
                if self._source_stop.is_set():
                    break
                self._take(presentation)
        except CardSourceError as exc:
            log.error("card source %s failed: %s", self._source.name, exc)
            self._failure = RunOutcome.SOURCE_FAILED
        except OutboxError:
            log.exception("cannot store a tap")
            self._failure = RunOutcome.OUTBOX_FAILED
        except Exception:
            log.exception("card source %s crashed", self._source.name)
            self._failure = RunOutcome.SOURCE_FAILED
        else:
            log.info("card source %s has no more cards", self._source.name)
        finally:
            self._source_done.set()
            self._publisher.wake()

    def _take(self, presentation: CardPresentation) -> None:
        """Store one presentation as a tap, unless it repeats a recent one."""
        if not self._debouncer.accept(presentation.tech, presentation.uid):
            log.debug("card %s again within the debounce window", presentation.uid)
            return
        try:
            tap = Tap(
                event_id=presentation.event_id or uuid.uuid4(),
                reader_id=self._settings.id,
                boot_id=self.boot_id,
                seq=self._seq + 1,
                card=CardId(tech=presentation.tech, uid=presentation.uid, auth=presentation.auth),
                # Sources stamp presentations with the system clock; shift to ours.
                occurred_at=presentation.seen_at + self._clock_offset,
                clock_synced=self._clock_sync.synced,
                mode=self._mode,
            )
        except ValidationError as exc:
            # One odd card (a UID too long for the protocol) must not stop the reader.
            log.warning("ignoring a card the protocol cannot carry (%s): %s", presentation.uid, exc)
            return
        self._seq = tap.seq
        payload = sign(tap, self._sign_key) if self._sign_key is not None else encode(tap)
        # Durable first: once this returns the tap survives a crash or power loss.
        self._outbox.append(tap, payload, created_at=self._clock.now())
        log.info("tap seq=%d card %s %s stored", tap.seq, tap.card.tech.value, tap.card.uid)
        # Wake the publisher before the feedback so the two proceed in parallel.
        self._publisher.wake()
        with self._feedback_lock:
            try:
                if self._on_queued is not None:
                    self._on_queued(tap)
                self._feedback.card_seen(tap.card.uid)
            except Exception:  # a broken buzzer must not stop taps being stored
                log.exception("feedback for tap seq=%d failed", tap.seq)

    def _show(self, ack: Ack) -> None:
        with self._feedback_lock:
            self._feedback.show(ack)

    def _apply_config(self, config: Config) -> None:
        if config.mode is not self._mode:
            log.info("server set mode %s (was %s)", config.mode.value, self._mode.value)
        self._mode = config.mode
