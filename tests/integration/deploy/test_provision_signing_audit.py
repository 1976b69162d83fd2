"""`rollcall readers provision --sign` gives a signing key; provisioning is audited."""

from pathlib import Path

import pytest
from sqlalchemy import select

from reader_agent.config import load_settings
from server.audit.chain import verify_chain
from server.cli import main
from server.db.engine import Database
from server.db.models import AuditEntry, Reader, table_of
from tests.integration.deploy.conftest import ROOM


@pytest.fixture
def site_env(monkeypatch: pytest.MonkeyPatch, site_database: Database, tmp_path: Path) -> Path:
    """ROLLCALL_* variables naming the test site's database and password file."""
    for name in ("ROLLCALL_CONFIG", "ROLLCALL_MQTT_URL", "ROLLCALL_CA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", site_database.url.render_as_string(False))
    monkeypatch.setenv("ROLLCALL_BROKER_PASSWORD_FILE", str(tmp_path / "passwd"))
    monkeypatch.setenv("ROLLCALL_BROKER_PUBLIC_HOST", "broker.example")
    return tmp_path / "passwd"


def _stored_key(database: Database, reader_id: str) -> str | None:
    readers = table_of(Reader)
    with database.engine.connect() as conn:
        key: str | None = conn.execute(
            select(readers.c.sign_key).where(readers.c.reader_id == reader_id)
        ).scalar_one()
    return key


def test_provision_with_sign_stores_the_key_the_reader_toml_carries(
    site_env: Path, site_database: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["readers", "provision", "hall-a-1", "--room", ROOM, "--sign"])
    config = tmp_path / "reader.toml"
    config.write_text(capsys.readouterr().out)

    settings = load_settings(config)

    assert code == 0
    key = settings.sign_key_bytes()
    assert key is not None
    assert len(key) == 32
    assert _stored_key(site_database, "hall-a-1") == key.hex()


def test_provision_without_sign_has_no_key(
    site_env: Path, site_database: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["readers", "provision", "hall-a-1", "--room", ROOM]) == 0
    config = tmp_path / "reader.toml"
    config.write_text(capsys.readouterr().out)

    assert load_settings(config).sign_key is None
    assert _stored_key(site_database, "hall-a-1") is None


def test_provision_and_revoke_are_audited_and_revoke_drops_the_key(
    site_env: Path, site_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["readers", "provision", "hall-a-1", "--room", ROOM, "--sign"]) == 0
    assert main(["readers", "revoke", "hall-a-1"]) == 0
    capsys.readouterr()

    with site_database.sessions() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        broken = verify_chain(session)
    assert [(e.action, e.target) for e in entries] == [
        ("reader.provision", "hall-a-1"),
        ("reader.revoke", "hall-a-1"),
    ]
    assert entries[0].details == {
        "room": ROOM,
        "mode": "checkin",
        "credential": "password",
        "signed": True,
    }
    assert entries[1].details == {"password_removed": True, "certificate_serial": None}
    assert all(e.actor.startswith("cli") for e in entries)
    assert broken is None
    assert _stored_key(site_database, "hall-a-1") is None
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out == "rollcall: audit chain OK, 2 rows\n"
