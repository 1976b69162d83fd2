"""The reader agent against a real Mosquitto, with a fake server that answers taps with paho."""

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol import (
    AckResult,
    ReaderState,
    Status,
    Tap,
    decode_as,
    encode,
    topics,
)
from reader_agent.agent import Agent, RunOutcome
from reader_agent.config import ReaderSettings, load_settings
from reader_agent.outbox import Outbox
from reader_agent.sources.simulated import SimulatedSource
from reader_agent.transport import MqttTransport, Outgoing
from tests.support.mosquitto import Mosquitto
from tests.support.processes import Process
from tests.unit.reader_agent.fakes import RecordingFeedback, ack_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READER = "door-1"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'condition'}")
        time.sleep(0.02)


class Client:
    """A paho client for the test's side of the broker; collects what it receives."""

    def __init__(self, broker: Mosquitto, client_id: str, subscriptions: list[str]) -> None:
        self._subscriptions = subscriptions
        self._lock = threading.Lock()
        self.received: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0, 1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "test client could not subscribe"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        # Subscribing on every connect keeps the client working across broker restarts.
        client.subscribe([(topic, 1) for topic in self._subscriptions])

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(message)
        self.handle(message)

    def handle(self, message: mqtt.MQTTMessage) -> None:
        """React to a message (nothing by default)."""

    def messages(self, channel: topics.Channel) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.received if m.topic.endswith(f"/{channel}")]

    def statuses(self) -> list[Status]:
        return [decode_as(bytes(m.payload), Status) for m in self.messages("status") if m.payload]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeServer(Client):
    """Receives every reader's taps and, while `answering`, acks each one."""

    def __init__(self, broker: Mosquitto, answering: bool = True) -> None:
        self.answering = answering
        super().__init__(broker, "fake-server", [topics.all_readers("taps")])

    def handle(self, message: mqtt.MQTTMessage) -> None:
        """Answer a tap, as the server does after committing it."""
        if not self.answering:
            return
        tap = decode_as(bytes(message.payload), Tap)
        self.client.publish(topics.acks(tap.reader_id), encode(ack_for(tap)), qos=1)

    def taps(self) -> list[Tap]:
        return [decode_as(bytes(m.payload), Tap) for m in self.messages("taps")]


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(mosquitto)
    yield fake
    fake.close()


def retained_status(broker: Mosquitto, name: str) -> Status:
    """The status a newcomer sees: the retained message on the reader's status topic."""
    watcher = Client(broker, name, [topics.status(READER)])
    try:
        wait_until(lambda: bool(watcher.statuses()), 5, "a retained status")
        message = watcher.messages("status")[0]
        assert message.retain
        return decode_as(bytes(message.payload), Status)
    finally:
        watcher.close()


def reader_settings(broker: Mosquitto, outbox: Path) -> ReaderSettings:
    return load_settings(
        None, id=READER, mqtt_url=broker.url, outbox_path=outbox, clock_synced=True
    )


def in_process_agent(
    settings: ReaderSettings, outbox: Outbox, taps: list[str], feedback: RecordingFeedback
) -> Agent:
    transport = MqttTransport(settings.mqtt, f"rollcall-reader-{settings.id}")
    return Agent(settings, SimulatedSource(taps), feedback, outbox=outbox, transport=transport)


def test_taps_are_published_and_acks_empty_the_outbox(
    mosquitto: Mosquitto, server: FakeServer, tmp_path: Path
) -> None:
    settings = reader_settings(mosquitto, tmp_path / "outbox.sqlite3")
    outbox = Outbox(settings.outbox_file)
    feedback = RecordingFeedback()
    agent = in_process_agent(settings, outbox, ["04A1B2C3", "iso14443b 0123ABCD"], feedback)
    try:
        outcome = agent.run(threading.Event(), exit_when_drained=True, drain_timeout=10)
        assert outcome is RunOutcome.DRAINED
        assert outbox.depth() == 0
    finally:
        outbox.close()
    taps = server.taps()
    assert [t.card.uid for t in taps] == ["04A1B2C3", "0123ABCD"]
    assert [a.event_id for a in feedback.shown] == [t.event_id for t in taps]
    assert {a.result for a in feedback.shown} == {AckResult.ACCEPTED}
    final = retained_status(mosquitto, "watcher")
    assert (final.state, final.outbox_depth, final.boot_id) == (
        ReaderState.OFFLINE,
        0,
        agent.boot_id,
    )


def test_unacked_taps_are_resent_by_the_next_run(
    mosquitto: Mosquitto, server: FakeServer, tmp_path: Path
) -> None:
    settings = reader_settings(mosquitto, tmp_path / "outbox.sqlite3")
    server.answering = False
    outbox = Outbox(settings.outbox_file)
    first = in_process_agent(settings, outbox, ["04A1B2C3", "04A1B2C4"], RecordingFeedback())
    try:
        outcome = first.run(threading.Event(), exit_when_drained=True, drain_timeout=1)
    finally:
        outbox.close()
    assert outcome is RunOutcome.DRAIN_TIMEOUT
    sent = [t.event_id for t in server.taps()]
    assert len(sent) == 2

    server.answering = True
    outbox = Outbox(settings.outbox_file)
    feedback = RecordingFeedback()
    second = in_process_agent(settings, outbox, [], feedback)
    try:
        outcome = second.run(threading.Event(), exit_when_drained=True, drain_timeout=10)
        assert outbox.depth() == 0
    finally:
        outbox.close()
    assert outcome is RunOutcome.DRAINED
    resent = server.taps()[2:]
    assert [t.event_id for t in resent] == sent  # the same taps, oldest first
    assert {t.boot_id for t in resent} == {first.boot_id}
    assert [a.event_id for a in feedback.shown] == sent


