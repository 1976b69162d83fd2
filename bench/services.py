"""The services a benchmark run owns: Mosquitto, a fresh database, the ingest process."""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from protocol import CardTech, TapMode
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    Card,
    LedgerEntry,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    Room,
    SessionRoom,
    TapRecord,
)
from server.domain.cards import CardStatus

BIN = Path(sys.executable).parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PG_ADMIN_URL = os.environ.get(
    "ROLLCALL_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POINTS = 1

# Persistence off: the broker's own disk writes are not what this measures, and
# with autosave it only snapshots periodically anyway. The other settings are the
# DESIGN's Reliability ones: no silent QoS 1 drops, inflight above the batch size,
# NODELAY against Nagle.
MOSQUITTO_CONFIG = """\
user root
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
set_tcp_nodelay true
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port below the ephemeral range (32768+) that nobody listens on."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 32000")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until host:port accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


@contextmanager
def mosquitto(workdir: Path) -> Iterator[tuple[str, int, psutil.Process]]:
    """Run a private Mosquitto; yield host, port and its process."""
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(MOSQUITTO_CONFIG.format(port=port, dir=workdir))
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield "127.0.0.1", port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database (SQLite file or fresh PostgreSQL)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'rollcall.sqlite3'}"
        return
    import psycopg

    name = f"rollcall_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upgrade(database_url: str, workdir: Path) -> None:
    """Run `rollcall db upgrade` as an administrator would."""
    result = subprocess.run(
        [str(BIN / "rollcall"), "db", "upgrade"],
        env={
            **os.environ,
            "ROLLCALL_DATABASE_URL": database_url,
            "ROLLCALL_DATA_DIR": str(workdir),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or "database upgraded" not in result.stdout:
        raise RuntimeError(f"rollcall db upgrade failed:\n{result.stdout}\n{result.stderr}")


@dataclass(frozen=True)
class Fleet:
    """What was seeded: reader ids (one room and one open session each) and card uids."""

    reader_ids: tuple[str, ...]
    uids: tuple[str, ...]


def uid_of(index: int) -> str:
    """The card uid of member number `index`."""
    return f"04{index:08X}"


def seed(database_url: str, members: int, readers: int) -> Fleet:
    """Members with active cards; readers each in its own room with a session open now."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        with sessionmaker(engine).begin() as db:
            unit = OrgUnit(code="BENCH", name="压测支部")
            kind = ActivityType(code="bench", name="压测大会", default_points=POINTS)
            db.add_all([unit, kind])
            db.flush()
            people = [
                Member(
                    employee_no=f"B{i:06d}",
                    name=f"压测{i:05d}",
                    org_unit_id=unit.id,
                    category="正式党员",
                )
                for i in range(members)
            ]
            db.add_all(people)
            db.flush()
            uids = tuple(uid_of(i) for i in range(members))
            for person, uid in zip(people, uids, strict=True):
                db.add(
                    MemberOrgHistory(
                        member_id=person.id,
                        org_unit_id=unit.id,
                        valid_from=now - timedelta(days=30),
                    )
                )
                db.add(
                    Card(
                        tech=CardTech.ISO14443A.value,
                        uid=uid,
                        member_id=person.id,
                        status=CardStatus.ACTIVE.value,
                    )
                )
            reader_ids = tuple(f"bench-{r:03d}" for r in range(readers))
            for r, reader_id in enumerate(reader_ids):
                room = Room(code=f"R{r:03d}", name=f"压测会议室{r}")
                db.add(room)
                db.flush()
                db.add(Reader(reader_id=reader_id, room_id=room.id, mode=TapMode.CHECKIN.value))
                meeting = AttendanceSession(
                    title=f"压测大会{r}",
                    activity_type_id=kind.id,
                    starts_at=now - timedelta(minutes=1),
                    ends_at=now + timedelta(hours=3),
                    checkin_open_minutes=30,
                    late_grace_minutes=240,
                    allow_walk_in=True,
                )
                db.add(meeting)
                db.flush()
                db.add(SessionRoom(session_id=meeting.id, room_id=room.id))
        return Fleet(reader_ids, uids)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Totals:
    """What the database holds: tap rows by event id, attendance, ledger."""

    event_ids: list[str]
    attendance: int
    ledger_entries: int
    ledger_sum: int


def totals(database_url: str) -> Totals:
    """Read back every tap's event id and count attendance and ledger rows."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            event_ids = [str(e) for e in conn.scalars(select(TapRecord.event_id))]
            attendance = conn.scalar(select(func.count()).select_from(Attendance)) or 0
            ledger = conn.execute(
                select(func.count(), func.coalesce(func.sum(LedgerEntry.amount), 0))
            ).one()
        return Totals(event_ids, int(attendance), int(ledger[0]), int(ledger[1]))
    finally:
        engine.dispose()


class Ingest:
    """`rollcall ingest` as its own process, logging to a file."""

    def __init__(self, database_url: str, mqtt_url: str, workdir: Path) -> None:
        env = {
            **os.environ,
            "ROLLCALL_DATABASE_URL": database_url,
            "ROLLCALL_MQTT_URL": mqtt_url,
            "ROLLCALL_DATA_DIR": str(workdir / "server-data"),
        }
        self.log_path = workdir / "ingest.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "rollcall"), "ingest"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.proc.pid)
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if re.match(r"^rollcall: mqtt at ", line):
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker has connected and subscribed (it says so on stdout)."""
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"rollcall ingest not ready:\n{self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        t = self.ps.cpu_times()
        return t.user + t.system

    def peak_rss(self) -> int:
        """Peak resident set size in bytes (VmHWM)."""
        return peak_rss_of(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def peak_rss_of(pid: int) -> int:
    """A process's peak resident set size in bytes, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
