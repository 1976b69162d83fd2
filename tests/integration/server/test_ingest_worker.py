"""The ingest worker end to end: a real Mosquitto, paho publishers, a real database."""

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from protocol import Ack, AckResult, ReaderState, Status, Tap, decode_as, encode, topics
from protocol.signing import sign
from server.db.engine import Database
from server.db.models import Attendance, LedgerEntry, Reader, TapRecord
from server.domain.clock import FixedClock
from server.errors import StorageError
from server.ingest import worker as worker_module
from server.ingest.endpoint import MqttEndpoint
from server.ingest.worker import IngestOptions, IngestWorker
from server.kiosk.events import decode_batch
from server.kiosk.hub import EventHub
from server.kiosk.relay import EventRelay
from server.sample import MinimalSeed, TapBuilder
from server.services.taps import Outcome, ReceivedTap, Submission

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
ACKS = topics.all_readers("acks")
Probes = Callable[..., Any]
Eventually = Callable[..., bool]
Mosquitto = Any


class Readers:
    """Plays the reader agents: publishes on their topics and listens to every ack."""

    def __init__(self, publisher: Any, listener: Any) -> None:
        self.publisher = publisher
        self.listener = listener

    def send(self, tap: Tap, reader_id: str | None = None, *, wait: bool = True) -> None:
        """Publish a tap on its reader's topic (or another reader's)."""
        self.send_raw(topics.taps(reader_id or tap.reader_id), encode(tap), wait=wait)

    def send_raw(
        self, topic: str, payload: bytes, *, wait: bool = True, retain: bool = False
    ) -> None:
        """Publish any payload."""
        if wait:
            self.publisher.publish(topic, payload, retain=retain)
        else:
            self.publisher.client.publish(topic, payload, qos=1, retain=retain)

    def ack(self, timeout: float = 10.0) -> tuple[str, Ack]:
        """The next ack and the reader it was sent to."""
        message = self.listener.next(timeout)
        reader_id, channel = topics.parse(message.topic)
        assert channel == "acks"
        return reader_id, decode_as(message.payload, Ack)

    def acks(self, n: int) -> list[Ack]:
        """The next n acks."""
        return [self.ack()[1] for _ in range(n)]


@pytest.fixture
def readers(mosquitto: Mosquitto, probes: Probes) -> Readers:
    """Simulated readers on the test broker."""
    listener = probes(mosquitto.host, mosquitto.port, "ack-listener")
    listener.subscribe(ACKS)
    return Readers(probes(mosquitto.host, mosquitto.port, "reader-sim"), listener)


def count(database: Database, model: type[Any], *where: Any) -> int:
    with database.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_taps_are_answered_after_commit(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
    eventually: Eventually,
) -> None:
    worker = start_worker()
    builder = TapBuilder.for_seed(seeded)
    tap = builder.tap()

    readers.send(tap)
    reader_id, ack = readers.ack()
    assert reader_id == seeded.reader_id
    assert (ack.event_id, ack.result, ack.points) == (tap.event_id, AckResult.ACCEPTED, 2)
    assert ack.display.title == "签到成功 +2"
    assert count(database, Attendance) == 1  # committed before the ack went out

    readers.send(tap)
    _, again = readers.ack()
    assert (again.result, again.points, again.display) == (
        AckResult.DUPLICATE,
        2,
        ack.display,
    )

    readers.send(builder.tap())
    _, second = readers.ack()
    assert (second.result, second.display.title) == (AckResult.DUPLICATE, "重复签到")

    assert count(database, LedgerEntry) == 1
    assert worker.counters.get("result_accepted") == 1
    assert worker.counters.get("result_duplicate") == 2
    assert worker.counters.get("acks_published") == 3
    # The broker acknowledged each ack (the worker's own PUBACK handling).
    assert eventually(lambda: worker.unconfirmed_acks == 0)


