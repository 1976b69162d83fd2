"""The `rollcall` command: serve and ingest as real processes, db upgrade in-process."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol import Ack, AckResult, decode_as, encode, topics
from server.cli import main
from server.db.engine import open_database
from server.db.migrate import current_revision
from server.sample import TapBuilder

REPO = Path(__file__).resolve().parents[3]
LINE = re.compile(r"^rollcall: (database|mqtt|http) at (\S+)$")
Probes = Callable[..., Any]


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env["PYTHONPATH"] = str(REPO)
    env["ROLLCALL_DATA_DIR"] = str(tmp_path / "data")
    env.update({f"ROLLCALL_{k.upper()}": v for k, v in settings.items()})
    return env


class Process:
    """A `python -m server …` child whose stdout lines are read in the background."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.popen = subprocess.Popen(
            [sys.executable, "-W", "error", "-m", "server", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def endpoints(self, expected: int, timeout: float = 30.0) -> dict[str, str]:
        """The `rollcall: X at URL` lines, once `expected` of them have been printed."""
        found: dict[str, str] = {}
        while len(found) < expected:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"only {found} printed; stderr: {self.stderr()}") from None
            match = LINE.match(line)
            assert match, f"unexpected stdout line {line!r}"
            found[match.group(1)] = match.group(2)
        return found

    def terminate(self, timeout: float = 30.0) -> int:
        """Send SIGTERM and return the exit status."""
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def stderr(self) -> str:
        if self.popen.poll() is None:
            return "(still running)"
        assert self.popen.stderr is not None
        return self.popen.stderr.read()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str]) -> Process:
        process = Process(args, env, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def test_serve_prints_its_endpoints_and_answers(
    tmp_path: Path, spawn: Callable[..., Process], probes: Probes
) -> None:
    server = spawn(["serve"], environment(tmp_path, http_port="0"))
    found = server.endpoints(3)

    assert found["database"] == f"sqlite:///{(tmp_path / 'data').as_posix()}/rollcall.sqlite3"
    http = httpx.get(f"{found['http']}/healthz", timeout=10)
    assert http.status_code == 200
    assert http.json()["broker"] == {"kind": "embedded", "url": found["mqtt"]}
    host, port = found["mqtt"].removeprefix("mqtt://").rsplit(":", 1)
    reader = probes(host, int(port), "room-x")
    reader.subscribe(topics.acks("room-x"))
    tap = TapBuilder("room-x", "04A1B2C3").tap(at=datetime.now(UTC))
    reader.publish(topics.taps("room-x"), encode(tap))
    ack = decode_as(reader.next().payload, Ack)
    assert (ack.event_id, ack.result, ack.detail) == (
        tap.event_id,
        AckResult.REJECTED,
        "unknown reader",
    )
    assert server.terminate() == 0


def test_config_file_option(tmp_path: Path, spawn: Callable[..., Process]) -> None:
    config = tmp_path / "rollcall.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path.as_posix()}/other.sqlite3"\nhttp_port = 0\n'
    )
    server = spawn(["serve", "--config", str(config)], environment(tmp_path))

    found = server.endpoints(3)

    assert found["database"].endswith("/other.sqlite3")
    assert server.terminate() == 0


def test_ingest_alone_against_mosquitto(
    tmp_path: Path,
    spawn: Callable[..., Process],
    mosquitto: Any,
    postgres_url: str,
    probes: Probes,
) -> None:
    env = environment(tmp_path, mqtt_url=mosquitto.url, database_url=postgres_url)
    not_migrated = spawn(["ingest"], env)
    assert not_migrated.popen.wait(30) == 1
    assert "rollcall db upgrade" in not_migrated.stderr()

    upgrade = spawn(["db", "upgrade"], env)
    assert upgrade.popen.wait(60) == 0
    worker = spawn(["ingest"], env)
    found = worker.endpoints(2)

    assert found == {"database": postgres_url, "mqtt": mosquitto.url}
    reader = probes(mosquitto.host, mosquitto.port, "room-y")
    reader.subscribe(topics.acks("room-y"))
    tap = TapBuilder("room-y", "04A1B2C3").tap(at=datetime.now(UTC))
    reader.publish(topics.taps("room-y"), encode(tap))
    assert decode_as(reader.next(20).payload, Ack).result is AckResult.REJECTED
    assert worker.terminate() == 0


def test_db_upgrade_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path.as_posix()}/cli.sqlite3"
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", url)

    assert main(["db", "upgrade"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"rollcall: database at {url}",
        "rollcall: database upgraded to revision 0011",
    ]
    database = open_database(url)
    try:
        assert current_revision(database) == "0011"
    finally:
        database.dispose()


def test_database_password_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    secret_url = postgres_url.replace("postgres@", "postgres:s3cret@")
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", secret_url)

    assert main(["db", "upgrade"]) == 0  # trust authentication ignores the password

    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert f"rollcall: database at {postgres_url}" in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--config", "/nonexistent/rollcall.toml", "db", "upgrade"], {}, "does not exist"),
        (["ingest"], {}, "needs an external broker"),
        (["db", "upgrade"], {"ROLLCALL_TIMEZONE": "Nowhere/Atlantis"}, "unknown time zone"),
        (["db", "upgrade"], {"ROLLCALL_DATABASE_URL": "mysql://x/y"}, "only sqlite and postgresql"),
    ],
)
def test_bad_settings_exit_2_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert main(args) == 2

    assert message in capsys.readouterr().err
