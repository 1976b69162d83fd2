"""Outbox: durable, ordered, removed only by id, WAL + FULL, safe across threads."""

import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol import CardId, CardTech, Tap, encode
from reader_agent.errors import OutboxError
from reader_agent.outbox import Outbox

BOOT = uuid.UUID("11111111-2222-4333-8444-555555555555")
T0 = datetime(2024, 11, 21, 8, 30, tzinfo=UTC)


def make_tap(seq: int) -> Tap:
    return Tap(
        event_id=uuid.uuid4(),
        reader_id="door-1",
        boot_id=BOOT,
        seq=seq,
        card=CardId(tech=CardTech.ISO14443A, uid=f"{seq:08X}"),
        occurred_at=T0 + timedelta(seconds=seq),
        clock_synced=True,
    )


def store(outbox: Outbox, seq: int) -> Tap:
    tap = make_tap(seq)
    outbox.append(tap, encode(tap), created_at=T0 + timedelta(seconds=seq))
    return tap


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def test_pending_taps_come_oldest_first_with_their_payload(outbox: Outbox) -> None:
    taps = [store(outbox, seq) for seq in (1, 2, 3)]
    pending = outbox.pending(limit=10)
    assert [p.event_id for p in pending] == [t.event_id for t in taps]
    assert pending[0].payload == encode(taps[0])
    assert pending[0].seq == 1
    assert pending[0].boot_id == BOOT
    assert pending[0].created_at == T0 + timedelta(seconds=1)
    assert pending[0].last_sent_at is None
    assert pending[0].attempts == 0
    assert [p.seq for p in outbox.pending(limit=2)] == [1, 2]


def test_order_is_storage_order_even_when_the_clock_went_back(outbox: Outbox) -> None:
    first, second = make_tap(1), make_tap(2)
    outbox.append(first, encode(first), created_at=T0)
    outbox.append(second, encode(second), created_at=T0 - timedelta(hours=1))
    assert [p.event_id for p in outbox.pending(limit=10)] == [first.event_id, second.event_id]
    assert outbox.oldest_pending_at() == T0


def test_taps_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    taps = [store(box, seq) for seq in (1, 2)]
    box.mark_sent([taps[0].event_id], at=T0)
    box.close()
    reopened = Outbox(path)
    try:
        pending = reopened.pending(limit=10)
        assert [p.event_id for p in pending] == [t.event_id for t in taps]
        assert pending[0].attempts == 1
        assert pending[0].last_sent_at == T0
    finally:
        reopened.close()


def test_a_stored_tap_survives_the_process_dying_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    child = f"""
import os, uuid
from datetime import UTC, datetime
from pathlib import Path
from protocol import CardId, CardTech, Tap, encode
from reader_agent.outbox import Outbox
box = Outbox(Path({str(path)!r}))
tap = Tap(event_id=uuid.UUID(int=7), reader_id="door-1", boot_id=uuid.UUID(int=1), seq=1,
          card=CardId(tech=CardTech.ISO14443A, uid="04A1B2C3"),
          occurred_at=datetime.now(UTC), clock_synced=True)
box.append(tap, encode(tap))
os._exit(0)  # no close, no commit hooks, no atexit: as abrupt as it gets in-process
"""
    subprocess.run([sys.executable, "-c", child], check=True, cwd=Path(__file__).parents[3])
    box = Outbox(path)
    try:
        assert [p.event_id for p in box.pending(limit=10)] == [uuid.UUID(int=7)]
    finally:
        box.close()


def test_remove_deletes_only_the_named_tap(outbox: Outbox) -> None:
    taps = [store(outbox, seq) for seq in (1, 2, 3)]
    assert outbox.remove(taps[1].event_id)
    assert [p.seq for p in outbox.pending(limit=10)] == [1, 3]
    assert outbox.depth() == 2


def test_removing_an_unknown_or_already_removed_tap_says_so(outbox: Outbox) -> None:
    tap = store(outbox, 1)
    assert outbox.remove(tap.event_id)
    assert not outbox.remove(tap.event_id)
    assert not outbox.remove(uuid.uuid4())


def test_marking_as_sent_never_removes(outbox: Outbox) -> None:
    taps = [store(outbox, seq) for seq in (1, 2)]
    outbox.mark_sent([t.event_id for t in taps], at=T0)
    outbox.mark_sent([t.event_id for t in taps], at=T0 + timedelta(seconds=5))
    pending = outbox.pending(limit=10)
    assert outbox.depth() == 2
    assert [p.attempts for p in pending] == [2, 2]
    assert pending[0].last_sent_at == T0 + timedelta(seconds=5)


