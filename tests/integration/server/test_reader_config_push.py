"""The server pushes each reader's config (mode, room), retained, and again when it changes."""

import logging
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from protocol import Config, TapMode, decode_as, topics
from server.db.engine import Database, open_database
from server.db.models import Reader
from server.ingest import configsync
from server.ingest.configsync import ReaderConfigSync
from server.ingest.worker import IngestWorker
from server.sample import MinimalSeed
from server.services.readers import ReaderChanges, change_reader
from server.services.unit_of_work import UnitOfWork

Probes = Callable[..., Any]
Eventually = Callable[..., bool]
Mosquitto = Any


@pytest.fixture
def worker(start_worker: Callable[..., IngestWorker]) -> IngestWorker:
    """One ingest worker on the test broker (conftest's start_worker stops it)."""
    return start_worker("ingest-config-test")


def _config(message: Any) -> Config:
    return decode_as(message.payload, Config)


def test_each_registered_reader_finds_its_config_retained(
    seeded: MinimalSeed,
    worker: IngestWorker,
    mosquitto: Mosquitto,
    probes: Probes,
    eventually: Eventually,
) -> None:
    assert eventually(lambda: worker.counters.get("configs_published") >= 1)
    # A reader that connects afterwards gets it from the broker.
    reader = probes(mosquitto.host, mosquitto.port, "reader-late")
    reader.subscribe(topics.config(seeded.reader_id))
    message = reader.next(5)
    assert message.retain
    assert _config(message) == Config(mode=TapMode.CHECKIN, room=seeded.room_name)


def test_a_reader_changed_in_the_console_gets_its_new_config(
    *,
    seeded: MinimalSeed,
    database: Database,
    worker: IngestWorker,
    mosquitto: Mosquitto,
    probes: Probes,
    eventually: Eventually,
) -> None:
    reader = probes(mosquitto.host, mosquitto.port, "reader-live")
    reader.subscribe(topics.config(seeded.reader_id))
    assert _config(reader.next(10)).mode is TapMode.CHECKIN
    published = worker.counters.get("configs_published")

    change_reader(
        UnitOfWork(database.write_sessions),
        seeded.reader_id,
        ReaderChanges(name="东门", room_code=None, mode=TapMode.CHECKOUT),
        actor="admin",
    )

    changed = _config(reader.next(10))
    assert (changed.mode, changed.room) == (TapMode.CHECKOUT, "")
    # Only the reader that changed was published again.
    assert worker.counters.get("configs_published") == published + 1


def test_a_newly_registered_reader_gets_a_config(
    seeded: MinimalSeed,
    database: Database,
    worker: IngestWorker,
    mosquitto: Mosquitto,
    probes: Probes,
) -> None:
    reader = probes(mosquitto.host, mosquitto.port, "reader-new")
    reader.subscribe(topics.config("kiosk-9"))
    with database.write_sessions() as db:
        db.add(Reader(reader_id="kiosk-9", room_id=seeded.room_id, mode=TapMode.KIOSK.value))
        db.commit()

    assert _config(reader.next(10)) == Config(mode=TapMode.KIOSK, room=seeded.room_name)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sync_publishes_only_changes_and_retries_what_was_refused(
    seeded: MinimalSeed, database: Database
) -> None:
    sent: list[tuple[str, Config]] = []
    refuse = True

    def publish(topic: str, payload: bytes) -> bool:
        if refuse:
            return False
        sent.append((topic, decode_as(payload, Config)))
        return True

    clock = _Clock()
    sync = ReaderConfigSync(database, publish, monotonic=clock)
    assert sync.poll() == 0  # refused: kept to retry
    refuse = False
    assert sync.poll() == 0  # not due yet
    clock.now += configsync.POLL_SECONDS
    assert sync.poll() == 1
    assert sent == [(topics.config(seeded.reader_id), Config(room=seeded.room_name))]
    clock.now += configsync.POLL_SECONDS
    assert sync.poll() == 0  # nothing changed
    sync.reset()  # a new connection: everything again
    assert sync.poll() == 1


def test_sync_refreshes_without_a_generation_change(
    seeded: MinimalSeed, database: Database
) -> None:
    """A change the triggers did not see (here: made with them dropped) is found by the refresh."""
    sent: list[Config] = []
    clock = _Clock()
    sync = ReaderConfigSync(
        database, lambda _t, p: sent.append(decode_as(p, Config)) is None, monotonic=clock
    )
    assert sync.poll() == 1
    with database.engine.begin() as connection:
        generation = connection.scalar(text("SELECT generation FROM reference_generation"))
        connection.execute(text("UPDATE readers SET mode = 'checkout'"))
        # As if the trigger had not fired.
        connection.execute(
            text("UPDATE reference_generation SET generation = :g"), {"g": generation}
        )
    clock.now += configsync.POLL_SECONDS
    assert sync.poll() == 0
    clock.now += configsync.REFRESH_SECONDS
    assert sync.poll() == 1
    assert sent[-1].mode is TapMode.CHECKOUT


def test_sync_says_once_when_the_database_cannot_be_read(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    missing = open_database(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.sqlite3'}")
    clock = _Clock()
    sync = ReaderConfigSync(missing, lambda _t, _p: True, monotonic=clock)
    with caplog.at_level(logging.WARNING, logger=configsync.__name__):
        for _ in range(3):
            assert sync.poll() == 0
            clock.now += configsync.POLL_SECONDS
    warnings = [r for r in caplog.records if r.name == configsync.__name__]
    assert len(warnings) == 1
    assert "reader configs not read" in warnings[0].getMessage()