def test_agent_started_while_the_broker_is_down_catches_up(
    mosquitto: Mosquitto, server: FakeServer, tmp_path: Path
) -> None:
    mosquitto.stop()
    settings = reader_settings(mosquitto, tmp_path / "outbox.sqlite3")
    outbox = Outbox(settings.outbox_file)
    feedback = RecordingFeedback()
    agent = in_process_agent(settings, outbox, ["04A1B2C3"], feedback)
    threading.Timer(0.5, mosquitto.start).start()
    try:
        outcome = agent.run(threading.Event(), exit_when_drained=True, drain_timeout=15)
    finally:
        outbox.close()
    assert outcome is RunOutcome.DRAINED
    assert [a.result for a in feedback.shown] == [AckResult.ACCEPTED]


def test_transport_turns_nagle_off(mosquitto: Mosquitto, tmp_path: Path) -> None:
    class Handlers:
        def __init__(self) -> None:
            self.connected = threading.Event()

        def on_connected(self) -> None:
            self.connected.set()

        def on_disconnected(self, reason: str) -> None:
            pass

        def on_message(self, topic: str, payload: bytes) -> None:
            pass

    settings = reader_settings(mosquitto, tmp_path / "outbox.sqlite3")
    transport = MqttTransport(settings.mqtt, "nagle-check")
    handlers = Handlers()
    transport.start(handlers, Outgoing(topics.status(READER), b"", retain=True))
    try:
        assert handlers.connected.wait(10)
        assert transport.tcp_nodelay is True
    finally:
        transport.stop()


def start_cli_agent(broker: Mosquitto, tmp_path: Path) -> Process:
    return Process(
        [
            sys.executable,
            "-m",
            "reader_agent",
            "run",
            "--id",
            READER,
            "--mqtt-url",
            broker.url,
            "--outbox",
            str(tmp_path / "outbox.sqlite3"),
            "--debounce",
            "0",
            "--stdin",
        ],
        env={"PYTHONPATH": str(REPO), "ROLLCALL_READER_CLOCK_SYNCED": "true"},
        log_path=tmp_path / "agent.log",
        stdin=True,
    )


def finish(agent: Process) -> int:
    """Stop the agent (SIGTERM) if it still runs, and close our ends of its pipes."""
    code = agent.terminate()
    agent.close_stdin()
    if agent.proc.stdout is not None:
        agent.proc.stdout.close()
    return code


def test_cli_agent_taps_live_survives_a_broker_restart_and_leaves_a_will(
    mosquitto: Mosquitto, server: FakeServer, tmp_path: Path
) -> None:
    watcher = Client(mosquitto, "watcher", [topics.status(READER)])
    agent = start_cli_agent(mosquitto, tmp_path)
    try:
        wait_until(
            lambda: any(s.state is ReaderState.ONLINE for s in watcher.statuses()),
            10,
            "the agent's online status",
        )
        online = retained_status(mosquitto, "newcomer-1")
        assert (online.state, online.source, online.clock_synced) == (
            ReaderState.ONLINE,
            "simulated",
            True,
        )

        agent.write("04A1B2C3\n")
        agent.wait_for(r"^\[queued\] 04A1B2C3 seq=1 event=[0-9a-f-]{36}$", 10)
        agent.wait_for(r"^\[accepted\] 签到成功 \+2 — 张三 \| 支部党员大会$", 10)

        mosquitto.stop()
        agent.write("04A1B2C4\n")
        agent.wait_for(r"^\[queued\] 04A1B2C4 seq=2", 10)  # stored while the broker is down
        mosquitto.start()
        agent.wait_until(lambda: agent.count(r"^\[accepted\]") == 2, 20)
        assert [t.card.uid for t in server.taps()][-1] == "04A1B2C4"

        watcher.received.clear()
        agent.kill()  # SIGKILL: no goodbye, the broker sends the last will
        wait_until(
            lambda: any(s.state is ReaderState.OFFLINE for s in watcher.statuses()),
            10,
            "the last will",
        )
        will = retained_status(mosquitto, "newcomer-2")
        assert will.state is ReaderState.OFFLINE
        assert will.outbox_depth is None  # the will cannot know
        assert will.boot_id == online.boot_id
    finally:
        finish(agent)
        watcher.close()


def test_cli_agent_says_goodbye_on_sigterm(
    mosquitto: Mosquitto, server: FakeServer, tmp_path: Path
) -> None:
    watcher = Client(mosquitto, "watcher", [topics.status(READER)])
    agent = start_cli_agent(mosquitto, tmp_path)
    try:
        wait_until(lambda: bool(watcher.statuses()), 10, "the agent's online status")
        agent.write("04A1B2C3\n")
        agent.wait_for(r"^\[accepted\]", 10)
        assert finish(agent) == 0
        final = retained_status(mosquitto, "newcomer")
        assert (final.state, final.outbox_depth) == (ReaderState.OFFLINE, 0)
    finally:
        finish(agent)
        watcher.close()
