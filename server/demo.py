"""`rollcall demo`: the whole system on embedded defaults, with readers tapping sample cards.

The demo uses a fresh SQLite file and the in-process broker, fills it with a
sample organisation, serves HTTP, and runs three simulated reader agents as
separate processes (the reader agent is its own program; the server never
imports it), printing every acknowledgement they show.
"""

import logging
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import uvicorn
from sqlalchemy import func, select

from protocol import TapMode
from server.api.app import create_app
from server.db.models import Attendance, LedgerEntry, Reader, TapRecord
from server.errors import ConfigError
from server.kiosk.devices import DeviceKind, DeviceRequest, create_device
from server.runtime import ServerRuntime
from server.sample import DemoData, seed_demo
from server.services.auth import Role
from server.services.unit_of_work import UnitOfWork
from server.services.users import create_user
from server.settings import Settings

log = logging.getLogger(__name__)

# Seconds between taps on one reader: slow enough to read along.
TAP_PAUSE = 0.8
# The demo's kiosk: a reader in `kiosk` mode beside room-101's door, paired with a page.
KIOSK_READER = "kiosk-1"
# Seconds between kiosk taps: long enough to read the screen before the next person.
KIOSK_PAUSE = 6.0


@dataclass(frozen=True)
class DemoOptions:
    """How big the sample organisation is and whether to stop after the readers finish."""

    members: int = 200
    once: bool = False
    reader_debounce: float = 2.0


def reader_scripts(data: DemoData, debounce: float) -> dict[str, list[str]]:
    """The taps each simulated reader makes, in the simulated source's script format.

    Every reader taps its cards; room-101 also shows a card held twice within the
    debounce window (one tap) and tapped again later (answered 已签到), room-102 an
    unregistered card.
    """
    scripts: dict[str, list[str]] = {}
    for index, reader_id in enumerate(data.reader_ids):
        lines = [f"# simulated reader {reader_id}"]
        cards = data.cards_by_reader[reader_id]
        for n, card in enumerate(cards):
            lines += [f"{card.tech.value} {card.uid}", f"sleep {TAP_PAUSE}"]
            if index == 0 and n == 1:
                lines += [f"{card.tech.value} {card.uid}", f"sleep {debounce + 0.5}"]
                lines += [f"{card.tech.value} {card.uid}", f"sleep {TAP_PAUSE}"]
            if index == 1 and n == 2 and data.unknown_uids:
                lines += [data.unknown_uids[0], f"sleep {TAP_PAUSE}"]
        scripts[reader_id] = lines
    # The kiosk: a few people look up their points after checking in.
    first_cards = data.cards_by_reader[data.reader_ids[0]][:4]
    kiosk = [f"# kiosk {KIOSK_READER}: people look up their points"]
    for card in first_cards:
        kiosk += [f"sleep {KIOSK_PAUSE}", f"{card.tech.value} {card.uid}"]
    scripts[KIOSK_READER] = [*kiosk, f"sleep {TAP_PAUSE}"]
    return scripts


def _pair_screens(runtime: ServerRuntime, data: DemoData) -> tuple[str, str]:
    """Register the kiosk reader, pair a kiosk page and room-101's live screen; their tokens."""
    first = data.reader_ids[0]
    with runtime.database.write_sessions() as db, db.begin():
        room_id = db.scalar(select(Reader.room_id).where(Reader.reader_id == first))
        db.add(
            Reader(
                reader_id=KIOSK_READER,
                name="大厅自助查询机",
                room_id=room_id,
                mode=TapMode.KIOSK.value,
            )
        )
    now = datetime.now(UTC)
    uow = UnitOfWork(runtime.database.write_sessions)
    _, kiosk_token = create_device(
        uow,
        DeviceRequest(kind=DeviceKind.KIOSK, label="大厅自助查询机", reader_id=KIOSK_READER),
        actor="demo",
        now=now,
    )
    _, screen_token = create_device(
        uow,
        DeviceRequest(
            kind=DeviceKind.SCREEN, label="会场签到大屏", session_id=data.session_by_reader[first]
        ),
        actor="demo",
        now=now,
    )
    return kiosk_token, screen_token


