"""The load generator: N simulated readers as lean paho clients, and the passthrough probe.

Each reader is one paho client publishing protocol `Tap` messages (QoS 1) on
its own taps topic and subscribed to its own acks topic, TCP_NODELAY on. This
is a lean stand-in for the reader agent: no outbox, no card source, so the
generator costs as little CPU as it can on a machine it shares with the server.

Pacing is open loop: tap i is due at t0 + i/rate whatever happened to the taps
before it, and its latency is measured from when it was due, not from when it
was sent, so a stalled server shows up in the latency instead of slowing the
load down (coordinated omission).
"""

import json
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import CardId, CardTech, Tap, encode, topics

PUBLISHER_INFLIGHT = 1000


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(client_id: str) -> mqtt.Client:
    """A paho client with NODELAY and a generous in-flight window."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(PUBLISHER_INFLIGHT)
    client.on_socket_open = _nodelay
    return client


@dataclass(frozen=True)
class PlannedTap:
    """One tap ready to publish."""

    reader: int
    event_id: str
    payload: bytes


def plan_taps(
    reader_ids: tuple[str, ...], uids: tuple[str, ...], start: int, count: int
) -> list[PlannedTap]:
    """Taps number start … start+count-1: tap k is member (k // N) % M on reader k % N.

    With one session per reader, the first N×M taps are each a new (member,
    session) pair and are accepted; later taps repeat a pair and are answered
    duplicate (still a full transaction: tap row, lookups, no ledger row).
    """
    boot_id = uuid.uuid4()
    now = datetime.now(UTC)
    n, m = len(reader_ids), len(uids)
    planned = []
    for k in range(start, start + count):
        reader = k % n
        tap = Tap(
            event_id=uuid.uuid4(),
            reader_id=reader_ids[reader],
            boot_id=boot_id,
            seq=k,
            card=CardId(tech=CardTech.ISO14443A, uid=uids[(k // n) % m]),
            occurred_at=now,
            clock_synced=True,
        )
        planned.append(PlannedTap(reader, str(tap.event_id), encode(tap)))
    return planned


def expected_accepted(readers: int, members: int, start: int, count: int) -> int:
    """How many of taps start … start+count-1 open a new (member, session) pair."""
    return max(0, min(start + count, readers * members) - start)


@dataclass
class PhaseResult:
    """What the generator saw in one phase (times in seconds, perf_counter clock)."""

    sent: int
    due: list[float]
    acked_at: list[float]
    results: Counter[str] = field(default_factory=Counter)
    duplicate_acks: int = 0
    stray_acks: int = 0
    first_due: float = 0.0
    last_sent: float = 0.0
    timed_out: bool = False

    @property
    def acked(self) -> int:
        """Taps answered at least once."""
        return sum(1 for t in self.acked_at if not math.isnan(t))

    def latencies_ms(self) -> list[float]:
        """Due-to-ack latency of every answered tap, in milliseconds."""
        pairs = zip(self.acked_at, self.due, strict=True)
        return [(a - d) * 1000 for a, d in pairs if not math.isnan(a)]


class Readers:
    """N reader clients connected to the broker, each subscribed to its acks."""

    def __init__(self, host: str, port: int, reader_ids: tuple[str, ...]) -> None:
        self.reader_ids = reader_ids
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._acked_at: list[float] = []
        self._results: Counter[str] = Counter()
        self._duplicates = 0
        self._stray = 0
        self._acked = 0
        self._expected = 0
        self._all_acked = threading.Event()
        self._sent = 0
        self.clients: list[mqtt.Client] = []
        self.topics = [topics.taps(r) for r in reader_ids]
        subscribed = threading.Semaphore(0)
        for reader_id in reader_ids:
            client = make_client(f"bench-gen-{reader_id}")
            client.on_message = self._on_message
            client.on_subscribe = lambda *_args: subscribed.release()
            client.user_data_set(reader_id)
            client.on_connect = self._on_connect
            client.connect(host, port, keepalive=60)
            client.loop_start()
            self.clients.append(client)
        for _ in reader_ids:
            if not subscribed.acquire(timeout=20):
                raise RuntimeError("reader clients did not subscribe to their acks")

    @staticmethod
    def _on_connect(client: mqtt.Client, userdata: Any, *_args: Any) -> None:
        client.subscribe(topics.acks(userdata), qos=topics.QOS)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        ack = json.loads(message.payload)
        with self._lock:
            index = self._index.get(ack["event_id"])
            if index is None:
                self._stray += 1
                return
            if not math.isnan(self._acked_at[index]):
                self._duplicates += 1
                return
            self._acked_at[index] = now
            self._results[ack["result"]] += 1
            self._acked += 1
            if self._acked >= self._expected:
                self._all_acked.set()

    @property
    def outstanding(self) -> int:
        """Taps sent in this phase and not answered yet (approximate, lock-free read)."""
        return self._sent - self._acked

    def run(
        self,
        planned: list[PlannedTap],
        rate: float | None,
        window: int = 2000,
        drain_timeout: float = 180.0,
    ) -> PhaseResult:
        """Publish `planned` at `rate` taps/s (None: as fast as a window of `window` allows)."""
        n = len(planned)
        with self._lock:
            self._index = {p.event_id: i for i, p in enumerate(planned)}
            self._acked_at = [math.nan] * n
            self._results = Counter()
            self._duplicates = self._stray = self._acked = 0
            self._expected = n
            self._all_acked.clear()
        self._sent = 0
        due = [0.0] * n
        t0 = time.perf_counter()
        for i, tap in enumerate(planned):
            if rate is not None:
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                due[i] = target
            else:
                while self._sent - self._acked >= window:
                    time.sleep(0.0002)
                due[i] = time.perf_counter()
            self.clients[tap.reader].publish(self.topics[tap.reader], tap.payload, qos=topics.QOS)
            self._sent += 1
        last_sent = time.perf_counter()
        timed_out = not self._all_acked.wait(drain_timeout)
        with self._lock:
            return PhaseResult(
                sent=n,
                due=due,
                acked_at=list(self._acked_at),
                results=Counter(self._results),
                duplicate_acks=self._duplicates,
                stray_acks=self._stray,
                first_due=t0,
                last_sent=last_sent,
                timed_out=timed_out,
            )

    def close(self) -> None:
        """Disconnect every client."""
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def passthrough(host: str, port: int, payload: bytes, count: int) -> dict[str, float]:
    """Raw broker throughput: this process publishes, a child process subscribes (QoS 1)."""
    topic = "bench/passthrough"
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.passthrough", host, str(port), topic, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("passthrough subscriber did not start")
    client = make_client("bench-passthrough-pub")
    client.connect(host, port, keepalive=60)
    client.loop_start()
    start = time.monotonic()
    infos = [client.publish(topic, payload, qos=1) for _ in range(count)]
    for info in infos[-1:]:
        info.wait_for_publish(60)
    published = time.monotonic()
    report = json.loads(child.stdout.readline())
    child.wait(timeout=30)
    client.disconnect()
    client.loop_stop()
    received = report["received"]
    span = report["last"] - report["first"]
    return {
        "messages": count,
        "received": received,
        "publish_seconds": published - start,
        "receive_span_seconds": span,
        "msgs_per_s": received / (report["last"] - start),
        "msgs_per_s_receive_span": received / span if span > 0 else math.inf,
    }
