"""Fixtures for server integration tests: migrated databases, sample data, MQTT test clients.

`database_url`, `postgres_url` and `mosquitto` come from tests/conftest.py.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from server.db.engine import Database, open_database
from server.db.migrate import upgrade
from server.domain.clock import FixedClock
from server.ingest.endpoint import MqttEndpoint
from server.ingest.worker import IngestOptions, IngestWorker
from server.sample import MinimalSeed, TapBuilder, seed_minimal
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    db = open_database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


DEFAULT_NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday


@pytest.fixture
def now(request: pytest.FixtureRequest) -> datetime:
    """The seeded session's start: the test module's NOW if it defines one."""
    value: datetime = getattr(request.module, "NOW", DEFAULT_NOW)
    return value


@pytest.fixture
def seeded(database: Database, now: datetime) -> MinimalSeed:
    """One member with a card, a reader in a room, a session starting at `now`."""
    return seed_minimal(database.write_sessions, now)


@pytest.fixture
def taps(seeded: MinimalSeed) -> TapBuilder:
    """Taps of the seeded card on the seeded reader, at `now` unless told otherwise."""
    return TapBuilder.for_seed(seeded)


Eventually = Callable[..., bool]


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def eventually() -> Eventually:
    """Poll a condition until it is true or a timeout (default 10 s) passes."""
    return _eventually


class MqttProbe:
    """A paho client for tests: publishes, and collects what its subscriptions receive."""

    def __init__(self, host: str, port: int, client_id: str = "", *, clean: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker to confirm."""
        self._subscribed.clear()
        self.client.subscribe(topic_filter, qos)
        if not self._subscribed.wait(5):
            raise TimeoutError(f"no SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until the broker has it (PUBACK for QoS 1)."""
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def next(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        """The next message received, or TimeoutError."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message arrived") from None

    def take(self, n: int, timeout: float = 20.0) -> list[mqtt.MQTTMessage]:
        """The next n messages."""
        deadline = time.monotonic() + timeout
        return [self.next(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes() -> Iterator[Callable[..., MqttProbe]]:
    """Make MqttProbe clients; all are closed after the test."""
    made: list[MqttProbe] = []

    def make(host: str, port: int, client_id: str = "", *, clean: bool = True) -> MqttProbe:
        probe = MqttProbe(host, port, client_id, clean=clean)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


@pytest.fixture
def start_worker(mosquitto: Mosquitto, database: Database) -> Iterator[Callable[..., IngestWorker]]:
    """Start ingest workers on the test broker; all are stopped afterwards."""
    started: list[IngestWorker] = []

    def start(
        client_id: str = "ingest-test", *, kind: type[IngestWorker] = IngestWorker, **options: Any
    ) -> IngestWorker:
        worker = kind(
            MqttEndpoint(mosquitto.host, mosquitto.port),
            database,
            IngestOptions(client_id=client_id, **options),
            clock=FixedClock(DEFAULT_NOW),
        )
        worker.start()
        started.append(worker)
        assert worker.wait_ready(10), "worker did not subscribe"
        return worker

    yield start
    for worker in started:
        worker.stop()
