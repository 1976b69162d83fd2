"""`rollcall readers …` as an operator runs it; the broker files in deploy/ are generated."""

import base64
import subprocess
from pathlib import Path

import pytest

from reader_agent.config import load_settings
from server.cli import main
from server.db.engine import Database
from server.provisioning.broker_files import (
    CONTAINER,
    DEBIAN,
    BrokerLayout,
    render_acl,
    render_mosquitto_conf,
)
from server.provisioning.passwords import PasswordFile, hash_password, verify_password
from tests.integration.deploy.conftest import ROOM

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def site_env(monkeypatch: pytest.MonkeyPatch, site_database: Database, tmp_path: Path) -> Path:
    """ROLLCALL_* variables naming the test site's database and password file."""
    for name in ("ROLLCALL_CONFIG", "ROLLCALL_MQTT_URL", "ROLLCALL_CA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", site_database.url.render_as_string(False))
    monkeypatch.setenv("ROLLCALL_BROKER_PASSWORD_FILE", str(tmp_path / "passwd"))
    monkeypatch.setenv("ROLLCALL_BROKER_PUBLIC_HOST", "broker.example")
    return tmp_path / "passwd"


def test_provision_prints_a_config_the_reader_agent_accepts(
    site_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["readers", "provision", "hall-a-1", "--room", ROOM, "--mode", "checkout"])
    out = capsys.readouterr().out
    config = tmp_path / "reader.toml"
    config.write_text(out)

    settings = load_settings(config)

    assert code == 0
    assert (settings.id, settings.mode.value, settings.source) == ("hall-a-1", "checkout", "pcsc")
    target = settings.mqtt
    assert (target.host, target.port, target.tls, target.username) == (
        "broker.example",
        1883,
        False,
        "hall-a-1",
    )
    assert target.password is not None
    assert verify_password(target.password, PasswordFile(site_env).entries()["hall-a-1"])


def test_provision_with_tls_writes_files_the_reader_agent_accepts(
    site_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROLLCALL_CA_DIR", str(tmp_path / "ca"))
    assert main(["ca", "init"]) == 0
    out = tmp_path / "terminal" / "reader.toml"

    code = main(["readers", "provision", "hall-b-1", "--room", ROOM, "--tls", "--output", str(out)])

    assert code == 0
    settings = load_settings(out)
    assert (settings.mqtt.tls, settings.mqtt.port, settings.mqtt.username) == (True, 8883, None)
    assert settings.tls_cert_file == Path("/etc/rollcall/reader.pem")
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "ca.pem",
        "reader.key",
        "reader.pem",
        "reader.toml",
    ]
    assert (out.parent / "reader.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "hall-b-1" not in PasswordFile(site_env).entries()


def test_provision_into_an_unknown_room_changes_nothing(
    site_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["readers", "provision", "hall-a-1", "--room", "NOPE"])

    assert code == 1
    assert "no room NOPE" in capsys.readouterr().err
    assert PasswordFile(site_env).entries() == {}
    assert main(["readers", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_provision_twice_is_refused_until_revoked(
    site_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["readers", "provision", "hall-a-1", "--room", ROOM]) == 0
    first = PasswordFile(site_env).entries()["hall-a-1"]

    assert main(["readers", "provision", "hall-a-1", "--room", ROOM]) == 1
    assert PasswordFile(site_env).entries()["hall-a-1"] == first
    assert main(["readers", "revoke", "hall-a-1"]) == 0
    assert main(["readers", "provision", "hall-a-1", "--room", ROOM]) == 0
    capsys.readouterr()
    assert main(["readers", "list"]) == 0
    assert capsys.readouterr().out == f"hall-a-1\t{ROOM}\tcheckin\tpassword\n"


def test_our_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "alice", "s3cret"], check=True)
    theirs = PasswordFile(passwd).entries()["alice"]
    salt_b64 = theirs.split("$")[3]

    assert verify_password("s3cret", theirs)
    assert not verify_password("S3cret", theirs)
    assert hash_password("s3cret", salt=base64.b64decode(salt_b64)) == theirs


@pytest.mark.parametrize("layout", [DEBIAN, CONTAINER], ids=lambda layout: layout.name)
def test_committed_broker_files_are_generated_ones(layout: BrokerLayout) -> None:
    directory = REPO / "deploy" / "mosquitto" / ("" if layout is DEBIAN else "container")
    assert (directory / "mosquitto.conf").read_text() == render_mosquitto_conf(layout), (
        f"regenerate: rollcall broker config --layout {layout.name} --output-dir {directory}"
    )
    assert (REPO / "deploy" / "mosquitto" / "acl").read_text() == render_acl()


def test_broker_account_prints_the_servers_mqtt_url(
    site_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["broker", "account", "--host", "mosquitto"])

    line = capsys.readouterr().out.strip()
    prefix = "ROLLCALL_MQTT_URL=mqtt://rollcall-server:"
    assert code == 0
    assert line.startswith(prefix)
    assert line.endswith("@mosquitto:1883")
    password = line.removeprefix(prefix).removesuffix("@mosquitto:1883")
    assert verify_password(password, PasswordFile(site_env).entries()["rollcall-server"])
