"""The load generator: N simulated readers on one thread, and the passthrough probes.

Each reader is one MQTT connection publishing protocol `Tap` messages (QoS 1) on
its own taps topic and subscribed to its own acks topic, TCP_NODELAY on. This is
a lean stand-in for the reader agent: no outbox, no card source, and no paho:
all N connections are served by one `selectors` loop in the calling thread
(`bench.wire`), so the generator costs as little CPU as it can on a machine it
shares with the server, and an ack's arrival is noted as soon as it is read
rather than when one of N network threads gets the GIL.

Pacing is open loop: tap i is due at t0 + i/rate whatever happened to the taps
before it, and its latency is measured from when it was due, not from when it
was sent, so a stalled server shows up in the latency instead of slowing the
load down (coordinated omission).

Two passthrough probes measure the broker alone (QoS 1, one publisher, the same
paho subscriber in a child process): `passthrough` publishes with paho,
`lean_passthrough` with the generator's own client, so e2e ÷ passthrough can
compare like with like.
"""

import json
import math
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.wire import Connection, Pool
from protocol import CardId, CardTech, Tap, encode, topics

PUBLISHER_INFLIGHT = 1000
BURST = 256  # taps published between two reads of the sockets


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
    pubacked: int = 0  # taps the broker PUBACKed
    pubacked_unanswered: int = 0  # PUBACKed, so the broker had them, but never answered

    @property
    def acked(self) -> int:
        """Taps answered at least once."""
        return sum(1 for t in self.acked_at if not math.isnan(t))

    def latencies_ms(self) -> list[float]:
        """Due-to-ack latency of every answered tap, in milliseconds."""
        pairs = zip(self.acked_at, self.due, strict=True)
        return [(a - d) * 1000 for a, d in pairs if not math.isnan(a)]


class Readers:
    """N simulated readers: one lean MQTT connection each, all on one thread (bench.wire).

    Each connection publishes on its reader's taps topic and is subscribed to its
    acks topic at QoS 1. `run()` is the whole event loop of a phase: it publishes
    what is due, then waits in `select()` until the next tap is due, reading every
    ack as it comes and stamping it with `time.perf_counter()` as soon as the read
    returns. Nothing runs in the background between phases: bytes that arrive then
    wait in the socket until the next `run()`, and the keepalive PINGREQs are sent
    from `run()` too, so more than 1.5 × keepalive s between two phases would let
    the broker drop the connections (the next `run()` then raises ConnectionError).
    """

    def __init__(
        self, host: str, port: int, reader_ids: tuple[str, ...], *, keepalive: int = 60
    ) -> None:
        self.reader_ids = reader_ids
        self._index: dict[str, int] = {}
        self._acked_at: list[float] = []
        self._results: Counter[str] = Counter()
        self._duplicates = 0
        self._stray = 0
        self._acked = 0
        self._sent = 0
        self._pubacked = 0
        self._phase = 0
        self._pubacked_flags: list[bool] = []
        self.topics = [topics.taps(r).encode() for r in reader_ids]
        self.pool = Pool(
            host,
            port,
            [f"bench-gen-{reader_id}" for reader_id in reader_ids],
            keepalive=keepalive,
            on_message=self._on_message,
            on_puback=self._on_puback,
        )
        for index, reader_id in enumerate(reader_ids):
            self.pool.subscribe(index, topics.acks(reader_id), qos=topics.QOS)
        try:
            self.pool.wait_subscribed()
        except BaseException:
            self.pool.close(graceful=False)
            raise

    @property
    def clients(self) -> list[Connection]:
        """The connections, one per reader (their `in_flight` = not PUBACKed yet)."""
        return self.pool.connections

    def _on_message(self, conn: int, topic: str, payload: bytes, at: float) -> None:
        ack = json.loads(payload)
        index = self._index.get(ack["event_id"])
        if index is None:
            self._stray += 1
            return
        if not math.isnan(self._acked_at[index]):
            self._duplicates += 1
            return
        self._acked_at[index] = at
        self._results[ack["result"]] += 1
        self._acked += 1

    def _on_puback(self, conn: int, token: Any) -> None:
        phase, index = token
        if phase == self._phase:
            self._pubacked_flags[index] = True
            self._pubacked += 1

    @property
    def outstanding(self) -> int:
        """Taps sent in this phase and not answered yet (safe to read from another thread)."""
        return self._sent - self._acked

    @property
    def pubacked(self) -> int:
        """Taps of this phase the broker has PUBACKed (it holds them)."""
        return self._pubacked

    def run(
        self,
        planned: list[PlannedTap],
        rate: float | None,
        window: int = 2000,
        drain_timeout: float = 180.0,
        on_all_pubacked: Callable[[], None] | None = None,
    ) -> PhaseResult:
        """Publish `planned` at `rate` taps/s (None: as fast as a window of `window` allows).

        Open loop at a rate: tap i is due at t0 + i/rate and its latency counts
        from then. Returns once every tap is answered, or `drain_timeout` s after
        the last one went out. `on_all_pubacked` is called (once, from this loop)
        as soon as the broker has PUBACKed every tap of the phase.
        """
        n = len(planned)
        self._phase += 1
        self._index = {p.event_id: i for i, p in enumerate(planned)}
        self._acked_at = [math.nan] * n
        self._pubacked_flags = [False] * n
        self._results = Counter()
        self._duplicates = self._stray = self._acked = self._sent = self._pubacked = 0
        pool, phase, tap_topics = self.pool, self._phase, self.topics
        due = [0.0] * n
        i = 0
        last_sent = math.nan
        timed_out = False
        pubacked_called = on_all_pubacked is None
        t0 = time.perf_counter()
        while True:
            blocked = False
            if i < n:
                # Publish what is due, at most BURST at a time so that acks are read promptly.
                now = time.perf_counter()
                if rate is not None:
                    stop = min(n, i + BURST, math.floor((now - t0) * rate) + 1)
                else:
                    stop = min(n, i + BURST, i + window - (self._sent - self._acked))
                while i < stop:
                    tap = planned[i]
                    if not pool.publish(
                        tap.reader, tap_topics[tap.reader], tap.payload, 1, (phase, i)
                    ):
                        blocked = True  # every packet id of this reader in flight
                        break
                    due[i] = t0 + i / rate if rate is not None else time.perf_counter()
                    i += 1
                    self._sent = i
                pool.flush()
            if i == n and math.isnan(last_sent):
                last_sent = time.perf_counter()
            if not pubacked_called and self._pubacked >= n:
                pubacked_called = True
                assert on_all_pubacked is not None
                on_all_pubacked()
            now = time.perf_counter()
            if i == n:
                if self._acked >= n and pubacked_called:
                    break
                if now - last_sent > drain_timeout:
                    timed_out = True
                    break
                timeout = min(1.0, last_sent + drain_timeout - now)
            elif blocked:
                timeout = 0.05  # until a PUBACK frees a packet id (select wakes on it)
            elif rate is not None:
                timeout = max(0.0, t0 + i / rate - now)  # until the next tap is due
            elif self._sent - self._acked >= window:
                timeout = 1.0  # window full: until an ack comes (select wakes on it)
            else:
                timeout = 0.0  # burst cap reached: read what came, then go on publishing
            pool.poll(timeout)
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
            pubacked=self._pubacked,
            pubacked_unanswered=sum(
                1
                for flag, at in zip(self._pubacked_flags, self._acked_at, strict=True)
                if flag and math.isnan(at)
            ),
        )

    def close(self) -> None:
        """DISCONNECT every connection."""
        self.pool.close()


