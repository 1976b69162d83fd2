"""Publisher: window, acks, resends, reconnects, config and status, over a fake transport."""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Ack,
    CardId,
    CardTech,
    Config,
    ReaderState,
    Status,
    Tap,
    TapMode,
    decode_as,
    encode,
    topics,
)
from reader_agent.outbox import Outbox
from reader_agent.publisher import Publisher
from reader_agent.transport import Outgoing
from tests.unit.reader_agent.fakes import FakeClock, FakeTransport, ack_for

BOOT = uuid.UUID("11111111-2222-4333-8444-555555555555")
READER = "door-1"


class Rig:
    """A publisher over a real outbox, a fake transport and a fake clock."""

    def __init__(self, tmp_path: Path, transport: FakeTransport, **options: Any) -> None:
        self.clock = FakeClock()
        self.outbox = Outbox(tmp_path / "outbox.sqlite3")
        self.transport = transport
        self.acks: list[Ack] = []
        self.configs: list[Config] = []
        self.seq = 0
        self.publisher = Publisher(
            reader_id=READER,
            boot_id=BOOT,
            source_name="simulated",
            outbox=self.outbox,
            transport=transport,
            clock=self.clock,
            clock_synced=lambda: True,
            on_ack=options.pop("on_ack", self.acks.append),
            on_config=self.configs.append,
            **options,
        )

    def store(self, count: int = 1) -> list[Tap]:
        taps = []
        for _ in range(count):
            self.seq += 1
            tap = Tap(
                event_id=uuid.uuid4(),
                reader_id=READER,
                boot_id=BOOT,
                seq=self.seq,
                card=CardId(tech=CardTech.ISO14443A, uid=f"{self.seq:08X}"),
                occurred_at=self.clock.now(),
                clock_synced=True,
            )
            self.outbox.append(tap, encode(tap), created_at=self.clock.now())
            taps.append(tap)
        # As the agent does after each append: the publisher looks at the outbox when woken.
        self.publisher.wake()
        return taps

    def step(self) -> None:
        self.publisher.step(0)

    def ack(self, tap: Tap) -> None:
        self.transport.deliver(topics.acks(READER), encode(ack_for(tap)))

    def sent_seqs(self) -> list[int]:
        return [tap.seq for tap in self.transport.taps()]


RigFactory = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[RigFactory]:
    rigs: list[Rig] = []

    def make(transport: FakeTransport | None = None, **options: Any) -> Rig:
        rig = Rig(tmp_path, transport or FakeTransport(), **options)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.outbox.close()