def test_malformed_payloads_are_stored_and_the_worker_keeps_going(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
    eventually: Eventually,
) -> None:
    worker = start_worker()
    builder = TapBuilder.for_seed(seeded)
    topic = topics.taps(seeded.reader_id)
    named = uuid.uuid4()
    wrong_reader = builder.tap(reader_id="room-2")

    readers.send_raw(topic, b"\x00garbage")
    readers.send_raw(topic, json.dumps({"v": 1, "type": "tap", "event_id": str(named)}).encode())
    readers.send(wrong_reader, seeded.reader_id)
    readers.send_raw("rollcall/v1/readers/bad.id/taps", b"{}")
    good = builder.tap()
    readers.send(good)

    answered = {a.event_id: a for a in readers.acks(3)}
    assert answered[named].result is AckResult.REJECTED
    assert answered[named].detail is not None
    assert answered[named].detail.startswith("malformed tap: ")
    assert answered[wrong_reader.event_id].result is AckResult.REJECTED
    assert "does not match" in (answered[wrong_reader.event_id].detail or "")
    assert answered[good.event_id].result is AckResult.ACCEPTED
    assert eventually(lambda: count(database, TapRecord) == 5)
    with database.sessions() as db:
        rejected = {
            row.raw_payload: row
            for row in db.execute(
                select(TapRecord.reader_id, TapRecord.detail, TapRecord.raw_payload).where(
                    TapRecord.result == "rejected"
                )
            )
        }
    assert len(rejected) == 4
    assert rejected[b"\x00garbage"].reader_id == seeded.reader_id
    assert rejected[b"\x00garbage"].detail.startswith("malformed tap: payload is not")
    assert rejected[b"{}"].reader_id is None
    assert rejected[b"{}"].detail.startswith("foreign topic")
    assert worker.counters.get("malformed") == 4


def test_taps_sent_while_the_worker_is_down_are_answered_when_it_returns(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
) -> None:
    first = start_worker("ingest-persistent")
    first.stop()
    builder = TapBuilder.for_seed(seeded)
    sent = [builder.tap(uid=f"{i:08X}") for i in range(300)] + [builder.tap()]
    for tap in sent:
        readers.send(tap, wait=False)
    readers.send(sent[-1])  # and a redelivery

    second = start_worker("ingest-persistent", batch_size=100)
    answers = readers.acks(len(sent) + 1)

    by_event: dict[uuid.UUID, list[AckResult]] = {}
    for ack in answers:
        by_event.setdefault(ack.event_id, []).append(ack.result)
    assert set(by_event) == {tap.event_id for tap in sent}
    assert by_event[sent[-1].event_id] == [AckResult.ACCEPTED, AckResult.DUPLICATE]
    assert count(database, TapRecord) == len(sent)
    assert count(database, LedgerEntry) == 1
    assert second.counters.get("batched_taps") == len(sent) + 1
    assert 1 < second.counters.snapshot()["batch_size_max"] <= 100


def test_reader_status_is_recorded(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
    eventually: Eventually,
) -> None:
    start_worker()
    status = Status(
        state=ReaderState.ONLINE,
        boot_id=uuid.uuid4(),
        agent_version="0.1.0",
        source="pcsc",
        outbox_depth=3,
        clock_synced=True,
    )

    readers.send_raw(topics.status(seeded.reader_id), encode(status), retain=True)

    def recorded() -> bool:
        with database.sessions() as db:
            reader = db.scalars(select(Reader)).one()
        return reader.state == "online" and reader.outbox_depth == 3

    assert eventually(recorded)
    with database.sessions() as db:
        reader = db.scalars(select(Reader)).one()
    assert (reader.boot_id, reader.card_source, reader.last_status_at) == (
        status.boot_id,
        "pcsc",
        NOW,
    )


def test_shared_subscription_splits_load_without_double_credit(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
) -> None:
    workers = [start_worker(f"ingest-{n}", shared=True) for n in range(2)]
    builder = TapBuilder.for_seed(seeded)
    sent = [builder.tap() for _ in range(60)]  # the same person, 60 times

    for tap in sent:
        readers.send(tap, wait=False)
    answers = readers.acks(len(sent))

    assert sorted(a.event_id for a in answers) == sorted(t.event_id for t in sent)
    assert [a.result for a in answers].count(AckResult.ACCEPTED) == 1
    assert count(database, LedgerEntry) == 1
    assert sum(w.counters.get("received") for w in workers) == len(sent)


