"""The services a benchmark run owns: Mosquitto, a fresh database, the ingest process."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from sqlalchemy import create_engine, func, select

from bench.stats import percentile
from protocol import Tap
from protocol.codec import decode_as
from server.db.models import Attendance, LedgerEntry, TapRecord
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import fresh_database
from tests.support.roster import Roster, seed_roster

BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "ROLLCALL_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POINTS = 1


@contextmanager
def mosquitto(workdir: Path) -> Iterator[tuple[Mosquitto, psutil.Process]]:
    """Run a private Mosquitto; yield it and its process.

    Persistence off: the broker's own disk writes are not what this measures, and
    with autosave it only snapshots periodically anyway.
    """
    broker = Mosquitto(workdir, persistence=False)
    broker.start()
    try:
        yield broker, psutil.Process(broker.pid)
    finally:
        broker.stop()


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database (SQLite file or fresh PostgreSQL)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'rollcall.sqlite3'}"
        return
    with fresh_database(
        PG_ADMIN_URL, prefix="rollcall_bench", variable="ROLLCALL_BENCH_PG_ADMIN_URL"
    ) as url:
        yield url


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


def seed(database_url: str, members: int, readers: int) -> Roster:
    """Members with active cards; readers each in its own room with a session open now."""
    return seed_roster(
        database_url,
        members=members,
        reader_ids=[f"bench-{r:03d}" for r in range(readers)],
        points=POINTS,
        # Late check-ins still credit: every tap of a run must count, however long it runs.
        late_grace_minutes=240,
        duration=timedelta(hours=3),
    )


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
    """`rollcall ingest` (or `command`, which runs it) as its own process, logging to a file."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        workdir: Path,
        *,
        name: str = "ingest",
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "ROLLCALL_DATABASE_URL": database_url,
            "ROLLCALL_MQTT_URL": mqtt_url,
            "ROLLCALL_DATA_DIR": str(workdir / "server-data"),
            **(env or {}),
        }
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            command or [str(BIN / "rollcall"), "ingest"],
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


class IngestGroup:
    """Several `rollcall ingest` processes on one shared subscription, seen as one."""

    def __init__(self, database_url: str, mqtt_url: str, workdir: Path, count: int) -> None:
        self.members = [
            Ingest(
                database_url,
                mqtt_url,
                workdir,
                name=f"ingest-{n}",
                env={
                    "ROLLCALL_INGEST_SHARED": "true",
                    # One client id each, or the broker would keep only the newest.
                    "ROLLCALL_INGEST_CLIENT_ID": f"rollcall-ingest-{n}",
                },
            )
            for n in range(count)
        ]
        self.proc = self.members[0].proc
        self.log_path = self.members[0].log_path

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every worker has subscribed."""
        for member in self.members:
            member.wait_ready(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of all workers together."""
        return sum(member.cpu_seconds() for member in self.members)

    def peak_rss(self) -> int:
        """The largest worker's peak resident set size in bytes."""
        return max(member.peak_rss() for member in self.members)

    def stop(self) -> None:
        """Stop every worker."""
        for member in self.members:
            member.stop()


def machine_pace(database_url: str, kind: str, tap_payload: bytes) -> dict[str, float]:
    """How fast this VM is right now, to compare runs made at different hours.

    The 2-vCPU VM's speed moves within minutes (other tenants): the same code's
    rate-1000 p99 has doubled between runs an hour apart. Recorded with each run:
    decoding one tap as ingest does (`decode_as`, JSON and validation: µs, the
    best of three rounds of 1,000), and on PostgreSQL the round trip of
    `SELECT 1` and of a durable one-row INSERT (autocommit, so a WAL flush each),
    p50 and p99 in µs. A batch of taps makes about seven round trips and one commit.
    """
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(1000):
            decode_as(tap_payload, Tap)
        rounds.append(time.perf_counter() - started)
    pace: dict[str, float] = {"decode_us": min(rounds) * 1000}
    if kind != "postgresql":
        return pace

    def sample(conn: "psycopg.Connection[Any]", sql: str, n: int) -> tuple[float, float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            conn.execute(sql)
            times.append(time.perf_counter() - started)
        times.sort()
        return percentile(times, 50) * 1e6, percentile(times, 99) * 1e6

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        pace["select_p50_us"], pace["select_p99_us"] = sample(conn, "SELECT 1", 2000)
        conn.execute("CREATE TABLE bench_pace (x int)")
        try:
            pace["commit_p50_us"], pace["commit_p99_us"] = sample(
                conn, "INSERT INTO bench_pace VALUES (1)", 500
            )
        finally:
            conn.execute("DROP TABLE bench_pace")
    return pace


def describe_pace(pace: dict[str, float]) -> str:
    """One line of machine_pace's figures."""
    text = f"tap decode {pace['decode_us']:.1f} µs"
    if "select_p50_us" in pace:
        text += (
            f", SELECT 1 p50/p99 {pace['select_p50_us']:.0f}/{pace['select_p99_us']:.0f} µs"
            f", durable INSERT p50/p99 {pace['commit_p50_us']:.0f}/{pace['commit_p99_us']:.0f} µs"
        )
    return text
