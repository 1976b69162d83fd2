"""The `pcsc` card source: PC/SC readers through pcscd, spoken to with pyscard's scard layer.

The source waits on SCardGetStatusChange for the chosen reader (and for PC/SC's
reader-list notification), reads each new card once, and yields it. A card that
stays on the reader is one presentation; pcsc-lite's per-reader event counter
(the high 16 bits of the event state) tells a fresh presentation from the same
card even when the lift and the new tap both fell between two of our waits.
Losing pcscd (stopped, restarted) drops the PC/SC context: the source releases
it and establishes a new one with growing pauses.

With `challenge_response` on (or an Authenticator given), each card identified
is then challenged: the source chooses the tap's event id first, since the
strong tier's challenge is that id, and hands it on in the presentation.
"""

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from uuid import UUID, uuid4

from smartcard import scard

from protocol import CardAuth, CardTech
from reader_agent.cardauth import ChallengeResponse
from reader_agent.errors import CardReadError
from reader_agent.sources.apdu import Response, Transmit
from reader_agent.sources.backoff import Backoff
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.sources.identification import identify_card
from reader_agent.sources.options import PcscOptions

log = logging.getLogger(__name__)

# The pseudo reader whose state changes whenever a reader is plugged in or out.
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"

_SUCCESS = scard.SCARD_S_SUCCESS
_STATE_CHANGED: int = scard.SCARD_STATE_CHANGED
_TIMEOUT = scard.SCARD_E_TIMEOUT
_CANCELLED = scard.SCARD_E_CANCELLED
_READER_GONE = frozenset({scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE})

# Codes after which the context is useless: pcscd died or restarted under us.
_CONTEXT_LOST = frozenset(
    {
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_F_COMM_ERROR,
        scard.SCARD_E_INVALID_HANDLE,
        scard.SCARD_F_INTERNAL_ERROR,
        scard.SCARD_E_NO_MEMORY,
    }
)

# Codes that mean the card went away or stopped answering while we spoke to it.
_CARD_GONE = frozenset(
    {
        scard.SCARD_W_REMOVED_CARD,
        scard.SCARD_E_NO_SMARTCARD,
        scard.SCARD_W_UNRESPONSIVE_CARD,
        scard.SCARD_W_UNPOWERED_CARD,
        scard.SCARD_W_RESET_CARD,
        scard.SCARD_E_NOT_TRANSACTED,
        scard.SCARD_E_PROTO_MISMATCH,
    }
)

_GONE_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE

# After pcscd or the reader comes back, pcscd first reports the slot empty and finds
# the card at its next poll; within this window the card last presented, found again,
# is taken to have stayed on the reader.
RECONNECT_SETTLE_SECONDS = 3.0


class Authenticator(Protocol):
    """An extra exchange with an identified card (the strong tier's challenge-response)."""

    def __call__(
        self, transmit: Transmit, tech: CardTech, uid: str, event_id: UUID
    ) -> CardAuth | None:
        """Challenge the card for the tap `event_id`; None when it has nothing to prove."""


class _ContextLost(Exception):
    """pcscd is gone or restarted: the PC/SC context must be established again."""


class _ReaderGone(Exception):
    """The watched reader was unplugged; pick a reader again."""


def _describe(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).rstrip('. ')} (0x{hresult & 0xFFFFFFFF:08X})"


@dataclass
class _ReaderWatch:
    """What the source knows about the reader it watches."""

    name: str
    state: int = scard.SCARD_STATE_UNAWARE
    card_on: bool = False
    handled_events: int | None = None  # event counter of the presentation last handled
    settle_until: float = 0.0  # monotonic time until which a reconnect is settling