class PoisonedWorker(IngestWorker):
    """A worker whose recording blows up on one card, as a bug in the rules might."""

    def _record_taps(self, submissions: Sequence[Submission]) -> list[Outcome]:
        if any(isinstance(s, ReceivedTap) and s.tap.card.uid == "0BADCA7D" for s in submissions):
            raise ZeroDivisionError("a bug")
        return super()._record_taps(submissions)


def test_one_poison_tap_does_not_block_the_others(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
) -> None:
    worker = start_worker("ingest-poison", kind=PoisonedWorker)
    worker.stop()  # let the taps queue up so they arrive in one batch
    builder = TapBuilder.for_seed(seeded)
    poison, good = builder.tap(uid="0BADCA7D"), builder.tap()
    readers.send(poison)
    readers.send(good)

    worker = start_worker("ingest-poison", kind=PoisonedWorker)
    answers = {a.event_id: a for a in readers.acks(2)}

    assert answers[good.event_id].result is AckResult.ACCEPTED
    assert answers[poison.event_id].result is AckResult.REJECTED
    assert "ZeroDivisionError" in (answers[poison.event_id].detail or "")
    assert worker.counters.get("poison") == 1
    assert count(database, TapRecord, TapRecord.result == "rejected") == 1


class FlakyDatabaseWorker(IngestWorker):
    """A worker whose database is unreachable for its first attempts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = 3

    def _record_taps(self, submissions: Sequence[Submission]) -> list[Outcome]:
        if self.failures > 0:
            self.failures -= 1
            cause = OperationalError("INSERT", {}, Exception("connection refused"))
            raise StorageError("database unavailable") from cause
        return super()._record_taps(submissions)


def test_taps_wait_for_the_database_and_are_never_answered_before_commit(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
) -> None:
    worker = start_worker("ingest-flaky", kind=FlakyDatabaseWorker)
    tap = TapBuilder.for_seed(seeded).tap()

    readers.send(tap)
    with pytest.raises(TimeoutError):
        readers.ack(timeout=0.3)  # nothing is committed yet, so nothing is answered
    _, ack = readers.ack()

    assert (ack.event_id, ack.result) == (tap.event_id, AckResult.ACCEPTED)
    assert worker.counters.get("db_errors") >= 1
    assert worker.counters.get("poison") == 0
    assert count(database, TapRecord) == 1


def test_a_signing_readers_tampered_and_replayed_taps_are_refused(
    seeded: MinimalSeed,
    database: Database,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
) -> None:
    key = bytes.fromhex("5a" * 32)
    with database.write_sessions.begin() as db:
        reader = db.scalars(select(Reader).where(Reader.reader_id == seeded.reader_id)).one()
        reader.sign_key = key.hex()
    start_worker()
    topic = topics.taps(seeded.reader_id)
    tap = TapBuilder.for_seed(seeded).tap()
    tampered = json.loads(sign(tap, key))
    tampered["card"]["uid"] = "DEADBEEF"
    replay = tap.model_copy(update={"event_id": uuid.uuid4()})

    answers = []
    for payload in (
        json.dumps(tampered).encode(),
        sign(tap, key),
        sign(replay, key),
        sign(tap, key),
    ):
        readers.send_raw(topic, payload)
        answers.append(readers.ack()[1])

    assert [(a.event_id, a.result) for a in answers] == [
        (tap.event_id, AckResult.REJECTED),
        (tap.event_id, AckResult.ACCEPTED),
        (replay.event_id, AckResult.REJECTED),
        (tap.event_id, AckResult.DUPLICATE),
    ]
    assert answers[0].detail == "bad signature: signature does not match"
    assert answers[2].detail is not None
    assert answers[2].detail.startswith("replay:")
    assert count(database, LedgerEntry) == 1


class _SlowBrokerWorker(IngestWorker):
    """A worker whose broker is behind: PUBACKs of its acks are held until released.

    A slow Mosquitto cannot be had on demand, so this reaches into the same paho 2.x
    internals `_IngestClient` overrides (`_handle_pubackcomp`, `_out_messages`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_pubacks: list[int] = []
        self.releasing = threading.Event()
        client = self._client
        original = client._handle_pubackcomp

        def slow(cmd: Any) -> Any:
            # Under paho's message lock, as release() decides: none is held after it.
            with client._out_message_mutex:
                if not self.releasing.is_set():
                    self.held_pubacks.append(int.from_bytes(client._in_packet["packet"][:2], "big"))
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            return original(cmd)

        client._handle_pubackcomp = slow  # type: ignore[method-assign]

    def release(self) -> None:
        """Let the broker's held PUBACKs through."""
        client = self._client
        with client._out_message_mutex:
            self.releasing.set()
            for mid in self.held_pubacks:
                if mid in client._out_messages:
                    client._do_on_publish(mid, ReasonCode(PacketTypes.PUBACK), None)  # type: ignore[arg-type]


def test_no_tap_is_taken_while_the_broker_is_behind_with_the_acks(
    seeded: MinimalSeed,
    start_worker: Callable[..., IngestWorker],
    readers: Readers,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The seeded reader's config, published on connecting, and three acks.
    monkeypatch.setattr(worker_module, "MAX_UNCONFIRMED_ACKS", 4)
    worker = start_worker(kind=_SlowBrokerWorker)
    assert isinstance(worker, _SlowBrokerWorker)
    assert eventually(lambda: len(worker.held_pubacks) == 1)
    assert worker.counters.get("configs_published") == 1
    builder = TapBuilder.for_seed(seeded)

    for _ in range(3):
        readers.send(builder.tap())
    assert len(readers.acks(3)) == 3
    # The broker acknowledged all four, and the worker has not seen it.
    assert eventually(lambda: len(worker.held_pubacks) == 4)
    assert worker.unconfirmed_acks == 4

    later = [builder.tap() for _ in range(2)]
    for tap in later:
        readers.send(tap)
    with pytest.raises(TimeoutError):
        readers.ack(timeout=1.0)  # waiting for the broker, not answered (and not dropped)
    assert worker.queued == 2
    assert worker.counters.get("paused_for_broker") == 1  # one pause, however many loop turns

    worker.release()
    answered = readers.acks(2)
    assert {a.event_id for a in answered} == {t.event_id for t in later}
    assert worker.counters.get("acks_dropped") == 0


def test_tap_events_go_out_on_the_workers_own_connection(
    seeded: MinimalSeed,
    mosquitto: Mosquitto,
    database: Database,
    readers: Readers,
    probes: Probes,
) -> None:
    # `rollcall ingest`: its relay sends each committed batch's events to the other
    # processes through the worker's connection, with the acks.
    endpoint = MqttEndpoint(mosquitto.host, mosquitto.port)
    relay = EventRelay(endpoint, EventHub(), listen=False)  # never started: not connected
    worker = IngestWorker(
        endpoint,
        database,
        IngestOptions(client_id="ingest-events"),
        clock=FixedClock(NOW),
        on_committed=relay.publish,
    )
    relay.send_through(worker.publish_event)
    other_process = probes(mosquitto.host, mosquitto.port, "serve-process")
    other_process.subscribe(topics.server_events(), qos=0)
    worker.start()
    try:
        assert worker.wait_ready(10)
        tap = TapBuilder.for_seed(seeded).tap()
        readers.send(tap)
        _, ack = readers.ack()
        batch = decode_batch(bytes(other_process.next().payload))
    finally:
        worker.stop()
    assert ack.result is AckResult.ACCEPTED
    assert batch.origin == relay.origin
    assert [(e.event_id, e.member_id, e.is_arrival) for e in batch.events] == [
        (tap.event_id, seeded.member_id, True)
    ]
