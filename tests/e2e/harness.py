"""End-to-end harness: a seeded database, `rollcall serve` and `rollcall-reader` processes."""

import re
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select

from server.db.models import Attendance, LedgerEntry, TapRecord, UnknownCard
from tests.support.ports import free_port
from tests.support.processes import Process
from tests.support.roster import Roster, seed_roster

BIN = Path(sys.executable).parent
POINTS = 3
READER_ID = "hall-e2e"

# Copies a migrated SQLite database to the path given; returns its URL (tests/e2e/conftest.py).
SqliteCopy = Callable[[Path], str]


def upgrade(database_url: str, tmp_path: Path) -> None:
    """Run `rollcall db upgrade` as an administrator would."""
    proc = Process(
        [str(BIN / "rollcall"), "db", "upgrade"],
        env={"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_DATA_DIR": str(tmp_path)},
        log_path=tmp_path / "upgrade.log",
    )
    code = proc.wait(timeout=60)
    assert code == 0, (tmp_path / "upgrade.log").read_text(errors="replace")
    assert proc.wait_for(r"^rollcall: database upgraded")


def seed(database_url: str, members: int) -> Roster:
    """`members` members each with a card; READER_ID in a hall with a session open now."""
    return seed_roster(database_url, members=members, reader_ids=(READER_ID,), points=POINTS)


@dataclass(frozen=True)
class Totals:
    """What the database holds after a run."""

    attendance: int
    attendance_members: int
    ledger_entries: int
    ledger_sum: int
    taps: int
    event_ids: frozenset[str]
    unknown_cards: int


def totals(database_url: str, session_id: int) -> Totals:
    """Count attendance, ledger and taps for one session."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            att = conn.execute(
                select(func.count(), func.count(func.distinct(Attendance.member_id))).where(
                    Attendance.session_id == session_id
                )
            ).one()
            ledger = conn.execute(
                select(func.count(), func.coalesce(func.sum(LedgerEntry.amount), 0))
            ).one()
            event_ids = frozenset(
                str(e)
                for e in conn.scalars(
                    select(TapRecord.event_id).where(TapRecord.event_id.is_not(None))
                )
            )
            taps = conn.scalar(select(func.count()).select_from(TapRecord)) or 0
            unknown = conn.scalar(select(func.count()).select_from(UnknownCard)) or 0
        return Totals(
            int(att[0]),
            int(att[1]),
            int(ledger[0]),
            int(ledger[1]),
            int(taps),
            event_ids,
            int(unknown),
        )
    finally:
        engine.dispose()


@contextmanager
def server(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Process, str, str]]:
    """Run `rollcall serve`; yield the process, its HTTP base URL and its MQTT URL."""
    port = free_port()
    full_env = {
        "ROLLCALL_HTTP_PORT": str(port),
        "ROLLCALL_DATA_DIR": str(tmp_path / "server-data"),
        **env,
    }
    proc = Process([str(BIN / "rollcall"), "serve"], env=full_env, log_path=tmp_path / "server.log")
    try:
        http = proc.wait_for(r"^rollcall: http at (\S+)", timeout=60).group(1)
        mqtt = proc.wait_for(r"^rollcall: mqtt at (\S+)", timeout=30).group(1)
        wait_healthy(http)
        yield proc, http, mqtt
    finally:
        proc.terminate()


def wait_healthy(base: str, timeout: float = 30.0) -> None:
    """Poll /healthz until it answers 200."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{base}/healthz not healthy within {timeout} s: {last}")


def reader_command(tmp_path: Path, mqtt_url: str, *source: str) -> list[str]:
    """`rollcall-reader run` as the e2e reader, with no debounce, taking taps from `source`."""
    return [
        str(BIN / "rollcall-reader"),
        "run",
        "--id",
        READER_ID,
        "--mqtt-url",
        mqtt_url,
        "--outbox",
        str(tmp_path / "outbox.sqlite3"),
        *source,
        "--debounce",
        "0",
    ]


def reader(tmp_path: Path, mqtt_url: str, name: str = "reader") -> Process:
    """Start `rollcall-reader run` reading taps from stdin, with no debounce."""
    return Process(
        reader_command(tmp_path, mqtt_url, "--stdin"),
        log_path=tmp_path / f"{name}.log",
        stdin=True,
    )


def outbox_depth(tmp_path: Path) -> int:
    """Ask `rollcall-reader outbox count` how many taps still wait for an ack."""
    proc = Process(
        [
            str(BIN / "rollcall-reader"),
            "outbox",
            "--id",
            READER_ID,
            "--outbox",
            str(tmp_path / "outbox.sqlite3"),
            "count",
        ]
    )
    assert proc.wait(timeout=20) == 0
    return int(proc.wait_for(r"^(\d+)$").group(1))


QUEUED = r"^\[queued\] (?P<uid>[0-9A-F]+) seq=\d+ event=(?P<event>[0-9a-f-]{36})$"


def queued(proc: Process) -> dict[str, str]:
    """Event id → uid of every tap the agent reported as stored in its outbox."""
    regex = re.compile(QUEUED)
    found: dict[str, str] = {}
    for line in proc.lines:
        if match := regex.match(line):
            found[match["event"]] = match["uid"]
    return found


@contextmanager
def vpcd_reader(tmp_path: Path) -> Iterator[None]:
    """Run a pcscd of the test's own with vpcd as its only reader, its slot empty.

    In a run that also holds the PC/SC tests' session pcscd, this one takes over
    /run/pcscd; their fixture starts theirs again when it finds it stopped. Fails the
    test where the PC/SC stack is missing.
    """
    from contextlib import ExitStack

    import pytest

    from tests.integration.pcsc.pcscd import (
        Pcscd,
        PcscdUnavailable,
        check_stack,
        machine_lock,
        write_vpcd_config,
    )

    try:
        check_stack()
    except PcscdUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    base = tmp_path / "pcscd"
    daemon = Pcscd(write_vpcd_config(base / "reader.conf.d"), base / "pcscd.log")
    with machine_lock(), ExitStack() as cleanup:
        cleanup.callback(daemon.give_back)
        cleanup.callback(daemon.stop)
        try:
            daemon.start()
        except PcscdUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield


def pcsc_reader_config(tmp_path: Path, *, challenge_response: bool = False) -> Path:
    """Write a reader agent config that watches vpcd's reader; return its path."""
    from tests.integration.pcsc.pcscd import READER_NAME

    config = tmp_path / "reader.toml"
    text = f'[pcsc]\nreader = "{READER_NAME}"\n'
    if challenge_response:
        text += "challenge_response = true\n"
    config.write_text(text)
    return config


@contextmanager
def pcsc_agent(
    tmp_path: Path, mqtt_url: str, *, challenge_response: bool = False, timeout: float = 60.0
) -> Iterator[Process]:
    """Run `rollcall-reader run` on the pcsc source, no debounce; stop it on leaving.

    Yields once the agent watches vpcd's reader, so that a test taps as a person would
    at a running terminal. No debounce so that a second tap of the same card reaches the
    server, which answers it as a duplicate.
    """
    from tests.integration.pcsc.pcscd import READER_NAME

    config = pcsc_reader_config(tmp_path, challenge_response=challenge_response)
    log = tmp_path / "reader.log"
    agent = Process(
        [*reader_command(tmp_path, mqtt_url, "--source", "pcsc"), "--config", str(config)],
        log_path=log,
    )
    try:
        watching = f"watching PC/SC reader {READER_NAME!r}"
        agent.wait_until(lambda: watching in log.read_text(errors="replace"), timeout=timeout)
        yield agent
    finally:
        agent.terminate()