PASSTHROUGH_TOPIC = "bench/passthrough"


@contextmanager
def _subscriber(host: str, port: int, count: int) -> Iterator[subprocess.Popen[str]]:
    """The paho subscriber child (bench.passthrough), subscribed and counting."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.passthrough", host, str(port), PASSTHROUGH_TOPIC, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("passthrough subscriber did not start")
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _report(
    child: subprocess.Popen[str], count: int, start: float, published: float
) -> dict[str, float]:
    assert child.stdout is not None
    report = json.loads(child.stdout.readline())
    child.wait(timeout=30)
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


def passthrough(host: str, port: int, payload: bytes, count: int) -> dict[str, float]:
    """Raw broker throughput: a paho publisher here, the paho subscriber child (QoS 1)."""
    with _subscriber(host, port, count) as child:
        client = make_client("bench-passthrough-pub")
        client.connect(host, port, keepalive=60)
        client.loop_start()
        start = time.monotonic()
        infos = [client.publish(PASSTHROUGH_TOPIC, payload, qos=1) for _ in range(count)]
        for info in infos[-1:]:
            info.wait_for_publish(60)
        published = time.monotonic()
        result = _report(child, count, start, published)
        client.disconnect()
        client.loop_stop()
    return result


def lean_passthrough(host: str, port: int, payload: bytes, count: int) -> dict[str, float]:
    """Raw broker throughput with the generator's own client publishing (QoS 1).

    Same subscriber child, same payload, same in-flight limit as the paho probe
    (PUBLISHER_INFLIGHT publishes not yet PUBACKed), published in bursts of
    BURST between reads, as `Readers.run` does.
    """
    with _subscriber(host, port, count) as child:
        pool = Pool(host, port, ["bench-passthrough-lean"])
        try:
            conn = pool.connections[0]
            topic = PASSTHROUGH_TOPIC.encode()
            start = time.monotonic()
            sent = 0
            while sent < count:
                room = min(count - sent, BURST, PUBLISHER_INFLIGHT - conn.in_flight)
                for _ in range(room):
                    pool.publish(0, topic, payload, 1)
                sent += room
                pool.flush()
                pool.poll(0.0 if room else 1.0)
            if not pool.drain(60, lambda: conn.in_flight == 0):
                raise RuntimeError("the broker did not PUBACK every passthrough message")
            published = time.monotonic()
            result = _report(child, count, start, published)
        finally:
            pool.close()
    return result