def test_last_will_is_an_offline_status_of_unknown_depth(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.publisher.start()
    will = rig.transport.will
    assert will is not None
    assert will.topic == topics.status(READER)
    assert will.retain
    status = decode_as(will.payload, Status)
    assert status.state is ReaderState.OFFLINE
    assert status.outbox_depth is None
    assert status.boot_id == BOOT
    assert status.source == "simulated"


def test_on_connect_subscribe_then_announce_then_send_oldest_first(make_rig: RigFactory) -> None:
    rig = make_rig()
    taps = rig.store(3)
    rig.publisher.start()
    rig.step()
    assert rig.transport.subscriptions == [topics.acks(READER), topics.config(READER)]
    published = rig.transport.published
    assert [m.topic for m in published] == [topics.status(READER)] + [topics.taps(READER)] * 3
    status = decode_as(published[0].payload, Status)
    assert status.state is ReaderState.ONLINE
    assert status.outbox_depth == 3
    assert status.oldest_pending_at == rig.clock.now()
    assert status.clock_synced is True
    assert published[0].retain
    # The stored bytes go out untouched (a signature would survive).
    assert [m.payload for m in published[1:]] == [encode(tap) for tap in taps]
    assert not any(m.retain for m in published[1:])


def test_nothing_is_published_until_connected(make_rig: RigFactory) -> None:
    rig = make_rig(FakeTransport(auto_connect=False))
    rig.store(2)
    rig.publisher.start()
    rig.step()
    assert rig.transport.published == []
    assert rig.transport.lost == []
    rig.transport.connect()
    rig.step()
    assert rig.sent_seqs() == [1, 2]


def test_new_taps_go_out_on_wake(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.publisher.start()
    rig.step()
    rig.store(1)
    rig.publisher.wake()
    rig.publisher.step(0)
    assert rig.sent_seqs() == [1]


def test_at_most_max_inflight_taps_await_their_ack(make_rig: RigFactory) -> None:
    rig = make_rig(max_inflight=2)
    taps = rig.store(5)
    rig.publisher.start()
    rig.step()
    assert rig.sent_seqs() == [1, 2]
    rig.ack(taps[0])
    rig.step()
    assert rig.sent_seqs() == [1, 2, 3]
    rig.ack(taps[1])
    rig.ack(taps[2])
    rig.step()
    assert rig.sent_seqs() == [1, 2, 3, 4, 5]


def test_an_ack_removes_its_tap_and_is_reported_once(make_rig: RigFactory) -> None:
    rig = make_rig()
    first, second = rig.store(2)
    rig.publisher.start()
    rig.step()
    rig.ack(first)
    rig.ack(first)  # an answer to a resent copy
    rig.step()
    assert [ack.event_id for ack in rig.acks] == [first.event_id]
    assert [p.event_id for p in rig.outbox.pending(limit=10)] == [second.event_id]


def test_only_the_servers_ack_removes_a_tap(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.store(1)
    rig.publisher.start()
    for _ in range(3):
        rig.step()
        rig.clock.advance(60)
    assert rig.outbox.depth() == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "type": "ack"}',
        b'{"v": 1, "type": "ack", "event_id": "nope"}',
        encode(Config()),
        b"",
    ],
)
def test_malformed_acks_are_ignored(make_rig: RigFactory, payload: bytes) -> None:
    rig = make_rig()
    (tap,) = rig.store(1)
    rig.publisher.start()
    rig.step()
    rig.transport.deliver(topics.acks(READER), payload)
    rig.step()
    assert rig.acks == []
    assert rig.outbox.depth() == 1
    rig.ack(tap)  # and the publisher still works
    rig.step()
    assert rig.outbox.depth() == 0


def test_a_failing_ack_handler_does_not_keep_the_tap(make_rig: RigFactory) -> None:
    def broken(ack: Ack) -> None:
        raise RuntimeError("display unplugged")

    rig = make_rig(on_ack=broken)
    (tap,) = rig.store(1)
    rig.publisher.start()
    rig.step()
    rig.ack(tap)
    rig.step()
    assert rig.outbox.depth() == 0


def test_unacked_tap_is_resent_after_resend_after(make_rig: RigFactory) -> None:
    rig = make_rig(resend_after_seconds=20)
    rig.store(1)
    rig.publisher.start()
    rig.step()
    rig.clock.advance(19)
    rig.step()
    assert rig.sent_seqs() == [1]
    rig.clock.advance(2)
    rig.step()
    assert rig.sent_seqs() == [1, 1]
    assert rig.outbox.pending(limit=1)[0].attempts == 2