class PcscSource(CardSource):
    """Card presentations from a PC/SC reader (contact or contactless) via pcscd."""

    name = "pcsc"

    def __init__(self, options: PcscOptions, *, authenticator: Authenticator | None = None) -> None:
        self._options = options
        self._apdus = options.command_apdus()
        if authenticator is None and options.challenge_response:
            authenticator = ChallengeResponse.from_options(options)
        self._authenticator = authenticator
        self._timeout_ms = max(1, int(options.poll_seconds * 1000))
        self._lock = threading.Lock()
        self._context: Any = None
        self._closed = threading.Event()
        # (reader, uid) of the card last presented and not yet seen leaving: after a
        # reconnect the same card still lying there is not a new tap.
        self._held: tuple[str, str] | None = None
        self._reconnected = False
        self._use_pnp = True  # until the PC/SC stack turns out not to know the pseudo reader

    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        """Yield one CardPresentation per card put on the reader until `stop` is set."""
        backoff = Backoff(0.25, self._options.retry_max_seconds)
        unreachable_since_logged = False
        try:
            while not self._stopping(stop):
                try:
                    self._establish()
                    if unreachable_since_logged:
                        log.info("pcscd is reachable again")
                        unreachable_since_logged = False
                    backoff.reset()
                    yield from self._watch(stop)
                except _ContextLost as exc:
                    self._release()
                    if not unreachable_since_logged:
                        log.warning(
                            "PC/SC service not reachable: %s; retrying (is pcscd installed "
                            "and running? `systemctl status pcscd.socket`)",
                            exc,
                        )
                        unreachable_since_logged = True
                    else:
                        log.debug("PC/SC service still not reachable: %s", exc)
                    stop.wait(backoff.next_delay())
                except Exception:
                    # Never let a surprise from the PC/SC stack end the agent: start over.
                    log.exception("unexpected error in the pcsc source; starting over")
                    self._release()
                    stop.wait(backoff.next_delay())
        finally:
            self._release()

    def close(self) -> None:
        """Stop waiting and release the PC/SC context; safe to call more than once."""
        self._closed.set()
        with self._lock:
            if self._context is not None:
                # SCardCancel is the one call PC/SC allows from another thread: it
                # wakes a blocked SCardGetStatusChange so the loop can end.
                scard.SCardCancel(self._context)

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._closed.is_set()

    def _establish(self) -> None:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != _SUCCESS:
            raise _ContextLost(_describe(hresult))
        with self._lock:
            self._context = context

    def _release(self) -> None:
        with self._lock:
            context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)  # fails harmlessly when pcscd is gone

    def _watch(self, stop: threading.Event) -> Iterator[CardPresentation]:
        watch: _ReaderWatch | None = None
        pnp_state = scard.SCARD_STATE_UNAWARE
        waiting_logged = False
        while not self._stopping(stop):
            if watch is None:
                watch = self._attach()
                if watch is None:
                    if not waiting_logged:
                        wanted = (
                            f" matching {self._options.reader!r}" if self._options.reader else ""
                        )
                        log.warning("no PC/SC reader%s; waiting for one to be plugged in", wanted)
                        waiting_logged = True
                    pnp_state = self._wait_for_readers(pnp_state, stop)
                    continue
                waiting_logged = False
            try:
                states = self._wait_on_reader(watch, pnp_state)
            except _ReaderGone as exc:
                log.warning("PC/SC reader %r went away: %s", watch.name, exc)
                watch = None
                continue
            for name, event, _atr in states:
                if name == PNP_NOTIFICATION:
                    pnp_state = event & ~_STATE_CHANGED
                    continue
                if event & _GONE_STATES:
                    log.warning("PC/SC reader %r was unplugged", watch.name)
                    watch = None
                    break
                presentation = self._on_reader_event(watch, event)
                if presentation is not None:
                    yield presentation

    def _attach(self) -> _ReaderWatch | None:
        reader = self._pick_reader()
        if reader is None:
            return None
        log.info("watching PC/SC reader %r", reader)
        watch = _ReaderWatch(reader)
        if self._reconnected:
            watch.settle_until = time.monotonic() + RECONNECT_SETTLE_SECONDS
        self._reconnected = True  # any later pick of a reader is a reconnect
        return watch

    def _wait_on_reader(self, watch: _ReaderWatch, pnp_state: int) -> list[Any]:
        wanted_states = [(watch.name, watch.state)]
        if self._use_pnp:
            wanted_states.append((PNP_NOTIFICATION, pnp_state))
        hresult, states = scard.SCardGetStatusChange(self._context, self._timeout_ms, wanted_states)
        if hresult in (_TIMEOUT, _CANCELLED):
            return []
        if hresult in _READER_GONE:
            if self._use_pnp and self._pick_reader() == watch.name:
                # Our reader is still there: it is the pseudo reader the stack refuses.
                log.info("PC/SC stack has no reader-list notifications; polling instead")
                self._use_pnp = False
                return []
            raise _ReaderGone(_describe(hresult))
        if hresult != _SUCCESS:
            raise _ContextLost(_describe(hresult))
        return list(states)

    def _pick_reader(self) -> str | None:
        hresult, readers = scard.SCardListReaders(self._context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return None
        if hresult != _SUCCESS:
            raise _ContextLost(_describe(hresult))
        wanted = self._options.reader.lower()
        for reader in readers:
            if wanted in reader.lower():
                return str(reader)
        return None

    def _wait_for_readers(self, pnp_state: int, stop: threading.Event) -> int:
        if not self._use_pnp:
            stop.wait(self._options.poll_seconds)
            return pnp_state
        hresult, states = scard.SCardGetStatusChange(
            self._context, self._timeout_ms, [(PNP_NOTIFICATION, pnp_state)]
        )
        if hresult == _SUCCESS:
            new_state: int = states[0][1]
            return new_state & ~_STATE_CHANGED
        if hresult in (_TIMEOUT, _CANCELLED):
            return pnp_state
        if hresult in _READER_GONE:
            log.info("PC/SC stack has no reader-list notifications; polling instead")
            self._use_pnp = False
            return pnp_state
        raise _ContextLost(_describe(hresult))

    def _on_reader_event(self, watch: _ReaderWatch, event: int) -> CardPresentation | None:
        watch.state = event & ~_STATE_CHANGED
        settling = time.monotonic() < watch.settle_until
        if event & scard.SCARD_STATE_EMPTY:
            if watch.card_on:
                log.debug("card lifted from %r", watch.name)
            watch.card_on = False
            if not settling and self._held is not None and self._held[0] == watch.name:
                self._held = None
            return None
        if not self._is_new_presentation(watch, event):
            return None
        return self._present(watch, settling)

    def _is_new_presentation(self, watch: _ReaderWatch, event: int) -> bool:
        if not event & scard.SCARD_STATE_PRESENT:
            return False
        events = event >> 16
        if watch.card_on and watch.handled_events == events:
            return False  # the same card still lying there (or only our own connect changed state)
        watch.card_on = True
        watch.handled_events = events
        if event & scard.SCARD_STATE_MUTE:
            log.warning("card on %r does not answer (mute card or unknown ATR); no tap", watch.name)
            return False
        return True

    def _present(self, watch: _ReaderWatch, settling: bool) -> CardPresentation | None:
        try:
            presentation = self._read_card(watch.name)
        except CardReadError as exc:
            log.warning("card on %r could not be read: %s; no tap", watch.name, exc)
            return None
        if settling and self._held == (watch.name, presentation.uid):
            log.info(
                "card %s has stayed on %r since before the reconnect; not a new tap",
                presentation.uid,
                watch.name,
            )
            return None
        self._held = (watch.name, presentation.uid)
        return presentation

    def _read_card(self, reader: str) -> CardPresentation:
        hresult, card, protocol = scard.SCardConnect(
            self._context,
            reader,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if hresult != _SUCCESS:
            self._raise_for(hresult, "connect to the card")
        try:
            hresult, _name, _state, _protocol, atr_list = scard.SCardStatus(card)
            if hresult != _SUCCESS:
                self._raise_for(hresult, "read the card's ATR")
            atr = bytes(atr_list)

            def transmit(apdu: bytes) -> Response:
                return self._transmit(card, protocol, apdu)

            identity = identify_card(
                atr, transmit, apdus=self._apdus, id_encoding=self._options.id_encoding
            )
            event_id = uuid4() if self._authenticator is not None else None
            auth = (
                self._authenticator(transmit, identity.tech, identity.uid, event_id)
                if self._authenticator is not None and event_id is not None
                else None
            )
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        log.debug(
            "read %s card %s on %r (%s)", identity.tech, identity.uid, reader, identity.description
        )
        return CardPresentation(
            tech=identity.tech,
            uid=identity.uid,
            source=self.name,
            reader_name=reader,
            atr=atr.hex().upper(),
            auth=auth,
            event_id=event_id,
        )

    def _transmit(self, card: Any, protocol: int, apdu: bytes) -> Response:
        hresult, response = scard.SCardTransmit(card, protocol, list(apdu))
        if hresult != _SUCCESS:
            self._raise_for(hresult, f"send APDU {apdu.hex().upper()}")
        return Response.from_bytes(bytes(response))

    def _raise_for(self, hresult: int, doing: str) -> NoReturn:
        if hresult in _CONTEXT_LOST:
            raise _ContextLost(f"lost pcscd while trying to {doing}: {_describe(hresult)}")
        if hresult in _CARD_GONE:
            raise CardReadError(
                f"card removed or silent while trying to {doing}: {_describe(hresult)}"
            )
        if hresult == scard.SCARD_E_SHARING_VIOLATION:
            raise CardReadError(
                f"another program holds the card exclusively ({_describe(hresult)})"
            )
        raise CardReadError(f"could not {doing}: {_describe(hresult)}")
