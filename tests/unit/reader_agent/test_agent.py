"""Agent: presentations become durable, debounced, numbered taps; acks are shown; clean ends."""

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Ack,
    AckResult,
    CardTech,
    Config,
    ReaderState,
    Tap,
    TapMode,
    decode_as,
    encode,
    topics,
)
from protocol.signing import verify
from reader_agent.agent import Agent, RunOutcome
from reader_agent.config import ReaderSettings, load_settings
from reader_agent.errors import CardSourceError
from reader_agent.outbox import Outbox
from reader_agent.sources.base import CardPresentation, CardSource
from reader_agent.sources.simulated import SimulatedSource
from tests.unit.reader_agent.fakes import (
    FakeTransport,
    GatedSource,
    RecordingFeedback,
    acking_server,
)

KEY = "00112233445566778899aabbccddeeff"


def settings(**overrides: Any) -> ReaderSettings:
    return load_settings(None, **{"id": "door-1", "clock_synced": True, **overrides})


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def run_agent(
    agent: Agent, *, drain_timeout: float = 5.0, stop: threading.Event | None = None
) -> RunOutcome:
    return agent.run(stop or threading.Event(), exit_when_drained=True, drain_timeout=drain_timeout)


def test_taps_are_stored_published_acked_and_shown(outbox: Outbox) -> None:
    transport = FakeTransport(responder=acking_server())
    feedback = RecordingFeedback()
    queued: list[Tap] = []
    agent = Agent(
        settings(),
        SimulatedSource(["04A1B2C3", "iso14443b 0123ABCD"]),
        feedback,
        outbox=outbox,
        transport=transport,
        on_queued=queued.append,
    )
    assert run_agent(agent) is RunOutcome.DRAINED

    taps = transport.taps()
    assert taps == queued
    assert [(t.card.tech, t.card.uid) for t in taps] == [
        (CardTech.ISO14443A, "04A1B2C3"),
        (CardTech.ISO14443B, "0123ABCD"),
    ]
    assert [t.seq for t in taps] == [1, 2]
    assert {t.boot_id for t in taps} == {agent.boot_id}
    assert {t.reader_id for t in taps} == {"door-1"}
    assert {t.mode for t in taps} == {TapMode.CHECKIN}
    assert {t.clock_synced for t in taps} == {True}
    assert len({t.event_id for t in taps}) == 2
    assert feedback.seen == ["04A1B2C3", "0123ABCD"]
    assert [a.event_id for a in feedback.shown] == [t.event_id for t in taps]
    assert outbox.depth() == 0
    final = transport.statuses()[-1]
    assert (final.state, final.outbox_depth) == (ReaderState.OFFLINE, 0)
    assert transport.stopped


def test_tap_is_in_the_outbox_before_the_person_gets_feedback(outbox: Outbox) -> None:
    depth_at_feedback: list[int] = []

    class Watching(RecordingFeedback):
        def card_seen(self, uid: str) -> None:
            depth_at_feedback.append(outbox.depth())

    transport = FakeTransport(auto_connect=False)
    agent = Agent(
        settings(), SimulatedSource(["04A1B2C3"]), Watching(), outbox=outbox, transport=transport
    )
    assert run_agent(agent, drain_timeout=0.2) is RunOutcome.DRAIN_TIMEOUT
    assert depth_at_feedback == [1]


def test_tap_time_is_when_the_card_was_seen(outbox: Outbox) -> None:
    seen_at = datetime(2024, 11, 21, 0, 59, 58, 123456, tzinfo=UTC)

    class Source(CardSource):
        name = "fixed"

        def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
            yield CardPresentation(CardTech.FELICA, "0102030405060708", "fixed", seen_at=seen_at)

    transport = FakeTransport(responder=acking_server())
    agent = Agent(settings(), Source(), RecordingFeedback(), outbox=outbox, transport=transport)
    assert run_agent(agent) is RunOutcome.DRAINED
    assert transport.taps()[0].occurred_at == seen_at


def test_a_card_repeated_within_the_debounce_window_is_one_tap(outbox: Outbox) -> None:
    transport = FakeTransport(responder=acking_server())
    source = SimulatedSource(["04A1B2C3", "04A1B2C3", "04A1B2C4", "04A1B2C3"])
    agent = Agent(
        settings(debounce_seconds=60),
        source,
        RecordingFeedback(),
        outbox=outbox,
        transport=transport,
    )
    assert run_agent(agent) is RunOutcome.DRAINED
    assert [t.card.uid for t in transport.taps()] == ["04A1B2C3", "04A1B2C4"]
    assert [t.seq for t in transport.taps()] == [1, 2]


def test_taps_are_signed_when_a_key_is_configured(outbox: Outbox) -> None:
    transport = FakeTransport(responder=acking_server())
    agent = Agent(
        settings(sign_key=KEY),
        SimulatedSource(["04A1B2C3"]),
        RecordingFeedback(),
        outbox=outbox,
        transport=transport,
    )
    assert run_agent(agent) is RunOutcome.DRAINED
    (message,) = transport.messages("taps")
    verify(message.payload, bytes.fromhex(KEY))  # raises if the signature is wrong