def test_reconnect_resends_every_pending_tap_at_once(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.store(2)
    rig.publisher.start()
    rig.step()
    rig.transport.drop()
    rig.step()
    rig.transport.connect()
    rig.step()
    assert rig.sent_seqs() == [1, 2, 1, 2]
    statuses = rig.transport.statuses()
    assert [s.state for s in statuses] == [ReaderState.ONLINE, ReaderState.ONLINE]


def test_taps_stored_while_disconnected_wait_for_the_connection(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.publisher.start()
    rig.step()
    rig.transport.drop()
    rig.store(1)
    rig.publisher.wake()
    rig.step()
    assert rig.transport.lost == []
    rig.transport.connect()
    rig.step()
    assert rig.sent_seqs() == [1]


def test_wall_clock_stepping_back_makes_sent_taps_due(make_rig: RigFactory) -> None:
    rig = make_rig(resend_after_seconds=20)
    rig.store(1)
    rig.publisher.start()
    rig.step()
    # Its send time is now an hour in the future; without care it would wait an hour.
    rig.clock.step_wall(-3600)
    rig.step()
    assert rig.sent_seqs() == [1, 1]


def test_retained_config_is_applied(make_rig: RigFactory) -> None:
    config = Config(mode=TapMode.KIOSK, room="301 会议室")
    rig = make_rig(FakeTransport(retained={topics.config(READER): encode(config)}))
    rig.publisher.start()
    rig.step()
    assert rig.configs == [config]


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"v": 1, "type": "config", "mode": "nap"}'])
def test_bad_or_cleared_config_is_ignored(make_rig: RigFactory, payload: bytes) -> None:
    rig = make_rig()
    rig.publisher.start()
    rig.step()
    rig.transport.deliver(topics.config(READER), payload)
    rig.step()
    assert rig.configs == []


def test_status_goes_out_as_soon_as_the_outbox_empties(make_rig: RigFactory) -> None:
    rig = make_rig()
    (tap,) = rig.store(1)
    rig.publisher.start()
    rig.step()
    rig.ack(tap)
    rig.step()
    depths = [s.outbox_depth for s in rig.transport.statuses()]
    assert depths == [1, 0]
    assert rig.transport.statuses()[-1].oldest_pending_at is None


def test_status_repeats_every_interval(make_rig: RigFactory) -> None:
    rig = make_rig(status_interval_seconds=30)
    rig.publisher.start()
    rig.step()
    rig.clock.advance(29)
    rig.step()
    assert len(rig.transport.statuses()) == 1
    rig.clock.advance(1)
    rig.step()
    assert len(rig.transport.statuses()) == 2


def test_small_depth_changes_wait_big_ones_are_spaced(make_rig: RigFactory) -> None:
    rig = make_rig(FakeTransport(), max_inflight=1)
    rig.publisher.start()
    rig.step()
    rig.store(1)
    rig.step()  # empty -> 1: at once
    rig.store(5)
    rig.step()  # 1 -> 6: small, no status
    assert [s.outbox_depth for s in rig.transport.statuses()] == [0, 1]
    rig.store(20)
    rig.step()  # 6 -> 26: big, but less than a second since the last one
    assert [s.outbox_depth for s in rig.transport.statuses()] == [0, 1]
    rig.clock.advance(1)
    rig.step()
    assert [s.outbox_depth for s in rig.transport.statuses()] == [0, 1, 26]


def test_stop_publishes_offline_with_the_depth(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.store(2)
    rig.publisher.start()
    rig.step()
    rig.publisher.stop()
    last = rig.transport.published[-1]
    assert last.retain
    status = decode_as(last.payload, Status)
    assert status.state is ReaderState.OFFLINE
    assert status.outbox_depth == 2
    assert rig.transport.stopped
    assert rig.transport.retained[topics.status(READER)] == last.payload


def test_stop_while_disconnected_leaves_the_will_to_the_broker(make_rig: RigFactory) -> None:
    rig = make_rig(FakeTransport(auto_connect=False))
    rig.publisher.start()
    rig.publisher.stop()
    assert rig.transport.published == []
    assert rig.transport.stopped


def test_message_on_a_foreign_topic_is_ignored(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.store(1)
    rig.publisher.start()
    rig.step()
    rig.transport.deliver("rollcall/v1/readers/other/acks", b"{}")
    rig.step()
    assert rig.outbox.depth() == 1


def test_publish_goes_to_this_readers_tap_topic(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.store(1)
    rig.publisher.start()
    rig.step()
    assert rig.transport.messages("taps") == [
        Outgoing(topics.taps(READER), rig.outbox.pending(limit=1)[0].payload)
    ]