def test_sent_before_selects_never_sent_and_long_ago_sent(outbox: Outbox) -> None:
    old, recent, never = (store(outbox, seq) for seq in (1, 2, 3))
    outbox.mark_sent([old.event_id], at=T0)
    outbox.mark_sent([recent.event_id], at=T0 + timedelta(seconds=30))
    due = outbox.pending(limit=10, sent_before=T0 + timedelta(seconds=20))
    assert [p.event_id for p in due] == [old.event_id, never.event_id]
    assert outbox.in_flight(sent_since=T0 + timedelta(seconds=20)) == 1


def test_reset_sent_makes_every_tap_due_again(outbox: Outbox) -> None:
    taps = [store(outbox, seq) for seq in (1, 2)]
    outbox.mark_sent([t.event_id for t in taps], at=T0)
    assert outbox.reset_sent() == 2
    assert len(outbox.pending(limit=10, sent_before=T0 - timedelta(days=1))) == 2
    assert outbox.in_flight(sent_since=T0 - timedelta(days=1)) == 0
    assert outbox.pending(limit=10)[0].attempts == 1  # the history stays


def test_depth_and_oldest_pending_at(outbox: Outbox) -> None:
    assert outbox.depth() == 0
    assert outbox.oldest_pending_at() is None
    first = store(outbox, 1)
    store(outbox, 2)
    assert outbox.depth() == 2
    assert outbox.oldest_pending_at() == T0 + timedelta(seconds=1)
    outbox.remove(first.event_id)
    assert outbox.oldest_pending_at() == T0 + timedelta(seconds=2)


def test_the_same_tap_cannot_be_stored_twice(outbox: Outbox) -> None:
    tap = store(outbox, 1)
    with pytest.raises(OutboxError, match="already in the outbox"):
        outbox.append(tap, encode(tap))
    assert outbox.depth() == 1


def test_wal_and_full_sync_are_in_force(tmp_path: Path, outbox: Outbox) -> None:
    assert outbox.pragma("journal_mode") == "wal"
    assert outbox.pragma("synchronous") == "2"  # FULL
    # WAL is a property of the file: another connection sees it too.
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_naive_timestamps_are_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        outbox.mark_sent([uuid.uuid4()], at=datetime(2024, 1, 1))  # noqa: DTZ001


def test_closed_outbox_raises_outbox_error(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.close()
    box.close()  # twice is fine
    with pytest.raises(OutboxError, match="closed"):
        box.depth()


def test_unopenable_file_raises_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "a-file" / "outbox.sqlite3")


def test_file_that_is_not_a_database_raises_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(path)


def test_outbox_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="newer than this agent"):
        Outbox(path)


def test_missing_directories_are_created(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "var" / "lib" / "rollcall" / "outbox.sqlite3")
    try:
        assert box.depth() == 0
    finally:
        box.close()


def test_concurrent_appends_and_removes_lose_nothing(outbox: Outbox) -> None:
    stored: list[Tap] = []
    stored_lock = threading.Lock()
    removed: list[uuid.UUID] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def append_many(start: int) -> None:
        try:
            for seq in range(start, start + 100):
                tap = store(outbox, seq)
                with stored_lock:
                    stored.append(tap)
        except BaseException as exc:  # report in the test thread
            errors.append(exc)

    def remove_evens() -> None:
        try:
            while True:
                finished = done.is_set()  # read before the scan, so the last scan is complete
                for pending in outbox.pending(limit=1000):
                    if pending.seq % 2 == 0 and outbox.remove(pending.event_id):
                        removed.append(pending.event_id)
                if finished:
                    return
        except BaseException as exc:
            errors.append(exc)

    appenders = [threading.Thread(target=append_many, args=(n * 1000,)) for n in range(1, 4)]
    remover = threading.Thread(target=remove_evens)
    remover.start()
    for thread in appenders:
        thread.start()
    for thread in appenders:
        thread.join()
    done.set()
    remover.join(timeout=30)
    assert not errors
    left = {p.event_id for p in outbox.pending(limit=1000)}
    assert len(stored) == 300
    assert len(set(removed)) == len(removed) == 150
    assert left == {t.event_id for t in stored if t.seq % 2}
