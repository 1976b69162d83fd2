"""Hand-written fakes for the reader agent's ports: clock, transport (broker + server), feedback."""

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from protocol import (
    Ack,
    AckResult,
    CardTech,
    Display,
    MalformedMessage,
    Status,
    Tap,
    decode_as,
    encode,
    topics,
)
from reader_agent.feedback import Feedback
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.transport import Outgoing, Transport, TransportHandlers

START = datetime(2024, 11, 21, 8, 30, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told; wall and monotonic time move together unless stepped."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._monotonic = 1000.0

    def now(self) -> datetime:
        """The fake wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Let time pass."""
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def step_wall(self, seconds: float) -> None:
        """Set the wall clock forward or (negative) back, as NTP might; monotonic time stays."""
        self._now += timedelta(seconds=seconds)


Responder = Callable[[Outgoing], Iterable[tuple[str, bytes]]]


class FakeTransport(Transport):
    """An in-memory broker connection.

    Records every publish; keeps retained messages; delivers messages to the
    publisher's handlers when the test (or a responder playing the server) says.
    Publishing while disconnected loses the message, as a dropped connection can.
    """

    def __init__(
        self,
        *,
        auto_connect: bool = True,
        responder: Responder | None = None,
        retained: dict[str, bytes] | None = None,
    ) -> None:
        self._auto_connect = auto_connect
        self._responder = responder
        self._lock = threading.Lock()
        self._connected = False
        self.handlers: TransportHandlers | None = None
        self.will: Outgoing | None = None
        self.published: list[Outgoing] = []
        self.lost: list[Outgoing] = []
        self.retained: dict[str, bytes] = dict(retained or {})
        self.subscriptions: list[str] = []
        self.stopped = False

    @property
    def connected(self) -> bool:
        """Whether the fake connection is up."""
        return self._connected

    def start(self, handlers: TransportHandlers, will: Outgoing) -> None:
        """Remember the handlers and the will; connect at once if auto_connect."""
        self.handlers = handlers
        self.will = will
        if self._auto_connect:
            self.connect()

    def connect(self) -> None:
        """The broker accepts the connection."""
        self._connected = True
        assert self.handlers is not None
        self.handlers.on_connected()

    def drop(self) -> None:
        """The connection breaks."""
        self._connected = False
        assert self.handlers is not None
        self.handlers.on_disconnected("connection lost (test)")

    def publish(self, message: Outgoing) -> None:
        """Record the message; let the responder answer it."""
        if not self._connected:
            with self._lock:
                self.lost.append(message)
            return
        with self._lock:
            self.published.append(message)
            if message.retain:
                self.retained[message.topic] = message.payload
        if self._responder is not None:
            for topic, payload in self._responder(message):
                self.deliver(topic, payload)

    def subscribe(self, topic: str) -> None:
        """Record the subscription and deliver a retained message on it, as a broker does."""
        self.subscriptions.append(topic)
        if topic in self.retained:
            self.deliver(topic, self.retained[topic])

    def deliver(self, topic: str, payload: bytes) -> None:
        """A message arrives for the agent."""
        assert self.handlers is not None
        self.handlers.on_message(topic, payload)

    def stop(self, final: Outgoing | None = None, timeout: float = 2.0) -> None:
        """Publish the final message if connected, then disconnect."""
        if final is not None and self._connected:
            self.publish(final)
        self._connected = False
        self.stopped = True

    def messages(self, channel: topics.Channel) -> list[Outgoing]:
        """Published messages on one channel, in order."""
        with self._lock:
            return [m for m in self.published if m.topic.endswith(f"/{channel}")]

    def taps(self) -> list[Tap]:
        """Every tap published, in order (resends included)."""
        return [decode_as(m.payload, Tap) for m in self.messages("taps")]

    def statuses(self) -> list[Status]:
        """Every status published, in order."""
        return [decode_as(m.payload, Status) for m in self.messages("status")]


def ack_for(tap: Tap, result: AckResult = AckResult.ACCEPTED, points: int = 2) -> Ack:
    """The ack a server would send for a tap."""
    return Ack(
        event_id=tap.event_id,
        result=result,
        points=points,
        display=Display(title=f"签到成功 +{points}", lines=["张三", "支部党员大会"]),
    )


def acking_server(result: AckResult = AckResult.ACCEPTED) -> Responder:
    """A responder that answers every tap at once with an ack."""

    def respond(message: Outgoing) -> Iterator[tuple[str, bytes]]:
        if not message.topic.endswith("/taps"):
            return
        try:
            tap = decode_as(message.payload, Tap)
        except MalformedMessage:
            return
        yield topics.acks(tap.reader_id), encode(ack_for(tap, result))

    return respond


class RecordingFeedback(Feedback):
    """Remembers what the person would have seen."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.shown: list[Ack] = []

    def card_seen(self, uid: str) -> None:
        """Record the card."""
        self.seen.append(uid)

    def show(self, ack: Ack) -> None:
        """Record the ack."""
        self.shown.append(ack)


class GatedSource(CardSource):
    """Presents the given cards one by one, each only once the test opens the gate."""

    name = "gated"

    def __init__(self, uids: Iterable[str]) -> None:
        self._uids = list(uids)
        self.gate = threading.Semaphore(0)
        self.closed = False

    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        """Yield a presentation each time the gate is released."""
        for uid in self._uids:
            while not self.gate.acquire(timeout=0.05):
                if stop.is_set():
                    return
            yield CardPresentation(tech=CardTech.ISO14443A, uid=uid, source=self.name)

    def close(self) -> None:
        """Record that the agent closed the source."""
        self.closed = True