def _free_http_socket(host: str, port: int) -> socket.socket:
    """Listen on the configured port, or on a free one if it is taken (a demo must start)."""
    for candidate in (port, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise ConfigError(f"cannot listen for HTTP on {host}")


class _ReaderProcess:
    """One `rollcall-reader run` child whose ack lines are echoed with its id."""

    def __init__(self, args: Sequence[str], reader_id: str, out: TextIO) -> None:
        self.reader_id = reader_id
        self._out = out
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.acks = 0
        self._threads = [
            threading.Thread(target=self._echo, daemon=True),
            threading.Thread(target=self._drain_errors, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _echo(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            if line.startswith("[") and not line.startswith(("[queued]", "[card]")):
                self.acks += 1
                print(f"  {self.reader_id:<9} {line}", file=self._out, flush=True)

    def _drain_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if " ERROR " in line or "error:" in line:
                print(f"  {self.reader_id:<9} ! {line.rstrip()}", file=self._out, flush=True)

    def wait(self) -> int:
        code = self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_demo(settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo until Ctrl-C (or, with `once`, until the readers have finished)."""
    demo_dir = settings.data_dir.resolve() / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    for stale in demo_dir.glob("*.sqlite3*"):
        stale.unlink()  # every demo starts from the same sample data
    demo_settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{demo_dir / 'rollcall.sqlite3'}",
            "mqtt_url": None,
            "embedded_broker_port": 0,
            # The demo serves plain HTTP on this machine: its console cookie cannot be Secure.
            "cookie_secure": False,
        }
    )
    with ServerRuntime(demo_settings) as runtime:
        data = seed_demo(
            runtime.database.write_sessions,
            datetime.now(UTC),
            demo_settings.zone,
            members=options.members,
        )
        # A console account for this run only; its password is made now and printed below.
        console_password = secrets.token_urlsafe(12)
        create_user(
            UnitOfWork(runtime.database.write_sessions),
            username="demo",
            password=console_password,
            role=Role.SUPER_ADMIN,
            actor="demo",
        )
        kiosk_token, screen_token = _pair_screens(runtime, data)
        sock = _free_http_socket(demo_settings.http_host, demo_settings.http_port)
        host, port = sock.getsockname()[:2]
        base = f"http://{host}:{port}"
        app = create_app(demo_settings, runtime=runtime)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        )
        first = data.cards_by_reader[data.reader_ids[0]][0]
        print(
            "Rollcall demo\n"
            f"  database   {runtime.database.display_url} ({data.member_count} members)\n"
            f"  mqtt       {runtime.endpoint.url} (embedded broker)\n"
            f"  http       {base}\n"
            f"  API docs   {base}/docs\n"
            f"  console    {base}/admin/ (user demo, password {console_password})\n"
            f"  kiosk      {base}/kiosk?token={kiosk_token} (reader {KIOSK_READER})\n"
            f"  live       {base}/live?token={screen_token} (签到大屏, room-101)\n"
            f"  health     {base}/healthz\n"
            f"  points     {base}/api/v1/members/{first.employee_no}/points\n"
            f"  attendance {base}/api/v1/sessions/"
            f"{data.session_by_reader[data.reader_ids[0]]}/attendance\n"
            "Readers tapping (acknowledgements as the readers show them):",
            file=out,
            flush=True,
        )
        orchestrator = threading.Thread(
            target=_run_readers,
            kwargs={
                "runtime": runtime,
                "data": data,
                "demo_dir": demo_dir,
                "options": options,
                "server": server,
                "base": base,
                "out": out,
            },
            daemon=True,
        )
        orchestrator.start()
        with sock:
            server.run(sockets=[sock])  # returns on Ctrl-C, or when `once` is done
        orchestrator.join(timeout=15)
    return 0


def _run_readers(
    *,
    runtime: ServerRuntime,
    data: DemoData,
    demo_dir: Path,
    options: DemoOptions,
    server: uvicorn.Server,
    base: str,
    out: TextIO,
) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    readers: list[_ReaderProcess] = []
    try:
        for reader_id, lines in reader_scripts(data, options.reader_debounce).items():
            script = demo_dir / f"{reader_id}.taps"
            script.write_text("\n".join(lines) + "\n", encoding="utf-8")
            args = [
                sys.executable, "-m", "reader_agent", "-q", "run",
                "--id", reader_id,
                "--mqtt-url", runtime.endpoint.url,
                "--outbox", str(demo_dir / f"outbox-{reader_id}.sqlite3"),
                "--script", str(script),
                "--debounce", str(options.reader_debounce),
                "--exit-when-drained",
                *(["--mode", "kiosk"] if reader_id == KIOSK_READER else []),
            ]  # fmt: skip
            readers.append(_ReaderProcess(args, reader_id, out))
        codes = [reader.wait() for reader in readers]
        _print_summary(runtime, codes, base, out)
    finally:
        for reader in readers:
            reader.stop()
        if options.once:
            server.should_exit = True
        else:
            print("Still serving; press Ctrl-C to stop.", file=out, flush=True)


def _print_summary(runtime: ServerRuntime, codes: list[int], base: str, out: TextIO) -> None:
    with runtime.database.sessions() as db:
        taps = db.scalar(select(func.count()).select_from(TapRecord)) or 0
        present = db.scalar(select(func.count()).select_from(Attendance)) or 0
        points = db.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))) or 0
    failed = [code for code in codes if code != 0]
    print(
        f"Readers done{' (some failed: exit codes ' + str(failed) + ')' if failed else ''}: "
        f"{taps} taps recorded, {present} attendances, {points} points credited.\n"
        f"Look at {base}/docs",
        file=out,
        flush=True,
    )