def test_without_acks_the_drain_times_out_and_the_taps_stay(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    transport = FakeTransport()  # a broker, but no server answering
    agent = Agent(
        settings(),
        SimulatedSource(["04A1B2C3", "04A1B2C4"]),
        RecordingFeedback(),
        outbox=outbox,
        transport=transport,
    )
    started = time.monotonic()
    assert run_agent(agent, drain_timeout=0.3) is RunOutcome.DRAIN_TIMEOUT
    assert 0.3 <= time.monotonic() - started < 5
    outbox.close()
    reopened = Outbox(path)
    try:
        assert [p.seq for p in reopened.pending(limit=10)] == [1, 2]
    finally:
        reopened.close()
    assert transport.statuses()[-1].outbox_depth == 2


def test_setting_the_stop_event_ends_the_run(outbox: Outbox) -> None:
    transport = FakeTransport()
    source = GatedSource(["04A1B2C3"])  # never opened: the source keeps waiting
    agent = Agent(settings(), source, RecordingFeedback(), outbox=outbox, transport=transport)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert agent.run(stop) is RunOutcome.STOPPED
    assert source.closed
    assert transport.statuses()[-1].state is ReaderState.OFFLINE


def test_server_config_sets_the_mode_of_later_taps(outbox: Outbox) -> None:
    config = Config(mode=TapMode.KIOSK, room="Lobby")
    transport = FakeTransport(
        responder=acking_server(), retained={topics.config("door-1"): encode(config)}
    )
    source = GatedSource(["04A1B2C3"])
    agent = Agent(settings(), source, RecordingFeedback(), outbox=outbox, transport=transport)
    outcome: list[RunOutcome] = []
    runner = threading.Thread(target=lambda: outcome.append(run_agent(agent)))
    runner.start()
    wait_until(lambda: agent.mode is TapMode.KIOSK)
    source.gate.release()
    runner.join(timeout=10)
    assert outcome == [RunOutcome.DRAINED]
    assert [t.mode for t in transport.taps()] == [TapMode.KIOSK]


def test_a_failing_source_ends_the_run(outbox: Outbox) -> None:
    class Broken(CardSource):
        name = "broken"

        def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
            yield CardPresentation(CardTech.ISO14443A, "04A1B2C3", "broken")
            raise CardSourceError("reader on fire")

    transport = FakeTransport()
    agent = Agent(settings(), Broken(), RecordingFeedback(), outbox=outbox, transport=transport)
    assert agent.run(threading.Event()) is RunOutcome.SOURCE_FAILED
    assert outbox.depth() == 1  # what it read before failing is kept


def test_an_outbox_that_breaks_ends_the_run(outbox: Outbox) -> None:
    class Closing(CardSource):
        name = "closing"

        def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
            outbox.close()  # as if the disk went away
            yield CardPresentation(CardTech.ISO14443A, "04A1B2C3", "closing")

    agent = Agent(
        settings(), Closing(), RecordingFeedback(), outbox=outbox, transport=FakeTransport()
    )
    assert agent.run(threading.Event()) is RunOutcome.OUTBOX_FAILED


def test_a_failing_feedback_device_does_not_lose_taps(outbox: Outbox) -> None:
    class Broken(RecordingFeedback):
        def card_seen(self, uid: str) -> None:
            raise RuntimeError("buzzer unplugged")

    transport = FakeTransport(responder=acking_server(AckResult.DUPLICATE))
    feedback = Broken()
    agent = Agent(
        settings(),
        SimulatedSource(["04A1B2C3", "04A1B2C4"]),
        feedback,
        outbox=outbox,
        transport=transport,
    )
    assert run_agent(agent) is RunOutcome.DRAINED
    assert len(transport.taps()) == 2
    assert [a.result for a in feedback.shown] == [AckResult.DUPLICATE] * 2


def test_taps_left_by_an_earlier_run_are_sent_and_their_acks_shown(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    agent = Agent(
        settings(),
        SimulatedSource(["04A1B2C3"]),
        RecordingFeedback(),
        outbox=first,
        transport=FakeTransport(auto_connect=False),
    )
    assert run_agent(agent, drain_timeout=0.1) is RunOutcome.DRAIN_TIMEOUT
    first.close()

    second = Outbox(path)
    transport = FakeTransport(responder=acking_server())
    feedback = RecordingFeedback()
    again = Agent(settings(), SimulatedSource(), feedback, outbox=second, transport=transport)
    try:
        assert run_agent(again) is RunOutcome.DRAINED
    finally:
        second.close()
    (tap,) = transport.taps()
    assert tap.boot_id == agent.boot_id != again.boot_id
    assert [a.event_id for a in feedback.shown] == [tap.event_id]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_ack_display_reaches_the_feedback_unchanged(outbox: Outbox) -> None:
    transport = FakeTransport(responder=acking_server())
    feedback = RecordingFeedback()
    agent = Agent(
        settings(), SimulatedSource(["04A1B2C3"]), feedback, outbox=outbox, transport=transport
    )
    run_agent(agent)
    (ack,) = feedback.shown
    assert isinstance(ack, Ack)
    assert ack.display.title == "签到成功 +2"
    assert decode_as(transport.messages("taps")[0].payload, Tap).event_id == ack.event_id


def test_a_card_the_protocol_cannot_carry_is_skipped(outbox: Outbox) -> None:
    class Odd(CardSource):
        name = "odd"

        def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
            yield CardPresentation(CardTech.ISO7816, "AB" * 40, "odd")  # 40 bytes: too long
            yield CardPresentation(CardTech.ISO14443A, "04A1B2C3", "odd")

    transport = FakeTransport(responder=acking_server())
    agent = Agent(settings(), Odd(), RecordingFeedback(), outbox=outbox, transport=transport)
    assert run_agent(agent) is RunOutcome.DRAINED
    assert [(t.seq, t.card.uid) for t in transport.taps()] == [(1, "04A1B2C3")]
