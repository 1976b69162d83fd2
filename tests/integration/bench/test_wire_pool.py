"""The load generator's own MQTT client pool (bench.wire) and `Readers` against a real Mosquitto."""

import json
import math
import threading
import time
from typing import Any

import pytest

from bench.load import Readers, plan_taps
from bench.wire import Pool
from protocol import topics
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


def test_pool_publishes_qos1_receives_by_subscription_and_tracks_pubacks(
    mosquitto: Mosquitto,
) -> None:
    received: list[tuple[int, str, bytes, float]] = []
    pubacked: list[tuple[int, Any]] = []
    pool = Pool(
        mosquitto.host,
        mosquitto.port,
        ["wire-pub", "wire-sub"],
        keepalive=5,
        on_message=lambda *message: received.append(message),
        on_puback=lambda index, token: pubacked.append((index, token)),
    )
    try:
        pool.subscribe(1, "bench/wire/#", qos=1)
        pool.wait_subscribed()
        assert pool.connections[1].subscribed == ["bench/wire/#"]
        payloads = [f"message {n}".encode() * (n * 40 + 1) for n in range(5)]  # up to ~8 KiB
        before = time.perf_counter()
        for n, payload in enumerate(payloads):
            assert pool.publish(0, f"bench/wire/{n}", payload, qos=1, token=("tap", n))
        assert pool.publish(0, "bench/wire/zero", b"qos0", qos=0)
        pool.flush()
        assert pool.connections[0].in_flight == 5
        assert pool.drain(10, lambda: len(received) == 6 and len(pubacked) == 5)

        assert sorted(pubacked) == [(0, ("tap", n)) for n in range(5)]
        assert pool.connections[0].in_flight == 0
        assert pool.connections[0].publishes_acked == 5
        assert [(index, topic, payload) for index, topic, payload, _ in received] == [
            *((1, f"bench/wire/{n}", payload) for n, payload in enumerate(payloads)),
            (1, "bench/wire/zero", b"qos0"),
        ]
        assert all(before < at <= time.perf_counter() for *_, at in received)
        # The subscriber PUBACKed what it got at QoS 1: nothing is redelivered.
        pool.poll(0.3)
        assert len(received) == 6
    finally:
        pool.close()


def test_packet_ids_wrap_on_a_live_connection(mosquitto: Mosquitto) -> None:
    pubacked: list[Any] = []
    pool = Pool(
        mosquitto.host,
        mosquitto.port,
        ["wire-wrap"],
        on_puback=lambda index, token: pubacked.append(token),
    )
    try:
        conn = pool.connections[0]
        conn.ids._next = 65_533
        for n in range(6):
            assert pool.publish(0, "bench/wrap", b"x", qos=1, token=n)
        assert sorted(conn.ids.in_flight) == [1, 2, 3, 65_533, 65_534, 65_535]
        pool.flush()
        assert pool.drain(10, lambda: len(pubacked) == 6)
        assert sorted(pubacked) == list(range(6))
    finally:
        pool.close()


def echo_acks(host: str, port: int, stop: threading.Event, hold: threading.Event) -> None:
    """A stand-in ingest: answers every tap on its reader's acks topic (not while `hold`)."""
    pool: Pool
    waiting: list[tuple[str, bytes]] = []

    def on_message(index: int, topic: str, payload: bytes, at: float) -> None:
        reader_id, _ = topics.parse(topic)
        ack = {"event_id": json.loads(payload)["event_id"], "result": "accepted"}
        waiting.append((topics.acks(reader_id), json.dumps(ack).encode()))

    pool = Pool(host, port, ["echo-ingest"], on_message=on_message)
    try:
        pool.subscribe(0, topics.all_readers("taps"), qos=1)
        pool.wait_subscribed()
        while not stop.is_set():
            pool.poll(0.01)
            if not hold.is_set():
                for topic, ack in waiting:
                    pool.publish(0, topic, ack, qos=1)
                waiting.clear()
                pool.flush()
    finally:
        pool.close()


def test_readers_run_phases_against_a_stand_in_ingest(mosquitto: Mosquitto) -> None:
    reader_ids = ("bench-000", "bench-001", "bench-002")
    uids = tuple(f"{n:08X}" for n in range(10))
    stop, hold = threading.Event(), threading.Event()
    echo = threading.Thread(
        target=echo_acks, args=(mosquitto.host, mosquitto.port, stop, hold), daemon=True
    )
    echo.start()
    time.sleep(0.5)  # the echo's subscription
    readers = Readers(mosquitto.host, mosquitto.port, reader_ids)
    try:
        # Open loop at a rate: every tap answered, due times spaced 1/rate apart.
        planned = plan_taps(reader_ids, uids, 0, 60)
        result = readers.run(planned, 200.0, drain_timeout=10)
        assert not result.timed_out
        assert result.acked == result.pubacked == 60
        assert result.results == {"accepted": 60}
        assert result.duplicate_acks == result.stray_acks == 0
        assert result.due[10] - result.due[0] == pytest.approx(10 / 200)
        assert all(latency > 0 for latency in result.latencies_ms())
        assert readers.outstanding == 0

        # Windowed, with the answers held back until the broker has PUBACKed all of them.
        hold.set()
        planned = plan_taps(reader_ids, uids, 60, 300)
        released: list[int] = []

        def release() -> None:
            released.append(readers.pubacked)
            hold.clear()

        result = readers.run(
            planned, None, window=len(planned) + 1, drain_timeout=10, on_all_pubacked=release
        )
        assert released == [300]
        assert not result.timed_out
        assert result.acked == result.pubacked == 300
        assert result.pubacked_unanswered == 0
        assert not any(math.isnan(t) for t in result.acked_at)

        # Never answered: PUBACKed by the broker, so counted as dropped on the way.
        hold.set()
        result = readers.run(plan_taps(reader_ids, uids, 360, 5), 100.0, drain_timeout=0.5)
        assert result.timed_out
        assert (result.acked, result.pubacked, result.pubacked_unanswered) == (0, 5, 5)
    finally:
        readers.close()
        stop.set()
        echo.join(5)
