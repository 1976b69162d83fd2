"""End-to-end helpers for the kiosk and live screen: devices made by the CLI, kiosk-mode readers."""

from pathlib import Path

from sqlalchemy import create_engine, select

from protocol import TapMode
from server.db.models import OrgUnit, Reader, SessionAudience
from tests.e2e import harness
from tests.support.processes import Process


def create_device(
    tmp_path: Path, database_url: str, http: str, *target: str, name: str = "devices"
) -> str:
    """Run `rollcall devices create …` as an administrator would; return the URL it prints."""
    proc = Process(
        [str(harness.BIN / "rollcall"), "devices", "create", *target, "--base-url", http],
        env={"ROLLCALL_DATABASE_URL": database_url, "ROLLCALL_DATA_DIR": str(tmp_path)},
        log_path=tmp_path / f"{name}.log",
    )
    assert proc.wait(timeout=60) == 0, (tmp_path / f"{name}.log").read_text(errors="replace")
    return proc.wait_for(r"^url: (\S+)$").group(1)


def reader(
    tmp_path: Path, mqtt_url: str, mode: str, name: str, reader_id: str = harness.READER_ID
) -> Process:
    """`rollcall-reader run` (the seeded reader unless told), in a mode, reading uids from stdin.

    The server's retained config sets the mode the database has for the reader:
    `mode` is what the agent uses until that arrives.
    """
    return Process(
        [
            str(harness.BIN / "rollcall-reader"),
            "run",
            "--id",
            reader_id,
            "--mqtt-url",
            mqtt_url,
            "--outbox",
            str(tmp_path / f"{name}-outbox.sqlite3"),
            "--stdin",
            "--debounce",
            "0",
            "--mode",
            mode,
        ],
        log_path=tmp_path / f"{name}.log",
        stdin=True,
    )


def expect_roster_branch(database_url: str, session_id: int) -> None:
    """Make the seeded session expect the seeded branch, so it has an expected count."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            unit = connection.scalar(select(OrgUnit.id).where(OrgUnit.code == "ROSTER"))
            connection.execute(
                SessionAudience.__table__.insert().values(session_id=session_id, org_unit_id=unit)
            )
    finally:
        engine.dispose()


def register_kiosk_reader(database_url: str, reader_id: str) -> None:
    """A reader in kiosk mode beside the seeded one, as an administrator registers it."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            room_id = connection.scalar(
                select(Reader.room_id).where(Reader.reader_id == harness.READER_ID)
            )
            connection.execute(
                Reader.__table__.insert().values(
                    reader_id=reader_id, room_id=room_id, mode=TapMode.KIOSK.value
                )
            )
    finally:
        engine.dispose()
